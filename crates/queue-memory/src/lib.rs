#![doc = include_str!("../README.md")]

mod broker;
mod config;
mod provider;
mod session;
mod state;

pub use config::{MAX_LOCK_DURATION, MemoryConfig, QueueOptions};
pub use provider::{MAX_BATCH_MESSAGES, MAX_RECEIVE_MESSAGES, MemoryProvider};
pub use state::{BrowsedMessage, MessageState, QueueStats};

/// The provider's [name](queue_core::QueueProvider::name), also written in its receipts.
pub const PROVIDER_NAME: &str = "memory";
