//! Keys and keysets: ids, material, states and times.

use std::fmt;
use std::time::SystemTime;

use ring::rand::{SecureRandom, SystemRandom};
use secrecy::{ExposeSecret, SecretBox};

use crate::error::{CryptoError, Result};

/// The length of a master key: 256 bits.
pub const KEY_LEN: usize = 32;

/// The longest key id, in bytes.
pub const MAX_KEY_ID_LEN: usize = 64;

/// A key's name: 1 to [`MAX_KEY_ID_LEN`] printable ASCII characters without spaces
/// (`0x21..=0x7E`), for example `orders-2026-11`. It travels in every envelope, authenticated.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    /// Checks and wraps a key id.
    pub fn new(id: impl Into<String>) -> Result<Self> {
        let id = id.into();
        if let Err(problem) = check_key_id(id.as_bytes()) {
            return Err(CryptoError::InvalidKey(format!("key id {id:?}: {problem}")));
        }
        Ok(KeyId(id))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why these bytes are not a key id, if they are not.
pub(crate) fn check_key_id(id: &[u8]) -> std::result::Result<(), &'static str> {
    if id.is_empty() {
        return Err("a key id must not be empty");
    }
    if id.len() > MAX_KEY_ID_LEN {
        return Err("a key id is at most 64 bytes");
    }
    if !id.iter().all(|byte| (0x21..=0x7E).contains(byte)) {
        return Err("a key id is printable ASCII without spaces");
    }
    Ok(())
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for KeyId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// 256 bits of master key material, zeroed when dropped, never printed, never cloned.
pub struct KeyMaterial(SecretBox<[u8; KEY_LEN]>);

impl KeyMaterial {
    /// Takes exactly [`KEY_LEN`] bytes; any other length is an error. The caller should zeroize
    /// its own copy.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        let material: [u8; KEY_LEN] = bytes.try_into().map_err(|_| {
            CryptoError::InvalidKey(format!(
                "key material must be {KEY_LEN} bytes, got {}",
                bytes.len()
            ))
        })?;
        Ok(Self::from_array(material))
    }

    /// Takes ownership of the bytes (the array is moved into zeroizing storage).
    pub fn from_array(material: [u8; KEY_LEN]) -> Self {
        KeyMaterial(SecretBox::new(Box::new(material)))
    }

    /// Fresh material from the operating system's secure random number generator.
    pub fn generate() -> Result<Self> {
        Self::generate_with(&SystemRandom::new())
    }

    /// Fresh material from the given secure random number generator.
    pub fn generate_with(random: &dyn SecureRandom) -> Result<Self> {
        let mut material = SecretBox::new(Box::new([0_u8; KEY_LEN]));
        random
            .fill(secrecy::ExposeSecretMut::expose_secret_mut(&mut material))
            .map_err(|_| CryptoError::Random)?;
        Ok(KeyMaterial(material))
    }

    /// The raw bytes, for deriving message keys and for writing a keyset file.
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        self.0.expose_secret()
    }
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyMaterial([REDACTED])")
    }
}

/// What a key may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyState {
    /// Seals new envelopes and opens. A keyset has at most one.
    Primary,
    /// Opens only: a key being introduced (step 1 of a rotation) or being phased out.
    Active,
    /// Refused: envelopes under it fail with [`CryptoError::RetiredKey`].
    Retired,
}

impl KeyState {
    /// The state's name in keyset files and logs: `primary`, `active` or `retired`.
    pub const fn as_str(self) -> &'static str {
        match self {
            KeyState::Primary => "primary",
            KeyState::Active => "active",
            KeyState::Retired => "retired",
        }
    }

    /// The state [`as_str`](Self::as_str) names `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        [KeyState::Primary, KeyState::Active, KeyState::Retired]
            .into_iter()
            .find(|state| state.as_str() == name)
    }
}

impl fmt::Display for KeyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state and the times every kind of key carries (master keys, recipient keys, sender
/// keys): one rule for all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lifetime {
    pub(crate) state: KeyState,
    pub(crate) created: Option<SystemTime>,
    pub(crate) not_after: Option<SystemTime>,
}

impl Lifetime {
    pub(crate) fn new(state: KeyState) -> Self {
        Lifetime {
            state,
            created: None,
            not_after: None,
        }
    }

