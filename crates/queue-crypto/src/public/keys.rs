//! The keys of the public-key envelope and the two keysets that hold them.
//!
//! | Key | Held by | Secret | States |
//! |---|---|---|---|
//! | [`RecipientKeyPair`] | consumers | yes | primary: its public half is the one to publish; active: opens; retired: refused |
//! | [`RecipientPublicKey`] | producers | no | primary: sealed to; active: kept, not used; retired: not used |
//! | [`SenderSigningKey`] | producers | yes | primary: signs; active: kept, not used; retired: not used |
//! | [`SenderPublicKey`] | consumers (trust list) | no | primary or active: trusted; retired: refused |

use std::fmt;

use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use secrecy::{ExposeSecret, SecretBox};

use super::hpke::{PrivateKey, PublicKey};
use super::suite::Kem;
use crate::error::{CryptoError, Result};
use crate::keys::{KeyId, KeyState, Lifetime, Named, check_keys, find, lifetime_methods, primary};
use crate::random::{RandomSource, SystemRandomSource};

/// The length of an Ed25519 seed (a sender's private key) and of a sender's public key.
pub const SEED_LEN: usize = 32;

/// The private key length of every KEM (an X25519 scalar, an X-Wing seed).
const PRIVATE_KEY_LEN: usize = 32;

fn fixed<const N: usize>(bytes: &[u8], what: &str) -> Result<SecretBox<[u8; N]>> {
    let array: [u8; N] = bytes.try_into().map_err(|_| {
        CryptoError::InvalidKey(format!("{what} must be {N} bytes, got {}", bytes.len()))
    })?;
    Ok(SecretBox::new(Box::new(array)))
}

fn random_secret<const N: usize>() -> Result<SecretBox<[u8; N]>> {
    let mut secret = SecretBox::new(Box::new([0_u8; N]));
    SystemRandomSource::default().fill(secrecy::ExposeSecretMut::expose_secret_mut(&mut secret))?;
    Ok(secret)
}

/// A consumer's recipient key pair: what opens the envelopes sealed to its public half.
///
/// The private key is zeroed when dropped (both the bytes kept for export and the parsed key
/// the HPKE crate holds), never printed (`Debug` redacts it) and never cloned.
pub struct RecipientKeyPair {
    id: KeyId,
    kem: Kem,
    life: Lifetime,
    private_bytes: SecretBox<[u8; PRIVATE_KEY_LEN]>,
    private: PrivateKey,
    public: PublicKey,
}

impl RecipientKeyPair {
    /// A fresh key pair: 32 bytes from the operating system's random number generator (through
    /// `ring`), taken as the KEM's private key (an X25519 scalar, an X-Wing seed).
    pub fn generate(id: KeyId, kem: Kem, state: KeyState) -> Result<Self> {
        let private_bytes = random_secret::<PRIVATE_KEY_LEN>()?;
        Self::from_secret(id, kem, private_bytes, state)
    }

    /// A key pair from its private key's 32 bytes (as [`expose_private_key`] returns them). The
    /// caller should zeroize its own copy.
    ///
    /// [`expose_private_key`]: Self::expose_private_key
    pub fn from_private_key(id: KeyId, kem: Kem, bytes: &[u8], state: KeyState) -> Result<Self> {
        let private_bytes = fixed::<PRIVATE_KEY_LEN>(bytes, "a recipient private key")?;
        Self::from_secret(id, kem, private_bytes, state)
    }

    fn from_secret(
        id: KeyId,
        kem: Kem,
        private_bytes: SecretBox<[u8; PRIVATE_KEY_LEN]>,
        state: KeyState,
    ) -> Result<Self> {
        let private = PrivateKey::from_bytes(kem, private_bytes.expose_secret())?;
        let public = private.public_key();
        Ok(RecipientKeyPair {
            id,
            kem,
            life: Lifetime::new(state),
            private_bytes,
            private,
            public,
        })
    }

    /// The key encapsulation mechanism this key is for (X25519 or X-Wing).
    pub fn kem(&self) -> Kem {
        self.kem
    }

    /// The public half, for producers: same id, KEM, state and times.
    pub fn public_key(&self) -> RecipientPublicKey {
        RecipientPublicKey {
            id: self.id.clone(),
            kem: self.kem,
            life: self.life,
            bytes: self.public.to_bytes(),
            parsed: self.public.clone(),
        }
    }

    /// The private key's 32 bytes, for writing a consumer's keyset file.
    pub fn expose_private_key(&self) -> &[u8; PRIVATE_KEY_LEN] {
        self.private_bytes.expose_secret()
    }

    pub(crate) fn private(&self) -> &PrivateKey {
        &self.private
    }

    pub(crate) fn life(&self) -> &Lifetime {
        &self.life
    }
}

lifetime_methods!(RecipientKeyPair);

impl fmt::Debug for RecipientKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecipientKeyPair")
            .field("id", &self.id)
            .field("kem", &self.kem)
            .field("life", &self.life)
            .field("private_key", &"[REDACTED]")
            .finish_non_exhaustive()
    }
}

