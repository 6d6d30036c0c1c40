//! The keyset file format (JSON), and the operations of a rotation on it.
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

use std::fmt;
use std::path::Path;
use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use queue_crypto::public::{
    ConsumerKeyset, Kem, ProducerKeyset, RecipientKeyPair, RecipientPublicKey, SenderPublicKey,
    SenderSigningKey,
};
use queue_crypto::{Key, KeyId, KeyMaterial, KeyState, Keyset};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{KeyError, Result};
use crate::keys::Keys;

/// The version of the keyset file format this crate reads and writes.
pub const DOCUMENT_VERSION: u32 = 1;

/// Who a keyset document is for: what it may not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Role {
    /// Seals only: the document holds no recipient private key, so whoever holds it (a webhook
    /// front end, a partner's service) can never open a message.
    Producer,
    /// Opens only: the document holds no signing key, so a consumer cannot sign as a producer.
    Consumer,
}

impl Role {
    /// Its name in the document: `producer` or `consumer`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Producer => "producer",
            Role::Consumer => "consumer",
        }
    }

    /// The role [`as_str`](Self::as_str) names `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        [Role::Producer, Role::Consumer]
            .into_iter()
            .find(|role| role.as_str() == name)
    }
}

/// The kinds of public-key entries, as the document's lists name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PublicKeyKind {
    /// A consumer's recipient key pair (`recipient_keys`; the private key is stored).
    RecipientKey,
    /// A recipient's public key, for producers (`recipient_public_keys`).
    RecipientPublicKey,
    /// A producer's Ed25519 signing key (`signing_keys`; the seed is stored).
    SigningKey,
    /// A sender's public key on a consumer's trust list (`trusted_senders`).
    TrustedSender,
}

impl PublicKeyKind {
    /// The name of the document's list for this kind.
    pub const fn list_name(self) -> &'static str {
        match self {
            PublicKeyKind::RecipientKey => "recipient_keys",
            PublicKeyKind::RecipientPublicKey => "recipient_public_keys",
            PublicKeyKind::SigningKey => "signing_keys",
            PublicKeyKind::TrustedSender => "trusted_senders",
        }
    }

    /// Whether the stored bytes are a private key.
    pub const fn is_secret(self) -> bool {
        matches!(
            self,
            PublicKeyKind::RecipientKey | PublicKeyKind::SigningKey
        )
    }

    /// Whether a list of this kind has at most one primary (every kind but the trust list,
    /// where each trusted producer's current key is primary or active alike).
    const fn one_primary(self) -> bool {
        !matches!(self, PublicKeyKind::TrustedSender)
    }
}

/// One public-key entry of a document: its id, state, times, and bytes (a private key or seed
/// for the secret kinds, kept in zeroizing storage and never printed).
pub struct PublicKeyEntry {
    kind: PublicKeyKind,
    id: KeyId,
    state: KeyState,
    kem: Option<Kem>,
    bytes: Zeroizing<Vec<u8>>,
    created: Option<SystemTime>,
    not_after: Option<SystemTime>,
}

impl fmt::Debug for PublicKeyEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("PublicKeyEntry");
        debug
            .field("kind", &self.kind)
            .field("id", &self.id)
            .field("state", &self.state)
            .field("kem", &self.kem);
        if self.kind.is_secret() {
            debug.field("bytes", &"[REDACTED]");
        }
        debug.finish_non_exhaustive()
    }
}

impl PublicKeyEntry {
    /// Which list it is in.
    pub fn kind(&self) -> PublicKeyKind {
        self.kind
    }

    /// Its id.
    pub fn id(&self) -> &KeyId {
        &self.id
    }

    /// Its state.
    pub fn state(&self) -> KeyState {
        self.state
    }

    /// The KEM of a recipient key (none for sender keys).
    pub fn kem(&self) -> Option<Kem> {
        self.kem
    }

    /// When it was created, if recorded.
    pub fn created(&self) -> Option<SystemTime> {
        self.created
    }

    /// The time after which it seals nothing, if any.
    pub fn not_after(&self) -> Option<SystemTime> {
        self.not_after
    }

