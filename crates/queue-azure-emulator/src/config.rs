//! The emulator's configuration: broker settings and the queues it serves, from code or from a
//! TOML file whose keys follow Service Bus entity properties.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use queue_core::QueueName;
use queue_memory::{MemoryConfig, QueueOptions};
use serde::Deserialize;

use crate::error::EmulatorError;

/// The frame size Service Bus announces on its Standard tier.
pub const DEFAULT_MAX_FRAME_SIZE: u32 = 256 * 1024;
/// How long a next-available session receiver waits for a session when it names no wait of its
/// own (the service holds such an attach for about a minute).
pub const DEFAULT_SESSION_WAIT: Duration = Duration::from_secs(60);
/// The longest `answer_delay` accepted.
const MAX_ANSWER_DELAY: Duration = Duration::from_secs(1);
/// The Service Bus Standard tier's message size limit.
pub const DEFAULT_MAX_MESSAGE_SIZE: u32 = 256 * 1024;

/// The emulator's configuration: broker-wide settings and the queues.
///
/// ```
/// use std::time::Duration;
/// use queue_azure_emulator::{EmulatorConfig, QueueConfig};
///
/// let config = EmulatorConfig::from_toml(r#"
///     [emulator]
///     session_wait = "5s"
///
///     [[queues]]
///     name = "orders"
///     lock_duration = "30s"
///     max_delivery_count = 3
///
///     [[queues]]
///     name = "pull-requests"
///     requires_session = true
/// "#)?;
/// assert_eq!(config.queues().len(), 2);
///
/// let same = EmulatorConfig::new()
///     .with_session_wait(Duration::from_secs(5))
///     .with_queue(QueueConfig::new("orders").with_lock_duration(Duration::from_secs(30)).with_max_delivery_count(3))
///     .with_queue(QueueConfig::new("pull-requests").with_sessions(true));
/// assert_eq!(same.queues()[1].name(), "pull-requests");
/// # Ok::<(), queue_azure_emulator::EmulatorError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmulatorConfig {
    #[serde(default, rename = "emulator")]
    settings: Settings,
    #[serde(default)]
    queues: Vec<QueueConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Settings {
    max_frame_size: u32,
    #[serde(with = "humantime_serde")]
    session_wait: Duration,
    #[serde(with = "humantime_serde")]
    answer_delay: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            session_wait: DEFAULT_SESSION_WAIT,
            answer_delay: Duration::ZERO,
        }
    }
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig::new()
    }
}

impl EmulatorConfig {
    /// No queues, default settings.
    pub fn new() -> Self {
        EmulatorConfig {
            settings: Settings::default(),
            queues: Vec::new(),
        }
    }

