//! What the live tests share: the connection string they read, the queues they expect, and a
//! purge that empties those queues between tests.
//!
//! Service Bus queues are created outside the data plane (portal, ARM, or the emulator's
//! `Config.json`), so the live tests run against fixed, pre-created queues listed in
//! [`TEST_QUEUES`] and in `emulator-config.json` beside this crate,
//! and empty them first.

use std::time::Duration;

use queue_core::{ErrorKind, PeekOptions, QueueName, QueueProvider, QueueProviderExt, Result};

use crate::config::{AzureConfig, AzureCredentials};

/// The environment variable holding the connection string of the namespace (or emulator) the
/// live tests run against. Unset: the live tests say they were skipped, and pass nothing.
pub const TEST_CONNECTION_STRING_VARIABLE: &str = "QUEUE_RUNTIME_TEST_AZURE_CONNECTION_STRING";

/// A queue the live tests need, with the settings it must be created with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestQueue {
    /// The queue's name.
    pub name: &'static str,
    /// Session-enabled.
    pub sessions: bool,
    /// `LockDuration`, in seconds.
    pub lock_seconds: u32,
    /// `MaxDeliveryCount`.
    pub max_delivery_count: u32,
    /// `DefaultMessageTimeToLive`, in seconds, when shorter than the namespace default.
    pub default_ttl_seconds: Option<u32>,
    /// `DeadLetteringOnMessageExpiration`.
    pub dead_letter_on_expiration: bool,
}

/// The queues of the live tests (the conformance suite and the encrypted end-to-end tests).
pub const TEST_QUEUES: &[TestQueue] = &[
    TestQueue {
        name: "qr-conformance",
        sessions: false,
        lock_seconds: 5,
        max_delivery_count: 10,
        default_ttl_seconds: None,
        dead_letter_on_expiration: false,
    },
    TestQueue {
        name: "qr-conformance-sessions",
        sessions: true,
        lock_seconds: 5,
        max_delivery_count: 10,
        default_ttl_seconds: None,
        dead_letter_on_expiration: false,
    },
    TestQueue {
        name: "qr-conformance-max3",
        sessions: false,
        lock_seconds: 5,
        max_delivery_count: 3,
        default_ttl_seconds: None,
        dead_letter_on_expiration: false,
    },
    TestQueue {
        name: "qr-conformance-ttl",
        sessions: false,
        lock_seconds: 5,
        max_delivery_count: 10,
        default_ttl_seconds: Some(2),
        dead_letter_on_expiration: true,
    },
];

/// The test queue with these settings, if there is one.
pub fn test_queue(
    sessions: bool,
    lock: Duration,
    max_delivery_count: u32,
    default_ttl: Option<Duration>,
    dead_letter_on_expiration: bool,
) -> Option<&'static TestQueue> {
    TEST_QUEUES.iter().find(|queue| {
        queue.sessions == sessions
            && Duration::from_secs(u64::from(queue.lock_seconds)) == lock
            && queue.max_delivery_count == max_delivery_count
            && queue
                .default_ttl_seconds
                .map(|s| Duration::from_secs(u64::from(s)))
                == default_ttl
            && queue.dead_letter_on_expiration == dead_letter_on_expiration
    })
}

/// The configuration of the live tests, from [`TEST_CONNECTION_STRING_VARIABLE`]; `None` when
/// it is unset (the caller says the tests were skipped). Every test queue is checked on connect.
pub fn test_config() -> Option<AzureConfig> {
    let connection_string = std::env::var(TEST_CONNECTION_STRING_VARIABLE)
        .ok()
        .filter(|value| !value.trim().is_empty())?;
    let mut config = AzureConfig::new(AzureCredentials::connection_string(connection_string));
    for queue in TEST_QUEUES {
        if let Ok(name) = QueueName::new(queue.name) {
            config = config.with_queue(name, queue.sessions);
        }
    }
    Some(config)
}

/// Why a live test cannot run here.
pub fn missing_connection_string() -> String {
    format!(
        "the Azure Service Bus tests need {TEST_CONNECTION_STRING_VARIABLE} (a namespace or \
         the official emulator with the queues of docs/providers.md); nothing was run against Azure"
    )
}

/// How long [`purge`] waits for messages an earlier test left locked: a message lock of the
/// test queues lasts 5 s, so three of them is plenty.
const PURGE_PATIENCE: Duration = Duration::from_secs(15);

