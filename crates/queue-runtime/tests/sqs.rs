//! The secure client over Amazon SQS, against the local server `cargo xtask test` starts:
//! sealed round trip, a tampered message dead-lettered with its reason, and session order on a
//! FIFO queue with sessions interleaved.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/remote.rs"]
mod remote;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use queue_runtime::crypto::Keyset;
use queue_runtime::prelude::*;
use queue_sqs::admin::{
    QueueSetup, TEST_SERVER_VARIABLE, create_queue_with_dead_letter, test_server_endpoint,
};
use queue_sqs::{SqsConfig, SqsProvider};
use remote::{keys, sealing_client};

fn endpoint() -> Option<String> {
    let endpoint = test_server_endpoint().unwrap();
    if endpoint.is_none() {
        eprintln!(
            "SKIPPED: no local SQS server ({TEST_SERVER_VARIABLE} unset); `cargo xtask test` starts one"
        );
    }
    endpoint
}

/// A provider, a fresh queue with its dead-letter queue, and a sealing client over them.
async fn setup(endpoint: &str, fifo: bool, keys: Keyset) -> (SqsProvider, QueueName, QueueClient) {
    let provider = SqsProvider::for_local_server(endpoint, &SqsConfig::new()).unwrap();
    let suffix = if fifo { ".fifo" } else { "" };
    let queue = QueueName::new(format!("e2e-{}{suffix}", uuid::Uuid::new_v4().simple())).unwrap();
    let setup = QueueSetup {
        fifo,
        visibility_timeout: Duration::from_secs(5),
        ..QueueSetup::default()
    };
    create_queue_with_dead_letter(&provider, &queue, &setup)
        .await
        .unwrap();
    let client = sealing_client(Arc::new(provider.clone()), keys);
    (provider, queue, client)
}

#[tokio::test(flavor = "multi_thread")]
async fn sealed_round_trip_over_sqs() {
    let Some(endpoint) = endpoint() else { return };
    let (provider, queue, client) = setup(&endpoint, false, keys()).await;
    remote::sealed_round_trip(&provider, &queue, &client).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tampered_message_lands_in_the_dead_letter_queue_with_its_reason() {
    let Some(endpoint) = endpoint() else { return };
    let (provider, queue, client) = setup(&endpoint, false, keys()).await;
    remote::tampered_copy_is_dead_lettered(&provider, &queue, &client).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fifo_sessions_keep_their_order_when_interleaved() {
    let Some(endpoint) = endpoint() else { return };
    let (_provider, queue, client) = setup(&endpoint, true, keys()).await;
    let sessions = ["octo/repo#1", "octo/repo#2", "octo/other#7"];
    remote::send_interleaved(&client, &queue, &sessions, 6).await;
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    while seen.values().map(Vec::len).sum::<usize>() < 18 {
        let received = client
            .receive(&queue, 10, Duration::from_secs(5))
            .await
            .unwrap();
        assert!(!received.is_empty(), "messages left after {seen:?}");
        for message in &received {
            assert!(message.delivery.seal.is_some());
            seen.entry(message.session_id().unwrap().as_str().to_owned())
                .or_default()
                .push(String::from_utf8(message.body().to_vec()).unwrap());
        }
        for result in client.complete_batch(&received).await.unwrap() {
            result.unwrap();
        }
    }
    for session in sessions {
        let expected = remote::steps(session, 6);
        assert_eq!(seen[session], expected, "{session}");
    }
}
