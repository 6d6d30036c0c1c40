//! Sealing and opening version 2 envelopes (docs/envelope.md, "Version 2").

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use ring::digest::{SHA256, digest};
use zeroize::Zeroizing;

use super::format::{HeaderFields, RawHeader, SIGNATURE_LABEL, SIGNATURE_LEN, parse};
use super::hpke;
use super::keys::{ConsumerKeyset, ProducerKeyset};
use super::suite::HpkeSuite;
use crate::context::Context;
use crate::envelope::{Clock, Hex, SystemClock, associated_data, opened_methods};
use crate::error::{CryptoError, Result};
use crate::format::{ENVELOPE_ID_LEN, Suite, TAG_LEN, check_plaintext_len, from_millis, to_millis};
use crate::keys::{KeyId, KeyState};
use crate::random::{RandomSource, SystemRandomSource};

/// The most random bytes one encapsulation takes (X-Wing's `eseed`).
const MAX_KEM_RANDOMNESS: usize = 64;

/// Seals version 2 envelopes: the AEAD, the clock. The KEM is the recipient key's. The free
/// function [`seal`] uses the defaults (AES-256-GCM, the system clock). Envelope ids and
/// ephemeral keys always come from the operating system's random number generator (through
/// `ring`); only the `test-randomness` feature, for known-answer vectors, lets a test inject
/// them.
#[derive(Clone)]
pub struct Sealer {
    aead: Suite,
    clock: Arc<dyn Clock>,
    random: Arc<dyn RandomSource>,
}

impl Default for Sealer {
    fn default() -> Self {
        Sealer {
            aead: Suite::default(),
            clock: Arc::new(SystemClock),
            random: Arc::new(SystemRandomSource::default()),
        }
    }
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("aead", &self.aead)
            .finish_non_exhaustive()
    }
}

impl Sealer {
    /// A sealer with the defaults.
    pub fn new() -> Self {
        Sealer::default()
    }

    /// Seals with this AEAD (AES-256-GCM by default, or ChaCha20-Poly1305).
    #[must_use]
    pub fn with_aead(mut self, aead: Suite) -> Self {
        self.aead = aead;
        self
    }

    /// Takes seal times from this clock.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Takes the envelope id and then the ephemeral KEM randomness from this source. Only with
    /// the `test-randomness` feature, to reproduce known-answer vectors ([`RandomSource`]).
    #[cfg(feature = "test-randomness")]
    #[must_use]
    pub fn with_random_source(mut self, random: Arc<dyn RandomSource>) -> Self {
        self.random = random;
        self
    }

    /// The AEAD this sealer uses.
    pub fn aead(&self) -> Suite {
        self.aead
    }

    /// Seals `plaintext` to the keyset's primary recipient key, signed with its primary signing
    /// key, bound to `context`.
    pub fn seal(
        &self,
        keys: &ProducerKeyset,
        plaintext: &[u8],
        context: &Context<'_>,
    ) -> Result<Vec<u8>> {
        self.seal_inner(keys, plaintext, context, None)
    }

    /// Seals a message that must not be processed before `not_before` (a scheduled message);
    /// the time is authenticated and returned by [`open`].
    pub fn seal_not_before(
        &self,
        keys: &ProducerKeyset,
        plaintext: &[u8],
        context: &Context<'_>,
        not_before: SystemTime,
    ) -> Result<Vec<u8>> {
        self.seal_inner(keys, plaintext, context, Some(not_before))
    }

