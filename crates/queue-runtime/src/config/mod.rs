//! Choosing and configuring the provider at run time: from code, a TOML file or environment
//! variables. One async entry point builds a client from any of them, for every provider:
//! [`QueueClient::connect`](crate::QueueClient::connect) (or
//! [`QueueClient::from_env`](crate::QueueClient::from_env)).
//!
//! The file is the provider's section, tagged by `provider`, plus `[security]` and
//! `[resilience]`. Each provider crate reads its own section (`MemoryConfig::from_section`,
//! `SqsConfig::from_section`, `AzureConfig::from_section`); this module only dispatches on the
//! name ([`providers`](self) in the source) and reads the two sections every provider shares.
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
//!                                             # or, with their features: aws_secret_id =
//!                                             # "...", key_vault_url = "https://..." (with
//!                                             # key_vault_secret); key_wrapping = "aws-kms"
//!                                             # for a KMS-wrapped keyset (docs/operations.md)
//! refresh_interval = "30s"
//! # role = "producer"                         # this process only sends: its keys may hold no
//!                                             # recipient private key (docs/security.md)
//! replay_store = "in-process"                # or "redis": shared by every consumer (the
//!                                             # `redis` feature); the URL comes from the
//! # redis_url_env = "QUEUE_RUNTIME_REDIS_URL"  # variable named here, never from the file
//! # redis_prefix = "queue-runtime:replay"
//! replay_capacity = 100000                    # in-process store only
//! replay_unavailable = "fail_closed"          # or "fail_open" (default and per queue)
//! seal = true
//! mode = "shared_key"                         # or "public_key": sealed to the consumers'
//!                                             # public key, signed by the producer
//! unsealed = "reject"                         # or "allow", "allow_with_alert"
//! freshness_window = "5m"
//! clock_skew = "1m"
//!
//! [[security.queues]]                         # a queue with its own policy
//! name = "legacy-events"
//! seal = false
//! unsealed = "allow_with_alert"
//!
//! [[security.queues]]
//! name = "payments"
//! mode = "public_key"
//! key_file = "/etc/queue-runtime/payments-keys.json"  # optional: this queue's own keys (its
//!                                             # recipient key and trust list), or key_env
//! ```
//!
//! Environment variables (they override the file):
//!
//! | Variable | Meaning |
//! |---|---|
//! | `QUEUE_RUNTIME_CONFIG` | path of a TOML file as above |
//! | `QUEUE_RUNTIME_PROVIDER` | `memory`, `sqs` or `azure` |
//! | `QUEUE_RUNTIME_MEMORY_MAX_MESSAGE_BYTES` | memory: the broker's message limit, bytes |
//! | `QUEUE_RUNTIME_MEMORY_AUTO_CREATE_QUEUES` | memory: `true` or `false` |
//! | `QUEUE_RUNTIME_MEMORY_LOCK_DURATION` | memory: default lock, e.g. `30s` |
//! | `QUEUE_RUNTIME_MEMORY_MAX_DELIVERY_COUNT` | memory: default delivery limit |
//! | `QUEUE_RUNTIME_AZURE_CONNECTION_STRING` | azure: the connection string (the default variable) |
//! | `AWS_REGION`, `AWS_ENDPOINT_URL_SQS`, `AWS_ACCESS_KEY_ID`, ... | sqs: read by the AWS SDK itself |
//! | `QUEUE_RUNTIME_KEY_FILE` | security: path of a keyset file |
//! | `QUEUE_RUNTIME_KEY_ENV` | security: name of the variable holding a base64 keyset |
//!
//! A configured key source is read once when the client is built, so a missing file or a
//! malformed keyset is a configuration error at startup, not a failure at the first message.
//!
//! Validation reports every invalid field with its path, not only the first.

mod key_document;
mod key_sources;
mod providers;
mod resilience;
mod security;

use std::fmt;
use std::path::Path;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

