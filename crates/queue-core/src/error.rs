//! One error type for every provider, with a kind that says what the caller can do about it.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

/// The result type of every fallible queue operation.
pub type Result<T, E = QueueError> = std::result::Result<T, E>;

/// What went wrong, in terms the caller can act on.
///
/// The kind is `Copy` and converts to a stable `&'static str` (see [`ErrorKind::as_str`]) so it
/// can label metrics. New kinds may be added: match with a wildcard arm.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The queue (or session, or scheduled message) does not exist.
    NotFound,
    /// The credentials were refused or lack the permission for this operation.
    Unauthorized,
    /// The provider asked us to slow down. Transient.
    Throttled,
    /// The operation did not finish in time. Transient.
    Timeout,
    /// The connection or link to the provider failed. Transient.
    Connection,
    /// The provider reported a server-side failure that may succeed when repeated. Transient.
    ServiceUnavailable,
    /// The message exceeds the provider's size limit; see [`QueueError::size_limit`].
    MessageTooLarge,
    /// The queue holds as many messages or bytes as it may. Transient: consumers make room.
    QueueFull,
    /// The lock on the message or session was lost (expired, or the message was settled or
    /// redelivered elsewhere). Repeating the settle cannot succeed: receive the message again.
    LockLost,
    /// An argument was invalid: a name, an id, a property, an option out of range.
    InvalidInput,
    /// The provider cannot do this; its [`Capabilities`](crate::Capabilities) say so.
    Unsupported,
    /// The configuration is invalid or incomplete.
    Config,
    /// Sealing or opening a message failed.
    Crypto,
    /// The client, provider or session receiver was closed.
    Closed,
    /// The circuit breaker around the provider is open after repeated failures: the call was not
    /// made. Transient: [`QueueError::retry_after`] says when the breaker lets a trial call through.
    CircuitOpen,
    /// Anything else the provider reported. Not retried.
    Provider,
}

