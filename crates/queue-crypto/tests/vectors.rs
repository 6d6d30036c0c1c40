//! The known-answer vectors of docs/envelope-vectors.json, both versions: regenerated from their
//! inputs and compared byte for byte, then checked once more with raw primitives (`ring`, and
//! the `hpke` crate for version 2's HPKE) following docs/envelope.md step by step, so the
//! document and the code cannot drift apart. Negative vectors are regenerated the same way and
//! each must be refused with the error it names.
//!
//! To rewrite the file after a deliberate change (new vectors; never a changed byte of an
//! existing one):
//! `QUEUE_CRYPTO_WRITE_VECTORS=1 cargo test -p queue-crypto --test vectors -- --test-threads=1`.

// Test helpers outside #[test] functions may unwrap too: a failure is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use hpke::{Deserializable, Kem as _, OpModeR, Serializable};
use queue_crypto::public::{
    self, ConsumerKeyset, HpkeSuite, Kem, ProducerKeyset, RecipientKeyPair, SIGNATURE_LEN,
    SenderPublicKey, SenderSigningKey,
};
use queue_crypto::{
    Context, CryptoError, Key, KeyId, KeyMaterial, KeyState, Keyset, Sealer, Suite, TAG_LEN, open,
    peek_header,
};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf;
use serde::{Deserialize, Serialize};
use support::{FixedClock, ScriptedRandom, encode_context, error_name, millis, sign_v2};

const DESCRIPTION: &str = "Known-answer vectors of the queue-runtime message envelope, \
    versions 1 and 2 (docs/envelope.md). All byte strings are hex; times are milliseconds since \
    the Unix epoch, unsigned 64-bit. In a context, null means the field is absent (not bound; \
    encoded 00), never the empty string (encoded 01 00000000); a not_before_ms of null means no \
    not-before time (flag bit 0 clear). context_encoding, message_key, commitment, enc and \
    ciphertext_digest are intermediate values for implementers; envelope is the sealed output. \
    Each negative vector must be refused with the error it names (docs/envelope.md, \
    \"Errors\"): an implementation with other error types must at least refuse it, and tell \
    DecryptFailed from the others.";

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct VectorFile {
    description: String,
    versions: Vec<u8>,
    vectors: Vec<Vector>,
    negative_vectors: Vec<NegativeVector>,
    public_key_vectors: Vec<PublicVector>,
    public_key_negative_vectors: Vec<PublicNegativeVector>,
}

/// Version 1.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Vector {
    name: String,
    suite: u8,
    key_id: String,
    /// The 32-byte master key, hex.
    key: String,
    /// The 32-byte envelope id (HKDF salt), hex.
    envelope_id: String,
    sealed_at_ms: u64,
    not_before_ms: Option<u64>,
    context: VectorContext,
    /// The canonical context encoding, hex (derived from `context`; given to help implementers).
    context_encoding: String,
    plaintext: String,
    /// The AEAD message key, hex (intermediate value, for implementers).
    message_key: String,
    /// The key commitment, hex (also inside the envelope).
    commitment: String,
    envelope: String,
}

/// Version 1, refused: opened with the one key and the context given, it fails with `error`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct NegativeVector {
    name: String,
    key_id: String,
    key: String,
    context: VectorContext,
    envelope: String,
    error: String,
}

/// Version 2.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct PublicVector {
    name: String,
    suite: u8,
    /// The HPKE identifiers of the suite (RFC 9180 section 7).
    kem_id: u16,
    kdf_id: u16,
    aead_id: u16,
    recipient_key_id: String,
    /// The recipient's private key: an X25519 scalar or an X-Wing seed, 32 bytes.
    recipient_private_key: String,
    recipient_public_key: String,
    sender_key_id: String,
    /// The sender's Ed25519 seed (RFC 8032 private key), 32 bytes.
    sender_seed: String,
    sender_public_key: String,
    envelope_id: String,
    /// The encapsulation's randomness: X25519's ikmE (the ephemeral key pair is
    /// DeriveKeyPair(ikmE)), or X-Wing's 64-byte eseed.
    ephemeral_randomness: String,
    sealed_at_ms: u64,
    not_before_ms: Option<u64>,
    context: VectorContext,
    context_encoding: String,
    plaintext: String,
    /// HPKE's encapsulated key (also in the header).
    enc: String,
    /// SHA-256 of the HPKE ciphertext with its tag (part of what is signed).
    ciphertext_digest: String,
    signature: String,
    envelope: String,
}

