//! The secure client over Azure Service Bus: sealed round trip, a tampered message dead-lettered
//! with its reason, interleaved sessions each opened in order, and the processor keeping session
//! order through a retry, the dead-letter tools (list, purge, replay). These run against the
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
use queue_runtime::dead_letters::DeadLetterFilter;
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

/// The dead-letter tools over Service Bus, which can peek: refused messages are listed with
/// their reasons and opened bodies, a purge by reason removes only what it names, and a replay
/// re-seals and sends first, then removes the copy; the replayed message passes the checks.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs QUEUE_RUNTIME_TEST_AZURE_CONNECTION_STRING; run by `cargo xtask test` when it is set"]
async fn dead_letters_are_listed_purged_and_replayed() {
    let (provider, queue, client) = setup(false).await;
    for (body, reason) in [("refused once", "invalid-order"), ("spam", "spam")] {
        client.send(&queue, Message::new(body)).await.unwrap();
        let received = client
            .receive(&queue, 1, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(received.len(), 1, "{body} arrives");
        client
            .dead_letter(&received[0], reason, "the first look failed")
            .await
            .unwrap();
    }

    let dead_letters = client.dead_letters(&queue);
    let mut listed = dead_letters.list(10).await.unwrap();
    listed.sort_by_key(|dead_letter| dead_letter.reason.clone());
    let seen: Vec<_> = listed
        .iter()
        .map(|dead_letter| {
            assert!(dead_letter.is_authenticated(), "{dead_letter:?}");
            (
                dead_letter.reason.as_deref().unwrap_or_default(),
                String::from_utf8_lossy(dead_letter.message.body()).into_owned(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("invalid-order", "refused once".to_owned()),
            ("spam", "spam".to_owned())
        ]
    );

    let purged = dead_letters
        .purge(&DeadLetterFilter::all().with_reason("spam"))
        .await
        .unwrap();
    assert_eq!(purged.purged.len(), 1, "{purged:?}");
    assert!(purged.failed.is_empty(), "{purged:?}");

    let replay = dead_letters.replay(&DeadLetterFilter::all()).await.unwrap();
    assert_eq!(replay.replayed.len(), 1, "{replay:?}");
    let again = client
        .receive(&queue, 1, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(again.len(), 1, "the replayed copy passes the checks");
    assert_eq!(again[0].message_id(), &replay.replayed[0].1);
    assert_eq!(again[0].body().as_ref(), b"refused once");
    client.complete(&again[0]).await.unwrap();
    assert!(dead_letters.list(10).await.unwrap().is_empty());
    provider.close().await.unwrap();
}
