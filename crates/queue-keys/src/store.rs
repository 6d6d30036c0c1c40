//! Where a keyset document is kept, as bytes: a file, or a secret in a cloud secret store.
//!
//! A [`DocumentStore`] reads and writes the document; it does not know what is in it. The
//! [`KeySource`]s over a store say what it holds: [`StoredKeys`] a plain keyset document (JSON,
//! or base64 of it), [`KmsKeys`](crate::KmsKeys) (the `aws-kms` feature) a keyset wrapped by an
//! AWS KMS key. So every store holds either kind, and every source reads from any store, with
//! the caching, last-good fallback and unknown-id handling of the [`KeyRing`](crate::KeyRing) in
//! front of them.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use crate::document::KeysetDocument;
use crate::error::{KeyError, Result};
use crate::source::KeySource;

/// A place that keeps one keyset document (plain or wrapped) and hands out its current value.
///
/// Writing makes a new current value: a new file atomically put in place, a new secret version
/// (Secrets Manager's `AWSCURRENT`, Key Vault's latest). Readers pick it up at their next
/// refresh.
#[async_trait]
pub trait DocumentStore: Send + Sync + fmt::Debug {
    /// The store as it appears in logs and errors: kind and location, never a secret.
    fn name(&self) -> String;

    /// The current document.
    ///
    /// # Errors
    /// [`KeyError::Unavailable`] when the store cannot be reached, refuses access, or holds no
    /// value; [`KeyError::Invalid`] when what it holds cannot be a document (binary where text
    /// is expected).
    async fn read(&self) -> Result<Zeroizing<Vec<u8>>>;

    /// Whether the store holds a value: `Ok(false)` only when the store itself says there is
    /// none (no file, no such secret), so that creating a keyset never overwrites one because a
    /// read failed for another reason. The default reads, and never answers `false`.
    ///
    /// # Errors
    /// The store's error when it cannot tell.
    async fn exists(&self) -> Result<bool> {
        self.read().await.map(|_| true)
    }

    /// Makes `document` the current value.
    ///
    /// # Errors
    /// [`KeyError::Unavailable`] when the store cannot be written.
    async fn write(&self, document: &[u8]) -> Result<()>;
}

#[async_trait]
impl<S: DocumentStore + ?Sized> DocumentStore for Arc<S> {
    fn name(&self) -> String {
        (**self).name()
    }

    async fn read(&self) -> Result<Zeroizing<Vec<u8>>> {
        (**self).read().await
    }

    async fn exists(&self) -> Result<bool> {
        (**self).exists().await
    }

    async fn write(&self, document: &[u8]) -> Result<()> {
        (**self).write(document).await
    }
}

/// A document in a file: read whole, written atomically and readable by its owner only (see
/// [`KeysetDocument::write_file`]).
#[derive(Debug, Clone)]
pub struct FileDocument {
    path: PathBuf,
}

impl FileDocument {
    /// The file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileDocument { path: path.into() }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[async_trait]
impl DocumentStore for FileDocument {
    fn name(&self) -> String {
        format!("file {}", self.path.display())
    }

    async fn read(&self) -> Result<Zeroizing<Vec<u8>>> {
        let path = self.path.clone();
        let name = self.name();
        blocking(&name, move || {
            std::fs::read(&path)
                .map(Zeroizing::new)
                .map_err(|error| KeyError::Unavailable {
                    source_name: format!("file {}", path.display()),
                    reason: error.to_string(),
                })
        })
        .await
    }

    async fn exists(&self) -> Result<bool> {
        let path = self.path.clone();
        let name = self.name();
        blocking(&name, move || {
            path.try_exists().map_err(|error| KeyError::Unavailable {
                source_name: format!("file {}", path.display()),
                reason: error.to_string(),
            })
        })
        .await
    }

    async fn write(&self, document: &[u8]) -> Result<()> {
        let path = self.path.clone();
        let document = Zeroizing::new(document.to_vec());
        let name = self.name();
        blocking(&name, move || write_private_file(&path, &document)).await
    }
}

/// File I/O blocks: off the async workers, as tokio::fs would do it.
async fn blocking<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| KeyError::Unavailable {
            source_name: name.to_owned(),
            reason: error.to_string(),
        })?
}

/// A plain keyset document in a [`DocumentStore`]: the JSON of [`crate::document`], or base64
/// of it (what an environment variable or a secret store's text value often holds).
///
/// One read of the store per fetch; the [`KeyRing`](crate::KeyRing) in front caches.
#[derive(Debug, Clone)]
pub struct StoredKeys<S> {
    store: S,
}