    fn seal_inner(
        &self,
        keys: &ProducerKeyset,
        plaintext: &[u8],
        context: &Context<'_>,
        not_before: Option<SystemTime>,
    ) -> Result<Vec<u8>> {
        check_plaintext_len(plaintext.len())?;
        context.check()?;
        let recipient = keys.primary_recipient().ok_or(CryptoError::NoPrimaryKey)?;
        let signer = keys.primary_signer().ok_or(CryptoError::NoSigningKey)?;
        let now = self.clock.now();
        for (id, life) in [
            (recipient.id(), recipient.life()),
            (signer.id(), signer.life()),
        ] {
            if life.expired_at(now) {
                return Err(CryptoError::KeyExpired(id.to_string()));
            }
        }
        let sealed_at_ms = to_millis(now)?;
        let not_before_ms = not_before.map(to_millis).transpose()?;
        let mut envelope_id = [0_u8; ENVELOPE_ID_LEN];
        self.random.fill(&mut envelope_id)?;
        let mut randomness = Zeroizing::new([0_u8; MAX_KEM_RANDOMNESS]);
        let randomness = &mut randomness[..recipient.kem().randomness_len()];
        self.random.fill(randomness)?;
        let fields = HeaderFields {
            suite: HpkeSuite::new(recipient.kem(), self.aead),
            recipient_key_id: recipient.id().as_str(),
            sender_key_id: signer.id().as_str(),
            envelope_id: &envelope_id,
            sealed_at_ms,
            not_before_ms,
        };

        let (mut envelope, aad) = hpke::seal(
            self.aead,
            recipient.parsed(),
            randomness,
            plaintext,
            |enc| {
                let header = fields.write(enc, plaintext.len());
                let aad = associated_data(&header, context)?;
                Ok((header, aad))
            },
        )?;
        let header_len = envelope.len() - plaintext.len() - TAG_LEN;
        let signature = signer.sign(&signed_message(&aad, &envelope[header_len..]));
        envelope.extend_from_slice(signature.as_ref());
        Ok(envelope)
    }
}

/// Seals `plaintext` to the keyset's primary recipient key, signed with its primary signing key,
/// bound to `context`, with AES-256-GCM, the system clock and fresh randomness.
pub fn seal(keys: &ProducerKeyset, plaintext: &[u8], context: &Context<'_>) -> Result<Vec<u8>> {
    Sealer::default().seal(keys, plaintext, context)
}

/// What the sender signs: `label || AAD || SHA-256(HPKE ciphertext with its tag)`, where
/// `AAD = header || context`. The body is hashed rather than copied, so a large message is read
/// once for the signature and never duplicated.
fn signed_message(aad: &[u8], body: &[u8]) -> Vec<u8> {
    let body_digest = digest(&SHA256, body);
    [SIGNATURE_LABEL, aad, body_digest.as_ref()].concat()
}

/// A successfully opened version 2 envelope: the plaintext and the header fields, all
/// authenticated (signed by a trusted sender and opened with the recipient key).
pub struct Opened {
    plaintext: Vec<u8>,
    suite: HpkeSuite,
    recipient_key_id: KeyId,
    sender_key_id: KeyId,
    envelope_id: [u8; ENVELOPE_ID_LEN],
    sealed_at: SystemTime,
    not_before: Option<SystemTime>,
}

opened_methods!(Opened);

impl Opened {
    /// The suite it was sealed with.
    pub fn suite(&self) -> HpkeSuite {
        self.suite
    }

    /// The id of the recipient key pair that opened it.
    pub fn recipient_key_id(&self) -> &KeyId {
        &self.recipient_key_id
    }

    /// The id of the trusted sender key that signed it: who sealed the message.
    pub fn sender_key_id(&self) -> &KeyId {
        &self.sender_key_id
    }
}

impl fmt::Debug for Opened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Bodies never go to logs; their length may.
        f.debug_struct("Opened")
            .field("plaintext_len", &self.plaintext.len())
            .field("suite", &self.suite)
            .field("recipient_key_id", &self.recipient_key_id)
            .field("sender_key_id", &self.sender_key_id)
            .field("envelope_id", &Hex(&self.envelope_id))
            .field("sealed_at", &self.sealed_at)
            .field("not_before", &self.not_before)
            .finish()
    }
}

