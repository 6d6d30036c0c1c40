//! Broker-wide configuration and per-queue options.

use std::time::Duration;

use queue_core::config::{ConfigError, Problems};
use queue_core::{DEAD_LETTER_RESERVE, QueueError, QueueName};
use serde::Deserialize;

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

    /// How long a session receiver holds its session before another receiver may take it,
    /// unless renewed.
    pub fn session_lock_duration(&self) -> Duration {
        self.session_lock_duration
    }

    /// How long a message lives when its sender set no time to live; `None`: until received.
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

    /// Every field that is out of range, with what it must be.
    pub fn problems(&self) -> Vec<(&'static str, &'static str)> {
        let mut problems = Vec::new();
        let lock_range = Duration::from_millis(1)..=MAX_LOCK_DURATION;
        if !lock_range.contains(&self.lock_duration) {
            problems.push(("lock_duration", "must be between 1ms and 24h"));
        }
        if !lock_range.contains(&self.session_lock_duration) {
            problems.push(("session_lock_duration", "must be between 1ms and 24h"));
        }
        if self.max_delivery_count == 0 {
            problems.push(("max_delivery_count", "must be at least 1"));
        }
        if self.capacity == 0 {
            problems.push(("capacity", "must be at least 1"));
        }
        if self.default_time_to_live == Some(Duration::ZERO) {
            problems.push(("default_time_to_live", "must be positive"));
        }
        problems
    }

    /// Checks the options, naming every field that is out of range.
    pub fn validate(&self) -> Result<(), QueueError> {
        let problems = self.problems();
        if problems.is_empty() {
            return Ok(());
        }
        let named: Vec<String> = problems
            .iter()
            .map(|(field, reason)| format!("{field} {reason}"))
            .collect();
        Err(QueueError::new(
            queue_core::ErrorKind::Config,
            format!("invalid queue options: {}", named.join("; ")),
        ))
    }
}

/// How the broker as a whole behaves, and the queues it starts with.
///
/// Built in code (the `with_*` methods) or read from a configuration section
/// ([`from_section`](Self::from_section), the `[memory]` table of queue-runtime's file).
#[derive(Debug, Clone)]
pub struct MemoryConfig {
    auto_create_queues: bool,
    default_queue_options: QueueOptions,
    max_message_bytes: usize,
    max_queues: usize,
    queues: Vec<(QueueName, QueueOptions)>,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            auto_create_queues: true,
            default_queue_options: QueueOptions::default(),
            // The Service Bus standard tier limit, so that what passes here passes there.
            max_message_bytes: 256 * 1024,
            max_queues: 10_000,
            queues: Vec::new(),
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

    /// A queue created when the provider is built ([`MemoryProvider::connect`]).
    ///
    /// [`MemoryProvider::connect`]: crate::MemoryProvider::connect
    pub fn with_queue(mut self, name: QueueName, options: QueueOptions) -> Self {
        self.queues.push((name, options));
        self
    }

