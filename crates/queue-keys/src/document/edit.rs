//! The rotation steps (add, promote, retire, remove, for every kind of key) and the public-key
//! setup (generate, export, import): each checks the document's rules again before it changes
//! anything.

use std::time::SystemTime;

use queue_crypto::public::{Kem, RecipientKeyPair, SenderSigningKey};
use queue_crypto::{Key, KeyId, KeyMaterial, KeyState, Keyset};
use zeroize::Zeroizing;

use super::KeysetDocument;
use super::public::{PublicKeyEntry, PublicKeyKind};
use crate::error::{KeyError, Result};

impl KeysetDocument {
    /// Rotation step 1: adds a freshly generated shared key as `active` (it opens, it does not
    /// seal yet); the first shared key of a document is `primary`.
    pub fn add_generated(&mut self, id: KeyId) -> Result<()> {
        self.check_new_id(&id)?;
        let state = if self.keyset.is_some() {
            KeyState::Active
        } else {
            KeyState::Primary
        };
        let new_key = Key::new(id, KeyMaterial::generate()?, state).with_created(SystemTime::now());
        let mut keys = match &self.keyset {
            Some(keyset) => copy_keys(keyset, |_| None)?,
            None => Vec::new(),
        };
        keys.push(new_key);
        self.keyset = Some(Keyset::new(keys)?);
        Ok(())
    }

    /// Adds a freshly generated recipient key pair (consumer side): `primary` when it is the
    /// first, else `active` (rotation step 1: it opens; its public half goes to the producers
    /// before it is promoted). Refused in a producer's document.
    pub fn generate_recipient_key(&mut self, id: KeyId, kem: Kem) -> Result<()> {
        let state = self.first_state(PublicKeyKind::RecipientKey);
        let pair = RecipientKeyPair::generate(id.clone(), kem, state)?;
        self.push(PublicKeyEntry {
            kind: PublicKeyKind::RecipientKey,
            id,
            state,
            kem: Some(kem),
            bytes: Zeroizing::new(pair.expose_private_key().to_vec()),
            created: Some(SystemTime::now()),
            not_after: None,
        })
    }

    /// Adds a freshly generated signing key (producer side): `primary` when it is the first,
    /// else `active` (rotation step 1: its public half goes to the consumers' trust lists before
    /// it is promoted). Refused in a consumer's document.
    pub fn generate_signing_key(&mut self, id: KeyId) -> Result<()> {
        let state = self.first_state(PublicKeyKind::SigningKey);
        let key = SenderSigningKey::generate(id.clone(), state)?;
        self.push(PublicKeyEntry {
            kind: PublicKeyKind::SigningKey,
            id,
            state,
            kem: None,
            bytes: Zeroizing::new(key.expose_seed().to_vec()),
            created: Some(SystemTime::now()),
            not_after: None,
        })
    }

    /// Adds a public key someone else exported: a recipient's public key (producer side,
    /// `kind` [`PublicKeyKind::RecipientPublicKey`], with its `kem`) or a trusted sender
    /// ([`PublicKeyKind::TrustedSender`]). A recipient public key is `primary` when it is the
    /// first, else `active` until promoted; a trusted sender is `active` (trusted at once).
    ///
    /// # Errors
    /// A secret kind (those are generated here, never imported), bytes that are not a valid
    /// key, a duplicate id.
    pub fn add_public_key(
        &mut self,
        kind: PublicKeyKind,
        id: KeyId,
        kem: Option<Kem>,
        bytes: &[u8],
    ) -> Result<()> {
        if kind.is_secret() {
            return Err(edit_error(format!(
                "{} are generated where they are used, never imported",
                kind.list_name()
            )));
        }
        let state = match kind {
            PublicKeyKind::TrustedSender => KeyState::Active,
            _ => self.first_state(kind),
        };
        self.push(PublicKeyEntry {
            kind,
            id,
            state,
            kem: match kind {
                PublicKeyKind::RecipientPublicKey => Some(kem.unwrap_or_default()),
                _ => None,
            },
            bytes: Zeroizing::new(bytes.to_vec()),
            created: Some(SystemTime::now()),
            not_after: None,
        })
    }

