//! Shared by the integration tests: keys, a fixed clock, a scripted salt source.

#![allow(dead_code, unreachable_pub)]

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use queue_crypto::{
    Clock, Context, CryptoError, ENVELOPE_ID_LEN, Key, KeyId, KeyMaterial, KeyState, Keyset,
    SaltSource,
};

pub const SUITES: [queue_crypto::Suite; 2] = [
    queue_crypto::Suite::Aes256Gcm,
    queue_crypto::Suite::ChaCha20Poly1305,
];

pub fn key(id: &str, byte: u8, state: KeyState) -> Key {
    Key::new(
        KeyId::new(id).unwrap(),
        KeyMaterial::from_array([byte; 32]),
        state,
    )
}

/// A keyset with a primary `k-primary`, an active `k-active` and a retired `k-retired`.
pub fn keyset() -> Keyset {
    Keyset::new([
        key("k-primary", 1, KeyState::Primary),
        key("k-active", 2, KeyState::Active),
        key("k-retired", 3, KeyState::Retired),
    ])
    .unwrap()
}

/// A context with every field and two properties.
pub fn full_context() -> Context<'static> {
    Context::new("pr-events")
        .with_session_id("repo/123")
        .with_correlation_id("delivery-9")
        .with_content_type("application/json")
        .with_message_id("6f1c9c3e-5a57-4c9b-9d43-3a8c3b1e2f10")
        .with_property("event", "pull_request")
        .with_property("action", "opened")
}

pub fn millis(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

/// A clock stuck at one time.
pub struct FixedClock(pub SystemTime);

impl Clock for FixedClock {
    fn now(&self) -> SystemTime {
        self.0
    }
}

/// Hands out the given salts in order (for known-answer vectors only: salts must never repeat).
pub struct ScriptedSalts(pub Mutex<Vec<[u8; ENVELOPE_ID_LEN]>>);

impl ScriptedSalts {
    pub fn one(salt: [u8; ENVELOPE_ID_LEN]) -> Self {
        ScriptedSalts(Mutex::new(vec![salt]))
    }
}

impl SaltSource for ScriptedSalts {
    fn fill(&self, salt: &mut [u8; ENVELOPE_ID_LEN]) -> Result<(), CryptoError> {
        let mut salts = self.0.lock().unwrap();
        *salt = salts.pop().ok_or(CryptoError::Random)?;
        Ok(())
    }
}
