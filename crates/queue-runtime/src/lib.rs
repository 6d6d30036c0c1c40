#![doc = include_str!("../README.md")]

// A client needs at least one provider to talk to.
#[cfg(not(any(feature = "memory", feature = "sqs", feature = "azure")))]
compile_error!(
    "queue-runtime needs at least one provider feature: enable `memory`, `sqs` or `azure`"
);

pub mod batching;
mod client;
pub mod config;
pub mod dead_letters;
pub mod processor;
pub mod resilience;
pub mod security;
pub mod telemetry;
pub mod webhook;

pub use client::{ClientSession, QueueClient};
pub use config::{
    ClientConfig, ConfigError, KeySourceSettings, ProviderConfig, Secret, SecuritySettings,
};
pub use security::{QueuePolicy, SealMode, Security, UnsealedPolicy};

/// The provider contract and domain types ([`queue_core`]).
pub use queue_core as core;

/// The message envelope ([`queue_crypto`]).
pub use queue_crypto as crypto;

/// Key sources and the key ring ([`queue_keys`]).
pub use queue_keys as keys;

/// The embedded broker ([`queue_memory`]).
#[cfg(feature = "memory")]
pub use queue_memory as memory;

/// The Azure Service Bus provider ([`queue_azure`]).
#[cfg(feature = "azure")]
pub use queue_azure as azure;
/// The Amazon SQS provider ([`queue_sqs`]).
#[cfg(feature = "sqs")]
pub use queue_sqs as sqs;

/// The names an application uses every day.
pub mod prelude {
    pub use crate::client::{ClientSession, QueueClient};
    pub use crate::config::ClientConfig;
    pub use crate::processor::{
        CancellationToken, HandlerContext, Outcome, Processor, ProcessorOptions, ProcessorReport,
    };
    pub use crate::security::{QueuePolicy, SealMode, Security, UnsealedPolicy};
    pub use queue_core::{
        DeadLetterReason, ErrorKind, Message, MessageId, QueueError, QueueName, ReceivedMessage,
        Result, SessionId, SessionSelector,
    };
}
