//! The HPKE layer of the version 2 envelope against published known-answer vectors, with the
//! same `hpke` types the envelope instantiates, and through the crate's own key types:
//!
//! - `data/hpke-rfc9180.json`: RFC 9180's test vectors for the two X25519 suites we use (base
//!   mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM and ChaCha20-Poly1305), taken
//!   unchanged from the RFC's `test-vectors.json` (the copy in the pyhpke 0.6.5 source
//!   distribution, byte-identical to the CFRG draft repository's file);
//! - `data/hpke-xwing.json`: the HPKE vector of draft-ietf-hpke-pq for X-Wing with HKDF-SHA256
//!   and ChaCha20-Poly1305 (the draft's `test-vectors.json`; it has no X-Wing vector with
//!   AES-256-GCM, whose key schedule and AEAD the RFC 9180 vectors already cover);
//! - `data/xwing-kem.json`: the X-Wing KEM vectors of draft-connolly-cfrg-xwing-kem, as the
//!   `x-wing` 0.1.1 crate ships them.
//!
//! Every encryption (sequence numbers 0 to 256) and every export of each vector is reproduced.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::path::PathBuf;

use hpke::aead::{Aead, AesGcm256, ChaCha20Poly1305};
use hpke::kdf::HkdfSha256;
use hpke::kem::{X25519HkdfSha256, XWing};
use hpke::rand_core::{TryCryptoRng, TryRng};
use hpke::{Deserializable, Kem, OpModeR, OpModeS, Serializable};
use queue_crypto::public::{self, RecipientKeyPair};
use queue_crypto::{KeyId, KeyState};
use serde::Deserialize;

#[derive(Deserialize)]
struct Vector {
    mode: u8,
    kem_id: u16,
    kdf_id: u16,
    aead_id: u16,
    info: String,
    #[serde(rename = "ikmR")]
    ikm_r: String,
    #[serde(rename = "ikmE")]
    ikm_e: String,
    #[serde(rename = "skRm")]
    sk_r: String,
    #[serde(rename = "pkRm")]
    pk_r: String,
    enc: String,
    shared_secret: String,
    encryptions: Vec<Encryption>,
    exports: Vec<Export>,
}

#[derive(Deserialize)]
struct Encryption {
    aad: String,
    ct: String,
    pt: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
struct Export {
    exporter_context: String,
    #[serde(rename = "L")]
    len: usize,
    exported_value: String,
}

#[derive(Deserialize)]
struct XWingKemVector {
    seed: String,
    eseed: String,
    ss: String,
    sk: String,
    pk: String,
    ct: String,
}

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn load<T: for<'de> Deserialize<'de>>(name: &str) -> T {
    serde_json::from_str(&std::fs::read_to_string(data(name)).unwrap()).unwrap()
}

fn bytes(text: &str) -> Vec<u8> {
    hex::decode(text).unwrap()
}

/// Hands out fixed bytes as the KEM's randomness, and insists that all were taken.
struct Fixed(Vec<u8>);

impl TryRng for Fixed {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        unreachable!("HPKE draws bytes, not words")
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        unreachable!("HPKE draws bytes, not words")
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        assert!(
            dst.len() <= self.0.len(),
            "the KEM asked for more randomness"
        );
        dst.copy_from_slice(&self.0[..dst.len()]);
        self.0.drain(..dst.len());
        Ok(())
    }
}

impl TryCryptoRng for Fixed {}

