//! Choosing and configuring the provider at run time: from code, a TOML file or environment
//! variables.
//!
//! ```toml
//! provider = "memory"
//!
//! [memory]
//! max_message_bytes = 262144
//! auto_create_queues = false
//! lock_duration = "30s"
//! max_delivery_count = 10
//!
//! [[memory.queues]]
//! name = "pr-events"
//! sessions = true
//! lock_duration = "5s"
//! max_delivery_count = 3
//!
//! # Or Amazon SQS (the `sqs` feature; connect with `QueueClient::connect`). Credentials come
//! # from the standard AWS chain, never from this file.
//! # provider = "sqs"
//! # [sqs]
//! # region = "eu-west-1"
//! # endpoint = "http://127.0.0.1:4566"       # https, or http to a loopback address only
//! # check_on_connect = true                  # credentials and each queue below, at connect
//! # queues = ["orders", "pr-events.fifo"]
//! # unsessioned_fifo = "reject"              # or "group-per-message", "group:<name>"
//! # [sqs.dead_letter_queues]                 # when no redrive policy names one
//! # orders = "orders-dlq"
//!
//! # Or Azure Service Bus (the `azure` feature; connect with `QueueClient::connect`). Secrets
//! # are never in this file: it names the environment variables that hold them.
//! # provider = "azure"
//! # [azure]
//! # credential = "connection-string"         # or "default", "managed-identity",
//! #                                          #    "workload-identity", "client-secret"
//! # connection_string_env = "QUEUE_RUNTIME_AZURE_CONNECTION_STRING"
//! # namespace = "example.servicebus.windows.net"   # every credential but connection-string
//! # client_id = "..."                        # managed identity (user-assigned), client secret
//! # tenant_id = "..."                        # client secret
//! # client_secret_env = "AZURE_CLIENT_SECRET"
//! # check_on_connect = true                  # each queue below: exists, sessions as declared
//! # prefetch_count = 0
//! # max_message_bytes = 262144               # premium namespaces: up to 104857600
//! # receive_links_per_queue = 8
//! # transport = "amqp"                       # or "amqp-websockets" (port 443)
//! # operation_timeout = "60s"
//! # [[azure.queues]]
//! # name = "pr-events"
//! # sessions = true
//!
//! # Retries of transient provider errors and the circuit breaker (see `docs/resilience.md`);
//! # these are the defaults and may be left out. `max_attempts = 1` turns retrying off.
//! [resilience]
//! max_attempts = 3
//! initial_delay = "1s"
//! max_delay = "30s"
//! multiplier = 2
//! max_elapsed = "2m"
//! failure_threshold = 5
//! open_for = "30s"
//! success_threshold = 3
//!
//! # Keys make the client seal and open (see `docs/security.md`); the policy below is the
//! # default, secure one and may be left out.
//! [security]
//! key_file = "/etc/queue-runtime/keys.json"   # or: key_env = "QUEUE_RUNTIME_KEYS"
//! refresh_interval = "30s"
//! replay_capacity = 100000
//! seal = true
//! unsealed = "reject"                         # or "allow", "allow_with_alert"
//! freshness_window = "5m"
//! clock_skew = "1m"
//!
//! [[security.queues]]                         # a queue with its own policy
//! name = "legacy-events"
//! seal = false
//! unsealed = "allow_with_alert"
//! ```
//!
//! Environment variables (they override the file):
//!
//! | Variable | Meaning |
//! |---|---|
//! | `QUEUE_RUNTIME_CONFIG` | path of a TOML file as above |
//! | `QUEUE_RUNTIME_PROVIDER` | `memory`, `sqs` or `azure` |
//! | `QUEUE_RUNTIME_MEMORY_MAX_MESSAGE_BYTES` | memory: largest message, bytes |
//! | `QUEUE_RUNTIME_MEMORY_AUTO_CREATE_QUEUES` | memory: `true` or `false` |
//! | `QUEUE_RUNTIME_MEMORY_LOCK_DURATION` | memory: default lock, e.g. `30s` |
//! | `QUEUE_RUNTIME_MEMORY_MAX_DELIVERY_COUNT` | memory: default delivery limit |
//! | `QUEUE_RUNTIME_KEY_FILE` | security: path of a keyset file |
//! | `QUEUE_RUNTIME_KEY_ENV` | security: name of the variable holding a base64 keyset |
//!
//! A configured key source is read once when the client is built, so a missing file or a
//! malformed keyset is a configuration error at startup, not a failure at the first message.
//!
//! Validation reports every invalid field with its path, not only the first.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use queue_keys::{EnvKeys, FileKeys, KeyRing, KeyRingOptions, KeySource};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::resilience::{CircuitSettings, Resilience, RetryPolicy};
use crate::security::{QueuePolicy, Security, UnsealedPolicy};

/// The providers this library knows, and the cargo feature that brings each in.
const PROVIDERS: &[(&str, &str)] = &[("memory", "memory"), ("sqs", "sqs"), ("azure", "azure")];

/// A validated client configuration.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// Which provider, with its settings.
    pub provider: ProviderConfig,
    /// Keys and policies; `None` sends and receives unsealed.
    pub security: Option<SecuritySettings>,
    /// Retries and circuit breaker around the provider.
    pub resilience: Resilience,
}

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

/// The provider and its settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ProviderConfig {
    /// The embedded broker.
    #[cfg(feature = "memory")]
    Memory(MemorySettings),
    /// Amazon SQS. Connect with [`QueueClient::connect`](crate::QueueClient::connect).
    #[cfg(feature = "sqs")]
    Sqs(queue_sqs::SqsConfig),
    /// Azure Service Bus. Connect with [`QueueClient::connect`](crate::QueueClient::connect).
    #[cfg(feature = "azure")]
    Azure(queue_azure::AzureConfig),
}