    /// The public key bytes: stored for the public kinds, derived for the secret ones.
    ///
    /// # Errors
    /// The stored bytes are not a valid key (never once the document was parsed or built).
    pub fn public_bytes(&self) -> Result<Vec<u8>> {
        Ok(match self.kind {
            PublicKeyKind::RecipientKey => self.recipient_pair()?.public_key().as_bytes().to_vec(),
            PublicKeyKind::SigningKey => self.signing_key()?.public_key().as_bytes().to_vec(),
            PublicKeyKind::RecipientPublicKey | PublicKeyKind::TrustedSender => self.bytes.to_vec(),
        })
    }

    fn with_times<K: Timed>(&self, key: K) -> K {
        let key = match self.created {
            Some(created) => key.created(created),
            None => key,
        };
        match self.not_after {
            Some(not_after) => key.not_after(not_after),
            None => key,
        }
    }

    fn kem_or_default(&self) -> Kem {
        self.kem.unwrap_or_default()
    }

    fn recipient_pair(&self) -> Result<RecipientKeyPair> {
        let pair = RecipientKeyPair::from_private_key(
            self.id.clone(),
            self.kem_or_default(),
            &self.bytes,
            self.state,
        )?;
        Ok(self.with_times(pair))
    }

    fn recipient_public(&self) -> Result<RecipientPublicKey> {
        let key = RecipientPublicKey::new(
            self.id.clone(),
            self.kem_or_default(),
            &self.bytes,
            self.state,
        )?;
        Ok(self.with_times(key))
    }

    fn signing_key(&self) -> Result<SenderSigningKey> {
        let key = SenderSigningKey::from_seed(self.id.clone(), &self.bytes, self.state)?;
        Ok(self.with_times(key))
    }

    fn trusted_sender(&self) -> Result<SenderPublicKey> {
        let key = SenderPublicKey::new(self.id.clone(), &self.bytes, self.state)?;
        Ok(self.with_times(key))
    }

    /// Checks that the bytes are a valid key of its kind.
    fn check(&self) -> Result<()> {
        match self.kind {
            PublicKeyKind::RecipientKey => self.recipient_pair().map(drop),
            PublicKeyKind::RecipientPublicKey => self.recipient_public().map(drop),
            PublicKeyKind::SigningKey => self.signing_key().map(drop),
            PublicKeyKind::TrustedSender => self.trusted_sender().map(drop),
        }
    }
}

/// The two lifetime setters the public key types share, so one helper sets them on any.
trait Timed: Sized {
    fn created(self, at: SystemTime) -> Self;
    fn not_after(self, at: SystemTime) -> Self;
}

macro_rules! timed {
    ($($key:ty),*) => {$(
        impl Timed for $key {
            fn created(self, at: SystemTime) -> Self {
                self.with_created(at)
            }
            fn not_after(self, at: SystemTime) -> Self {
                self.with_not_after(at)
            }
        }
    )*};
}
timed!(
    RecipientKeyPair,
    RecipientPublicKey,
    SenderSigningKey,
    SenderPublicKey
);

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

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDocument {
    version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    role: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    keys: Vec<RawKey>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    recipient_keys: Vec<RawPublicEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    recipient_public_keys: Vec<RawPublicEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    signing_keys: Vec<RawPublicEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    trusted_senders: Vec<RawPublicEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    id: String,
    state: String,
    material: Zeroizing<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    not_after: Option<String>,
}

