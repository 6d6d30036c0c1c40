//! The secure client over Azure Service Bus: sealed round trip, a tampered message dead-lettered
//! with its reason, interleaved sessions each opened in order, and the processor keeping session
//! order through a retry. These run against the
//! namespace or emulator named by `QUEUE_RUNTIME_TEST_AZURE_CONNECTION_STRING`, on the test
//! queues of `queue_azure::testing`; without it they are ignored (never passed), and
//! `cargo xtask test` says so.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/remote.rs"]
mod remote;

use std::sync::Arc;
use std::time::Duration;

use queue_azure::AzureProvider;
use queue_azure::testing::{missing_connection_string, purge, test_config};
use queue_runtime::core::QueueProvider;
use queue_runtime::prelude::*;
use remote::{keys, sealing_client};

/// A provider, an emptied test queue, and a sealing client over them.
async fn setup(sessions: bool) -> (AzureProvider, QueueName, QueueClient) {
    let config = test_config().unwrap_or_else(|| panic!("{}", missing_connection_string()));
    let provider = AzureProvider::connect(&config).await.unwrap();
    let name = if sessions {
        "qr-conformance-sessions"
    } else {
        "qr-conformance"
    };
    let queue = QueueName::new(name).unwrap();
    purge(&provider, &queue, sessions).await.unwrap();
    let client = sealing_client(Arc::new(provider.clone()), keys());
    (provider, queue, client)
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs QUEUE_RUNTIME_TEST_AZURE_CONNECTION_STRING; run by `cargo xtask test` when it is set"]
async fn sealed_round_trip_over_service_bus() {
    let (provider, queue, client) = setup(false).await;
    remote::sealed_round_trip(&provider, &queue, &client).await;
    provider.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs QUEUE_RUNTIME_TEST_AZURE_CONNECTION_STRING; run by `cargo xtask test` when it is set"]
async fn tampered_message_lands_in_the_dead_letter_queue_with_its_reason() {
    let (provider, queue, client) = setup(false).await;
    remote::tampered_copy_is_dead_lettered(&provider, &queue, &client).await;
    provider.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs QUEUE_RUNTIME_TEST_AZURE_CONNECTION_STRING; run by `cargo xtask test` when it is set"]
async fn interleaved_sessions_are_each_opened_in_order() {
    let (provider, queue, client) = setup(true).await;
    let sessions = ["octo/repo#1", "octo/repo#2", "octo/other#7"];
    remote::send_interleaved(&client, &queue, &sessions, 6).await;
    for session in sessions {
        let held = client
            .accept_named_session(
                &queue,
                &SessionId::new(session).unwrap(),
                Duration::from_secs(10),
            )
            .await
            .unwrap()
            .expect("the session");
        let mut seen = Vec::new();
        while seen.len() < 6 {
            let received = held.receive(10, Duration::from_secs(10)).await.unwrap();
            assert!(
                !received.is_empty(),
                "{session}: messages left after {seen:?}"
            );
            for message in &received {
                assert!(message.delivery.seal.is_some());
                seen.push(String::from_utf8(message.body().to_vec()).unwrap());
                client.complete(message).await.unwrap();
            }
        }
        let expected = remote::steps(session, 6);
        assert_eq!(seen, expected, "{session}");
        held.close().await.unwrap();
    }
    provider.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs QUEUE_RUNTIME_TEST_AZURE_CONNECTION_STRING; run by `cargo xtask test` when it is set"]
async fn the_processor_keeps_session_order_through_a_retry() {
    let (provider, queue, client) = setup(true).await;
    remote::processor_keeps_session_order_through_a_retry(&client, &queue).await;
    provider.close().await.unwrap();
}