/// Version 2, refused: opened with the one recipient key pair and the trust list given.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct PublicNegativeVector {
    name: String,
    recipient_key_id: String,
    /// `x25519` or `x-wing`.
    kem: String,
    recipient_private_key: String,
    trusted_senders: Vec<TrustedSender>,
    context: VectorContext,
    envelope: String,
    error: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct TrustedSender {
    key_id: String,
    public_key: String,
    /// `primary`, `active` or `retired`.
    state: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct VectorContext {
    channel: String,
    session_id: Option<String>,
    correlation_id: Option<String>,
    content_type: Option<String>,
    message_id: Option<String>,
    properties: BTreeMap<String, String>,
}

impl VectorContext {
    fn to_context(&self) -> Context<'_> {
        let mut context = Context::new(&self.channel).with_properties(self.properties.clone());
        if let Some(value) = &self.session_id {
            context = context.with_session_id(value);
        }
        if let Some(value) = &self.correlation_id {
            context = context.with_correlation_id(value);
        }
        if let Some(value) = &self.content_type {
            context = context.with_content_type(value);
        }
        if let Some(value) = &self.message_id {
            context = context.with_message_id(value);
        }
        context
    }

    /// The encoding as docs/envelope.md specifies it, written independently of the crate.
    fn encode(&self) -> Vec<u8> {
        encode_context(&self.to_context())
    }

    fn minimal() -> Self {
        VectorContext {
            channel: "orders".into(),
            session_id: None,
            correlation_id: None,
            content_type: None,
            message_id: None,
            properties: BTreeMap::new(),
        }
    }

    fn full() -> Self {
        VectorContext {
            channel: "pr-events".into(),
            session_id: Some("octo-org/widgets#42".into()),
            correlation_id: Some("delivery-72d3162e".into()),
            content_type: Some("application/json".into()),
            message_id: Some("3f1e8d8a-8c55-4b1e-9f0e-0d4c3a2b1c00".into()),
            properties: BTreeMap::from([
                ("action".into(), "opened".into()),
                ("event".into(), "pull_request".into()),
                ("empty".into(), String::new()),
            ]),
        }
    }

    /// Non-ASCII everywhere, and property keys whose UTF-8 byte order (z, é, U+FF61, U+1F600)
    /// differs from their UTF-16 code unit order (z, é, U+1F600, U+FF61).
    fn non_ascii() -> Self {
        VectorContext {
            channel: "commandes-été".into(),
            session_id: Some("客户/42".into()),
            correlation_id: None,
            content_type: Some("text/plain; charset=utf-8".into()),
            message_id: None,
            properties: BTreeMap::from([
                ("z".into(), "ascii".into()),
                ("é".into(), "two bytes".into()),
                ("\u{FF61}".into(), "three bytes, BMP".into()),
                (
                    "\u{1F600}".into(),
                    "four bytes, surrogate pair in UTF-16".into(),
                ),
            ]),
        }
    }

    /// An absent field next to an empty one, and an empty property key.
    fn absent_and_empty() -> Self {
        VectorContext {
            channel: "q".into(),
            session_id: None,
            correlation_id: Some(String::new()),
            content_type: None,
            message_id: Some(String::new()),
            properties: BTreeMap::from([
                (String::new(), "the empty key".into()),
                ("k".into(), String::new()),
            ]),
        }
    }
}

fn path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/envelope-vectors.json")
}

fn bytes(hex_text: &str) -> Vec<u8> {
    hex::decode(hex_text).unwrap()
}

fn array32(hex_text: &str) -> [u8; 32] {
    bytes(hex_text).try_into().unwrap()
}

fn pattern(start: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| start.wrapping_add(i as u8)).collect()
}

fn long_plaintext() -> Vec<u8> {
    (0..1000_u32).map(|i| (i * 31 % 256) as u8).collect()
}

// ---------------------------------------------------------------------------------------------
// Version 1

/// The inputs of every version 1 vector; outputs are computed. The first six are the original
/// vectors and never change.
fn inputs() -> Vec<Vector> {
    let vector = |name: &str,
                  suite: Suite,
                  key_byte: u8,
                  salt_byte: u8,
                  not_before: Option<u64>,
                  context: &VectorContext,
                  plaintext: &[u8]| {
        let salt: Vec<u8> = (0..32).map(|i| salt_byte ^ i).collect();
        Vector {
            name: name.into(),
            suite: suite.id(),
            key_id: if key_byte == 0x40 {
                "k".repeat(64)
            } else {
                format!("vector-key-{key_byte:02x}")
            },
            key: hex::encode(pattern(key_byte, 32)),
            envelope_id: hex::encode(salt),
            sealed_at_ms: 1_795_000_000_000 + u64::from(salt_byte),
            not_before_ms: not_before,
            context: context.clone(),
            context_encoding: String::new(),
            plaintext: hex::encode(plaintext),
            message_key: String::new(),
            commitment: String::new(),
            envelope: String::new(),
        }
    };
    let json = b"{\"number\":42,\"action\":\"opened\"}";
    let minimal = VectorContext::minimal();
    let full = VectorContext::full();
    let mut epoch = vector(
        "AES-256-GCM, sealed at the epoch (0 ms), not before 2^64-1 ms",
        Suite::Aes256Gcm,
        0x60,
        0xC3,
        Some(u64::MAX),
        &minimal,
        b"times are unsigned 64-bit milliseconds",
    );
    epoch.sealed_at_ms = 0;
    vec![
        vector(
            "AES-256-GCM, empty plaintext, channel only",
            Suite::Aes256Gcm,
            0x00,
            0xA0,
            None,
            &minimal,
            b"",
        ),
        vector(
            "AES-256-GCM, short plaintext, every context field",
            Suite::Aes256Gcm,
            0x10,
            0xA1,
            None,
            &full,
            json,
        ),
        vector(
            "AES-256-GCM, 1000 bytes, not-before, 64-byte key id",
            Suite::Aes256Gcm,
            0x40,
            0xA2,
            Some(1_795_000_600_000),
            &full,
            &long_plaintext(),
        ),
        vector(
            "ChaCha20-Poly1305, empty plaintext, channel only",
            Suite::ChaCha20Poly1305,
            0x20,
            0xB0,
            None,
            &minimal,
            b"",
        ),
        vector(
            "ChaCha20-Poly1305, short plaintext, every context field",
            Suite::ChaCha20Poly1305,
            0x30,
            0xB1,
            None,
            &full,
            json,
        ),
        vector(
            "ChaCha20-Poly1305, 1000 bytes, not-before",
            Suite::ChaCha20Poly1305,
            0x30,
            0xB2,
            Some(1_795_000_600_000),
            &minimal,
            &long_plaintext(),
        ),
        vector(
            "AES-256-GCM, non-ASCII context, property keys whose UTF-8 and UTF-16 orders differ",
            Suite::Aes256Gcm,
            0x50,
            0xC0,
            None,
            &VectorContext::non_ascii(),
            "héllo, 世界".as_bytes(),
        ),
        vector(
            "ChaCha20-Poly1305, absent fields next to empty ones, an empty property key",
            Suite::ChaCha20Poly1305,
            0x50,
            0xC1,
            None,
            &VectorContext::absent_and_empty(),
            b"absent is not empty",
        ),
        vector(
            "AES-256-GCM, not-before earlier than the seal time",
            Suite::Aes256Gcm,
            0x50,
            0xC2,
            Some(1_700_000_000_000),
            &minimal,
            b"already due",
        ),
        epoch,
    ]
}

