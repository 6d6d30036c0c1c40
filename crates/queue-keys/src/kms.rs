//! [`KmsKeys`]: a keyset wrapped by an AWS KMS key, kept in any [`DocumentStore`].
//!
//! Envelope encryption of the whole document. To wrap, one `GenerateDataKey` call under the KMS
//! key (AES-256, with the encryption context `{"purpose": "queue-runtime keyset"}`) gives a
//! fresh data key in plaintext and wrapped; the plain keyset document is sealed under the data
//! key with queue-crypto's own version-1 envelope (AES-256-GCM, key commitment; no AEAD written
//! here), bound to the KMS key's ARN; the plaintext data key is wiped. What is kept:
//!
//! ```json
//! {
//!   "format": "queue-runtime/kms-wrapped-keyset",
//!   "version": 1,
//!   "kms_key_id": "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-...",
//!   "wrapped_data_key": "<CiphertextBlob, base64>",
//!   "sealed_keyset": "<queue-crypto v1 envelope of the keyset document, base64>"
//! }
//! ```
//!
//! To read, one KMS `Decrypt` (naming the key, so a data key wrapped by another key is refused by
//! KMS itself) and one open. A file or a secret holding this document holds no key material in
//! clear: reading it takes `kms:Decrypt` on that key as well. Every write wraps under a new data
//! key.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_kms::Client;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use queue_crypto::{Context, Key, KeyId, KeyMaterial, KeyState, Keyset};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::aws::{AwsSettings, key_error};
use crate::document::KeysetDocument;
use crate::error::{KeyError, Result};
use crate::source::KeySource;
use crate::store::{DocumentStore, WRAPPED_FORMAT, json_or_base64};

/// The version of the wrapped format this crate reads and writes.
pub const WRAPPED_VERSION: u32 = 1;
/// The KMS encryption context of every data key: names what it is for, so a data key made for
/// something else does not unwrap here (and CloudTrail shows the purpose of every call).
pub const ENCRYPTION_CONTEXT: (&str, &str) = ("purpose", "queue-runtime keyset");
/// The queue-crypto channel the document is sealed to.
const SEAL_CHANNEL: &str = "queue-keys/kms-wrapped-keyset";
/// The id of the data key inside its one-key keyset (never stored).
const DATA_KEY_ID: &str = "kms-data-key";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWrapped {
    format: String,
    version: u32,
    kms_key_id: String,
    wrapped_data_key: String,
    sealed_keyset: String,
}

/// A wrapped keyset as kept: the KMS key's id and two ciphertexts. Nothing in it is secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKeyset {
    kms_key_id: String,
    wrapped_data_key: Vec<u8>,
    sealed_keyset: Vec<u8>,
}

impl WrappedKeyset {
    /// Parses the JSON (or base64 of it). `source_name` labels errors.
    ///
    /// # Errors
    /// [`KeyError::Invalid`] when it is not a wrapped keyset of a supported version.
    pub fn parse(text: &[u8], source_name: &str) -> Result<Self> {
        let invalid = |reason: String| KeyError::Invalid {
            source_name: source_name.to_owned(),
            reason,
        };
        let json = json_or_base64(text, source_name)?;
        let raw: RawWrapped = serde_json::from_slice(&json).map_err(|error| {
            invalid(format!(
                "not a KMS-wrapped keyset (JSON with format {WRAPPED_FORMAT:?}): error at line {} \
                 column {}",
                error.line(),
                error.column()
            ))
        })?;
        if raw.format != WRAPPED_FORMAT {
            return Err(invalid(format!("format must be {WRAPPED_FORMAT:?}")));
        }
        if raw.version != WRAPPED_VERSION {
            return Err(invalid(format!(
                "version {} is not supported; expected {WRAPPED_VERSION}",
                raw.version
            )));
        }
        let decode = |field: &str, value: &str| {
            STANDARD
                .decode(value)
                .map_err(|_| invalid(format!("{field} is not base64")))
        };
        Ok(WrappedKeyset {
            wrapped_data_key: decode("wrapped_data_key", &raw.wrapped_data_key)?,
            sealed_keyset: decode("sealed_keyset", &raw.sealed_keyset)?,
            kms_key_id: raw.kms_key_id,
        })
    }

