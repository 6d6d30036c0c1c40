//! How to reach a Service Bus namespace: credentials, start-up checks, link settings.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use queue_core::config::{ConfigError, Problems};
use queue_core::raw::endpoint::is_loopback_host;
use queue_core::{ErrorKind, QueueError, QueueName};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// The largest message of the Service Bus standard tier, the default limit.
pub const STANDARD_TIER_MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// How the provider authenticates to the namespace.
#[derive(Clone)]
pub enum AzureCredentials {
    /// A connection string with a shared access key or signature (`Endpoint=sb://...;
    /// SharedAccessKeyName=...;SharedAccessKey=...`). The official emulator's
    /// (`UseDevelopmentEmulator=true`) is accepted for a loopback host only, and then the
    /// connection is unencrypted (the emulator has no TLS). Never logged.
    ConnectionString(SecretString),
    /// `azure_identity`'s `DefaultAzureCredential`: environment (client secret), workload
    /// identity, managed identity, then the Azure CLI.
    Default {
        /// The namespace host, `<name>.servicebus.windows.net`.
        namespace: String,
    },
    /// The managed identity of the VM, container or App Service.
    ManagedIdentity {
        /// The namespace host.
        namespace: String,
        /// The client id of a user-assigned identity; the system-assigned one when `None`.
        client_id: Option<String>,
    },
    /// A service principal's client secret.
    ClientSecret {
        /// The namespace host.
        namespace: String,
        /// The Entra ID tenant.
        tenant_id: String,
        /// The application (client) id.
        client_id: String,
        /// The client secret. Never logged.
        secret: SecretString,
    },
    /// Workload identity federation (Kubernetes): tenant, client id and token file from the
    /// `AZURE_TENANT_ID`, `AZURE_CLIENT_ID` and `AZURE_FEDERATED_TOKEN_FILE` variables.
    WorkloadIdentity {
        /// The namespace host.
        namespace: String,
    },
    /// Any `azure_core` token credential built by the application.
    Token {
        /// The namespace host.
        namespace: String,
        /// The credential.
        credential: Arc<dyn TokenCredential>,
    },
}

impl AzureCredentials {
    /// A connection string credential.
    pub fn connection_string(connection_string: impl Into<String>) -> Self {
        AzureCredentials::ConnectionString(SecretString::from(connection_string.into()))
    }

    /// The namespace host these credentials name, when they name one outside a connection string.
    fn namespace(&self) -> Option<&str> {
        match self {
            AzureCredentials::ConnectionString(_) => None,
            AzureCredentials::Default { namespace }
            | AzureCredentials::ManagedIdentity { namespace, .. }
            | AzureCredentials::ClientSecret { namespace, .. }
            | AzureCredentials::WorkloadIdentity { namespace }
            | AzureCredentials::Token { namespace, .. } => Some(namespace),
        }
    }
}

impl fmt::Debug for AzureCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AzureCredentials::ConnectionString(_) => f.write_str("ConnectionString([REDACTED])"),
            AzureCredentials::Default { namespace } => f
                .debug_struct("Default")
                .field("namespace", namespace)
                .finish(),
            AzureCredentials::ManagedIdentity {
                namespace,
                client_id,
            } => f
                .debug_struct("ManagedIdentity")
                .field("namespace", namespace)
                .field("client_id", client_id)
                .finish(),
            AzureCredentials::ClientSecret {
                namespace,
                tenant_id,
                client_id,
                ..
            } => f
                .debug_struct("ClientSecret")
                .field("namespace", namespace)
                .field("tenant_id", tenant_id)
                .field("client_id", client_id)
                .finish_non_exhaustive(),
            AzureCredentials::WorkloadIdentity { namespace } => f
                .debug_struct("WorkloadIdentity")
                .field("namespace", namespace)
                .finish(),
            AzureCredentials::Token { namespace, .. } => f
                .debug_struct("Token")
                .field("namespace", namespace)
                .finish_non_exhaustive(),
        }
    }
}

/// A queue the provider checks when it connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueCheck {
    /// The queue.
    pub name: QueueName,
    /// Whether the queue must be session-enabled (`true`) or must not be (`false`).
    pub sessions: bool,
}