/// A recipient's public key, for producers: what envelopes are sealed to. Not secret, so it may
/// be cloned and printed.
#[derive(Clone)]
pub struct RecipientPublicKey {
    id: KeyId,
    kem: Kem,
    life: Lifetime,
    bytes: Vec<u8>,
    parsed: PublicKey,
}

impl RecipientPublicKey {
    /// A public key from its serialization (32 bytes for X25519, 1216 for X-Wing), checked.
    pub fn new(id: KeyId, kem: Kem, bytes: &[u8], state: KeyState) -> Result<Self> {
        if bytes.len() != kem.public_key_len() {
            return Err(CryptoError::InvalidKey(format!(
                "a {kem} public key is {} bytes, got {}",
                kem.public_key_len(),
                bytes.len()
            )));
        }
        let parsed = PublicKey::from_bytes(kem, bytes)?;
        Ok(RecipientPublicKey {
            id,
            kem,
            life: Lifetime::new(state),
            bytes: bytes.to_vec(),
            parsed,
        })
    }

    /// The key encapsulation mechanism this key is for (X25519 or X-Wing).
    pub fn kem(&self) -> Kem {
        self.kem
    }

    /// The serialized public key.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub(crate) fn parsed(&self) -> &PublicKey {
        &self.parsed
    }

    pub(crate) fn life(&self) -> &Lifetime {
        &self.life
    }
}

lifetime_methods!(RecipientPublicKey);

impl fmt::Debug for RecipientPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecipientPublicKey")
            .field("id", &self.id)
            .field("kem", &self.kem)
            .field("life", &self.life)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// A producer's Ed25519 signing key (`ring`): proves to consumers which producer sealed a
/// message.
///
/// The 32-byte seed is zeroed when dropped, never printed and never cloned. The key pair `ring`
/// expands from it is kept for the key's lifetime (expanding it costs a scalar multiplication per
/// message otherwise, see docs/performance.md); `ring` does not wipe that copy when it is
/// dropped.
pub struct SenderSigningKey {
    id: KeyId,
    life: Lifetime,
    seed: SecretBox<[u8; SEED_LEN]>,
    pair: Ed25519KeyPair,
}

impl SenderSigningKey {
    /// A fresh signing key: a 32-byte seed from the operating system's random number generator.
    pub fn generate(id: KeyId, state: KeyState) -> Result<Self> {
        Self::from_secret(id, random_secret::<SEED_LEN>()?, state)
    }

    /// A signing key from its 32-byte Ed25519 seed (RFC 8032's private key). The caller should
    /// zeroize its own copy.
    pub fn from_seed(id: KeyId, seed: &[u8], state: KeyState) -> Result<Self> {
        Self::from_secret(id, fixed::<SEED_LEN>(seed, "an Ed25519 seed")?, state)
    }

    fn from_secret(id: KeyId, seed: SecretBox<[u8; SEED_LEN]>, state: KeyState) -> Result<Self> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed.expose_secret())
            .map_err(|_| CryptoError::InvalidKey("not a valid Ed25519 seed".into()))?;
        Ok(SenderSigningKey {
            id,
            life: Lifetime::new(state),
            seed,
            pair,
        })
    }

    /// The public half, for consumers' trust lists: same id, state and times.
    pub fn public_key(&self) -> SenderPublicKey {
        let mut bytes = [0; SEED_LEN];
        bytes.copy_from_slice(self.pair.public_key().as_ref());
        SenderPublicKey {
            id: self.id.clone(),
            life: self.life,
            bytes,
        }
    }

    /// The 32-byte seed, for writing a producer's keyset file.
    pub fn expose_seed(&self) -> &[u8; SEED_LEN] {
        self.seed.expose_secret()
    }

    pub(crate) fn sign(&self, message: &[u8]) -> ring::signature::Signature {
        self.pair.sign(message)
    }

    pub(crate) fn life(&self) -> &Lifetime {
        &self.life
    }
}

lifetime_methods!(SenderSigningKey);

impl fmt::Debug for SenderSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SenderSigningKey")
            .field("id", &self.id)
            .field("life", &self.life)
            .field("seed", &"[REDACTED]")
            .finish_non_exhaustive()
    }
}

/// A trusted sender's Ed25519 public key, in a consumer's trust list.
#[derive(Clone, PartialEq, Eq)]
pub struct SenderPublicKey {
    id: KeyId,
    life: Lifetime,
    bytes: [u8; SEED_LEN],
}

impl SenderPublicKey {
    /// A public key from its 32 bytes (RFC 8032 encoding). Only the length is checked here; a
    /// key that is not a curve point verifies nothing.
    pub fn new(id: KeyId, bytes: &[u8], state: KeyState) -> Result<Self> {
        let bytes: [u8; SEED_LEN] = bytes.try_into().map_err(|_| {
            CryptoError::InvalidKey(format!(
                "an Ed25519 public key is {SEED_LEN} bytes, got {}",
                bytes.len()
            ))
        })?;
        Ok(SenderPublicKey {
            id,
            life: Lifetime::new(state),
            bytes,
        })
    }

