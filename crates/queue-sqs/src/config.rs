//! How to reach SQS: region, credentials, endpoint, start-up checks, dead-letter queues.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use queue_core::config::{ConfigError, Problems};
use queue_core::raw::endpoint::is_loopback_host;
use queue_core::{ErrorKind, QueueError, QueueName};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Where the provider gets its credentials.
#[derive(Clone, Default)]
pub enum SqsCredentials {
    /// The standard AWS chain: environment variables, the shared profile files, web identity
    /// tokens, ECS container credentials, then EC2 instance metadata (IMDS).
    #[default]
    Chain,
    /// Fixed credentials, for local servers and tests. Never logged.
    Static {
        /// The access key id.
        access_key_id: SecretString,
        /// The secret access key.
        secret_access_key: SecretString,
        /// The session token of temporary credentials.
        session_token: Option<SecretString>,
    },
}

impl SqsCredentials {
    /// Fixed credentials without a session token.
    pub fn fixed(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        SqsCredentials::Static {
            access_key_id: SecretString::from(access_key_id.into()),
            secret_access_key: SecretString::from(secret_access_key.into()),
            session_token: None,
        }
    }

    pub(crate) fn to_sdk(&self) -> Option<aws_sdk_sqs::config::Credentials> {
        match self {
            SqsCredentials::Chain => None,
            SqsCredentials::Static {
                access_key_id,
                secret_access_key,
                session_token,
            } => Some(aws_sdk_sqs::config::Credentials::new(
                access_key_id.expose_secret(),
                secret_access_key.expose_secret(),
                session_token
                    .as_ref()
                    .map(|token| token.expose_secret().to_owned()),
                None,
                "queue-runtime static credentials",
            )),
        }
    }
}

impl fmt::Debug for SqsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SqsCredentials::Chain => f.write_str("Chain"),
            SqsCredentials::Static { .. } => f.write_str("Static([REDACTED])"),
        }
    }
}

/// What a FIFO queue does with a message that has no session id (SQS needs a message group for
/// every message there).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum UnsessionedFifo {
    /// Refuse it with `InvalidInput` (the default: a FIFO queue is chosen for its order, and a
    /// message without a session has none to keep).
    #[default]
    Reject,
    /// Put it in a message group of its own (its message id): no order with other messages,
    /// but SQS's deduplication and one-at-a-time delivery per message still apply.
    GroupPerMessage,
    /// Put it in this message group: one ordered stream for every message without a session.
    Group(String),
}

impl UnsessionedFifo {
    /// The choice named as in a configuration file: `reject`, `group-per-message` or
    /// `group:<name>`.
    pub fn from_name(name: &str) -> Result<Self, QueueError> {
        match name {
            "reject" => Ok(UnsessionedFifo::Reject),
            "group-per-message" => Ok(UnsessionedFifo::GroupPerMessage),
            other => match other.strip_prefix("group:") {
                Some(group) if !group.is_empty() => Ok(UnsessionedFifo::Group(group.to_owned())),
                _ => Err(QueueError::new(
                    ErrorKind::Config,
                    format!(
                        "{other:?}: expected \"reject\", \"group-per-message\" or \"group:<name>\""
                    ),
                )),
            },
        }
    }
}

/// The `[sqs]` section as written: never credentials.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SqsSection {
    region: Option<String>,
    endpoint: Option<String>,
    check_on_connect: Option<bool>,
    #[serde(default)]
    queues: Vec<String>,
    #[serde(default)]
    dead_letter_queues: BTreeMap<String, String>,
    unsessioned_fifo: Option<String>,
    #[serde(default, with = "humantime_serde")]
    settle_linger: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    attempt_timeout: Option<Duration>,
}

