//! The document as JSON: parsing (every error names its place, never the text, which may be
//! key material), writing, and the file.

use std::path::Path;
use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use queue_crypto::public::Kem;
use queue_crypto::{Key, KeyId, KeyMaterial, KeyState, Keyset};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::public::{PublicKeyEntry, PublicKeyKind, Role};
use super::{DOCUMENT_VERSION, KeysetDocument};
use crate::error::{KeyError, Result};

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDocument {
    version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    role: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    keys: Vec<RawKey>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    recipient_keys: Vec<RawPublicEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    recipient_public_keys: Vec<RawPublicEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    signing_keys: Vec<RawPublicEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    trusted_senders: Vec<RawPublicEntry>,
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

/// One public-key entry as written. The key's field is named for what it is: `private_key`
/// (recipient key pairs), `seed` (signing keys), `public_key` (the public kinds); a field that
/// does not belong to the list is refused.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPublicEntry {
    id: String,
    state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kem: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    private_key: Option<Zeroizing<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seed: Option<Zeroizing<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    public_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    not_after: Option<String>,
}

impl KeysetDocument {
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
        let role = match raw.role.as_deref() {
            None => None,
            Some(name) => Some(
                Role::from_name(name)
                    .ok_or_else(|| invalid("role must be producer or consumer".to_owned()))?,
            ),
        };
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
            let state = parse_state(&raw_key.state, &id).map_err(invalid)?;
            let mut key = Key::new(id.clone(), material, state);
            if let Some(created) = &raw_key.created {
                key = key.with_created(parse_time(created, &id, "created").map_err(invalid)?);
            }
            if let Some(not_after) = &raw_key.not_after {
                key = key.with_not_after(parse_time(not_after, &id, "not_after").map_err(invalid)?);
            }
            keys.push(key);
        }
        let keyset = if keys.is_empty() {
            None
        } else {
            Some(Keyset::new(keys).map_err(|error| invalid(error.to_string()))?)
        };
        let mut public = Vec::new();
        for (kind, entries) in [
            (PublicKeyKind::RecipientKey, &raw.recipient_keys),
            (
                PublicKeyKind::RecipientPublicKey,
                &raw.recipient_public_keys,
            ),
            (PublicKeyKind::SigningKey, &raw.signing_keys),
            (PublicKeyKind::TrustedSender, &raw.trusted_senders),
        ] {
            for entry in entries {
                public.push(parse_entry(kind, entry).map_err(invalid)?);
            }
        }
        let document = KeysetDocument {
            role,
            keyset,
            public,
        };
        document.check().map_err(invalid)?;
        if document.is_empty() {
            return Err(invalid("the document holds no keys".to_owned()));
        }
        Ok(document)
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
        let entries = |kind: PublicKeyKind| -> Vec<RawPublicEntry> {
            self.public
                .iter()
                .filter(|entry| entry.kind == kind)
                .map(raw_entry)
                .collect()
        };
        let raw = RawDocument {
            version: DOCUMENT_VERSION,
            role: self.role.map(|role| role.as_str().to_owned()),
            keys: self
                .keys()
                .map(|key| RawKey {
                    id: key.id().to_string(),
                    state: key.state().as_str().to_owned(),
                    material: Zeroizing::new(STANDARD.encode(key.material().expose())),
                    created: key.created().map(format_time),
                    not_after: key.not_after().map(format_time),
                })
                .collect(),
            recipient_keys: entries(PublicKeyKind::RecipientKey),
            recipient_public_keys: entries(PublicKeyKind::RecipientPublicKey),
            signing_keys: entries(PublicKeyKind::SigningKey),
            trusted_senders: entries(PublicKeyKind::TrustedSender),
        };
        // Sized up front so the buffer does not reallocate and leave copies behind (an X-Wing
        // public key is 1,216 bytes, 1,624 in base64).
        let entry_count = raw.keys.len() + self.public.len();
        let mut json = Zeroizing::new(Vec::with_capacity(256 + 2048 * entry_count));
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
}

fn raw_entry(entry: &PublicKeyEntry) -> RawPublicEntry {
    let encoded = || Zeroizing::new(STANDARD.encode(&*entry.bytes));
    RawPublicEntry {
        id: entry.id.to_string(),
        state: entry.state.as_str().to_owned(),
        kem: entry.kem.map(|kem| kem.as_str().to_owned()),
        private_key: (entry.kind == PublicKeyKind::RecipientKey).then(encoded),
        seed: (entry.kind == PublicKeyKind::SigningKey).then(encoded),
        public_key: (!entry.kind.is_secret()).then(|| encoded().to_string()),
        created: entry.created.map(format_time),
        not_after: entry.not_after.map(format_time),
    }
}

fn parse_entry(
    kind: PublicKeyKind,
    raw: &RawPublicEntry,
) -> std::result::Result<PublicKeyEntry, String> {
    let list = kind.list_name();
    let id = KeyId::new(raw.id.as_str()).map_err(|error| format!("{list}: key id: {error}"))?;
    let state = parse_state(&raw.state, &id)?;
    let (field, value, others) = match kind {
        PublicKeyKind::RecipientKey => (
            "private_key",
            raw.private_key.as_ref().map(|text| text.as_str()),
            [raw.seed.is_some(), raw.public_key.is_some()],
        ),
        PublicKeyKind::SigningKey => (
            "seed",
            raw.seed.as_ref().map(|text| text.as_str()),
            [raw.private_key.is_some(), raw.public_key.is_some()],
        ),
        PublicKeyKind::RecipientPublicKey | PublicKeyKind::TrustedSender => (
            "public_key",
            raw.public_key.as_deref(),
            [raw.private_key.is_some(), raw.seed.is_some()],
        ),
    };
    if others.iter().any(|set| *set) {
        return Err(format!(
            "{list}: key {id}: only `{field}` holds the key in this list"
        ));
    }
    let value = value.ok_or_else(|| format!("{list}: key {id}: `{field}` is missing"))?;
    let bytes = Zeroizing::new(
        STANDARD
            .decode(value.as_bytes())
            .map_err(|_| format!("{list}: key {id}: `{field}` is not valid base64"))?,
    );
    let recipient = matches!(
        kind,
        PublicKeyKind::RecipientKey | PublicKeyKind::RecipientPublicKey
    );
    let kem = match (&raw.kem, recipient) {
        (Some(name), true) => Some(
            Kem::from_name(name)
                .ok_or_else(|| format!("{list}: key {id}: kem must be x25519 or x-wing"))?,
        ),
        (None, true) => Some(Kem::default()),
        (Some(_), false) => return Err(format!("{list}: key {id}: a sender key has no kem")),
        (None, false) => None,
    };
    let created = raw
        .created
        .as_deref()
        .map(|text| parse_time(text, &id, "created"))
        .transpose()?;
    let not_after = raw
        .not_after
        .as_deref()
        .map(|text| parse_time(text, &id, "not_after"))
        .transpose()?;
    Ok(PublicKeyEntry {
        kind,
        id,
        state,
        kem,
        bytes,
        created,
        not_after,
    })
}

pub(super) fn parse_state(text: &str, id: &KeyId) -> std::result::Result<KeyState, String> {
    KeyState::from_name(text)
        .ok_or_else(|| format!("key {id}: state must be primary, active or retired"))
}

pub(super) fn parse_time(
    text: &str,
    id: &KeyId,
    field: &str,
) -> std::result::Result<SystemTime, String> {
    humantime::parse_rfc3339_weak(text)
        .map_err(|error| format!("key {id}: {field} is not an RFC 3339 time: {error}"))
}

pub(super) fn format_time(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}
