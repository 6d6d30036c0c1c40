//! The byte layout of a version 2 envelope (docs/envelope.md, "Version 2").
//!
//! ```text
//! offset      size  field
//! 0           4     magic 0xF5 'Q' 'R' 'E'
//! 4           1     version = 2
//! 5           1     suite: 1..=4 (HpkeSuite)
//! 6           1     flags: bit 0 = not-before present; bits 1..7 must be 0
//! 7           1     recipient key id length r, 1..=64
//! 8           1     sender key id length s, 1..=64
//! 9           r     recipient key id, ASCII 0x21..=0x7E
//! 9+r         s     sender key id, ASCII 0x21..=0x7E
//! 9+r+s       32    envelope id, random
//! 41+r+s      8     sealed at: milliseconds since the Unix epoch, big-endian
//! 49+r+s      8     not before (only when flag bit 0 is set), same encoding
//! ...         Nenc  enc: the HPKE encapsulated key (32 bytes X25519, 1120 bytes X-Wing)
//! header_len  ...   HPKE ciphertext (as long as the plaintext), then the 16-byte tag
//! end - 64    64    Ed25519 signature
//! ```

use super::suite::{HpkeSuite, Kem};
use crate::error::{CryptoError, Result};
use crate::format::{
    ENVELOPE_ID_LEN, FLAG_NOT_BEFORE, MAGIC, MAX_PLAINTEXT_LEN, Reader, TAG_LEN,
    check_plaintext_len, read_prefix,
};
use crate::keys::MAX_KEY_ID_LEN;

/// The format version of the public-key envelope.
pub const VERSION: u8 = 2;

/// The length of the sender's Ed25519 signature, the last bytes of the envelope.
pub const SIGNATURE_LEN: usize = 64;

/// The HPKE `info` of every version 2 envelope (ASCII, no terminator).
pub const HPKE_INFO: &[u8] = b"queue-runtime envelope v2";

/// What the sender's signature starts with (ASCII, no terminator), so that a signing key used
/// for these envelopes signs nothing that means something elsewhere.
pub const SIGNATURE_LABEL: &[u8] = b"queue-runtime envelope v2 signature";

/// Magic, version, suite, flags and the two key id lengths.
const PREFIX_LEN: usize = 9;

/// The shortest header: one-byte key ids, no not-before, an X25519 `enc`.
pub const MIN_HEADER_LEN: usize =
    PREFIX_LEN + 1 + 1 + ENVELOPE_ID_LEN + 8 + Kem::X25519HkdfSha256.enc_len();

/// The longest header: 64-byte key ids, a not-before time, an X-Wing `enc`.
pub const MAX_HEADER_LEN: usize =
    PREFIX_LEN + 2 * MAX_KEY_ID_LEN + ENVELOPE_ID_LEN + 8 + 8 + Kem::XWing.enc_len();

/// The largest version 2 envelope opened; anything longer is refused before it is read.
pub const MAX_ENVELOPE_LEN: usize = MAX_HEADER_LEN + MAX_PLAINTEXT_LEN + TAG_LEN + SIGNATURE_LEN;

/// A parsed header, borrowed from the envelope. Nothing in it is authenticated until the
/// signature has been verified.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawHeader<'a> {
    pub(crate) suite: HpkeSuite,
    pub(crate) recipient_key_id: &'a [u8],
    pub(crate) sender_key_id: &'a [u8],
    pub(crate) envelope_id: &'a [u8; ENVELOPE_ID_LEN],
    pub(crate) sealed_at_ms: u64,
    pub(crate) not_before_ms: Option<u64>,
    pub(crate) enc: &'a [u8],
    /// The header's length: the HPKE ciphertext starts here.
    pub(crate) len: usize,
}

impl RawHeader<'_> {
    /// The ciphertext's length without its tag: the plaintext's length, if it opens.
    pub(crate) fn ciphertext_len(&self, envelope_len: usize) -> usize {
        envelope_len - self.len - TAG_LEN - SIGNATURE_LEN
    }
}

