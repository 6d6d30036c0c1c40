//! Sealing and opening (docs/envelope.md, "Derivation" and "Opening, in order").

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use ring::aead::{Aad, LessSafeKey, NONCE_LEN, Nonce, Tag, UnboundKey};
use ring::hkdf;
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use crate::context::Context;
use crate::error::{CryptoError, Result};
use crate::format::{
    COMMITMENT_LEN, ENVELOPE_ID_LEN, MAX_HEADER_LEN, MAX_PLAINTEXT_LEN, Suite, TAG_LEN,
    check_plaintext_len, from_millis, parse, to_millis, write_header,
};
use crate::keys::{Key, KeyId, KeyMaterial, KeyState, Keyset};
use crate::random::{RandomSource, SystemRandomSource};

/// HKDF info label of the message key.
const MESSAGE_KEY_LABEL: &[u8] = b"queue-runtime envelope v1 message key";
/// HKDF info label of the key commitment.
const COMMITMENT_LABEL: &[u8] = b"queue-runtime envelope v1 key commitment";

/// Where the time comes from when sealing. Inject one for tests and known-answer vectors.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// Seals envelopes: the suite and the clock. The free function [`seal`] uses the defaults
/// (AES-256-GCM, the system clock). Envelope ids always come from the operating system's
/// random number generator (`ring::rand::SystemRandom`); only the `test-randomness` feature,
/// for known-answer vectors, lets a test inject them.
#[derive(Clone)]
pub struct Sealer {
    suite: Suite,
    clock: Arc<dyn Clock>,
    random: Arc<dyn RandomSource>,
}

impl Default for Sealer {
    fn default() -> Self {
        Sealer {
            suite: Suite::default(),
            clock: Arc::new(SystemClock),
            random: Arc::new(SystemRandomSource::default()),
        }
    }
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

impl Sealer {
    /// A sealer with the defaults.
    pub fn new() -> Self {
        Sealer::default()
    }

    /// Seals with this suite.
    #[must_use]
    pub fn with_suite(mut self, suite: Suite) -> Self {
        self.suite = suite;
        self
    }

    /// Takes seal times from this clock.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Takes envelope ids (the HKDF salts) from this source instead of the system's random
    /// number generator. Only with the `test-randomness` feature, to reproduce known-answer
    /// vectors: an id that repeats under one master key breaks the cipher ([`RandomSource`]).
    #[cfg(feature = "test-randomness")]
    #[must_use]
    pub fn with_random_source(mut self, random: Arc<dyn RandomSource>) -> Self {
        self.random = random;
        self
    }

    /// The suite this sealer uses.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// Seals `plaintext` under the keyset's primary key, bound to `context`.
    pub fn seal(
        &self,
        keyset: &Keyset,
        plaintext: &[u8],
        context: &Context<'_>,
    ) -> Result<Vec<u8>> {
        self.seal_inner(keyset, plaintext, context, None)
    }

    /// Seals a message that must not be processed before `not_before` (a scheduled message);
    /// the time is authenticated and returned by [`open`].
    pub fn seal_not_before(
        &self,
        keyset: &Keyset,
        plaintext: &[u8],
        context: &Context<'_>,
        not_before: SystemTime,
    ) -> Result<Vec<u8>> {
        self.seal_inner(keyset, plaintext, context, Some(not_before))
    }