    /// The document as pretty JSON.
    pub fn to_json(&self) -> Vec<u8> {
        let raw = RawWrapped {
            format: WRAPPED_FORMAT.to_owned(),
            version: WRAPPED_VERSION,
            kms_key_id: self.kms_key_id.clone(),
            wrapped_data_key: STANDARD.encode(&self.wrapped_data_key),
            sealed_keyset: STANDARD.encode(&self.sealed_keyset),
        };
        let mut json = serde_json::to_vec_pretty(&raw).unwrap_or_default();
        json.push(b'\n');
        json
    }

    /// The ARN of the KMS key that wraps the data key.
    pub fn kms_key_id(&self) -> &str {
        &self.kms_key_id
    }
}

/// Wraps and unwraps keyset documents with one KMS key (or, to unwrap, whichever key the
/// document names).
#[derive(Clone)]
pub struct KmsWrapper {
    client: Client,
}

impl fmt::Debug for KmsWrapper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmsWrapper").finish_non_exhaustive()
    }
}

impl KmsWrapper {
    /// Calls KMS through `client`.
    pub fn new(client: Client) -> Self {
        KmsWrapper { client }
    }

    /// A client built from `settings`.
    ///
    /// # Errors
    /// [`KeyError::Invalid`] when the settings are not usable (endpoint, region).
    pub async fn connect(settings: &AwsSettings) -> Result<Self> {
        Ok(Self::new(Client::new(&settings.sdk_config().await?)))
    }

    /// The SDK client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Wraps `document` under a fresh data key from the KMS key `kms_key_id` (id, ARN or alias).
    ///
    /// # Errors
    /// The KMS call's error (denied, disabled key, throttled), named.
    pub async fn wrap(&self, document: &KeysetDocument, kms_key_id: &str) -> Result<WrappedKeyset> {
        let source_name = format!("aws-kms {kms_key_id}");
        let output = self
            .client
            .generate_data_key()
            .key_id(kms_key_id)
            .key_spec(DataKeySpec::Aes256)
            .encryption_context(ENCRYPTION_CONTEXT.0, ENCRYPTION_CONTEXT.1)
            .send()
            .await
            .map_err(|error| key_error(&error, &source_name, "KMS GenerateDataKey"))?;
        let invalid = |reason: &str| KeyError::Invalid {
            source_name: source_name.clone(),
            reason: reason.to_owned(),
        };
        let arn = output
            .key_id
            .ok_or_else(|| invalid("GenerateDataKey answered without the key's ARN"))?;
        let wrapped_data_key = output
            .ciphertext_blob
            .ok_or_else(|| invalid("GenerateDataKey answered without a wrapped data key"))?
            .into_inner();
        let data_key = Zeroizing::new(
            output
                .plaintext
                .ok_or_else(|| invalid("GenerateDataKey answered without the data key"))?
                .into_inner(),
        );
        let keyset = data_keyset(&data_key, &source_name)?;
        let json = document.to_json()?;
        let sealed_keyset = queue_crypto::seal(&keyset, &json, &seal_context(&arn))?;
        Ok(WrappedKeyset {
            kms_key_id: arn,
            wrapped_data_key,
            sealed_keyset,
        })
    }