/// Reads the header, checking in order: the size limit, the magic, the 9-byte prefix, the
/// version, the suite, the flags, the key id lengths, that a tag and a signature follow, the key
/// ids' bytes, and that the ciphertext is no longer than the largest plaintext.
pub(crate) fn parse(envelope: &[u8]) -> Result<RawHeader<'_>> {
    let &[_, _, _, _, version, suite, flags, recipient_len, sender_len] =
        read_prefix::<PREFIX_LEN>(envelope, MAX_ENVELOPE_LEN)?;
    if version != VERSION {
        return Err(CryptoError::UnsupportedVersion(version));
    }
    let suite = HpkeSuite::from_id(suite).ok_or(CryptoError::UnsupportedSuite(suite))?;
    if flags & !FLAG_NOT_BEFORE != 0 {
        return Err(CryptoError::Malformed("reserved flag bits are set"));
    }
    let recipient_len = usize::from(recipient_len);
    let sender_len = usize::from(sender_len);
    for len in [recipient_len, sender_len] {
        if len == 0 || len > MAX_KEY_ID_LEN {
            return Err(CryptoError::Malformed("key id length out of range"));
        }
    }
    let has_not_before = flags & FLAG_NOT_BEFORE != 0;
    let len = PREFIX_LEN
        + recipient_len
        + sender_len
        + ENVELOPE_ID_LEN
        + 8
        + if has_not_before { 8 } else { 0 }
        + suite.kem().enc_len();
    if envelope.len() < len + TAG_LEN + SIGNATURE_LEN {
        return Err(CryptoError::Malformed("truncated envelope"));
    }
    let mut reader = Reader::new(&envelope[PREFIX_LEN..len]);
    let recipient_key_id = reader.key_id(recipient_len)?;
    let sender_key_id = reader.key_id(sender_len)?;
    let envelope_id = reader.array::<ENVELOPE_ID_LEN>()?;
    let sealed_at_ms = reader.u64()?;
    let not_before_ms = if has_not_before {
        Some(reader.u64()?)
    } else {
        None
    };
    let enc = reader.take(suite.kem().enc_len())?;
    let header = RawHeader {
        suite,
        recipient_key_id,
        sender_key_id,
        envelope_id,
        sealed_at_ms,
        not_before_ms,
        enc,
        len,
    };
    check_plaintext_len(header.ciphertext_len(envelope.len()))?;
    Ok(header)
}

/// The header fields a sealer writes.
pub(crate) struct HeaderFields<'a> {
    pub(crate) suite: HpkeSuite,
    pub(crate) recipient_key_id: &'a str,
    pub(crate) sender_key_id: &'a str,
    pub(crate) envelope_id: &'a [u8; ENVELOPE_ID_LEN],
    pub(crate) sealed_at_ms: u64,
    pub(crate) not_before_ms: Option<u64>,
}

impl HeaderFields<'_> {
    /// The header with this `enc`, in a buffer with room for `body_len` more bytes.
    pub(crate) fn write(&self, enc: &[u8], body_len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAX_HEADER_LEN + body_len + TAG_LEN + SIGNATURE_LEN);
        let flags = if self.not_before_ms.is_some() {
            FLAG_NOT_BEFORE
        } else {
            0
        };
        // Key ids are at most 64 bytes (checked by KeyId::new), so the lengths fit a byte.
        let id_len = |id: &str| u8::try_from(id.len()).unwrap_or(u8::MAX);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&[
            VERSION,
            self.suite.id(),
            flags,
            id_len(self.recipient_key_id),
            id_len(self.sender_key_id),
        ]);
        out.extend_from_slice(self.recipient_key_id.as_bytes());
        out.extend_from_slice(self.sender_key_id.as_bytes());
        out.extend_from_slice(self.envelope_id);
        out.extend_from_slice(&self.sealed_at_ms.to_be_bytes());
        if let Some(not_before_ms) = self.not_before_ms {
            out.extend_from_slice(&not_before_ms.to_be_bytes());
        }
        out.extend_from_slice(enc);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Suite;

    #[test]
    fn header_sizes() {
        assert_eq!(MIN_HEADER_LEN, 83);
        assert_eq!(MAX_HEADER_LEN, 1305);
    }

    #[test]
    fn a_written_header_parses_back() {
        let fields = HeaderFields {
            suite: HpkeSuite::new(Kem::XWing, Suite::ChaCha20Poly1305),
            recipient_key_id: "r-1",
            sender_key_id: "sender",
            envelope_id: &[3; 32],
            sealed_at_ms: 42,
            not_before_ms: Some(99),
        };
        let mut out = fields.write(&[7; 1120], 0);
        assert_eq!(out.len(), 9 + 3 + 6 + 32 + 16 + 1120);
        let header_len = out.len();
        out.extend_from_slice(&[0; TAG_LEN + SIGNATURE_LEN]);
        let header = parse(&out).unwrap();
        assert_eq!(header.suite.id(), 4);
        assert_eq!(header.recipient_key_id, b"r-1");
        assert_eq!(header.sender_key_id, b"sender");
        assert_eq!(header.envelope_id, &[3; 32]);
        assert_eq!(header.sealed_at_ms, 42);
        assert_eq!(header.not_before_ms, Some(99));
        assert_eq!(header.enc, &[7; 1120][..]);
        assert_eq!(header.len, header_len);
        assert_eq!(header.ciphertext_len(out.len()), 0);
        // One byte short of a tag and a signature.
        out.pop();
        assert!(matches!(parse(&out), Err(CryptoError::Malformed(_))));
    }
}
