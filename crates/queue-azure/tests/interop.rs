//! Cross-client interop with Microsoft's Python SDK: this half receives, with queue-azure, the
//! message `crates/queue-azure-emulator/judge/interop.py send` put into session `py-<run>` of
//! `judge-interop`, checks every field queue-runtime carries, and sends its own into session
//! `rs-<run>`, which `interop.py check` then reads. `cargo xtask test` runs the three in order
//! against our emulator; the run id comes in `QUEUE_RUNTIME_INTEROP_RUN`. `#[ignore]`d, since
//! it needs the Python half to have sent first.
//!
//! Subject, to and reply-to have no place in queue-runtime's message and are not carried.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::time::{Duration, SystemTime};

use queue_azure::testing::{TEST_CONNECTION_STRING_VARIABLE, missing_connection_string};
use queue_azure::{AzureConfig, AzureCredentials, AzureProvider};
use queue_core::{
    AcceptSessionOptions, Message, QueueName, QueueProvider, SessionId, SessionSelector,
};

const QUEUE: &str = "judge-interop";
const RUN_VARIABLE: &str = "QUEUE_RUNTIME_INTEROP_RUN";

#[tokio::test(flavor = "multi_thread")]
#[ignore = "run by `cargo xtask test` between the two halves of judge/interop.py"]
async fn python_and_queue_azure_read_each_others_messages() {
    let run = std::env::var(RUN_VARIABLE)
        .unwrap_or_else(|_| panic!("{RUN_VARIABLE} names the run of interop.py send"));
    let queue = QueueName::new(QUEUE).unwrap();
    // Only the interop queue: the emulator of `servicebus-judge` serves the judge's queues.
    let connection_string = std::env::var(TEST_CONNECTION_STRING_VARIABLE)
        .unwrap_or_else(|_| panic!("{}", missing_connection_string()));
    let config = AzureConfig::new(AzureCredentials::connection_string(connection_string))
        .with_queue(queue.clone(), true);
    let provider = AzureProvider::connect(&config).await.unwrap();

    let from_python = SessionId::new(format!("py-{run}")).unwrap();
    let session = provider
        .accept_session(
            &queue,
            AcceptSessionOptions {
                session: SessionSelector::Named(from_python.clone()),
                wait: Duration::from_secs(10),
            },
        )
        .await
        .unwrap()
        .expect("the session Python sent to");
    // Python scheduled it a second ahead.
    let received = session
        .receive(1, Duration::from_secs(15))
        .await
        .unwrap()
        .pop()
        .expect("Python's message arrives");
    let message = &received.message;
    assert_eq!(message.body().as_ref(), b"\x00from python\xff");
    assert_eq!(message.message_id().as_str(), format!("py-{run}"));
    assert_eq!(message.session_id(), Some(&from_python));
    assert_eq!(message.correlation_id(), Some("py-correlation"));
    assert_eq!(message.content_type(), Some("application/x-interop"));
    assert_eq!(message.time_to_live(), Some(Duration::from_secs(600)));
    // Other producers' typed application properties arrive as text.
    let properties = message.properties();
    for (key, value) in [
        ("text", "value"),
        ("int", "42"),
        ("negative", "-7"),
        ("float", "2.5"),
        ("bool", "true"),
        ("uuid", "6f1c1c0a-0000-4000-8000-000000000001"),
        // 2030-01-02T03:04:05.678Z, in milliseconds since the epoch.
        ("time", "1893553445678"),
    ] {
        assert_eq!(
            properties.get(key),
            Some(value),
            "property {key} in {properties:?}"
        );
    }
    assert!(received.delivery.sequence_number.is_some());
    provider.complete(&received.receipt).await.unwrap();
    session.close().await.unwrap();

    let to_python = Message::builder(&b"\x00from rust\xff"[..])
        .message_id(format!("rs-{run}"))
        .session_id(format!("rs-{run}"))
        .correlation_id("rs-correlation")
        .content_type("application/x-interop")
        .time_to_live(Duration::from_secs(600))
        .scheduled_enqueue_time(SystemTime::now() + Duration::from_secs(1))
        .property("text", "value")
        .property("number", "42")
        .property("unicode", "grüße, 世界")
        .build()
        .unwrap();
    provider.send(&queue, to_python).await.unwrap();
    provider.close().await.unwrap();
}
