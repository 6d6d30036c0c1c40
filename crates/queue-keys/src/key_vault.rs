//! [`KeyVaultSecret`]: a keyset document kept as an Azure Key Vault secret.
//!
//! Built on `azure_security_keyvault_secrets` 0.4, the release on the `azure_core` 0.25 line
//! that the Service Bus provider uses, so one credential type (`azure_core`'s
//! `TokenCredential`) serves both. 0.5 and later need a newer `azure_core`, 1.x needs
//! `azure_core` 1.x: moving means moving every Azure crate of the workspace together.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use azure_core::credentials::{Secret, TokenCredential};
use azure_core::error::ErrorKind;
use azure_identity::{
    ClientSecretCredential, DefaultAzureCredential, ManagedIdentityCredential,
    ManagedIdentityCredentialOptions, UserAssignedId, WorkloadIdentityCredential,
};
use azure_security_keyvault_secrets::SecretClient;
use azure_security_keyvault_secrets::models::SetSecretParameters;
use zeroize::Zeroizing;

use crate::error::{KeyError, Result};
use crate::store::DocumentStore;

/// How to authenticate to Key Vault: the token credentials the Service Bus provider accepts
/// (a connection string is Service Bus only).
#[derive(Clone)]
#[non_exhaustive]
pub enum KeyVaultCredential {
    /// `azure_identity`'s `DefaultAzureCredential`: environment (client secret), workload
    /// identity, managed identity, then the Azure CLI.
    Default,
    /// The managed identity of the VM, container or App Service.
    ManagedIdentity {
        /// The client id of a user-assigned identity; the system-assigned one when `None`.
        client_id: Option<String>,
    },
    /// A service principal's client secret.
    ClientSecret {
        /// The Entra ID tenant.
        tenant_id: String,
        /// The application (client) id.
        client_id: String,
        /// The client secret. Never printed.
        secret: Zeroizing<String>,
    },
    /// Workload identity federation (Kubernetes): tenant, client id and token file from the
    /// `AZURE_TENANT_ID`, `AZURE_CLIENT_ID` and `AZURE_FEDERATED_TOKEN_FILE` variables.
    WorkloadIdentity,
    /// Any `azure_core` token credential built by the application (the one its Service Bus
    /// client uses, say).
    Token(Arc<dyn TokenCredential>),
}

impl fmt::Debug for KeyVaultCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyVaultCredential::Default => f.write_str("Default"),
            KeyVaultCredential::ManagedIdentity { client_id } => f
                .debug_struct("ManagedIdentity")
                .field("client_id", client_id)
                .finish(),
            KeyVaultCredential::ClientSecret {
                tenant_id,
                client_id,
                ..
            } => f
                .debug_struct("ClientSecret")
                .field("tenant_id", tenant_id)
                .field("client_id", client_id)
                .finish_non_exhaustive(),
            KeyVaultCredential::WorkloadIdentity => f.write_str("WorkloadIdentity"),
            KeyVaultCredential::Token(_) => f.write_str("Token(..)"),
        }
    }
}

impl PartialEq for KeyVaultCredential {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (KeyVaultCredential::Default, KeyVaultCredential::Default)
            | (KeyVaultCredential::WorkloadIdentity, KeyVaultCredential::WorkloadIdentity) => true,
            (
                KeyVaultCredential::ManagedIdentity { client_id: a },
                KeyVaultCredential::ManagedIdentity { client_id: b },
            ) => a == b,
            (
                KeyVaultCredential::ClientSecret {
                    tenant_id: a_tenant,
                    client_id: a_client,
                    secret: a_secret,
                },
                KeyVaultCredential::ClientSecret {
                    tenant_id: b_tenant,
                    client_id: b_client,
                    secret: b_secret,
                },
            ) => a_tenant == b_tenant && a_client == b_client && a_secret == b_secret,
            (KeyVaultCredential::Token(a), KeyVaultCredential::Token(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for KeyVaultCredential {}

impl KeyVaultCredential {
    /// The `azure_identity` credential.
    ///
    /// # Errors
    /// [`KeyError::Invalid`] when `azure_identity` refuses the settings.
    pub fn token_credential(&self) -> Result<Arc<dyn TokenCredential>> {
        let credential: std::result::Result<Arc<dyn TokenCredential>, azure_core::Error> =
            match self {
                KeyVaultCredential::Default => {
                    DefaultAzureCredential::new().map(|c| c as Arc<dyn TokenCredential>)
                }
                KeyVaultCredential::ManagedIdentity { client_id } => {
                    ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                        user_assigned_id: client_id.clone().map(UserAssignedId::ClientId),
                        ..ManagedIdentityCredentialOptions::default()
                    }))
                    .map(|c| c as Arc<dyn TokenCredential>)
                }
                KeyVaultCredential::ClientSecret {
                    tenant_id,
                    client_id,
                    secret,
                } => ClientSecretCredential::new(
                    tenant_id,
                    client_id.clone(),
                    Secret::new(secret.as_str().to_owned()),
                    None,
                )
                .map(|c| c as Arc<dyn TokenCredential>),
                KeyVaultCredential::WorkloadIdentity => {
                    WorkloadIdentityCredential::new(None).map(|c| c as Arc<dyn TokenCredential>)
                }
                KeyVaultCredential::Token(credential) => Ok(Arc::clone(credential)),
            };
        credential.map_err(|error| KeyError::Invalid {
            source_name: "azure-key-vault".to_owned(),
            reason: format!("the credential cannot be built: {}", error.kind()),
        })
    }
}