/// Empties a test queue: its messages, its dead-letter queue, its sessions (and their state),
/// and its scheduled messages.
///
/// Messages an earlier test left locked (received and never settled) cannot be received until
/// their lock passes: the purge keeps going until a peek shows the queue empty, or fails after
/// 15 s (`PURGE_PATIENCE`) saying how many are left. Sessions are emptied as `empty_sessions` says.
pub async fn purge(provider: &dyn QueueProvider, queue: &QueueName, sessions: bool) -> Result<()> {
    if sessions {
        empty_sessions(provider, queue).await?;
        return drain(provider, queue, true).await;
    }
    let deadline = tokio::time::Instant::now() + PURGE_PATIENCE;
    loop {
        drain(provider, queue, false).await?;
        let left = provider.peek(queue, PeekOptions::new(250)).await?;
        if left.is_empty() {
            break;
        }
        // Scheduled messages cannot be received before they are due; cancel them. The others
        // (locked, or arrived since) refuse cancelling and are received on the next pass.
        let mut cancelled = 0;
        for message in &left {
            let Some(sequence_number) = message.delivery.sequence_number else {
                continue;
            };
            match provider.cancel_scheduled(queue, sequence_number).await {
                Ok(()) => cancelled += 1,
                Err(error) if error.kind() == ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
        }
        if cancelled == left.len() {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(queue_core::QueueError::new(
                ErrorKind::Timeout,
                format!(
                    "{queue} still holds {} message(s) after {PURGE_PATIENCE:?} of purging",
                    left.len() - cancelled
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    drain(provider, queue, true).await
}

/// Receives and completes every message of every session, and clears their state.
///
/// A session-enabled queue cannot be peeked (Service Bus refuses a plain receiver on it), so
/// what an earlier test left locked is found by waiting: once no session is free, one more
/// accept waits past the longest session lock of the test queues.
async fn empty_sessions(provider: &dyn QueueProvider, queue: &QueueName) -> Result<()> {
    let quiet = Duration::from_millis(500);
    let longest_lock = TEST_QUEUES
        .iter()
        .map(|queue| Duration::from_secs(u64::from(queue.lock_seconds)))
        .max()
        .unwrap_or_default();
    loop {
        let session = match provider.accept_next_session(queue, quiet).await? {
            Some(session) => session,
            None => match provider
                .accept_next_session(queue, longest_lock + Duration::from_secs(1))
                .await?
            {
                Some(session) => session,
                None => return Ok(()),
            },
        };
        loop {
            let messages = session.receive(100, quiet).await?;
            if messages.is_empty() {
                break;
            }
            for message in &messages {
                provider.complete(&message.receipt).await?;
            }
        }
        session.set_state(None).await?;
        session.close().await?;
    }
}

async fn drain(provider: &dyn QueueProvider, queue: &QueueName, dead_letter: bool) -> Result<()> {
    let quiet = Duration::from_millis(500);
    loop {
        let options = queue_core::ReceiveOptions::new(100, quiet);
        let options = if dead_letter {
            options.dead_letter()
        } else {
            options
        };
        let messages = provider.receive(queue, options).await?;
        if messages.is_empty() {
            return Ok(());
        }
        let receipts: Vec<_> = messages.into_iter().map(|m| m.receipt).collect();
        for result in provider.complete_batch(&receipts).await? {
            // A lock lost while draining leaves the message for the next pass.
            if let Err(error) = result
                && !error.is_lock_lost()
            {
                return Err(error);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spec_of_the_suite_has_a_queue() {
        let lock = Duration::from_secs(5);
        assert_eq!(
            test_queue(false, lock, 10, None, false).map(|q| q.name),
            Some("qr-conformance")
        );
        assert_eq!(
            test_queue(true, lock, 10, None, false).map(|q| q.name),
            Some("qr-conformance-sessions")
        );
        assert_eq!(
            test_queue(false, lock, 3, None, false).map(|q| q.name),
            Some("qr-conformance-max3")
        );
        assert_eq!(
            test_queue(false, lock, 10, Some(Duration::from_secs(2)), true).map(|q| q.name),
            Some("qr-conformance-ttl")
        );
        assert_eq!(
            test_queue(false, Duration::from_secs(30), 10, None, false),
            None
        );
    }

    #[test]
    fn our_emulator_entities_declare_every_test_queue() {
        let entities = include_str!("../emulator-entities.toml");
        for queue in TEST_QUEUES {
            let entry = format!("name = \"{}\"", queue.name);
            let start = entities
                .find(&format!("{entry}\n"))
                .unwrap_or_else(|| panic!("{} is missing", queue.name));
            let end = entities[start..]
                .find("[[queues]]")
                .map_or(entities.len(), |end| start + end);
            let block = &entities[start..end];
            assert!(
                block.contains(&format!("lock_duration = \"{}s\"", queue.lock_seconds)),
                "{block}"
            );
            assert!(
                block.contains(&format!(
                    "max_delivery_count = {}",
                    queue.max_delivery_count
                )),
                "{block}"
            );
            assert_eq!(
                block.contains("requires_session = true"),
                queue.sessions,
                "{block}"
            );
            assert_eq!(
                block.contains("dead_lettering_on_message_expiration = true"),
                queue.dead_letter_on_expiration,
                "{block}"
            );
            match queue.default_ttl_seconds {
                Some(seconds) => assert!(
                    block.contains(&format!("default_message_time_to_live = \"{seconds}s\"")),
                    "{block}"
                ),
                None => assert!(!block.contains("default_message_time_to_live"), "{block}"),
            }
        }
    }

    #[test]
    fn the_emulator_config_declares_every_test_queue() {
        let config = include_str!("../emulator-config.json");
        for queue in TEST_QUEUES {
            let entry = format!("\"Name\": \"{}\"", queue.name);
            let start = config
                .find(&entry)
                .unwrap_or_else(|| panic!("{} is missing", queue.name));
            let end = config[start..]
                .find('}')
                .map_or(config.len(), |end| start + end);
            let block = &config[start..end];
            assert!(
                block.contains(&format!("\"RequiresSession\": {}", queue.sessions)),
                "{block}"
            );
            assert!(
                block.contains(&format!("\"LockDuration\": \"PT{}S\"", queue.lock_seconds)),
                "{block}"
            );
            assert!(
                block.contains(&format!(
                    "\"MaxDeliveryCount\": {}",
                    queue.max_delivery_count
                )),
                "{block}"
            );
            assert!(
                block.contains(&format!(
                    "\"DeadLetteringOnMessageExpiration\": {}",
                    queue.dead_letter_on_expiration
                )),
                "{block}"
            );
            if let Some(ttl) = queue.default_ttl_seconds {
                assert!(
                    block.contains(&format!("\"DefaultMessageTimeToLive\": \"PT{ttl}S\"")),
                    "{block}"
                );
            }
        }
    }
}