/// Settings of the embedded broker.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemorySettings {
    /// The largest message accepted, in bytes.
    pub max_message_bytes: usize,
    /// Whether sending to an unknown queue creates it.
    pub auto_create_queues: bool,
    /// The lock duration of queues created without their own.
    pub lock_duration: Duration,
    /// The delivery limit of queues created without their own.
    pub max_delivery_count: u32,
    /// Queues created when the client is built.
    pub queues: Vec<MemoryQueueSettings>,
}

impl Default for MemorySettings {
    fn default() -> Self {
        MemorySettings {
            max_message_bytes: 256 * 1024,
            auto_create_queues: true,
            lock_duration: Duration::from_secs(30),
            max_delivery_count: 10,
            queues: Vec::new(),
        }
    }
}

/// One queue declared in the configuration of the embedded broker.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryQueueSettings {
    /// The queue's name.
    pub name: queue_core::QueueName,
    /// A session queue.
    pub sessions: bool,
    /// Lock duration (messages and sessions); the broker default when absent.
    pub lock_duration: Option<Duration>,
    /// Delivery limit; the broker default when absent.
    pub max_delivery_count: Option<u32>,
    /// Default time to live.
    pub default_time_to_live: Option<Duration>,
    /// Dead-letter expired messages.
    pub dead_letter_on_expiration: bool,
    /// Capacity in messages; the broker default when absent.
    pub capacity: Option<usize>,
}

/// What was wrong with a configuration: every invalid field, with its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    problems: Vec<ConfigProblem>,
}

/// One invalid field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Where: `memory.queues[0].max_delivery_count`, or an environment variable's name.
    pub path: String,
    /// What is wrong and what is expected.
    pub reason: String,
}

impl ConfigError {
    fn single(path: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            problems: vec![ConfigProblem {
                path: path.into(),
                reason: reason.into(),
            }],
        }
    }

    /// Every problem found.
    pub fn problems(&self) -> &[ConfigProblem] {
        &self.problems
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid queue-runtime configuration:")?;
        for problem in &self.problems {
            write!(f, "\n  {}: {}", problem.path, problem.reason)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl From<ConfigError> for queue_core::QueueError {
    fn from(error: ConfigError) -> Self {
        queue_core::QueueError::new(queue_core::ErrorKind::Config, error.to_string())
    }
}

/// A secret read from configuration (a connection string, a key): held in `secrecy`, zeroized on
/// drop, and printed as `[REDACTED]` by `Debug` and `Display`.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(SecretString);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(SecretString::from(value.into()))
    }

    /// The secret itself: call only where it is handed to the SDK that needs it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

// ---- The file format, before validation --------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    provider: Option<String>,
    memory: Option<RawMemory>,
    // Read only when the `sqs` feature is on; accepted (and then refused by name) without it.
    #[cfg_attr(not(feature = "sqs"), allow(dead_code))]
    sqs: Option<RawSqs>,
    #[cfg_attr(not(feature = "azure"), allow(dead_code))]
    azure: Option<RawAzure>,
    security: Option<RawSecurity>,
    resilience: Option<RawResilience>,
}

/// `[resilience]`: the retry policy and the circuit breaker, flat.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResilience {
    max_attempts: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    initial_delay: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    max_delay: Option<Duration>,
    multiplier: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    max_elapsed: Option<Duration>,
    failure_threshold: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    open_for: Option<Duration>,
    success_threshold: Option<u32>,
}

/// `[sqs]`: credentials are never read from the file; they come from the standard AWS chain
/// (environment, profile, web identity, ECS, IMDS).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(not(feature = "sqs"), allow(dead_code))]
struct RawSqs {
    region: Option<String>,
    endpoint: Option<String>,
    check_on_connect: Option<bool>,
    #[serde(default)]
    queues: Vec<String>,
    #[serde(default)]
    dead_letter_queues: std::collections::BTreeMap<String, String>,
    unsessioned_fifo: Option<String>,
}

/// `[azure]`: names the environment variables holding secrets, never the secrets.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(not(feature = "azure"), allow(dead_code))]
struct RawAzure {
    credential: Option<String>,
    connection_string_env: Option<String>,
    namespace: Option<String>,
    client_id: Option<String>,
    tenant_id: Option<String>,
    client_secret_env: Option<String>,
    check_on_connect: Option<bool>,
    prefetch_count: Option<u32>,
    max_message_bytes: Option<usize>,
    receive_links_per_queue: Option<usize>,
    transport: Option<String>,
    #[serde(default, with = "humantime_serde")]
    operation_timeout: Option<Duration>,
    #[serde(default)]
    queues: Vec<RawAzureQueue>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(not(feature = "azure"), allow(dead_code))]
