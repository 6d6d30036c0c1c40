//! The keyset document a configuration's key source names, opened for editing: what the
//! operator's `queue-runtime keys` commands read, create and rotate, wherever the document is
//! kept (a file, a Secrets Manager or Key Vault secret, wrapped by KMS or not).

use std::sync::Arc;

use async_trait::async_trait;
use queue_core::QueueError;
use queue_keys::{DocumentStore, FileDocument, KeySource, KeysetDocument, StoredKeys};

use super::ConfigError;
use super::security::KeySourceSettings;

/// A keyset document where a [`KeySourceSettings`] says it is kept, with the operations of a
/// rotation. Every write makes a new current value (a file atomically replaced, a new secret
/// version); readers pick it up at their next refresh.
#[derive(Debug)]
pub enum KeyDocument {
    /// A plain document (JSON, or base64 of it) in a file or a secret.
    Plain(StoredKeys<Arc<dyn DocumentStore>>),
    /// A document wrapped by an AWS KMS key (the `aws-kms` feature).
    #[cfg(feature = "aws-kms")]
    Wrapped(queue_keys::KmsKeys<Arc<dyn DocumentStore>>),
}

impl KeyDocument {
    /// The document `settings` name, connected to its store (and to KMS when wrapped); nothing
    /// is read yet.
    ///
    /// # Errors
    /// A configuration error naming the field: a key source that cannot be written (an
    /// environment variable), or a cloud client that cannot be built.
    pub async fn open(settings: &KeySourceSettings) -> Result<Self, QueueError> {
        match settings {
            #[cfg(feature = "aws-kms")]
            KeySourceSettings::AwsKmsWrapped { store, aws } => {
                let wrapper = queue_keys::KmsWrapper::connect(aws)
                    .await
                    .map_err(|error| {
                        ConfigError::single("security.key_wrapping", error.to_string())
                    })?;
                Ok(KeyDocument::Wrapped(queue_keys::KmsKeys::new(
                    wrapper,
                    document_store(store).await?,
                )))
            }
            plain => Ok(KeyDocument::Plain(StoredKeys::new(
                document_store(plain).await?,
            ))),
        }
    }

    /// The document in the file at `path`.
    pub fn file(path: impl Into<std::path::PathBuf>) -> Self {
        KeyDocument::Plain(StoredKeys::new(Arc::new(FileDocument::new(path))))
    }

    /// Where the document is kept, for messages: kind and location, never a secret.
    pub fn name(&self) -> String {
        self.source().name()
    }

    /// The store's reader: what [`KeySource`] and [`name`](Self::name) delegate to.
    fn source(&self) -> &dyn KeySource {
        match self {
            KeyDocument::Plain(stored) => stored,
            #[cfg(feature = "aws-kms")]
            KeyDocument::Wrapped(wrapped) => wrapped,
        }
    }

    /// Whether the store holds a document (`false` only when it says it holds none).
    ///
    /// # Errors
    /// The store's error when it cannot tell.
    pub async fn exists(&self) -> queue_keys::Result<bool> {
        match self {
            KeyDocument::Plain(stored) => stored.store().exists().await,
            #[cfg(feature = "aws-kms")]
            KeyDocument::Wrapped(wrapped) => wrapped.store().exists().await,
        }
    }

    /// Reads (and unwraps) the document now.
    ///
    /// # Errors
    /// The store's or KMS's error, or an invalid document.
    pub async fn read(&self) -> queue_keys::Result<KeysetDocument> {
        match self {
            KeyDocument::Plain(stored) => stored.read_document().await,
            #[cfg(feature = "aws-kms")]
            KeyDocument::Wrapped(wrapped) => wrapped.read_document().await,
        }
    }