fn v1_keyset(key_id: &str, key: &str, state: KeyState) -> Keyset {
    Keyset::new([Key::new(
        KeyId::new(key_id).unwrap(),
        KeyMaterial::from_slice(&bytes(key)).unwrap(),
        state,
    )])
    .unwrap()
}

/// Fills in the outputs of a vector with the crate.
fn compute(mut vector: Vector) -> Vector {
    let suite = Suite::from_id(vector.suite).unwrap();
    let keyset = v1_keyset(&vector.key_id, &vector.key, KeyState::Primary);
    let sealer = Sealer::new()
        .with_suite(suite)
        .with_clock(Arc::new(FixedClock(millis(vector.sealed_at_ms))))
        .with_random_source(Arc::new(ScriptedRandom::one(array32(&vector.envelope_id))));
    let context = vector.context.to_context();
    let plaintext = bytes(&vector.plaintext);
    let envelope = match vector.not_before_ms {
        None => sealer.seal(&keyset, &plaintext, &context),
        Some(ms) => sealer.seal_not_before(&keyset, &plaintext, &context, millis(ms)),
    }
    .unwrap();
    let header_len = peek_header(&envelope).unwrap().header_len;
    let (message_key, _) = derive(&vector);
    vector.context_encoding = hex::encode(vector.context.encode());
    vector.message_key = hex::encode(message_key);
    vector.commitment = hex::encode(&envelope[header_len - 32..header_len]);
    vector.envelope = hex::encode(&envelope);
    vector
}

/// docs/envelope.md, "Derivation", with raw ring.
fn derive(vector: &Vector) -> ([u8; 32], [u8; 32]) {
    struct Len32;
    impl hkdf::KeyType for Len32 {
        fn len(&self) -> usize {
            32
        }
    }
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &bytes(&vector.envelope_id))
        .extract(&bytes(&vector.key));
    let suffix = [
        &[1, vector.suite, vector.key_id.len() as u8][..],
        vector.key_id.as_bytes(),
    ]
    .concat();
    let expand = |label: &[u8]| {
        let mut out = [0; 32];
        prk.expand(&[label, &suffix], Len32)
            .unwrap()
            .fill(&mut out)
            .unwrap();
        out
    };
    (
        expand(b"queue-runtime envelope v1 message key"),
        expand(b"queue-runtime envelope v1 key commitment"),
    )
}

/// docs/envelope.md, "Byte layout", field by field.
fn v1_header(vector: &Vector, commitment: &[u8]) -> Vec<u8> {
    let mut header = vec![0xF5, b'Q', b'R', b'E', 1, vector.suite];
    header.push(u8::from(vector.not_before_ms.is_some()));
    header.push(vector.key_id.len() as u8);
    header.extend_from_slice(vector.key_id.as_bytes());
    header.extend_from_slice(&bytes(&vector.envelope_id));
    header.extend_from_slice(&vector.sealed_at_ms.to_be_bytes());
    if let Some(ms) = vector.not_before_ms {
        header.extend_from_slice(&ms.to_be_bytes());
    }
    header.extend_from_slice(commitment);
    header
}

fn aead_algorithm(suite: u8) -> &'static ring::aead::Algorithm {
    match suite {
        1 => &ring::aead::AES_256_GCM,
        _ => &ring::aead::CHACHA20_POLY1305,
    }
}

