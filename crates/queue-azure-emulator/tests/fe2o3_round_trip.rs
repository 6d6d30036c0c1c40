//! A round trip through the emulator with another AMQP implementation than the judge's:
//! `fe2o3-amqp` (the engine under the Rust `azservicebus` crate) sends, receives in peek-lock
//! with receiver-settle-mode second, and gets its settlements confirmed.

// Test helpers fail the test by unwrapping.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use fe2o3_amqp::types::messaging::{Message, Outcome};
use queue_azure_emulator::{Emulator, EmulatorConfig, QueueConfig};
use support::{ANSWER_DELAY, attach_peek_lock_receiver, attach_sender, open_session, step};

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
    let (mut connection, mut session) = open_session(emulator.local_addr(), "round-trip").await;
    let mut sender = attach_sender(&mut session, "sender", "round-trip").await;
    for body in ["one", "two"] {
        let outcome = step("send", sender.send(body.to_owned())).await.unwrap();
        assert!(matches!(outcome, Outcome::Accepted(_)), "{outcome:?}");
    }
    let mut receiver =
        attach_peek_lock_receiver(&mut session, "receiver", "amqp://127.0.0.1/ROUND-TRIP").await;
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
