//! The one error type of the crate.

/// Why sealing, opening or building a key failed.
///
/// Operators need to tell a corrupt or foreign input ([`Malformed`](Self::Malformed)), a newer
/// format ([`UnsupportedVersion`](Self::UnsupportedVersion)) and a missing key
/// ([`UnknownKeyId`](Self::UnknownKeyId)) apart, so those are distinct. Every failure of
/// authentication (a wrong tag, a wrong key commitment, a context that differs from the sealed
/// one) is the single opaque [`DecryptFailed`](Self::DecryptFailed): an attacker learns nothing
/// from which check failed. No variant carries plaintext or key material; the key ids they carry
/// were checked to be short printable ASCII, so they are safe to log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// The input is not a well-formed envelope: wrong magic, truncated, reserved flags set, a bad
    /// key id. A plaintext that merely starts with the magic bytes lands here too.
    #[error("malformed envelope: {0}")]
    Malformed(&'static str),
    /// The envelope's format version is not one this build reads.
    #[error("unsupported envelope version {0}")]
    UnsupportedVersion(u8),
    /// The envelope names a cipher suite this build does not know.
    #[error("unsupported cipher suite {0}")]
    UnsupportedSuite(u8),
    /// No key with the envelope's key id is in the keyset.
    #[error("unknown key id {0:?}")]
    UnknownKeyId(String),
    /// The envelope's key (version 2: its recipient key) is in the keyset but retired: it opens
    /// nothing any more.
    #[error("key {0:?} is retired")]
    RetiredKey(String),
    /// Version 2: the sender key id the envelope names is not in the consumer's trust list.
    /// Nothing was verified or decrypted.
    #[error("sender key {0:?} is not trusted")]
    UntrustedSender(String),
    /// Version 2: the sender key the envelope names is in the trust list but retired: nothing it
    /// signs is accepted any more.
    #[error("sender key {0:?} is retired")]
    RetiredSender(String),
    /// The key (master key; version 2: recipient or sender key) is past its `not_after` time: it
    /// seals nothing, and an envelope whose authenticated seal time is later than `not_after` is
    /// refused.
    #[error("key {0:?} is past its not-after time")]
    KeyExpired(String),
    /// Authentication failed: wrong tag, wrong key commitment, a bad sender signature (version
    /// 2), or a context (queue, session, properties, ...) other than the one the envelope was
    /// sealed with.
    #[error("the envelope could not be authenticated")]
    DecryptFailed,
    /// An input is larger than the format allows; checked before anything is allocated.
    #[error("{what} is too large: {size} bytes, at most {max}")]
    TooLarge {
        /// What was too large (`"plaintext"`, `"envelope"`, `"context"`).
        what: &'static str,
        /// Its size in bytes.
        size: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// The keyset has no primary key (version 2: no primary recipient public key), so it
    /// cannot seal.
    #[error("the keyset has no primary key: it cannot seal")]
    NoPrimaryKey,
    /// Version 2: the producer keyset has no primary signing key, so it cannot seal.
    #[error("the keyset has no primary signing key: it cannot seal")]
    NoSigningKey,
    /// A key or keyset could not be built: wrong material length, bad id, duplicate ids, two
    /// primaries.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// The context to bind cannot be encoded (for example an empty channel name).
    #[error("invalid context: {0}")]
    InvalidContext(String),
    /// A time cannot be written in the format (before 1970, or beyond `u64` milliseconds).
    #[error("invalid time: {0}")]
    InvalidTime(&'static str),
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed")]
    Random,
}

/// The crate's result type.
pub type Result<T, E = CryptoError> = std::result::Result<T, E>;
