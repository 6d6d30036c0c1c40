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

/// The format version of an envelope: its fifth byte, when it starts with the magic and has one.
/// For choosing which `open` to call (version 1: [`crate::open`], version 2:
/// [`crate::public::open`]); nothing about it is authenticated.
pub fn envelope_version(bytes: &[u8]) -> Option<u8> {
    match bytes {
        [m0, m1, m2, m3, version, ..] if [*m0, *m1, *m2, *m3] == MAGIC => Some(*version),
        _ => None,
    }
}

/// Checks, in order: the envelope is at most `max_len` bytes ([`TooLarge`](CryptoError::TooLarge),
/// before anything is read), it starts with the magic, and the fixed prefix of `N` bytes of its
/// version is complete (both [`Malformed`](CryptoError::Malformed)). The version byte is judged
/// only once the whole prefix is there: an input of 5 to `N - 1` bytes is `Malformed` whatever
/// its fifth byte says. Shared by every version.
pub(crate) fn read_prefix<const N: usize>(envelope: &[u8], max_len: usize) -> Result<&[u8; N]> {
    if envelope.len() > max_len {
        return Err(CryptoError::TooLarge {
            what: "envelope",
            size: envelope.len(),
            max: max_len,
        });
    }
    let magic_len = envelope.len().min(MAGIC.len());
    if envelope[..magic_len] != MAGIC[..magic_len] {
        return Err(CryptoError::Malformed("not a queue-runtime envelope"));
    }
    envelope
        .first_chunk::<N>()
        .ok_or(CryptoError::Malformed("truncated header"))
}

/// Refuses a plaintext (when sealing) or a ciphertext (when opening) longer than
/// [`MAX_PLAINTEXT_LEN`], so that opening and sealing agree on the largest message whatever the
/// header's length.
pub(crate) fn check_plaintext_len(len: usize) -> Result<()> {
    if len > MAX_PLAINTEXT_LEN {
        return Err(CryptoError::TooLarge {
            what: "plaintext",
            size: len,
            max: MAX_PLAINTEXT_LEN,
        });
    }
    Ok(())
}

/// Reads the header, checking in order: the size limit, the magic, the 8-byte prefix, the
/// version, the suite, the flags, the key id length, that a tag follows, the key id's bytes, and
/// that the ciphertext is no longer than the largest plaintext. Nothing is allocated.
pub(crate) fn parse(envelope: &[u8]) -> Result<RawHeader<'_>> {
    let &[_, _, _, _, version, suite, flags, key_id_len] =
        read_prefix::<PREFIX_LEN>(envelope, MAX_ENVELOPE_LEN)?;
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
    let mut reader = Reader::new(&envelope[PREFIX_LEN..len]);
    let key_id = reader.key_id(key_id_len)?;
    let envelope_id = reader.array::<ENVELOPE_ID_LEN>()?;
    let sealed_at_ms = reader.u64()?;
    let not_before_ms = if has_not_before {
        Some(reader.u64()?)
    } else {
        None
    };
    let commitment = reader.array::<COMMITMENT_LEN>()?;
    check_plaintext_len(envelope.len() - len - TAG_LEN)?;
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
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
    }

    pub(crate) fn take(&mut self, len: usize) -> Result<&'a [u8]> {
        if self.rest.len() < len {
            return Err(CryptoError::Malformed("truncated header"));
        }
        let (taken, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(taken)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<&'a [u8; N]> {
        self.take(N)?
            .try_into()
            .map_err(|_| CryptoError::Malformed("truncated header"))
    }

    pub(crate) fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(*self.array::<8>()?))
    }

    /// A key id of `len` bytes, checked to be printable ASCII.
    pub(crate) fn key_id(&mut self, len: usize) -> Result<&'a [u8]> {
        let id = self.take(len)?;
        check_key_id(id).map_err(|_| CryptoError::Malformed("key id is not printable ASCII"))?;
        Ok(id)
    }
}

/// Milliseconds since the Unix epoch, as the header stores times: sub-millisecond parts are
/// truncated (rounded toward the epoch), times before 1970 are refused.
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
        // Sub-millisecond parts are cut off, never rounded up.
        let sub_ms = SystemTime::UNIX_EPOCH + Duration::from_micros(1_790_000_000_123_999);
        assert_eq!(to_millis(sub_ms).unwrap(), 1_790_000_000_123);
        let before_epoch = SystemTime::UNIX_EPOCH - Duration::from_secs(1);
        assert!(matches!(
            to_millis(before_epoch),
            Err(CryptoError::InvalidTime(_))
        ));
    }
}
