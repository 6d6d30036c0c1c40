//! Validated identifiers: a queue name, a session id, a message id.
//!
//! Each is checked once, when it is made, and is cheap to clone afterwards (a shared `str`).
//! The rules here are the union of what the providers accept; a provider adds its own stricter
//! rules in [`QueueProvider::validate_queue_name`](crate::QueueProvider::validate_queue_name).

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::error::QueueError;

macro_rules! validated_id {
    ($(#[$meta:meta])* $name:ident, $validate:path) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Validates `value` and wraps it.
            pub fn new(value: impl AsRef<str>) -> Result<Self, QueueError> {
                let value = value.as_ref();
                $validate(value)?;
                Ok(Self(Arc::from(value)))
            }

            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = QueueError;
            fn from_str(value: &str) -> Result<Self, QueueError> {
                Self::new(value)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = QueueError;
            fn try_from(value: &str) -> Result<Self, QueueError> {
                Self::new(value)
            }
        }

        impl TryFrom<String> for $name {
            type Error = QueueError;
            fn try_from(value: String) -> Result<Self, QueueError> {
                Self::new(value)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                &*self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                &*self.0 == *other
            }
        }
    };
}

/// The longest queue name any provider accepts (Service Bus entity paths).
pub const MAX_QUEUE_NAME_LEN: usize = 260;
/// The longest session id (Service Bus and SQS message group ids).
pub const MAX_SESSION_ID_LEN: usize = 128;
/// The longest message id (Service Bus message ids and SQS deduplication ids).
pub const MAX_MESSAGE_ID_LEN: usize = 128;

validated_id!(
    /// The name of a queue: 1 to 260 ASCII letters, digits, `.`, `-`, `_` and `/`, with `/`
    /// only between non-empty path segments (Service Bus paths), and no segment `.` or `..`.
    ///
    /// ```
    /// use queue_core::QueueName;
    /// assert!(QueueName::new("orders").is_ok());
    /// assert!(QueueName::new("github/pull-requests.fifo").is_ok());
    /// assert!(QueueName::new("no spaces").is_err());
    /// ```
    QueueName,
    validate_queue_name
);

validated_id!(
    /// A session id: 1 to 128 printable ASCII characters (space through `~`).
    ///
    /// Messages with the same session id are delivered in order to one receiver at a time.
    SessionId,
    validate_printable_id::<MAX_SESSION_ID_LEN, SESSION>
);

validated_id!(
    /// A message id: 1 to 128 printable ASCII characters. [`MessageId::random`] makes a UUID v4,
    /// which is what a [`Message`](crate::Message) gets when the caller pins none.
    MessageId,
    validate_printable_id::<MAX_MESSAGE_ID_LEN, MESSAGE>
);

impl MessageId {
    /// A fresh random id (a hyphenated UUID v4).
    pub fn random() -> Self {
        let mut buffer = uuid::Uuid::encode_buffer();
        let text = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buffer);
        MessageId(Arc::from(&*text))
    }
}

const SESSION: u8 = 0;
const MESSAGE: u8 = 1;

fn validate_queue_name(name: &str) -> Result<(), QueueError> {
    if name.is_empty() || name.len() > MAX_QUEUE_NAME_LEN {
        return Err(QueueError::invalid_input(format!(
            "queue name must be 1 to {MAX_QUEUE_NAME_LEN} characters, got {}",
            name.len()
        )));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/')))
    {
        return Err(QueueError::invalid_input(format!(
            "queue name {name:?} contains {bad:?}; allowed are ASCII letters, digits, '.', '-', '_' and '/'"
        )));
    }
    if name
        .split('/')
        .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return Err(QueueError::invalid_input(format!(
            "queue name {name:?} has an empty, '.' or '..' path segment"
        )));
    }
    Ok(())
}

fn validate_printable_id<const MAX: usize, const WHAT: u8>(value: &str) -> Result<(), QueueError> {
    let what = if WHAT == SESSION {
        "session id"
    } else {
        "message id"
    };
    if value.is_empty() || value.len() > MAX {
        return Err(QueueError::invalid_input(format!(
            "{what} must be 1 to {MAX} characters, got {}",
            value.len()
        )));
    }
    if let Some(bad) = value.chars().find(|c| !matches!(c, ' '..='~')) {
        return Err(QueueError::invalid_input(format!(
            "{what} contains {bad:?}; only printable ASCII is allowed"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn queue_names() {
        for ok in [
            "a",
            "orders",
            "orders.fifo",
            "a/b/c",
            "x_y-z",
            &"q".repeat(260),
        ] {
            assert!(QueueName::new(ok).is_ok(), "{ok:?} should be valid");
        }
        for bad in [
            "",
            "/a",
            "a/",
            "a//b",
            "a/../b",
            "sp ace",
            "dollar$",
            "ümlaut",
            &"q".repeat(261),
        ] {
            let error = QueueName::new(bad).expect_err(bad);
            assert_eq!(error.kind(), ErrorKind::InvalidInput);
        }
    }

    #[test]
    fn session_ids() {
        assert!(SessionId::new("owner/repo#42").is_ok());
        assert!(SessionId::new(" ~").is_ok());
        assert!(SessionId::new("").is_err());
        assert!(SessionId::new("tab\there").is_err());
        assert!(SessionId::new("x".repeat(129)).is_err());
        let error = SessionId::new("é").expect_err("non-ascii");
        assert!(error.message().contains("session id"));
    }

    #[test]
    fn random_message_ids_are_uuids_and_differ() {
        let a = MessageId::random();
        let b = MessageId::random();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 36);
        assert!(uuid::Uuid::parse_str(a.as_str()).is_ok());
    }

    #[test]
    fn ids_compare_with_str() {
        let id = MessageId::new("m-1").expect("valid");
        assert_eq!(id, "m-1");
        assert_eq!(id.to_string(), "m-1");
        assert_eq!(format!("{id:?}"), "\"m-1\"");
    }
}
