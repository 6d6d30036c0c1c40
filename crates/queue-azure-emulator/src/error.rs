//! Errors: what ends a connection, the error conditions Service Bus clients know, and how the
//! embedded broker's errors become them.

use fe2o3_amqp_types::definitions::{self, ErrorCondition};
use fe2o3_amqp_types::primitives::Symbol;
use queue_core::{ErrorKind, QueueError};
use thiserror::Error;

/// The error conditions this broker sends, by name (AMQP's and Microsoft's).
pub(crate) mod condition {
    /// AMQP: the peer sent something this broker cannot decode.
    pub(crate) const DECODE_ERROR: &str = "amqp:decode-error";
    /// AMQP: a field of a performative has an invalid value.
    pub(crate) const INVALID_FIELD: &str = "amqp:invalid-field";
    /// AMQP: the broker refuses the operation.
    pub(crate) const NOT_ALLOWED: &str = "amqp:not-allowed";
    /// AMQP: no such entity (queue, node).
    pub(crate) const NOT_FOUND: &str = "amqp:not-found";
    /// AMQP: a frame arrived in a state where it makes no sense.
    pub(crate) const ILLEGAL_STATE: &str = "amqp:illegal-state";
    /// AMQP: the broker failed on its own.
    pub(crate) const INTERNAL_ERROR: &str = "amqp:internal-error";
    /// AMQP: a limit of the broker was reached (the entity is full).
    pub(crate) const RESOURCE_LIMIT_EXCEEDED: &str = "amqp:resource-limit-exceeded";
    /// AMQP: the frame stream is broken.
    pub(crate) const FRAMING_ERROR: &str = "amqp:connection:framing-error";
    /// AMQP: a frame names a link handle that is not attached.
    pub(crate) const UNATTACHED_HANDLE: &str = "amqp:session:unattached-handle";
    /// AMQP: an attach reuses a handle that is attached.
    pub(crate) const HANDLE_IN_USE: &str = "amqp:session:handle-in-use";
    /// AMQP: a message is larger than the link allows.
    pub(crate) const MESSAGE_SIZE_EXCEEDED: &str = "amqp:link:message-size-exceeded";
    /// AMQP: a second attach with the same name took over the link.
    pub(crate) const LINK_STOLEN: &str = "amqp:link:stolen";
    /// Service Bus: the message lock is gone.
    pub(crate) const MESSAGE_LOCK_LOST: &str = "com.microsoft:message-lock-lost";
    /// Service Bus: the session lock is gone.
    pub(crate) const SESSION_LOCK_LOST: &str = "com.microsoft:session-lock-lost";
    /// Service Bus: another receiver holds the session.
    pub(crate) const SESSION_CANNOT_BE_LOCKED: &str = "com.microsoft:session-cannot-be-locked";
    /// Service Bus: no session came within the wait.
    pub(crate) const TIMEOUT: &str = "com.microsoft:timeout";
    /// Service Bus: a request argument is invalid.
    pub(crate) const ARGUMENT_ERROR: &str = "com.microsoft:argument-error";
    /// Service Bus: no such message (sequence number, lock token).
    pub(crate) const MESSAGE_NOT_FOUND: &str = "com.microsoft:message-not-found";
}

/// Something that ends a connection: an I/O failure, or a protocol violation answered with a
/// `close` carrying `condition`.
#[derive(Debug, Error)]
pub(crate) enum ProtocolError {
    /// The socket failed or closed mid-frame.
    #[error("connection I/O: {0}")]
    Io(#[source] std::io::Error),
    /// The peer broke the protocol.
    #[error("{condition}: {description}")]
    Violation {
        condition: &'static str,
        description: String,
    },
    /// This broker failed on its own.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ProtocolError {
    pub(crate) fn framing(description: impl Into<String>) -> Self {
        ProtocolError::Violation {
            condition: condition::FRAMING_ERROR,
            description: description.into(),
        }
    }

    pub(crate) fn decode(description: impl Into<String>) -> Self {
        ProtocolError::Violation {
            condition: condition::DECODE_ERROR,
            description: description.into(),
        }
    }

    pub(crate) fn illegal(description: impl Into<String>) -> Self {
        ProtocolError::Violation {
            condition: condition::ILLEGAL_STATE,
            description: description.into(),
        }
    }

    /// The error to put in the `close` frame, when the peer can still be told.
    pub(crate) fn to_amqp(&self) -> Option<definitions::Error> {
        match self {
            ProtocolError::Io(_) => None,
            ProtocolError::Violation {
                condition,
                description,
            } => Some(amqp_error(condition, description.clone())),
            ProtocolError::Internal(description) => {
                Some(amqp_error(condition::INTERNAL_ERROR, description.clone()))
            }
        }
    }
}

/// An AMQP error with a condition by name (custom conditions included) and a description.
pub(crate) fn amqp_error(name: &str, description: impl Into<String>) -> definitions::Error {
    definitions::Error {
        condition: ErrorCondition::Custom(Symbol::from(name)),
        description: Some(description.into()),
        info: None,
    }
}

/// The name of an AMQP error condition, whichever variant carries it.
pub(crate) fn condition_name(condition: &ErrorCondition) -> String {
    // The typed variants serialize to their symbol; a round trip through the codec names them
    // without a hand-kept table.
    match condition {
        ErrorCondition::Custom(symbol) => symbol.as_str().to_owned(),
        other => serde_amqp::to_vec(other)
            .ok()
            .and_then(|bytes| crate::codec::read_text(&bytes).ok().map(str::to_owned))
            .unwrap_or_default(),
    }
}

/// A failure of an operation on the broker, as Service Bus reports it: an AMQP condition for
/// links and dispositions, a status code for management replies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) condition: &'static str,
    pub(crate) status: i32,
    pub(crate) description: String,
}

