//! Every Service Bus failure becomes a [`QueueError`] here, and nowhere else.
//!
//! The SDK returns `azure_core::Error`s wrapping the AMQP library's typed errors in private
//! enums, so they cannot be matched by type from here. What identifies a failure on the wire is
//! the AMQP error condition (`amqp:not-found`, `com.microsoft:message-lock-lost`, ...) or the
//! management status code; both appear in the error's debug form, whatever wraps them, and
//! both are stable protocol constants. They are looked up in one table.

use azure_core::error::ErrorKind as AzureKind;
use queue_core::{ErrorKind, QueueError};

/// AMQP error conditions (as their symbols and as the AMQP library spells its known ones) and
/// the kind each maps to. The first match wins, so specific conditions come before generic ones.
const CONDITIONS: &[(&str, ErrorKind)] = &[
    ("com.microsoft:message-lock-lost", ErrorKind::LockLost),
    ("com.microsoft:session-lock-lost", ErrorKind::LockLost),
    ("MessageLockLost", ErrorKind::LockLost),
    ("SessionLockLost", ErrorKind::LockLost),
    (
        "com.microsoft:session-cannot-be-locked",
        ErrorKind::LockLost,
    ),
    ("com.microsoft:message-not-found", ErrorKind::NotFound),
    ("com.microsoft:entity-not-found", ErrorKind::NotFound),
    ("amqp:not-found", ErrorKind::NotFound),
    ("AmqpError(NotFound)", ErrorKind::NotFound),
    ("amqp:resource-deleted", ErrorKind::NotFound),
    ("AmqpError(ResourceDeleted)", ErrorKind::NotFound),
    ("amqp:unauthorized-access", ErrorKind::Unauthorized),
    ("AmqpError(UnauthorizedAccess)", ErrorKind::Unauthorized),
    ("SaslError", ErrorKind::Unauthorized),
    (
        "amqp:link:message-size-exceeded",
        ErrorKind::MessageTooLarge,
    ),
    ("LinkError(MessageSizeExceeded)", ErrorKind::MessageTooLarge),
    ("com.microsoft:server-busy", ErrorKind::Throttled),
    ("amqp:resource-limit-exceeded", ErrorKind::Throttled),
    ("AmqpError(ResourceLimitExceeded)", ErrorKind::Throttled),
    ("Retry policy exhausted", ErrorKind::Throttled),
    ("com.microsoft:quota-exceeded", ErrorKind::QueueFull),
    ("com.microsoft:timeout", ErrorKind::Timeout),
    // Before the SDK's own timeouts ("Elapsed"): a connection that went silent.
    ("IdleTimeoutElapsed", ErrorKind::Connection),
    ("Elapsed", ErrorKind::Timeout),
    ("com.microsoft:entity-disabled", ErrorKind::Unsupported),
    (
        "com.microsoft:argument-out-of-range",
        ErrorKind::InvalidInput,
    ),
    ("com.microsoft:argument-error", ErrorKind::InvalidInput),
    ("amqp:not-allowed", ErrorKind::InvalidInput),
    ("AmqpError(NotAllowed)", ErrorKind::InvalidInput),
    ("amqp:invalid-field", ErrorKind::InvalidInput),
    ("AmqpError(InvalidField)", ErrorKind::InvalidInput),
    ("amqp:not-implemented", ErrorKind::Unsupported),
    (
        "com.microsoft:store-lock-lost",
        ErrorKind::ServiceUnavailable,
    ),
    ("amqp:internal-error", ErrorKind::ServiceUnavailable),
    ("AmqpError(InternalError)", ErrorKind::ServiceUnavailable),
    ("amqp:link:detach-forced", ErrorKind::Connection),
    ("LinkError(DetachForced)", ErrorKind::Connection),
    ("amqp:link:stolen", ErrorKind::Connection),
    ("LinkError(Stolen)", ErrorKind::Connection),
    ("amqp:connection:forced", ErrorKind::Connection),
    ("ConnectionError(ConnectionForced)", ErrorKind::Connection),
    ("amqp:connection:framing-error", ErrorKind::Connection),
    ("ConnectionError(FramingError)", ErrorKind::Connection),
    ("DetachedByRemote", ErrorKind::Connection),
    ("RemoteDetached", ErrorKind::Connection),
    ("RemoteClosed", ErrorKind::Connection),
    ("RemoteEnded", ErrorKind::Connection),
    ("IllegalSessionState", ErrorKind::Connection),
    ("IllegalConnectionState", ErrorKind::Connection),
    // An answer the SDK could not decode: retrying brings the same answer.
    ("MessageDecode", ErrorKind::Provider),
    ("The client is disposed", ErrorKind::Closed),
    ("ClientDisposed", ErrorKind::Closed),
];