pub use key_document::KeyDocument;
pub use providers::ProviderConfig;
use queue_core::config::Problems;
pub use queue_core::{ConfigError, ConfigProblem};
pub use security::{
    KeySourceSettings, REDIS_URL_VARIABLE, ReplayStoreSettings, SecretText, SecuritySettings,
};

use crate::resilience::Resilience;

/// A validated client configuration: the provider, its security, its resilience.
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

/// The file as written: the provider's name, its section (read by the provider), and the
/// sections every provider shares. Sections of providers not chosen are not read.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    provider: Option<String>,
    memory: Option<toml::Value>,
    sqs: Option<toml::Value>,
    azure: Option<toml::Value>,
    security: Option<security::SecuritySection>,
    resilience: Option<resilience::ResilienceSection>,
}

impl FileConfig {
    fn parse(text: &str, path: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|error| ConfigError::single(path, error.message().to_owned()))
    }

    fn section(&mut self, provider: &str) -> Option<toml::Value> {
        match provider {
            "memory" => self.memory.take(),
            "sqs" => self.sqs.take(),
            "azure" => self.azure.take(),
            _ => None,
        }
    }

    /// The checked configuration; `env` reaches the provider (for the secrets its section
    /// names and its own variables).
    fn read(mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<ClientConfig, ConfigError> {
        let name = self.provider.clone().unwrap_or_else(|| "memory".to_owned());
        let section = self.section(&name);
        let provider = providers::read(&name, section, env);
        let mut problems = Problems::new();
        let security = self
            .security
            .and_then(|security| security.read(&mut problems, env));
        let resilience = self.resilience.unwrap_or_default().read(&mut problems);
        let shared = problems.finish(Some(()));
        match (provider, shared) {
            (Ok(provider), Ok(())) => Ok(ClientConfig {
                provider,
                security,
                resilience,
            }),
            (Err(error), Ok(())) | (Ok(_), Err(error)) => Err(error),
            (Err(provider), Err(shared)) => Err(provider.and(shared)),
        }
    }
}

impl ClientConfig {
    /// A provider with no security and the default resilience.
    pub fn new(provider: ProviderConfig) -> Self {
        ClientConfig {
            provider,
            security: None,
            resilience: Resilience::default(),
        }
    }

    /// Parses and validates a TOML document (secrets its provider section names are looked up
    /// in the process environment).
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        Self::from_toml_str_with(text, &|name| std::env::var(name).ok())
    }

    /// The same, with the variables looked up by `env`.
    pub fn from_toml_str_with(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        FileConfig::parse(text, "(toml)")?.read(env)
    }

    /// Reads, parses and validates a TOML file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|error| {
            ConfigError::single(path.display().to_string(), format!("cannot read: {error}"))
        })?;
        Self::from_toml_str(&text)
            .map_err(|error| error.with_prefix(&format!("{}: ", path.display())))
    }

    /// Reads the configuration from the process environment (see the module documentation).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// Reads the configuration from variables looked up by `var` (the environment, in
    /// [`from_env`](Self::from_env)): the file `QUEUE_RUNTIME_CONFIG` names, then the
    /// variables that override it. `var` reaches the provider too, for the secrets its section
    /// names and its own variables; exposed so the rules can be tested without touching the
    /// process environment.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut file = match var("QUEUE_RUNTIME_CONFIG") {
            Some(path) => {
                let text = std::fs::read_to_string(&path).map_err(|error| {
                    ConfigError::single(
                        "QUEUE_RUNTIME_CONFIG",
                        format!("cannot read {path}: {error}"),
                    )
                })?;
                FileConfig::parse(&text, &format!("{path} (toml)"))?
            }
            None => FileConfig::default(),
        };
        if let Some(provider) = var("QUEUE_RUNTIME_PROVIDER") {
            file.provider = Some(provider);
        }
        if let Some(path) = var("QUEUE_RUNTIME_KEY_FILE") {
            file.security.get_or_insert_with(Default::default).key_file = Some(path);
        }
        if let Some(variable) = var("QUEUE_RUNTIME_KEY_ENV") {
            file.security.get_or_insert_with(Default::default).key_env = Some(variable);
        }
        file.read(&var)
    }
}

