//! The public-key entries of a document (recipient keys, recipient public keys, signing keys,
//! trusted senders), and who a document is for.

use std::fmt;
use std::time::SystemTime;

use queue_crypto::public::{
    Kem, RecipientKeyPair, RecipientPublicKey, SenderPublicKey, SenderSigningKey,
};
use queue_crypto::{KeyId, KeyState};
use zeroize::Zeroizing;

use crate::error::Result;

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
    pub(super) const fn one_primary(self) -> bool {
        !matches!(self, PublicKeyKind::TrustedSender)
    }
}

/// One public-key entry of a document: its id, state, times, and bytes (a private key or seed
/// for the secret kinds, kept in zeroizing storage and never printed).
pub struct PublicKeyEntry {
    pub(super) kind: PublicKeyKind,
    pub(super) id: KeyId,
    pub(super) state: KeyState,
    pub(super) kem: Option<Kem>,
    pub(super) bytes: Zeroizing<Vec<u8>>,
    pub(super) created: Option<SystemTime>,
    pub(super) not_after: Option<SystemTime>,
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

    pub(super) fn with_times<K: Timed>(&self, key: K) -> K {
        let key = match self.created {
            Some(created) => key.created(created),
            None => key,
        };
        match self.not_after {
            Some(not_after) => key.not_after(not_after),
            None => key,
        }
    }

    pub(super) fn kem_or_default(&self) -> Kem {
        self.kem.unwrap_or_default()
    }

    pub(super) fn recipient_pair(&self) -> Result<RecipientKeyPair> {
        let pair = RecipientKeyPair::from_private_key(
            self.id.clone(),
            self.kem_or_default(),
            &self.bytes,
            self.state,
        )?;
        Ok(self.with_times(pair))
    }

    pub(super) fn recipient_public(&self) -> Result<RecipientPublicKey> {
        let key = RecipientPublicKey::new(
            self.id.clone(),
            self.kem_or_default(),
            &self.bytes,
            self.state,
        )?;
        Ok(self.with_times(key))
    }

    pub(super) fn signing_key(&self) -> Result<SenderSigningKey> {
        let key = SenderSigningKey::from_seed(self.id.clone(), &self.bytes, self.state)?;
        Ok(self.with_times(key))
    }

    pub(super) fn trusted_sender(&self) -> Result<SenderPublicKey> {
        let key = SenderPublicKey::new(self.id.clone(), &self.bytes, self.state)?;
        Ok(self.with_times(key))
    }

    /// Checks that the bytes are a valid key of its kind.
    pub(super) fn check(&self) -> Result<()> {
        match self.kind {
            PublicKeyKind::RecipientKey => self.recipient_pair().map(drop),
            PublicKeyKind::RecipientPublicKey => self.recipient_public().map(drop),
            PublicKeyKind::SigningKey => self.signing_key().map(drop),
            PublicKeyKind::TrustedSender => self.trusted_sender().map(drop),
        }
    }
}

/// The two lifetime setters the public key types share, so one helper sets them on any.
pub(super) trait Timed: Sized {
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