/// The refused version 1 inputs, built from the positive vectors.
fn v1_negatives(vectors: &[Vector]) -> Vec<NegativeVector> {
    let full = &vectors[1];
    let negative =
        |name: &str, base: &Vector, envelope: Vec<u8>, context: &VectorContext| NegativeVector {
            name: name.into(),
            key_id: base.key_id.clone(),
            key: base.key.clone(),
            context: context.clone(),
            envelope: hex::encode(envelope),
            error: String::new(),
        };
    let envelope = bytes(&full.envelope);

    // A tag that is valid for its header, under a commitment that is not the key's: only the
    // commitment check refuses it.
    let (message_key, commitment) = derive(full);
    let mut wrong = commitment;
    wrong[31] ^= 0x80;
    let header = v1_header(full, &wrong);
    let key = LessSafeKey::new(UnboundKey::new(aead_algorithm(full.suite), &message_key).unwrap());
    let aad = [&header[..], &full.context.encode()].concat();
    let mut in_out = bytes(&full.plaintext);
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key([0; 12]),
        Aad::from(&aad),
        &mut in_out,
    )
    .unwrap();
    let valid_tag_wrong_commitment = [header, in_out].concat();

    let mut moved = full.context.clone();
    moved.session_id = Some("octo-org/widgets#43".into());
    let mut emptied = full.context.clone();
    emptied.session_id = None;
    let mut wrong_key = full.clone();
    wrong_key.key = hex::encode(pattern(0x11, 32));
    let with = |index: usize, value: u8| {
        let mut bytes = envelope.clone();
        bytes[index] = value;
        bytes
    };
    let mut invalid_context = full.context.clone();
    invalid_context.channel = String::new();
    vec![
        negative(
            "a valid tag under a wrong key commitment",
            full,
            valid_tag_wrong_commitment,
            &full.context,
        ),
        negative(
            "a wrong context: another session",
            full,
            envelope.clone(),
            &moved,
        ),
        negative(
            "a wrong context: the session absent",
            full,
            envelope.clone(),
            &emptied,
        ),
        negative(
            "the right key id with the wrong key",
            &wrong_key,
            envelope.clone(),
            &full.context,
        ),
        negative(
            "five bytes: the magic and version 9 (the 8-byte prefix is incomplete)",
            full,
            vec![0xF5, b'Q', b'R', b'E', 9],
            &full.context,
        ),
        negative(
            "eight bytes: a complete prefix with version 9",
            full,
            vec![0xF5, b'Q', b'R', b'E', 9, 1, 0, 1],
            &full.context,
        ),
        negative("suite 3", full, with(5, 3), &full.context),
        negative("a reserved flag bit", full, with(6, 0b10), &full.context),
        negative(
            "one byte short of a tag",
            full,
            envelope[..peek_header(&envelope).unwrap().header_len + TAG_LEN - 1].to_vec(),
            &full.context,
        ),
        negative(
            "an empty channel: the context is judged before the envelope",
            full,
            envelope.clone(),
            &invalid_context,
        ),
    ]
    .into_iter()
    .map(|mut vector| {
        vector.error = error_name(&open_v1_negative(&vector).unwrap_err());
        vector
    })
    .collect()
}

fn open_v1_negative(vector: &NegativeVector) -> Result<queue_crypto::Opened, CryptoError> {
    let keyset = v1_keyset(&vector.key_id, &vector.key, KeyState::Active);
    open(
        &keyset,
        &bytes(&vector.envelope),
        &vector.context.to_context(),
    )
}

// ---------------------------------------------------------------------------------------------
// Version 2

fn kem_of(suite: u8) -> Kem {
    HpkeSuite::from_id(suite).unwrap().kem()
}

/// The inputs of every version 2 vector; outputs are computed.
fn public_inputs() -> Vec<PublicVector> {
    let vector = |name: &str,
                  suite: u8,
                  byte: u8,
                  not_before: Option<u64>,
                  context: &VectorContext,
                  plaintext: &[u8]| {
        let kem = kem_of(suite);
        let (kem_id, kdf_id, aead_id) = HpkeSuite::from_id(suite).unwrap().hpke_ids();
        PublicVector {
            name: name.into(),
            suite,
            kem_id,
            kdf_id,
            aead_id,
            recipient_key_id: if byte == 0x40 {
                "r".repeat(64)
            } else {
                format!("recipient-{byte:02x}")
            },
            recipient_private_key: hex::encode(pattern(byte, 32)),
            recipient_public_key: String::new(),
            sender_key_id: if byte == 0x40 {
                "s".repeat(64)
            } else {
                format!("sender-{byte:02x}")
            },
            sender_seed: hex::encode(pattern(byte ^ 0x80, 32)),
            sender_public_key: String::new(),
            envelope_id: hex::encode(pattern(0xD0 + suite, 32)),
            ephemeral_randomness: hex::encode(pattern(0xE0 ^ byte, kem.randomness_len())),
            sealed_at_ms: 1_795_000_000_000 + u64::from(byte),
            not_before_ms: not_before,
            context: context.clone(),
            context_encoding: String::new(),
            plaintext: hex::encode(plaintext),
            enc: String::new(),
            ciphertext_digest: String::new(),
            signature: String::new(),
            envelope: String::new(),
        }
    };
    let json = b"{\"number\":42,\"action\":\"opened\"}";
    vec![
        vector(
            "X25519, AES-256-GCM, empty plaintext, channel only",
            1,
            0x01,
            None,
            &VectorContext::minimal(),
            b"",
        ),
        vector(
            "X25519, ChaCha20-Poly1305, short plaintext, every context field, not-before",
            2,
            0x02,
            Some(1_795_000_600_000),
            &VectorContext::full(),
            json,
        ),
        vector(
            "X-Wing, AES-256-GCM, short plaintext, every context field",
            3,
            0x03,
            None,
            &VectorContext::full(),
            json,
        ),
        vector(
            "X-Wing, ChaCha20-Poly1305, 1000 bytes, not-before, 64-byte key ids",
            4,
            0x40,
            Some(1_795_000_600_000),
            &VectorContext::minimal(),
            &long_plaintext(),
        ),
        vector(
            "X25519, AES-256-GCM, non-ASCII context, property keys whose UTF-8 and UTF-16 orders differ",
            1,
            0x05,
            None,
            &VectorContext::non_ascii(),
            "héllo, 世界".as_bytes(),
        ),
        vector(
            "X25519, AES-256-GCM, absent fields next to empty ones, an empty property key",
            1,
            0x06,
            None,
            &VectorContext::absent_and_empty(),
            b"absent is not empty",
        ),
    ]
}