/// The settings of an [`SqsProvider`](crate::SqsProvider).
///
/// ```
/// use queue_sqs::{SqsConfig, SqsCredentials};
///
/// let config = SqsConfig::new()
///     .with_region("eu-west-1")
///     .with_endpoint("http://127.0.0.1:4566")?
///     .with_credentials(SqsCredentials::fixed("test", "test"))
///     .with_queue("orders".parse()?);
/// assert!(!format!("{config:?}").contains("test\""));
/// # Ok::<(), queue_core::QueueError>(())
/// ```
#[derive(Debug, Clone)]
pub struct SqsConfig {
    pub(crate) region: Option<String>,
    pub(crate) endpoint: Option<String>,
    pub(crate) credentials: SqsCredentials,
    pub(crate) check_on_connect: bool,
    pub(crate) queues: Vec<QueueName>,
    pub(crate) dead_letter_queues: BTreeMap<QueueName, QueueName>,
    pub(crate) unsessioned_fifo: UnsessionedFifo,
    pub(crate) settle_linger: Duration,
    pub(crate) attempt_timeout: Duration,
}

/// How long settles wait, by default, to be coalesced into batch calls.
pub const DEFAULT_SETTLE_LINGER: Duration = Duration::from_millis(5);
/// How long one call may take, by default, beyond its long poll.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

impl Default for SqsConfig {
    fn default() -> Self {
        SqsConfig {
            region: None,
            endpoint: None,
            credentials: SqsCredentials::Chain,
            check_on_connect: true,
            queues: Vec::new(),
            dead_letter_queues: BTreeMap::new(),
            unsessioned_fifo: UnsessionedFifo::Reject,
            settle_linger: DEFAULT_SETTLE_LINGER,
            attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT,
        }
    }
}

impl SqsConfig {
    /// The standard credential chain, the region from the environment (`AWS_REGION`, the
    /// profile), AWS's own endpoint, and checks at connect.
    pub fn new() -> Self {
        Self::default()
    }

    /// The AWS region (`us-east-1`, `eu-west-1`, ...). Without it the environment's is used.
    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Sends requests to `endpoint` instead of AWS's (a local SQS server, a VPC endpoint).
    ///
    /// Only `https` endpoints are accepted, except `http` on a loopback address (`127.0.0.1`,
    /// `::1`, `localhost`), where nothing crosses a network.
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Result<Self, QueueError> {
        let endpoint = endpoint.into();
        check_endpoint(&endpoint)?;
        self.endpoint = Some(endpoint);
        Ok(self)
    }

    /// Where the credentials come from (default: the standard chain).
    pub fn with_credentials(mut self, credentials: SqsCredentials) -> Self {
        self.credentials = credentials;
        self
    }

    /// Whether [`SqsProvider::connect`](crate::SqsProvider::connect) checks the credentials
    /// and every queue named with [`with_queue`](Self::with_queue) (default: on).
    pub fn with_check_on_connect(mut self, check: bool) -> Self {
        self.check_on_connect = check;
        self
    }

    /// A queue the application uses: checked at connect, its URL and attributes cached.
    pub fn with_queue(mut self, queue: QueueName) -> Self {
        self.queues.push(queue);
        self
    }

    /// The dead-letter queue of `queue`, when it has no redrive policy naming one (a redrive
    /// policy, when present, is used otherwise).
    pub fn with_dead_letter_queue(mut self, queue: QueueName, dead_letter: QueueName) -> Self {
        self.dead_letter_queues.insert(queue, dead_letter);
        self
    }

    /// What FIFO queues do with messages without a session id (default: refuse them).
    pub fn with_unsessioned_fifo(mut self, choice: UnsessionedFifo) -> Self {
        self.unsessioned_fifo = choice;
        self
    }

    /// How long a settle (`complete`, `abandon`, a lock renewal) waits for others to share its
    /// batch call (`DeleteMessageBatch`, `ChangeMessageVisibilityBatch`, up to ten entries; a
    /// full batch goes at once). Default [`DEFAULT_SETTLE_LINGER`] (5 ms); zero turns batching
    /// off: every settle is then its own call.
    pub fn with_settle_linger(mut self, linger: Duration) -> Self {
        self.settle_linger = linger;
        self
    }

