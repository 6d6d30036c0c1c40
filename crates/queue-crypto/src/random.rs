//! Where the random bytes of a seal come from: the envelope id of both versions, and the
//! ephemeral KEM randomness of version 2.
//!
//! Production code always draws from `ring`'s `SystemRandom`. The `test-randomness` cargo
//! feature makes the source injectable, for known-answer vectors and tests only: a source that
//! repeats itself breaks the envelope (see docs/security.md, "The envelope id never repeats").

use std::convert::Infallible;

use hpke::rand_core::utils::next_word_via_fill;
use hpke::rand_core::{TryCryptoRng, TryRng};
use ring::rand::{SecureRandom, SystemRandom};

use crate::error::{CryptoError, Result};

/// A source of the random bytes a seal needs (the envelope id; in version 2 also the ephemeral
/// KEM randomness). Exported only with the `test-randomness` feature, to reproduce known-answer
/// vectors.
///
/// **Every byte must be fresh and unpredictable.** A version 1 envelope id that repeats under one
/// master key repeats a (key, nonce) pair; a version 2 ephemeral key that repeats lets whoever
/// sees both envelopes combine them. Only the system source is fit for production.
#[cfg_attr(not(feature = "test-randomness"), allow(unreachable_pub))]
pub trait RandomSource: Send + Sync {
    /// Fills `out` with fresh random bytes.
    fn fill(&self, out: &mut [u8]) -> Result<()>;
}

/// `ring`'s `SystemRandom`: the operating system's CSPRNG.
#[derive(Debug, Clone)]
pub(crate) struct SystemRandomSource(SystemRandom);

impl Default for SystemRandomSource {
    fn default() -> Self {
        SystemRandomSource(SystemRandom::new())
    }
}

impl RandomSource for SystemRandomSource {
    fn fill(&self, out: &mut [u8]) -> Result<()> {
        self.0.fill(out).map_err(|_| CryptoError::Random)
    }
}

/// Bytes drawn in advance from a [`RandomSource`], handed to the HPKE crate as its random
/// number generator. The crate's generator interface cannot fail, so the bytes are drawn (and a
/// failure reported) before the call; afterwards [`Drawn::finish`] checks that the KEM took
/// exactly what the specification says it takes, so the known-answer vectors mean what they say.
pub(crate) struct Drawn<'a> {
    bytes: &'a [u8],
    used: usize,
    overrun: bool,
}

impl<'a> Drawn<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Drawn {
            bytes,
            used: 0,
            overrun: false,
        }
    }

    /// Whether exactly the drawn bytes were consumed, no more and no fewer.
    pub(crate) fn finish(self) -> Result<()> {
        if self.overrun || self.used != self.bytes.len() {
            return Err(CryptoError::Random);
        }
        Ok(())
    }
}

impl TryRng for Drawn<'_> {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        next_word_via_fill(self)
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        next_word_via_fill(self)
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        match self.bytes.get(self.used..self.used + dst.len()) {
            Some(bytes) => {
                dst.copy_from_slice(bytes);
                self.used += dst.len();
            }
            // Asked for more than was drawn: the seal is refused by `finish`, so these bytes
            // are never used for anything that leaves the process.
            None => {
                dst.fill(0);
                self.overrun = true;
            }
        }
        Ok(())
    }
}

impl TryCryptoRng for Drawn<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drawn_bytes_must_be_used_exactly() {
        let bytes = [1, 2, 3, 4, 5, 6, 7, 8];
        let mut exact = Drawn::new(&bytes);
        let mut out = [0; 8];
        exact.try_fill_bytes(&mut out).unwrap();
        assert_eq!(out, bytes);
        assert!(exact.finish().is_ok());

        let mut short = Drawn::new(&bytes);
        short.try_fill_bytes(&mut [0; 4]).unwrap();
        assert_eq!(short.finish(), Err(CryptoError::Random));

        let mut over = Drawn::new(&bytes);
        let mut out = [9; 12];
        over.try_fill_bytes(&mut out).unwrap();
        assert_eq!(out, [0; 12]);
        assert_eq!(over.finish(), Err(CryptoError::Random));
    }

    #[test]
    fn the_system_source_fills() {
        let mut a = [0; 32];
        let mut b = [0; 32];
        SystemRandomSource::default().fill(&mut a).unwrap();
        SystemRandomSource::default().fill(&mut b).unwrap();
        assert_ne!(a, b);
    }
}