    /// Writes `document` as the store's first value; a wrapped store needs the KMS key to wrap
    /// it with (`kms_key_id`), a plain one refuses it. Refuses to overwrite a document.
    ///
    /// # Errors
    /// An existing document, a missing or needless `kms_key_id`, the store's or KMS's error.
    pub async fn create(
        &self,
        document: &KeysetDocument,
        kms_key_id: Option<&str>,
    ) -> queue_keys::Result<()> {
        match self {
            KeyDocument::Plain(stored) => match kms_key_id {
                None => stored.create(document).await,
                Some(_) => Err(queue_keys::KeyError::Invalid {
                    source_name: self.name(),
                    reason: "a KMS key wraps documents only with key_wrapping = \"aws-kms\" in \
                             [security]"
                        .to_owned(),
                }),
            },
            #[cfg(feature = "aws-kms")]
            KeyDocument::Wrapped(wrapped) => match kms_key_id {
                Some(kms_key_id) => wrapped.create_document(kms_key_id, document).await,
                None => Err(queue_keys::KeyError::Invalid {
                    source_name: self.name(),
                    reason: "a new wrapped keyset needs the KMS key that wraps it (its id, ARN \
                             or alias)"
                        .to_owned(),
                }),
            },
        }
    }

    /// Reads the document, applies `edit`, and writes the result (wrapped by the same KMS key
    /// under a new data key when wrapped). Nothing is written when `edit` fails.
    ///
    /// # Errors
    /// The store's or KMS's error, an invalid document, or `edit`'s error.
    pub async fn edit(
        &self,
        edit: impl FnOnce(&mut KeysetDocument) -> queue_keys::Result<()> + Send,
    ) -> queue_keys::Result<KeysetDocument> {
        match self {
            KeyDocument::Plain(stored) => stored.edit(edit).await,
            #[cfg(feature = "aws-kms")]
            KeyDocument::Wrapped(wrapped) => wrapped.edit(edit).await,
        }
    }
}

impl KeyDocument {
    /// Wraps the document again under a new data key, from `kms_key_id` when given (moving to
    /// another KMS key); returns the wrapping key's ARN. A plain document has nothing to wrap.
    ///
    /// # Errors
    /// A plain document; KMS's or the store's error.
    pub async fn rewrap(&self, kms_key_id: Option<&str>) -> queue_keys::Result<String> {
        match self {
            KeyDocument::Plain(_) => {
                let _ = kms_key_id;
                Err(queue_keys::KeyError::Invalid {
                    source_name: self.name(),
                    reason: "it is not wrapped by KMS (key_wrapping = \"aws-kms\" in [security] \
                             wraps a new keyset)"
                        .to_owned(),
                })
            }
            #[cfg(feature = "aws-kms")]
            KeyDocument::Wrapped(wrapped) => wrapped.rewrap(kms_key_id).await,
        }
    }
}

/// A client reads its keys from the document as from any source.
#[async_trait]
impl KeySource for KeyDocument {
    fn name(&self) -> String {
        KeyDocument::name(self)
    }

    async fn fetch(&self) -> queue_keys::Result<Arc<queue_keys::Keys>> {
        self.source().fetch().await
    }
}

/// The store a (not wrapped) key source keeps its document in.
async fn document_store(
    settings: &KeySourceSettings,
) -> Result<Arc<dyn DocumentStore>, ConfigError> {
    match settings {
        KeySourceSettings::File(path) => Ok(Arc::new(FileDocument::new(path))),
        KeySourceSettings::Env(variable) => Err(ConfigError::single(
            "security.key_env",
            format!(
                "the keys come from the environment variable {variable}, which no tool can \
                 rewrite: edit the file its value came from (--file)"
            ),
        )),
        #[cfg(feature = "aws-secrets-manager")]
        KeySourceSettings::AwsSecretsManager { secret_id, aws } => Ok(Arc::new(
            queue_keys::SecretsManagerSecret::connect(aws, secret_id)
                .await
                .map_err(|error| {
                    ConfigError::single("security.aws_secret_id", error.to_string())
                })?,
        )),
        #[cfg(feature = "azure-key-vault")]
        KeySourceSettings::AzureKeyVault {
            vault_url,
            secret_name,
            credential,
        } => Ok(Arc::new(
            queue_keys::KeyVaultSecret::connect(vault_url, secret_name, credential).map_err(
                |error| ConfigError::single("security.key_vault_url", error.to_string()),
            )?,
        )),
        #[cfg(feature = "aws-kms")]
        KeySourceSettings::AwsKmsWrapped { .. } => Err(ConfigError::single(
            "security.key_wrapping",
            "a KMS-wrapped keyset is kept in a file or a secret, not in another wrapped keyset",
        )),
    }
}
