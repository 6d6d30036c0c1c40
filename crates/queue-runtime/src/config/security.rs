//! `[security]`: where the keys come from, how they are cached, the queues' policies.

use std::sync::Arc;
use std::time::Duration;

use queue_core::config::Problems;
use queue_keys::{EnvKeys, FileKeys, KeyRing, KeyRingOptions, KeySource};
use serde::Deserialize;

use super::{ConfigError, Secret};
use crate::security::{
    InProcessReplayStore, QueuePolicy, ReplayFailure, SealMode, Security, UnsealedPolicy,
};

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
    /// This process only produces (`role = "producer"`): keys holding a recipient private key
    /// are refused, at startup and on every refresh, so it can never open a message of a
    /// public-key queue.
    pub producer_only: bool,
    /// Where the replay guard keeps its claims and completed ids.
    pub replay_store: ReplayStoreSettings,
    /// The policy of queues without their own.
    pub default_policy: QueuePolicy,
    /// Queues with their own policy.
    pub queues: Vec<(queue_core::QueueName, QueuePolicy)>,
    /// Queues with their own keys (`key_file` or `key_env` in `[[security.queues]]`): their own
    /// recipient key and trust list, so a producer trusted on one queue cannot send to another.
    pub queue_keys: Vec<(queue_core::QueueName, KeySourceSettings)>,
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
    /// An AWS Secrets Manager secret holding the keyset document (the `aws-secrets-manager`
    /// feature), read again every refresh interval: rotation is a new secret version.
    #[cfg(feature = "aws-secrets-manager")]
    AwsSecretsManager {
        /// The secret's name or ARN.
        secret_id: String,
        /// Region, endpoint, credentials (the standard chain by default).
        aws: queue_keys::AwsSettings,
    },
    /// An Azure Key Vault secret holding the keyset document (the `azure-key-vault` feature).
    #[cfg(feature = "azure-key-vault")]
    AzureKeyVault {
        /// `https://<vault>.vault.azure.net/`.
        vault_url: String,
        /// The secret's name.
        secret_name: String,
        /// How to authenticate.
        credential: queue_keys::KeyVaultCredential,
    },
    /// A keyset wrapped by an AWS KMS key, kept in `store` (a file or a secret above; the
    /// `aws-kms` feature).
    #[cfg(feature = "aws-kms")]
    AwsKmsWrapped {
        /// Where the wrapped document is kept.
        store: Box<KeySourceSettings>,
        /// How to reach KMS.
        aws: queue_keys::AwsSettings,
    },
}

impl SecuritySettings {
    /// Keys from `keys`, default caching, the default (secure) policy everywhere.
    pub fn new(keys: KeySourceSettings) -> Self {
        SecuritySettings {
            keys,
            refresh_interval: KeyRingOptions::default().refresh_interval,
            producer_only: false,
            replay_store: ReplayStoreSettings::InProcess {
                capacity: crate::security::DEFAULT_REPLAY_CAPACITY,
            },
            default_policy: QueuePolicy::default(),
            queues: Vec::new(),
            queue_keys: Vec::new(),
        }
    }

    /// Checks that the key source holds a valid keyset now, connects the replay store, and
    /// builds the client's [`Security`].
    pub async fn build(&self) -> Result<Security, queue_core::QueueError> {
        let ring = self.key_ring(&self.keys, None).await?;
        let mut security = Security::new(ring)
            .with_default_policy(self.default_policy)
            .with_replay_store(self.replay_store().await?);
        for (queue, policy) in &self.queues {
            security = security.with_queue_policy(queue.clone(), *policy);
        }
        for (index, (queue, keys)) in self.queue_keys.iter().enumerate() {
            let ring = self.key_ring(keys, Some(index)).await?;
            security = security.with_queue_keys(queue.clone(), ring);
        }
        Ok(security)
    }

