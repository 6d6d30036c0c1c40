//! Runs the fuzz corpus (fuzz/corpus/open) through the fuzz target's own check, so every
//! `cargo test` replays what the fuzzer found interesting. Seeds named `valid-*` are envelopes
//! (of either version) that must open; every other input (fuzzer finds included) must be
//! refused.
//!
//! To rewrite the seeds: `QUEUE_CRYPTO_WRITE_CORPUS=1 cargo test -p queue-crypto --test fuzz_corpus`.

// Test helpers outside #[test] functions may unwrap too: a failure is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

mod harness {
    include!("../../../fuzz/harness.rs");
}

use std::path::PathBuf;
use std::sync::Arc;

use queue_crypto::public::{self, Kem, ProducerKeyset, RecipientPublicKey};
use queue_crypto::{KeyId, KeyState, MAGIC, Sealer, Suite};
use support::{FixedClock, ScriptedRandom, millis};

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/open")
}

fn seeds() -> Vec<(String, Vec<u8>)> {
    let keyset = harness::keyset();
    let context = harness::context();
    let sealer = |suite: Suite, salt: u8| {
        Sealer::new()
            .with_suite(suite)
            .with_clock(Arc::new(FixedClock(millis(1_795_000_000_000))))
            .with_random_source(Arc::new(ScriptedRandom::one([salt; 32])))
    };
    let aes = sealer(Suite::Aes256Gcm, 1)
        .seal(&keyset, b"hello, fuzzer", &context)
        .unwrap();
    let chacha = sealer(Suite::ChaCha20Poly1305, 2)
        .seal(&keyset, &[0xAB; 300], &context)
        .unwrap();
    let empty = sealer(Suite::Aes256Gcm, 3)
        .seal(&keyset, b"", &context)
        .unwrap();
    let scheduled = sealer(Suite::Aes256Gcm, 4)
        .seal_not_before(&keyset, b"later", &context, millis(1_795_000_060_000))
        .unwrap();
    let mut truncated = aes.clone();
    truncated.truncate(aes.len() - 1);
    let mut flipped = chacha.clone();
    flipped[100] ^= 0x01;

    // Version 2, to the consumer's X25519 and X-Wing keys.
    let producer = |kem: Kem| {
        let consumer = harness::consumer();
        let pair = consumer
            .key_pairs()
            .find(|pair| pair.kem() == kem)
            .unwrap()
            .public_key();
        let primary =
            RecipientPublicKey::new(pair.id().clone(), kem, pair.as_bytes(), KeyState::Primary)
                .unwrap();
        ProducerKeyset::new([primary], [harness::sender()]).unwrap()
    };
    let public_sealer = |aead: Suite, byte: u8, kem: Kem| {
        public::Sealer::new()
            .with_aead(aead)
            .with_clock(Arc::new(FixedClock(millis(1_795_000_000_000))))
            .with_random_source(Arc::new(ScriptedRandom::new(vec![
                byte;
                32 + kem.randomness_len()
            ])))
    };
    let x25519 = public_sealer(Suite::Aes256Gcm, 5, Kem::X25519HkdfSha256)
        .seal(&producer(Kem::X25519HkdfSha256), b"hello, fuzzer", &context)
        .unwrap();
    let xwing = public_sealer(Suite::ChaCha20Poly1305, 6, Kem::XWing)
        .seal(&producer(Kem::XWing), &[0xCD; 300], &context)
        .unwrap();
    let public_scheduled = public_sealer(Suite::ChaCha20Poly1305, 7, Kem::X25519HkdfSha256)
        .seal_not_before(
            &producer(Kem::X25519HkdfSha256),
            b"later",
            &context,
            millis(1_795_000_060_000),
        )
        .unwrap();
    let mut public_truncated = x25519.clone();
    public_truncated.truncate(x25519.len() - 1);
    let mut public_flipped = xwing.clone();
    public_flipped[1500] ^= 0x01;
    // Signed by a retired sender: well formed, refused.
    let retired = ProducerKeyset::new(
        [producer(Kem::X25519HkdfSha256)
            .primary_recipient()
            .unwrap()
            .clone()],
        [queue_crypto::public::SenderSigningKey::from_seed(
            KeyId::new("fuzz-old-sender").unwrap(),
            &[0x52; 32],
            KeyState::Primary,
        )
        .unwrap()],
    )
    .unwrap();
    let by_retired = public_sealer(Suite::Aes256Gcm, 8, Kem::X25519HkdfSha256)
        .seal(&retired, b"old", &context)
        .unwrap();
    vec![
        ("valid-v2-x25519-aes".into(), x25519),
        ("valid-v2-xwing-chacha".into(), xwing),
        ("valid-v2-not-before".into(), public_scheduled),
        ("v2-truncated".into(), public_truncated),
        ("v2-bit-flipped".into(), public_flipped),
        ("v2-retired-sender".into(), by_retired),
        (
            "v2-prefix-only".into(),
            [&MAGIC[..], &[2, 1, 0, 11, 11]].concat(),
        ),
        ("valid-aes".into(), aes),
        ("valid-chacha".into(), chacha),
        ("valid-empty".into(), empty),
        ("valid-not-before".into(), scheduled),
        ("truncated".into(), truncated),
        ("bit-flipped".into(), flipped),
        ("magic-only".into(), MAGIC.to_vec()),
        ("plain-json".into(), br#"{"order":1}"#.to_vec()),
    ]
}

#[test]
fn the_corpus_replays_through_the_fuzz_check() {
    if std::env::var_os("QUEUE_CRYPTO_WRITE_CORPUS").is_some() {
        std::fs::create_dir_all(corpus()).unwrap();
        for (name, bytes) in seeds() {
            std::fs::write(corpus().join(name), bytes).unwrap();
        }
    }
    let keys = harness::keys();
    let context = harness::context();
    let mut valid = 0;
    let mut refused = 0;
    for entry in std::fs::read_dir(corpus()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let data = std::fs::read(&path).unwrap();
        let opened = harness::check(&keys, &context, &data);
        if name.starts_with("valid-") {
            assert!(opened.is_some(), "seed {name} must open");
            valid += 1;
        } else {
            assert!(opened.is_none(), "corpus input {name} opened: a forgery");
            refused += 1;
        }
    }
    assert!(
        valid >= 7 && refused >= 8,
        "the corpus lost its seeds: {valid} valid, {refused} refused"
    );
}