/// A keyset document (plain or KMS-wrapped) as the value of an Azure Key Vault secret.
///
/// Reading gets the latest version (or a pinned one); one `GetSecret` per read, the
/// [`KeyRing`](crate::KeyRing) in front reads once per refresh interval. The value is the
/// document's JSON or base64 of it. Rotation is a new version:
/// [`write`](DocumentStore::write) sets one (`SetSecret`); readers pick it up at their next
/// refresh.
#[derive(Clone)]
pub struct KeyVaultSecret {
    client: Arc<SecretClient>,
    vault_url: String,
    secret_name: String,
    version: Option<String>,
}

impl fmt::Debug for KeyVaultSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyVaultSecret")
            .field("vault_url", &self.vault_url)
            .field("secret_name", &self.secret_name)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl KeyVaultSecret {
    /// The secret `secret_name` of the vault `vault_url` (`https://<vault>.vault.azure.net/`),
    /// authenticated with `credential`.
    ///
    /// # Errors
    /// [`KeyError::Invalid`] when the URL is not `https://` or the credential cannot be built.
    pub fn connect(
        vault_url: &str,
        secret_name: impl Into<String>,
        credential: &KeyVaultCredential,
    ) -> Result<Self> {
        let secret_name = secret_name.into();
        let invalid = |reason: String| KeyError::Invalid {
            source_name: format!("azure-key-vault {vault_url} {secret_name}"),
            reason,
        };
        if !vault_url.starts_with("https://") {
            return Err(invalid("the vault URL must be https://".to_owned()));
        }
        let client = SecretClient::new(vault_url, credential.token_credential()?, None)
            .map_err(|error| invalid(format!("the vault URL is not usable: {}", error.kind())))?;
        Ok(Self::from_client(client, vault_url, secret_name))
    }

    /// Over a client built by the application (its own pipeline options, say).
    pub fn from_client(
        client: SecretClient,
        vault_url: impl Into<String>,
        secret_name: impl Into<String>,
    ) -> Self {
        KeyVaultSecret {
            client: Arc::new(client),
            vault_url: vault_url.into(),
            secret_name: secret_name.into(),
            version: None,
        }
    }

    /// Reads this version instead of the latest (pinning: rotation then needs a configuration
    /// change).
    #[must_use]
    pub fn with_version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// The secret's name.
    pub fn secret_name(&self) -> &str {
        &self.secret_name
    }
}

#[async_trait]
impl DocumentStore for KeyVaultSecret {
    fn name(&self) -> String {
        format!("azure-key-vault {} {}", self.vault_url, self.secret_name)
    }

    async fn read(&self) -> Result<Zeroizing<Vec<u8>>> {
        let name = self.name();
        let response = self
            .client
            .get_secret(
                &self.secret_name,
                self.version.as_deref().unwrap_or(""),
                None,
            )
            .await
            .map_err(|error| key_vault_error(&error, &name, "GetSecret"))?;
        let secret = response
            .into_body()
            .await
            .map_err(|error| key_vault_error(&error, &name, "GetSecret"))?;
        secret_value(
            secret.value,
            secret.attributes.and_then(|a| a.enabled),
            &name,
        )
    }

    async fn exists(&self) -> Result<bool> {
        let version = self.version.as_deref().unwrap_or("");
        match self
            .client
            .get_secret(&self.secret_name, version, None)
            .await
        {
            Ok(_) => Ok(true),
            Err(error) if classify(error.kind()) == VaultFailure::NotFound => Ok(false),
            Err(error) => Err(key_vault_error(&error, &self.name(), "GetSecret")),
        }
    }

