//! `queue-runtime keys ...`: keyset documents wherever they are kept (a file, or the key source
//! of the configuration: a file, a Secrets Manager or Key Vault secret, wrapped by KMS or not).
//!
//! Every change is read, applied and written as one new value (nothing is written when the
//! change is refused), then the keys are listed. Nothing secret is ever printed: ids, states,
//! kinds, dates, and the public halves of public keys.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use queue_runtime::config::KeyDocument;
use queue_runtime::crypto::KeyId;
use queue_runtime::crypto::public::Kem;
use queue_runtime::keys::{KeysetDocument, PublicKeyKind, Role};
use serde::Serialize;

use super::{Done, confirm, load};
use crate::cli::{Cli, KeysArgs, KeysCommand, NewKeyArgs};
use crate::output::{Output, table, unix_millis, write_line};

/// One key as listed: a shared key or a public-key entry.
#[derive(Serialize)]
struct Listed {
    id: String,
    /// `primary`, `active` or `retired`.
    state: &'static str,
    /// `shared`, or the keyset document's list: `recipient_keys`, `recipient_public_keys`,
    /// `signing_keys`, `trusted_senders`.
    kind: &'static str,
    /// The key encapsulation of recipient keys (`x25519`, `x-wing`).
    kem: Option<&'static str>,
    created_ms: Option<u64>,
    not_after_ms: Option<u64>,
    /// The public half, base64 (public keys only: it is not secret, and is what others import).
    public_key: Option<String>,
}

#[derive(Serialize)]
struct Report<'a> {
    /// Where the keyset is kept (kind and location, never a secret).
    source: &'a str,
    /// `consumer`, `producer`, or none.
    role: Option<&'static str>,
    /// What the command did, for people reading the JSON too.
    done: Option<&'a str>,
    keys: Vec<Listed>,
}

