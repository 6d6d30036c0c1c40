//! Shared by the integration tests: keys, a fixed clock, a scripted salt source.

#![allow(dead_code, unreachable_pub)]

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use queue_crypto::public::{
    ConsumerKeyset, Kem, ProducerKeyset, RecipientKeyPair, SenderSigningKey,
};
use queue_crypto::{
    Clock, Context, CryptoError, ENVELOPE_ID_LEN, Key, KeyId, KeyMaterial, KeyState, Keyset,
    RandomSource,
};

pub const SUITES: [queue_crypto::Suite; 2] = [
    queue_crypto::Suite::Aes256Gcm,
    queue_crypto::Suite::ChaCha20Poly1305,
];

pub fn key(id: &str, byte: u8, state: KeyState) -> Key {
    Key::new(
        KeyId::new(id).unwrap(),
        KeyMaterial::from_array([byte; 32]),
        state,
    )
}

/// A keyset with a primary `k-primary`, an active `k-active` and a retired `k-retired`.
pub fn keyset() -> Keyset {
    Keyset::new([
        key("k-primary", 1, KeyState::Primary),
        key("k-active", 2, KeyState::Active),
        key("k-retired", 3, KeyState::Retired),
    ])
    .unwrap()
}

/// A context with every field and two properties.
pub fn full_context() -> Context<'static> {
    Context::new("pr-events")
        .with_session_id("repo/123")
        .with_correlation_id("delivery-9")
        .with_content_type("application/json")
        .with_message_id("6f1c9c3e-5a57-4c9b-9d43-3a8c3b1e2f10")
        .with_property("event", "pull_request")
        .with_property("action", "opened")
}

pub fn millis(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

/// A clock stuck at one time.
pub struct FixedClock(pub SystemTime);

impl Clock for FixedClock {
    fn now(&self) -> SystemTime {
        self.0
    }
}

/// A crypto error's variant name, as the vectors file writes it.
pub fn error_name(error: &CryptoError) -> String {
    let printed = format!("{error:?}");
    printed
        .split(['(', ' ', '{'])
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Hands out the given bytes in order, as one stream (for known-answer vectors only: random
/// bytes must never repeat). Runs dry with `CryptoError::Random`.
pub struct ScriptedRandom(pub Mutex<Vec<u8>>);

impl ScriptedRandom {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        ScriptedRandom(Mutex::new(bytes.into()))
    }

    pub fn one(salt: [u8; ENVELOPE_ID_LEN]) -> Self {
        Self::new(salt)
    }
}

impl RandomSource for ScriptedRandom {
    fn fill(&self, out: &mut [u8]) -> Result<(), CryptoError> {
        let mut bytes = self.0.lock().unwrap();
        if bytes.len() < out.len() {
            return Err(CryptoError::Random);
        }
        out.copy_from_slice(&bytes[..out.len()]);
        bytes.drain(..out.len());
        Ok(())
    }
}

/// A producer and a consumer of one queue: recipient `r-primary` (with an active `r-active`
/// and a retired `r-retired` on the consumer side), sender `s-primary` trusted, `s-other`
/// trusted too, `s-retired` retired.
pub struct PublicParties {
    pub producer: ProducerKeyset,
    pub other_producer: ProducerKeyset,
    pub consumer: ConsumerKeyset,
}

pub fn recipient_pair(id: &str, kem: Kem, byte: u8, state: KeyState) -> RecipientKeyPair {
    RecipientKeyPair::from_private_key(KeyId::new(id).unwrap(), kem, &[byte; 32], state).unwrap()
}

pub fn signer(id: &str, byte: u8, state: KeyState) -> SenderSigningKey {
    SenderSigningKey::from_seed(KeyId::new(id).unwrap(), &[byte; 32], state).unwrap()
}

pub fn public_parties(kem: Kem) -> PublicParties {
    let primary = recipient_pair("r-primary", kem, 1, KeyState::Primary);
    let active = recipient_pair("r-active", kem, 2, KeyState::Active);
    let retired = recipient_pair("r-retired", kem, 3, KeyState::Retired);
    let me = signer("s-primary", 11, KeyState::Primary);
    let other = signer("s-other", 12, KeyState::Primary);
    let old = signer("s-retired", 13, KeyState::Retired);
    let consumer = ConsumerKeyset::new(
        [primary, active, retired],
        [me.public_key(), other.public_key(), old.public_key()],
    )
    .unwrap();
    let recipient = consumer.primary_key_pair().unwrap().public_key();
    PublicParties {
        producer: ProducerKeyset::new([recipient.clone()], [me]).unwrap(),
        other_producer: ProducerKeyset::new([recipient], [other]).unwrap(),
        consumer,
    }
}

/// [`public_parties`], built once per KEM for the whole test binary (X-Wing keys take a while
/// to expand in a debug build).
pub fn shared_parties(kem: Kem) -> &'static PublicParties {
    static X25519: std::sync::OnceLock<PublicParties> = std::sync::OnceLock::new();
    static XWING: std::sync::OnceLock<PublicParties> = std::sync::OnceLock::new();
    match kem {
        Kem::XWing => XWING.get_or_init(|| public_parties(kem)),
        _ => X25519.get_or_init(|| public_parties(kem)),
    }
}

pub const KEMS: [Kem; 2] = [Kem::X25519HkdfSha256, Kem::XWing];

/// The context encoding as docs/envelope.md specifies it, written independently of the crate.
pub fn encode_context(context: &Context<'_>) -> Vec<u8> {
    fn put(out: &mut Vec<u8>, text: &str) {
        out.extend_from_slice(&(text.len() as u32).to_be_bytes());
        out.extend_from_slice(text.as_bytes());
    }
    let mut out = Vec::new();
    put(&mut out, context.channel());
    for field in [
        context.session_id(),
        context.correlation_id(),
        context.content_type(),
        context.message_id(),
    ] {
        match field {
            None => out.push(0),
            Some(text) => {
                out.push(1);
                put(&mut out, text);
            }
        }
    }
    // Keys ascending by their UTF-8 bytes (said explicitly, not left to the map's order).
    let mut properties: Vec<_> = context.properties().iter().collect();
    properties.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    out.extend_from_slice(&(properties.len() as u32).to_be_bytes());
    for (key, value) in properties {
        put(&mut out, key);
        put(&mut out, value);
    }
    out
}

/// A version 2 envelope's signature, made as docs/envelope.md specifies it with raw `ring`:
/// Ed25519 over `label || header || context || SHA-256(HPKE ciphertext)`.
pub fn sign_v2(seed: &[u8; 32], header: &[u8], context: &Context<'_>, body: &[u8]) -> Vec<u8> {
    let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(seed).unwrap();
    let digest = ring::digest::digest(&ring::digest::SHA256, body);
    let message = [
        queue_crypto::public::SIGNATURE_LABEL,
        header,
        &encode_context(context),
        digest.as_ref(),
    ]
    .concat();
    pair.sign(&message).as_ref().to_vec()
}