    async fn write(&self, document: &[u8]) -> Result<()> {
        let name = self.name();
        let value = Zeroizing::new(
            std::str::from_utf8(document)
                .map_err(|_| KeyError::Invalid {
                    source_name: name.clone(),
                    reason: "a keyset document is UTF-8 JSON".to_owned(),
                })?
                .to_owned(),
        );
        let parameters = SetSecretParameters {
            content_type: Some("application/json".to_owned()),
            value: Some(value.as_str().to_owned()),
            ..SetSecretParameters::default()
        };
        self.client
            .set_secret(
                &self.secret_name,
                parameters
                    .try_into()
                    .map_err(|error| key_vault_error(&error, &name, "SetSecret"))?,
                None,
            )
            .await
            .map(|_| ())
            .map_err(|error| key_vault_error(&error, &name, "SetSecret"))
    }
}

/// The value of a fetched secret, or why there is none.
fn secret_value(
    value: Option<String>,
    enabled: Option<bool>,
    source_name: &str,
) -> Result<Zeroizing<Vec<u8>>> {
    let unavailable = |reason: &str| KeyError::Unavailable {
        source_name: source_name.to_owned(),
        reason: reason.to_owned(),
    };
    if enabled == Some(false) {
        return Err(unavailable("the secret is disabled"));
    }
    let value = Zeroizing::new(value.ok_or_else(|| unavailable("the secret has no value"))?);
    Ok(Zeroizing::new(value.as_bytes().to_vec()))
}

/// What a Key Vault failure means here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VaultFailure {
    Throttled,
    Denied,
    Disabled,
    NotFound,
    Service,
    Credential,
    Connection,
    BadResponse,
    Refused,
}

/// The one table from Key Vault's answers to their meaning: the HTTP status first, the error
/// code where the status alone is not enough.
fn classify(kind: &ErrorKind) -> VaultFailure {
    match kind {
        ErrorKind::HttpResponse { status, error_code } => {
            let code = error_code.as_deref().unwrap_or_default();
            match u16::from(*status) {
                429 => VaultFailure::Throttled,
                403 if code == "SecretDisabled" || code == "Disabled" => VaultFailure::Disabled,
                401 | 403 => VaultFailure::Denied,
                404 => VaultFailure::NotFound,
                408 | 500..=599 => VaultFailure::Service,
                _ => VaultFailure::Refused,
            }
        }
        ErrorKind::Credential => VaultFailure::Credential,
        ErrorKind::Io => VaultFailure::Connection,
        ErrorKind::DataConversion => VaultFailure::BadResponse,
        _ => VaultFailure::Refused,
    }
}

