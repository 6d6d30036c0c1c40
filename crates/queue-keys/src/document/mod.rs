//! The keyset file format (JSON), and the operations of a rotation on it: the document and
//! what it hands out here; its JSON in `format`, the rotation steps in `edit`, the public-key
//! entries in `public`.
//!
//! ```json
//! {
//!   "version": 1,
//!   "keys": [
//!     { "id": "orders-2026-11", "state": "primary", "material": "<32 bytes, base64>",
//!       "created": "2026-11-23T10:00:00Z" },
//!     { "id": "orders-2026-08", "state": "active", "material": "<32 bytes, base64>",
//!       "created": "2026-08-02T09:30:00Z", "not_after": "2026-11-23T10:00:00Z" }
//!   ]
//! }
//! ```
//!
//! `state` is `primary` (seals and opens; at most one), `active` (opens only) or `retired`
//! (refused). `created` and `not_after` are optional RFC 3339 times. The same document, base64
//! encoded, is what the environment source reads.
//!
//! The same document also holds the keys of the public-key envelope (version 2), each list
//! optional, beside or instead of `keys`:
//!
//! ```json
//! {
//!   "version": 1,
//!   "role": "consumer",
//!   "recipient_keys": [
//!     { "id": "orders-r1", "state": "primary", "kem": "x25519", "private_key": "<base64>" }
//!   ],
//!   "trusted_senders": [
//!     { "id": "webhook-1", "state": "active", "public_key": "<base64>" }
//!   ]
//! }
//! ```
//!
//! | List | Held by | Secret |
//! |---|---|---|
//! | `recipient_keys` | consumers: open what is sealed to their public half | private key |
//! | `recipient_public_keys` | producers: seal to the primary one | no |
//! | `signing_keys` | producers: the primary one signs | Ed25519 seed |
//! | `trusted_senders` | consumers: whose signatures they accept | no |
//!
//! `role` (optional) says who the document is for: `"producer"` refuses `recipient_keys` (a
//! producer must never be able to open), `"consumer"` refuses `signing_keys` (a consumer must
//! never be able to sign as a producer). A key id is unique across the whole document, so the
//! rotation steps name a key by its id alone.

use std::path::Path;
use std::time::SystemTime;

use queue_crypto::public::{ConsumerKeyset, ProducerKeyset};
use queue_crypto::{Key, KeyId, KeyMaterial, KeyState, Keyset};

use self::edit::copy_keys;
use crate::error::{KeyError, Result};
use crate::keys::Keys;

mod edit;
mod format;
mod public;

pub use public::{PublicKeyEntry, PublicKeyKind, Role};

/// The version of the keyset file format this crate reads and writes.
pub const DOCUMENT_VERSION: u32 = 1;

/// A keyset as a file holds it: parsed, validated, and editable for a rotation.
///
/// Every edit checks the keyset rules again (ids unique, at most one primary per list, the
/// role's rule), so a document that exists is always valid. `Debug` shows ids and states,
/// never material.
#[derive(Debug)]
pub struct KeysetDocument {
    role: Option<Role>,
    /// The shared (version 1) keys, if the document has any.
    keyset: Option<Keyset>,
    public: Vec<PublicKeyEntry>,
}

impl KeysetDocument {
    /// A new document with one freshly generated primary key (256 bits from `ring`'s
    /// `SystemRandom`), created now.
    pub fn generate(id: KeyId) -> Result<Self> {
        let key = Key::new(id, KeyMaterial::generate()?, KeyState::Primary)
            .with_created(SystemTime::now());
        Ok(KeysetDocument {
            role: None,
            keyset: Some(Keyset::new([key])?),
            public: Vec::new(),
        })
    }

    /// A new, empty document for `role` (or for any role), to which the public-key steps
    /// ([`generate_recipient_key`](Self::generate_recipient_key),
    /// [`generate_signing_key`](Self::generate_signing_key), [`add_public_key`](Self::add_public_key))
    /// add keys. It is not a valid source of keys until it holds one.
    pub fn empty(role: Option<Role>) -> Self {
        KeysetDocument {
            role,
            keyset: None,
            public: Vec::new(),
        }
    }

    /// Who the document is for, if it says.
    pub fn role(&self) -> Option<Role> {
        self.role
    }

