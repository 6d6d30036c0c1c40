#![doc = include_str!("../README.md")]

pub mod document;
mod error;
mod key_ring;
mod keys;
mod source;
pub mod store;

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "azure-key-vault")]
pub mod key_vault;
#[cfg(feature = "aws-kms")]
pub mod kms;
#[cfg(feature = "aws-secrets-manager")]
pub mod secrets_manager;

pub use document::{
    DOCUMENT_VERSION, KeysetDocument, PublicKeyEntry, PublicKeyKind, Role, generate_keyset_file,
};
pub use error::{KeyError, Result};
pub use key_ring::{KeyRing, KeyRingOptions};
pub use keys::Keys;
pub use source::{EnvKeys, FileKeys, KeySource, StaticKeys};
pub use store::{DocumentStore, FileDocument, StoredKeys};

/// The counter of failed key-source reads (`metrics` facade), labelled `key_source` (its name)
/// and `fallback` (`last_good` when the last good keyset stayed in use, `none` when there was
/// none: a startup failure). Listed with every metric name in `queue_runtime::telemetry::metric`.
pub const KEY_SOURCE_FAILURES: &str = "queue_key_source_failures_total";

#[cfg(feature = "aws")]
pub use aws::{AwsSettings, AwsStaticCredentials};
#[cfg(feature = "azure-key-vault")]
pub use key_vault::{KeyVaultCredential, KeyVaultSecret};
#[cfg(feature = "aws-kms")]
pub use kms::{KmsKeys, KmsWrapper, WrappedKeyset};
#[cfg(feature = "aws-secrets-manager")]
pub use secrets_manager::SecretsManagerSecret;
