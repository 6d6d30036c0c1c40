//! The HPKE suites of version 2: a KEM and an AEAD, always with HKDF-SHA256.

use std::fmt;

use crate::format::Suite;

/// A key encapsulation mechanism: what kind of recipient key pair a queue has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Kem {
    /// DHKEM(X25519, HKDF-SHA256), RFC 9180 (HPKE KEM id `0x0020`): the default.
    #[default]
    X25519HkdfSha256,
    /// X-Wing, the hybrid of ML-KEM-768 and X25519 (HPKE KEM id `0x647a`): confidential even
    /// against someone who records the queue today and has a quantum computer later.
    XWing,
}

impl Kem {
    /// The KEM's id in the HPKE registry.
    pub const fn hpke_id(self) -> u16 {
        match self {
            Kem::X25519HkdfSha256 => 0x0020,
            Kem::XWing => 0x647a,
        }
    }

    /// Its name in keyset files and logs: `x25519` or `x-wing`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Kem::X25519HkdfSha256 => "x25519",
            Kem::XWing => "x-wing",
        }
    }

    /// The KEM [`as_str`](Self::as_str) names `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        [Kem::X25519HkdfSha256, Kem::XWing]
            .into_iter()
            .find(|kem| kem.as_str() == name)
    }

    /// The length of a serialized public key: 32 or 1216 bytes.
    pub const fn public_key_len(self) -> usize {
        match self {
            Kem::X25519HkdfSha256 => 32,
            Kem::XWing => 1216,
        }
    }

    /// The length of a serialized private key (an X25519 scalar, an X-Wing seed): 32 bytes.
    pub const fn private_key_len(self) -> usize {
        32
    }

    /// The length of the encapsulated key (`enc`) in the header: 32 or 1120 bytes.
    pub const fn enc_len(self) -> usize {
        match self {
            Kem::X25519HkdfSha256 => 32,
            Kem::XWing => 1120,
        }
    }

    /// How many random bytes one encapsulation takes: 32 (the `ikmE` of an ephemeral X25519 key
    /// pair) or 64 (the X-Wing `eseed`).
    pub const fn randomness_len(self) -> usize {
        match self {
            Kem::X25519HkdfSha256 => 32,
            Kem::XWing => 64,
        }
    }
}

impl fmt::Display for Kem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A version 2 suite, named in the header by one byte: a [`Kem`], HKDF-SHA256, and an AEAD
/// ([`Suite`], the same two as version 1).
///
/// | Byte | KEM | KDF | AEAD | HPKE ids |
/// |---|---|---|---|---|
/// | 1 | DHKEM(X25519, HKDF-SHA256) | HKDF-SHA256 | AES-256-GCM | `0x0020`, `0x0001`, `0x0002` |
/// | 2 | DHKEM(X25519, HKDF-SHA256) | HKDF-SHA256 | ChaCha20-Poly1305 | `0x0020`, `0x0001`, `0x0003` |
/// | 3 | X-Wing | HKDF-SHA256 | AES-256-GCM | `0x647a`, `0x0001`, `0x0002` |
/// | 4 | X-Wing | HKDF-SHA256 | ChaCha20-Poly1305 | `0x647a`, `0x0001`, `0x0003` |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct HpkeSuite {
    kem: Kem,
    aead: Suite,
}

impl HpkeSuite {
    /// The suite of this KEM and AEAD.
    pub const fn new(kem: Kem, aead: Suite) -> Self {
        HpkeSuite { kem, aead }
    }

    /// The KEM.
    pub const fn kem(self) -> Kem {
        self.kem
    }

    /// The AEAD.
    pub const fn aead(self) -> Suite {
        self.aead
    }

    /// The suite's byte in the header.
    pub const fn id(self) -> u8 {
        let kem = match self.kem {
            Kem::X25519HkdfSha256 => 0,
            Kem::XWing => 2,
        };
        kem + self.aead.id()
    }

    /// The suite with this byte, if known.
    pub const fn from_id(id: u8) -> Option<Self> {
        let (kem, aead) = match id {
            1 => (Kem::X25519HkdfSha256, Suite::Aes256Gcm),
            2 => (Kem::X25519HkdfSha256, Suite::ChaCha20Poly1305),
            3 => (Kem::XWing, Suite::Aes256Gcm),
            4 => (Kem::XWing, Suite::ChaCha20Poly1305),
            _ => return None,
        };
        Some(HpkeSuite { kem, aead })
    }

    /// The HPKE identifiers (KEM, KDF, AEAD) of RFC 9180 section 7.
    pub const fn hpke_ids(self) -> (u16, u16, u16) {
        let aead = match self.aead {
            Suite::Aes256Gcm => 0x0002,
            Suite::ChaCha20Poly1305 => 0x0003,
        };
        (self.kem.hpke_id(), 0x0001, aead)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suite_bytes_round_trip() {
        for id in 1..=4 {
            let suite = HpkeSuite::from_id(id).unwrap();
            assert_eq!(suite.id(), id);
            assert_eq!(HpkeSuite::new(suite.kem(), suite.aead()), suite);
        }
        for id in [0, 5, 0xFF] {
            assert_eq!(HpkeSuite::from_id(id), None);
        }
        assert_eq!(HpkeSuite::default().id(), 1);
        assert_eq!(HpkeSuite::from_id(3).unwrap().hpke_ids(), (0x647a, 1, 2));
    }

    #[test]
    fn kem_names_round_trip() {
        for kem in [Kem::X25519HkdfSha256, Kem::XWing] {
            assert_eq!(Kem::from_name(kem.as_str()), Some(kem));
        }
        assert_eq!(Kem::from_name("kyber"), None);
    }
}