struct RawAzureQueue {
    name: String,
    #[serde(default)]
    sessions: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecurity {
    key_file: Option<String>,
    key_env: Option<String>,
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
    queues: Vec<RawQueuePolicy>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQueuePolicy {
    name: String,
    seal: Option<bool>,
    unsealed: Option<UnsealedPolicy>,
    #[serde(default, with = "humantime_serde")]
    freshness_window: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    clock_skew: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMemory {
    max_message_bytes: Option<usize>,
    auto_create_queues: Option<bool>,
    #[serde(default, with = "humantime_serde")]
    lock_duration: Option<Duration>,
    max_delivery_count: Option<u32>,
    #[serde(default)]
    queues: Vec<RawQueue>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQueue {
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

impl ClientConfig {
    /// The embedded broker with its defaults.
    #[cfg(feature = "memory")]
    pub fn memory(settings: MemorySettings) -> Self {
        ClientConfig {
            provider: ProviderConfig::Memory(settings),
            security: None,
            resilience: Resilience::default(),
        }
    }

    /// Parses and validates a TOML document.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text)
            .map_err(|error| ConfigError::single("(toml)", error.message().to_owned()))?;
        validate(raw)
    }

    /// Reads, parses and validates a TOML file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|error| {
            ConfigError::single(path.display().to_string(), format!("cannot read: {error}"))
        })?;
        Self::from_toml_str(&text).map_err(|mut error| {
            for problem in &mut error.problems {
                problem.path = format!("{}: {}", path.display(), problem.path);
            }
            error
        })
    }

    /// Reads the configuration from the process environment (see the module documentation).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// Reads the configuration from variables looked up by `var` (the environment, in
    /// [`from_env`](Self::from_env)); exposed so the rules can be tested without touching the
    /// process environment.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut raw = match var("QUEUE_RUNTIME_CONFIG") {
            Some(path) => {
                let text = std::fs::read_to_string(&path).map_err(|error| {
                    ConfigError::single(
                        "QUEUE_RUNTIME_CONFIG",
                        format!("cannot read {path}: {error}"),
                    )
                })?;
                toml::from_str::<RawConfig>(&text).map_err(|error| {
                    ConfigError::single(format!("{path} (toml)"), error.message().to_owned())
                })?
            }
            None => RawConfig::default(),
        };
        let mut problems = Vec::new();
        if let Some(provider) = var("QUEUE_RUNTIME_PROVIDER") {
            raw.provider = Some(provider);
        }
        let memory = raw.memory.get_or_insert_with(RawMemory::default);
        if let Some(value) = var("QUEUE_RUNTIME_MEMORY_MAX_MESSAGE_BYTES") {
            match value.parse() {
                Ok(bytes) => memory.max_message_bytes = Some(bytes),
                Err(_) => problems.push(problem(
                    "QUEUE_RUNTIME_MEMORY_MAX_MESSAGE_BYTES",
                    format!("{value:?} is not a number of bytes"),
                )),
            }
        }
        if let Some(value) = var("QUEUE_RUNTIME_MEMORY_AUTO_CREATE_QUEUES") {
            match value.as_str() {
                "true" | "1" => memory.auto_create_queues = Some(true),
                "false" | "0" => memory.auto_create_queues = Some(false),
                _ => problems.push(problem(
                    "QUEUE_RUNTIME_MEMORY_AUTO_CREATE_QUEUES",
                    format!("{value:?} is not true or false"),
                )),
            }
        }
        if let Some(value) = var("QUEUE_RUNTIME_MEMORY_LOCK_DURATION") {
            match humantime::parse_duration(&value) {
                Ok(duration) => memory.lock_duration = Some(duration),
                Err(error) => problems.push(problem(
                    "QUEUE_RUNTIME_MEMORY_LOCK_DURATION",
                    format!("{value:?} is not a duration such as 30s: {error}"),
                )),
            }
        }
        if let Some(value) = var("QUEUE_RUNTIME_MEMORY_MAX_DELIVERY_COUNT") {
            match value.parse() {
                Ok(count) => memory.max_delivery_count = Some(count),
                Err(_) => problems.push(problem(
                    "QUEUE_RUNTIME_MEMORY_MAX_DELIVERY_COUNT",
                    format!("{value:?} is not a whole number"),
                )),
            }
        }
        if let Some(path) = var("QUEUE_RUNTIME_KEY_FILE") {
            raw.security
                .get_or_insert_with(RawSecurity::default)
                .key_file = Some(path);
        }
        if let Some(variable) = var("QUEUE_RUNTIME_KEY_ENV") {
            raw.security
                .get_or_insert_with(RawSecurity::default)
                .key_env = Some(variable);
        }
        match validate(raw) {
            Ok(config) if problems.is_empty() => Ok(config),
            Ok(_) => Err(ConfigError { problems }),
            Err(mut error) => {
                problems.append(&mut error.problems);
                Err(ConfigError { problems })
            }
        }
    }
}

fn problem(path: impl Into<String>, reason: impl Into<String>) -> ConfigProblem {
    ConfigProblem {
        path: path.into(),
        reason: reason.into(),
    }
}

fn validate(raw: RawConfig) -> Result<ClientConfig, ConfigError> {
    let mut problems = Vec::new();
    let provider = raw.provider.as_deref().unwrap_or("memory");
    let known: Vec<&str> = PROVIDERS.iter().map(|(name, _)| *name).collect();
    let Some(&(name, feature)) = PROVIDERS.iter().find(|(name, _)| *name == provider) else {
        return Err(ConfigError::single(
            "provider",
            format!(
                "unknown provider {provider:?}; expected one of {}",
                known.join(", ")
            ),
        ));
    };
    let built = match name {
        #[cfg(feature = "memory")]
        "memory" => Some(ProviderConfig::Memory(validate_memory(
            raw.memory.unwrap_or_default(),
            &mut problems,
        ))),
        #[cfg(feature = "sqs")]
        "sqs" => validate_sqs(raw.sqs.unwrap_or_default(), &mut problems).map(ProviderConfig::Sqs),
        #[cfg(feature = "azure")]
        "azure" => validate_azure(raw.azure.unwrap_or_default(), &mut problems, |name| {
            std::env::var(name).ok()
        })
        .map(ProviderConfig::Azure),
        _ => {
            problems.push(problem(
                "provider",
                format!(
                    "the {name} provider is not in this build: enable the `{feature}` feature of \
                     queue-runtime"
                ),
            ));
            None
        }
    };
    let security = raw
        .security
        .and_then(|security| validate_security(security, &mut problems));
    let resilience = validate_resilience(raw.resilience.unwrap_or_default(), &mut problems);
    match built {
        Some(provider) if problems.is_empty() => Ok(ClientConfig {
            provider,
            security,
            resilience,
        }),
        _ => Err(ConfigError { problems }),
    }
}