#[cfg(test)]
mod tests {
    #[cfg(any(feature = "memory", feature = "azure"))]
    use std::collections::HashMap;
    use std::time::Duration;

    use super::*;
    use crate::security::UnsealedPolicy;

    fn paths(error: &ConfigError) -> Vec<&str> {
        error.problems().iter().map(|p| p.path.as_str()).collect()
    }

    #[cfg(feature = "memory")]
    fn memory_config(config: ClientConfig) -> queue_memory::MemoryConfig {
        match config.provider {
            ProviderConfig::Memory(memory) => memory,
            #[allow(unreachable_patterns)]
            other => panic!("expected the memory provider, got {other:?}"),
        }
    }

    #[cfg(feature = "memory")]
    #[test]
    fn the_memory_section_is_read_by_the_memory_provider() {
        let config = ClientConfig::from_toml_str(
            r#"
            provider = "memory"
            [memory]
            max_message_bytes = 4096
            auto_create_queues = false
            lock_duration = "10s"
            [[memory.queues]]
            name = "pr-events"
            sessions = true
            "#,
        )
        .unwrap();
        assert_eq!(config.provider.name(), "memory");
        let memory = memory_config(config);
        assert_eq!(memory.max_message_bytes(), 4096);
        assert!(!memory.auto_create_queues());
        assert_eq!(memory.queues()[0].0.as_str(), "pr-events");
        assert!(memory.queues()[0].1.requires_session());
    }

    #[tokio::test]
    async fn security_settings_parse_with_per_queue_policies() {
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
        #[cfg(feature = "memory")]
        {
            let client = crate::QueueClient::connect(&config).await.unwrap();
            assert!(client.security().is_some());
        }
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
        let found = paths(&error);
        for expected in [
            "security",
            "security.refresh_interval",
            "security.replay_capacity",
            "security.freshness_window",
            "security.queues[0].clock_skew",
            "security.queues[0].name",
        ] {
            assert!(
                found.contains(&expected),
                "{expected} missing from {found:?}"
            );
        }
        let unknown =
            ClientConfig::from_toml_str("[security]\nkey_file = \"k\"\nunsealed = \"maybe\"")
                .unwrap_err();
        assert!(unknown.to_string().contains("maybe"), "{unknown}");
        let typo = ClientConfig::from_toml_str("[security]\nkey_fle = \"k\"").unwrap_err();
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
        assert_eq!(
            paths(&error),
            ["resilience.max_attempts", "resilience.success_threshold"]
        );
    }

    #[cfg(feature = "memory")]
    #[tokio::test]
    async fn a_missing_key_file_fails_at_startup() {
        let config = ClientConfig::from_toml_str(
            "[security]\nkey_file = \"/nonexistent/queue-runtime/keys.json\"",
        )
        .unwrap();
        let error = crate::QueueClient::connect(&config).await.unwrap_err();
        assert_eq!(error.kind(), queue_core::ErrorKind::Config);
        assert!(error.message().contains("security.key_file"), "{error}");
        assert!(
            error
                .message()
                .contains("/nonexistent/queue-runtime/keys.json"),
            "{error}"
        );
    }

    #[cfg(feature = "memory")]
    #[test]
    fn an_empty_file_means_memory_with_defaults() {
        let config = ClientConfig::from_toml_str("").unwrap();
        let memory = memory_config(config);
        let defaults = queue_memory::MemoryConfig::default();
        assert_eq!(memory.max_message_bytes(), defaults.max_message_bytes());
        assert!(memory.queues().is_empty());
        assert_eq!(
            memory.default_queue_options(),
            defaults.default_queue_options()
        );
    }

    #[test]
    fn unknown_fields_and_sections_are_refused() {
        let error = ClientConfig::from_toml_str("[memory]\nlock_durration = \"5s\"").unwrap_err();
        assert!(error.to_string().contains("lock_durration"), "{error}");
        let error = ClientConfig::from_toml_str("[kafka]\nbrokers = 3").unwrap_err();
        assert!(error.to_string().contains("kafka"), "{error}");
    }

