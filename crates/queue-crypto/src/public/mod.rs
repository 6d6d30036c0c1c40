//! The public-key envelope (version 2): sealed to a recipient's public key with HPKE
//! (RFC 9180, base mode), signed by the sender with Ed25519.
//!
//! Producers hold a [`ProducerKeyset`]: the recipients' public keys and their own signing key.
//! They can seal to a queue but never open what they (or anyone) sealed. Consumers hold a
//! [`ConsumerKeyset`]: their recipient key pairs and the public keys of the senders they trust.
//! An envelope opens only for its recipient, only if a trusted sender signed it, and only for the
//! context it was sealed with.
//!
//! ```
//! use queue_crypto::public::{
//!     ConsumerKeyset, Kem, ProducerKeyset, RecipientKeyPair, SenderSigningKey, open, seal,
//! };
//! use queue_crypto::{Context, CryptoError, KeyId, KeyState};
//!
//! // The consumer makes its key pair and hands out the public half.
//! let pair = RecipientKeyPair::generate(KeyId::new("orders-r1")?, Kem::XWing, KeyState::Primary)?;
//! let recipient = pair.public_key();
//! // The producer makes its signing key and hands out the public half.
//! let signer = SenderSigningKey::generate(KeyId::new("webhook-s1")?, KeyState::Primary)?;
//! let trusted = signer.public_key();
//!
//! let producer = ProducerKeyset::new([recipient], [signer])?;
//! let consumer = ConsumerKeyset::new([pair], [trusted])?;
//!
//! let context = Context::new("orders").with_session_id("customer-42");
//! let envelope = seal(&producer, br#"{"order":1}"#, &context)?;
//! let opened = open(&consumer, &envelope, &context)?;
//! assert_eq!(opened.plaintext(), br#"{"order":1}"#);
//! assert_eq!(opened.sender_key_id().as_str(), "webhook-s1");
//!
//! // Moved to another session: refused, with the one opaque error.
//! let moved = context.clone().with_session_id("customer-43");
//! assert_eq!(open(&consumer, &envelope, &moved).unwrap_err(), CryptoError::DecryptFailed);
//! # Ok::<(), CryptoError>(())
//! ```
//!
//! The byte layout, the signature input, the HPKE parameters and the order of checks are in
//! docs/envelope.md, "Version 2".

mod envelope;
mod format;
mod hpke;
mod keys;
mod suite;

pub use envelope::{Opened, Sealer, UnverifiedHeader, open, peek_header, seal};
pub use format::{
    HPKE_INFO, MAX_ENVELOPE_LEN, MAX_HEADER_LEN, MIN_HEADER_LEN, SIGNATURE_LABEL, SIGNATURE_LEN,
    VERSION,
};
pub use keys::{
    ConsumerKeyset, ProducerKeyset, RecipientKeyPair, RecipientPublicKey, SEED_LEN,
    SenderPublicKey, SenderSigningKey,
};
pub use suite::{HpkeSuite, Kem};