pub(super) async fn run(cli: &Cli, args: &KeysArgs, output: Output) -> Result<Done> {
    let document = open(cli, args).await?;
    let name = document.name();
    let key_error = |error: queue_runtime::keys::KeyError| anyhow!("{error}");
    // What the command did, and the keyset as it left it (each change returns what it wrote,
    // so listing it costs no second read, nor a second KMS decrypt).
    let (done, keys) = match &args.command {
        KeysCommand::List => (None, document.read().await.map_err(key_error)?),
        KeysCommand::Generate(new) => {
            let keyset = KeysetDocument::generate(key_id(&new.id)?).map_err(key_error)?;
            document
                .create(&keyset, new.kms_key.as_deref())
                .await
                .map_err(key_error)?;
            let done = format!("created with {} as the primary key", new.id);
            (Some(done), keyset)
        }
        KeysCommand::Add(key) => {
            let id = key_id(&key.id)?;
            let keys = edit(&document, |keys| keys.add_generated(id)).await?;
            (
                Some(format!(
                    "added {} (active: promote it once every consumer has it)",
                    key.id
                )),
                keys,
            )
        }
        KeysCommand::Promote(key) => {
            let keys = edit(&document, |keys| keys.promote(&key.id)).await?;
            (Some(format!("{} is now the primary key", key.id)), keys)
        }
        KeysCommand::Retire(key) => {
            let keys = edit(&document, |keys| keys.retire(&key.id)).await?;
            (Some(format!("retired {}", key.id)), keys)
        }
        KeysCommand::Remove(remove) => {
            let what = format!(
                "remove key {} from {name} (a message sealed under it can never be opened again)",
                remove.id
            );
            if !remove.yes && !confirm(&what)? {
                output.summary(false, "remove: not confirmed, nothing done");
                return Ok(Done::Failed);
            }
            let keys = edit(&document, |keys| keys.remove(&remove.id)).await?;
            (Some(format!("removed {}", remove.id)), keys)
        }
        KeysCommand::Recipient(recipient) => {
            let kem = Kem::from_name(&recipient.kem)
                .ok_or_else(|| anyhow!("--kem {}: expected x25519 or x-wing", recipient.kem))?;
            let id = key_id(&recipient.key.id)?;
            let keys = edit_or_create(&document, &recipient.key, Role::Consumer, |keys| {
                keys.generate_recipient_key(id, kem)
            })
            .await?;
            let done = format!(
                "generated recipient key {} ({}); export-public hands out its public half",
                recipient.key.id,
                kem.as_str()
            );
            (Some(done), keys)
        }
        KeysCommand::Signer(new) => {
            let id = key_id(&new.id)?;
            let keys = edit_or_create(&document, new, Role::Producer, |keys| {
                keys.generate_signing_key(id)
            })
            .await?;
            let done = format!(
                "generated signing key {}; export-public hands out its public half",
                new.id
            );
            (Some(done), keys)
        }
        KeysCommand::ExportPublic(export) => {
            let public = document
                .read()
                .await
                .map_err(key_error)?
                .export_public()
                .map_err(key_error)?;
            return write_export(&public, export.out.as_deref(), output);
        }
        KeysCommand::ImportPublic(import) => {
            let text = std::fs::read(&import.from)
                .with_context(|| format!("cannot read {}", import.from.display()))?;
            let export = KeysetDocument::parse(&text, &format!("file {}", import.from.display()))
                .map_err(key_error)?;
            let mut imported = Vec::new();
            let keys = edit(&document, |keys| {
                imported = keys.import_public(&export)?;
                Ok(())
            })
            .await?;
            let ids: Vec<&str> = imported.iter().map(KeyId::as_str).collect();
            (Some(format!("imported {}", ids.join(", "))), keys)
        }
        KeysCommand::Trust(trust) => {
            let id = key_id(&trust.id)?;
            let bytes = STANDARD
                .decode(trust.public_key.trim())
                .map_err(|_| anyhow!("--public-key: not valid base64"))?;
            let keys = edit(&document, |keys| {
                keys.add_public_key(PublicKeyKind::TrustedSender, id, None, &bytes)
            })
            .await?;
            (Some(format!("trusting sender {}", trust.id)), keys)
        }
        KeysCommand::Rewrap(rewrap) => {
            let arn = document
                .rewrap(rewrap.kms_key.as_deref())
                .await
                .map_err(key_error)?;
            let done = format!("wrapped anew by {arn}");
            (Some(done), document.read().await.map_err(key_error)?)
        }
    };
    let report = Report {
        source: &name,
        role: keys.role().map(Role::as_str),
        done: done.as_deref(),
        keys: listed(&keys)?,
    };
    output.emit(&report, || print(&report));
    if let Some(done) = &done {
        output.summary(true, &format!("{name}: {done}"));
    }
    Ok(Done::Ok)
}

/// The keyset the command works on: `--file`, else the configuration's key source (a queue's
/// own with `--queue`).
async fn open(cli: &Cli, args: &KeysArgs) -> Result<KeyDocument> {
    if let Some(file) = &args.file {
        return Ok(KeyDocument::file(file));
    }
    let config = load(cli).map_err(|error| anyhow!("{error}"))?;
    let Some(security) = &config.security else {
        bail!(
            "the configuration has no [security] section, so no keys: name a keyset file with \
             --file, or add a key source to [security]"
        );
    };
    let settings = match &args.queue {
        None => &security.keys,
        Some(queue) => security
            .queue_keys
            .iter()
            .find(|(name, _)| name.as_str() == queue)
            .map(|(_, keys)| keys)
            .ok_or_else(|| {
                anyhow!(
                    "queue {queue} has no keys of its own in [[security.queues]]; without \
                     --queue the default keys are used"
                )
            })?,
    };
    KeyDocument::open(settings)
        .await
        .map_err(|error| anyhow!("{error}"))
}