    fn seal_inner(
        &self,
        keyset: &Keyset,
        plaintext: &[u8],
        context: &Context<'_>,
        not_before: Option<SystemTime>,
    ) -> Result<Vec<u8>> {
        check_plaintext_len(plaintext.len())?;
        context.check()?;
        let key = keyset.primary().ok_or(CryptoError::NoPrimaryKey)?;
        let now = self.clock.now();
        if key.life().expired_at(now) {
            return Err(CryptoError::KeyExpired(key.id().to_string()));
        }
        let sealed_at_ms = to_millis(now)?;
        let not_before_ms = not_before.map(to_millis).transpose()?;
        let mut envelope_id = [0_u8; ENVELOPE_ID_LEN];
        self.random.fill(&mut envelope_id)?;

        let keys = MessageKeys::derive(key.material(), &envelope_id, self.suite, key.id())?;

        let mut out = Vec::with_capacity(MAX_HEADER_LEN + plaintext.len() + TAG_LEN);
        write_header(
            &mut out,
            self.suite,
            key.id().as_str(),
            &envelope_id,
            sealed_at_ms,
            not_before_ms,
            &keys.commitment,
        );
        let header_len = out.len();
        let aad = associated_data(&out, context)?;
        out.extend_from_slice(plaintext);
        let tag = keys
            .aead
            .seal_in_place_separate_tag(zero_nonce(), Aad::from(&aad), &mut out[header_len..])
            // ring refuses only inputs beyond the suite's limit, far above MAX_PLAINTEXT_LEN.
            .map_err(|_| CryptoError::TooLarge {
                what: "plaintext",
                size: plaintext.len(),
                max: MAX_PLAINTEXT_LEN,
            })?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }
}

/// Seals `plaintext` under the keyset's primary key, bound to `context`, with AES-256-GCM, the
/// system clock and a random envelope id.
pub fn seal(keyset: &Keyset, plaintext: &[u8], context: &Context<'_>) -> Result<Vec<u8>> {
    Sealer::default().seal(keyset, plaintext, context)
}

/// A successfully opened envelope: the plaintext and the header fields, all authenticated.
pub struct Opened {
    plaintext: Vec<u8>,
    suite: Suite,
    key_id: KeyId,
    envelope_id: [u8; ENVELOPE_ID_LEN],
    sealed_at: SystemTime,
    not_before: Option<SystemTime>,
}

/// The accessors every opened envelope has (fields `plaintext`, `envelope_id`, `sealed_at`,
/// `not_before`): what the client's freshness check and replay guard need, in both versions.
macro_rules! opened_methods {
    ($opened:ty) => {
        impl $opened {
            /// The opened body: authenticated, and zeroed when this value is dropped.
            pub fn plaintext(&self) -> &[u8] {
                &self.plaintext
            }

            /// The plaintext, taken out.
            pub fn into_plaintext(self) -> Vec<u8> {
                self.plaintext
            }

            /// The envelope's own random 256-bit id: unique per seal, so it identifies this
            /// message for replay protection even where the broker assigns its own ids.
            pub fn envelope_id(&self) -> &[u8; $crate::format::ENVELOPE_ID_LEN] {
                &self.envelope_id
            }

            /// When it was sealed (millisecond precision, truncated), by the sender's clock.
            pub fn sealed_at(&self) -> std::time::SystemTime {
                self.sealed_at
            }

            /// The time before which it must not be processed, if the sender set one.
            pub fn not_before(&self) -> Option<std::time::SystemTime> {
                self.not_before
            }
        }
    };
}
pub(crate) use opened_methods;

opened_methods!(Opened);

impl Opened {
    /// The suite it was sealed with.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// The id of the key that sealed it.
    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }
}

impl fmt::Debug for Opened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Bodies never go to logs; their length may.
        f.debug_struct("Opened")
            .field("plaintext_len", &self.plaintext.len())
            .field("suite", &self.suite)
            .field("key_id", &self.key_id)
            .field("envelope_id", &Hex(&self.envelope_id))
            .field("sealed_at", &self.sealed_at)
            .field("not_before", &self.not_before)
            .finish()
    }
}

/// Opens an envelope sealed for `context`. The checks, in order (docs/envelope.md): the
/// context ([`InvalidContext`](CryptoError::InvalidContext), [`TooLarge`](CryptoError::TooLarge));
/// size, magic, version, suite, flags, key id, ciphertext length ([`Malformed`](CryptoError::Malformed),
/// [`UnsupportedVersion`](CryptoError::UnsupportedVersion),
/// [`UnsupportedSuite`](CryptoError::UnsupportedSuite)); the key, chosen by its id
/// ([`UnknownKeyId`](CryptoError::UnknownKeyId), [`RetiredKey`](CryptoError::RetiredKey));
/// the key commitment, in constant time, then the AEAD tag over the header and the context
/// (both [`DecryptFailed`](CryptoError::DecryptFailed)); finally the key's `not_after` against
/// the authenticated seal time ([`KeyExpired`](CryptoError::KeyExpired)). No plaintext leaves a
/// failed open: the buffer is zeroed.
pub fn open(keyset: &Keyset, envelope: &[u8], context: &Context<'_>) -> Result<Opened> {
    context.check()?;
    let header = parse(envelope)?;
    let key = keyset.find(header.key_id).ok_or_else(|| {
        CryptoError::UnknownKeyId(String::from_utf8_lossy(header.key_id).into_owned())
    })?;
    if key.state() == KeyState::Retired {
        return Err(CryptoError::RetiredKey(key.id().to_string()));
    }
    let aad = associated_data(&envelope[..header.len], context)?;
    let keys = MessageKeys::derive(key.material(), header.envelope_id, header.suite, key.id())?;
    if !bool::from(keys.commitment.ct_eq(header.commitment)) {
        return Err(CryptoError::DecryptFailed);
    }
    let (ciphertext, tag) = envelope[header.len..].split_at(envelope.len() - header.len - TAG_LEN);
    let tag = Tag::try_from(tag).map_err(|_| CryptoError::Malformed("truncated envelope"))?;
    let mut plaintext = ciphertext.to_vec();
    if keys
        .aead
        .open_in_place_separate_tag(zero_nonce(), Aad::from(&aad), tag, &mut plaintext, 0..)
        .is_err()
    {
        // ring leaves the buffer in an unspecified state on failure: nothing of it may escape.
        plaintext.zeroize();
        return Err(CryptoError::DecryptFailed);
    }
    // Authentic; still refused when a time is out of range or the key is past not_after.
    authenticated_fields(key, &header, plaintext)
}

