#![doc = include_str!("../README.md")]

pub mod admin;
mod codec;
mod config;
mod error;
mod provider;
mod queues;
mod settle;
#[cfg(feature = "testing")]
pub mod testing;

pub use codec::{
    DEAD_LETTER_ATTRIBUTE, MAX_DELAY, MAX_PROPERTIES, MAX_SQS_ATTRIBUTES, META_ATTRIBUTE,
};
pub use config::{
    DEFAULT_ATTEMPT_TIMEOUT, DEFAULT_SETTLE_LINGER, SqsConfig, SqsCredentials, UnsessionedFifo,
};
pub use provider::{NAME, SqsProvider};

/// The SDK this provider is built on, for [`SqsProvider::from_client`] and
/// [`SqsProvider::client`].
pub use aws_sdk_sqs as sdk;