fn validate_resilience(raw: RawResilience, problems: &mut Vec<ConfigProblem>) -> Resilience {
    let defaults = Resilience::default();
    let resilience = Resilience {
        retry: RetryPolicy {
            max_attempts: raw.max_attempts.unwrap_or(defaults.retry.max_attempts),
            initial_delay: raw.initial_delay.unwrap_or(defaults.retry.initial_delay),
            max_delay: raw.max_delay.unwrap_or(defaults.retry.max_delay),
            multiplier: raw.multiplier.unwrap_or(defaults.retry.multiplier),
            max_elapsed: raw.max_elapsed.unwrap_or(defaults.retry.max_elapsed),
        },
        circuit: CircuitSettings {
            failure_threshold: raw
                .failure_threshold
                .unwrap_or(defaults.circuit.failure_threshold),
            open_for: raw.open_for.unwrap_or(defaults.circuit.open_for),
            success_threshold: raw
                .success_threshold
                .unwrap_or(defaults.circuit.success_threshold),
        },
    };
    // Both halves are checked, so every invalid field is reported.
    for error in [resilience.retry.validate(), resilience.circuit.validate()]
        .into_iter()
        .filter_map(Result::err)
    {
        let (section, reason) = error
            .message()
            .split_once(": ")
            .unwrap_or(("", error.message()));
        let field = reason.split_whitespace().next().unwrap_or(section);
        problems.push(problem(format!("resilience.{field}"), reason.to_owned()));
    }
    resilience
}

#[cfg(feature = "sqs")]
fn validate_sqs(raw: RawSqs, problems: &mut Vec<ConfigProblem>) -> Option<queue_sqs::SqsConfig> {
    let before = problems.len();
    let mut config = queue_sqs::SqsConfig::new();
    if let Some(region) = raw.region {
        config = config.with_region(region);
    }
    if let Some(endpoint) = raw.endpoint {
        match config.clone().with_endpoint(endpoint) {
            Ok(with_endpoint) => config = with_endpoint,
            Err(error) => problems.push(problem("sqs.endpoint", error.message())),
        }
    }
    if let Some(check) = raw.check_on_connect {
        config = config.with_check_on_connect(check);
    }
    for (index, name) in raw.queues.iter().enumerate() {
        match queue_core::QueueName::new(name) {
            Ok(queue) => config = config.with_queue(queue),
            Err(error) => problems.push(problem(format!("sqs.queues[{index}]"), error.message())),
        }
    }
    for (queue, dead_letter) in &raw.dead_letter_queues {
        match (
            queue_core::QueueName::new(queue),
            queue_core::QueueName::new(dead_letter),
        ) {
            (Ok(queue), Ok(dead_letter)) => {
                config = config.with_dead_letter_queue(queue, dead_letter);
            }
            (Err(error), _) | (_, Err(error)) => problems.push(problem(
                format!("sqs.dead_letter_queues.{queue}"),
                error.message(),
            )),
        }
    }
    match raw.unsessioned_fifo.as_deref() {
        None | Some("reject") => {}
        Some("group-per-message") => {
            config = config.with_unsessioned_fifo(queue_sqs::UnsessionedFifo::GroupPerMessage);
        }
        Some(other) => match other.strip_prefix("group:") {
            Some(group) if !group.is_empty() => {
                config = config
                    .with_unsessioned_fifo(queue_sqs::UnsessionedFifo::Group(group.to_owned()));
            }
            _ => problems.push(problem(
                "sqs.unsessioned_fifo",
                format!(
                    "{other:?}: expected \"reject\", \"group-per-message\" or \"group:<name>\""
                ),
            )),
        },
    }
    (problems.len() == before).then_some(config)
}

/// The default variable holding the Service Bus connection string.
#[cfg(feature = "azure")]
pub const AZURE_CONNECTION_STRING_VARIABLE: &str = "QUEUE_RUNTIME_AZURE_CONNECTION_STRING";