fn recipient(vector_kem: Kem, id: &str, private_key: &str, state: KeyState) -> RecipientKeyPair {
    RecipientKeyPair::from_private_key(
        KeyId::new(id).unwrap(),
        vector_kem,
        &bytes(private_key),
        state,
    )
    .unwrap()
}

fn sender(id: &str, seed: &str) -> SenderSigningKey {
    SenderSigningKey::from_seed(KeyId::new(id).unwrap(), &bytes(seed), KeyState::Primary).unwrap()
}

fn public_keysets(vector: &PublicVector) -> (ProducerKeyset, ConsumerKeyset) {
    let kem = kem_of(vector.suite);
    let pair = || {
        recipient(
            kem,
            &vector.recipient_key_id,
            &vector.recipient_private_key,
            KeyState::Primary,
        )
    };
    let signer = || sender(&vector.sender_key_id, &vector.sender_seed);
    (
        ProducerKeyset::new([pair().public_key()], [signer()]).unwrap(),
        ConsumerKeyset::new([pair()], [signer().public_key()]).unwrap(),
    )
}

/// Fills in the outputs of a version 2 vector with the crate.
fn compute_public(mut vector: PublicVector) -> PublicVector {
    let (producer, _) = public_keysets(&vector);
    let randomness = [
        bytes(&vector.envelope_id),
        bytes(&vector.ephemeral_randomness),
    ]
    .concat();
    let sealer = public::Sealer::new()
        .with_aead(HpkeSuite::from_id(vector.suite).unwrap().aead())
        .with_clock(Arc::new(FixedClock(millis(vector.sealed_at_ms))))
        .with_random_source(Arc::new(ScriptedRandom::new(randomness)));
    let context = vector.context.to_context();
    let plaintext = bytes(&vector.plaintext);
    let envelope = match vector.not_before_ms {
        None => sealer.seal(&producer, &plaintext, &context),
        Some(ms) => sealer.seal_not_before(&producer, &plaintext, &context, millis(ms)),
    }
    .unwrap();
    let header_len = public::peek_header(&envelope).unwrap().header_len;
    let enc_len = kem_of(vector.suite).enc_len();
    let body = &envelope[header_len..envelope.len() - SIGNATURE_LEN];
    vector.recipient_public_key = hex::encode(producer.primary_recipient().unwrap().as_bytes());
    vector.sender_public_key =
        hex::encode(producer.primary_signer().unwrap().public_key().as_bytes());
    vector.context_encoding = hex::encode(vector.context.encode());
    vector.enc = hex::encode(&envelope[header_len - enc_len..header_len]);
    vector.ciphertext_digest =
        hex::encode(ring::digest::digest(&ring::digest::SHA256, body).as_ref());
    vector.signature = hex::encode(&envelope[envelope.len() - SIGNATURE_LEN..]);
    vector.envelope = hex::encode(&envelope);
    vector
}

/// docs/envelope.md, "Version 2: byte layout", field by field.
fn v2_header(vector: &PublicVector, sender_key_id: &str) -> Vec<u8> {
    let mut header = vec![0xF5, b'Q', b'R', b'E', 2, vector.suite];
    header.push(u8::from(vector.not_before_ms.is_some()));
    header.push(vector.recipient_key_id.len() as u8);
    header.push(sender_key_id.len() as u8);
    header.extend_from_slice(vector.recipient_key_id.as_bytes());
    header.extend_from_slice(sender_key_id.as_bytes());
    header.extend_from_slice(&bytes(&vector.envelope_id));
    header.extend_from_slice(&vector.sealed_at_ms.to_be_bytes());
    if let Some(ms) = vector.not_before_ms {
        header.extend_from_slice(&ms.to_be_bytes());
    }
    header.extend_from_slice(&bytes(&vector.enc));
    header
}

fn trusted(id: &str, public_key: &[u8], state: KeyState) -> TrustedSender {
    TrustedSender {
        key_id: id.into(),
        public_key: hex::encode(public_key),
        state: state.as_str().into(),
    }
}