    /// The queues created when the provider is built.
    pub fn queues(&self) -> &[(QueueName, QueueOptions)] {
        &self.queues
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

impl MemoryConfig {
    /// Checks the whole configuration, naming every invalid field by its path in the section.
    pub fn check(&self) -> Result<(), ConfigError> {
        let mut problems = Problems::new();
        self.note_problems(&mut problems);
        problems.finish(Some(()))
    }

    fn note_problems(&self, problems: &mut Problems) {
        self.note_broker_problems(problems);
        let mut seen = std::collections::HashSet::new();
        for (index, (name, options)) in self.queues.iter().enumerate() {
            self.note_queue_problems(problems, index, name, options, &mut seen);
        }
    }

    fn note_broker_problems(&self, problems: &mut Problems) {
        if self.max_message_bytes <= DEAD_LETTER_RESERVE {
            problems.push(
                "max_message_bytes",
                format!(
                    "must be more than {DEAD_LETTER_RESERVE} (the room kept for a dead-letter \
                     reason)"
                ),
            );
        }
        for (field, reason) in section_fields(&self.default_queue_options) {
            problems.push(field, reason);
        }
    }

    /// A declared queue's problems, at `index` in the section; a field it inherits from the
    /// broker's defaults is reported there, once.
    fn note_queue_problems<'a>(
        &self,
        problems: &mut Problems,
        index: usize,
        name: &'a QueueName,
        options: &QueueOptions,
        seen: &mut std::collections::HashSet<&'a QueueName>,
    ) {
        if !seen.insert(name) {
            problems.push(
                format!("queues[{index}].name"),
                format!("queue {name:?} is declared twice"),
            );
        }
        let inherited = section_fields(&self.default_queue_options);
        for (field, reason) in section_fields(options) {
            let from_default = inherited.iter().any(|(bad, _)| *bad == field)
                && default_value_of(field, options, &self.default_queue_options);
            if !from_default {
                problems.push(format!("queues[{index}].{field}"), reason);
            }
        }
    }

    /// Reads the `[memory]` section of a configuration (any serde format: TOML, JSON, ...),
    /// then the `QUEUE_RUNTIME_MEMORY_*` variables that `env` finds, which override it:
    /// `MAX_MESSAGE_BYTES`, `AUTO_CREATE_QUEUES`, `LOCK_DURATION`, `MAX_DELIVERY_COUNT`.
    /// Every problem is reported, with its path in the section (or the variable's name).
    ///
    /// ```
    /// use queue_memory::MemoryConfig;
    ///
    /// let section: toml::Value = toml::from_str(r#"
    ///     lock_duration = "10s"
    ///     [[queues]]
    ///     name = "pr-events"
    ///     sessions = true
    /// "#)?;
    /// let config = MemoryConfig::from_section(section, &|_| None)?;
    /// assert_eq!(config.queues()[0].0.as_str(), "pr-events");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_section<'de, D: serde::Deserializer<'de>>(
        section: D,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut raw = MemorySection::deserialize(section)
            .map_err(|error| ConfigError::single("", error.to_string()))?;
        let mut problems = Problems::new();
        raw.apply_env(env, &mut problems);
        let defaults = MemoryConfig::default();
        let lock = raw
            .lock_duration
            .unwrap_or(defaults.default_queue_options.lock_duration());
        let max_delivery_count = raw
            .max_delivery_count
            .unwrap_or(defaults.default_queue_options.max_delivery_count());
        let default_options = QueueOptions::default()
            .with_lock_duration(lock)
            .with_session_lock_duration(lock)
            .with_max_delivery_count(max_delivery_count);
        let mut config = MemoryConfig::default()
            .with_default_queue_options(default_options.clone())
            .with_max_message_bytes(raw.max_message_bytes.unwrap_or(defaults.max_message_bytes))
            .with_auto_create_queues(
                raw.auto_create_queues
                    .unwrap_or(defaults.auto_create_queues),
            );
        let mut declared = Vec::new();
        for (index, queue) in raw.queues.into_iter().enumerate() {
            let lock = queue.lock_duration.unwrap_or(lock);
            let mut options = default_options
                .clone()
                .with_sessions(queue.sessions)
                .with_lock_duration(lock)
                .with_session_lock_duration(lock)
                .with_max_delivery_count(queue.max_delivery_count.unwrap_or(max_delivery_count))
                .with_default_time_to_live(queue.default_time_to_live)
                .with_dead_letter_on_expiration(queue.dead_letter_on_expiration);
            if let Some(capacity) = queue.capacity {
                options = options.with_capacity(capacity);
            }
            declared.push((index, QueueName::new(&queue.name), options));
        }
        config.note_broker_problems(&mut problems);
        let mut names = Vec::new();
        for (index, name, options) in declared {
            match name {
                Ok(name) => names.push((index, name, options)),
                Err(error) => problems.push(format!("queues[{index}].name"), error.message()),
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (index, name, options) in &names {
            config.note_queue_problems(&mut problems, *index, name, options, &mut seen);
        }
        for (_, name, options) in names {
            config = config.with_queue(name, options);
        }
        problems.finish(Some(config))
    }
}

/// The problems of queue options under the section's field names (one lock for messages and
/// sessions, reported once).
fn section_fields(options: &QueueOptions) -> Vec<(&'static str, &'static str)> {
    let mut fields: Vec<(&'static str, &'static str)> = Vec::new();
    for (field, reason) in options.problems() {
        let field = match field {
            "session_lock_duration" => "lock_duration",
            other => other,
        };
        if !fields.iter().any(|(known, _)| *known == field) {
            fields.push((field, reason));
        }
    }
    fields
}

/// Whether a queue's `field` holds the broker default's value (it was inherited, not set).
fn default_value_of(field: &str, options: &QueueOptions, defaults: &QueueOptions) -> bool {
    match field {
        "lock_duration" => {
            options.lock_duration() == defaults.lock_duration()
                && options.session_lock_duration() == defaults.session_lock_duration()
        }
        "max_delivery_count" => options.max_delivery_count() == defaults.max_delivery_count(),
        "capacity" => options.capacity() == defaults.capacity(),
        "default_time_to_live" => options.default_time_to_live() == defaults.default_time_to_live(),
        _ => false,
    }
}

/// The `[memory]` section as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MemorySection {
    max_message_bytes: Option<usize>,
    auto_create_queues: Option<bool>,
    #[serde(default, with = "humantime_serde")]
    lock_duration: Option<Duration>,
    max_delivery_count: Option<u32>,
    #[serde(default)]
    queues: Vec<QueueSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueueSection {
    name: String,
    #[serde(default)]
    sessions: bool,
    #[serde(default, with = "humantime_serde")]
    lock_duration: Option<Duration>,
    max_delivery_count: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    default_time_to_live: Option<Duration>,
    #[serde(default)]
    dead_letter_on_expiration: bool,
    capacity: Option<usize>,
}

impl MemorySection {
    fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>, problems: &mut Problems) {
        const PREFIX: &str = "QUEUE_RUNTIME_MEMORY_";
        let mut read = |name: &str, parse: &mut dyn FnMut(&str) -> Result<(), String>| {
            let variable = format!("{PREFIX}{name}");
            if let Some(value) = env(&variable)
                && let Err(reason) = parse(&value)
            {
                problems.push(variable, reason);
            }
        };
        read("MAX_MESSAGE_BYTES", &mut |value| {
            self.max_message_bytes = Some(
                value
                    .parse()
                    .map_err(|_| format!("{value:?} is not a number of bytes"))?,
            );
            Ok(())
        });
        read("AUTO_CREATE_QUEUES", &mut |value| {
            self.auto_create_queues = Some(match value {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => return Err(format!("{value:?} is not true or false")),
            });
            Ok(())
        });
        read("LOCK_DURATION", &mut |value| {
            let duration = humantime::parse_duration(value)
                .map_err(|error| format!("{value:?} is not a duration such as 30s: {error}"))?;
            self.lock_duration = Some(duration);
            Ok(())
        });
        read("MAX_DELIVERY_COUNT", &mut |value| {
            self.max_delivery_count = Some(
                value
                    .parse()
                    .map_err(|_| format!("{value:?} is not a whole number"))?,
            );
            Ok(())
        });
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

    fn section(text: &str) -> toml::Value {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn a_full_section_parses() {
        let config = MemoryConfig::from_section(
            section(
                r#"
                max_message_bytes = 4096
                auto_create_queues = false
                lock_duration = "10s"
                max_delivery_count = 4
                [[queues]]
                name = "pr-events"
                sessions = true
                lock_duration = "5s"
                max_delivery_count = 3
                default_time_to_live = "1h"
                dead_letter_on_expiration = true
                capacity = 500
                [[queues]]
                name = "plain"
                "#,
            ),
            &|_| None,
        )
        .unwrap();
        assert_eq!(config.max_message_bytes(), 4096);
        assert!(!config.auto_create_queues());
        assert_eq!(
            config.default_queue_options().lock_duration(),
            Duration::from_secs(10)
        );
        let (name, options) = &config.queues()[0];
        assert_eq!(name.as_str(), "pr-events");
        assert!(options.requires_session() && options.dead_letter_on_expiration());
        assert_eq!(options.session_lock_duration(), Duration::from_secs(5));
        assert_eq!(options.max_delivery_count(), 3);
        assert_eq!(
            options.default_time_to_live(),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(options.capacity(), 500);
        let (_, plain) = &config.queues()[1];
        assert_eq!(
            plain.lock_duration(),
            Duration::from_secs(10),
            "the section's default"
        );
        assert_eq!(plain.max_delivery_count(), 4);
    }

    #[test]
    fn every_bad_field_is_reported_with_its_path() {
        let error = MemoryConfig::from_section(
            section(
                r#"
                max_message_bytes = 10
                max_delivery_count = 0
                [[queues]]
                name = "bad name"
                [[queues]]
                name = "ok"
                lock_duration = "0s"
                capacity = 0
                default_time_to_live = "0s"
                [[queues]]
                name = "ok"
                "#,
            ),
            &|name| (name == "QUEUE_RUNTIME_MEMORY_LOCK_DURATION").then(|| "soon".to_owned()),
        )
        .unwrap_err();
        let paths: Vec<&str> = error.problems().iter().map(|p| p.path.as_str()).collect();
        for expected in [
            "QUEUE_RUNTIME_MEMORY_LOCK_DURATION",
            "queues[0].name",
            "max_message_bytes",
            "max_delivery_count",
            "queues[1].lock_duration",
            "queues[1].capacity",
            "queues[1].default_time_to_live",
            "queues[2].name",
        ] {
            assert!(
                paths.contains(&expected),
                "{expected} missing from {paths:?}"
            );
        }
    }

    #[test]
    fn unknown_fields_and_wrong_types_are_refused() {
        let unknown = MemoryConfig::from_section(section("colour = \"blue\""), &|_| None);
        assert!(unknown.unwrap_err().to_string().contains("colour"));
        let wrong = MemoryConfig::from_section(section("lock_duration = 5"), &|_| None);
        assert!(wrong.is_err());
    }

    #[test]
    fn the_environment_overrides_the_section() {
        let config =
            MemoryConfig::from_section(section("max_delivery_count = 4"), &|name| match name {
                "QUEUE_RUNTIME_MEMORY_MAX_DELIVERY_COUNT" => Some("7".to_owned()),
                "QUEUE_RUNTIME_MEMORY_AUTO_CREATE_QUEUES" => Some("false".to_owned()),
                _ => None,
            })
            .unwrap();
        assert_eq!(config.default_queue_options().max_delivery_count(), 7);
        assert!(!config.auto_create_queues());
    }
}