/// Opens a version 2 envelope sealed for `context`. The checks, in order (docs/envelope.md,
/// "Version 2: opening, in order"):
///
/// 1. the context ([`InvalidContext`](CryptoError::InvalidContext),
///    [`TooLarge`](CryptoError::TooLarge));
/// 2. the structure: size, magic, prefix, version, suite, flags, key ids, lengths
///    ([`TooLarge`](CryptoError::TooLarge), [`Malformed`](CryptoError::Malformed),
///    [`UnsupportedVersion`](CryptoError::UnsupportedVersion),
///    [`UnsupportedSuite`](CryptoError::UnsupportedSuite));
/// 3. the recipient key pair named in the header ([`UnknownKeyId`](CryptoError::UnknownKeyId),
///    [`RetiredKey`](CryptoError::RetiredKey));
/// 4. the sender key named in the header, in the trust list
///    ([`UntrustedSender`](CryptoError::UntrustedSender),
///    [`RetiredSender`](CryptoError::RetiredSender));
/// 5. the sender's signature over the header, the context and the ciphertext
///    ([`DecryptFailed`](CryptoError::DecryptFailed));
/// 6. both keys' `not_after` against the now authenticated seal time
///    ([`KeyExpired`](CryptoError::KeyExpired));
/// 7. HPKE: decapsulation and the AEAD over `header || context`
///    ([`DecryptFailed`](CryptoError::DecryptFailed); the buffer is zeroed).
///
/// Every check happens before anything is decrypted.
pub fn open(keys: &ConsumerKeyset, envelope: &[u8], context: &Context<'_>) -> Result<Opened> {
    context.check()?;
    let header = parse(envelope)?;
    let pair = keys
        .find_key_pair(header.recipient_key_id)
        .ok_or_else(|| CryptoError::UnknownKeyId(lossy(header.recipient_key_id)))?;
    if pair.state() == KeyState::Retired {
        return Err(CryptoError::RetiredKey(pair.id().to_string()));
    }
    let sender = keys
        .find_sender(header.sender_key_id)
        .ok_or_else(|| CryptoError::UntrustedSender(lossy(header.sender_key_id)))?;
    if sender.state() == KeyState::Retired {
        return Err(CryptoError::RetiredSender(sender.id().to_string()));
    }

    let (body, signature) =
        envelope[header.len..].split_at(envelope.len() - header.len - SIGNATURE_LEN);
    let aad = associated_data(&envelope[..header.len], context)?;
    if !sender.verifies(&signed_message(&aad, body), signature) {
        return Err(CryptoError::DecryptFailed);
    }

    // The header is authenticated from here on: its times may steer decisions.
    let (sealed_at, not_before) = times(&header)?;
    for (id, life) in [(sender.id(), sender.life()), (pair.id(), pair.life())] {
        if life.expired_at(sealed_at) {
            return Err(CryptoError::KeyExpired(id.to_string()));
        }
    }

    let (ciphertext, tag) = body.split_at(body.len() - TAG_LEN);
    let plaintext = hpke::open(
        header.suite.aead(),
        pair.private(),
        header.enc,
        &aad,
        ciphertext,
        tag,
    )?;
    Ok(Opened {
        plaintext,
        suite: header.suite,
        recipient_key_id: pair.id().clone(),
        sender_key_id: sender.id().clone(),
        envelope_id: *header.envelope_id,
        sealed_at,
        not_before,
    })
}

fn times(header: &RawHeader<'_>) -> Result<(SystemTime, Option<SystemTime>)> {
    Ok((
        from_millis(header.sealed_at_ms)?,
        header.not_before_ms.map(from_millis).transpose()?,
    ))
}

/// Key ids in a parsed header were checked to be printable ASCII.
fn lossy(id: &[u8]) -> String {
    String::from_utf8_lossy(id).into_owned()
}

/// The header fields of a version 2 envelope, read without any key and **without any
/// authentication**: for operators (which keys does this need? who claims to have sent it?),
/// never for decisions; [`open`] returns the authenticated values.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UnverifiedHeader {
    /// The HPKE suite (KEM and AEAD) the header names.
    pub suite: HpkeSuite,
    /// The recipient key id: which of the consumer's key pairs the message is sealed to.
    pub recipient_key_id: String,
    /// The sender key id (claimed: only the signature proves it).
    pub sender_key_id: String,
    /// The envelope's random 32-byte id: the replay guard's key.
    pub envelope_id: [u8; ENVELOPE_ID_LEN],
    /// The claimed seal time.
    pub sealed_at: SystemTime,
    /// The claimed not-before time.
    pub not_before: Option<SystemTime>,
    /// The header's length in bytes.
    pub header_len: usize,
    /// The ciphertext's length without tag and signature (the plaintext's length, if it opens).
    pub ciphertext_len: usize,
}

/// Reads a version 2 envelope's header without verifying or decrypting anything. The result is
/// **unauthenticated**: see [`UnverifiedHeader`].
pub fn peek_header(envelope: &[u8]) -> Result<UnverifiedHeader> {
    let header = parse(envelope)?;
    let (sealed_at, not_before) = times(&header)?;
    Ok(UnverifiedHeader {
        suite: header.suite,
        recipient_key_id: lossy(header.recipient_key_id),
        sender_key_id: lossy(header.sender_key_id),
        envelope_id: *header.envelope_id,
        sealed_at,
        not_before,
        header_len: header.len,
        ciphertext_len: header.ciphertext_len(envelope.len()),
    })
}