/// The refused version 2 inputs, built from the positive vectors.
fn v2_negatives(vectors: &[PublicVector]) -> Vec<PublicNegativeVector> {
    let base = &vectors[1];
    let envelope = bytes(&base.envelope);
    let header_len = public::peek_header(&envelope).unwrap().header_len;
    let (header, rest) = envelope.split_at(header_len);
    let body = &rest[..rest.len() - SIGNATURE_LEN];
    let context = base.context.to_context();
    let me = sender(&base.sender_key_id, &base.sender_seed).public_key();
    let other_seed = hex::encode(pattern(0x77, 32));
    let other = sender("sender-other", &other_seed).public_key();
    let trust = vec![
        trusted(me.id().as_str(), me.as_bytes(), KeyState::Active),
        trusted("sender-other", other.as_bytes(), KeyState::Active),
    ];
    let negative = |name: &str,
                    envelope: Vec<u8>,
                    context: &VectorContext,
                    trusted_senders: &[TrustedSender]| PublicNegativeVector {
        name: name.into(),
        recipient_key_id: base.recipient_key_id.clone(),
        kem: kem_of(base.suite).as_str().into(),
        recipient_private_key: base.recipient_private_key.clone(),
        trusted_senders: trusted_senders.to_vec(),
        context: context.clone(),
        envelope: hex::encode(envelope),
        error: String::new(),
    };

    // Another trusted sender takes the envelope, names itself and signs: a valid signature by
    // a trusted key, refused by HPKE because the sender id is in the associated data.
    let renamed = v2_header(base, "sender-other");
    let re_signed = [
        &renamed[..],
        body,
        &sign_v2(&array32(&other_seed), &renamed, &context, body),
    ]
    .concat();
    // The same, keeping the original sender's name: the signature does not verify.
    let kept_name = [
        header,
        body,
        &sign_v2(&array32(&other_seed), header, &context, body),
    ]
    .concat();
    // Another message's signature.
    let other_message = bytes(&vectors[0].envelope);
    let swapped = [
        header,
        body,
        &other_message[other_message.len() - SIGNATURE_LEN..],
    ]
    .concat();
    // Sealed, and validly signed, to another key under the recipient's key id.
    let other_recipient = recipient(
        kem_of(base.suite),
        &base.recipient_key_id,
        &hex::encode(pattern(0x99, 32)),
        KeyState::Primary,
    );
    let to_other = public::Sealer::new()
        .with_aead(HpkeSuite::from_id(base.suite).unwrap().aead())
        .with_clock(Arc::new(FixedClock(millis(base.sealed_at_ms))))
        .with_random_source(Arc::new(ScriptedRandom::new(
            [bytes(&base.envelope_id), bytes(&base.ephemeral_randomness)].concat(),
        )))
        .seal(
            &ProducerKeyset::new(
                [other_recipient.public_key()],
                [sender(&base.sender_key_id, &base.sender_seed)],
            )
            .unwrap(),
            &bytes(&base.plaintext),
            &context,
        )
        .unwrap();
    let mut moved = base.context.clone();
    moved.channel = "pr-events-archive".into();
    let only_other = [trust[1].clone()];
    let me_retired = [
        trusted(me.id().as_str(), me.as_bytes(), KeyState::Retired),
        trust[1].clone(),
    ];
    let mut unknown_recipient = envelope.clone();
    unknown_recipient[9] = b'R';
    let truncated = envelope[..header_len + TAG_LEN + SIGNATURE_LEN - 1].to_vec();
    vec![
        negative(
            "re-signed by another trusted sender, under its own name",
            re_signed,
            &base.context,
            &trust,
        ),
        negative(
            "re-signed by another trusted sender, keeping the original name",
            kept_name,
            &base.context,
            &trust,
        ),
        negative(
            "the signature of another message",
            swapped,
            &base.context,
            &trust,
        ),
        negative(
            "a wrong context: another channel",
            envelope.clone(),
            &moved,
            &trust,
        ),
        negative(
            "validly signed, sealed to another key under the same key id",
            to_other,
            &base.context,
            &trust,
        ),
        negative(
            "a sender not in the trust list",
            envelope.clone(),
            &base.context,
            &only_other,
        ),
        negative(
            "a retired sender",
            envelope.clone(),
            &base.context,
            &me_retired,
        ),
        negative(
            "an unknown recipient key id",
            unknown_recipient,
            &base.context,
            &trust,
        ),
        negative(
            "six bytes: the magic, version 2, a suite (the 9-byte prefix is incomplete)",
            envelope[..6].to_vec(),
            &base.context,
            &trust,
        ),
        negative(
            "suite 5",
            [&envelope[..5], &[5], &envelope[6..]].concat(),
            &base.context,
            &trust,
        ),
        negative(
            "one byte short of a tag and a signature",
            truncated,
            &base.context,
            &trust,
        ),
    ]
    .into_iter()
    .map(|mut vector| {
        vector.error = error_name(&open_v2_negative(&vector).unwrap_err());
        vector
    })
    .collect()
}

fn open_v2_negative(vector: &PublicNegativeVector) -> Result<public::Opened, CryptoError> {
    let kem = Kem::from_name(&vector.kem).unwrap();
    let pair = recipient(
        kem,
        &vector.recipient_key_id,
        &vector.recipient_private_key,
        KeyState::Primary,
    );
    let trusted = vector.trusted_senders.iter().map(|sender| {
        SenderPublicKey::new(
            KeyId::new(&sender.key_id).unwrap(),
            &bytes(&sender.public_key),
            KeyState::from_name(&sender.state).unwrap(),
        )
        .unwrap()
    });
    let keys = ConsumerKeyset::new([pair], trusted).unwrap();
    public::open(
        &keys,
        &bytes(&vector.envelope),
        &vector.context.to_context(),
    )
}

// ---------------------------------------------------------------------------------------------
// The tests

fn generated() -> VectorFile {
    let vectors: Vec<Vector> = inputs().into_iter().map(compute).collect();
    let public_key_vectors: Vec<PublicVector> =
        public_inputs().into_iter().map(compute_public).collect();
    VectorFile {
        description: DESCRIPTION.into(),
        versions: vec![1, 2],
        negative_vectors: v1_negatives(&vectors),
        public_key_negative_vectors: v2_negatives(&public_key_vectors),
        vectors,
        public_key_vectors,
    }
}

fn stored() -> VectorFile {
    serde_json::from_str(&std::fs::read_to_string(path()).unwrap()).unwrap()
}