    /// How long one HTTP attempt may take: every call gets this much, a receive this much on
    /// top of its long poll, so a server that stops answering yields a `Timeout` error instead
    /// of a hang. Default [`DEFAULT_ATTEMPT_TIMEOUT`] (10 s). For clients from
    /// [`SqsProvider::from_client`](crate::SqsProvider::from_client), only receives get it (on
    /// top of their long poll); the client's own timeouts apply to the rest.
    pub fn with_attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = timeout;
        self
    }

    /// Reads the `[sqs]` section of a configuration (any serde format), reporting every
    /// problem with its path in the section. Credentials are never read from it: they come from
    /// the standard AWS chain (environment, profile, web identity, ECS, IMDS). `env` is not
    /// consulted: the SDK reads its own variables (`AWS_REGION`, `AWS_ENDPOINT_URL_SQS`, ...).
    ///
    /// ```
    /// use queue_sqs::SqsConfig;
    ///
    /// let section: toml::Value = toml::from_str(r#"
    ///     region = "eu-west-1"
    ///     queues = ["orders", "pr-events.fifo"]
    ///     unsessioned_fifo = "group-per-message"
    ///     settle_linger = "5ms"        # "0s" turns settle batching off
    ///     attempt_timeout = "10s"
    ///     [dead_letter_queues]
    ///     orders = "orders-dlq"
    /// "#)?;
    /// let config = SqsConfig::from_section(section, &|_| None)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_section<'de, D: serde::Deserializer<'de>>(
        section: D,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let _ = env;
        let raw = SqsSection::deserialize(section)
            .map_err(|error| ConfigError::single("", error.to_string()))?;
        let mut problems = Problems::new();
        let mut config = SqsConfig::new();
        if let Some(region) = raw.region {
            config = config.with_region(region);
        }
        if let Some(endpoint) = raw.endpoint
            && let Some(with_endpoint) =
                problems.check("endpoint", config.clone().with_endpoint(endpoint))
        {
            config = with_endpoint;
        }
        if let Some(check) = raw.check_on_connect {
            config = config.with_check_on_connect(check);
        }
        for (index, name) in raw.queues.iter().enumerate() {
            if let Some(queue) = problems.check(format!("queues[{index}]"), QueueName::new(name)) {
                config = config.with_queue(queue);
            }
        }
        for (queue, dead_letter) in &raw.dead_letter_queues {
            let path = format!("dead_letter_queues.{queue}");
            let queue = problems.check(path.clone(), QueueName::new(queue));
            let dead_letter = problems.check(path, QueueName::new(dead_letter));
            if let (Some(queue), Some(dead_letter)) = (queue, dead_letter) {
                config = config.with_dead_letter_queue(queue, dead_letter);
            }
        }
        if let Some(choice) = raw.unsessioned_fifo
            && let Some(choice) =
                problems.check("unsessioned_fifo", UnsessionedFifo::from_name(&choice))
        {
            config = config.with_unsessioned_fifo(choice);
        }
        if let Some(linger) = raw.settle_linger {
            config = config.with_settle_linger(linger);
        }
        if let Some(timeout) = raw.attempt_timeout {
            if timeout.is_zero() {
                problems.push("attempt_timeout", "must be longer than zero");
            }
            config = config.with_attempt_timeout(timeout);
        }
        problems.finish(Some(config))
    }

    /// The endpoint to use: the configured one, else `AWS_ENDPOINT_URL_SQS`, else
    /// `AWS_ENDPOINT_URL`, each checked like [`with_endpoint`](Self::with_endpoint).
    pub(crate) fn resolved_endpoint(
        &self,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<String>, QueueError> {
        let endpoint = self
            .endpoint
            .clone()
            .or_else(|| var("AWS_ENDPOINT_URL_SQS"))
            .or_else(|| var("AWS_ENDPOINT_URL"))
            .filter(|endpoint| !endpoint.trim().is_empty());
        if let Some(endpoint) = &endpoint {
            check_endpoint(endpoint)?;
        }
        Ok(endpoint)
    }
}

