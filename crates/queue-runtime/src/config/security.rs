//! `[security]`: where the keys come from, how they are cached, the queues' policies.

use std::sync::Arc;
use std::time::Duration;

use queue_core::config::Problems;
use queue_keys::{EnvKeys, FileKeys, KeyRing, KeyRingOptions, KeySource};
use serde::Deserialize;

use super::ConfigError;
use crate::security::{QueuePolicy, Security, UnsealedPolicy};

/// Where the keys come from, how they are cached, and the queues' policies.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SecuritySettings {
    /// The key source.
    pub keys: KeySourceSettings,
    /// How often the key source is read again.
    pub refresh_interval: Duration,
    /// How many completed envelope ids the replay guard remembers.
    pub replay_capacity: u64,
    /// The policy of queues without their own.
    pub default_policy: QueuePolicy,
    /// Queues with their own policy.
    pub queues: Vec<(queue_core::QueueName, QueuePolicy)>,
}

/// A configured key source.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeySourceSettings {
    /// A keyset file, read again every refresh interval.
    File(std::path::PathBuf),
    /// An environment variable holding a base64 (or plain) JSON keyset.
    Env(String),
}

impl SecuritySettings {
    /// Keys from `keys`, default caching, the default (secure) policy everywhere.
    pub fn new(keys: KeySourceSettings) -> Self {
        SecuritySettings {
            keys,
            refresh_interval: KeyRingOptions::default().refresh_interval,
            replay_capacity: crate::security::DEFAULT_REPLAY_CAPACITY,
            default_policy: QueuePolicy::default(),
            queues: Vec::new(),
        }
    }

    /// Checks that the source holds a valid keyset now, and builds the client's [`Security`].
    pub fn build(&self) -> Result<Security, ConfigError> {
        // Read once now, so a missing or invalid keyset fails at startup with its path.
        let (source, checked, path): (Arc<dyn KeySource>, _, _) = match &self.keys {
            KeySourceSettings::File(file) => {
                let source = FileKeys::new(file);
                let checked = source.read();
                (Arc::new(source), checked, "security.key_file")
            }
            KeySourceSettings::Env(variable) => {
                let source = EnvKeys::new(variable);
                let checked = source.read();
                (Arc::new(source), checked, "security.key_env")
            }
        };
        checked.map_err(|error| ConfigError::single(path, error.to_string()))?;
        let ring = KeyRing::with_options(
            source,
            KeyRingOptions::default().with_refresh_interval(self.refresh_interval),
        );
        let mut security = Security::new(ring)
            .with_default_policy(self.default_policy)
            .with_replay_capacity(self.replay_capacity);
        for (queue, policy) in &self.queues {
            security = security.with_queue_policy(queue.clone(), *policy);
        }
        Ok(security)
    }
}

/// The section as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SecuritySection {
    pub(super) key_file: Option<String>,
    pub(super) key_env: Option<String>,
    #[serde(default, with = "humantime_serde")]
    refresh_interval: Option<Duration>,
    replay_capacity: Option<u64>,
    // The default policy's fields (serde's `flatten` would defeat `deny_unknown_fields`).
    seal: Option<bool>,
    unsealed: Option<UnsealedPolicy>,
    #[serde(default, with = "humantime_serde")]
    freshness_window: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    clock_skew: Option<Duration>,
    #[serde(default)]
    queues: Vec<QueuePolicySection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueuePolicySection {
    name: String,
    seal: Option<bool>,
    unsealed: Option<UnsealedPolicy>,
    #[serde(default, with = "humantime_serde")]
    freshness_window: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    clock_skew: Option<Duration>,
}

impl SecuritySection {
    /// The settings, every invalid field noted under `security.`.
    pub(super) fn read(self, problems: &mut Problems) -> Option<SecuritySettings> {
        let raw = self;
        let keys = match (raw.key_file, raw.key_env) {
            (Some(file), None) => Some(KeySourceSettings::File(file.into())),
            (None, Some(variable)) => Some(KeySourceSettings::Env(variable)),
            (Some(_), Some(_)) => {
                problems.push("security", "set key_file or key_env, not both");
                None
            }
            (None, None) => {
                problems.push("security", "needs a key source: key_file or key_env");
                None
            }
        };
        if raw
            .refresh_interval
            .is_some_and(|interval| interval < Duration::from_millis(100))
        {
            problems.push("security.refresh_interval", "must be at least 100ms");
        }
        if raw.replay_capacity == Some(0) {
            problems.push("security.replay_capacity", "must be at least 1");
        }
        let default_policy = policy_from(
            QueuePolicy::default(),
            raw.seal,
            raw.unsealed,
            raw.freshness_window,
            raw.clock_skew,
            "security",
            problems,
        );
        let mut queues = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (index, queue) in raw.queues.into_iter().enumerate() {
            let path = format!("security.queues[{index}]");
            if !seen.insert(queue.name.clone()) {
                problems.push(
                    format!("{path}.name"),
                    format!("queue {:?} is listed twice", queue.name),
                );
            }
            let policy = policy_from(
                default_policy,
                queue.seal,
                queue.unsealed,
                queue.freshness_window,
                queue.clock_skew,
                &path,
                problems,
            );
            match queue_core::QueueName::new(&queue.name) {
                Ok(name) => queues.push((name, policy)),
                Err(error) => {
                    problems.push(format!("{path}.name"), error.message().to_owned());
                }
            }
        }
        // Every field is checked above, with or without a key source; settings need one.
        let mut settings = SecuritySettings::new(keys?);
        settings.refresh_interval = raw.refresh_interval.unwrap_or(settings.refresh_interval);
        settings.replay_capacity = raw.replay_capacity.unwrap_or(settings.replay_capacity);
        settings.default_policy = default_policy;
        settings.queues = queues;
        Some(settings)
    }
}

/// A queue policy: `base` with the fields that are set, checked.
fn policy_from(
    base: QueuePolicy,
    seal: Option<bool>,
    unsealed: Option<UnsealedPolicy>,
    freshness_window: Option<Duration>,
    clock_skew: Option<Duration>,
    path: &str,
    problems: &mut Problems,
) -> QueuePolicy {
    let mut policy = base;
    if let Some(seal) = seal {
        policy = policy.with_seal(seal);
    }
    if let Some(unsealed) = unsealed {
        policy = policy.with_unsealed(unsealed);
    }
    if let Some(window) = freshness_window {
        if window < Duration::from_secs(1) {
            problems.push(format!("{path}.freshness_window"), "must be at least 1s");
        }
        policy = policy.with_freshness_window(window);
    }
    if let Some(skew) = clock_skew {
        if skew > Duration::from_secs(3600) {
            problems.push(format!("{path}.clock_skew"), "must be at most 1h");
        }
        policy = policy.with_clock_skew(skew);
    }
    policy
}
