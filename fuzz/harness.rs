// The check the fuzzer runs on every input, shared word for word by the fuzz target
// (fuzz/fuzz_targets/open.rs) and by `cargo test` (crates/queue-crypto/tests/fuzz_corpus.rs),
// which runs the whole corpus through it so CI keeps the corpus honest.
//
// The seeds in fuzz/corpus/open were sealed for `context()`: version 1 seeds under `keyset()`,
// version 2 seeds to the recipient keys of `consumer()`, signed with `SENDER_SEED`.

use queue_crypto::public::{self, ConsumerKeyset, Kem, RecipientKeyPair, SenderSigningKey};
use queue_crypto::{Context, Key, KeyId, KeyMaterial, KeyState, Keyset, open, peek_header};

/// The Ed25519 seed of the trusted sender `fuzz-sender` that signed the version 2 seeds.
pub(crate) const SENDER_SEED: [u8; 32] = [0x51; 32];

/// The private keys of the consumer's recipient key pairs (X25519, X-Wing).
pub(crate) const RECIPIENT_KEYS: [(&str, Kem, [u8; 32]); 2] = [
    ("fuzz-x25519", Kem::X25519HkdfSha256, [0x61; 32]),
    ("fuzz-xwing", Kem::XWing, [0x62; 32]),
];

fn id(text: &str) -> KeyId {
    KeyId::new(text).unwrap_or_else(|_| unreachable!("a valid key id"))
}

/// The version 1 keys the seeds were sealed with: a primary, an active and a retired key.
pub(crate) fn keyset() -> Keyset {
    let key = |name: &str, byte: u8, state: KeyState| {
        Key::new(id(name), KeyMaterial::from_array([byte; 32]), state)
    };
    Keyset::new([
        key("fuzz-primary", 0x42, KeyState::Primary),
        key("fuzz-active", 0x43, KeyState::Active),
        key("fuzz-retired", 0x44, KeyState::Retired),
    ])
    .unwrap_or_else(|_| unreachable!("a valid keyset"))
}

/// The version 2 sender the seeds were signed by.
pub(crate) fn sender() -> SenderSigningKey {
    SenderSigningKey::from_seed(id("fuzz-sender"), &SENDER_SEED, KeyState::Primary)
        .unwrap_or_else(|_| unreachable!("a valid seed"))
}

/// The version 2 consumer: an X25519 and an X-Wing key pair, `fuzz-sender` trusted and a
/// retired sender.
pub(crate) fn consumer() -> ConsumerKeyset {
    let pairs = RECIPIENT_KEYS.map(|(name, kem, private_key)| {
        let state = if kem == Kem::XWing {
            KeyState::Active
        } else {
            KeyState::Primary
        };
        RecipientKeyPair::from_private_key(id(name), kem, &private_key, state)
            .unwrap_or_else(|_| unreachable!("a valid private key"))
    });
    let retired = SenderSigningKey::from_seed(id("fuzz-old-sender"), &[0x52; 32], KeyState::Retired)
        .unwrap_or_else(|_| unreachable!("a valid seed"));
    ConsumerKeyset::new(pairs, [sender().public_key(), retired.public_key()])
        .unwrap_or_else(|_| unreachable!("a valid keyset"))
}

/// Every key the fuzzer opens with.
pub(crate) struct Keys {
    pub(crate) v1: Keyset,
    pub(crate) v2: ConsumerKeyset,
}

pub(crate) fn keys() -> Keys {
    Keys {
        v1: keyset(),
        v2: consumer(),
    }
}

/// The context the seeds were sealed for.
pub(crate) fn context() -> Context<'static> {
    Context::new("fuzz-queue")
        .with_session_id("session-1")
        .with_property("kind", "seed")
}

/// Opens `data` as both versions and peeks at both headers; every call must return, never
/// panic. At most one version opens it, the one its version byte names, and whatever opens has a
/// header that peeks to the same ids, times and length. Returns the plaintext when `data` opens.
pub(crate) fn check(keys: &Keys, context: &Context<'_>, data: &[u8]) -> Option<Vec<u8>> {
    let v1 = check_v1(&keys.v1, context, data);
    let v2 = check_v2(&keys.v2, context, data);
    match (v1, v2) {
        (Some(_), Some(_)) => panic!("one input opened as both versions"),
        (Some(plaintext), None) => {
            assert_eq!(queue_crypto::envelope_version(data), Some(1));
            Some(plaintext)
        }
        (None, Some(plaintext)) => {
            assert_eq!(queue_crypto::envelope_version(data), Some(2));
            Some(plaintext)
        }
        (None, None) => None,
    }
}

fn check_v1(keyset: &Keyset, context: &Context<'_>, data: &[u8]) -> Option<Vec<u8>> {
    let header = peek_header(data);
    let opened = open(keyset, data, context).ok()?;
    let Ok(header) = header else {
        panic!("an envelope opened but its header did not parse");
    };
    assert_eq!(header.key_id, opened.key_id().as_str());
    assert_eq!(header.sealed_at, opened.sealed_at());
    assert_eq!(header.not_before, opened.not_before());
    assert_eq!(&header.envelope_id, opened.envelope_id());
    assert_eq!(header.ciphertext_len, opened.plaintext().len());
    Some(opened.into_plaintext())
}

fn check_v2(consumer: &ConsumerKeyset, context: &Context<'_>, data: &[u8]) -> Option<Vec<u8>> {
    let header = public::peek_header(data);
    let opened = public::open(consumer, data, context).ok()?;
    let Ok(header) = header else {
        panic!("a version 2 envelope opened but its header did not parse");
    };
    assert_eq!(header.recipient_key_id, opened.recipient_key_id().as_str());
    assert_eq!(header.sender_key_id, opened.sender_key_id().as_str());
    assert_eq!(header.suite, opened.suite());
    assert_eq!(header.sealed_at, opened.sealed_at());
    assert_eq!(header.not_before, opened.not_before());
    assert_eq!(&header.envelope_id, opened.envelope_id());
    assert_eq!(header.ciphertext_len, opened.plaintext().len());
    Some(opened.into_plaintext())
}
