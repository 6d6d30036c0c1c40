//! Where keysets come from: the [`KeySource`] trait and the sources built in.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use zeroize::Zeroizing;

use crate::document::KeysetDocument;
use crate::error::{KeyError, Result};
use crate::keys::Keys;

/// A place that holds the current keyset and can be asked again: keys rotate while the process
/// runs.
///
/// Implementations do one fetch per call and no caching: [`KeyRing`](crate::KeyRing) caches,
/// refreshes on an interval, answers unknown key ids from a negative cache, and makes sure that
/// concurrent callers share one fetch. A secret store (Vault, AWS Secrets Manager, Azure Key
/// Vault) is one more implementation of this trait: fetch the secret, hand the bytes to
/// [`KeysetDocument::parse`].
#[async_trait]
pub trait KeySource: Send + Sync + fmt::Debug {
    /// The source as it appears in logs and errors: kind and location, never a secret.
    fn name(&self) -> String;

    /// Fetches the current keys: the shared keyset and the public-key keysets the document
    /// holds.
    ///
    /// # Errors
    /// [`KeyError::Unavailable`] when the source cannot be reached or read (transient);
    /// [`KeyError::Invalid`] when it holds something that is not a valid keyset.
    async fn fetch(&self) -> Result<Arc<Keys>>;
}

/// Keys given in code: a shared [`Keyset`](queue_crypto::Keyset), or [`Keys`] with public-key
/// entries. Rotating means building new ones: use a file or a secret store when keys must
/// change without a restart.
#[derive(Debug, Clone)]
pub struct StaticKeys {
    keys: Arc<Keys>,
}

impl StaticKeys {
    /// A source that always answers `keys` (a `Keyset`, an `Arc<Keyset>` or [`Keys`]).
    pub fn new(keys: impl Into<Keys>) -> Self {
        StaticKeys {
            keys: Arc::new(keys.into()),
        }
    }
}

#[async_trait]
impl KeySource for StaticKeys {
    fn name(&self) -> String {
        "static".to_owned()
    }

    async fn fetch(&self) -> Result<Arc<Keys>> {
        Ok(Arc::clone(&self.keys))
    }
}

/// A keyset document in an environment variable: base64 of the JSON (or the JSON itself, when
/// the value starts with `{`). Read on every fetch.
#[derive(Debug, Clone)]
pub struct EnvKeys {
    variable: String,
}

impl EnvKeys {
    /// Reads the variable named `variable`.
    pub fn new(variable: impl Into<String>) -> Self {
        EnvKeys {
            variable: variable.into(),
        }
    }

    /// Reads and parses the variable now (what [`fetch`](KeySource::fetch) does), for checking
    /// a configuration at startup.
    pub fn read(&self) -> Result<Keys> {
        let value = Zeroizing::new(std::env::var(&self.variable).map_err(|error| {
            KeyError::Unavailable {
                source_name: self.name(),
                reason: error.to_string(),
            }
        })?);
        crate::store::parse_document_text(value.as_bytes(), &self.name())?.into_keys(&self.name())
    }
}

#[async_trait]
impl KeySource for EnvKeys {
    fn name(&self) -> String {
        format!("env {}", self.variable)
    }

    async fn fetch(&self) -> Result<Arc<Keys>> {
        self.read().map(Arc::new)
    }
}

/// A keyset file (see [`crate::document`]), read again on every fetch, so replacing the file
/// rotates keys without a restart: the [`KeyRing`](crate::KeyRing) in front of it fetches once
/// per refresh interval. Write the file atomically (as [`KeysetDocument::write_file`] does):
/// a half-written file is refused as invalid, and the key ring keeps its last good keyset.
#[derive(Debug, Clone)]
pub struct FileKeys {
    path: PathBuf,
}

impl FileKeys {
    /// Reads the file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileKeys { path: path.into() }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads and parses the file now (what [`fetch`](KeySource::fetch) does, blocking), for
    /// checking a configuration at startup.
    pub fn read(&self) -> Result<Keys> {
        KeysetDocument::read_file(&self.path)?.into_keys(&self.name())
    }
}

#[async_trait]
impl KeySource for FileKeys {
    fn name(&self) -> String {
        format!("file {}", self.path.display())
    }

    async fn fetch(&self) -> Result<Arc<Keys>> {
        // File I/O blocks: off the async workers, as tokio::fs would do it.
        let source = self.clone();
        tokio::task::spawn_blocking(move || source.read())
            .await
            .map_err(|error| KeyError::Unavailable {
                source_name: self.name(),
                reason: error.to_string(),
            })?
            .map(Arc::new)
    }
}