fn assert_each_eq<T: PartialEq + std::fmt::Debug>(stored: &[T], generated: &[T], what: &str) {
    assert_eq!(stored.len(), generated.len(), "number of {what}");
    for (index, (stored, generated)) in stored.iter().zip(generated).enumerate() {
        assert_eq!(stored, generated, "{what} {index} no longer reproduces");
    }
}

#[test]
fn the_vectors_reproduce() {
    let generated = generated();
    if std::env::var_os("QUEUE_CRYPTO_WRITE_VECTORS").is_some() {
        let text = serde_json::to_string_pretty(&generated).unwrap() + "\n";
        std::fs::write(path(), text).unwrap();
    }
    let stored = stored();
    assert_each_eq(&stored.vectors, &generated.vectors, "version 1 vector");
    assert_each_eq(
        &stored.negative_vectors,
        &generated.negative_vectors,
        "version 1 negative vector",
    );
    assert_each_eq(
        &stored.public_key_vectors,
        &generated.public_key_vectors,
        "version 2 vector",
    );
    assert_each_eq(
        &stored.public_key_negative_vectors,
        &generated.public_key_negative_vectors,
        "version 2 negative vector",
    );
    assert_eq!(stored, generated);
}

/// The six original version 1 vectors, as first published: their envelopes never change
/// (SHA-256 of their hex envelopes, concatenated, taken before any vector was added).
#[test]
fn the_original_version_1_envelopes_are_unchanged() {
    let stored = stored();
    let originals: String = stored.vectors[..6]
        .iter()
        .map(|vector| vector.envelope.as_str())
        .collect();
    assert_eq!(
        hex::encode(ring::digest::digest(
            &ring::digest::SHA256,
            originals.as_bytes()
        )),
        "34557175f81d48112e7d603abbe18649c797a2094b751dd41a5159196fc6b96b"
    );
}

#[test]
fn the_vectors_follow_the_document_with_raw_ring() {
    let stored = stored();
    let suites = stored
        .vectors
        .iter()
        .map(|vector| vector.suite)
        .collect::<std::collections::HashSet<_>>();
    assert_eq!(suites.len(), 2, "both suites have vectors");
    for vector in &stored.vectors {
        let envelope = bytes(&vector.envelope);
        let (message_key, commitment) = derive(vector);
        assert_eq!(
            hex::encode(message_key),
            vector.message_key,
            "{}",
            vector.name
        );
        assert_eq!(
            hex::encode(commitment),
            vector.commitment,
            "{}",
            vector.name
        );
        assert_eq!(
            hex::encode(vector.context.encode()),
            vector.context_encoding
        );

        let header = v1_header(vector, &commitment);
        assert_eq!(&envelope[..header.len()], &header[..], "{}", vector.name);
        assert_eq!(
            envelope.len(),
            header.len() + vector.plaintext.len() / 2 + TAG_LEN
        );

        // The AEAD, with a zero nonce and AAD = header || context encoding.
        let key =
            LessSafeKey::new(UnboundKey::new(aead_algorithm(vector.suite), &message_key).unwrap());
        let aad = [&header[..], &vector.context.encode()].concat();
        let mut in_out = envelope[header.len()..].to_vec();
        let plaintext = key
            .open_in_place(
                Nonce::assume_unique_for_key([0; 12]),
                Aad::from(&aad),
                &mut in_out,
            )
            .unwrap();
        assert_eq!(hex::encode(plaintext), vector.plaintext, "{}", vector.name);

        // And the crate opens it.
        let keyset = v1_keyset(&vector.key_id, &vector.key, KeyState::Active);
        let opened = open(&keyset, &envelope, &vector.context.to_context()).unwrap();
        assert_eq!(hex::encode(opened.plaintext()), vector.plaintext);
        assert_eq!(opened.sealed_at(), millis(vector.sealed_at_ms));
        assert_eq!(opened.not_before(), vector.not_before_ms.map(millis));
        assert_eq!(opened.envelope_id(), &array32(&vector.envelope_id));
    }
}

#[test]
fn the_negative_vectors_are_refused_with_the_error_they_name() {
    let stored = stored();
    assert!(stored.negative_vectors.len() >= 10);
    for vector in &stored.negative_vectors {
        let error = open_v1_negative(vector).unwrap_err();
        assert_eq!(error_name(&error), vector.error, "{}", vector.name);
    }
    assert!(stored.public_key_negative_vectors.len() >= 11);
    for vector in &stored.public_key_negative_vectors {
        let error = open_v2_negative(vector).unwrap_err();
        assert_eq!(error_name(&error), vector.error, "{}", vector.name);
    }
    // The one whose tag is valid is refused only by the commitment check: an implementation
    // that skips that check opens it.
    let commitment = &stored.negative_vectors[0];
    assert_eq!(commitment.error, "DecryptFailed");
    let base = &stored.vectors[1];
    let (message_key, _) = derive(base);
    let key = LessSafeKey::new(UnboundKey::new(aead_algorithm(base.suite), &message_key).unwrap());
    let envelope = bytes(&commitment.envelope);
    let header_len = peek_header(&envelope).unwrap().header_len;
    let aad = [&envelope[..header_len], &base.context.encode()].concat();
    let mut in_out = envelope[header_len..].to_vec();
    assert!(
        key.open_in_place(
            Nonce::assume_unique_for_key([0; 12]),
            Aad::from(&aad),
            &mut in_out
        )
        .is_ok()
    );
}