    /// The 32-byte Ed25519 public key, as the trust list and the keys tool write it.
    pub fn as_bytes(&self) -> &[u8; SEED_LEN] {
        &self.bytes
    }

    /// Whether `signature` is this key's over `message`.
    pub(crate) fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.bytes)
            .verify(message, signature)
            .is_ok()
    }

    pub(crate) fn life(&self) -> &Lifetime {
        &self.life
    }
}

lifetime_methods!(SenderPublicKey);

impl fmt::Debug for SenderPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SenderPublicKey")
            .field("id", &self.id)
            .field("life", &self.life)
            .finish_non_exhaustive()
    }
}

/// What a producer seals with: the recipients' public keys (at most one primary, the one sealed
/// to) and its own signing keys (at most one primary, the one that signs). It holds no private
/// recipient key, by construction: a producer cannot open anything.
#[derive(Debug)]
pub struct ProducerKeyset {
    recipients: Vec<RecipientPublicKey>,
    signers: Vec<SenderSigningKey>,
}

impl ProducerKeyset {
    /// Checks and builds a producer keyset. Errors: no recipient key, no signing key, an id twice
    /// in one list, two primaries in one list. Without a primary in a list it seals nothing
    /// ([`NoPrimaryKey`](CryptoError::NoPrimaryKey),
    /// [`NoSigningKey`](CryptoError::NoSigningKey)).
    pub fn new(
        recipients: impl IntoIterator<Item = RecipientPublicKey>,
        signers: impl IntoIterator<Item = SenderSigningKey>,
    ) -> Result<Self> {
        Ok(ProducerKeyset {
            recipients: checked(recipients, "recipient public keys", true)?,
            signers: checked(signers, "sender signing keys", true)?,
        })
    }

    /// The recipient key envelopes are sealed to, if there is one.
    pub fn primary_recipient(&self) -> Option<&RecipientPublicKey> {
        primary(&self.recipients)
    }

    /// The key envelopes are signed with, if there is one.
    pub fn primary_signer(&self) -> Option<&SenderSigningKey> {
        primary(&self.signers)
    }

    /// The recipient public keys, in the order given.
    pub fn recipients(&self) -> impl Iterator<Item = &RecipientPublicKey> {
        self.recipients.iter()
    }

    /// The signing keys, in the order given.
    pub fn signers(&self) -> impl Iterator<Item = &SenderSigningKey> {
        self.signers.iter()
    }
}

/// What a consumer opens with: its recipient key pairs (chosen by the id in the header; at most
/// one primary, the one whose public half producers should seal to) and the trust list of
/// sender public keys (any number primary or active: several producers are trusted at once).
#[derive(Debug)]
pub struct ConsumerKeyset {
    key_pairs: Vec<RecipientKeyPair>,
    trusted: Vec<SenderPublicKey>,
}

impl ConsumerKeyset {
    /// Checks and builds a consumer keyset. Errors: no key pair, no trusted sender, an id twice
    /// in one list, two primary key pairs.
    pub fn new(
        key_pairs: impl IntoIterator<Item = RecipientKeyPair>,
        trusted: impl IntoIterator<Item = SenderPublicKey>,
    ) -> Result<Self> {
        Ok(ConsumerKeyset {
            key_pairs: checked(key_pairs, "recipient key pairs", true)?,
            trusted: checked(trusted, "trusted sender keys", false)?,
        })
    }

    /// The key pair with this id, in any state.
    pub fn key_pair(&self, id: &str) -> Option<&RecipientKeyPair> {
        self.find_key_pair(id.as_bytes())
    }

    /// The trusted sender key with this id, in any state.
    pub fn trusted_sender(&self, id: &str) -> Option<&SenderPublicKey> {
        self.find_sender(id.as_bytes())
    }

    /// The primary key pair, if there is one.
    pub fn primary_key_pair(&self) -> Option<&RecipientKeyPair> {
        primary(&self.key_pairs)
    }

    /// The key pairs, in the order given.
    pub fn key_pairs(&self) -> impl Iterator<Item = &RecipientKeyPair> {
        self.key_pairs.iter()
    }

    /// The trusted sender keys, in the order given.
    pub fn trusted_senders(&self) -> impl Iterator<Item = &SenderPublicKey> {
        self.trusted.iter()
    }

    pub(crate) fn find_key_pair(&self, id: &[u8]) -> Option<&RecipientKeyPair> {
        find(&self.key_pairs, id)
    }

    pub(crate) fn find_sender(&self, id: &[u8]) -> Option<&SenderPublicKey> {
        find(&self.trusted, id)
    }
}

/// One list of a keyset, checked: not empty, ids unique, at most one primary if `one_primary`.
fn checked<T: Named>(
    keys: impl IntoIterator<Item = T>,
    what: &str,
    one_primary: bool,
) -> Result<Vec<T>> {
    let keys: Vec<T> = keys.into_iter().collect();
    if keys.is_empty() {
        return Err(CryptoError::InvalidKey(format!(
            "the keyset needs at least one of its {what}"
        )));
    }
    check_keys(what, &keys, one_primary)?;
    Ok(keys)
}
