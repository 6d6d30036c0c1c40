//! Broker-wide configuration and per-queue options.

use std::time::Duration;

use queue_core::QueueError;

/// The longest lock (message or session) a queue may ask for. Service Bus caps it at 5 minutes;
/// the embedded broker allows a day, which is plenty for tests and small services.
pub const MAX_LOCK_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// How one queue behaves: lock durations, delivery limits, sessions, expiry and capacity.
///
/// The defaults follow Azure Service Bus: 30 s locks, 10 deliveries, no sessions, no expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueOptions {
    lock_duration: Duration,
    max_delivery_count: u32,
    requires_session: bool,
    session_lock_duration: Duration,
    default_time_to_live: Option<Duration>,
    dead_letter_on_expiration: bool,
    capacity: usize,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            lock_duration: Duration::from_secs(30),
            max_delivery_count: 10,
            requires_session: false,
            session_lock_duration: Duration::from_secs(30),
            default_time_to_live: None,
            dead_letter_on_expiration: false,
            capacity: 1_000_000,
        }
    }
}

impl QueueOptions {
    /// How long a received message stays locked (invisible to others) before it is delivered
    /// again. Between 1 ms and [`MAX_LOCK_DURATION`].
    pub fn with_lock_duration(mut self, duration: Duration) -> Self {
        self.lock_duration = duration;
        self
    }

    /// How many deliveries a message gets before it is moved to the dead-letter queue with
    /// reason `MaxDeliveryCountExceeded`. At least 1.
    pub fn with_max_delivery_count(mut self, count: u32) -> Self {
        self.max_delivery_count = count;
        self
    }

    /// Makes this a session queue: every message needs a session id, and messages are received
    /// through an accepted session, in order.
    pub fn with_sessions(mut self, requires_session: bool) -> Self {
        self.requires_session = requires_session;
        self
    }

    /// How long an accepted session stays locked without renewal.
    pub fn with_session_lock_duration(mut self, duration: Duration) -> Self {
        self.session_lock_duration = duration;
        self
    }

    /// The time to live of messages that do not set their own (the shorter of the two applies).
    pub fn with_default_time_to_live(mut self, ttl: Option<Duration>) -> Self {
        self.default_time_to_live = ttl;
        self
    }

    /// Whether expired messages go to the dead-letter queue (reason `TTLExpiredException`)
    /// instead of being dropped.
    pub fn with_dead_letter_on_expiration(mut self, yes: bool) -> Self {
        self.dead_letter_on_expiration = yes;
        self
    }

    /// The most messages the queue holds: ready, scheduled and locked together. The dead-letter
    /// queue is not counted: moving a message there never fails.
    pub fn with_capacity(mut self, max_messages: usize) -> Self {
        self.capacity = max_messages;
        self
    }

    /// The message lock duration.
    pub fn lock_duration(&self) -> Duration {
        self.lock_duration
    }

    /// The maximum delivery count.
    pub fn max_delivery_count(&self) -> u32 {
        self.max_delivery_count
    }

    /// Whether this is a session queue.
    pub fn requires_session(&self) -> bool {
        self.requires_session
    }

    /// The session lock duration.
    pub fn session_lock_duration(&self) -> Duration {
        self.session_lock_duration
    }

    /// The default time to live.
    pub fn default_time_to_live(&self) -> Option<Duration> {
        self.default_time_to_live
    }

    /// Whether expired messages are dead-lettered.
    pub fn dead_letter_on_expiration(&self) -> bool {
        self.dead_letter_on_expiration
    }

    /// The capacity in messages.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Checks the options, naming every field that is out of range.
    pub fn validate(&self) -> Result<(), QueueError> {
        let mut problems = Vec::new();
        let lock_range = Duration::from_millis(1)..=MAX_LOCK_DURATION;
        if !lock_range.contains(&self.lock_duration) {
            problems.push("lock_duration must be between 1 ms and 24 h");
        }
        if !lock_range.contains(&self.session_lock_duration) {
            problems.push("session_lock_duration must be between 1 ms and 24 h");
        }
        if self.max_delivery_count == 0 {
            problems.push("max_delivery_count must be at least 1");
        }
        if self.capacity == 0 {
            problems.push("capacity must be at least 1");
        }
        if self.default_time_to_live == Some(Duration::ZERO) {
            problems.push("default_time_to_live must be positive");
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(QueueError::new(
                queue_core::ErrorKind::Config,
                format!("invalid queue options: {}", problems.join("; ")),
            ))
        }
    }
}

/// How the broker as a whole behaves.
#[derive(Debug, Clone)]
pub struct MemoryConfig {
    auto_create_queues: bool,
    default_queue_options: QueueOptions,
    max_message_bytes: usize,
    max_queues: usize,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            auto_create_queues: true,
            default_queue_options: QueueOptions::default(),
            // The Service Bus standard tier limit, so that what passes here passes there.
            max_message_bytes: 256 * 1024,
            max_queues: 10_000,
        }
    }
}

impl MemoryConfig {
    /// Whether sending to an unknown queue creates it with the default options (the default),
    /// or fails with `NotFound` like a real broker.
    pub fn with_auto_create_queues(mut self, yes: bool) -> Self {
        self.auto_create_queues = yes;
        self
    }

    /// The options of queues created without explicit options.
    pub fn with_default_queue_options(mut self, options: QueueOptions) -> Self {
        self.default_queue_options = options;
        self
    }

    /// The broker's message size limit, as [`queue_core::Message::approximate_size`] counts it
    /// (default 256 KiB, the Service Bus standard tier's). Like every provider, the broker
    /// accepts messages up to this limit less [`queue_core::DEAD_LETTER_RESERVE`], the room a
    /// dead-letter reason takes, so that what it accepts can always be dead-lettered.
    pub fn with_max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = bytes;
        self
    }

    /// The most queues the broker holds.
    pub fn with_max_queues(mut self, count: usize) -> Self {
        self.max_queues = count;
        self
    }

    /// Whether unknown queues are created on first send.
    pub fn auto_create_queues(&self) -> bool {
        self.auto_create_queues
    }

    /// The options of implicitly created queues.
    pub fn default_queue_options(&self) -> &QueueOptions {
        &self.default_queue_options
    }

    /// The broker's message size limit.
    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

    /// The largest message the broker accepts: its limit less the dead-letter reserve.
    pub fn accepted_message_bytes(&self) -> usize {
        self.max_message_bytes
            .saturating_sub(queue_core::DEAD_LETTER_RESERVE)
    }

    /// The queue count limit.
    pub fn max_queues(&self) -> usize {
        self.max_queues
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_service_bus() {
        let options = QueueOptions::default();
        assert_eq!(options.lock_duration(), Duration::from_secs(30));
        assert_eq!(options.max_delivery_count(), 10);
        assert!(!options.requires_session());
        options.validate().unwrap();
    }

    #[test]
    fn validation_names_every_bad_field() {
        let error = QueueOptions::default()
            .with_max_delivery_count(0)
            .with_capacity(0)
            .with_lock_duration(Duration::ZERO)
            .validate()
            .unwrap_err();
        assert_eq!(error.kind(), queue_core::ErrorKind::Config);
        for field in ["max_delivery_count", "capacity", "lock_duration"] {
            assert!(
                error.message().contains(field),
                "{field} missing in {error}"
            );
        }
    }
}
