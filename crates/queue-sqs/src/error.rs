//! Every SQS failure becomes a [`QueueError`] here, and nowhere else.

use std::error::Error as StdError;

use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use queue_core::{ErrorKind, QueueError};

/// Maps a failed SDK call. Transport failures keep their nature (timeout, connection); service
/// errors go through [`kind_for_code`], with the HTTP status as a fallback.
pub(crate) fn map_sdk_error<E>(operation: &'static str, error: SdkError<E>) -> QueueError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    let (kind, detail) = match &error {
        SdkError::ConstructionFailure(_) => (
            ErrorKind::Config,
            "the request could not be built (check the region and credentials)".to_owned(),
        ),
        SdkError::TimeoutError(_) => (ErrorKind::Timeout, "the request timed out".to_owned()),
        SdkError::DispatchFailure(failure) => {
            let kind = if failure.is_timeout() {
                ErrorKind::Timeout
            } else if failure.is_user() {
                ErrorKind::Config
            } else {
                ErrorKind::Connection
            };
            (kind, "the request could not be sent".to_owned())
        }
        SdkError::ResponseError(_) => (
            ErrorKind::ServiceUnavailable,
            "the response could not be read".to_owned(),
        ),
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or_default();
            let message = service.err().message().unwrap_or_default();
            let status = service.raw().status().as_u16();
            let kind = kind_for_code(code, message).unwrap_or(match status {
                401 | 403 => ErrorKind::Unauthorized,
                404 => ErrorKind::NotFound,
                429 => ErrorKind::Throttled,
                500..=599 => ErrorKind::ServiceUnavailable,
                _ => ErrorKind::Provider,
            });
            (kind, format!("{code} (HTTP {status}): {message}"))
        }
        _ => (ErrorKind::Provider, "unexpected SDK failure".to_owned()),
    };
    // A service error's code and message say it all; a transport failure's cause is deeper.
    let message = if matches!(error, SdkError::ServiceError(_)) {
        format!("SQS {operation} failed: {detail}")
    } else {
        format!(
            "SQS {operation} failed: {detail}: {}",
            DisplayErrorContext(&error)
        )
    };
    QueueError::new(kind, message)
        .with_operation(operation)
        .with_source(error)
}

/// Maps an error of one entry of a batch call.
pub(crate) fn map_batch_entry_error(
    operation: &'static str,
    code: &str,
    message: Option<&str>,
    sender_fault: bool,
) -> QueueError {
    let message = message.unwrap_or_default();
    let kind = kind_for_code(code, message).unwrap_or(if sender_fault {
        ErrorKind::InvalidInput
    } else {
        ErrorKind::ServiceUnavailable
    });
    QueueError::new(
        kind,
        format!("SQS {operation} entry failed: {code}: {message}"),
    )
    .with_operation(operation)
}

/// What an SQS error code means. Both spellings are covered: the JSON protocol's short codes
/// (`QueueDoesNotExist`) and the query protocol's (`AWS.SimpleQueueService.NonExistentQueue`).
pub(crate) fn kind_for_code(code: &str, message: &str) -> Option<ErrorKind> {
    let code = code.strip_prefix("AWS.SimpleQueueService.").unwrap_or(code);
    Some(match code {
        "QueueDoesNotExist" | "NonExistentQueue" | "QueueDeletedRecently" => ErrorKind::NotFound,
        "AccessDenied"
        | "AccessDeniedException"
        | "InvalidClientTokenId"
        | "UnrecognizedClientException"
        | "SignatureDoesNotMatch"
        | "InvalidSecurity"
        | "ExpiredToken"
        | "MissingAuthenticationToken"
        | "IncompleteSignature"
        | "KmsAccessDenied"
        | "KmsDisabled"
        | "KmsInvalidKeyUsage"
        | "KmsInvalidState"
        | "KmsNotFound"
        | "KmsOptInRequired" => ErrorKind::Unauthorized,
        "ThrottlingException"
        | "Throttling"
        | "RequestThrottled"
        | "KmsThrottled"
        | "TooManyRequestsException" => ErrorKind::Throttled,
        "OverLimit" => ErrorKind::QueueFull,
        "ReceiptHandleIsInvalid" | "MessageNotInflight" => ErrorKind::LockLost,
        // An expired receipt handle is reported as a bad parameter.
        "InvalidParameterValue" if message.contains("receipt handle has expired") => {
            ErrorKind::LockLost
        }
        "BatchRequestTooLong" => ErrorKind::MessageTooLarge,
        "InvalidParameterValue"
        | "MissingParameter"
        | "InvalidAttributeName"
        | "InvalidAttributeValue"
        | "InvalidMessageContents"
        | "UnsupportedOperation"
        | "TooManyEntriesInBatchRequest"
        | "BatchEntryIdsNotDistinct"
        | "EmptyBatchRequest"
        | "InvalidBatchEntryId"
        | "InvalidIdFormat"
        | "InvalidAddress"
        | "ValidationError"
        | "InvalidParameterCombination"
        | "MalformedQueryString" => ErrorKind::InvalidInput,
        "InternalError"
        | "InternalFailure"
        | "ServiceUnavailable"
        | "RequestTimeout"
        | "RequestTimeoutException" => ErrorKind::ServiceUnavailable,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_protocol_spellings_map_the_same() {
        for (json, query, kind) in [
            (
                "QueueDoesNotExist",
                "AWS.SimpleQueueService.NonExistentQueue",
                ErrorKind::NotFound,
            ),
            (
                "RequestThrottled",
                "AWS.SimpleQueueService.RequestThrottled",
                ErrorKind::Throttled,
            ),
            (
                "MessageNotInflight",
                "AWS.SimpleQueueService.MessageNotInflight",
                ErrorKind::LockLost,
            ),
        ] {
            assert_eq!(kind_for_code(json, ""), Some(kind));
            assert_eq!(kind_for_code(query, ""), Some(kind));
        }
    }

    #[test]
    fn expired_receipts_are_lock_lost_other_bad_values_invalid() {
        assert_eq!(
            kind_for_code(
                "InvalidParameterValue",
                "Value x for parameter ReceiptHandle is invalid. Reason: The receipt handle has expired."
            ),
            Some(ErrorKind::LockLost)
        );
        assert_eq!(
            kind_for_code("InvalidParameterValue", "DelaySeconds must be <= 900"),
            Some(ErrorKind::InvalidInput)
        );
        assert_eq!(kind_for_code("SomethingNew", ""), None);
    }

    #[test]
    fn batch_entries_fall_back_on_who_is_at_fault() {
        let ours = map_batch_entry_error("SendMessageBatch", "Odd", None, true);
        assert_eq!(ours.kind(), ErrorKind::InvalidInput);
        let theirs = map_batch_entry_error("SendMessageBatch", "Odd", Some("try later"), false);
        assert!(theirs.is_transient());
    }
}
