//! `[security]`: where the keys come from, how they are cached, the queues' policies.

use std::sync::Arc;
use std::time::Duration;

use queue_core::config::Problems;
use queue_keys::{EnvKeys, FileKeys, KeyRing, KeyRingOptions, KeySource};
use serde::Deserialize;

use super::{ConfigError, Secret};
use crate::security::{InProcessReplayStore, QueuePolicy, ReplayFailure, Security, UnsealedPolicy};

/// The variable that holds the Redis URL of a shared replay store, unless `redis_url_env`
/// names another (the URL may hold a password, so it is never in the file).
pub const REDIS_URL_VARIABLE: &str = "QUEUE_RUNTIME_REDIS_URL";

/// Where the keys come from, how they are cached, and the queues' policies.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SecuritySettings {
    /// The key source.
    pub keys: KeySourceSettings,
    /// How often the key source is read again.
    pub refresh_interval: Duration,
    /// Where the replay guard keeps its claims and completed ids.
    pub replay_store: ReplayStoreSettings,
    /// The policy of queues without their own.
    pub default_policy: QueuePolicy,
    /// Queues with their own policy.
    pub queues: Vec<(queue_core::QueueName, QueuePolicy)>,
}

/// Where the replay guard keeps what it knows.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplayStoreSettings {
    /// In this process, remembering at most `capacity` envelope ids.
    InProcess {
        /// How many envelope ids (claimed or completed) it keeps.
        capacity: u64,
    },
    /// On Redis, shared by every consumer that uses the same Redis and prefix (the `redis`
    /// feature).
    Redis {
        /// `redis://` or `rediss://` (TLS), from the variable the file names.
        url: SecretText,
        /// The first part of every key.
        prefix: String,
    },
}

/// A secret from configuration that compares by value (for settings' equality), printed as
/// `[REDACTED]`.
#[derive(Clone)]
pub struct SecretText(pub Secret);

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl PartialEq for SecretText {
    fn eq(&self, other: &Self) -> bool {
        self.0.expose() == other.0.expose()
    }
}

impl Eq for SecretText {}

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
            replay_store: ReplayStoreSettings::InProcess {
                capacity: crate::security::DEFAULT_REPLAY_CAPACITY,
            },
            default_policy: QueuePolicy::default(),
            queues: Vec::new(),
        }
    }

    /// Checks that the key source holds a valid keyset now, connects the replay store, and
    /// builds the client's [`Security`].
    pub async fn build(&self) -> Result<Security, queue_core::QueueError> {
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
            .with_replay_store(self.replay_store().await?);
        for (queue, policy) in &self.queues {
            security = security.with_queue_policy(queue.clone(), *policy);
        }
        Ok(security)
    }

    async fn replay_store(
        &self,
    ) -> Result<Arc<dyn crate::security::ReplayStore>, queue_core::QueueError> {
        match &self.replay_store {
            ReplayStoreSettings::InProcess { capacity } => {
                Ok(Arc::new(InProcessReplayStore::with_capacity(*capacity)))
            }
            #[cfg(feature = "redis")]
            ReplayStoreSettings::Redis { url, prefix } => {
                let url = secrecy::SecretString::from(url.0.expose().to_owned());
                let options = crate::security::RedisStoreOptions::default().with_prefix(prefix);
                Ok(Arc::new(
                    crate::security::RedisReplayStore::connect(&url, options).await?,
                ))
            }
            #[cfg(not(feature = "redis"))]
            ReplayStoreSettings::Redis { .. } => Err(ConfigError::single(
                "security.replay_store",
                "the Redis replay store is not in this build: enable the `redis` feature of \
                 queue-runtime",
            )
            .into()),
        }
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
    /// `in-process` (the default) or `redis`.
    replay_store: Option<String>,
    redis_url_env: Option<String>,
    redis_prefix: Option<String>,
    // The default policy's fields (serde's `flatten` would defeat `deny_unknown_fields`).
    seal: Option<bool>,
    unsealed: Option<UnsealedPolicy>,
    #[serde(default, with = "humantime_serde")]
    freshness_window: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    clock_skew: Option<Duration>,
    replay_unavailable: Option<ReplayFailure>,
    #[serde(default)]
    queues: Vec<QueuePolicySection>,
}

/// The fields of one policy, as the section or a queue of it sets them.
struct PolicyFields {
    seal: Option<bool>,
    unsealed: Option<UnsealedPolicy>,
    freshness_window: Option<Duration>,
    clock_skew: Option<Duration>,
    replay_unavailable: Option<ReplayFailure>,
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
    replay_unavailable: Option<ReplayFailure>,
}

impl SecuritySection {
    /// The settings, every invalid field noted under `security.`.
    pub(super) fn read(
        self,
        problems: &mut Problems,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Option<SecuritySettings> {
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
        let replay_store = match raw.replay_store.as_deref() {
            None | Some("in-process") => Some(ReplayStoreSettings::InProcess {
                capacity: raw
                    .replay_capacity
                    .unwrap_or(crate::security::DEFAULT_REPLAY_CAPACITY),
            }),
            Some("redis") => {
                let variable = raw
                    .redis_url_env
                    .clone()
                    .unwrap_or_else(|| REDIS_URL_VARIABLE.to_owned());
                match env(&variable).filter(|url| !url.trim().is_empty()) {
                    Some(url) => Some(ReplayStoreSettings::Redis {
                        url: SecretText(Secret::new(url)),
                        prefix: raw
                            .redis_prefix
                            .clone()
                            .unwrap_or_else(|| "queue-runtime:replay".to_owned()),
                    }),
                    None => {
                        problems.push(
                            "security.redis_url_env",
                            format!("the environment variable {variable} is not set"),
                        );
                        None
                    }
                }
            }
            Some(other) => {
                problems.push(
                    "security.replay_store",
                    format!("{other:?}: expected \"in-process\" or \"redis\""),
                );
                None
            }
        };
        let default_policy = policy_from(
            QueuePolicy::default(),
            PolicyFields {
                seal: raw.seal,
                unsealed: raw.unsealed,
                freshness_window: raw.freshness_window,
                clock_skew: raw.clock_skew,
                replay_unavailable: raw.replay_unavailable,
            },
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
                PolicyFields {
                    seal: queue.seal,
                    unsealed: queue.unsealed,
                    freshness_window: queue.freshness_window,
                    clock_skew: queue.clock_skew,
                    replay_unavailable: queue.replay_unavailable,
                },
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
        settings.replay_store = replay_store?;
        settings.default_policy = default_policy;
        settings.queues = queues;
        Some(settings)
    }
}

/// A queue policy: `base` with the fields that are set, checked.
fn policy_from(
    base: QueuePolicy,
    fields: PolicyFields,
    path: &str,
    problems: &mut Problems,
) -> QueuePolicy {
    let mut policy = base;
    if let Some(seal) = fields.seal {
        policy = policy.with_seal(seal);
    }
    if let Some(unsealed) = fields.unsealed {
        policy = policy.with_unsealed(unsealed);
    }
    if let Some(failure) = fields.replay_unavailable {
        policy = policy.with_replay_failure(failure);
    }
    if let Some(window) = fields.freshness_window {
        if window < Duration::from_secs(1) {
            problems.push(format!("{path}.freshness_window"), "must be at least 1s");
        }
        policy = policy.with_freshness_window(window);
    }
    if let Some(skew) = fields.clock_skew {
        if skew > Duration::from_secs(3600) {
            problems.push(format!("{path}.clock_skew"), "must be at most 1h");
        }
        policy = policy.with_clock_skew(skew);
    }
    policy
}
