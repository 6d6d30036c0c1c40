//! The secure client over Amazon SQS, against the local server `cargo xtask test` starts:
//! sealed round trip, a tampered message dead-lettered with its reason, and session order on a
//! FIFO queue with sessions interleaved.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use queue_runtime::core::{QueueProvider, QueueProviderExt, ReceiveOptions};
use queue_runtime::crypto::{Key, KeyId, KeyMaterial, KeyState, Keyset};
use queue_runtime::keys::{KeyRing, StaticKeys};
use queue_runtime::prelude::*;
use queue_sqs::admin::{
    QueueSetup, TEST_SERVER_VARIABLE, create_queue_with_dead_letter, test_server_endpoint,
};
use queue_sqs::{SqsConfig, SqsProvider};

fn endpoint() -> Option<String> {
    let endpoint = test_server_endpoint().unwrap();
    if endpoint.is_none() {
        eprintln!(
            "SKIPPED: no local SQS server ({TEST_SERVER_VARIABLE} unset); `cargo xtask test` starts one"
        );
    }
    endpoint
}

fn keys() -> Keyset {
    Keyset::new([Key::new(
        KeyId::new("k1").unwrap(),
        KeyMaterial::generate().unwrap(),
        KeyState::Primary,
    )])
    .unwrap()
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
    let client = QueueClient::new(Arc::new(provider.clone()))
        .with_security(Security::new(KeyRing::new(Arc::new(StaticKeys::new(keys)))));
    (provider, queue, client)
}

#[tokio::test(flavor = "multi_thread")]
async fn sealed_round_trip_over_sqs() {
    let Some(endpoint) = endpoint() else { return };
    let (provider, queue, client) = setup(&endpoint, false, keys()).await;
    let secret = "{\"token\":\"do-not-leak\"}";
    let message = Message::builder(secret)
        .correlation_id("delivery-1")
        .property("event", "pull_request")
        .build()
        .unwrap();
    client.send(&queue, message).await.unwrap();

    // What the queue holds: ciphertext, not the body.
    let raw = provider
        .receive_one(&queue, Duration::from_secs(5))
        .await
        .unwrap()
        .expect("a message");
    assert!(!String::from_utf8_lossy(raw.body()).contains("do-not-leak"));
    provider.abandon(&raw.receipt, None).await.unwrap();

    let received = client
        .receive_one(&queue, Duration::from_secs(5))
        .await
        .unwrap()
        .expect("the message, opened");
    assert_eq!(received.body().as_ref(), secret.as_bytes());
    assert_eq!(received.message.correlation_id(), Some("delivery-1"));
    assert_eq!(
        received.message.properties().get("event"),
        Some("pull_request")
    );
    assert!(received.delivery.seal.is_some(), "authenticated");
    client.complete(&received).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn tampered_message_lands_in_the_dead_letter_queue_with_its_reason() {
    let Some(endpoint) = endpoint() else { return };
    let (provider, queue, client) = setup(&endpoint, false, keys()).await;
    client
        .send(&queue, Message::new("pay 10 to alice"))
        .await
        .unwrap();

    // Someone with access to the queue takes the sealed message and puts back an altered copy.
    let original = provider
        .receive_one(&queue, Duration::from_secs(5))
        .await
        .unwrap()
        .expect("a message");
    let mut body = original.body().to_vec();
    let middle = body.len() / 2;
    body[middle] ^= 0x01;
    let mut forged = original.message.clone();
    forged.set_body(body);
    provider.send(&queue, forged).await.unwrap();
    provider.complete(&original.receipt).await.unwrap();

    let delivered = client
        .receive(&queue, 10, Duration::from_secs(3))
        .await
        .unwrap();
    assert!(
        delivered.is_empty(),
        "the forgery is not handed to the application"
    );
    let dead = provider
        .receive(
            &queue,
            ReceiveOptions::new(10, Duration::from_secs(5)).dead_letter(),
        )
        .await
        .unwrap();
    assert_eq!(dead.len(), 1, "refused, and kept for inspection");
    assert_eq!(
        dead[0].delivery.dead_letter.as_ref().unwrap().reason,
        "rejected: authentication"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fifo_sessions_keep_their_order_when_interleaved() {
    let Some(endpoint) = endpoint() else { return };
    let (_provider, queue, client) = setup(&endpoint, true, keys()).await;
    let sessions = ["octo/repo#1", "octo/repo#2", "octo/other#7"];
    let mut batch = Vec::new();
    for index in 0..6 {
        for session in sessions {
            batch.push(
                Message::builder(format!("{session} step {index}"))
                    .session_id(session)
                    .build()
                    .unwrap(),
            );
        }
    }
    for result in client.send_batch(&queue, batch).await.unwrap() {
        result.unwrap();
    }
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
        let expected: Vec<String> = (0..6)
            .map(|index| format!("{session} step {index}"))
            .collect();
        assert_eq!(seen[session], expected, "{session}");
    }
}
