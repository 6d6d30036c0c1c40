//! The secure client's end-to-end checks that every network provider runs the same way (SQS
//! against moto, Service Bus against a namespace): included by `sqs.rs` and `azure.rs`.

#![allow(dead_code, unreachable_pub)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use queue_runtime::core::{QueueProvider, QueueProviderExt, ReceiveOptions};
use queue_runtime::crypto::{Key, KeyId, KeyMaterial, KeyState, Keyset};
use queue_runtime::keys::{KeyRing, StaticKeys};
use queue_runtime::prelude::*;

/// How long the checks wait for a message a network broker should already have.
const WAIT: Duration = Duration::from_secs(10);

/// A keyset of one fresh primary key.
pub fn keys() -> Keyset {
    Keyset::new([Key::new(
        KeyId::new("k1").unwrap(),
        KeyMaterial::generate().unwrap(),
        KeyState::Primary,
    )])
    .unwrap()
}

/// A client sealing with `keys` over `provider`.
pub fn sealing_client(provider: Arc<dyn QueueProvider>, keys: Keyset) -> QueueClient {
    QueueClient::new(provider)
        .with_security(Security::new(KeyRing::new(Arc::new(StaticKeys::new(keys)))))
}

/// The queue holds ciphertext; the client hands back the body and headers, authenticated.
pub async fn sealed_round_trip(
    provider: &dyn QueueProvider,
    queue: &QueueName,
    client: &QueueClient,
) {
    let secret = "{\"token\":\"do-not-leak\"}";
    let message = Message::builder(secret)
        .correlation_id("delivery-1")
        .property("event", "pull_request")
        .build()
        .unwrap();
    client.send(queue, message).await.unwrap();

    let raw = provider
        .receive_one(queue, WAIT)
        .await
        .unwrap()
        .expect("a message");
    assert!(!String::from_utf8_lossy(raw.body()).contains("do-not-leak"));
    provider.abandon(&raw.receipt, None).await.unwrap();

    let received = client
        .receive_one(queue, WAIT)
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

/// Someone with access to the queue takes the sealed message and puts back an altered copy:
/// the client refuses it, and it waits in the dead-letter queue with its reason.
pub async fn tampered_copy_is_dead_lettered(
    provider: &dyn QueueProvider,
    queue: &QueueName,
    client: &QueueClient,
) {
    client
        .send(queue, Message::new("pay 10 to alice"))
        .await
        .unwrap();
    let original = provider
        .receive_one(queue, WAIT)
        .await
        .unwrap()
        .expect("a message");
    let mut body = original.body().to_vec();
    let middle = body.len() / 2;
    body[middle] ^= 0x01;
    let mut forged = original.message.clone();
    forged.set_body(body);
    provider.send(queue, forged).await.unwrap();
    provider.complete(&original.receipt).await.unwrap();

    let delivered = client
        .receive(queue, 10, Duration::from_secs(3))
        .await
        .unwrap();
    assert!(
        delivered.is_empty(),
        "the forgery is not handed to the application"
    );
    let dead = provider
        .receive(queue, ReceiveOptions::new(10, WAIT).dead_letter())
        .await
        .unwrap();
    assert_eq!(dead.len(), 1, "refused, and kept for inspection");
    assert_eq!(
        dead[0].delivery.dead_letter.as_ref().unwrap().reason,
        "rejected: authentication"
    );
    provider.complete(&dead[0].receipt).await.unwrap();
}

/// The body of `session`'s message number `index`.
pub fn step(session: &str, index: usize) -> String {
    format!("{session} step {index}")
}

/// The bodies of `session`'s messages, in the order [`send_interleaved`] sends them.
pub fn steps(session: &str, count: usize) -> Vec<String> {
    (0..count).map(|index| step(session, index)).collect()
}

/// Sends `count` messages per session in one batch, the sessions' messages interleaved.
pub async fn send_interleaved(
    client: &QueueClient,
    queue: &QueueName,
    sessions: &[&str],
    count: usize,
) {
    let mut batch = Vec::new();
    for index in 0..count {
        for session in sessions {
            batch.push(
                Message::builder(step(session, index))
                    .session_id(*session)
                    .build()
                    .unwrap(),
            );
        }
    }
    for result in client.send_batch(queue, batch).await.unwrap() {
        result.unwrap();
    }
}

/// The processor on a session queue (Service Bus sessions, SQS FIFO groups): three sessions of
/// eight, each handled in order while they run in parallel, and a message given back mid-run
/// (once) does not let the later ones of its session overtake it.
pub async fn processor_keeps_session_order_through_a_retry(
    client: &QueueClient,
    queue: &QueueName,
) {
    let sessions = ["octo/repo#1", "octo/repo#2", "octo/other#7"];
    send_interleaved(client, queue, &sessions, 8).await;
    let seen: Arc<Mutex<BTreeMap<String, Vec<String>>>> = Arc::default();
    let retried = Arc::new(AtomicBool::new(false));
    let handler = {
        let (seen, retried) = (seen.clone(), retried.clone());
        move |message: ReceivedMessage, _: HandlerContext| {
            let (seen, retried) = (seen.clone(), retried.clone());
            async move {
                let body = String::from_utf8(message.body().to_vec()).unwrap();
                if body == step("octo/repo#1", 3) && !retried.swap(true, Ordering::SeqCst) {
                    return Outcome::retry();
                }
                seen.lock()
                    .unwrap()
                    .entry(message.session_id().unwrap().as_str().to_owned())
                    .or_default()
                    .push(body);
                Outcome::Complete
            }
        }
    };
    let shutdown = CancellationToken::new();
    let processor = Processor::new(client.clone(), queue.clone(), handler).with_options(
        ProcessorOptions::default()
            .with_sessions(true)
            .with_max_concurrency(4),
    );
    let running = tokio::spawn(processor.run(shutdown.clone()));
    let started = std::time::Instant::now();
    while seen.lock().unwrap().values().map(Vec::len).sum::<usize>() < 24
        && started.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    let report = running.await.unwrap().unwrap();
    let seen = seen.lock().unwrap().clone();
    for session in sessions {
        assert_eq!(seen[session], steps(session, 8), "{session}");
    }
    assert_eq!((report.completed, report.retried), (24, 1), "{report:?}");
}
