//! What can go wrong getting keys.

use queue_crypto::CryptoError;

/// Why no keyset (or no key) could be had.
///
/// Messages name the source and what is wrong with it, never key material: a keyset file with a
/// syntax error is reported by line and column, not by quoting it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The source could not be read (missing file, unset variable, an unreachable store).
    /// Worth retrying: the source may come back.
    #[error("key source {source_name} is unavailable: {reason}")]
    Unavailable {
        /// The source, as it names itself (`file /etc/keys.json`, `env QUEUE_KEYS`).
        source_name: String,
        /// What failed.
        reason: String,
    },
    /// The source answered with something that is not a valid keyset. Not retried until the
    /// source changes.
    #[error("key source {source_name} holds an invalid keyset: {reason}")]
    Invalid {
        /// The source, as it names itself.
        source_name: String,
        /// What is wrong, without quoting key material.
        reason: String,
    },
    /// Sealing or opening failed; `CryptoError::UnknownKeyId` when no key has the id, even
    /// after asking the source again (or the id is in the negative cache because it was unknown
    /// moments ago).
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

impl KeyError {
    /// No key has `key_id`: one error for it, wherever it is found (here or in queue-crypto).
    pub fn unknown_key_id(key_id: impl Into<String>) -> Self {
        KeyError::Crypto(CryptoError::UnknownKeyId(key_id.into()))
    }

    /// Whether asking again later may succeed (the source was unreachable).
    pub fn is_transient(&self) -> bool {
        matches!(self, KeyError::Unavailable { .. })
    }
}

/// The result type of this crate.
pub type Result<T, E = KeyError> = std::result::Result<T, E>;