impl<S: DocumentStore> StoredKeys<S> {
    /// The keyset document `store` holds.
    pub fn new(store: S) -> Self {
        StoredKeys { store }
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Reads and parses the document now: what a fetch does, for an edit or a startup check.
    ///
    /// # Errors
    /// The store's error, or [`KeyError::Invalid`] when it does not hold a keyset document.
    pub async fn read_document(&self) -> Result<KeysetDocument> {
        let bytes = self.store.read().await?;
        parse_document_text(&bytes, &self.store.name())
    }

    /// Writes `document` as the store's first value. Refuses when the store already holds one:
    /// losing a key loses every message sealed under it.
    ///
    /// # Errors
    /// [`KeyError::Invalid`] when the store holds a document; the store's error (also when it
    /// cannot tell whether it holds one: nothing is written then).
    pub async fn create(&self, document: &KeysetDocument) -> Result<()> {
        refuse_existing(&self.store, &self.store.name()).await?;
        self.store.write(&document.to_json()?).await
    }

    /// Reads the document, applies `edit` (the rotation steps of [`KeysetDocument`]), and writes
    /// the result as the store's new current value. Nothing is written when `edit` fails.
    ///
    /// # Errors
    /// The store's errors, an invalid document, or `edit`'s error.
    pub async fn edit(
        &self,
        edit: impl FnOnce(&mut KeysetDocument) -> Result<()> + Send,
    ) -> Result<KeysetDocument> {
        let mut document = self.read_document().await?;
        edit(&mut document)?;
        self.store.write(&document.to_json()?).await?;
        Ok(document)
    }
}

#[async_trait]
impl<S: DocumentStore> KeySource for StoredKeys<S> {
    fn name(&self) -> String {
        self.store.name()
    }

    async fn fetch(&self) -> Result<Arc<crate::keys::Keys>> {
        let name = self.store.name();
        Ok(Arc::new(self.read_document().await?.into_keys(&name)?))
    }
}

/// Fails when `store` already holds a document (named `source_name` in the error), so that a
/// first write never replaces a keyset: losing a key loses every message sealed under it.
pub(crate) async fn refuse_existing(store: &impl DocumentStore, source_name: &str) -> Result<()> {
    if store.exists().await? {
        return Err(KeyError::Invalid {
            source_name: source_name.to_owned(),
            reason: "it already holds a document; refusing to overwrite a keyset".to_owned(),
        });
    }
    Ok(())
}

/// Marks the wrapped format of [`KmsKeys`](crate::KmsKeys), so a plain reader can say what it
/// found instead of "unknown field".
pub(crate) const WRAPPED_FORMAT: &str = "queue-runtime/kms-wrapped-keyset";

/// A keyset document given as JSON, or as base64 of the JSON (surrounding white space
/// ignored). `source_name` labels errors, which never quote the text.
pub fn parse_document_text(text: &[u8], source_name: &str) -> Result<KeysetDocument> {
    let json = json_or_base64(text, source_name)?;
    KeysetDocument::parse(&json, source_name).map_err(|error| {
        if contains(&json, WRAPPED_FORMAT.as_bytes()) {
            KeyError::Invalid {
                source_name: source_name.to_owned(),
                reason: "it holds a KMS-wrapped keyset: read it with the KMS source (the \
                         `aws-kms` feature; key_wrapping = \"aws-kms\" in [security])"
                    .to_owned(),
            }
        } else {
            error
        }
    })
}

/// JSON as it is, or base64 decoded (a value that does not start with `{`).
pub(crate) fn json_or_base64(text: &[u8], source_name: &str) -> Result<Zeroizing<Vec<u8>>> {
    let trimmed = text.trim_ascii();
    if trimmed.starts_with(b"{") {
        return Ok(Zeroizing::new(trimmed.to_vec()));
    }
    STANDARD
        .decode(trimmed)
        .map(Zeroizing::new)
        .map_err(|_| KeyError::Invalid {
            source_name: source_name.to_owned(),
            reason: "the value is neither a JSON keyset nor base64".to_owned(),
        })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// Writes `bytes` to `path` atomically (a temporary file in the same directory, then a rename),
/// readable by the owner only.
pub(crate) fn write_private_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let unavailable = |error: std::io::Error| KeyError::Unavailable {
        source_name: format!("file {}", path.display()),
        reason: error.to_string(),
    };
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let file_name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "keyset".to_owned());
    let temporary = directory.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&temporary).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    if let Err(error) = written.and_then(|()| std::fs::rename(&temporary, path)) {
        let _ = std::fs::remove_file(&temporary);
        return Err(unavailable(error));
    }
    Ok(())
}