/// A Key Vault error as a [`KeyError`], in words an operator can act on; never a body.
fn key_vault_error(error: &azure_core::Error, source_name: &str, what: &str) -> KeyError {
    let failure = classify(error.kind());
    let status = match error.kind() {
        ErrorKind::HttpResponse { status, error_code } => format!(
            " (HTTP {}{})",
            u16::from(*status),
            error_code
                .as_deref()
                .map(|code| format!(" {code}"))
                .unwrap_or_default()
        ),
        _ => String::new(),
    };
    let reason = match failure {
        VaultFailure::Throttled => format!("{what} was throttled{status}, after the SDK's retries"),
        VaultFailure::Denied => format!(
            "{what} was denied{status}: give the identity the secrets get (and set, to rotate) \
             permission, or the Key Vault Secrets User role"
        ),
        VaultFailure::Disabled => format!("{what} failed{status}: the secret is disabled"),
        VaultFailure::NotFound => format!("{what} failed{status}: no such secret (or version)"),
        VaultFailure::Service => format!("{what} failed{status}: the service did not answer"),
        VaultFailure::Credential => {
            format!("{what} failed: no token from the credential (is the identity configured?)")
        }
        VaultFailure::Connection => format!("{what} failed: cannot reach the vault"),
        VaultFailure::BadResponse => {
            return KeyError::Invalid {
                source_name: source_name.to_owned(),
                reason: format!("{what}: the vault's answer is not a secret"),
            };
        }
        VaultFailure::Refused => format!("{what} was refused{status}"),
    };
    KeyError::Unavailable {
        source_name: source_name.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use azure_core::http::StatusCode;

    use super::*;

    fn http(status: u16, code: Option<&str>) -> azure_core::Error {
        azure_core::Error::message(
            ErrorKind::HttpResponse {
                status: StatusCode::from(status),
                error_code: code.map(str::to_owned),
            },
            "response body would be here",
        )
    }

    #[test]
    fn every_answer_has_its_meaning() {
        let table = [
            (http(429, Some("Throttled")), VaultFailure::Throttled),
            (http(401, Some("Unauthorized")), VaultFailure::Denied),
            (http(403, Some("Forbidden")), VaultFailure::Denied),
            (http(403, Some("SecretDisabled")), VaultFailure::Disabled),
            (http(404, Some("SecretNotFound")), VaultFailure::NotFound),
            (http(500, None), VaultFailure::Service),
            (http(503, Some("ServiceUnavailable")), VaultFailure::Service),
            (http(408, None), VaultFailure::Service),
            (http(400, Some("BadParameter")), VaultFailure::Refused),
            (
                azure_core::Error::message(ErrorKind::Credential, "no token"),
                VaultFailure::Credential,
            ),
            (
                azure_core::Error::message(ErrorKind::Io, "connection refused"),
                VaultFailure::Connection,
            ),
            (
                azure_core::Error::message(ErrorKind::DataConversion, "bad json"),
                VaultFailure::BadResponse,
            ),
            (
                azure_core::Error::message(ErrorKind::Other, "?"),
                VaultFailure::Refused,
            ),
        ];
        for (error, failure) in table {
            assert_eq!(classify(error.kind()), failure, "{error}");
            let key_error = key_vault_error(&error, "azure-key-vault v s", "GetSecret");
            let text = key_error.to_string();
            assert!(text.contains("azure-key-vault v s"), "{text}");
            assert!(text.contains("GetSecret"), "{text}");
            // The service's message (it may quote the request) is never carried over.
            assert!(!text.contains("response body"), "{text}");
            assert_eq!(
                key_error.is_transient(),
                failure != VaultFailure::BadResponse,
                "{text}"
            );
        }
    }

    #[test]
    fn statuses_and_codes_are_named() {
        let text = key_vault_error(&http(403, Some("Forbidden")), "s", "GetSecret").to_string();
        assert!(text.contains("HTTP 403 Forbidden"), "{text}");
        assert!(text.contains("Key Vault Secrets User"), "{text}");
        let text = key_vault_error(&http(429, None), "s", "SetSecret").to_string();
        assert!(
            text.contains("HTTP 429") && text.contains("throttled"),
            "{text}"
        );
    }

    #[test]
    fn a_secret_without_a_value_or_disabled_is_unavailable() {
        let value = secret_value(Some("{\"version\": 1}".to_owned()), Some(true), "s").unwrap();
        assert_eq!(&value[..], b"{\"version\": 1}");
        assert!(secret_value(Some("x".to_owned()), None, "s").is_ok());
        let disabled = secret_value(Some("x".to_owned()), Some(false), "s").unwrap_err();
        assert!(disabled.to_string().contains("disabled"), "{disabled}");
        let empty = secret_value(None, Some(true), "s").unwrap_err();
        assert!(empty.to_string().contains("no value"), "{empty}");
    }

    #[test]
    fn the_secret_model_maps_from_the_service_json() {
        // The shape Key Vault answers GetSecret with (REST API 7.5).
        let json = r#"{"value": "eyJ2ZXJzaW9uIjogMX0=", "id": "https://v.vault.azure.net/secrets/keys/0123", "attributes": {"enabled": true, "created": 1700000000, "updated": 1700000000, "recoveryLevel": "Recoverable+Purgeable"}, "contentType": "application/json"}"#;
        let secret: azure_security_keyvault_secrets::models::Secret =
            serde_json::from_str(json).unwrap();
        let value =
            secret_value(secret.value, secret.attributes.and_then(|a| a.enabled), "s").unwrap();
        let document = crate::store::json_or_base64(&value, "s").unwrap();
        assert_eq!(&document[..], b"{\"version\": 1}");
    }

    #[test]
    fn urls_must_be_https_and_secrets_never_print() {
        let credential = KeyVaultCredential::ClientSecret {
            tenant_id: "tenant".to_owned(),
            client_id: "client".to_owned(),
            secret: Zeroizing::new("client-secret-value-0123456789".to_owned()),
        };
        assert!(!format!("{credential:?}").contains("client-secret-value"));
        let error =
            KeyVaultSecret::connect("http://v.vault.azure.net/", "keys", &credential).unwrap_err();
        assert!(error.to_string().contains("https"), "{error}");
        let secret =
            KeyVaultSecret::connect("https://v.vault.azure.net/", "keys", &credential).unwrap();
        let debug = format!("{secret:?}");
        assert!(
            debug.contains("keys") && !debug.contains("client-secret-value"),
            "{debug}"
        );
        assert_eq!(
            secret.name(),
            "azure-key-vault https://v.vault.azure.net/ keys"
        );
    }
}