impl Failure {
    pub(crate) fn new(
        condition: &'static str,
        status: i32,
        description: impl Into<String>,
    ) -> Self {
        Failure {
            condition,
            status,
            description: description.into(),
        }
    }

    /// A request argument is missing or invalid (400).
    pub(crate) fn argument(description: impl Into<String>) -> Self {
        Failure::new(condition::ARGUMENT_ERROR, 400, description)
    }

    /// The message lock is gone (410).
    pub(crate) fn message_lock_lost(description: impl Into<String>) -> Self {
        Failure::new(condition::MESSAGE_LOCK_LOST, 410, description)
    }

    /// The session lock is gone (410).
    pub(crate) fn session_lock_lost(description: impl Into<String>) -> Self {
        Failure::new(condition::SESSION_LOCK_LOST, 410, description)
    }

    /// The broker refuses what was asked (400).
    pub(crate) fn not_allowed(description: impl Into<String>) -> Self {
        Failure::new(condition::NOT_ALLOWED, 400, description)
    }

    /// The AMQP error for a disposition or a detach.
    pub(crate) fn to_amqp(&self) -> definitions::Error {
        amqp_error(self.condition, self.description.clone())
    }
}

impl From<QueueError> for Failure {
    fn from(error: QueueError) -> Self {
        let description = error.message().to_owned();
        let (condition, status) = match error.kind() {
            ErrorKind::LockLost => (condition::MESSAGE_LOCK_LOST, 410),
            ErrorKind::NotFound => (condition::MESSAGE_NOT_FOUND, 404),
            ErrorKind::InvalidInput => (condition::ARGUMENT_ERROR, 400),
            ErrorKind::MessageTooLarge => (condition::MESSAGE_SIZE_EXCEEDED, 413),
            ErrorKind::QueueFull => (condition::RESOURCE_LIMIT_EXCEEDED, 403),
            ErrorKind::Unsupported => (condition::NOT_ALLOWED, 400),
            _ => (condition::INTERNAL_ERROR, 500),
        };
        Failure::new(condition, status, description)
    }
}

/// A problem starting the emulator: its configuration or its socket.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum EmulatorError {
    /// The entities file or the settings are invalid; every problem is listed.
    #[error("invalid emulator configuration: {0}")]
    Config(String),
    /// The listening socket could not be opened.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address asked for.
        address: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    use fe2o3_amqp_types::definitions::{AmqpError, LinkError};

    use super::*;

    #[test]
    fn conditions_are_named_whatever_their_variant() {
        assert_eq!(
            condition_name(&ErrorCondition::AmqpError(AmqpError::NotFound)),
            "amqp:not-found"
        );
        assert_eq!(
            condition_name(&ErrorCondition::LinkError(LinkError::Stolen)),
            condition::LINK_STOLEN
        );
        assert_eq!(
            condition_name(&ErrorCondition::Custom(Symbol::from(condition::TIMEOUT))),
            condition::TIMEOUT
        );
    }

    #[test]
    fn queue_errors_become_service_bus_failures() {
        let lost = Failure::from(QueueError::new(ErrorKind::LockLost, "gone"));
        assert_eq!(
            (lost.condition, lost.status),
            (condition::MESSAGE_LOCK_LOST, 410)
        );
        let full = Failure::from(QueueError::new(ErrorKind::QueueFull, "full"));
        assert_eq!(full.condition, condition::RESOURCE_LIMIT_EXCEEDED);
    }
}