#[cfg(feature = "azure")]
fn validate_azure(
    raw: RawAzure,
    problems: &mut Vec<ConfigProblem>,
    env: impl Fn(&str) -> Option<String>,
) -> Option<queue_azure::AzureConfig> {
    use queue_azure::{AzureConfig, AzureCredentials, AzureTransport};

    let before = problems.len();
    let mut required = |field: &str, value: Option<String>| {
        value.filter(|v| !v.trim().is_empty()).or_else(|| {
            problems.push(problem(
                format!("azure.{field}"),
                "required by this credential",
            ));
            None
        })
    };
    let secret_from_env =
        |field: &str, variable: &str, problems: &mut Vec<ConfigProblem>| match env(variable) {
            Some(value) if !value.trim().is_empty() => Some(SecretString::from(value)),
            _ => {
                problems.push(problem(
                    format!("azure.{field}"),
                    format!("the environment variable {variable} is not set"),
                ));
                None
            }
        };
    let credentials = match raw.credential.as_deref().unwrap_or("connection-string") {
        "connection-string" => {
            let variable = raw
                .connection_string_env
                .clone()
                .unwrap_or_else(|| AZURE_CONNECTION_STRING_VARIABLE.to_owned());
            secret_from_env("connection_string_env", &variable, problems)
                .map(AzureCredentials::ConnectionString)
        }
        "default" => required("namespace", raw.namespace.clone())
            .map(|namespace| AzureCredentials::Default { namespace }),
        "managed-identity" => required("namespace", raw.namespace.clone()).map(|namespace| {
            AzureCredentials::ManagedIdentity {
                namespace,
                client_id: raw.client_id.clone(),
            }
        }),
        "workload-identity" => required("namespace", raw.namespace.clone())
            .map(|namespace| AzureCredentials::WorkloadIdentity { namespace }),
        "client-secret" => {
            let namespace = required("namespace", raw.namespace.clone());
            let tenant_id = required("tenant_id", raw.tenant_id.clone());
            let client_id = required("client_id", raw.client_id.clone());
            let variable = raw
                .client_secret_env
                .clone()
                .unwrap_or_else(|| "AZURE_CLIENT_SECRET".to_owned());
            let secret = secret_from_env("client_secret_env", &variable, problems);
            match (namespace, tenant_id, client_id, secret) {
                (Some(namespace), Some(tenant_id), Some(client_id), Some(secret)) => {
                    Some(AzureCredentials::ClientSecret {
                        namespace,
                        tenant_id,
                        client_id,
                        secret,
                    })
                }
                _ => None,
            }
        }
        other => {
            problems.push(problem(
                "azure.credential",
                format!(
                    "{other:?}: expected \"connection-string\", \"default\", \"managed-identity\", \
                     \"workload-identity\" or \"client-secret\""
                ),
            ));
            None
        }
    };
    let transport = match raw.transport.as_deref() {
        None | Some("amqp") => Some(AzureTransport::Amqp),
        Some("amqp-websockets") => Some(AzureTransport::AmqpWebSockets),
        Some(other) => {
            problems.push(problem(
                "azure.transport",
                format!("{other:?}: expected \"amqp\" or \"amqp-websockets\""),
            ));
            None
        }
    };
    let mut queues = Vec::new();
    for (index, queue) in raw.queues.iter().enumerate() {
        match queue_core::QueueName::new(&queue.name) {
            Ok(name) => queues.push((name, queue.sessions)),
            Err(error) => {
                problems.push(problem(format!("azure.queues[{index}]"), error.message()));
            }
        }
    }
    // Every field was read (so every problem is reported); build only from a clean read.
    let (Some(credentials), Some(transport), true) =
        (credentials, transport, problems.len() == before)
    else {
        return None;
    };
    let mut config = AzureConfig::new(credentials).with_transport(transport);
    if let Some(check) = raw.check_on_connect {
        config = config.with_check_on_connect(check);
    }
    if let Some(prefetch) = raw.prefetch_count {
        config = config.with_prefetch_count(prefetch);
    }
    if let Some(bytes) = raw.max_message_bytes {
        config = config.with_max_message_bytes(bytes);
    }
    if let Some(links) = raw.receive_links_per_queue {
        config = config.with_receive_links_per_queue(links);
    }
    if let Some(timeout) = raw.operation_timeout {
        config = config.with_operation_timeout(timeout);
    }
    for (name, sessions) in queues {
        config = config.with_queue(name, sessions);
    }
    match config.validate() {
        Ok(()) => Some(config),
        Err(error) => {
            problems.push(problem("azure", error.message()));
            None
        }
    }
}

fn validate_security(
    raw: RawSecurity,
    problems: &mut Vec<ConfigProblem>,
) -> Option<SecuritySettings> {
    let keys = match (raw.key_file, raw.key_env) {
        (Some(file), None) => Some(KeySourceSettings::File(file.into())),
        (None, Some(variable)) => Some(KeySourceSettings::Env(variable)),
        (Some(_), Some(_)) => {
            problems.push(problem("security", "set key_file or key_env, not both"));
            None
        }
        (None, None) => {
            problems.push(problem(
                "security",
                "needs a key source: key_file or key_env",
            ));
            None
        }
    };
    if raw
        .refresh_interval
        .is_some_and(|interval| interval < Duration::from_millis(100))
    {
        problems.push(problem(
            "security.refresh_interval",
            "must be at least 100ms",
        ));
    }
    if raw.replay_capacity == Some(0) {
        problems.push(problem("security.replay_capacity", "must be at least 1"));
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
            problems.push(problem(
                format!("{path}.name"),
                format!("queue {:?} is listed twice", queue.name),
            ));
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
                problems.push(problem(format!("{path}.name"), error.message().to_owned()))
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

/// A queue policy: `base` with the fields that are set, checked.
fn policy_from(
    base: QueuePolicy,
    seal: Option<bool>,
    unsealed: Option<UnsealedPolicy>,
    freshness_window: Option<Duration>,
    clock_skew: Option<Duration>,
    path: &str,
    problems: &mut Vec<ConfigProblem>,
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
            problems.push(problem(
                format!("{path}.freshness_window"),
                "must be at least 1s",
            ));
        }
        policy = policy.with_freshness_window(window);
    }
    if let Some(skew) = clock_skew {
        if skew > Duration::from_secs(3600) {
            problems.push(problem(format!("{path}.clock_skew"), "must be at most 1h"));
        }
        policy = policy.with_clock_skew(skew);
    }
    policy
}