    /// Reads a configuration from TOML text, checking every field.
    pub fn from_toml(text: &str) -> Result<Self, EmulatorError> {
        let config: EmulatorConfig =
            toml::from_str(text).map_err(|error| EmulatorError::Config(error.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Reads a configuration from a TOML file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, EmulatorError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| EmulatorError::Read {
            path: path.to_owned(),
            source,
        })?;
        EmulatorConfig::from_toml(&text).map_err(|error| match error {
            EmulatorError::Config(message) => {
                EmulatorError::Config(format!("{}: {message}", path.display()))
            }
            other => other,
        })
    }

    /// Adds a queue.
    pub fn with_queue(mut self, queue: QueueConfig) -> Self {
        self.queues.push(queue);
        self
    }

    /// The largest frame the broker accepts (and announces in its `open`); at least 4096.
    pub fn with_max_frame_size(mut self, bytes: u32) -> Self {
        self.settings.max_frame_size = bytes;
        self
    }

    /// How long a next-available session receiver that names no `com.microsoft:timeout` waits
    /// for a session before its link is detached with `com.microsoft:timeout`.
    pub fn with_session_wait(mut self, wait: Duration) -> Self {
        self.settings.session_wait = wait;
        self
    }

    /// How long the broker waits before it takes in a message or request the client has
    /// transferred (and so before it answers), like a namespace across a network. Zero by
    /// default. Clients built on fe2o3-amqp 0.14.1 (azservicebus 0.25) lose the outcome of a
    /// transfer answered before they have recorded it, which an answer from loopback can be
    /// when the OS preempts the sending thread; a few milliseconds make that as unlikely as it
    /// is against Service Bus itself (see the crate's README).
    pub fn with_answer_delay(mut self, delay: Duration) -> Self {
        self.settings.answer_delay = delay;
        self
    }

    /// The queues.
    pub fn queues(&self) -> &[QueueConfig] {
        &self.queues
    }

    /// The largest frame accepted.
    pub fn max_frame_size(&self) -> u32 {
        self.settings.max_frame_size
    }

    /// The default wait for a next-available session.
    pub fn session_wait(&self) -> Duration {
        self.settings.session_wait
    }

    /// The wait before a transferred message or request is taken in.
    pub fn answer_delay(&self) -> Duration {
        self.settings.answer_delay
    }

    /// Checks every field, naming each problem with its path.
    pub fn validate(&self) -> Result<(), EmulatorError> {
        let mut problems = Vec::new();
        if self.settings.max_frame_size < 4096 {
            problems.push("emulator.max_frame_size: must be at least 4096".to_owned());
        }
        if self.settings.answer_delay > MAX_ANSWER_DELAY {
            problems.push(format!(
                "emulator.answer_delay: at most {MAX_ANSWER_DELAY:?} (it delays every transfer)"
            ));
        }
        let mut names = HashSet::new();
        for (index, queue) in self.queues.iter().enumerate() {
            let path = format!("queues[{index}]");
            queue.check(&path, &mut problems);
            if !names.insert(queue.name.to_ascii_lowercase()) {
                problems.push(format!(
                    "{path}.name: {:?} is configured twice (names match without case)",
                    queue.name
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(EmulatorError::Config(problems.join("; ")))
        }
    }

    /// The embedded broker's configuration for these queues.
    pub(crate) fn memory_config(&self) -> MemoryConfig {
        let largest = self
            .queues
            .iter()
            .map(|queue| queue.max_message_size)
            .max()
            .unwrap_or(DEFAULT_MAX_MESSAGE_SIZE);
        // The engine counts a message as its encoded bytes plus its ids; the wire limit is
        // checked on the encoded bytes before, so leave the engine room for the ids.
        MemoryConfig::default()
            .with_auto_create_queues(false)
            .with_max_message_bytes(largest as usize + 4096)
    }
}

/// One queue and its properties, named as Service Bus names them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    name: String,
    #[serde(default = "default_lock_duration", with = "humantime_serde")]
    lock_duration: Duration,
    #[serde(default = "default_max_delivery_count")]
    max_delivery_count: u32,
    #[serde(default)]
    requires_session: bool,
    #[serde(default, with = "humantime_serde")]
    default_message_time_to_live: Option<Duration>,
    #[serde(default)]
    dead_lettering_on_message_expiration: bool,
    #[serde(default = "default_max_message_size")]
    max_message_size: u32,
    #[serde(default = "default_max_messages")]
    max_messages: usize,
}

fn default_lock_duration() -> Duration {
    Duration::from_secs(60)
}

fn default_max_delivery_count() -> u32 {
    10
}

fn default_max_message_size() -> u32 {
    DEFAULT_MAX_MESSAGE_SIZE
}

fn default_max_messages() -> usize {
    1_000_000
}

impl QueueConfig {
    /// A queue with Service Bus's defaults: a 60-second lock, 10 deliveries, no sessions, no
    /// expiry, 256 KiB messages; at most a million messages.
    pub fn new(name: impl Into<String>) -> Self {
        QueueConfig {
            name: name.into(),
            lock_duration: default_lock_duration(),
            max_delivery_count: default_max_delivery_count(),
            requires_session: false,
            default_message_time_to_live: None,
            dead_lettering_on_message_expiration: false,
            max_message_size: default_max_message_size(),
            max_messages: default_max_messages(),
        }
    }

    /// How long a message (or a session) stays locked without renewal. Service Bus allows
    /// 5 seconds to 5 minutes; the emulator takes 1 ms to 5 minutes, so tests can wait a lock out.
    pub fn with_lock_duration(mut self, duration: Duration) -> Self {
        self.lock_duration = duration;
        self
    }

    /// Deliveries before a message moves to the dead-letter queue (`MaxDeliveryCountExceeded`).
    pub fn with_max_delivery_count(mut self, count: u32) -> Self {
        self.max_delivery_count = count;
        self
    }

    /// Whether the queue requires sessions.
    pub fn with_sessions(mut self, requires_session: bool) -> Self {
        self.requires_session = requires_session;
        self
    }

    /// The time to live of messages that set none (or a longer one).
    pub fn with_default_message_time_to_live(mut self, ttl: Option<Duration>) -> Self {
        self.default_message_time_to_live = ttl;
        self
    }

    /// Whether expired messages move to the dead-letter queue (`TTLExpiredException`).
    pub fn with_dead_lettering_on_message_expiration(mut self, yes: bool) -> Self {
        self.dead_lettering_on_message_expiration = yes;
        self
    }

    /// The largest encoded message accepted, in bytes (announced as the links'
    /// `max-message-size`); 1 KiB to 100 MiB.
    pub fn with_max_message_size(mut self, bytes: u32) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// The most messages the queue holds (active, scheduled and locked; the dead-letter queue is
    /// not counted). A full queue refuses sends with `amqp:resource-limit-exceeded`.
    pub fn with_max_messages(mut self, count: usize) -> Self {
        self.max_messages = count;
        self
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the queue requires sessions.
    pub fn requires_session(&self) -> bool {
        self.requires_session
    }

    /// The largest message accepted, in bytes.
    pub fn max_message_size(&self) -> u32 {
        self.max_message_size
    }

    fn check(&self, path: &str, problems: &mut Vec<String>) {
        if let Err(error) = QueueName::new(&self.name) {
            problems.push(format!("{path}.name: {}", error.message()));
        }
        if self.lock_duration.is_zero() || self.lock_duration > Duration::from_secs(300) {
            problems.push(format!(
                "{path}.lock_duration: must be more than zero and at most 5 minutes"
            ));
        }
        if self.max_delivery_count == 0 {
            problems.push(format!("{path}.max_delivery_count: must be at least 1"));
        }
        if self.default_message_time_to_live == Some(Duration::ZERO) {
            problems.push(format!(
                "{path}.default_message_time_to_live: must be more than zero"
            ));
        }
        if !(1024..=100 * 1024 * 1024).contains(&self.max_message_size) {
            problems.push(format!(
                "{path}.max_message_size: must be between 1024 and 104857600 bytes"
            ));
        }
        if self.max_messages == 0 {
            problems.push(format!("{path}.max_messages: must be at least 1"));
        }
    }

    /// The embedded broker's options for this queue.
    pub(crate) fn queue_options(&self) -> QueueOptions {
        QueueOptions::default()
            .with_lock_duration(self.lock_duration)
            .with_session_lock_duration(self.lock_duration)
            .with_max_delivery_count(self.max_delivery_count)
            .with_sessions(self.requires_session)
            .with_default_time_to_live(self.default_message_time_to_live)
            .with_dead_letter_on_expiration(self.dead_lettering_on_message_expiration)
            .with_capacity(self.max_messages)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_reads_from_toml() {
        let config = EmulatorConfig::from_toml(
            r#"
            [emulator]
            max_frame_size = 65536
            session_wait = "2s"
            answer_delay = "10ms"

            [[queues]]
            name = "q"
            lock_duration = "5s"
            max_delivery_count = 2
            requires_session = true
            default_message_time_to_live = "1h"
            dead_lettering_on_message_expiration = true
            max_message_size = 1048576
            max_messages = 10
            "#,
        )
        .unwrap();
        assert_eq!(config.max_frame_size(), 65536);
        assert_eq!(config.session_wait(), Duration::from_secs(2));
        assert_eq!(config.answer_delay(), Duration::from_millis(10));
        assert_eq!(EmulatorConfig::new().answer_delay(), Duration::ZERO);
        let queue = &config.queues()[0];
        let options = queue.queue_options();
        assert_eq!(options.lock_duration(), Duration::from_secs(5));
        assert_eq!(options.max_delivery_count(), 2);
        assert!(options.requires_session());
        assert_eq!(
            options.default_time_to_live(),
            Some(Duration::from_secs(3600))
        );
        assert!(options.dead_letter_on_expiration());
        assert_eq!(options.capacity(), 10);
        assert_eq!(queue.max_message_size(), 1_048_576);
        assert!(config.memory_config().max_message_bytes() > 1_048_576);
    }

    #[test]
    fn every_problem_is_named() {
        let error = EmulatorConfig::new()
            .with_max_frame_size(100)
            .with_answer_delay(Duration::from_secs(2))
            .with_queue(QueueConfig::new("Orders"))
            .with_queue(
                QueueConfig::new("orders")
                    .with_max_delivery_count(0)
                    .with_lock_duration(Duration::from_secs(600)),
            )
            .with_queue(QueueConfig::new("bad name").with_max_message_size(10))
            .validate()
            .unwrap_err()
            .to_string();
        for expected in [
            "emulator.max_frame_size",
            "emulator.answer_delay",
            "queues[1].name",
            "queues[1].max_delivery_count",
            "queues[1].lock_duration",
            "queues[2].name",
            "queues[2].max_message_size",
        ] {
            assert!(error.contains(expected), "{expected} missing in {error}");
        }
        assert!(EmulatorConfig::from_toml("[[queues]]\nname = \"q\"\ncolour = 1").is_err());
    }
}
