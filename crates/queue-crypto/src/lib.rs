#![doc = include_str!("../README.md")]

mod context;
mod envelope;
mod error;
mod format;
mod keys;
pub mod public;
mod random;

pub use context::{Context, MAX_CONTEXT_LEN};
pub use envelope::{
    Clock, Opened, Sealer, SystemClock, UnverifiedHeader, looks_sealed, open, peek_header, seal,
};
pub use error::{CryptoError, Result};
pub use format::{
    COMMITMENT_LEN, ENVELOPE_ID_LEN, MAGIC, MAX_ENVELOPE_LEN, MAX_HEADER_LEN, MAX_PLAINTEXT_LEN,
    MIN_HEADER_LEN, Suite, TAG_LEN, VERSION, envelope_version,
};
pub use keys::{KEY_LEN, Key, KeyId, KeyMaterial, KeyState, Keyset, MAX_KEY_ID_LEN};
#[cfg(feature = "test-randomness")]
pub use random::RandomSource;