#[cfg(feature = "memory")]
fn validate_memory(raw: RawMemory, problems: &mut Vec<ConfigProblem>) -> MemorySettings {
    let defaults = MemorySettings::default();
    let max_message_bytes = raw.max_message_bytes.unwrap_or(defaults.max_message_bytes);
    if max_message_bytes == 0 {
        problems.push(problem("memory.max_message_bytes", "must be at least 1"));
    }
    let lock_duration = raw.lock_duration.unwrap_or(defaults.lock_duration);
    check_lock(&mut *problems, "memory.lock_duration", lock_duration);
    let max_delivery_count = raw
        .max_delivery_count
        .unwrap_or(defaults.max_delivery_count);
    if max_delivery_count == 0 {
        problems.push(problem("memory.max_delivery_count", "must be at least 1"));
    }
    let mut queues = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (index, queue) in raw.queues.into_iter().enumerate() {
        let path = format!("memory.queues[{index}]");
        let name = match queue_core::QueueName::new(&queue.name) {
            Ok(name) => Some(name),
            Err(error) => {
                problems.push(problem(format!("{path}.name"), error.message().to_owned()));
                None
            }
        };
        if !seen.insert(queue.name.clone()) {
            problems.push(problem(
                format!("{path}.name"),
                format!("queue {:?} is declared twice", queue.name),
            ));
        }
        if let Some(lock) = queue.lock_duration {
            check_lock(&mut *problems, &format!("{path}.lock_duration"), lock);
        }
        if queue.max_delivery_count == Some(0) {
            problems.push(problem(
                format!("{path}.max_delivery_count"),
                "must be at least 1",
            ));
        }
        if queue.capacity == Some(0) {
            problems.push(problem(format!("{path}.capacity"), "must be at least 1"));
        }
        if queue.default_time_to_live == Some(Duration::ZERO) {
            problems.push(problem(
                format!("{path}.default_time_to_live"),
                "must be positive",
            ));
        }
        if let Some(name) = name {
            queues.push(MemoryQueueSettings {
                name,
                sessions: queue.sessions,
                lock_duration: queue.lock_duration,
                max_delivery_count: queue.max_delivery_count,
                default_time_to_live: queue.default_time_to_live,
                dead_letter_on_expiration: queue.dead_letter_on_expiration,
                capacity: queue.capacity,
            });
        }
    }
    MemorySettings {
        max_message_bytes,
        auto_create_queues: raw
            .auto_create_queues
            .unwrap_or(defaults.auto_create_queues),
        lock_duration,
        max_delivery_count,
        queues,
    }
}