    /// Unwraps: one KMS `Decrypt` of the data key under the key the document names, then the
    /// sealed document opened and parsed. `source_name` labels errors.
    ///
    /// # Errors
    /// The KMS call's error (denied, disabled key, throttled, a data key that does not
    /// unwrap), or [`KeyError::Invalid`] when the sealed document does not open or is not a
    /// keyset.
    pub async fn unwrap(
        &self,
        wrapped: &WrappedKeyset,
        source_name: &str,
    ) -> Result<KeysetDocument> {
        let output = self
            .client
            .decrypt()
            .key_id(&wrapped.kms_key_id)
            .ciphertext_blob(Blob::new(wrapped.wrapped_data_key.clone()))
            .encryption_context(ENCRYPTION_CONTEXT.0, ENCRYPTION_CONTEXT.1)
            .send()
            .await
            .map_err(|error| key_error(&error, source_name, "KMS Decrypt"))?;
        let data_key = Zeroizing::new(
            output
                .plaintext
                .ok_or_else(|| KeyError::Invalid {
                    source_name: source_name.to_owned(),
                    reason: "KMS Decrypt answered without the data key".to_owned(),
                })?
                .into_inner(),
        );
        let keyset = data_keyset(&data_key, source_name)?;
        let opened = queue_crypto::open(
            &keyset,
            &wrapped.sealed_keyset,
            &seal_context(&wrapped.kms_key_id),
        )
        .map_err(|_| KeyError::Invalid {
            source_name: source_name.to_owned(),
            reason: "the sealed keyset does not open with its data key (altered, or its \
                     kms_key_id was changed)"
                .to_owned(),
        })?;
        let json = Zeroizing::new(opened.into_plaintext());
        KeysetDocument::parse(&json, source_name)
    }
}

/// The data key as a one-key keyset, for queue-crypto's envelope.
fn data_keyset(data_key: &[u8], source_name: &str) -> Result<Keyset> {
    let material = KeyMaterial::from_slice(data_key).map_err(|_| KeyError::Invalid {
        source_name: source_name.to_owned(),
        reason: "the data key is not 256 bits".to_owned(),
    })?;
    Ok(Keyset::new([Key::new(
        KeyId::new(DATA_KEY_ID)?,
        material,
        KeyState::Primary,
    )])?)
}

fn seal_context(kms_key_arn: &str) -> Context<'_> {
    Context::new(SEAL_CHANNEL).with_property("kms_key_id", kms_key_arn)
}

/// A keyset wrapped by an AWS KMS key, from any [`DocumentStore`] (a file, a Secrets Manager
/// secret, a Key Vault secret): a [`KeySource`], and the operations that create, edit and
/// re-wrap it.
///
/// Each fetch is one read of the store and one KMS `Decrypt`; the [`KeyRing`](crate::KeyRing)
/// in front caches the unwrapped keyset in memory for its refresh interval (its keys wipe
/// themselves when dropped), so KMS sees one call per consumer per interval.
pub struct KmsKeys<S> {
    wrapper: KmsWrapper,
    store: S,
}