    /// The shared (version 1) keys, in file order.
    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.keyset.iter().flat_map(Keyset::keys)
    }

    /// The public-key entries, list by list.
    pub fn public_keys(&self) -> impl Iterator<Item = &PublicKeyEntry> {
        self.public.iter()
    }

    /// The shared-key keyset, for sealing and opening version 1 envelopes; `None` when the
    /// document holds public-key entries only.
    pub fn keyset(&self) -> Option<&Keyset> {
        self.keyset.as_ref()
    }

    /// The shared-key keyset, consuming the document.
    ///
    /// # Errors
    /// [`KeyError::Invalid`] when the document holds no shared key.
    pub fn into_keyset(self) -> Result<Keyset> {
        self.keyset.ok_or_else(|| KeyError::Invalid {
            source_name: "keyset document".to_owned(),
            reason: "it holds no shared (version 1) key".to_owned(),
        })
    }

    /// Everything the document holds, as the client seals and opens with it: the shared
    /// keyset, the producer keyset (recipient public keys and signing keys) and the consumer
    /// keyset (recipient key pairs and trusted senders), each if present.
    ///
    /// # Errors
    /// [`KeyError::Invalid`] when a producer has recipient keys but no signing key (or the
    /// reverse), or a consumer has key pairs but no trusted sender (or the reverse).
    pub fn to_keys(&self, source_name: &str) -> Result<Keys> {
        let invalid = |reason: String| KeyError::Invalid {
            source_name: source_name.to_owned(),
            reason,
        };
        let copies = |kind: PublicKeyKind| self.public.iter().filter(move |e| e.kind == kind);
        let recipients = copies(PublicKeyKind::RecipientPublicKey)
            .map(PublicKeyEntry::recipient_public)
            .collect::<Result<Vec<_>>>()?;
        let signers = copies(PublicKeyKind::SigningKey)
            .map(PublicKeyEntry::signing_key)
            .collect::<Result<Vec<_>>>()?;
        let producer = match (recipients.is_empty(), signers.is_empty()) {
            (true, true) => None,
            (false, false) => Some(ProducerKeyset::new(recipients, signers)?),
            _ => {
                return Err(invalid(
                    "a producer needs both recipient_public_keys and signing_keys".to_owned(),
                ));
            }
        };
        let pairs = copies(PublicKeyKind::RecipientKey)
            .map(PublicKeyEntry::recipient_pair)
            .collect::<Result<Vec<_>>>()?;
        let trusted = copies(PublicKeyKind::TrustedSender)
            .map(PublicKeyEntry::trusted_sender)
            .collect::<Result<Vec<_>>>()?;
        let consumer = match (pairs.is_empty(), trusted.is_empty()) {
            (true, true) => None,
            (false, false) => Some(ConsumerKeyset::new(pairs, trusted)?),
            _ => {
                return Err(invalid(
                    "a consumer needs both recipient_keys and trusted_senders".to_owned(),
                ));
            }
        };
        let shared = match &self.keyset {
            Some(keyset) => Some(Keyset::new(copy_keys(keyset, |_| None)?)?),
            None => None,
        };
        Keys::new(shared, producer, consumer).map_err(|reason| invalid(reason.to_owned()))
    }

    /// [`to_keys`](Self::to_keys), consuming the document.
    pub fn into_keys(self, source_name: &str) -> Result<Keys> {
        self.to_keys(source_name)
    }

    fn is_empty(&self) -> bool {
        self.keyset.is_none() && self.public.is_empty()
    }

    /// The rules every document keeps: ids unique across it, at most one primary per list
    /// (but the trust list), valid key bytes, and the role's rule.
    fn check(&self) -> std::result::Result<(), String> {
        for (index, entry) in self.public.iter().enumerate() {
            let earlier = &self.public[..index];
            if earlier.iter().any(|other| other.id == entry.id)
                || self.keys().any(|key| key.id() == &entry.id)
            {
                return Err(format!("key id {} appears twice", entry.id));
            }
            if entry.kind.one_primary()
                && entry.state == KeyState::Primary
                && earlier
                    .iter()
                    .any(|other| other.kind == entry.kind && other.state == KeyState::Primary)
            {
                return Err(format!(
                    "{} has more than one primary key",
                    entry.kind.list_name()
                ));
            }
            entry
                .check()
                .map_err(|error| format!("key {}: {error}", entry.id))?;
            match (self.role, entry.kind) {
                (Some(Role::Producer), PublicKeyKind::RecipientKey) => {
                    return Err(format!(
                        "key {}: a producer's document holds no recipient private key (a \
                         producer must not be able to open messages); give the producer the \
                         public half (export-public)",
                        entry.id
                    ));
                }
                (Some(Role::Consumer), PublicKeyKind::SigningKey) => {
                    return Err(format!(
                        "key {}: a consumer's document holds no signing key (a consumer must \
                         not be able to sign as a producer)",
                        entry.id
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Writes a new keyset file with one fresh primary key. Refuses to overwrite an existing file:
/// losing a key loses every message sealed under it.
pub fn generate_keyset_file(path: impl AsRef<Path>, id: KeyId) -> Result<KeysetDocument> {
    let path = path.as_ref();
    if path.exists() {
        return Err(KeyError::Invalid {
            source_name: format!("file {}", path.display()),
            reason: "the file exists; refusing to overwrite a keyset".to_owned(),
        });
    }
    let document = KeysetDocument::generate(id)?;
    document.write_file(path)?;
    Ok(document)
}