    /// The key ring over `keys`, read once now so that a missing or invalid keyset fails at
    /// startup with its path (`security.key_file`, or `security.queues[i]...` for the keys of
    /// the `index`th queue with keys of its own).
    async fn key_ring(
        &self,
        keys: &KeySourceSettings,
        index: Option<usize>,
    ) -> Result<KeyRing, queue_core::QueueError> {
        let (source, checked, field): (Arc<dyn KeySource>, _, _) = match keys {
            KeySourceSettings::File(file) => {
                let source = FileKeys::new(file);
                let checked = source.read();
                (Arc::new(source), Some(checked), "key_file")
            }
            KeySourceSettings::Env(variable) => {
                let source = EnvKeys::new(variable);
                let checked = source.read();
                (Arc::new(source), Some(checked), "key_env")
            }
            #[cfg(any(
                feature = "aws-secrets-manager",
                feature = "aws-kms",
                feature = "azure-key-vault"
            ))]
            cloud => {
                let (source, path) = super::key_sources::connect(cloud).await?;
                let field = path.strip_prefix("security.").unwrap_or(path);
                (source, None, field)
            }
        };
        let path = match index {
            None => format!("security.{field}"),
            Some(index) => format!(
                "security.queues[{}].{field}",
                self.queue_keys_section(index)
            ),
        };
        let problem = |reason: String| ConfigError::single(path.clone(), reason);
        if let Some(checked) = checked {
            let keys = checked.map_err(|error| problem(error.to_string()))?;
            self.check_keys(&keys).map_err(problem)?;
        }
        Ok(KeyRing::with_options(
            source,
            KeyRingOptions::default()
                .with_refresh_interval(self.refresh_interval)
                .with_producer_only(self.producer_only),
        ))
    }

    /// Where the `index`th queue with keys of its own is in `security.queues`.
    fn queue_keys_section(&self, index: usize) -> usize {
        let Some((queue, _)) = self.queue_keys.get(index) else {
            return index;
        };
        self.queues
            .iter()
            .position(|(name, _)| name == queue)
            .unwrap_or(index)
    }

    /// Whether `keys` serve a producer-only process: no recipient private key, and producer
    /// keys when one of its queues seals with public keys. (A process that also consumes may
    /// hold consumer keys alone: it may never send.)
    fn check_keys(&self, keys: &queue_keys::Keys) -> Result<(), String> {
        if !self.producer_only {
            return Ok(());
        }
        if keys.has_recipient_private_key() {
            return Err(
                "the keys hold a recipient private key, and role = \"producer\": a producer \
                 must not be able to open messages (give it the public half)"
                    .to_owned(),
            );
        }
        let seals_public = std::iter::once(&self.default_policy)
            .chain(self.queues.iter().map(|(_, policy)| policy))
            .any(|policy| policy.seal && policy.mode == SealMode::PublicKey);
        if seals_public && keys.producer().is_none() {
            return Err("role = \"producer\" with public-key queues needs \
                        recipient_public_keys and signing_keys in the keys"
                .to_owned());
        }
        Ok(())
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
    // Key sources in the cloud (config/key_sources.rs).
    pub(super) aws_secret_id: Option<String>,
    pub(super) aws_region: Option<String>,
    pub(super) aws_endpoint: Option<String>,
    pub(super) key_vault_url: Option<String>,
    pub(super) key_vault_secret: Option<String>,
    pub(super) azure_credential: Option<String>,
    pub(super) azure_tenant_id: Option<String>,
    pub(super) azure_client_id: Option<String>,
    pub(super) azure_client_secret_env: Option<String>,
    pub(super) key_wrapping: Option<String>,
    #[serde(default, with = "humantime_serde")]
    refresh_interval: Option<Duration>,
    /// `producer`: this process only sends (its keys may hold no recipient private key).
    role: Option<String>,
    replay_capacity: Option<u64>,
    /// `in-process` (the default) or `redis`.
    replay_store: Option<String>,
    redis_url_env: Option<String>,
    redis_prefix: Option<String>,
    // The default policy's fields (serde's `flatten` would defeat `deny_unknown_fields`).
    seal: Option<bool>,
    mode: Option<SealMode>,
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
    mode: Option<SealMode>,
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
    mode: Option<SealMode>,
    unsealed: Option<UnsealedPolicy>,
    #[serde(default, with = "humantime_serde")]
    freshness_window: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    clock_skew: Option<Duration>,
    replay_unavailable: Option<ReplayFailure>,
    /// This queue's own keys (a file, or a variable), instead of the section's.
    key_file: Option<String>,
    key_env: Option<String>,
}

impl SecuritySection {
    /// The settings, every invalid field noted under `security.`.
    pub(super) fn read(
        self,
        problems: &mut Problems,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Option<SecuritySettings> {
        let raw = self;
        let keys = raw.key_source(problems, env);
        let producer_only = match raw.role.as_deref() {
            None | Some("any") => false,
            Some("producer") => true,
            Some(other) => {
                problems.push(
                    "security.role",
                    format!("{other:?}: expected \"producer\" or \"any\""),
                );
                false
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
                mode: raw.mode,
                unsealed: raw.unsealed,
                freshness_window: raw.freshness_window,
                clock_skew: raw.clock_skew,
                replay_unavailable: raw.replay_unavailable,
            },
            "security",
            problems,
        );
        let mut queues = Vec::new();
        let mut queue_keys = Vec::new();
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
                    mode: queue.mode,
                    unsealed: queue.unsealed,
                    freshness_window: queue.freshness_window,
                    clock_skew: queue.clock_skew,
                    replay_unavailable: queue.replay_unavailable,
                },
                &path,
                problems,
            );
            let own_keys = match (queue.key_file, queue.key_env) {
                (Some(_), Some(_)) => {
                    problems.push(
                        path.clone(),
                        "set one of key_file and key_env for a queue's own keys",
                    );
                    None
                }
                (Some(file), None) => Some(KeySourceSettings::File(file.into())),
                (None, Some(variable)) => Some(KeySourceSettings::Env(variable)),
                (None, None) => None,
            };
            match queue_core::QueueName::new(&queue.name) {
                Ok(name) => {
                    if let Some(keys) = own_keys {
                        queue_keys.push((name.clone(), keys));
                    }
                    queues.push((name, policy));
                }
                Err(error) => {
                    problems.push(format!("{path}.name"), error.message().to_owned());
                }
            }
        }
        // Every field is checked above, with or without a key source; settings need one.
        let mut settings = SecuritySettings::new(keys?);
        settings.refresh_interval = raw.refresh_interval.unwrap_or(settings.refresh_interval);
        settings.producer_only = producer_only;
        settings.replay_store = replay_store?;
        settings.default_policy = default_policy;
        settings.queues = queues;
        settings.queue_keys = queue_keys;
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
    if let Some(mode) = fields.mode {
        policy = policy.with_mode(mode);
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
