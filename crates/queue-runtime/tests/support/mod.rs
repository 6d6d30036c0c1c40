//! Shared by the security tests: keys, a clock that follows tokio's (paused) time, clients over
//! one embedded broker, and an attacker's view of the queue.

#![allow(dead_code, unreachable_pub)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use base64::Engine;
use std::time::{Duration, SystemTime};

use queue_runtime::core::{PeekOptions, QueueProvider, QueueProviderExt};
use queue_runtime::crypto::{Clock, Key, KeyId, KeyMaterial, KeyState, Keyset};
use queue_runtime::keys::{KeyRing, StaticKeys};
use queue_runtime::memory::{MemoryConfig, MemoryProvider, QueueOptions};
use queue_runtime::prelude::*;

/// Follows tokio's clock, as the embedded broker does, so that `tokio::time::advance` moves
/// the sender's seal times and the broker's enqueue times together.
#[derive(Debug)]
pub struct TokioClock {
    base_system: SystemTime,
    base: tokio::time::Instant,
}

impl TokioClock {
    pub fn new() -> Arc<Self> {
        Arc::new(TokioClock {
            base_system: SystemTime::now(),
            base: tokio::time::Instant::now(),
        })
    }
}

impl Clock for TokioClock {
    fn now(&self) -> SystemTime {
        self.base_system + self.base.elapsed()
    }
}

pub fn key(id: &str, state: KeyState) -> Key {
    Key::new(
        KeyId::new(id).unwrap(),
        KeyMaterial::generate().unwrap(),
        state,
    )
}

pub fn copy_key(key: &Key, state: KeyState) -> Key {
    Key::new(
        key.id().clone(),
        KeyMaterial::from_slice(key.material().expose()).unwrap(),
        state,
    )
}

pub fn keyset(keys: impl IntoIterator<Item = Key>) -> Keyset {
    Keyset::new(keys).unwrap()
}

pub fn queue(name: &str) -> QueueName {
    QueueName::new(name).unwrap()
}

/// One broker with a plain queue `events`, another plain queue `audit`, and a session queue
/// `prs`; short locks so expiry tests are quick.
pub fn broker() -> Arc<MemoryProvider> {
    let broker = Arc::new(MemoryProvider::new(
        MemoryConfig::default().with_auto_create_queues(false),
    ));
    let options = QueueOptions::default()
        .with_lock_duration(Duration::from_secs(5))
        .with_session_lock_duration(Duration::from_secs(5))
        .with_max_delivery_count(20);
    broker
        .create_queue(&queue("events"), options.clone())
        .unwrap();
    broker
        .create_queue(&queue("audit"), options.clone())
        .unwrap();
    broker
        .create_queue(&queue("prs"), options.with_sessions(true))
        .unwrap();
    broker
}

/// A client over `broker` sealing and opening with `keys` (its own key ring, like a separate
/// process), on tokio's clock.
pub fn client(broker: &Arc<MemoryProvider>, keys: Keyset) -> QueueClient {
    client_with(
        broker,
        Security::new(KeyRing::new(Arc::new(StaticKeys::new(keys)))),
    )
}

pub fn client_with(broker: &Arc<MemoryProvider>, security: Security) -> QueueClient {
    QueueClient::new(Arc::clone(broker) as Arc<dyn QueueProvider>)
        .with_security(security.with_clock(TokioClock::new()))
}

/// What an attacker with access to the queue sees: the raw messages, sealed bodies and all.
pub async fn raw_messages(broker: &Arc<MemoryProvider>, name: &str) -> Vec<Message> {
    broker
        .peek(&queue(name), PeekOptions::new(100))
        .await
        .unwrap()
        .into_iter()
        .map(|peeked| peeked.message)
        .collect()
}

/// The dead-letter reasons of a queue, draining its dead-letter queue.
pub async fn dead_letter_reasons(broker: &Arc<MemoryProvider>, name: &str) -> Vec<String> {
    let mut reasons = Vec::new();
    loop {
        let dead = broker
            .receive_dead_letters(&queue(name), 100, Duration::ZERO)
            .await
            .unwrap();
        if dead.is_empty() {
            return reasons;
        }
        for message in dead {
            reasons.push(message.delivery.dead_letter.clone().unwrap().reason);
            broker.complete(&message.receipt).await.unwrap();
        }
    }
}

/// Receives until the queue is empty, completing everything the client hands to the
/// application, and returns it.
pub async fn drain(client: &QueueClient, name: &str) -> Vec<ReceivedMessage> {
    let mut handed = Vec::new();
    let mut empty_rounds = 0;
    for _ in 0..10_000 {
        let batch = client
            .receive(&queue(name), 10, Duration::ZERO)
            .await
            .unwrap();
        if batch.is_empty() {
            // Peek shows messages in every state (a copy given back to wait included): a queue
            // whose only messages stay invisible for a hundred rounds is drained for now.
            empty_rounds += 1;
            if empty_rounds > 100 {
                return handed;
            }
            // Empty can also mean "a long run of refused messages": look at the queue itself.
            let left = client
                .provider()
                .peek(&queue(name), PeekOptions::new(1))
                .await
                .unwrap();
            if left.is_empty() {
                return handed;
            }
            continue;
        }
        empty_rounds = 0;
        for message in batch {
            client.complete(&message).await.unwrap();
            handed.push(message);
        }
    }
    panic!("{name} did not drain");
}

/// The client hands nothing from the queue to the application, and its dead-letter queue
/// holds exactly these reasons.
pub async fn assert_all_refused(
    client: &QueueClient,
    broker: &Arc<MemoryProvider>,
    name: &str,
    reasons: &[&str],
) {
    let handed = drain(client, name).await;
    assert!(handed.is_empty(), "handed to the application: {handed:?}");
    assert_eq!(dead_letter_reasons(broker, name).await, reasons);
}

/// A log writer that keeps everything written, for the no-secret-in-logs checks.
#[derive(Clone, Default)]
pub struct Captured(pub Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every printable form a 32-byte key (or any secret) could take in a log.
pub fn forms(secret: &[u8]) -> Vec<String> {
    let mut forms = vec![
        hex::encode(secret),
        hex::encode_upper(secret),
        base64::engine::general_purpose::STANDARD.encode(secret),
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(secret),
        base64::engine::general_purpose::URL_SAFE.encode(secret),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret),
        format!("{secret:?}"),
    ];
    if let Ok(text) = std::str::from_utf8(secret) {
        forms.push(text.to_owned());
    }
    // Long enough to be a leak, short enough to catch a truncated print.
    forms
        .into_iter()
        .map(|form| form[..form.len().min(24)].to_owned())
        .collect()
}