    /// Whether `at` is past `not_after`.
    pub(crate) fn expired_at(&self, at: SystemTime) -> bool {
        self.not_after.is_some_and(|not_after| at > not_after)
    }
}

/// A key with an id and a state, as the set checks and lookups see it.
pub(crate) trait Named {
    fn key_id(&self) -> &KeyId;
    fn lifetime(&self) -> &Lifetime;
}

/// The accessors and builders of a key type with fields `id: KeyId` and `life: Lifetime`.
macro_rules! lifetime_methods {
    ($key:ty) => {
        impl $key {
            /// Records when the key was created (informational: rotation tooling reports ages).
            #[must_use]
            pub fn with_created(mut self, created: std::time::SystemTime) -> Self {
                self.life.created = Some(created);
                self
            }

            /// After this time the key seals nothing
            /// ([`KeyExpired`](crate::CryptoError::KeyExpired)), and an envelope whose
            /// authenticated seal time is later is refused. Envelopes sealed before it keep
            /// opening until the key is retired. The sealer chooses the seal time, so this does
            /// not limit a leaked key: only retirement does (docs/security.md).
            #[must_use]
            pub fn with_not_after(mut self, not_after: std::time::SystemTime) -> Self {
                self.life.not_after = Some(not_after);
                self
            }

            /// The key's id.
            pub fn id(&self) -> &$crate::keys::KeyId {
                &self.id
            }

            /// The key's state.
            pub fn state(&self) -> $crate::keys::KeyState {
                self.life.state
            }

            /// When the key was created, if recorded.
            pub fn created(&self) -> Option<std::time::SystemTime> {
                self.life.created
            }

            /// The time after which the key seals nothing, if any.
            pub fn not_after(&self) -> Option<std::time::SystemTime> {
                self.life.not_after
            }
        }

        impl $crate::keys::Named for $key {
            fn key_id(&self) -> &$crate::keys::KeyId {
                &self.id
            }

            fn lifetime(&self) -> &$crate::keys::Lifetime {
                &self.life
            }
        }
    };
}
pub(crate) use lifetime_methods;

/// Checks a list of keys of one kind: ids unique and, when `one_primary`, at most one primary.
pub(crate) fn check_keys<T: Named>(what: &str, keys: &[T], one_primary: bool) -> Result<()> {
    for (index, key) in keys.iter().enumerate() {
        if keys[..index]
            .iter()
            .any(|earlier| earlier.key_id() == key.key_id())
        {
            return Err(CryptoError::InvalidKey(format!(
                "key id {:?} appears twice in the {what}",
                key.key_id()
            )));
        }
    }
    let primaries = keys
        .iter()
        .filter(|key| key.lifetime().state == KeyState::Primary)
        .count();
    if one_primary && primaries > 1 {
        return Err(CryptoError::InvalidKey(format!(
            "the {what} has at most one primary key, found {primaries}"
        )));
    }
    Ok(())
}

/// The key whose id has these bytes (as read from an envelope).
pub(crate) fn find<'a, T: Named>(keys: &'a [T], id: &[u8]) -> Option<&'a T> {
    keys.iter().find(|key| key.key_id().0.as_bytes() == id)
}

/// The primary key, if there is one.
pub(crate) fn primary<T: Named>(keys: &[T]) -> Option<&T> {
    keys.iter()
        .find(|key| key.lifetime().state == KeyState::Primary)
}

/// A master key: id, material, state, and the times that bound its use.
pub struct Key {
    id: KeyId,
    material: KeyMaterial,
    life: Lifetime,
}

impl Key {
    /// A key with no time bounds.
    pub fn new(id: KeyId, material: KeyMaterial, state: KeyState) -> Self {
        Key {
            id,
            material,
            life: Lifetime::new(state),
        }
    }

    /// The key material.
    pub fn material(&self) -> &KeyMaterial {
        &self.material
    }

    pub(crate) fn life(&self) -> &Lifetime {
        &self.life
    }
}

lifetime_methods!(Key);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.id)
            .field("state", &self.life.state)
            .field("created", &self.life.created)
            .field("not_after", &self.life.not_after)
            .field("material", &self.material)
            .finish()
    }
}