impl ErrorKind {
    /// A stable, lower-case name, suitable as a metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Throttled => "throttled",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Connection => "connection",
            ErrorKind::ServiceUnavailable => "service_unavailable",
            ErrorKind::MessageTooLarge => "message_too_large",
            ErrorKind::QueueFull => "queue_full",
            ErrorKind::LockLost => "lock_lost",
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Config => "config",
            ErrorKind::Crypto => "crypto",
            ErrorKind::Closed => "closed",
            ErrorKind::CircuitOpen => "circuit_open",
            ErrorKind::Provider => "provider",
        }
    }

    /// Whether repeating the same call later may succeed. The one table of what is transient:
    /// [`QueueError::is_transient`], the retry layer and the processor's backoff read it.
    pub const fn is_transient(self) -> bool {
        matches!(
            self,
            ErrorKind::Throttled
                | ErrorKind::Timeout
                | ErrorKind::Connection
                | ErrorKind::ServiceUnavailable
                | ErrorKind::QueueFull
                | ErrorKind::CircuitOpen
        )
    }

    /// Whether the broker certainly refused the call (it did nothing): even an operation that
    /// must not happen twice (a send) may be repeated after it. QueueFull is transient in this
    /// sense (consumers make room), not final.
    pub const fn is_refusal(self) -> bool {
        matches!(self, ErrorKind::Throttled | ErrorKind::QueueFull)
    }

    /// Whether the error says the provider itself is unhealthy (what a circuit breaker counts).
    /// Other errors (a lost lock, a missing queue, a bad argument, a full queue) are answers
    /// from a provider that is up.
    pub const fn is_provider_failure(self) -> bool {
        matches!(
            self,
            ErrorKind::Timeout
                | ErrorKind::Connection
                | ErrorKind::ServiceUnavailable
                | ErrorKind::Throttled
        )
    }

    /// Whether no wait can fix it: the queue or the access is missing, the configuration or
    /// an argument is wrong, the client was closed, the provider cannot do it. A consumer loop
    /// stops on these instead of backing off.
    pub const fn is_permanent(self) -> bool {
        matches!(
            self,
            ErrorKind::NotFound
                | ErrorKind::Unauthorized
                | ErrorKind::Config
                | ErrorKind::Closed
                | ErrorKind::InvalidInput
                | ErrorKind::Unsupported
        )
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The size of a message that was too large, and the limit it broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeLimit {
    /// The size of the message as the provider counts it, in bytes.
    pub size: usize,
    /// The largest size the provider accepts, in bytes.
    pub max: usize,
}

/// The error of every queue operation: a [kind](ErrorKind), a message, and the underlying error.
pub struct QueueError {
    kind: ErrorKind,
    message: Cow<'static, str>,
    operation: Option<&'static str>,
    size_limit: Option<SizeLimit>,
    retry_after: Option<Duration>,
    retries_exhausted: bool,
    source: Option<Box<dyn StdError + Send + Sync + 'static>>,
}

impl QueueError {
    /// A new error of `kind` with a human-readable message.
    pub fn new(kind: ErrorKind, message: impl Into<Cow<'static, str>>) -> Self {
        QueueError {
            kind,
            message: message.into(),
            operation: None,
            size_limit: None,
            retry_after: None,
            retries_exhausted: false,
            source: None,
        }
    }

    /// An [`ErrorKind::InvalidInput`] error.
    pub fn invalid_input(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    /// An [`ErrorKind::Unsupported`] error naming the provider and the operation.
    pub fn unsupported(provider: &str, what: &str) -> Self {
        Self::new(
            ErrorKind::Unsupported,
            format!("the {provider} provider does not support {what}"),
        )
    }

    /// An [`ErrorKind::MessageTooLarge`] error carrying the size and the limit.
    pub fn message_too_large(size: usize, max: usize) -> Self {
        let mut error = Self::new(
            ErrorKind::MessageTooLarge,
            format!("message is {size} bytes, the limit is {max} bytes"),
        );
        error.size_limit = Some(SizeLimit { size, max });
        error
    }

    /// Attach the underlying error.
    pub fn with_source(mut self, source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Name the operation that failed (`"send"`, `"complete"`, ...).
    pub fn with_operation(mut self, operation: &'static str) -> Self {
        self.operation = Some(operation);
        self
    }

    /// Record how long the provider asked us to wait before trying again.
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(retry_after);
        self
    }

    /// Mark the error as the last of several attempts: retrying already happened and gave up.
    pub fn with_retries_exhausted(mut self) -> Self {
        self.retries_exhausted = true;
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The human-readable message, without the kind or the source.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The operation that failed, when known.
    pub fn operation(&self) -> Option<&'static str> {
        self.operation
    }

    /// Whether repeating the call later may succeed (and retries have not already been spent).
    pub fn is_transient(&self) -> bool {
        self.kind.is_transient() && !self.retries_exhausted
    }

    /// Whether a settle failed because the lock is gone: receive the message again instead of
    /// repeating the settle.
    pub fn is_lock_lost(&self) -> bool {
        self.kind == ErrorKind::LockLost
    }

    /// For [`ErrorKind::MessageTooLarge`]: the message size and the limit.
    pub fn size_limit(&self) -> Option<SizeLimit> {
        self.size_limit
    }

    /// How long the provider asked us to wait before trying again, when it said.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Whether a retry layer already spent its attempts on this error.
    pub fn retries_exhausted(&self) -> bool {
        self.retries_exhausted
    }
}

impl fmt::Debug for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("QueueError");
        s.field("kind", &self.kind).field("message", &self.message);
        if let Some(operation) = self.operation {
            s.field("operation", &operation);
        }
        if let Some(limit) = &self.size_limit {
            s.field("size_limit", limit);
        }
        if let Some(retry_after) = &self.retry_after {
            s.field("retry_after", retry_after);
        }
        if self.retries_exhausted {
            s.field("retries_exhausted", &true);
        }
        if let Some(source) = &self.source {
            s.field("source", source);
        }
        s.finish()
    }
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.operation {
            Some(operation) => write!(f, "{operation} failed ({}): {}", self.kind, self.message)?,
            None => write!(f, "{}: {}", self.kind, self.message)?,
        }
        if self.retries_exhausted {
            f.write_str(" (retries exhausted)")?;
        }
        Ok(())
    }
}

impl StdError for QueueError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn StdError + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_kinds_are_transient_until_retries_are_exhausted() {
        let error = QueueError::new(ErrorKind::Throttled, "slow down");
        assert!(error.is_transient());
        assert!(!error.with_retries_exhausted().is_transient());
        assert!(!QueueError::new(ErrorKind::LockLost, "gone").is_transient());
    }

    #[test]
    fn too_large_carries_size_and_limit() {
        let error = QueueError::message_too_large(300_000, 262_144);
        assert_eq!(error.kind(), ErrorKind::MessageTooLarge);
        assert_eq!(
            error.size_limit(),
            Some(SizeLimit {
                size: 300_000,
                max: 262_144
            })
        );
        assert!(error.to_string().contains("300000"));
        assert!(error.to_string().contains("262144"));
    }

    #[test]
    fn display_names_operation_and_kind() {
        let error = QueueError::new(ErrorKind::NotFound, "queue orders does not exist")
            .with_operation("send");
        assert_eq!(
            error.to_string(),
            "send failed (not_found): queue orders does not exist"
        );
    }

    #[test]
    fn source_is_kept() {
        let io = std::io::Error::other("reset");
        let error = QueueError::new(ErrorKind::Connection, "link lost").with_source(io);
        assert_eq!(
            StdError::source(&error).map(ToString::to_string),
            Some("reset".to_string())
        );
    }
}