/// The AMQP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AzureTransport {
    /// AMQP over TCP, port 5671 (5672 for the emulator).
    #[default]
    Amqp,
    /// AMQP over WebSockets, port 443, for networks that only let HTTPS out.
    AmqpWebSockets,
}

/// The settings of an [`AzureProvider`](crate::AzureProvider).
///
/// ```
/// use queue_azure::{AzureConfig, AzureCredentials};
///
/// let config = AzureConfig::new(AzureCredentials::connection_string(
///     "Endpoint=sb://example.servicebus.windows.net/;SharedAccessKeyName=app;SharedAccessKey=s3cret",
/// ))
/// .with_queue("orders".parse()?, false)
/// .with_queue("pull-requests".parse()?, true);
/// config.validate()?;
/// assert!(!format!("{config:?}").contains("s3cret"));
/// # Ok::<(), queue_core::QueueError>(())
/// ```
#[derive(Debug, Clone)]
pub struct AzureConfig {
    pub(crate) credentials: AzureCredentials,
    pub(crate) check_on_connect: bool,
    pub(crate) queues: Vec<QueueCheck>,
    pub(crate) prefetch_count: u32,
    pub(crate) max_message_bytes: usize,
    pub(crate) receive_links_per_queue: usize,
    pub(crate) transport: AzureTransport,
    pub(crate) operation_timeout: Duration,
}

impl AzureConfig {
    /// Settings for these credentials: start-up checks on, no prefetch, the standard tier's
    /// 256 KiB message limit, up to 8 receive links per queue, AMQP over TCP, 60 s per
    /// broker operation.
    pub fn new(credentials: AzureCredentials) -> Self {
        AzureConfig {
            credentials,
            check_on_connect: true,
            queues: Vec::new(),
            prefetch_count: 0,
            max_message_bytes: STANDARD_TIER_MAX_MESSAGE_BYTES,
            receive_links_per_queue: 8,
            transport: AzureTransport::Amqp,
            operation_timeout: Duration::from_secs(60),
        }
    }

    /// Whether connecting checks the configured queues (default: yes). Off, the first operation
    /// on a missing queue fails instead.
    pub fn with_check_on_connect(mut self, check: bool) -> Self {
        self.check_on_connect = check;
        self
    }

    /// A queue to check on connect, and whether it must be session-enabled.
    pub fn with_queue(mut self, name: QueueName, sessions: bool) -> Self {
        self.queues.retain(|queue| queue.name != name);
        self.queues.push(QueueCheck { name, sessions });
        self
    }

    /// Messages each receive link fetches ahead (default 0). Prefetched messages are locked
    /// while they wait in memory, so keep this below what a receiver handles within one lock
    /// duration.
    pub fn with_prefetch_count(mut self, prefetch_count: u32) -> Self {
        self.prefetch_count = prefetch_count;
        self
    }

    /// The largest message accepted (default 256 KiB, the standard tier; premium namespaces
    /// take up to 100 MiB). The send link's own limit is checked too.
    pub fn with_max_message_bytes(mut self, max_message_bytes: usize) -> Self {
        self.max_message_bytes = max_message_bytes;
        self
    }

    /// How many receive links one queue may have open at once (default 8): concurrent receive
    /// calls each use an idle link, so this bounds the parallelism of plain receives.
    pub fn with_receive_links_per_queue(mut self, links: usize) -> Self {
        self.receive_links_per_queue = links;
        self
    }

    /// The AMQP transport (default: TCP).
    pub fn with_transport(mut self, transport: AzureTransport) -> Self {
        self.transport = transport;
        self
    }

    /// How long one broker operation may take before the SDK retries it (default 60 s).
    pub fn with_operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// The credentials.
    pub fn credentials(&self) -> &AzureCredentials {
        &self.credentials
    }

    /// The queues checked on connect.
    pub fn queues(&self) -> &[QueueCheck] {
        &self.queues
    }