    /// The public halves of this document's own keys, as a document another party adds with
    /// [`import_public`](Self::import_public): a consumer's recipient keys become
    /// `recipient_public_keys` (for its producers), a producer's signing keys become
    /// `trusted_senders` (for its consumers). States and times are kept; retired keys are left
    /// out. Holds no secret.
    pub fn export_public(&self) -> Result<KeysetDocument> {
        let mut public = Vec::new();
        for entry in &self.public {
            let kind = match entry.kind {
                PublicKeyKind::RecipientKey => PublicKeyKind::RecipientPublicKey,
                PublicKeyKind::SigningKey => PublicKeyKind::TrustedSender,
                _ => continue,
            };
            if entry.state == KeyState::Retired {
                continue;
            }
            public.push(PublicKeyEntry {
                kind,
                id: entry.id.clone(),
                state: entry.state,
                kem: entry.kem,
                bytes: Zeroizing::new(entry.public_bytes()?),
                created: entry.created,
                not_after: entry.not_after,
            });
        }
        if public.is_empty() {
            return Err(edit_error(
                "the document has no recipient key or signing key to export".to_owned(),
            ));
        }
        Ok(KeysetDocument {
            role: None,
            keyset: None,
            public,
        })
    }

    /// Adds the public keys of an exported document (see [`export_public`](Self::export_public))
    /// that this document does not have yet; keys it has are updated to the exported state
    /// when their bytes agree (a promotion or retirement on the other side). Returns the ids
    /// added or changed.
    ///
    /// # Errors
    /// The export holds a secret, or a key whose id is known here with other bytes.
    pub fn import_public(&mut self, export: &KeysetDocument) -> Result<Vec<KeyId>> {
        if export.keyset.is_some() || export.public.iter().any(|entry| entry.kind.is_secret()) {
            return Err(edit_error(
                "refusing to import a document that holds secret keys: export the public \
                 halves first"
                    .to_owned(),
            ));
        }
        let mut changed = Vec::new();
        let mut public: Vec<PublicKeyEntry> = self.public.iter().map(copy_entry).collect();
        for entry in &export.public {
            match public.iter_mut().find(|own| own.id == entry.id) {
                Some(own) if own.kind == entry.kind && *own.bytes == *entry.bytes => {
                    if own.state != entry.state {
                        own.state = entry.state;
                        changed.push(entry.id.clone());
                    }
                }
                Some(_) => {
                    return Err(edit_error(format!(
                        "key {} is already here with other bytes or of another kind",
                        entry.id
                    )));
                }
                None => {
                    public.push(copy_entry(entry));
                    changed.push(entry.id.clone());
                }
            }
        }
        self.replace_public(public)?;
        Ok(changed)
    }

    /// Rotation step 2: makes `id` the primary key of its list (shared keys, recipient keys,
    /// recipient public keys or signing keys); the previous primary becomes `active` (it keeps
    /// opening what it sealed).
    pub fn promote(&mut self, id: &str) -> Result<()> {
        if let Some(entry) = self.public.iter().find(|entry| entry.id.as_str() == id) {
            if entry.state == KeyState::Retired {
                return Err(edit_error(format!(
                    "key {id} is retired; a retired key never seals again"
                )));
            }
            let kind = entry.kind;
            let mut public: Vec<PublicKeyEntry> = self.public.iter().map(copy_entry).collect();
            for other in public.iter_mut().filter(|other| other.kind == kind) {
                if other.id.as_str() == id {
                    other.state = KeyState::Primary;
                } else if other.state == KeyState::Primary && kind.one_primary() {
                    other.state = KeyState::Active;
                }
            }
            return self.replace_public(public);
        }
        let keyset = self.shared_with(id)?;
        let target = keyset
            .get(id)
            .ok_or_else(|| KeyError::unknown_key_id(id.to_owned()))?;
        if target.state() == KeyState::Retired {
            return Err(edit_error(format!(
                "key {id} is retired; a retired key never seals again"
            )));
        }
        let keys = copy_keys(keyset, |key| {
            if key.id().as_str() == id {
                Some(KeyState::Primary)
            } else if key.state() == KeyState::Primary {
                Some(KeyState::Active)
            } else {
                None
            }
        })?;
        self.keyset = Some(Keyset::new(keys)?);
        Ok(())
    }

    /// Rotation step 3: retires `id`. Envelopes under it (sealed to it, or signed by it) are
    /// refused from then on, so do this only after the longest time a message can live (see
    /// `docs/operations.md`).
    ///
    /// Refuses the primary key of a list that seals or signs with it (every list but the trust
    /// list): retiring it would leave nothing to seal with; promote its successor first.
    pub fn retire(&mut self, id: &str) -> Result<()> {
        let primary = || {
            edit_error(format!(
                "key {id} is the primary key: promote its successor first (step 2), then retire it"
            ))
        };
        if let Some(entry) = self.public.iter().find(|entry| entry.id.as_str() == id) {
            if entry.state == KeyState::Primary && entry.kind.one_primary() {
                return Err(primary());
            }
            let mut public: Vec<PublicKeyEntry> = self.public.iter().map(copy_entry).collect();
            for entry in public.iter_mut().filter(|entry| entry.id.as_str() == id) {
                entry.state = KeyState::Retired;
            }
            return self.replace_public(public);
        }
        let keyset = self.shared_with(id)?;
        if keyset.get(id).map(|key| key.state()) == Some(KeyState::Primary) {
            return Err(primary());
        }
        let keys = copy_keys(keyset, |key| {
            (key.id().as_str() == id).then_some(KeyState::Retired)
        })?;
        self.keyset = Some(Keyset::new(keys)?);
        Ok(())
    }