/// One public-key entry as written. The key's field is named for what it is: `private_key`
/// (recipient key pairs), `seed` (signing keys), `public_key` (the public kinds); a field that
/// does not belong to the list is refused.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPublicEntry {
    id: String,
    state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kem: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    private_key: Option<Zeroizing<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seed: Option<Zeroizing<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    public_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    not_after: Option<String>,
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

    /// Parses a JSON document. `source_name` labels errors (`file /etc/keys.json`).
    ///
    /// Errors say where the document is wrong (line and column, key id, field), never what the
    /// offending text was: it may be key material.
    pub fn parse(json: &[u8], source_name: &str) -> Result<Self> {
        let invalid = |reason: String| KeyError::Invalid {
            source_name: source_name.to_owned(),
            reason,
        };
        let raw: RawDocument = serde_json::from_slice(json).map_err(|error| {
            // serde's messages can quote the offending value; report only its place.
            let what = match error.classify() {
                serde_json::error::Category::Syntax => "JSON syntax error",
                serde_json::error::Category::Eof => "the document ends early",
                serde_json::error::Category::Data => {
                    "a field is unknown, missing, or has the wrong type or value"
                }
                serde_json::error::Category::Io => "read error",
            };
            invalid(format!(
                "{what} at line {} column {}",
                error.line(),
                error.column()
            ))
        })?;
        if raw.version != DOCUMENT_VERSION {
            return Err(invalid(format!(
                "version {} is not supported; expected {DOCUMENT_VERSION}",
                raw.version
            )));
        }
        let role = match raw.role.as_deref() {
            None => None,
            Some(name) => Some(
                Role::from_name(name)
                    .ok_or_else(|| invalid("role must be producer or consumer".to_owned()))?,
            ),
        };
        let mut keys = Vec::with_capacity(raw.keys.len());
        for raw_key in &raw.keys {
            let id = KeyId::new(raw_key.id.as_str())
                .map_err(|error| invalid(format!("key id: {error}")))?;
            let material =
                Zeroizing::new(STANDARD.decode(raw_key.material.as_bytes()).map_err(|_| {
                    invalid(format!("the material of key {id} is not valid base64"))
                })?);
            let material = KeyMaterial::from_slice(&material)
                .map_err(|error| invalid(format!("key {id}: {error}")))?;
            let state = parse_state(&raw_key.state, &id).map_err(invalid)?;
            let mut key = Key::new(id.clone(), material, state);
            if let Some(created) = &raw_key.created {
                key = key.with_created(parse_time(created, &id, "created").map_err(invalid)?);
            }
            if let Some(not_after) = &raw_key.not_after {
                key = key.with_not_after(parse_time(not_after, &id, "not_after").map_err(invalid)?);
            }
            keys.push(key);
        }
        let keyset = if keys.is_empty() {
            None
        } else {
            Some(Keyset::new(keys).map_err(|error| invalid(error.to_string()))?)
        };
        let mut public = Vec::new();
        for (kind, entries) in [
            (PublicKeyKind::RecipientKey, &raw.recipient_keys),
            (
                PublicKeyKind::RecipientPublicKey,
                &raw.recipient_public_keys,
            ),
            (PublicKeyKind::SigningKey, &raw.signing_keys),
            (PublicKeyKind::TrustedSender, &raw.trusted_senders),
        ] {
            for entry in entries {
                public.push(parse_entry(kind, entry).map_err(invalid)?);
            }
        }
        let document = KeysetDocument {
            role,
            keyset,
            public,
        };
        document.check().map_err(invalid)?;
        if document.is_empty() {
            return Err(invalid("the document holds no keys".to_owned()));
        }
        Ok(document)
    }

    /// Reads and parses a keyset file.
    pub fn read_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let source_name = format!("file {}", path.display());
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|error| KeyError::Unavailable {
            source_name: source_name.clone(),
            reason: error.to_string(),
        })?);
        Self::parse(&bytes, &source_name)
    }

    /// The document as pretty JSON, in zeroizing storage.
    pub fn to_json(&self) -> Result<Zeroizing<Vec<u8>>> {
        let entries = |kind: PublicKeyKind| -> Vec<RawPublicEntry> {
            self.public
                .iter()
                .filter(|entry| entry.kind == kind)
                .map(raw_entry)
                .collect()
        };
        let raw = RawDocument {
            version: DOCUMENT_VERSION,
            role: self.role.map(|role| role.as_str().to_owned()),
            keys: self
                .keys()
                .map(|key| RawKey {
                    id: key.id().to_string(),
                    state: key.state().as_str().to_owned(),
                    material: Zeroizing::new(STANDARD.encode(key.material().expose())),
                    created: key.created().map(format_time),
                    not_after: key.not_after().map(format_time),
                })
                .collect(),
            recipient_keys: entries(PublicKeyKind::RecipientKey),
            recipient_public_keys: entries(PublicKeyKind::RecipientPublicKey),
            signing_keys: entries(PublicKeyKind::SigningKey),
            trusted_senders: entries(PublicKeyKind::TrustedSender),
        };
        // Sized up front so the buffer does not reallocate and leave copies behind (an X-Wing
        // public key is 1,216 bytes, 1,624 in base64).
        let entry_count = raw.keys.len() + self.public.len();
        let mut json = Zeroizing::new(Vec::with_capacity(256 + 2048 * entry_count));
        serde_json::to_writer_pretty(&mut *json, &raw).map_err(|error| KeyError::Invalid {
            source_name: "keyset document".to_owned(),
            reason: error.to_string(),
        })?;
        json.push(b'\n');
        Ok(json)
    }

    /// Writes the document to `path` atomically (a temporary file in the same directory, then a
    /// rename), readable by the owner only, so a process re-reading the file never sees half of
    /// it.
    pub fn write_file(&self, path: impl AsRef<Path>) -> Result<()> {
        crate::store::write_private_file(path.as_ref(), &self.to_json()?)
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

    /// Rotation step 1: adds a freshly generated shared key as `active` (it opens, it does not
    /// seal yet); the first shared key of a document is `primary`.
    pub fn add_generated(&mut self, id: KeyId) -> Result<()> {
        self.check_new_id(&id)?;
        let state = if self.keyset.is_some() {
            KeyState::Active
        } else {
            KeyState::Primary
        };
        let new_key = Key::new(id, KeyMaterial::generate()?, state).with_created(SystemTime::now());
        let mut keys = match &self.keyset {
            Some(keyset) => copy_keys(keyset, |_| None)?,
            None => Vec::new(),
        };
        keys.push(new_key);
        self.keyset = Some(Keyset::new(keys)?);
        Ok(())
    }

    /// Adds a freshly generated recipient key pair (consumer side): `primary` when it is the
    /// first, else `active` (rotation step 1: it opens; its public half goes to the producers
    /// before it is promoted). Refused in a producer's document.
    pub fn generate_recipient_key(&mut self, id: KeyId, kem: Kem) -> Result<()> {
        let state = self.first_state(PublicKeyKind::RecipientKey);
        let pair = RecipientKeyPair::generate(id.clone(), kem, state)?;
        self.push(PublicKeyEntry {
            kind: PublicKeyKind::RecipientKey,
            id,
            state,
            kem: Some(kem),
            bytes: Zeroizing::new(pair.expose_private_key().to_vec()),
            created: Some(SystemTime::now()),
            not_after: None,
        })
    }

    /// Adds a freshly generated signing key (producer side): `primary` when it is the first,
    /// else `active` (rotation step 1: its public half goes to the consumers' trust lists before
    /// it is promoted). Refused in a consumer's document.
    pub fn generate_signing_key(&mut self, id: KeyId) -> Result<()> {
        let state = self.first_state(PublicKeyKind::SigningKey);
        let key = SenderSigningKey::generate(id.clone(), state)?;
        self.push(PublicKeyEntry {
            kind: PublicKeyKind::SigningKey,
            id,
            state,
            kem: None,
            bytes: Zeroizing::new(key.expose_seed().to_vec()),
            created: Some(SystemTime::now()),
            not_after: None,
        })
    }

    /// Adds a public key someone else exported: a recipient's public key (producer side,
    /// `kind` [`PublicKeyKind::RecipientPublicKey`], with its `kem`) or a trusted sender
    /// ([`PublicKeyKind::TrustedSender`]). A recipient public key is `primary` when it is the
    /// first, else `active` until promoted; a trusted sender is `active` (trusted at once).
    ///
    /// # Errors
    /// A secret kind (those are generated here, never imported), bytes that are not a valid
    /// key, a duplicate id.
    pub fn add_public_key(
        &mut self,
        kind: PublicKeyKind,
        id: KeyId,
        kem: Option<Kem>,
        bytes: &[u8],
    ) -> Result<()> {
        if kind.is_secret() {
            return Err(edit_error(format!(
                "{} are generated where they are used, never imported",
                kind.list_name()
            )));
        }
        let state = match kind {
            PublicKeyKind::TrustedSender => KeyState::Active,
            _ => self.first_state(kind),
        };
        self.push(PublicKeyEntry {
            kind,
            id,
            state,
            kem: match kind {
                PublicKeyKind::RecipientPublicKey => Some(kem.unwrap_or_default()),
                _ => None,
            },
            bytes: Zeroizing::new(bytes.to_vec()),
            created: Some(SystemTime::now()),
            not_after: None,
        })
    }

    /// The public halves of this document's own keys, as a document another party adds with
    /// [`import_public`](Self::import_public): a consumer's recipient keys become
    /// `recipient_public_keys` (for its producers), a producer's signing keys become
    /// `trusted_senders` (for its consumers). States and times are kept; retired keys are left
    /// out. Holds no secret.
    pub fn export_public(&self) -> Result<KeysetDocument> {
        let mut public = Vec::new();
        for entry in &self.public {
            let kind = match entry.kind {
                PublicKeyKind::RecipientKey => PublicKeyKind::RecipientPublicKey,
                PublicKeyKind::SigningKey => PublicKeyKind::TrustedSender,
                _ => continue,
            };
            if entry.state == KeyState::Retired {
                continue;
            }
            public.push(PublicKeyEntry {
                kind,
                id: entry.id.clone(),
                state: entry.state,
                kem: entry.kem,
                bytes: Zeroizing::new(entry.public_bytes()?),
                created: entry.created,
                not_after: entry.not_after,
            });
        }
        if public.is_empty() {
            return Err(edit_error(
                "the document has no recipient key or signing key to export".to_owned(),
            ));
        }
        Ok(KeysetDocument {
            role: None,
            keyset: None,
            public,
        })
    }

    /// Adds the public keys of an exported document (see [`export_public`](Self::export_public))
    /// that this document does not have yet; keys it has are updated to the exported state
    /// when their bytes agree (a promotion or retirement on the other side). Returns the ids
    /// added or changed.
    ///
    /// # Errors
    /// The export holds a secret, or a key whose id is known here with other bytes.
    pub fn import_public(&mut self, export: &KeysetDocument) -> Result<Vec<KeyId>> {
        if export.keyset.is_some() || export.public.iter().any(|entry| entry.kind.is_secret()) {
            return Err(edit_error(
                "refusing to import a document that holds secret keys: export the public \
                 halves first"
                    .to_owned(),
            ));
        }
        let mut changed = Vec::new();
        let mut public: Vec<PublicKeyEntry> = self.public.iter().map(copy_entry).collect();
        for entry in &export.public {
            match public.iter_mut().find(|own| own.id == entry.id) {
                Some(own) if own.kind == entry.kind && *own.bytes == *entry.bytes => {
                    if own.state != entry.state {
                        own.state = entry.state;
                        changed.push(entry.id.clone());
                    }
                }
                Some(_) => {
                    return Err(edit_error(format!(
                        "key {} is already here with other bytes or of another kind",
                        entry.id
                    )));
                }
                None => {
                    public.push(copy_entry(entry));
                    changed.push(entry.id.clone());
                }
            }
        }
        self.replace_public(public)?;
        Ok(changed)
    }

    /// Rotation step 2: makes `id` the primary key of its list (shared keys, recipient keys,
    /// recipient public keys or signing keys); the previous primary becomes `active` (it keeps
    /// opening what it sealed).
    pub fn promote(&mut self, id: &str) -> Result<()> {
        if let Some(entry) = self.public.iter().find(|entry| entry.id.as_str() == id) {
            if entry.state == KeyState::Retired {
                return Err(edit_error(format!(
                    "key {id} is retired; a retired key never seals again"
                )));
            }
            let kind = entry.kind;
            let mut public: Vec<PublicKeyEntry> = self.public.iter().map(copy_entry).collect();
            for other in public.iter_mut().filter(|other| other.kind == kind) {
                if other.id.as_str() == id {
                    other.state = KeyState::Primary;
                } else if other.state == KeyState::Primary && kind.one_primary() {
                    other.state = KeyState::Active;
                }
            }
            return self.replace_public(public);
        }
        let keyset = self.shared_with(id)?;
        let target = keyset
            .get(id)
            .ok_or_else(|| KeyError::unknown_key_id(id.to_owned()))?;
        if target.state() == KeyState::Retired {
            return Err(edit_error(format!(
                "key {id} is retired; a retired key never seals again"
            )));
        }
        let keys = copy_keys(keyset, |key| {
            if key.id().as_str() == id {
                Some(KeyState::Primary)
            } else if key.state() == KeyState::Primary {
                Some(KeyState::Active)
            } else {
                None
            }
        })?;
        self.keyset = Some(Keyset::new(keys)?);
        Ok(())
    }

    /// Rotation step 3: retires `id`. Envelopes under it (sealed to it, or signed by it) are
    /// refused from then on, so do this only after the longest time a message can live (see
    /// `docs/operations.md`).
    ///
    /// Refuses the primary key of a list that seals or signs with it (every list but the trust
    /// list): retiring it would leave nothing to seal with; promote its successor first.
    pub fn retire(&mut self, id: &str) -> Result<()> {
        let primary = || {
            edit_error(format!(
                "key {id} is the primary key: promote its successor first (step 2), then retire it"
            ))
        };
        if let Some(entry) = self.public.iter().find(|entry| entry.id.as_str() == id) {
            if entry.state == KeyState::Primary && entry.kind.one_primary() {
                return Err(primary());
            }
            let mut public: Vec<PublicKeyEntry> = self.public.iter().map(copy_entry).collect();
            for entry in public.iter_mut().filter(|entry| entry.id.as_str() == id) {
                entry.state = KeyState::Retired;
            }
            return self.replace_public(public);
        }
        let keyset = self.shared_with(id)?;
        if keyset.get(id).map(|key| key.state()) == Some(KeyState::Primary) {
            return Err(primary());
        }
        let keys = copy_keys(keyset, |key| {
            (key.id().as_str() == id).then_some(KeyState::Retired)
        })?;
        self.keyset = Some(Keyset::new(keys)?);
        Ok(())
    }

    /// Removes a retired key for good (its envelopes then fail as an unknown key id). Refuses
    /// keys that are not retired, and the last key of the document.
    pub fn remove(&mut self, id: &str) -> Result<()> {
        if let Some(entry) = self.public.iter().find(|entry| entry.id.as_str() == id) {
            if entry.state != KeyState::Retired {
                return Err(edit_error(format!(
                    "key {id} must be retired before it is removed"
                )));
            }
            if self.keyset.is_none() && self.public.len() == 1 {
                return Err(edit_error(format!("key {id} is the document's last key")));
            }
            let public = self
                .public
                .iter()
                .filter(|entry| entry.id.as_str() != id)
                .map(copy_entry)
                .collect();
            return self.replace_public(public);
        }
        let keyset = self.shared_with(id)?;
        if keyset.get(id).map(Key::state) != Some(KeyState::Retired) {
            return Err(edit_error(format!(
                "key {id} must be retired before it is removed"
            )));
        }
        let mut keys = copy_keys(keyset, |_| None)?;
        keys.retain(|key| key.id().as_str() != id);
        if keys.is_empty() {
            if self.public.is_empty() {
                return Err(edit_error(format!("key {id} is the document's last key")));
            }
            self.keyset = None;
        } else {
            self.keyset = Some(Keyset::new(keys).map_err(|error| edit_error(error.to_string()))?);
        }
        Ok(())
    }

    fn is_empty(&self) -> bool {
        self.keyset.is_none() && self.public.is_empty()
    }

    /// The shared keyset, if it has a key `id`.
    fn shared_with(&self, id: &str) -> Result<&Keyset> {
        self.keyset
            .as_ref()
            .filter(|keyset| keyset.get(id).is_some())
            .ok_or_else(|| KeyError::unknown_key_id(id.to_owned()))
    }

    /// The state of a new key of `kind`: primary when the list has no primary yet.
    fn first_state(&self, kind: PublicKeyKind) -> KeyState {
        let has_primary = self
            .public
            .iter()
            .any(|entry| entry.kind == kind && entry.state == KeyState::Primary);
        if has_primary {
            KeyState::Active
        } else {
            KeyState::Primary
        }
    }

    fn check_new_id(&self, id: &KeyId) -> Result<()> {
        let taken = self.keys().any(|key| key.id() == id)
            || self.public.iter().any(|entry| &entry.id == id);
        if taken {
            return Err(edit_error(format!(
                "key {id} already exists in the document"
            )));
        }
        Ok(())
    }

    fn push(&mut self, entry: PublicKeyEntry) -> Result<()> {
        self.check_new_id(&entry.id)?;
        let mut public: Vec<PublicKeyEntry> = self.public.iter().map(copy_entry).collect();
        public.push(entry);
        self.replace_public(public)
    }

    /// Puts `public` in place if the document stays valid; leaves it unchanged otherwise.
    fn replace_public(&mut self, public: Vec<PublicKeyEntry>) -> Result<()> {
        let previous = std::mem::replace(&mut self.public, public);
        if let Err(reason) = self.check() {
            self.public = previous;
            return Err(edit_error(reason));
        }
        Ok(())
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

fn edit_error(reason: String) -> KeyError {
    KeyError::Invalid {
        source_name: "keyset document".to_owned(),
        reason,
    }
}

fn copy_entry(entry: &PublicKeyEntry) -> PublicKeyEntry {
    PublicKeyEntry {
        kind: entry.kind,
        id: entry.id.clone(),
        state: entry.state,
        kem: entry.kem,
        bytes: entry.bytes.clone(),
        created: entry.created,
        not_after: entry.not_after,
    }
}

fn raw_entry(entry: &PublicKeyEntry) -> RawPublicEntry {
    let encoded = || Zeroizing::new(STANDARD.encode(&*entry.bytes));
    RawPublicEntry {
        id: entry.id.to_string(),
        state: entry.state.as_str().to_owned(),
        kem: entry.kem.map(|kem| kem.as_str().to_owned()),
        private_key: (entry.kind == PublicKeyKind::RecipientKey).then(encoded),
        seed: (entry.kind == PublicKeyKind::SigningKey).then(encoded),
        public_key: (!entry.kind.is_secret()).then(|| encoded().to_string()),
        created: entry.created.map(format_time),
        not_after: entry.not_after.map(format_time),
    }
}

fn parse_entry(
    kind: PublicKeyKind,
    raw: &RawPublicEntry,
) -> std::result::Result<PublicKeyEntry, String> {
    let list = kind.list_name();
    let id = KeyId::new(raw.id.as_str()).map_err(|error| format!("{list}: key id: {error}"))?;
    let state = parse_state(&raw.state, &id)?;
    let (field, value, others) = match kind {
        PublicKeyKind::RecipientKey => (
            "private_key",
            raw.private_key.as_ref().map(|text| text.as_str()),
            [raw.seed.is_some(), raw.public_key.is_some()],
        ),
        PublicKeyKind::SigningKey => (
            "seed",
            raw.seed.as_ref().map(|text| text.as_str()),
            [raw.private_key.is_some(), raw.public_key.is_some()],
        ),
        PublicKeyKind::RecipientPublicKey | PublicKeyKind::TrustedSender => (
            "public_key",
            raw.public_key.as_deref(),
            [raw.private_key.is_some(), raw.seed.is_some()],
        ),
    };
    if others.iter().any(|set| *set) {
        return Err(format!(
            "{list}: key {id}: only `{field}` holds the key in this list"
        ));
    }
    let value = value.ok_or_else(|| format!("{list}: key {id}: `{field}` is missing"))?;
    let bytes = Zeroizing::new(
        STANDARD
            .decode(value.as_bytes())
            .map_err(|_| format!("{list}: key {id}: `{field}` is not valid base64"))?,
    );
    let recipient = matches!(
        kind,
        PublicKeyKind::RecipientKey | PublicKeyKind::RecipientPublicKey
    );
    let kem = match (&raw.kem, recipient) {
        (Some(name), true) => Some(
            Kem::from_name(name)
                .ok_or_else(|| format!("{list}: key {id}: kem must be x25519 or x-wing"))?,
        ),
        (None, true) => Some(Kem::default()),
        (Some(_), false) => return Err(format!("{list}: key {id}: a sender key has no kem")),
        (None, false) => None,
    };
    let created = raw
        .created
        .as_deref()
        .map(|text| parse_time(text, &id, "created"))
        .transpose()?;
    let not_after = raw
        .not_after
        .as_deref()
        .map(|text| parse_time(text, &id, "not_after"))
        .transpose()?;
    Ok(PublicKeyEntry {
        kind,
        id,
        state,
        kem,
        bytes,
        created,
        not_after,
    })
}

/// Copies every shared key (material into fresh zeroizing storage), with the state `change`
/// gives.
fn copy_keys(keyset: &Keyset, change: impl Fn(&Key) -> Option<KeyState>) -> Result<Vec<Key>> {
    keyset
        .keys()
        .map(|key| {
            let state = change(key).unwrap_or(key.state());
            let mut copy = Key::new(
                key.id().clone(),
                KeyMaterial::from_slice(key.material().expose())?,
                state,
            );
            if let Some(created) = key.created() {
                copy = copy.with_created(created);
            }
            if let Some(not_after) = key.not_after() {
                copy = copy.with_not_after(not_after);
            }
            Ok(copy)
        })
        .collect()
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

fn parse_state(text: &str, id: &KeyId) -> std::result::Result<KeyState, String> {
    KeyState::from_name(text)
        .ok_or_else(|| format!("key {id}: state must be primary, active or retired"))
}

fn parse_time(text: &str, id: &KeyId, field: &str) -> std::result::Result<SystemTime, String> {
    humantime::parse_rfc3339_weak(text)
        .map_err(|error| format!("key {id}: {field} is not an RFC 3339 time: {error}"))
}

fn format_time(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}
