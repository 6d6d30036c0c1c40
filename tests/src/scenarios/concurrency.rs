//! Many receivers and senders at once.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use queue_core::{Message, QueueProviderExt};
use std::sync::Mutex;

use crate::fixture::{Fixture, QueueSpec};
use crate::runner::Outcome;
use crate::support::{setup, text};

/// Four receivers draining 200 messages never hold the same message at once, and together get
/// every message exactly once.
pub async fn concurrent_receivers_never_share_a_message(fixture: &dyn Fixture) -> Outcome {
    let s = setup!(fixture, QueueSpec::default());
    const COUNT: usize = 200;
    let batch: Vec<Message> = (0..COUNT)
        .map(|index| Message::new(format!("{index}")))
        .collect();
    for result in s.provider.send_batch(&s.queue, batch).await.unwrap() {
        result.unwrap();
    }
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let receivers: Vec<_> = (0..4)
        .map(|_| {
            let provider = s.provider.clone();
            let queue = s.queue.clone();
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                while let Some(message) = provider
                    .receive_one(&queue, Duration::from_secs(2))
                    .await
                    .unwrap()
                {
                    let fresh = seen.lock().unwrap().insert(text(&message));
                    assert!(fresh, "message {} delivered twice", text(&message));
                    provider.complete(&message.receipt).await.unwrap();
                }
            })
        })
        .collect();
    for receiver in receivers {
        receiver.await.unwrap();
    }
    assert_eq!(seen.lock().unwrap().len(), COUNT);
    Outcome::Passed
}

/// Eight senders at once: every message arrives.
pub async fn concurrent_senders_lose_nothing(fixture: &dyn Fixture) -> Outcome {
    let s = setup!(fixture, QueueSpec::default());
    let senders: Vec<_> = (0..8)
        .map(|sender| {
            let provider = s.provider.clone();
            let queue = s.queue.clone();
            tokio::spawn(async move {
                for index in 0..25 {
                    provider
                        .send(&queue, Message::new(format!("{sender}-{index}")))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for sender in senders {
        sender.await.unwrap();
    }
    // Settle as they come: on a real broker, draining 200 messages can outlast their locks, and
    // a redelivered copy must not stand in for a message that never arrived.
    let mut distinct = HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while distinct.len() < 200 && tokio::time::Instant::now() < deadline {
        for message in s.receive_up_to(10, Duration::from_secs(2)).await {
            distinct.insert(text(&message));
            s.provider.complete(&message.receipt).await.unwrap();
        }
    }
    assert_eq!(distinct.len(), 200);
    Outcome::Passed
}