/// Builds [`Opened`] from an authenticated header; the plaintext is zeroed when refused.
fn authenticated_fields(
    key: &Key,
    header: &crate::format::RawHeader<'_>,
    mut plaintext: Vec<u8>,
) -> Result<Opened> {
    let times = from_millis(header.sealed_at_ms).and_then(|sealed_at| {
        let not_before = header.not_before_ms.map(from_millis).transpose()?;
        if key.life().expired_at(sealed_at) {
            return Err(CryptoError::KeyExpired(key.id().to_string()));
        }
        Ok((sealed_at, not_before))
    });
    match times {
        Ok((sealed_at, not_before)) => Ok(Opened {
            plaintext,
            suite: header.suite,
            key_id: key.id().clone(),
            envelope_id: *header.envelope_id,
            sealed_at,
            not_before,
        }),
        Err(error) => {
            plaintext.zeroize();
            Err(error)
        }
    }
}

/// The header fields of an envelope, read without a key and **without any authentication**:
/// anyone can write any value here. For operators (which key does this need? how old does it
/// claim to be?), never for decisions; [`open`] returns the authenticated values.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UnverifiedHeader {
    /// The suite id's suite.
    pub suite: Suite,
    /// The key id (printable ASCII, checked).
    pub key_id: String,
    /// The envelope's random 32-byte id: the replay guard's key and the key derivation's salt.
    pub envelope_id: [u8; ENVELOPE_ID_LEN],
    /// The claimed seal time.
    pub sealed_at: SystemTime,
    /// The claimed not-before time.
    pub not_before: Option<SystemTime>,
    /// The header's length in bytes.
    pub header_len: usize,
    /// The ciphertext's length in bytes (the plaintext's length, if it opens).
    pub ciphertext_len: usize,
}

/// Reads an envelope's header without decrypting or authenticating anything. The result is
/// **unauthenticated**: see [`UnverifiedHeader`].
pub fn peek_header(envelope: &[u8]) -> Result<UnverifiedHeader> {
    let header = parse(envelope)?;
    Ok(UnverifiedHeader {
        suite: header.suite,
        key_id: String::from_utf8_lossy(header.key_id).into_owned(),
        envelope_id: *header.envelope_id,
        sealed_at: from_millis(header.sealed_at_ms)?,
        not_before: header.not_before_ms.map(from_millis).transpose()?,
        header_len: header.len,
        ciphertext_len: envelope.len() - header.len - TAG_LEN,
    })
}

/// Whether `bytes` start with the envelope magic: the transport-level test for "this was meant
/// to be sealed". A body for which this is true must be opened, never used as plaintext.
pub fn looks_sealed(bytes: &[u8]) -> bool {
    bytes.starts_with(&crate::format::MAGIC)
}

/// The two values derived per envelope from the master key and the envelope id.
struct MessageKeys {
    aead: LessSafeKey,
    commitment: [u8; COMMITMENT_LEN],
}

impl MessageKeys {
    /// `prk = HKDF-Extract(salt = envelope id, ikm = master key)`, then one HKDF-Expand per
    /// purpose with `info = label || version || suite id || key id length || key id`.
    fn derive(
        material: &KeyMaterial,
        envelope_id: &[u8; ENVELOPE_ID_LEN],
        suite: Suite,
        key_id: &KeyId,
    ) -> Result<Self> {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, envelope_id).extract(material.expose());
        let key_id = key_id.as_str().as_bytes();
        // Key ids are at most 64 bytes, so the length fits a byte.
        let key_id_len = [u8::try_from(key_id.len()).unwrap_or(u8::MAX)];
        let bound = [crate::format::VERSION, suite.id()];
        let info = |label: &'static [u8]| [label, &bound[..], &key_id_len[..], key_id];

        let algorithm = suite.algorithm();
        let message_key_info = info(MESSAGE_KEY_LABEL);
        let okm = prk
            .expand(&message_key_info, algorithm)
            .map_err(|_| CryptoError::InvalidKey("HKDF refused the key length".into()))?;
        let aead = LessSafeKey::new(UnboundKey::from(okm));

        let mut commitment = [0_u8; COMMITMENT_LEN];
        let commitment_info = info(COMMITMENT_LABEL);
        prk.expand(&commitment_info, CommitmentLen)
            .and_then(|okm| okm.fill(&mut commitment))
            .map_err(|_| CryptoError::InvalidKey("HKDF refused the commitment length".into()))?;
        Ok(MessageKeys { aead, commitment })
    }
}

struct CommitmentLen;

impl hkdf::KeyType for CommitmentLen {
    fn len(&self) -> usize {
        COMMITMENT_LEN
    }
}

/// The nonce is all zeros: every message key is derived from a fresh 256-bit salt and seals
/// exactly one message, so a (key, nonce) pair is never used twice.
fn zero_nonce() -> Nonce {
    Nonce::assume_unique_for_key([0; NONCE_LEN])
}

/// `AAD = header || encode(context)`: the whole header, commitment included, then the context.
pub(crate) fn associated_data(header: &[u8], context: &Context<'_>) -> Result<Vec<u8>> {
    let mut aad = Vec::with_capacity(header.len() + 256);
    aad.extend_from_slice(header);
    context.encode_into(&mut aad)?;
    Ok(aad)
}

pub(crate) struct Hex<'a>(pub(crate) &'a [u8]);

impl fmt::Debug for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}