    /// Checks every setting without connecting.
    pub fn validate(&self) -> Result<(), QueueError> {
        self.endpoint().map(|_| ())?;
        if self.receive_links_per_queue == 0 {
            return Err(config_error("receive_links_per_queue must be at least 1"));
        }
        if self.max_message_bytes <= queue_core::DEAD_LETTER_RESERVE {
            return Err(config_error(format!(
                "max_message_bytes must be more than {} (the room kept for a dead-letter reason)",
                queue_core::DEAD_LETTER_RESERVE
            )));
        }
        if self.operation_timeout < Duration::from_secs(1)
            || self.operation_timeout > Duration::from_secs(3600)
        {
            return Err(config_error(
                "operation_timeout must be between 1 second and 1 hour",
            ));
        }
        Ok(())
    }

    /// Where to connect, from the connection string or the namespace.
    pub(crate) fn endpoint(&self) -> Result<Endpoint, QueueError> {
        match &self.credentials {
            AzureCredentials::ConnectionString(secret) => {
                ConnectionString::parse(secret.expose_secret()).map(|parsed| Endpoint {
                    namespace: parsed.host,
                    emulator: parsed.emulator,
                })
            }
            other => {
                let namespace = other.namespace().unwrap_or_default();
                check_namespace(namespace)?;
                Ok(Endpoint {
                    namespace: namespace.to_owned(),
                    emulator: false,
                })
            }
        }
    }
}

/// The namespace host to connect to, and whether it is the local emulator (no TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub(crate) namespace: String,
    pub(crate) emulator: bool,
}

/// What the provider needs to know of a connection string (the SDK parses it again to
/// authenticate). Holds no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConnectionString {
    pub(crate) host: String,
    pub(crate) emulator: bool,
}

impl ConnectionString {
    /// Parses `Key=Value;` pairs (keys in any case, as Microsoft's SDKs read them). Errors
    /// never quote the string: it holds a key.
    pub(crate) fn parse(text: &str) -> Result<Self, QueueError> {
        let mut endpoint = None;
        let (mut key_name, mut key, mut signature, mut emulator) = (false, false, false, false);
        for pair in text
            .split(';')
            .map(str::trim)
            .filter(|pair| !pair.is_empty())
        {
            let Some((name, value)) = pair.split_once('=') else {
                return Err(config_error(
                    "the Azure connection string has a part without '=' (expected Key=Value pairs separated by ';')",
                ));
            };
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "endpoint" => endpoint = Some(value.to_owned()),
                "sharedaccesskeyname" => key_name = !value.is_empty(),
                "sharedaccesskey" => key = !value.is_empty(),
                "sharedaccesssignature" => signature = !value.is_empty(),
                "usedevelopmentemulator" => emulator = value.eq_ignore_ascii_case("true"),
                _ => {}
            }
        }
        let endpoint = endpoint.ok_or_else(|| {
            config_error("the Azure connection string has no Endpoint=sb://<namespace>/")
        })?;
        let url = url::Url::parse(&endpoint).map_err(|error| {
            config_error(format!(
                "the Azure connection string's Endpoint is not a URL ({error})"
            ))
        })?;
        if url.scheme() != "sb" {
            return Err(config_error(format!(
                "the Azure connection string's Endpoint must start with sb://, not {}://",
                url.scheme()
            )));
        }
        let host = url
            .host_str()
            .filter(|host| !host.is_empty())
            .ok_or_else(|| config_error("the Azure connection string's Endpoint has no host"))?
            .to_owned();
        if !(signature || (key_name && key)) {
            return Err(config_error(
                "the Azure connection string needs SharedAccessKeyName and SharedAccessKey, or SharedAccessSignature",
            ));
        }
        if emulator && !is_loopback_host(&host) {
            return Err(config_error(format!(
                "UseDevelopmentEmulator=true turns TLS off, so it is accepted only for a loopback \
                 host (localhost, 127.0.0.0/8, ::1), not {host}"
            )));
        }
        Ok(ConnectionString { host, emulator })
    }
}

fn check_namespace(namespace: &str) -> Result<(), QueueError> {
    let valid = !namespace.is_empty()
        && !namespace.contains("://")
        && namespace
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'));
    if valid {
        Ok(())
    } else {
        Err(config_error(format!(
            "the Service Bus namespace must be a host name like example.servicebus.windows.net, got {namespace:?}"
        )))
    }
}

