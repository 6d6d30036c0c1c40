#![doc = include_str!("../README.md")]

mod codec;
mod config;
mod error;
mod links;
mod provider;
mod retry;
mod sdk;
#[cfg(feature = "testing")]
pub mod testing;

pub use codec::MESSAGE_ID_PROPERTY;
pub use config::{
    AzureConfig, AzureCredentials, AzureTransport, CONNECTION_STRING_VARIABLE, QueueCheck,
    STANDARD_TIER_MAX_MESSAGE_BYTES,
};
pub use provider::{AzureProvider, NAME, UNREADABLE_BODY_REASON};

/// The credential type [`AzureCredentials::Token`] takes, from the one `azure_core` line the
/// workspace uses.
pub use azure_core::credentials::TokenCredential;