/// One vector, end to end: key derivation, encapsulation with the vector's ephemeral input,
/// every encryption and export on the sender's side, every decryption and export on the
/// recipient's side.
fn check<A: Aead, K: Kem>(vector: &Vector) {
    assert_eq!(vector.mode, 0, "base mode only");
    assert_eq!(vector.kdf_id, 1, "HKDF-SHA256 only");
    assert_eq!((vector.kem_id, vector.aead_id), (K::KEM_ID, A::AEAD_ID));
    let info = bytes(&vector.info);

    let (sk_r, pk_r) = K::derive_keypair(&bytes(&vector.ikm_r));
    assert_eq!(pk_r.to_bytes().to_vec(), bytes(&vector.pk_r), "pkRm");
    // skRm parses to the same public key (hpke serializes X25519 scalars clamped).
    let parsed = K::PrivateKey::from_bytes(&bytes(&vector.sk_r)).unwrap();
    assert_eq!(K::sk_to_pk(&parsed).to_bytes(), pk_r.to_bytes());

    let mut random = Fixed(bytes(&vector.ikm_e));
    let (enc, mut sender) =
        hpke::setup_sender_with_rng::<A, HkdfSha256, K>(&OpModeS::Base, &pk_r, &info, &mut random)
            .unwrap();
    assert!(random.0.is_empty(), "the KEM took all of ikmE");
    assert_eq!(enc.to_bytes().to_vec(), bytes(&vector.enc), "enc");

    let (shared, _) = K::encap_with_rng(&pk_r, None, &mut Fixed(bytes(&vector.ikm_e))).unwrap();
    assert_eq!(
        shared.0.to_vec(),
        bytes(&vector.shared_secret),
        "shared_secret"
    );

    let mut recipient =
        hpke::setup_receiver::<A, HkdfSha256, K>(&OpModeR::Base, &sk_r, &enc, &info).unwrap();
    for (sequence, encryption) in vector.encryptions.iter().enumerate() {
        let aad = bytes(&encryption.aad);
        let mut buffer = bytes(&encryption.pt);
        let tag = sender
            .seal_inout_detached((&mut buffer[..]).into(), &aad)
            .unwrap();
        buffer.extend_from_slice(&tag.to_bytes());
        assert_eq!(hex::encode(&buffer), encryption.ct, "encryption {sequence}");
        let split = buffer.len() - 16;
        let (ciphertext, tag) = buffer.split_at_mut(split);
        let tag = hpke::aead::AeadTag::<A>::from_bytes(tag).unwrap();
        recipient
            .open_inout_detached(ciphertext.into(), &aad, &tag)
            .unwrap();
        assert_eq!(
            hex::encode(ciphertext),
            encryption.pt,
            "decryption {sequence}"
        );
    }
    for export in &vector.exports {
        let mut out = vec![0; export.len];
        sender
            .export(&bytes(&export.exporter_context), &mut out)
            .unwrap();
        assert_eq!(hex::encode(&out), export.exported_value);
        recipient
            .export(&bytes(&export.exporter_context), &mut out)
            .unwrap();
        assert_eq!(hex::encode(&out), export.exported_value);
    }
}

#[test]
fn rfc_9180_vectors_of_the_x25519_suites_reproduce() {
    let vectors: Vec<Vector> = load("hpke-rfc9180.json");
    let mut checked = Vec::new();
    for vector in &vectors {
        match vector.aead_id {
            2 => check::<AesGcm256, X25519HkdfSha256>(vector),
            3 => check::<ChaCha20Poly1305, X25519HkdfSha256>(vector),
            other => panic!("unexpected AEAD {other}"),
        }
        assert_eq!(vector.encryptions.len(), 257);
        checked.push(vector.aead_id);
    }
    assert_eq!(checked, [2, 3], "both X25519 suites have their vector");
}

#[test]
fn the_x_wing_hpke_vector_of_draft_ietf_hpke_pq_reproduces() {
    let vectors: Vec<Vector> = load("hpke-xwing.json");
    assert_eq!(vectors.len(), 1);
    check::<ChaCha20Poly1305, XWing>(&vectors[0]);
}

#[test]
fn the_x_wing_kem_vectors_reproduce_through_the_crate_key_types() {
    let vectors: Vec<XWingKemVector> = load("xwing-kem.json");
    assert!(vectors.len() >= 3);
    for vector in &vectors {
        assert_eq!(
            vector.sk, vector.seed,
            "X-Wing private keys are their seeds"
        );
        // queue-crypto's key pair from the 32-byte seed has the vector's public key.
        let pair = RecipientKeyPair::from_private_key(
            KeyId::new("xwing").unwrap(),
            public::Kem::XWing,
            &bytes(&vector.sk),
            KeyState::Primary,
        )
        .unwrap();
        assert_eq!(hex::encode(pair.public_key().as_bytes()), vector.pk);
        // Encapsulation with the vector's eseed gives its ciphertext and shared secret.
        let pk = <XWing as Kem>::PublicKey::from_bytes(&bytes(&vector.pk)).unwrap();
        let (shared, ct) =
            XWing::encap_with_rng(&pk, None, &mut Fixed(bytes(&vector.eseed))).unwrap();
        assert_eq!(hex::encode(ct.to_bytes()), vector.ct);
        assert_eq!(hex::encode(shared.0), vector.ss);
        let sk = <XWing as Kem>::PrivateKey::from_bytes(&bytes(&vector.sk)).unwrap();
        let decapsulated = XWing::decap(&sk, None, &ct).unwrap();
        assert_eq!(hex::encode(decapsulated.0), vector.ss);
    }
}

#[test]
fn the_rfc_x25519_recipient_key_through_the_crate_key_types() {
    let vectors: Vec<Vector> = load("hpke-rfc9180.json");
    let vector = &vectors[0];
    let pair = RecipientKeyPair::from_private_key(
        KeyId::new("rfc").unwrap(),
        public::Kem::X25519HkdfSha256,
        &bytes(&vector.sk_r),
        KeyState::Primary,
    )
    .unwrap();
    assert_eq!(hex::encode(pair.public_key().as_bytes()), vector.pk_r);
}
