//! The one place the `hpke` crate is called: its generic API, dispatched on our suites.
//!
//! Base mode, HKDF-SHA256, `info` = [`HPKE_INFO`], one message per encapsulation (sequence
//! number 0).

use hpke::aead::{Aead as HpkeAead, AeadTag, AesGcm256, ChaCha20Poly1305};
use hpke::kdf::HkdfSha256;
use hpke::kem::{X25519HkdfSha256, XWing};
use hpke::{Deserializable, Kem as HpkeKem, OpModeR, OpModeS, Serializable};
use zeroize::Zeroize;

use super::format::HPKE_INFO;
use super::suite::Kem;
use crate::error::{CryptoError, Result};
use crate::format::Suite;
use crate::random::Drawn;

/// A recipient's private key, parsed once (an X-Wing key is expanded from its seed here). Both
/// variants wipe themselves when dropped.
pub(crate) enum PrivateKey {
    X25519(<X25519HkdfSha256 as HpkeKem>::PrivateKey),
    // Boxed: an expanded X-Wing key is about 1.6 KiB, an X25519 key 32 bytes.
    XWing(Box<<XWing as HpkeKem>::PrivateKey>),
}

/// A recipient's public key, parsed once.
#[derive(Clone)]
pub(crate) enum PublicKey {
    X25519(<X25519HkdfSha256 as HpkeKem>::PublicKey),
    XWing(Box<<XWing as HpkeKem>::PublicKey>),
}

fn invalid(what: &str, kem: Kem) -> CryptoError {
    CryptoError::InvalidKey(format!("not a valid {kem} {what}"))
}

impl PrivateKey {
    /// A private key from its serialization: 32 bytes for both KEMs (an X25519 scalar, an X-Wing
    /// seed).
    pub(crate) fn from_bytes(kem: Kem, bytes: &[u8]) -> Result<Self> {
        match kem {
            Kem::X25519HkdfSha256 => Deserializable::from_bytes(bytes).map(PrivateKey::X25519),
            Kem::XWing => {
                Deserializable::from_bytes(bytes).map(|sk| PrivateKey::XWing(Box::new(sk)))
            }
        }
        .map_err(|_| invalid("private key", kem))
    }

    pub(crate) fn public_key(&self) -> PublicKey {
        match self {
            PrivateKey::X25519(sk) => PublicKey::X25519(X25519HkdfSha256::sk_to_pk(sk)),
            PrivateKey::XWing(sk) => PublicKey::XWing(Box::new(XWing::sk_to_pk(sk))),
        }
    }
}

impl PublicKey {
    pub(crate) fn from_bytes(kem: Kem, bytes: &[u8]) -> Result<Self> {
        match kem {
            Kem::X25519HkdfSha256 => Deserializable::from_bytes(bytes).map(PublicKey::X25519),
            Kem::XWing => {
                Deserializable::from_bytes(bytes).map(|pk| PublicKey::XWing(Box::new(pk)))
            }
        }
        .map_err(|_| invalid("public key", kem))
    }

    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        match self {
            PublicKey::X25519(pk) => pk.to_bytes().to_vec(),
            PublicKey::XWing(pk) => pk.to_bytes().to_vec(),
        }
    }
}

/// Encapsulates to `recipient` with exactly `randomness`, hands `enc` to `frame`, which returns
/// the envelope so far (the header) and the associated data, then seals `plaintext` after the
/// header and appends the tag. Returns the envelope so far and the associated data.
pub(crate) fn seal(
    aead: Suite,
    recipient: &PublicKey,
    randomness: &[u8],
    plaintext: &[u8],
    frame: impl FnOnce(&[u8]) -> Result<(Vec<u8>, Vec<u8>)>,
) -> Result<(Vec<u8>, Vec<u8>)> {
    match (recipient, aead) {
        (PublicKey::X25519(pk), Suite::Aes256Gcm) => {
            seal_with::<AesGcm256, X25519HkdfSha256>(pk, randomness, plaintext, frame)
        }
        (PublicKey::X25519(pk), Suite::ChaCha20Poly1305) => {
            seal_with::<ChaCha20Poly1305, X25519HkdfSha256>(pk, randomness, plaintext, frame)
        }
        (PublicKey::XWing(pk), Suite::Aes256Gcm) => {
            seal_with::<AesGcm256, XWing>(pk, randomness, plaintext, frame)
        }
        (PublicKey::XWing(pk), Suite::ChaCha20Poly1305) => {
            seal_with::<ChaCha20Poly1305, XWing>(pk, randomness, plaintext, frame)
        }
    }
}

