//! Seal and open against raw `ring` on the same sizes, in the same run.
//!
//! The baseline makes the same `ring` calls the envelope makes (copy into a fresh buffer, seal
//! or open in place with a separate tag) on a key prepared once. The envelope adds, per
//! message: a random envelope id, HKDF-SHA256 (extract + two expands), a fresh AEAD key, the
//! header, the context encoding in the associated data, and the commitment check.

#![allow(missing_docs, clippy::expect_used)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use queue_crypto::{
    Context, Key, KeyId, KeyMaterial, KeyState, Keyset, Sealer, Suite, TAG_LEN, open,
};
use ring::aead::{Aad, LessSafeKey, NONCE_LEN, Nonce, Tag, UnboundKey};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};

const SIZES: [usize; 4] = [256, 4 * 1024, 64 * 1024, 256 * 1024];

fn keyset() -> Keyset {
    Keyset::new([Key::new(
        KeyId::new("bench-key").expect("valid id"),
        KeyMaterial::from_array([7; 32]),
        KeyState::Primary,
    )])
    .expect("valid keyset")
}

fn context() -> Context<'static> {
    Context::new("pr-events")
        .with_session_id("octo-org/widgets#42")
        .with_message_id("3f1e8d8a-8c55-4b1e-9f0e-0d4c3a2b1c00")
        .with_content_type("application/json")
        .with_property("event", "pull_request")
        .with_property("action", "opened")
}

fn counter_nonce(counter: &mut u64) -> Nonce {
    *counter += 1;
    let mut bytes = [0; NONCE_LEN];
    bytes[4..].copy_from_slice(&counter.to_be_bytes());
    Nonce::assume_unique_for_key(bytes)
}

fn zero_nonce() -> Nonce {
    Nonce::assume_unique_for_key([0; NONCE_LEN])
}

/// Measured on this machine: ring's AES-GCM (VAES/AVX2) seal runs about three times slower at
/// 64 KiB and up when the in-place region starts within the first 16 bytes of a fresh
/// allocation (offsets 0 and 8 measured), and at full speed from offset 16 on. The envelope's
/// ciphertext always starts after its header (81 bytes or more), so the baseline seals after a
/// 16-byte prefix: ring at its best, which keeps the comparison conservative.
const BASELINE_PREFIX: usize = 16;

fn ring_seal(key: &LessSafeKey, nonce: Nonce, plaintext: &[u8]) -> Vec<u8> {
    let mut buffer = Vec::with_capacity(BASELINE_PREFIX + plaintext.len() + TAG_LEN);
    buffer.resize(BASELINE_PREFIX, 0);
    buffer.extend_from_slice(plaintext);
    let tag = key
        .seal_in_place_separate_tag(nonce, Aad::empty(), &mut buffer[BASELINE_PREFIX..])
        .expect("seal");
    buffer.extend_from_slice(tag.as_ref());
    buffer
}

fn ring_open(key: &LessSafeKey, sealed: &[u8]) -> Vec<u8> {
    let (ciphertext, tag) = sealed.split_at(sealed.len() - TAG_LEN);
    let tag = Tag::try_from(tag).expect("tag");
    let mut buffer = ciphertext.to_vec();
    key.open_in_place_separate_tag(zero_nonce(), Aad::empty(), tag, &mut buffer, 0..)
        .expect("open");
    buffer
}

fn bench_suite(c: &mut Criterion, suite: Suite, name: &str) {
    let keyset = keyset();
    let context = context();
    let sealer = Sealer::new().with_suite(suite);
    let algorithm = match suite {
        Suite::ChaCha20Poly1305 => &ring::aead::CHACHA20_POLY1305,
        _ => &ring::aead::AES_256_GCM,
    };
    let raw_key = LessSafeKey::new(UnboundKey::new(algorithm, &[7; 32]).expect("key"));

    let mut group = c.benchmark_group(name);
    for size in SIZES {
        let plaintext = vec![0x5A_u8; size];
        group.throughput(Throughput::Bytes(size as u64));

        group.bench_with_input(
            BenchmarkId::new("envelope_seal", size),
            &plaintext,
            |b, plaintext| {
                b.iter(|| {
                    sealer
                        .seal(&keyset, black_box(plaintext), &context)
                        .expect("seal")
                });
            },
        );
        let mut counter = 0_u64;
        group.bench_with_input(
            BenchmarkId::new("ring_seal", size),
            &plaintext,
            |b, plaintext| {
                b.iter(|| ring_seal(&raw_key, counter_nonce(&mut counter), black_box(plaintext)));
            },
        );

        let envelope = sealer.seal(&keyset, &plaintext, &context).expect("seal");
        group.bench_with_input(
            BenchmarkId::new("envelope_open", size),
            &envelope,
            |b, envelope| {
                b.iter(|| open(&keyset, black_box(envelope), &context).expect("open"));
            },
        );
        let sealed = ring_seal(&raw_key, zero_nonce(), &plaintext).split_off(BASELINE_PREFIX);
        group.bench_with_input(BenchmarkId::new("ring_open", size), &sealed, |b, sealed| {
            b.iter(|| ring_open(&raw_key, black_box(sealed)));
        });
    }
    group.finish();
}

/// Where the fixed cost per message goes: each step the envelope takes, alone, with raw ring.
fn per_message_parts(c: &mut Criterion) {
    struct Len32;
    impl hkdf::KeyType for Len32 {
        fn len(&self) -> usize {
            32
        }
    }
    let master = [7_u8; 32];
    let salt = [9_u8; 32];
    let info: [&[u8]; 3] = [
        b"queue-runtime envelope v1 message key",
        &[1, 1, 9],
        b"bench-key",
    ];
    let random = SystemRandom::new();
    let mut group = c.benchmark_group("per_message_parts");
    group.bench_function("system_random_32_bytes", |b| {
        b.iter(|| {
            let mut salt = [0_u8; 32];
            random.fill(&mut salt).expect("random");
            salt
        });
    });
    group.bench_function("hkdf_extract", |b| {
        b.iter(|| hkdf::Salt::new(hkdf::HKDF_SHA256, black_box(&salt)).extract(&master));
    });
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &salt).extract(&master);
    group.bench_function("hkdf_expand_32_bytes", |b| {
        b.iter(|| {
            let mut out = [0_u8; 32];
            prk.expand(black_box(&info), Len32)
                .and_then(|okm| okm.fill(&mut out))
                .expect("expand");
            out
        });
    });
    group.bench_function("aes256gcm_key_setup", |b| {
        b.iter(|| {
            LessSafeKey::new(
                UnboundKey::new(&ring::aead::AES_256_GCM, black_box(&master)).expect("key"),
            )
        });
    });
    group.bench_function("chacha20poly1305_key_setup", |b| {
        b.iter(|| {
            LessSafeKey::new(
                UnboundKey::new(&ring::aead::CHACHA20_POLY1305, black_box(&master)).expect("key"),
            )
        });
    });
    group.finish();
}

fn envelope(c: &mut Criterion) {
    bench_suite(c, Suite::Aes256Gcm, "aes256gcm");
    bench_suite(c, Suite::ChaCha20Poly1305, "chacha20poly1305");
    per_message_parts(c);
}

criterion_group!(benches, envelope);
criterion_main!(benches);