/// HPKE with the `hpke` crate's own API, base mode, as the document specifies it.
fn hpke_open(vector: &PublicVector, aad: &[u8], body: &[u8]) -> Vec<u8> {
    use hpke::aead::{AeadTag, AesGcm256, ChaCha20Poly1305};
    use hpke::kdf::HkdfSha256;
    use hpke::kem::{X25519HkdfSha256, XWing};

    fn run<A: hpke::aead::Aead, K: hpke::Kem>(
        private_key: &[u8],
        enc: &[u8],
        aad: &[u8],
        body: &[u8],
    ) -> Vec<u8> {
        let sk = K::PrivateKey::from_bytes(private_key).unwrap();
        let enc = K::EncappedKey::from_bytes(enc).unwrap();
        let mut context = hpke::setup_receiver::<A, HkdfSha256, K>(
            &OpModeR::Base,
            &sk,
            &enc,
            b"queue-runtime envelope v2",
        )
        .unwrap();
        let (ciphertext, tag) = body.split_at(body.len() - 16);
        let mut plaintext = ciphertext.to_vec();
        context
            .open_inout_detached(
                (&mut plaintext[..]).into(),
                aad,
                &AeadTag::<A>::from_bytes(tag).unwrap(),
            )
            .unwrap();
        plaintext
    }
    let private_key = bytes(&vector.recipient_private_key);
    let enc = bytes(&vector.enc);
    match vector.suite {
        1 => run::<AesGcm256, X25519HkdfSha256>(&private_key, &enc, aad, body),
        2 => run::<ChaCha20Poly1305, X25519HkdfSha256>(&private_key, &enc, aad, body),
        3 => run::<AesGcm256, XWing>(&private_key, &enc, aad, body),
        _ => run::<ChaCha20Poly1305, XWing>(&private_key, &enc, aad, body),
    }
}

#[test]
fn the_public_key_vectors_follow_the_document_with_raw_primitives() {
    let stored = stored();
    let suites = stored
        .public_key_vectors
        .iter()
        .map(|vector| vector.suite)
        .collect::<std::collections::HashSet<_>>();
    assert_eq!(suites.len(), 4, "all four suites have vectors");
    for vector in &stored.public_key_vectors {
        let envelope = bytes(&vector.envelope);
        let suite = HpkeSuite::from_id(vector.suite).unwrap();
        assert_eq!(
            (vector.kem_id, vector.kdf_id, vector.aead_id),
            suite.hpke_ids()
        );
        // The public halves, from the private keys with each library's own derivation.
        let public_key = match suite.kem() {
            Kem::XWing => {
                let sk = <hpke::kem::XWing as hpke::Kem>::PrivateKey::from_bytes(&bytes(
                    &vector.recipient_private_key,
                ))
                .unwrap();
                hpke::kem::XWing::sk_to_pk(&sk).to_bytes().to_vec()
            }
            _ => {
                let sk = <hpke::kem::X25519HkdfSha256 as hpke::Kem>::PrivateKey::from_bytes(
                    &bytes(&vector.recipient_private_key),
                )
                .unwrap();
                hpke::kem::X25519HkdfSha256::sk_to_pk(&sk)
                    .to_bytes()
                    .to_vec()
            }
        };
        assert_eq!(hex::encode(public_key), vector.recipient_public_key);
        let signing =
            ring::signature::Ed25519KeyPair::from_seed_unchecked(&bytes(&vector.sender_seed))
                .unwrap();
        use ring::signature::KeyPair;
        assert_eq!(
            hex::encode(signing.public_key().as_ref()),
            vector.sender_public_key
        );
        assert_eq!(
            hex::encode(vector.context.encode()),
            vector.context_encoding
        );

        // The header, field by field; then the HPKE body and the signature.
        let header = v2_header(vector, &vector.sender_key_id);
        assert_eq!(&envelope[..header.len()], &header[..], "{}", vector.name);
        assert_eq!(
            envelope.len(),
            header.len() + vector.plaintext.len() / 2 + TAG_LEN + SIGNATURE_LEN
        );
        let body = &envelope[header.len()..envelope.len() - SIGNATURE_LEN];
        let signature = &envelope[envelope.len() - SIGNATURE_LEN..];
        assert_eq!(hex::encode(signature), vector.signature);
        let digest = ring::digest::digest(&ring::digest::SHA256, body);
        assert_eq!(hex::encode(digest.as_ref()), vector.ciphertext_digest);
        let signed = [
            &b"queue-runtime envelope v2 signature"[..],
            &header,
            &vector.context.encode(),
            digest.as_ref(),
        ]
        .concat();
        ring::signature::UnparsedPublicKey::new(
            &ring::signature::ED25519,
            bytes(&vector.sender_public_key),
        )
        .verify(&signed, signature)
        .unwrap();
        let aad = [&header[..], &vector.context.encode()].concat();
        assert_eq!(hex::encode(hpke_open(vector, &aad, body)), vector.plaintext);

        // And the crate opens it.
        let (_, consumer) = public_keysets(vector);
        let opened = public::open(&consumer, &envelope, &vector.context.to_context()).unwrap();
        assert_eq!(hex::encode(opened.plaintext()), vector.plaintext);
        assert_eq!(opened.sealed_at(), millis(vector.sealed_at_ms));
        assert_eq!(opened.not_before(), vector.not_before_ms.map(millis));
        assert_eq!(opened.envelope_id(), &array32(&vector.envelope_id));
        assert_eq!(opened.sender_key_id().as_str(), vector.sender_key_id);
    }
}
