//! The keyset file format (JSON), and the operations of a rotation on it.
//!
//! ```json
//! {
//!   "version": 1,
//!   "keys": [
//!     { "id": "orders-2026-11", "state": "primary", "material": "<32 bytes, base64>",
//!       "created": "2026-11-23T10:00:00Z" },
//!     { "id": "orders-2026-08", "state": "active", "material": "<32 bytes, base64>",
//!       "created": "2026-08-02T09:30:00Z", "not_after": "2026-11-23T10:00:00Z" }
//!   ]
//! }
//! ```
//!
//! `state` is `primary` (seals and opens; at most one), `active` (opens only) or `retired`
//! (refused). `created` and `not_after` are optional RFC 3339 times. The same document, base64
//! encoded, is what the environment source reads.

use std::path::Path;
use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use queue_crypto::{Key, KeyId, KeyMaterial, KeyState, Keyset};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{KeyError, Result};

/// The version of the keyset file format this crate reads and writes.
pub const DOCUMENT_VERSION: u32 = 1;

/// A keyset as a file holds it: parsed, validated, and editable for a rotation.
///
/// Every edit checks the keyset rules again (ids unique, at most one primary), so a document
/// that exists is always a valid keyset. `Debug` shows ids and states, never material.
#[derive(Debug)]
pub struct KeysetDocument {
    keyset: Keyset,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDocument {
    version: u32,
    keys: Vec<RawKey>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    id: String,
    state: String,
    material: Zeroizing<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    not_after: Option<String>,
}

impl KeysetDocument {
    /// A new document with one freshly generated primary key (256 bits from `ring`'s
    /// `SystemRandom`), created now.
    pub fn generate(id: KeyId) -> Result<Self> {
        let key = Key::new(id, KeyMaterial::generate()?, KeyState::Primary)
            .with_created(SystemTime::now());
        Ok(KeysetDocument {
            keyset: Keyset::new([key])?,
        })
    }

    /// Parses a JSON document. `source_name` labels errors (`file /etc/keys.json`).
    ///
    /// Errors say where the document is wrong (line and column, key id, field), never what the
    /// offending text was: it may be key material.
    pub fn parse(json: &[u8], source_name: &str) -> Result<Self> {
        let invalid = |reason: String| KeyError::Invalid {
            source_name: source_name.to_owned(),
            reason,
        };
        let raw: RawDocument = serde_json::from_slice(json).map_err(|error| {
            // serde's messages can quote the offending value; report only its place.
            let what = match error.classify() {
                serde_json::error::Category::Syntax => "JSON syntax error",
                serde_json::error::Category::Eof => "the document ends early",
                serde_json::error::Category::Data => {
                    "a field is unknown, missing, or has the wrong type or value"
                }
                serde_json::error::Category::Io => "read error",
            };
            invalid(format!(
                "{what} at line {} column {}",
                error.line(),
                error.column()
            ))
        })?;
        if raw.version != DOCUMENT_VERSION {
            return Err(invalid(format!(
                "version {} is not supported; expected {DOCUMENT_VERSION}",
                raw.version
            )));
        }
        let mut keys = Vec::with_capacity(raw.keys.len());
        for raw_key in &raw.keys {
            let id = KeyId::new(raw_key.id.as_str())
                .map_err(|error| invalid(format!("key id: {error}")))?;
            let material =
                Zeroizing::new(STANDARD.decode(raw_key.material.as_bytes()).map_err(|_| {
                    invalid(format!("the material of key {id} is not valid base64"))
                })?);
            let material = KeyMaterial::from_slice(&material)
                .map_err(|error| invalid(format!("key {id}: {error}")))?;
            let state = KeyState::from_name(&raw_key.state).ok_or_else(|| {
                invalid(format!(
                    "key {id}: state must be primary, active or retired"
                ))
            })?;
            let mut key = Key::new(id.clone(), material, state);
            if let Some(created) = &raw_key.created {
                key = key.with_created(parse_time(created, &id, "created").map_err(invalid)?);
            }
            if let Some(not_after) = &raw_key.not_after {
                key = key.with_not_after(parse_time(not_after, &id, "not_after").map_err(invalid)?);
            }
            keys.push(key);
        }
        let keyset = Keyset::new(keys).map_err(|error| invalid(error.to_string()))?;
        Ok(KeysetDocument { keyset })
    }