/// The keys a process seals and opens with: at most one primary, any number of active and
/// retired keys, ids unique. Share it as `Arc<Keyset>`; it is deliberately not `Clone`, so key
/// material is not copied around.
#[derive(Debug)]
pub struct Keyset {
    keys: Vec<Key>,
}

impl Keyset {
    /// Checks and builds a keyset. Errors: no keys, two keys with one id, more than one primary.
    /// A keyset without a primary is valid: it opens but does not seal.
    pub fn new(keys: impl IntoIterator<Item = Key>) -> Result<Self> {
        let keys: Vec<Key> = keys.into_iter().collect();
        if keys.is_empty() {
            return Err(CryptoError::InvalidKey(
                "a keyset needs at least one key".into(),
            ));
        }
        check_keys("keyset", &keys, true)?;
        Ok(Keyset { keys })
    }

    /// The key that seals, if there is one.
    pub fn primary(&self) -> Option<&Key> {
        primary(&self.keys)
    }

    /// The key with this id, in any state.
    pub fn get(&self, id: &str) -> Option<&Key> {
        self.find(id.as_bytes())
    }

    /// The key whose id has these bytes (as read from an envelope).
    pub(crate) fn find(&self, id: &[u8]) -> Option<&Key> {
        find(&self.keys, id)
    }

    /// Every key, in the order given.
    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.keys.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, state: KeyState) -> Key {
        Key::new(
            KeyId::new(id).unwrap(),
            KeyMaterial::from_array([7; KEY_LEN]),
            state,
        )
    }

    #[test]
    fn key_ids_are_checked() {
        assert!(KeyId::new("orders-2026-11").is_ok());
        assert!(KeyId::new("x".repeat(64)).is_ok());
        for bad in ["", "has space", "tab\t", "é", &"x".repeat(65)] {
            let error = KeyId::new(bad).unwrap_err();
            assert!(
                matches!(error, CryptoError::InvalidKey(_)),
                "{bad:?}: {error}"
            );
        }
    }

    #[test]
    fn material_must_be_32_bytes() {
        for len in [0, 16, 31, 33, 64] {
            let error = KeyMaterial::from_slice(&vec![1; len]).unwrap_err();
            assert!(error.to_string().contains(&format!("got {len}")), "{error}");
        }
        assert_eq!(
            KeyMaterial::from_slice(&[9; 32]).unwrap().expose(),
            &[9; 32]
        );
        let a = KeyMaterial::generate().unwrap();
        let b = KeyMaterial::generate().unwrap();
        assert_ne!(a.expose(), b.expose());
    }

    #[test]
    fn debug_never_shows_material() {
        let key = Key::new(
            KeyId::new("k1").unwrap(),
            KeyMaterial::from_array([0xAB; KEY_LEN]),
            KeyState::Primary,
        );
        let keyset = Keyset::new([key]).unwrap();
        let printed = format!("{keyset:?} {:#?}", keyset.primary());
        assert!(printed.contains("REDACTED"), "{printed}");
        assert!(
            !printed.contains("171") && !printed.to_lowercase().contains("ab, "),
            "{printed}"
        );
    }

    #[test]
    fn keysets_are_checked() {
        assert!(Keyset::new([]).is_err());
        let duplicate = Keyset::new([key("a", KeyState::Primary), key("a", KeyState::Active)]);
        assert!(duplicate.unwrap_err().to_string().contains("twice"));
        let two_primaries = Keyset::new([key("a", KeyState::Primary), key("b", KeyState::Primary)]);
        assert!(
            two_primaries
                .unwrap_err()
                .to_string()
                .contains("at most one primary")
        );

        let keyset = Keyset::new([
            key("old", KeyState::Retired),
            key("next", KeyState::Active),
            key("now", KeyState::Primary),
        ])
        .unwrap();
        assert_eq!(keyset.primary().unwrap().id().as_str(), "now");
        assert_eq!(keyset.get("next").unwrap().state(), KeyState::Active);
        assert!(keyset.get("missing").is_none());

        let open_only = Keyset::new([key("next", KeyState::Active)]).unwrap();
        assert!(open_only.primary().is_none());
    }
}