    #[cfg(feature = "memory")]
    #[test]
    fn every_invalid_field_is_reported_with_its_path_in_every_section() {
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
            [resilience]
            max_attempts = 0
            "#,
        )
        .unwrap_err();
        let found = paths(&error);
        for expected in [
            "memory.max_message_bytes",
            "memory.lock_duration",
            "memory.max_delivery_count",
            "memory.queues[0].name",
            "memory.queues[2].name",
            "resilience.max_attempts",
        ] {
            assert!(
                found.contains(&expected),
                "{expected} missing from {found:?}"
            );
        }
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
        #[cfg(not(feature = "memory"))]
        {
            let error = ClientConfig::from_toml_str("").unwrap_err();
            assert!(
                error.to_string().contains("enable the `memory` feature"),
                "{error}"
            );
        }
    }

    /// The lookup given to `from_vars` is the one the provider's secrets come from (it used to
    /// be bypassed for the Service Bus connection string).
    #[cfg(feature = "azure")]
    #[test]
    fn the_injected_lookup_reaches_the_service_bus_secrets() {
        let connection_string = "Endpoint=sb://example.servicebus.windows.net/;SharedAccessKeyName=app;SharedAccessKey=c2VjcmV0";
        let vars: HashMap<&str, &str> = [
            ("QUEUE_RUNTIME_PROVIDER", "azure"),
            ("QUEUE_RUNTIME_AZURE_CONNECTION_STRING", connection_string),
        ]
        .into();
        let config = ClientConfig::from_vars(|name| vars.get(name).map(|v| v.to_string())).unwrap();
        let azure = match &config.provider {
            ProviderConfig::Azure(azure) => azure,
            #[allow(unreachable_patterns)]
            other => panic!("expected azure, got {other:?}"),
        };
        let shown = format!("{azure:?}");
        assert!(!shown.contains("c2VjcmV0"), "{shown}");
        let unset = ClientConfig::from_vars(|name| {
            (name == "QUEUE_RUNTIME_PROVIDER").then(|| "azure".to_owned())
        })
        .unwrap_err();
        assert_eq!(paths(&unset), ["azure.connection_string_env"]);
    }

    #[cfg(feature = "azure")]
    #[test]
    fn bad_azure_settings_are_reported_with_their_paths() {
        let error = ClientConfig::from_toml_str_with(
            r#"
            provider = "azure"
            [azure]
            credential = "client-secret"
            client_secret_env = "UNSET_SECRET"
            transport = "carrier-pigeon"
            [[azure.queues]]
            name = "bad name"
            "#,
            &|_| None,
        )
        .unwrap_err();
        let found = paths(&error);
        for expected in [
            "azure.namespace",
            "azure.tenant_id",
            "azure.client_id",
            "azure.client_secret_env",
            "azure.transport",
            "azure.queues[0]",
        ] {
            assert!(
                found.contains(&expected),
                "{expected} missing from {found:?}"
            );
        }
    }

    #[cfg(feature = "sqs")]
    #[test]
    fn the_sqs_section_is_read_by_the_sqs_provider() {
        let config = ClientConfig::from_toml_str(
            r#"
            provider = "sqs"
            [sqs]
            region = "eu-west-1"
            queues = ["orders"]
            "#,
        )
        .unwrap();
        assert_eq!(config.provider.name(), "sqs");
        let error = ClientConfig::from_toml_str(
            r#"
            provider = "sqs"
            [sqs]
            endpoint = "http://10.1.2.3:4566"
            queues = ["bad name"]
            "#,
        )
        .unwrap_err();
        assert_eq!(paths(&error), ["sqs.endpoint", "sqs.queues[0]"], "{error}");
    }

    #[cfg(feature = "memory")]
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
        let memory = memory_config(config);
        let options = memory.default_queue_options();
        assert_eq!(options.lock_duration(), Duration::from_secs(7));
        assert_eq!(options.max_delivery_count(), 2);
        assert!(!memory.auto_create_queues());

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

    #[cfg(feature = "memory")]
    #[test]
    fn a_config_file_named_by_the_environment_is_read() {
        let path = std::env::temp_dir().join(format!("queue-runtime-{}.toml", std::process::id()));
        std::fs::write(&path, "[memory]\nmax_delivery_count = 5\n").unwrap();
        let file = path.display().to_string();
        let config =
            ClientConfig::from_vars(|name| (name == "QUEUE_RUNTIME_CONFIG").then(|| file.clone()))
                .unwrap();
        std::fs::remove_file(&path).unwrap();
        let memory = memory_config(config);
        assert_eq!(memory.default_queue_options().max_delivery_count(), 5);
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

    #[tokio::test]
    async fn public_key_mode_and_the_producer_role_come_from_the_file() {
        use queue_crypto::KeyId;
        use queue_crypto::public::Kem;
        use queue_keys::{KeysetDocument, Role};

        let directory = std::env::temp_dir().join(format!("qr-config-pk-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let mut consumer = KeysetDocument::empty(Some(Role::Consumer));
        consumer
            .generate_recipient_key(KeyId::new("r1").unwrap(), Kem::default())
            .unwrap();
        let mut producer = KeysetDocument::empty(Some(Role::Producer));
        producer
            .generate_signing_key(KeyId::new("s1").unwrap())
            .unwrap();
        producer
            .import_public(&consumer.export_public().unwrap())
            .unwrap();
        consumer
            .import_public(&producer.export_public().unwrap())
            .unwrap();
        let producer_file = directory.join("producer.json");
        let consumer_file = directory.join("consumer.json");
        producer.write_file(&producer_file).unwrap();
        consumer.write_file(&consumer_file).unwrap();

        let text = |file: &std::path::Path| {
            format!(
                r#"
                [security]
                key_file = "{}"
                role = "producer"
                [[security.queues]]
                name = "payments"
                mode = "public_key"
                "#,
                file.display()
            )
        };
        let config = ClientConfig::from_toml_str(&text(&producer_file)).unwrap();
        let security = config.security.clone().unwrap();
        assert!(security.producer_only);
        assert_eq!(
            security.default_policy.mode,
            crate::security::SealMode::SharedKey
        );
        assert_eq!(
            security.queues[0].1.mode,
            crate::security::SealMode::PublicKey
        );
        security.build().await.unwrap();

        // A queue with keys of its own: read at startup, refused there too when they could
        // open, and named by their place in the file.
        let config = ClientConfig::from_toml_str(&format!(
            r#"
            [security]
            key_file = "{}"
            role = "producer"
            [[security.queues]]
            name = "audit"
            [[security.queues]]
            name = "payments"
            mode = "public_key"
            key_file = "{}"
            "#,
            producer_file.display(),
            consumer_file.display()
        ))
        .unwrap();
        let security = config.security.unwrap();
        assert_eq!(
            security.queue_keys,
            [(
                queue_core::QueueName::new("payments").unwrap(),
                KeySourceSettings::File(consumer_file.clone())
            )]
        );
        let error = security.build().await.unwrap_err();
        assert!(
            error.to_string().contains("security.queues[1].key_file"),
            "{error}"
        );

        // The consumer's file, named by a producer's configuration: refused at startup.
        let config = ClientConfig::from_toml_str(&text(&consumer_file)).unwrap();
        let error = config.security.unwrap().build().await.unwrap_err();
        assert!(
            error.to_string().contains("recipient private key"),
            "{error}"
        );

        let error = ClientConfig::from_toml_str("[security]\nkey_file = \"k\"\nmode = \"both\"")
            .unwrap_err();
        assert!(error.to_string().contains("public_key"), "{error}");
        let error = ClientConfig::from_toml_str("[security]\nkey_file = \"k\"\nrole = \"reader\"")
            .unwrap_err();
        assert!(error.to_string().contains("security.role"), "{error}");
        let _ = std::fs::remove_dir_all(&directory);
    }
}