#[cfg(feature = "memory")]
fn check_lock(problems: &mut Vec<ConfigProblem>, path: &str, lock: Duration) {
    if lock < Duration::from_millis(1) || lock > queue_memory::MAX_LOCK_DURATION {
        problems.push(problem(path, "must be between 1ms and 24h"));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn a_full_memory_file_parses() {
        let config = ClientConfig::from_toml_str(
            r#"
            provider = "memory"
            [memory]
            max_message_bytes = 1024
            auto_create_queues = false
            lock_duration = "10s"
            max_delivery_count = 4
            [[memory.queues]]
            name = "pr-events"
            sessions = true
            lock_duration = "5s"
            max_delivery_count = 3
            default_time_to_live = "1h"
            dead_letter_on_expiration = true
            capacity = 500
            "#,
        )
        .unwrap();
        let memory = memory_settings(config);
        assert_eq!(memory.max_message_bytes, 1024);
        assert!(!memory.auto_create_queues);
        assert_eq!(memory.lock_duration, Duration::from_secs(10));
        let queue = &memory.queues[0];
        assert_eq!(queue.name.as_str(), "pr-events");
        assert!(queue.sessions && queue.dead_letter_on_expiration);
        assert_eq!(queue.default_time_to_live, Some(Duration::from_secs(3600)));
        assert_eq!(queue.capacity, Some(500));
    }

    #[test]
    fn security_settings_parse_with_per_queue_policies() {
        let directory = std::env::temp_dir().join(format!("qr-config-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let key_file = directory.join("keys.json");
        let _ = std::fs::remove_file(&key_file);
        queue_keys::generate_keyset_file(&key_file, queue_crypto::KeyId::new("k1").unwrap())
            .unwrap();
        let config = ClientConfig::from_toml_str(&format!(
            r#"
            [security]
            key_file = "{}"
            refresh_interval = "10s"
            freshness_window = "2m"
            [[security.queues]]
            name = "legacy"
            seal = false
            unsealed = "allow_with_alert"
            "#,
            key_file.display()
        ))
        .unwrap();
        let security = config.security.clone().unwrap();
        assert_eq!(security.keys, KeySourceSettings::File(key_file.clone()));
        assert_eq!(security.refresh_interval, Duration::from_secs(10));
        assert_eq!(
            security.default_policy.freshness_window,
            Duration::from_secs(120)
        );
        assert!(security.default_policy.seal);
        let (name, legacy) = &security.queues[0];
        assert_eq!(name.as_str(), "legacy");
        assert!(!legacy.seal);
        assert_eq!(legacy.unsealed, UnsealedPolicy::AllowWithAlert);
        // Inherited from the default policy.
        assert_eq!(legacy.freshness_window, Duration::from_secs(120));
        let client = crate::QueueClient::from_config(&config).unwrap();
        assert!(client.security().is_some());
        std::fs::remove_dir_all(&directory).unwrap();
    }

    #[test]
    fn bad_security_settings_are_reported_with_their_paths() {
        let error = ClientConfig::from_toml_str(
            r#"
            [security]
            key_file = "a"
            key_env = "B"
            refresh_interval = "1ms"
            replay_capacity = 0
            freshness_window = "0s"
            [[security.queues]]
            name = "bad name"
            clock_skew = "2h"
            "#,
        )
        .unwrap_err();
        let paths: Vec<&str> = error.problems().iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "security",
                "security.refresh_interval",
                "security.replay_capacity",
                "security.freshness_window",
                "security.queues[0].clock_skew",
                "security.queues[0].name",
            ]
        );
        let unknown = ClientConfig::from_toml_str(
            "[security]
key_file = \"k\"
unsealed = \"maybe\"",
        )
        .unwrap_err();
        assert!(unknown.to_string().contains("maybe"), "{unknown}");
        let typo = ClientConfig::from_toml_str(
            "[security]
key_fle = \"k\"",
        )
        .unwrap_err();
        assert!(typo.to_string().contains("key_fle"), "{typo}");
    }

    #[test]
    fn resilience_settings_parse_and_bad_ones_are_reported() {
        let config = ClientConfig::from_toml_str(
            "[resilience]\nmax_attempts = 5\ninitial_delay = \"200ms\"\nopen_for = \"10s\"",
        )
        .unwrap();
        assert_eq!(config.resilience.retry.max_attempts, 5);
        assert_eq!(
            config.resilience.retry.initial_delay,
            Duration::from_millis(200)
        );
        assert_eq!(config.resilience.retry.max_delay, Duration::from_secs(30));
        assert_eq!(config.resilience.circuit.open_for, Duration::from_secs(10));
        assert_eq!(config.resilience.circuit.failure_threshold, 5);

        let error =
            ClientConfig::from_toml_str("[resilience]\nmax_attempts = 0\nsuccess_threshold = 0")
                .unwrap_err();
        let paths: Vec<&str> = error.problems().iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            ["resilience.max_attempts", "resilience.success_threshold"]
        );
    }

    #[test]
    fn a_missing_or_malformed_key_file_fails_at_startup() {
        let config = ClientConfig::from_toml_str(
            "[security]\nkey_file = \"/nonexistent/queue-runtime/keys.json\"",
        )
        .unwrap();
        let error = crate::QueueClient::from_config(&config).unwrap_err();
        assert_eq!(error.kind(), queue_core::ErrorKind::Config);
        assert!(error.message().contains("security.key_file"), "{error}");
        assert!(
            error
                .message()
                .contains("/nonexistent/queue-runtime/keys.json"),
            "{error}"
        );
    }

    #[test]
    fn an_empty_file_means_memory_with_defaults() {
        let config = ClientConfig::from_toml_str("").unwrap();
        let memory = memory_settings(config);
        assert_eq!(memory, MemorySettings::default());
    }

    #[test]
    fn unknown_fields_are_refused() {
        let error = ClientConfig::from_toml_str("[memory]\nlock_durration = \"5s\"").unwrap_err();
        assert!(error.to_string().contains("lock_durration"), "{error}");
    }

    #[test]
    fn every_invalid_field_is_reported_with_its_path() {
        let error = ClientConfig::from_toml_str(
            r#"
            [memory]
            max_message_bytes = 0
            max_delivery_count = 0
            lock_duration = "0s"
            [[memory.queues]]
            name = "bad name"
            capacity = 0
            [[memory.queues]]
            name = "twice"
            [[memory.queues]]
            name = "twice"
            max_delivery_count = 0
            "#,
        )
        .unwrap_err();
        let paths: Vec<&str> = error.problems().iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "memory.max_message_bytes",
                "memory.lock_duration",
                "memory.max_delivery_count",
                "memory.queues[0].name",
                "memory.queues[0].capacity",
                "memory.queues[2].name",
                "memory.queues[2].max_delivery_count",
            ]
        );
        let text = error.to_string();
        assert!(
            text.contains("memory.max_delivery_count: must be at least 1"),
            "{text}"
        );
    }

    #[test]
    fn unknown_and_absent_providers_are_explained() {
        let error = ClientConfig::from_toml_str("provider = \"kafka\"").unwrap_err();
        assert!(error.to_string().contains("memory, sqs, azure"), "{error}");
        // A provider whose feature is off is named with the feature to enable.
        #[cfg(not(feature = "azure"))]
        {
            let error = ClientConfig::from_toml_str("provider = \"azure\"").unwrap_err();
            assert!(
                error.to_string().contains("enable the `azure` feature"),
                "{error}"
            );
        }
        #[cfg(not(feature = "sqs"))]
        {
            let error = ClientConfig::from_toml_str("provider = \"sqs\"").unwrap_err();
            assert!(
                error.to_string().contains("enable the `sqs` feature"),
                "{error}"
            );
        }
    }

    fn memory_settings(config: ClientConfig) -> MemorySettings {
        match config.provider {
            ProviderConfig::Memory(memory) => memory,
            #[allow(unreachable_patterns)]
            other => panic!("expected the memory provider, got {other:?}"),
        }
    }

    #[cfg(feature = "azure")]
    #[test]
    fn azure_settings_are_read_and_secrets_come_from_the_environment() {
        let connection_string = "Endpoint=sb://example.servicebus.windows.net/;SharedAccessKeyName=app;SharedAccessKey=c2VjcmV0";
        let raw: RawConfig = toml::from_str(
            r#"
            provider = "azure"
            [azure]
            connection_string_env = "SERVICEBUS"
            prefetch_count = 10
            transport = "amqp-websockets"
            operation_timeout = "20s"
            [[azure.queues]]
            name = "pr-events"
            sessions = true
            "#,
        )
        .unwrap();
        let mut problems = Vec::new();
        let azure = validate_azure(raw.azure.unwrap(), &mut problems, |name| {
            (name == "SERVICEBUS").then(|| connection_string.to_owned())
        })
        .unwrap_or_else(|| panic!("{problems:?}"));
        let shown = format!("{azure:?}");
        assert!(
            !shown.contains("c2VjcmV0") && !shown.contains("SharedAccessKey"),
            "{shown}"
        );
        assert_eq!(azure.queues().len(), 1);
        assert!(azure.queues()[0].sessions);

        let identity = ClientConfig::from_toml_str(
            r#"
            provider = "azure"
            [azure]
            credential = "managed-identity"
            namespace = "example.servicebus.windows.net"
            client_id = "11111111-2222-3333-4444-555555555555"
            "#,
        )
        .unwrap();
        let ProviderConfig::Azure(identity) = identity.provider else {
            panic!("expected azure");
        };
        assert!(matches!(
            identity.credentials(),
            queue_azure::AzureCredentials::ManagedIdentity {
                client_id: Some(_),
                ..
            }
        ));
    }

    #[cfg(feature = "azure")]
    #[test]
    fn bad_azure_settings_are_reported_with_their_paths() {
        let error = ClientConfig::from_toml_str(
            r#"
            provider = "azure"
            [azure]
            credential = "client-secret"
            client_secret_env = "QUEUE_RUNTIME_TEST_CONFIG_UNSET_SECRET"
            transport = "carrier-pigeon"
            [[azure.queues]]
            name = "bad name"
            "#,
        )
        .unwrap_err();
        let paths: Vec<_> = error.problems().iter().map(|p| p.path.as_str()).collect();
        for expected in [
            "azure.namespace",
            "azure.tenant_id",
            "azure.client_id",
            "azure.client_secret_env",
            "azure.transport",
            "azure.queues[0]",
        ] {
            assert!(
                paths.contains(&expected),
                "{expected} missing from {paths:?}"
            );
        }
        let error = ClientConfig::from_toml_str(
            r#"
            provider = "azure"
            [azure]
            credential = "certificate"
            "#,
        )
        .unwrap_err();
        assert!(error.to_string().contains("azure.credential"), "{error}");
    }

    #[cfg(feature = "sqs")]
    #[test]
    fn sqs_settings_are_read_and_checked() {
        let config = ClientConfig::from_toml_str(
            r#"
            provider = "sqs"
            [sqs]
            region = "eu-west-1"
            endpoint = "http://127.0.0.1:4566"
            queues = ["orders", "events.fifo"]
            unsessioned_fifo = "group:all"
            [sqs.dead_letter_queues]
            orders = "orders-dlq"
            "#,
        )
        .unwrap();
        let ProviderConfig::Sqs(sqs) = config.provider else {
            panic!("expected sqs");
        };
        let shown = format!("{sqs:?}");
        for part in [
            "eu-west-1",
            "127.0.0.1:4566",
            "events.fifo",
            "orders-dlq",
            "all",
        ] {
            assert!(shown.contains(part), "{part} missing from {shown}");
        }
        let error = ClientConfig::from_toml_str(
            r#"
            provider = "sqs"
            [sqs]
            endpoint = "http://10.1.2.3:4566"
            queues = ["bad name"]
            unsessioned_fifo = "sometimes"
            secret_access_key = "never here"
            "#,
        )
        .unwrap_err();
        assert!(error.to_string().contains("secret_access_key"), "{error}");
        let error = ClientConfig::from_toml_str(
            r#"
            provider = "sqs"
            [sqs]
            endpoint = "http://10.1.2.3:4566"
            queues = ["bad name"]
            unsessioned_fifo = "sometimes"
            "#,
        )
        .unwrap_err();
        let paths: Vec<&str> = error.problems().iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            ["sqs.endpoint", "sqs.queues[0]", "sqs.unsessioned_fifo"],
            "{error}"
        );
    }

    #[test]
    fn environment_variables_override_and_are_checked() {
        let vars: HashMap<&str, &str> = [
            ("QUEUE_RUNTIME_PROVIDER", "memory"),
            ("QUEUE_RUNTIME_MEMORY_LOCK_DURATION", "7s"),
            ("QUEUE_RUNTIME_MEMORY_MAX_DELIVERY_COUNT", "2"),
            ("QUEUE_RUNTIME_MEMORY_AUTO_CREATE_QUEUES", "false"),
        ]
        .into();
        let config = ClientConfig::from_vars(|name| vars.get(name).map(|v| v.to_string())).unwrap();
        let memory = memory_settings(config);
        assert_eq!(memory.lock_duration, Duration::from_secs(7));
        assert_eq!(memory.max_delivery_count, 2);
        assert!(!memory.auto_create_queues);

        let bad: HashMap<&str, &str> = [
            ("QUEUE_RUNTIME_MEMORY_LOCK_DURATION", "soon"),
            ("QUEUE_RUNTIME_MEMORY_MAX_MESSAGE_BYTES", "-1"),
            ("QUEUE_RUNTIME_MEMORY_AUTO_CREATE_QUEUES", "maybe"),
        ]
        .into();
        let error =
            ClientConfig::from_vars(|name| bad.get(name).map(|v| v.to_string())).unwrap_err();
        assert_eq!(error.problems().len(), 3, "{error}");
    }

    #[test]
    fn a_config_file_named_by_the_environment_is_read() {
        let path = std::env::temp_dir().join(format!("queue-runtime-{}.toml", std::process::id()));
        std::fs::write(&path, "[memory]\nmax_delivery_count = 5\n").unwrap();
        let file = path.display().to_string();
        let config =
            ClientConfig::from_vars(|name| (name == "QUEUE_RUNTIME_CONFIG").then(|| file.clone()))
                .unwrap();
        std::fs::remove_file(&path).unwrap();
        let memory = memory_settings(config);
        assert_eq!(memory.max_delivery_count, 5);
    }

    #[test]
    fn secrets_are_redacted() {
        #[derive(Debug, Deserialize)]
        struct WithSecret {
            #[allow(dead_code)]
            connection_string: Secret,
        }
        let parsed: WithSecret =
            toml::from_str("connection_string = \"Endpoint=sb://x/;SharedAccessKey=abc\"").unwrap();
        let printed = format!("{parsed:?} {}", parsed.connection_string);
        assert!(!printed.contains("SharedAccessKey"), "{printed}");
        assert_eq!(
            parsed.connection_string.expose(),
            "Endpoint=sb://x/;SharedAccessKey=abc"
        );
    }
}