fn config_error(message: impl Into<std::borrow::Cow<'static, str>>) -> QueueError {
    QueueError::new(ErrorKind::Config, message)
}

/// The default variable holding the Service Bus connection string.
pub const CONNECTION_STRING_VARIABLE: &str = "QUEUE_RUNTIME_AZURE_CONNECTION_STRING";

impl AzureConfig {
    /// Reads the `[azure]` section of a configuration (any serde format), reporting every
    /// problem with its path in the section. Secrets are never in it: it names the environment
    /// variables that hold them, which `env` looks up (the process environment, or whatever
    /// the caller injects).
    ///
    /// ```
    /// use queue_azure::AzureConfig;
    ///
    /// let section: toml::Value = toml::from_str(r#"
    ///     credential = "managed-identity"
    ///     namespace = "example.servicebus.windows.net"
    ///     [[queues]]
    ///     name = "pr-events"
    ///     sessions = true
    /// "#)?;
    /// let config = AzureConfig::from_section(section, &|_| None)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_section<'de, D: serde::Deserializer<'de>>(
        section: D,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let raw = AzureSection::deserialize(section)
            .map_err(|error| ConfigError::single("", error.to_string()))?;
        let mut problems = Problems::new();
        let config = read_section(raw, &mut problems, env);
        problems.finish(config)
    }
}

fn read_section(
    raw: AzureSection,
    problems: &mut Problems,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<AzureConfig> {
    let mut required = |field: &str, value: Option<String>| {
        value.filter(|v| !v.trim().is_empty()).or_else(|| {
            problems.push(field, "required by this credential");
            None
        })
    };
    let secret_from_env = |field: &str, variable: &str, problems: &mut Problems| match env(variable)
    {
        Some(value) if !value.trim().is_empty() => Some(SecretString::from(value)),
        _ => {
            problems.push(
                field,
                format!("the environment variable {variable} is not set"),
            );
            None
        }
    };
    let credentials = match raw.credential.as_deref().unwrap_or("connection-string") {
        "connection-string" => {
            let variable = raw
                .connection_string_env
                .clone()
                .unwrap_or_else(|| CONNECTION_STRING_VARIABLE.to_owned());
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
            problems.push(
                "credential",
                format!(
                    "{other:?}: expected \"connection-string\", \"default\", \"managed-identity\", \
                     \"workload-identity\" or \"client-secret\""
                ),
            );
            None
        }
    };
    let transport = match raw.transport.as_deref() {
        None | Some("amqp") => Some(AzureTransport::Amqp),
        Some("amqp-websockets") => Some(AzureTransport::AmqpWebSockets),
        Some(other) => {
            problems.push(
                "transport",
                format!("{other:?}: expected \"amqp\" or \"amqp-websockets\""),
            );
            None
        }
    };
    let mut queues = Vec::new();
    for (index, queue) in raw.queues.iter().enumerate() {
        match queue_core::QueueName::new(&queue.name) {
            Ok(name) => queues.push((name, queue.sessions)),
            Err(error) => {
                problems.push(format!("queues[{index}]"), error.message());
            }
        }
    }
    // Every field was read (so every problem is reported); build only from a clean read.
    let (Some(credentials), Some(transport), true) = (credentials, transport, problems.is_empty())
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
            problems.push("", error.message());
            None
        }
    }
}