fn seal_with<A: HpkeAead, K: HpkeKem>(
    recipient: &K::PublicKey,
    randomness: &[u8],
    plaintext: &[u8],
    frame: impl FnOnce(&[u8]) -> Result<(Vec<u8>, Vec<u8>)>,
) -> Result<(Vec<u8>, Vec<u8>)> {
    let mut random = Drawn::new(randomness);
    let (enc, mut context) = hpke::setup_sender_with_rng::<A, HkdfSha256, K>(
        &OpModeS::Base,
        recipient,
        HPKE_INFO,
        &mut random,
    )
    // An X25519 public key of low order gives an all-zero shared secret, which HPKE refuses.
    .map_err(|_| CryptoError::InvalidKey("the recipient public key cannot be used".into()))?;
    random.finish()?;
    let (mut out, aad) = frame(&enc.to_bytes())?;
    let start = out.len();
    out.extend_from_slice(plaintext);
    let tag = context
        .seal_inout_detached((&mut out[start..]).into(), &aad)
        // Refused only beyond the AEAD's input limit, far above MAX_PLAINTEXT_LEN.
        .map_err(|_| CryptoError::TooLarge {
            what: "plaintext",
            size: plaintext.len(),
            max: crate::format::MAX_PLAINTEXT_LEN,
        })?;
    out.extend_from_slice(&tag.to_bytes());
    Ok((out, aad))
}

/// Decapsulates `enc` with `recipient` and opens `ciphertext` (without its tag) under `aad`.
/// Every failure, a key of the other KEM included, is [`CryptoError::DecryptFailed`]; no
/// plaintext leaves a failed open.
pub(crate) fn open(
    aead: Suite,
    recipient: &PrivateKey,
    enc: &[u8],
    aad: &[u8],
    ciphertext: &[u8],
    tag: &[u8],
) -> Result<Vec<u8>> {
    match (recipient, aead) {
        (PrivateKey::X25519(sk), Suite::Aes256Gcm) => {
            open_with::<AesGcm256, X25519HkdfSha256>(sk, enc, aad, ciphertext, tag)
        }
        (PrivateKey::X25519(sk), Suite::ChaCha20Poly1305) => {
            open_with::<ChaCha20Poly1305, X25519HkdfSha256>(sk, enc, aad, ciphertext, tag)
        }
        (PrivateKey::XWing(sk), Suite::Aes256Gcm) => {
            open_with::<AesGcm256, XWing>(sk, enc, aad, ciphertext, tag)
        }
        (PrivateKey::XWing(sk), Suite::ChaCha20Poly1305) => {
            open_with::<ChaCha20Poly1305, XWing>(sk, enc, aad, ciphertext, tag)
        }
    }
}

fn open_with<A: HpkeAead, K: HpkeKem>(
    recipient: &K::PrivateKey,
    enc: &[u8],
    aad: &[u8],
    ciphertext: &[u8],
    tag: &[u8],
) -> Result<Vec<u8>> {
    let enc = K::EncappedKey::from_bytes(enc).map_err(|_| CryptoError::DecryptFailed)?;
    let tag = AeadTag::<A>::from_bytes(tag).map_err(|_| CryptoError::DecryptFailed)?;
    let mut context =
        hpke::setup_receiver::<A, HkdfSha256, K>(&OpModeR::Base, recipient, &enc, HPKE_INFO)
            .map_err(|_| CryptoError::DecryptFailed)?;
    let mut plaintext = ciphertext.to_vec();
    if context
        .open_inout_detached((&mut plaintext[..]).into(), aad, &tag)
        .is_err()
    {
        // The buffer is in an undefined state after a failure: nothing of it may escape.
        plaintext.zeroize();
        return Err(CryptoError::DecryptFailed);
    }
    Ok(plaintext)
}
