#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![warn(unreachable_pub, missing_debug_implementations)]

mod capabilities;
pub mod config;
mod error;
mod ids;
mod message;
mod provider;
mod received;

pub use capabilities::Capabilities;
pub use config::{ConfigError, ConfigProblem};
pub use error::{ErrorKind, QueueError, Result, SizeLimit};
pub use ids::{
    MAX_MESSAGE_ID_LEN, MAX_QUEUE_NAME_LEN, MAX_SESSION_ID_LEN, MessageId, QueueName, SessionId,
};
pub use message::{
    MAX_HEADER_VALUE_LEN, MAX_PROPERTIES, MAX_PROPERTY_KEY_LEN, MAX_PROPERTY_VALUE_LEN, Message,
    MessageBuilder, Properties, RESERVED_PROPERTY_PREFIX, is_reserved_key,
};
pub use provider::{
    AcceptSessionOptions, PeekOptions, QueueCounts, QueueProvider, QueueProviderExt,
    ReceiveOptions, SendOutcome, SessionReceiver, SessionSelector, SubQueue,
};
pub use received::{
    DEAD_LETTER_RESERVE, DeadLetterReason, DeliveryInfo, MAX_DEAD_LETTER_DESCRIPTION_LEN,
    MAX_DEAD_LETTER_REASON_LEN, PeekedMessage, Receipt, ReceivedMessage, ReplayClaim, SealInfo,
};

/// For implementers of [`QueueProvider`], not for its callers (as opendal's `raw`): the checks
/// every provider makes the same way, and the conversions they share.
pub mod raw {
    pub use crate::provider::{check_max_messages, check_message_size};

    #[cfg(feature = "batching")]
    pub mod batching;

    /// Time conversions between the broker's `SystemTime` and wire milliseconds.
    pub mod time {
        use std::time::{Duration, SystemTime, UNIX_EPOCH};

        /// Milliseconds since the Unix epoch (0 for times before it).
        pub fn to_unix_millis(time: SystemTime) -> u64 {
            time.duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        }

        /// The time `millis` milliseconds after the Unix epoch.
        pub fn from_unix_millis(millis: u64) -> SystemTime {
            UNIX_EPOCH + Duration::from_millis(millis)
        }
    }

    /// Checks on broker endpoints that every network provider applies the same way.
    pub mod endpoint {
        use std::net::IpAddr;

        /// Whether `host` (a name, an IPv4 address or a bracketed or bare IPv6 address) is this
        /// machine: `localhost`, `127.0.0.0/8` or `::1`. Providers allow unencrypted transport only
        /// to such hosts, where nothing crosses a network.
        pub fn is_loopback_host(host: &str) -> bool {
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            bare.eq_ignore_ascii_case("localhost")
                || bare
                    .parse::<IpAddr>()
                    .is_ok_and(|address| address.is_loopback())
        }

        #[cfg(test)]
        mod tests {
            use super::is_loopback_host;

            #[test]
            fn loopback_hosts() {
                for host in [
                    "localhost",
                    "LOCALHOST",
                    "127.0.0.1",
                    "127.8.9.10",
                    "::1",
                    "[::1]",
                ] {
                    assert!(is_loopback_host(host), "{host}");
                }
                for host in [
                    "10.0.0.5",
                    "example.com",
                    "localhost.example.com",
                    "",
                    "[::2]",
                ] {
                    assert!(!is_loopback_host(host), "{host}");
                }
            }
        }
    }
}

#[cfg(test)]
mod send_sync {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn public_types_are_send_and_sync() {
        assert_send_sync::<QueueError>();
        assert_send_sync::<Message>();
        assert_send_sync::<ReceivedMessage>();
        assert_send_sync::<Receipt>();
        assert_send_sync::<std::sync::Arc<dyn QueueProvider>>();
        assert_send_sync::<Box<dyn SessionReceiver>>();
    }
}