fn key_id(id: &str) -> Result<KeyId> {
    KeyId::new(id).map_err(|error| anyhow!("--id {id:?}: {error}"))
}

/// Applies `change` and writes the keyset; returns it as written.
async fn edit(
    document: &KeyDocument,
    change: impl FnOnce(&mut KeysetDocument) -> queue_runtime::keys::Result<()> + Send,
) -> Result<KeysetDocument> {
    document
        .edit(change)
        .await
        .map_err(|error| anyhow!("{error}"))
}

/// Edits the keyset, or creates one for `role` holding just this key when there is none.
async fn edit_or_create(
    document: &KeyDocument,
    new: &NewKeyArgs,
    role: Role,
    change: impl FnOnce(&mut KeysetDocument) -> queue_runtime::keys::Result<()> + Send,
) -> Result<KeysetDocument> {
    let exists = document
        .exists()
        .await
        .map_err(|error| anyhow!("{error}"))?;
    if exists {
        return edit(document, change).await;
    }
    let mut keys = KeysetDocument::empty(Some(role));
    change(&mut keys).map_err(|error| anyhow!("{error}"))?;
    document
        .create(&keys, new.kms_key.as_deref())
        .await
        .map_err(|error| anyhow!("{error}"))?;
    Ok(keys)
}

fn write_export(public: &KeysetDocument, out: Option<&Path>, output: Output) -> Result<Done> {
    let json = public.to_json().map_err(|error| anyhow!("{error}"))?;
    match out {
        Some(path) if path != Path::new("-") => {
            std::fs::write(path, &*json)
                .with_context(|| format!("cannot write {}", path.display()))?;
            output.summary(
                true,
                &format!(
                    "wrote the public halves to {} (no secret in it)",
                    path.display()
                ),
            );
        }
        // The export is the document itself: JSON whatever --output says.
        _ => write_line(String::from_utf8_lossy(&json).trim_end()),
    }
    Ok(Done::Ok)
}

fn listed(document: &KeysetDocument) -> Result<Vec<Listed>> {
    let millis = |at: Option<std::time::SystemTime>| at.map(unix_millis);
    let mut rows: Vec<Listed> = document
        .keys()
        .map(|key| Listed {
            id: key.id().as_str().to_owned(),
            state: key.state().as_str(),
            kind: "shared",
            kem: None,
            created_ms: millis(key.created()),
            not_after_ms: millis(key.not_after()),
            public_key: None,
        })
        .collect();
    for entry in document.public_keys() {
        rows.push(Listed {
            id: entry.id().as_str().to_owned(),
            state: entry.state().as_str(),
            kind: entry.kind().list_name(),
            kem: entry.kem().map(Kem::as_str),
            created_ms: millis(entry.created()),
            not_after_ms: millis(entry.not_after()),
            public_key: Some(
                STANDARD.encode(entry.public_bytes().map_err(|error| anyhow!("{error}"))?),
            ),
        });
    }
    Ok(rows)
}

fn print(report: &Report<'_>) {
    let time = |at: Option<u64>| {
        at.map(|millis| {
            let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(millis);
            humantime::format_rfc3339_seconds(at).to_string()
        })
        .unwrap_or_else(|| "-".to_owned())
    };
    let role = report
        .role
        .map(|role| format!(", role {role}"))
        .unwrap_or_default();
    write_line(&format!("{}{role}", report.source));
    let mut table = table(&["id", "state", "kind", "created", "not after", "public key"]);
    for key in &report.keys {
        let kind = match key.kem {
            Some(kem) => format!("{} {kem}", key.kind),
            None => key.kind.to_owned(),
        };
        table.add_row(vec![
            key.id.clone(),
            key.state.to_owned(),
            kind,
            time(key.created_ms),
            time(key.not_after_ms),
            key.public_key.clone().unwrap_or_else(|| "-".to_owned()),
        ]);
    }
    write_line(&table.to_string());
}
