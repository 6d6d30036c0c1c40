//! [`SecretsManagerSecret`]: a keyset document kept as an AWS Secrets Manager secret.

use std::fmt;

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::SdkError;
use zeroize::Zeroizing;

use crate::aws::{AwsSettings, key_error};
use crate::error::{KeyError, Result};
use crate::store::DocumentStore;

/// The version stage read by default: the secret's current version.
pub const CURRENT_STAGE: &str = "AWSCURRENT";

/// A keyset document (plain or KMS-wrapped) as the value of an AWS Secrets Manager secret.
///
/// Reading asks for the version in stage `AWSCURRENT` (one `GetSecretValue` per read; the
/// [`KeyRing`](crate::KeyRing) in front reads once per refresh interval). A text value is the
/// document's JSON or base64 of it; a binary value is the JSON's bytes. Rotation is a new
/// version: [`write`](DocumentStore::write) puts one (`PutSecretValue`, which moves
/// `AWSCURRENT` to it and the previous version to `AWSPREVIOUS`), creating the secret the first
/// time; readers pick it up at their next refresh.
///
/// The secret's value is encrypted at rest by Secrets Manager with its own KMS key; wrapping
/// the keyset with [`KmsKeys`](crate::KmsKeys) in addition keeps it opaque to whoever can
/// read the secret but not decrypt under the wrapping key.
#[derive(Clone)]
pub struct SecretsManagerSecret {
    client: Client,
    secret_id: String,
    version_stage: String,
}

impl fmt::Debug for SecretsManagerSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretsManagerSecret")
            .field("secret_id", &self.secret_id)
            .field("version_stage", &self.version_stage)
            .finish_non_exhaustive()
    }
}

impl SecretsManagerSecret {
    /// The secret named `secret_id` (a name or an ARN), read through `client`.
    pub fn new(client: Client, secret_id: impl Into<String>) -> Self {
        SecretsManagerSecret {
            client,
            secret_id: secret_id.into(),
            version_stage: CURRENT_STAGE.to_owned(),
        }
    }

    /// The secret named `secret_id`, with a client built from `settings`.
    ///
    /// # Errors
    /// [`KeyError::Invalid`] when the settings are not usable (endpoint, region).
    pub async fn connect(settings: &AwsSettings, secret_id: impl Into<String>) -> Result<Self> {
        let config = settings.sdk_config().await?;
        Ok(Self::new(Client::new(&config), secret_id))
    }

    /// Reads another stage than `AWSCURRENT` (`AWSPENDING` to check a staged rotation).
    #[must_use]
    pub fn with_version_stage(mut self, stage: impl Into<String>) -> Self {
        self.version_stage = stage.into();
        self
    }

    /// The secret's name or ARN.
    pub fn secret_id(&self) -> &str {
        &self.secret_id
    }

    /// The SDK client, for what this type does not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

#[async_trait]
impl DocumentStore for SecretsManagerSecret {
    fn name(&self) -> String {
        format!("aws-secrets-manager {}", self.secret_id)
    }

    async fn read(&self) -> Result<Zeroizing<Vec<u8>>> {
        let mut output = self
            .client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .version_stage(&self.version_stage)
            .send()
            .await
            .map_err(|error| key_error(&error, &self.name(), "GetSecretValue"))?;
        if let Some(text) = output.secret_string.take() {
            return Ok(Zeroizing::new(Zeroizing::new(text).as_bytes().to_vec()));
        }
        if let Some(binary) = output.secret_binary.take() {
            return Ok(Zeroizing::new(binary.into_inner()));
        }
        Err(KeyError::Unavailable {
            source_name: self.name(),
            reason: format!("the secret has no value in stage {}", self.version_stage),
        })
    }

    async fn exists(&self) -> Result<bool> {
        let described = self
            .client
            .describe_secret()
            .secret_id(&self.secret_id)
            .send()
            .await;
        match described {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(service))
                if service.err().is_resource_not_found_exception() =>
            {
                Ok(false)
            }
            Err(error) => Err(key_error(&error, &self.name(), "DescribeSecret")),
        }
    }

    async fn write(&self, document: &[u8]) -> Result<()> {
        let text = Zeroizing::new(
            std::str::from_utf8(document)
                .map_err(|_| KeyError::Invalid {
                    source_name: self.name(),
                    reason: "a keyset document is UTF-8 JSON".to_owned(),
                })?
                .to_owned(),
        );
        let put = self
            .client
            .put_secret_value()
            .secret_id(&self.secret_id)
            .secret_string(text.as_str())
            .send()
            .await;
        match put {
            Ok(_) => Ok(()),
            // The first version: the secret does not exist yet.
            Err(SdkError::ServiceError(service))
                if service.err().is_resource_not_found_exception() =>
            {
                self.client
                    .create_secret()
                    .name(&self.secret_id)
                    .secret_string(text.as_str())
                    .description("queue-runtime keyset document")
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|error| key_error(&error, &self.name(), "CreateSecret"))
            }
            Err(error) => Err(key_error(&error, &self.name(), "PutSecretValue")),
        }
    }
}