    /// Removes a retired key for good (its envelopes then fail as an unknown key id). Refuses
    /// keys that are not retired, and the last key of the document.
    pub fn remove(&mut self, id: &str) -> Result<()> {
        if let Some(entry) = self.public.iter().find(|entry| entry.id.as_str() == id) {
            if entry.state != KeyState::Retired {
                return Err(edit_error(format!(
                    "key {id} must be retired before it is removed"
                )));
            }
            if self.keyset.is_none() && self.public.len() == 1 {
                return Err(edit_error(format!("key {id} is the document's last key")));
            }
            let public = self
                .public
                .iter()
                .filter(|entry| entry.id.as_str() != id)
                .map(copy_entry)
                .collect();
            return self.replace_public(public);
        }
        let keyset = self.shared_with(id)?;
        if keyset.get(id).map(Key::state) != Some(KeyState::Retired) {
            return Err(edit_error(format!(
                "key {id} must be retired before it is removed"
            )));
        }
        let mut keys = copy_keys(keyset, |_| None)?;
        keys.retain(|key| key.id().as_str() != id);
        if keys.is_empty() {
            if self.public.is_empty() {
                return Err(edit_error(format!("key {id} is the document's last key")));
            }
            self.keyset = None;
        } else {
            self.keyset = Some(Keyset::new(keys).map_err(|error| edit_error(error.to_string()))?);
        }
        Ok(())
    }

    /// The shared keyset, if it has a key `id`.
    pub(super) fn shared_with(&self, id: &str) -> Result<&Keyset> {
        self.keyset
            .as_ref()
            .filter(|keyset| keyset.get(id).is_some())
            .ok_or_else(|| KeyError::unknown_key_id(id.to_owned()))
    }

    /// The state of a new key of `kind`: primary when the list has no primary yet.
    pub(super) fn first_state(&self, kind: PublicKeyKind) -> KeyState {
        let has_primary = self
            .public
            .iter()
            .any(|entry| entry.kind == kind && entry.state == KeyState::Primary);
        if has_primary {
            KeyState::Active
        } else {
            KeyState::Primary
        }
    }

    pub(super) fn check_new_id(&self, id: &KeyId) -> Result<()> {
        let taken = self.keys().any(|key| key.id() == id)
            || self.public.iter().any(|entry| &entry.id == id);
        if taken {
            return Err(edit_error(format!(
                "key {id} already exists in the document"
            )));
        }
        Ok(())
    }

    pub(super) fn push(&mut self, entry: PublicKeyEntry) -> Result<()> {
        self.check_new_id(&entry.id)?;
        let mut public: Vec<PublicKeyEntry> = self.public.iter().map(copy_entry).collect();
        public.push(entry);
        self.replace_public(public)
    }

    /// Puts `public` in place if the document stays valid; leaves it unchanged otherwise.
    pub(super) fn replace_public(&mut self, public: Vec<PublicKeyEntry>) -> Result<()> {
        let previous = std::mem::replace(&mut self.public, public);
        if let Err(reason) = self.check() {
            self.public = previous;
            return Err(edit_error(reason));
        }
        Ok(())
    }
}

pub(super) fn edit_error(reason: String) -> KeyError {
    KeyError::Invalid {
        source_name: "keyset document".to_owned(),
        reason,
    }
}

pub(super) fn copy_entry(entry: &PublicKeyEntry) -> PublicKeyEntry {
    PublicKeyEntry {
        kind: entry.kind,
        id: entry.id.clone(),
        state: entry.state,
        kem: entry.kem,
        bytes: entry.bytes.clone(),
        created: entry.created,
        not_after: entry.not_after,
    }
}

/// Copies every shared key (material into fresh zeroizing storage), with the state `change`
/// gives.
pub(super) fn copy_keys(
    keyset: &Keyset,
    change: impl Fn(&Key) -> Option<KeyState>,
) -> Result<Vec<Key>> {
    keyset
        .keys()
        .map(|key| {
            let state = change(key).unwrap_or(key.state());
            let mut copy = Key::new(
                key.id().clone(),
                KeyMaterial::from_slice(key.material().expose())?,
                state,
            );
            if let Some(created) = key.created() {
                copy = copy.with_created(created);
            }
            if let Some(not_after) = key.not_after() {
                copy = copy.with_not_after(not_after);
            }
            Ok(copy)
        })
        .collect()
}