impl<S: fmt::Debug> fmt::Debug for KmsKeys<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmsKeys")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl<S: DocumentStore> KmsKeys<S> {
    /// The wrapped keyset `store` holds, unwrapped through `wrapper`.
    pub fn new(wrapper: KmsWrapper, store: S) -> Self {
        KmsKeys { wrapper, store }
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The wrapped document as kept (no KMS call): which KMS key wraps it.
    ///
    /// # Errors
    /// The store's error, or [`KeyError::Invalid`] when it is not a wrapped keyset.
    pub async fn read_wrapped(&self) -> Result<WrappedKeyset> {
        WrappedKeyset::parse(&self.store.read().await?, &self.name())
    }

    /// Reads and unwraps the keyset now: what a fetch does, for an edit or a startup check.
    ///
    /// # Errors
    /// The store's or KMS's error, or [`KeyError::Invalid`].
    pub async fn read_document(&self) -> Result<KeysetDocument> {
        let wrapped = self.read_wrapped().await?;
        self.wrapper.unwrap(&wrapped, &self.name()).await
    }

    /// Writes a new wrapped keyset with one fresh primary key `first_key`, wrapped by
    /// `kms_key_id`. Refuses when the store already holds a document: losing a key loses every
    /// message sealed under it.
    ///
    /// # Errors
    /// [`KeyError::Invalid`] when the store holds a document; KMS's or the store's error (also
    /// when the store cannot tell whether it holds one: nothing is written then).
    pub async fn create(&self, kms_key_id: &str, first_key: KeyId) -> Result<KeysetDocument> {
        let document = KeysetDocument::generate(first_key)?;
        self.create_document(kms_key_id, &document).await?;
        Ok(document)
    }

    /// Writes `document` (a consumer's recipient keys, a producer's signing keys, ...) as the
    /// store's first value, wrapped by `kms_key_id`. Refuses when the store already holds one.
    ///
    /// # Errors
    /// As [`KmsKeys::create`].
    pub async fn create_document(&self, kms_key_id: &str, document: &KeysetDocument) -> Result<()> {
        crate::store::refuse_existing(&self.store, &self.name()).await?;
        self.write(document, kms_key_id).await.map(|_| ())
    }

    /// Unwraps, applies `edit` (the rotation steps of [`KeysetDocument`]: `add_generated`,
    /// `promote`, `retire`, `remove`), and writes the result wrapped by the same KMS key under a
    /// new data key. Nothing is written when `edit` fails.
    ///
    /// # Errors
    /// KMS's or the store's error, an invalid document, or `edit`'s error.
    pub async fn edit(
        &self,
        edit: impl FnOnce(&mut KeysetDocument) -> Result<()> + Send,
    ) -> Result<KeysetDocument> {
        let wrapped = self.read_wrapped().await?;
        let mut document = self.wrapper.unwrap(&wrapped, &self.name()).await?;
        edit(&mut document)?;
        self.write(&document, wrapped.kms_key_id()).await?;
        Ok(document)
    }

    /// Wraps the same keyset again under a new data key, from `kms_key_id` when given (moving
    /// to another KMS key), else from the key that wraps it now. Returns the new wrapping key's
    /// ARN.
    ///
    /// # Errors
    /// KMS's or the store's error.
    pub async fn rewrap(&self, kms_key_id: Option<&str>) -> Result<String> {
        let wrapped = self.read_wrapped().await?;
        let document = self.wrapper.unwrap(&wrapped, &self.name()).await?;
        let target = kms_key_id.unwrap_or(wrapped.kms_key_id());
        self.write(&document, target).await
    }

    async fn write(&self, document: &KeysetDocument, kms_key_id: &str) -> Result<String> {
        let wrapped = self.wrapper.wrap(document, kms_key_id).await?;
        self.store.write(&wrapped.to_json()).await?;
        Ok(wrapped.kms_key_id)
    }
}

#[async_trait]
impl<S: DocumentStore> KeySource for KmsKeys<S> {
    fn name(&self) -> String {
        format!("aws-kms {}", self.store.name())
    }

    async fn fetch(&self) -> Result<Arc<crate::keys::Keys>> {
        let name = self.name();
        Ok(Arc::new(self.read_document().await?.into_keys(&name)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wrapped_format_round_trips_and_refuses_what_it_is_not() {
        let wrapped = WrappedKeyset {
            kms_key_id: "arn:aws:kms:us-east-1:123456789012:key/k".to_owned(),
            wrapped_data_key: vec![1, 2, 3],
            sealed_keyset: vec![4, 5, 6],
        };
        let json = wrapped.to_json();
        assert_eq!(WrappedKeyset::parse(&json, "t").ok(), Some(wrapped.clone()));
        let base64 = STANDARD.encode(&json);
        assert_eq!(
            WrappedKeyset::parse(base64.as_bytes(), "t").ok(),
            Some(wrapped)
        );
        let text = String::from_utf8(json).unwrap_or_default();
        for bad in [
            text.replace("\"version\": 1", "\"version\": 2"),
            text.replace(WRAPPED_FORMAT, "something-else"),
            text.replace("\"AQID\"", "\"not base64!\""),
            r#"{"version": 1, "keys": []}"#.to_owned(),
            "not json".to_owned(),
        ] {
            let error = WrappedKeyset::parse(bad.as_bytes(), "file w.json");
            assert!(
                matches!(&error, Err(KeyError::Invalid { source_name, .. }) if source_name == "file w.json"),
                "{bad}: {error:?}"
            );
        }
    }

    #[test]
    fn a_data_key_of_the_wrong_size_is_refused() {
        assert!(data_keyset(&[7; 32], "t").is_ok());
        assert!(matches!(
            data_keyset(&[7; 16], "t"),
            Err(KeyError::Invalid { .. })
        ));
    }
}
