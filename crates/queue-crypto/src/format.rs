//! The byte layout of an envelope, version 1 (docs/envelope.md, "Byte layout").
//!
//! ```text
//! offset      size  field
//! 0           4     magic 0xF5 'Q' 'R' 'E'
//! 4           1     version = 1
//! 5           1     suite: 1 = AES-256-GCM, 2 = ChaCha20-Poly1305
//! 6           1     flags: bit 0 = not-before present; bits 1..7 must be 0
//! 7           1     key id length n, 1..=64
//! 8           n     key id, ASCII 0x21..=0x7E
//! 8+n         32    envelope id (the HKDF salt), random
//! 40+n        8     sealed at: milliseconds since the Unix epoch, big-endian
//! 48+n        8     not before (only when flag bit 0 is set), same encoding
//! ...         32    key commitment
//! header_len  ...   ciphertext (as long as the plaintext), then the 16-byte tag
//! ```

use std::time::{Duration, SystemTime};

use crate::error::{CryptoError, Result};
use crate::keys::{MAX_KEY_ID_LEN, check_key_id};

/// The first four bytes of every envelope. `0xF5` never occurs in UTF-8, so no text body starts
/// with it.
pub const MAGIC: [u8; 4] = [0xF5, b'Q', b'R', b'E'];

/// The format version this build writes and reads.
pub const VERSION: u8 = 1;

/// The length of the envelope id (the HKDF salt).
pub const ENVELOPE_ID_LEN: usize = 32;

/// The length of the key commitment.
pub const COMMITMENT_LEN: usize = 32;

/// The length of the AEAD tag (both suites).
pub const TAG_LEN: usize = 16;

/// The flag bit saying a not-before time follows the seal time.
pub(crate) const FLAG_NOT_BEFORE: u8 = 0b0000_0001;

/// The fixed part before the key id: magic, version, suite, flags, key id length.
const PREFIX_LEN: usize = 8;

/// The shortest header: a one-byte key id, no not-before.
pub const MIN_HEADER_LEN: usize = PREFIX_LEN + 1 + ENVELOPE_ID_LEN + 8 + COMMITMENT_LEN;

/// The longest header: a 64-byte key id and a not-before time.
pub const MAX_HEADER_LEN: usize =
    PREFIX_LEN + MAX_KEY_ID_LEN + ENVELOPE_ID_LEN + 8 + 8 + COMMITMENT_LEN;

/// The largest plaintext sealed: 100 MiB, the largest message Service Bus premium accepts.
pub const MAX_PLAINTEXT_LEN: usize = 100 * 1024 * 1024;

/// The largest envelope opened; anything longer is refused before it is read.
pub const MAX_ENVELOPE_LEN: usize = MAX_HEADER_LEN + MAX_PLAINTEXT_LEN + TAG_LEN;

/// An AEAD cipher suite, identified in the header by one byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Suite {
    /// AES-256-GCM (suite id 1): the default, fastest where AES instructions exist.
    #[default]
    Aes256Gcm,
    /// ChaCha20-Poly1305 (suite id 2): constant-time without AES instructions.
    ChaCha20Poly1305,
}

impl Suite {
    /// The suite's id in the header.
    pub const fn id(self) -> u8 {
        match self {
            Suite::Aes256Gcm => 1,
            Suite::ChaCha20Poly1305 => 2,
        }
    }

    /// The suite with this id, if known.
    pub const fn from_id(id: u8) -> Option<Self> {
        match id {
            1 => Some(Suite::Aes256Gcm),
            2 => Some(Suite::ChaCha20Poly1305),
            _ => None,
        }
    }

    pub(crate) fn algorithm(self) -> &'static ring::aead::Algorithm {
        match self {
            Suite::Aes256Gcm => &ring::aead::AES_256_GCM,
            Suite::ChaCha20Poly1305 => &ring::aead::CHACHA20_POLY1305,
        }
    }
}

/// A parsed header. Borrowed from the envelope; nothing in it is authenticated until the
/// envelope has been opened.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawHeader<'a> {
    pub(crate) suite: Suite,
    pub(crate) key_id: &'a [u8],
    pub(crate) envelope_id: &'a [u8; ENVELOPE_ID_LEN],
    pub(crate) sealed_at_ms: u64,
    pub(crate) not_before_ms: Option<u64>,
    pub(crate) commitment: &'a [u8; COMMITMENT_LEN],
    /// The header's length: the ciphertext starts here.
    pub(crate) len: usize,
}