/// HTTPS anywhere; plain HTTP only to this machine.
fn check_endpoint(endpoint: &str) -> Result<(), QueueError> {
    let invalid = |why: &str| {
        QueueError::new(
            ErrorKind::Config,
            format!("SQS endpoint {endpoint:?} {why}"),
        )
    };
    let uri: http::Uri = endpoint.parse().map_err(|_| invalid("is not a URL"))?;
    let host = uri.host().ok_or_else(|| invalid("has no host"))?;
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if is_loopback_host(host) => Ok(()),
        Some("http") => Err(invalid(
            "uses plain http to a host that is not loopback; use https (plain http is accepted \
             only for 127.0.0.0/8, ::1 and localhost)",
        )),
        _ => Err(invalid("must start with https://")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_https_or_loopback_http() {
        for ok in [
            "https://sqs.eu-west-1.amazonaws.com",
            "https://vpce-1.sqs.example.internal:8443",
            "http://127.0.0.1:5000",
            "http://127.8.9.10",
            "http://localhost:4566",
            "http://[::1]:4566",
        ] {
            assert!(check_endpoint(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://10.0.0.5:4566",
            "http://sqs.example.com",
            "ftp://127.0.0.1",
            "127.0.0.1:4566",
            "not a url",
            "http://localhost.example.com",
        ] {
            let error = check_endpoint(bad).expect_err(bad);
            assert_eq!(error.kind(), ErrorKind::Config, "{bad}");
        }
    }

    #[test]
    fn endpoint_comes_from_config_then_service_then_global_variable() {
        let vars = |name: &str| match name {
            "AWS_ENDPOINT_URL_SQS" => Some("http://127.0.0.1:1".to_owned()),
            "AWS_ENDPOINT_URL" => Some("http://127.0.0.1:2".to_owned()),
            _ => None,
        };
        let configured = SqsConfig::new()
            .with_endpoint("https://example.com")
            .expect("https");
        assert_eq!(
            configured
                .resolved_endpoint(vars)
                .expect("valid")
                .as_deref(),
            Some("https://example.com")
        );
        assert_eq!(
            SqsConfig::new()
                .resolved_endpoint(vars)
                .expect("valid")
                .as_deref(),
            Some("http://127.0.0.1:1")
        );
        let remote = |_: &str| Some("http://192.168.1.1".to_owned());
        assert!(SqsConfig::new().resolved_endpoint(remote).is_err());
    }

    #[test]
    fn credentials_never_show_in_debug() {
        let config = SqsConfig::new().with_credentials(SqsCredentials::Static {
            access_key_id: SecretString::from("AKIASECRETID"),
            secret_access_key: SecretString::from("very-secret-key"),
            session_token: Some(SecretString::from("token-value")),
        });
        let shown = format!("{config:?}");
        for secret in ["AKIASECRETID", "very-secret-key", "token-value"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("REDACTED"));
    }
}

#[cfg(test)]
mod section_tests {
    use super::*;

    fn read(text: &str) -> Result<SqsConfig, ConfigError> {
        SqsConfig::from_section(toml::from_str::<toml::Value>(text).expect("toml"), &|_| {
            None
        })
    }

    #[test]
    fn a_full_section_is_read() {
        let config = read(
            r#"
            region = "eu-west-1"
            endpoint = "http://127.0.0.1:4566"
            check_on_connect = false
            queues = ["orders", "pr-events.fifo"]
            unsessioned_fifo = "group:default"
            settle_linger = "0s"
            attempt_timeout = "2s"
            [dead_letter_queues]
            orders = "orders-dlq"
            "#,
        )
        .expect("valid");
        assert_eq!(config.region.as_deref(), Some("eu-west-1"));
        assert!(!config.check_on_connect);
        assert_eq!(config.queues.len(), 2);
        assert_eq!(
            config.unsessioned_fifo,
            UnsessionedFifo::Group("default".into())
        );
        assert_eq!(config.dead_letter_queues.len(), 1);
        assert_eq!(config.settle_linger, Duration::ZERO);
        assert_eq!(config.attempt_timeout, Duration::from_secs(2));
        let defaults = read("").expect("valid");
        assert_eq!(defaults.settle_linger, DEFAULT_SETTLE_LINGER);
    }

    #[test]
    fn every_problem_is_named_and_credentials_are_not_read() {
        let error = read(
            r#"
            endpoint = "http://example.com"
            queues = ["ok", "not ok"]
            unsessioned_fifo = "sometimes"
            [dead_letter_queues]
            "bad name" = "dlq"
            "#,
        )
        .expect_err("invalid");
        let paths: Vec<&str> = error.problems().iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "endpoint",
                "queues[1]",
                "dead_letter_queues.bad name",
                "unsessioned_fifo"
            ]
        );
        let secret = read(r#"access_key_id = "AKIA...""#).expect_err("no credentials here");
        assert!(secret.to_string().contains("access_key_id"));
    }
}
