//! A round trip through the emulator with another AMQP implementation than the judge's:
//! `fe2o3-amqp` (the engine under the Rust `azservicebus` crate) sends, receives in peek-lock
//! with receiver-settle-mode second, and gets its settlements confirmed.

// Test helpers fail the test by unwrapping.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use fe2o3_amqp::link::Receiver;
use fe2o3_amqp::sasl_profile::SaslProfile;
use fe2o3_amqp::types::definitions::ReceiverSettleMode;
use fe2o3_amqp::types::messaging::{Message, Outcome};
use fe2o3_amqp::{Connection, Sender, Session};
use queue_azure_emulator::{Emulator, EmulatorConfig, QueueConfig};
use support::{ANSWER_DELAY, step};

mod support;

async fn emulator() -> Emulator {
    let config = EmulatorConfig::new()
        .with_answer_delay(ANSWER_DELAY)
        .with_queue(QueueConfig::new("round-trip"));
    Emulator::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fe2o3_sends_receives_and_settles() {
    let emulator = emulator().await;
    let url = format!("amqp://{}", emulator.local_addr());
    let mut connection = step(
        "open",
        Connection::builder()
            .container_id("round-trip")
            .sasl_profile(SaslProfile::Anonymous)
            .open(url.as_str()),
    )
    .await
    .unwrap();
    let mut session = step("begin", Session::begin(&mut connection))
        .await
        .unwrap();
    let mut sender = step(
        "sender attach",
        Sender::attach(&mut session, "sender", "round-trip"),
    )
    .await
    .unwrap();
    for body in ["one", "two"] {
        let outcome = step("send", sender.send(body.to_owned())).await.unwrap();
        assert!(matches!(outcome, Outcome::Accepted(_)), "{outcome:?}");
    }
    let mut receiver = step(
        "receiver attach",
        Receiver::builder()
            .name("receiver")
            .source("amqp://127.0.0.1/ROUND-TRIP")
            .receiver_settle_mode(ReceiverSettleMode::Second)
            .attach(&mut session),
    )
    .await
    .unwrap();
    let first = step("receive", receiver.recv::<String>()).await.unwrap();
    assert_eq!(first.body(), "one");
    assert_eq!(first.delivery_tag().len(), 16, "a Service Bus lock token");
    let message: &Message<_> = first.message();
    let header = message.header.as_ref().unwrap();
    assert_eq!(header.delivery_count, 0);
    step("accept", receiver.accept(&first)).await.unwrap();
    let second = step("receive", receiver.recv::<String>()).await.unwrap();
    assert_eq!(second.body(), "two");
    step("accept", receiver.accept(&second)).await.unwrap();
    assert_eq!(
        emulator
            .provider()
            .queue_stats(&queue_core::QueueName::new("round-trip").unwrap())
            .unwrap()
            .active,
        0
    );
    step("receiver close", receiver.close()).await.unwrap();
    step("sender close", sender.close()).await.unwrap();
    step("end", session.end()).await.unwrap();
    step("close", connection.close()).await.unwrap();
    step("stop", emulator.stop()).await;
}