/// Management (request/response) status codes and their kinds: the operations on lock tokens,
/// sequence numbers and session state answer with these.
fn kind_for_status(code: u16) -> Option<ErrorKind> {
    Some(match code {
        400 => ErrorKind::InvalidInput,
        401 | 403 => ErrorKind::Unauthorized,
        404 => ErrorKind::NotFound,
        408 => ErrorKind::Timeout,
        410 => ErrorKind::LockLost,
        413 => ErrorKind::MessageTooLarge,
        429 => ErrorKind::Throttled,
        500 | 503 => ErrorKind::ServiceUnavailable,
        _ => return None,
    })
}

/// The kind of a failure whose debug form is `detail`, when a known condition names it.
pub(crate) fn kind_for_detail(detail: &str) -> Option<ErrorKind> {
    CONDITIONS
        .iter()
        .find(|(condition, _)| detail.contains(condition))
        .map(|(_, kind)| *kind)
        .or_else(|| status_code(detail).and_then(kind_for_status))
}

/// The management status in `StatusError { code: StatusCode(410), ... }`.
fn status_code(detail: &str) -> Option<u16> {
    let start = detail.find("StatusCode(")? + "StatusCode(".len();
    let digits: String = detail[start..]
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Whether the SDK failed to decode the broker's answer (as opposed to the broker refusing).
pub(crate) fn is_undecodable_answer(error: &azure_core::Error) -> bool {
    format!("{error:?}").contains("MessageDecode")
}

/// Maps a failed SDK call for `operation`.
pub(crate) fn map_sdk_error(operation: &'static str, error: azure_core::Error) -> QueueError {
    let detail = format!("{error:?}");
    let kind = kind_for_detail(&detail).unwrap_or(match error.kind() {
        AzureKind::Credential => ErrorKind::Unauthorized,
        AzureKind::Io => ErrorKind::Connection,
        AzureKind::DataConversion => ErrorKind::Provider,
        AzureKind::HttpResponse { status, .. } => match u16::from(*status) {
            401 | 403 => ErrorKind::Unauthorized,
            404 => ErrorKind::NotFound,
            429 => ErrorKind::Throttled,
            500..=599 => ErrorKind::ServiceUnavailable,
            _ => ErrorKind::Provider,
        },
        _ => ErrorKind::Provider,
    });
    QueueError::new(kind, format!("Service Bus {operation} failed: {error}"))
        .with_operation(operation)
        .with_source(error)
}

/// The error of every call after [`close`](queue_core::QueueProvider::close).
pub(crate) fn closed(operation: &'static str) -> QueueError {
    QueueError::new(
        ErrorKind::Closed,
        format!("Service Bus {operation}: the provider is closed"),
    )
    .with_operation(operation)
}

/// A settle or renew whose lock is known to be gone without asking the broker.
pub(crate) fn lock_lost(operation: &'static str, why: &str) -> QueueError {
    QueueError::new(
        ErrorKind::LockLost,
        format!("Service Bus {operation}: {why}"),
    )
    .with_operation(operation)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fe2o3_amqp::link::{DetachError, LinkStateError, SendError};
    use fe2o3_amqp_management::error::{Error as ManagementError, StatusError};
    use fe2o3_amqp_management::status::StatusCode;
    use fe2o3_amqp_types::definitions::{
        AmqpError, ConnectionError, Error as AmqpErrorValue, ErrorCondition, LinkError,
    };
    use fe2o3_amqp_types::primitives::Symbol;
    use std::num::NonZeroU16;

    /// Wraps an AMQP library error the way the SDK does before handing it over.
    fn sdk(
        kind: AzureKind,
        error: impl std::error::Error + Send + Sync + 'static,
    ) -> azure_core::Error {
        azure_core::Error::new(kind, error)
    }

    fn detached(condition: ErrorCondition) -> azure_core::Error {
        sdk(
            AzureKind::Io,
            DetachError::RemoteDetachedWithError(AmqpErrorValue::new(
                condition,
                Some("described by the broker".to_owned()),
                None,
            )),
        )
    }

    fn custom(symbol: &str) -> ErrorCondition {
        ErrorCondition::Custom(Symbol::from(symbol))
    }

    fn status(code: u16, description: &str) -> azure_core::Error {
        sdk(
            AzureKind::Other,
            ManagementError::Status(StatusError {
                code: StatusCode(NonZeroU16::new(code).expect("non-zero")),
                description: Some(description.to_owned()),
            }),
        )
    }

    #[test]
    fn amqp_conditions_map_to_kinds() {
        for (condition, kind) in [
            (
                custom("com.microsoft:message-lock-lost"),
                ErrorKind::LockLost,
            ),
            (
                custom("com.microsoft:session-lock-lost"),
                ErrorKind::LockLost,
            ),
            (
                custom("com.microsoft:session-cannot-be-locked"),
                ErrorKind::LockLost,
            ),
            (custom("com.microsoft:server-busy"), ErrorKind::Throttled),
            (custom("com.microsoft:timeout"), ErrorKind::Timeout),
            (
                custom("com.microsoft:entity-disabled"),
                ErrorKind::Unsupported,
            ),
            (
                custom("com.microsoft:argument-out-of-range"),
                ErrorKind::InvalidInput,
            ),
            (
                custom("com.microsoft:store-lock-lost"),
                ErrorKind::ServiceUnavailable,
            ),
            (custom("com.microsoft:quota-exceeded"), ErrorKind::QueueFull),
            (
                ErrorCondition::AmqpError(AmqpError::NotFound),
                ErrorKind::NotFound,
            ),
            (
                ErrorCondition::AmqpError(AmqpError::UnauthorizedAccess),
                ErrorKind::Unauthorized,
            ),
            (
                ErrorCondition::AmqpError(AmqpError::ResourceLimitExceeded),
                ErrorKind::Throttled,
            ),
            (
                ErrorCondition::AmqpError(AmqpError::NotAllowed),
                ErrorKind::InvalidInput,
            ),
            (
                ErrorCondition::AmqpError(AmqpError::InternalError),
                ErrorKind::ServiceUnavailable,
            ),
            (
                ErrorCondition::LinkError(LinkError::MessageSizeExceeded),
                ErrorKind::MessageTooLarge,
            ),
            (
                ErrorCondition::LinkError(LinkError::DetachForced),
                ErrorKind::Connection,
            ),
            (
                ErrorCondition::ConnectionError(ConnectionError::ConnectionForced),
                ErrorKind::Connection,
            ),
        ] {
            let error = map_sdk_error("send", detached(condition.clone()));
            assert_eq!(error.kind(), kind, "{condition:?}: {error}");
            assert_eq!(error.operation(), Some("send"));
        }
    }

    #[test]
    fn management_status_codes_map_to_kinds() {
        for (code, kind) in [
            (410, ErrorKind::LockLost),
            (404, ErrorKind::NotFound),
            (401, ErrorKind::Unauthorized),
            (400, ErrorKind::InvalidInput),
            (503, ErrorKind::ServiceUnavailable),
            (408, ErrorKind::Timeout),
        ] {
            let error = map_sdk_error("renew lock", status(code, "The lock supplied is invalid."));
            assert_eq!(error.kind(), kind, "{code}: {error}");
        }
        assert_eq!(
            map_sdk_error("renew lock", status(418, "teapot")).kind(),
            ErrorKind::Provider
        );
    }

    #[test]
    fn transport_failures_are_transient_and_others_fall_back_on_the_sdk_kind() {
        let detached = sdk(AzureKind::Io, DetachError::DetachedByRemote);
        assert_eq!(
            map_sdk_error("receive", detached).kind(),
            ErrorKind::Connection
        );
        let link = sdk(
            AzureKind::Io,
            SendError::LinkStateError(LinkStateError::IllegalSessionState),
        );
        let mapped = map_sdk_error("send", link);
        assert_eq!(mapped.kind(), ErrorKind::Connection);
        assert!(mapped.is_transient());
        let io = sdk(AzureKind::Io, std::io::Error::other("reset"));
        assert_eq!(map_sdk_error("send", io).kind(), ErrorKind::Connection);
        let credential = azure_core::Error::message(AzureKind::Credential, "token request failed");
        assert_eq!(
            map_sdk_error("connect", credential).kind(),
            ErrorKind::Unauthorized
        );
        let other = azure_core::Error::message(AzureKind::Other, "something else");
        assert_eq!(map_sdk_error("connect", other).kind(), ErrorKind::Provider);
    }

    #[test]
    fn local_errors_name_the_operation() {
        let error = lock_lost("complete", "the lock expired");
        assert!(error.is_lock_lost());
        assert!(error.to_string().contains("complete"));
        assert_eq!(closed("send").kind(), ErrorKind::Closed);
    }
}