/// `[azure]`: names the environment variables holding secrets, never the secrets.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AzureSection {
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
    queues: Vec<QueueSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueueSection {
    name: String,
    #[serde(default)]
    sessions: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "c2VjcmV0LWtleQ==";

    #[test]
    fn connection_strings_parse() {
        let parsed = ConnectionString::parse(&format!(
            "Endpoint=sb://example.servicebus.windows.net/;SharedAccessKeyName=app;SharedAccessKey={KEY}"
        ))
        .expect("valid");
        assert_eq!(parsed.host, "example.servicebus.windows.net");
        assert!(!parsed.emulator);

        let parsed = ConnectionString::parse(
            "endpoint=sb://example.servicebus.windows.net;sharedaccesssignature=SharedAccessSignature sr=x&sig=y;",
        )
        .expect("keys in any case, a signature instead of a key");
        assert_eq!(parsed.host, "example.servicebus.windows.net");

        let emulator = ConnectionString::parse(&format!(
            "Endpoint=sb://localhost;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey={KEY};UseDevelopmentEmulator=true;"
        ))
        .expect("the emulator on loopback");
        assert!(emulator.emulator);
        assert_eq!(emulator.host, "localhost");
    }

    #[test]
    fn bad_connection_strings_are_config_errors_that_never_quote_the_key() {
        for (text, expected) in [
            ("", "no Endpoint"),
            (
                "Endpoint=sb://x.servicebus.windows.net/",
                "needs SharedAccessKeyName",
            ),
            (
                "Endpoint=sb://x.servicebus.windows.net/;SharedAccessKeyName=app",
                "needs SharedAccessKeyName",
            ),
            (
                "Endpoint=https://x.servicebus.windows.net/;SharedAccessSignature=s",
                "must start with sb://",
            ),
            ("Endpoint=not a url;SharedAccessSignature=s", "not a URL"),
            ("Endpoint=sb://x/;SharedAccessKey", "without '='"),
            (
                "Endpoint=sb://x.servicebus.windows.net;SharedAccessSignature=s;UseDevelopmentEmulator=true",
                "loopback",
            ),
            (
                "Endpoint=sb://10.0.0.4;SharedAccessSignature=s;UseDevelopmentEmulator=true",
                "loopback",
            ),
        ] {
            let text = text.replace("SharedAccessKey=", &format!("SharedAccessKey={KEY}"));
            let error = ConnectionString::parse(&text).expect_err(&text);
            assert_eq!(error.kind(), ErrorKind::Config, "{text}");
            assert!(error.to_string().contains(expected), "{text}: {error}");
            assert!(!error.to_string().contains(KEY), "{error}");
        }
    }

    #[test]
    fn debug_output_is_redacted() {
        let config = AzureConfig::new(AzureCredentials::connection_string(format!(
            "Endpoint=sb://x.servicebus.windows.net/;SharedAccessKeyName=app;SharedAccessKey={KEY}"
        )));
        let secret = AzureConfig::new(AzureCredentials::ClientSecret {
            namespace: "x.servicebus.windows.net".into(),
            tenant_id: "tenant".into(),
            client_id: "client".into(),
            secret: SecretString::from(KEY.to_owned()),
        });
        for text in [format!("{config:?}"), format!("{secret:?}")] {
            assert!(!text.contains(KEY), "{text}");
            assert!(!text.contains("SharedAccessKeyName"), "{text}");
        }
        assert!(format!("{secret:?}").contains("client"));
    }

    #[test]
    fn namespaces_and_settings_are_checked() {
        let good = AzureConfig::new(AzureCredentials::Default {
            namespace: "example.servicebus.windows.net".into(),
        });
        assert!(good.validate().is_ok());
        assert_eq!(
            good.endpoint().expect("valid").namespace,
            "example.servicebus.windows.net"
        );
        for bad in ["", "sb://example.servicebus.windows.net", "exa mple"] {
            let config = AzureConfig::new(AzureCredentials::WorkloadIdentity {
                namespace: bad.into(),
            });
            assert_eq!(
                config.validate().map_err(|e| e.kind()),
                Err(ErrorKind::Config),
                "{bad:?}"
            );
        }
        for bad in [
            good.clone().with_receive_links_per_queue(0),
            good.clone().with_max_message_bytes(0),
            good.clone()
                .with_operation_timeout(Duration::from_millis(10)),
        ] {
            assert_eq!(bad.validate().map_err(|e| e.kind()), Err(ErrorKind::Config));
        }
    }

    #[test]
    fn queues_are_declared_once() {
        let name: QueueName = "orders".parse().expect("valid");
        let config = AzureConfig::new(AzureCredentials::Default {
            namespace: "x.servicebus.windows.net".into(),
        })
        .with_queue(name.clone(), false)
        .with_queue(name.clone(), true);
        assert_eq!(
            config.queues(),
            &[QueueCheck {
                name,
                sessions: true
            }]
        );
    }
}