    /// Reads and parses a keyset file.
    pub fn read_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let source_name = format!("file {}", path.display());
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|error| KeyError::Unavailable {
            source_name: source_name.clone(),
            reason: error.to_string(),
        })?);
        Self::parse(&bytes, &source_name)
    }

    /// The document as pretty JSON, in zeroizing storage.
    pub fn to_json(&self) -> Result<Zeroizing<Vec<u8>>> {
        let raw = RawDocument {
            version: DOCUMENT_VERSION,
            keys: self
                .keyset
                .keys()
                .map(|key| RawKey {
                    id: key.id().to_string(),
                    state: key.state().as_str().to_owned(),
                    material: Zeroizing::new(STANDARD.encode(key.material().expose())),
                    created: key.created().map(format_time),
                    not_after: key.not_after().map(format_time),
                })
                .collect(),
        };
        // Sized up front so the buffer does not reallocate and leave copies behind.
        let mut json = Zeroizing::new(Vec::with_capacity(256 + 256 * raw.keys.len()));
        serde_json::to_writer_pretty(&mut *json, &raw).map_err(|error| KeyError::Invalid {
            source_name: "keyset document".to_owned(),
            reason: error.to_string(),
        })?;
        json.push(b'\n');
        Ok(json)
    }

    /// Writes the document to `path` atomically (a temporary file in the same directory, then a
    /// rename), readable by the owner only, so a process re-reading the file never sees half of
    /// it.
    pub fn write_file(&self, path: impl AsRef<Path>) -> Result<()> {
        crate::store::write_private_file(path.as_ref(), &self.to_json()?)
    }

    /// The keys, in file order.
    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.keyset.keys()
    }

    /// The keyset, for sealing and opening.
    pub fn keyset(&self) -> &Keyset {
        &self.keyset
    }

    /// The keyset, consuming the document.
    pub fn into_keyset(self) -> Keyset {
        self.keyset
    }

    /// Rotation step 1: adds a freshly generated key as `active` (it opens, it does not seal yet).
    pub fn add_generated(&mut self, id: KeyId) -> Result<()> {
        let new_key = Key::new(id, KeyMaterial::generate()?, KeyState::Active)
            .with_created(SystemTime::now());
        let mut keys = self.copy_keys(|_| None)?;
        keys.push(new_key);
        self.keyset = Keyset::new(keys)?;
        Ok(())
    }

    /// Rotation step 2: makes `id` the primary key; the previous primary becomes `active` (it
    /// keeps opening what it sealed).
    pub fn promote(&mut self, id: &str) -> Result<()> {
        let target = self.existing(id)?;
        if target.state() == KeyState::Retired {
            return Err(KeyError::Invalid {
                source_name: "keyset document".to_owned(),
                reason: format!("key {id} is retired; a retired key never seals again"),
            });
        }
        let keys = self.copy_keys(|key| {
            if key.id().as_str() == id {
                Some(KeyState::Primary)
            } else if key.state() == KeyState::Primary {
                Some(KeyState::Active)
            } else {
                None
            }
        })?;
        self.keyset = Keyset::new(keys)?;
        Ok(())
    }

    /// Rotation step 3: retires `id`. Envelopes under it are refused from then on, so do this
    /// only after the longest time a message can live (see `docs/operations.md`).
    pub fn retire(&mut self, id: &str) -> Result<()> {
        self.existing(id)?;
        let keys = self.copy_keys(|key| (key.id().as_str() == id).then_some(KeyState::Retired))?;
        self.keyset = Keyset::new(keys)?;
        Ok(())
    }

    /// Removes a retired key for good (its envelopes then fail as an unknown key id). Refuses
    /// keys that are not retired, and the last key.
    pub fn remove(&mut self, id: &str) -> Result<()> {
        let invalid = |reason: String| KeyError::Invalid {
            source_name: "keyset document".to_owned(),
            reason,
        };
        if self.existing(id)?.state() != KeyState::Retired {
            return Err(invalid(format!(
                "key {id} must be retired before it is removed"
            )));
        }
        let mut keys = self.copy_keys(|_| None)?;
        keys.retain(|key| key.id().as_str() != id);
        self.keyset = Keyset::new(keys).map_err(|error| invalid(error.to_string()))?;
        Ok(())
    }

    fn existing(&self, id: &str) -> Result<&Key> {
        self.keyset
            .get(id)
            .ok_or_else(|| KeyError::unknown_key_id(id.to_owned()))
    }

    /// Copies every key (material into fresh zeroizing storage), with the state `change` gives.
    fn copy_keys(&self, change: impl Fn(&Key) -> Option<KeyState>) -> Result<Vec<Key>> {
        self.keyset
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
}

/// Writes a new keyset file with one fresh primary key. Refuses to overwrite an existing file:
/// losing a key loses every message sealed under it.
pub fn generate_keyset_file(path: impl AsRef<Path>, id: KeyId) -> Result<KeysetDocument> {
    let path = path.as_ref();
    if path.exists() {
        return Err(KeyError::Invalid {
            source_name: format!("file {}", path.display()),
            reason: "the file exists; refusing to overwrite a keyset".to_owned(),
        });
    }
    let document = KeysetDocument::generate(id)?;
    document.write_file(path)?;
    Ok(document)
}

fn parse_time(text: &str, id: &KeyId, field: &str) -> std::result::Result<SystemTime, String> {
    humantime::parse_rfc3339_weak(text)
        .map_err(|error| format!("key {id}: {field} is not an RFC 3339 time: {error}"))
}

fn format_time(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}