/// Reads the header, checking in order: the size limit, the magic, the version, the suite, the
/// flags, the key id, and that a tag follows. Nothing is allocated.
pub(crate) fn parse(envelope: &[u8]) -> Result<RawHeader<'_>> {
    if envelope.len() > MAX_ENVELOPE_LEN {
        return Err(CryptoError::TooLarge {
            what: "envelope",
            size: envelope.len(),
            max: MAX_ENVELOPE_LEN,
        });
    }
    let magic_len = envelope.len().min(MAGIC.len());
    if envelope[..magic_len] != MAGIC[..magic_len] {
        return Err(CryptoError::Malformed("not a queue-runtime envelope"));
    }
    let Some(&[_, _, _, _, version, suite, flags, key_id_len]) = envelope.first_chunk::<8>() else {
        return Err(CryptoError::Malformed("truncated header"));
    };
    if version != VERSION {
        return Err(CryptoError::UnsupportedVersion(version));
    }
    let suite = Suite::from_id(suite).ok_or(CryptoError::UnsupportedSuite(suite))?;
    if flags & !FLAG_NOT_BEFORE != 0 {
        return Err(CryptoError::Malformed("reserved flag bits are set"));
    }
    let key_id_len = usize::from(key_id_len);
    if key_id_len == 0 || key_id_len > MAX_KEY_ID_LEN {
        return Err(CryptoError::Malformed("key id length out of range"));
    }
    let has_not_before = flags & FLAG_NOT_BEFORE != 0;
    let len = PREFIX_LEN
        + key_id_len
        + ENVELOPE_ID_LEN
        + 8
        + if has_not_before { 8 } else { 0 }
        + COMMITMENT_LEN;
    if envelope.len() < len + TAG_LEN {
        return Err(CryptoError::Malformed("truncated envelope"));
    }
    let mut reader = Reader {
        rest: &envelope[PREFIX_LEN..len],
    };
    let key_id = reader.take(key_id_len)?;
    check_key_id(key_id).map_err(|_| CryptoError::Malformed("key id is not printable ASCII"))?;
    let envelope_id = reader.array::<ENVELOPE_ID_LEN>()?;
    let sealed_at_ms = u64::from_be_bytes(*reader.array::<8>()?);
    let not_before_ms = if has_not_before {
        Some(u64::from_be_bytes(*reader.array::<8>()?))
    } else {
        None
    };
    let commitment = reader.array::<COMMITMENT_LEN>()?;
    Ok(RawHeader {
        suite,
        key_id,
        envelope_id,
        sealed_at_ms,
        not_before_ms,
        commitment,
        len,
    })
}

/// Writes a header, commitment included, to the end of `out`.
pub(crate) fn write_header(
    out: &mut Vec<u8>,
    suite: Suite,
    key_id: &str,
    envelope_id: &[u8; ENVELOPE_ID_LEN],
    sealed_at_ms: u64,
    not_before_ms: Option<u64>,
    commitment: &[u8; COMMITMENT_LEN],
) {
    let flags = if not_before_ms.is_some() {
        FLAG_NOT_BEFORE
    } else {
        0
    };
    out.extend_from_slice(&MAGIC);
    // Key ids are at most 64 bytes (checked by KeyId::new), so the length fits a byte.
    let key_id_len = u8::try_from(key_id.len()).unwrap_or(u8::MAX);
    out.extend_from_slice(&[VERSION, suite.id(), flags, key_id_len]);
    out.extend_from_slice(key_id.as_bytes());
    out.extend_from_slice(envelope_id);
    out.extend_from_slice(&sealed_at_ms.to_be_bytes());
    if let Some(not_before_ms) = not_before_ms {
        out.extend_from_slice(&not_before_ms.to_be_bytes());
    }
    out.extend_from_slice(commitment);
}

/// Reads fixed-size fields off a slice whose length was checked; a short read is still an
/// error, never a panic.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8]> {
        if self.rest.len() < len {
            return Err(CryptoError::Malformed("truncated header"));
        }
        let (taken, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<&'a [u8; N]> {
        self.take(N)?
            .try_into()
            .map_err(|_| CryptoError::Malformed("truncated header"))
    }
}

/// Milliseconds since the Unix epoch, as the header stores times.
pub(crate) fn to_millis(time: SystemTime) -> Result<u64> {
    let since_epoch = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|_| CryptoError::InvalidTime("times before 1970 cannot be sealed"))?;
    u64::try_from(since_epoch.as_millis())
        .map_err(|_| CryptoError::InvalidTime("the time is beyond u64 milliseconds"))
}

/// The time `ms` milliseconds after the Unix epoch.
pub(crate) fn from_millis(ms: u64) -> Result<SystemTime> {
    SystemTime::UNIX_EPOCH
        .checked_add(Duration::from_millis(ms))
        .ok_or(CryptoError::Malformed(
            "a time in the header is out of range",
        ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_sizes() {
        assert_eq!(MIN_HEADER_LEN, 81);
        assert_eq!(MAX_HEADER_LEN, 152);
    }

    #[test]
    fn a_written_header_parses_back() {
        let mut out = Vec::new();
        write_header(
            &mut out,
            Suite::ChaCha20Poly1305,
            "k-1",
            &[3; 32],
            42,
            Some(99),
            &[5; 32],
        );
        assert_eq!(out.len(), MIN_HEADER_LEN + 2 + 8);
        out.extend_from_slice(&[0; TAG_LEN]);
        let header = parse(&out).unwrap();
        assert_eq!(header.suite, Suite::ChaCha20Poly1305);
        assert_eq!(header.key_id, b"k-1");
        assert_eq!(header.envelope_id, &[3; 32]);
        assert_eq!(header.sealed_at_ms, 42);
        assert_eq!(header.not_before_ms, Some(99));
        assert_eq!(header.commitment, &[5; 32]);
        assert_eq!(header.len, out.len() - TAG_LEN);
    }

    #[test]
    fn times_convert_both_ways() {
        let time = SystemTime::UNIX_EPOCH + Duration::from_millis(1_790_000_000_123);
        assert_eq!(from_millis(to_millis(time).unwrap()).unwrap(), time);
        let before_epoch = SystemTime::UNIX_EPOCH - Duration::from_secs(1);
        assert!(matches!(
            to_millis(before_epoch),
            Err(CryptoError::InvalidTime(_))
        ));
    }
}
