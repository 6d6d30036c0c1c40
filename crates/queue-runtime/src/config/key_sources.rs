//! `[security]`'s key sources in the cloud: AWS Secrets Manager, Azure Key Vault, and keysets
//! wrapped by an AWS KMS key (the `aws-secrets-manager`, `azure-key-vault` and `aws-kms`
//! features, which forward to queue-keys'). Reading the file needs no feature: a source that is
//! not in the build is reported as such, naming the feature.
//!
//! ```toml
//! [security]
//! aws_secret_id = "queue-runtime/orders-keys"  # a Secrets Manager secret (name or ARN)
//! # aws_region = "eu-west-1"                    # else AWS_REGION or the profile
//! # aws_endpoint = "https://..."                # a VPC endpoint; http only to loopback
//! # key_vault_url = "https://orders.vault.azure.net/"  # or a Key Vault secret:
//! # key_vault_secret = "orders-keys"
//! # azure_credential = "default"                # managed-identity, workload-identity,
//! # azure_client_id = "..."                     # client-secret (azure_tenant_id,
//! # azure_client_secret_env = "AZURE_CLIENT_SECRET") # azure_client_id, the secret's variable)
//! key_wrapping = "aws-kms"                      # the document (in a file or a secret) is a
//!                                               # keyset wrapped by a KMS key
//! ```

#[cfg(any(
    feature = "aws-secrets-manager",
    feature = "aws-kms",
    feature = "azure-key-vault"
))]
use std::sync::Arc;

use queue_core::config::Problems;
#[cfg(any(
    feature = "aws-secrets-manager",
    feature = "aws-kms",
    feature = "azure-key-vault"
))]
use queue_keys::KeySource;

#[cfg(any(
    feature = "aws-secrets-manager",
    feature = "aws-kms",
    feature = "azure-key-vault"
))]
use super::ConfigError;
use super::security::{KeySourceSettings, SecuritySection};

impl SecuritySection {
    /// The key source the section names: exactly one of `key_file`, `key_env`, `aws_secret_id`,
    /// `key_vault_url`; wrapped by KMS when `key_wrapping = "aws-kms"`.
    pub(super) fn key_source(
        &self,
        problems: &mut Problems,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Option<KeySourceSettings> {
        let named = [
            self.key_file.is_some(),
            self.key_env.is_some(),
            self.aws_secret_id.is_some(),
            self.key_vault_url.is_some(),
        ]
        .into_iter()
        .filter(|set| *set)
        .count();
        self.check_fields_apply(problems);
        if named > 1 {
            problems.push(
                "security",
                "set one key source: key_file, key_env, aws_secret_id or key_vault_url",
            );
            return None;
        }
        let store = if let Some(file) = &self.key_file {
            Some(KeySourceSettings::File(file.into()))
        } else if let Some(variable) = &self.key_env {
            Some(KeySourceSettings::Env(variable.clone()))
        } else if let Some(secret_id) = &self.aws_secret_id {
            self.secrets_manager(secret_id, problems)
        } else if let Some(vault_url) = &self.key_vault_url {
            self.key_vault(vault_url, problems, env)
        } else {
            problems.push(
                "security",
                "needs a key source: key_file, key_env, aws_secret_id or key_vault_url",
            );
            None
        };
        match self.key_wrapping.as_deref() {
            None | Some("none") => store,
            Some("aws-kms") => self.kms_wrapped(store?, problems),
            Some(other) => {
                problems.push(
                    "security.key_wrapping",
                    format!("{other:?}: expected \"aws-kms\" or \"none\""),
                );
                None
            }
        }
    }

    /// The AWS fields serve `aws_secret_id` and KMS wrapping, the Azure ones `key_vault_url`: set
    /// elsewhere, they would be silently ignored.
    fn check_fields_apply(&self, problems: &mut Problems) {
        let aws = self.aws_secret_id.is_some() || self.key_wrapping.as_deref() == Some("aws-kms");
        for (field, set) in [
            ("aws_region", self.aws_region.is_some()),
            ("aws_endpoint", self.aws_endpoint.is_some()),
        ] {
            if set && !aws {
                problems.push(
                    format!("security.{field}"),
                    "applies to aws_secret_id or key_wrapping = \"aws-kms\" only",
                );
            }
        }
        for (field, set) in [
            ("key_vault_secret", self.key_vault_secret.is_some()),
            ("azure_credential", self.azure_credential.is_some()),
            ("azure_tenant_id", self.azure_tenant_id.is_some()),
            ("azure_client_id", self.azure_client_id.is_some()),
            (
                "azure_client_secret_env",
                self.azure_client_secret_env.is_some(),
            ),
        ] {
            if set && self.key_vault_url.is_none() {
                problems.push(format!("security.{field}"), "applies to key_vault_url only");
            }
        }
    }

    #[cfg(feature = "aws")]
    fn aws_settings(&self, problems: &mut Problems) -> Option<queue_keys::AwsSettings> {
        let mut settings = queue_keys::AwsSettings::new();
        if let Some(region) = &self.aws_region {
            settings = settings.with_region(region);
        }
        if let Some(endpoint) = &self.aws_endpoint {
            settings = settings.with_endpoint(endpoint);
        }
        match settings.check() {
            Ok(()) => Some(settings),
            Err(error) => {
                problems.push("security.aws_endpoint", error.to_string());
                None
            }
        }
    }

    #[cfg(feature = "aws-secrets-manager")]
    fn secrets_manager(
        &self,
        secret_id: &str,
        problems: &mut Problems,
    ) -> Option<KeySourceSettings> {
        if secret_id.trim().is_empty() {
            problems.push("security.aws_secret_id", "must not be empty");
            return None;
        }
        Some(KeySourceSettings::AwsSecretsManager {
            secret_id: secret_id.to_owned(),
            aws: self.aws_settings(problems)?,
        })
    }

    #[cfg(not(feature = "aws-secrets-manager"))]
    fn secrets_manager(&self, _: &str, problems: &mut Problems) -> Option<KeySourceSettings> {
        not_in_build(problems, "security.aws_secret_id", "aws-secrets-manager")
    }

    #[cfg(feature = "aws-kms")]
    fn kms_wrapped(
        &self,
        store: KeySourceSettings,
        problems: &mut Problems,
    ) -> Option<KeySourceSettings> {
        if matches!(store, KeySourceSettings::Env(_)) {
            problems.push(
                "security.key_wrapping",
                "a KMS-wrapped keyset is kept in a file or a secret, not key_env",
            );
            return None;
        }
        Some(KeySourceSettings::AwsKmsWrapped {
            store: Box::new(store),
            aws: self.aws_settings(problems)?,
        })
    }

    #[cfg(not(feature = "aws-kms"))]
    fn kms_wrapped(
        &self,
        _: KeySourceSettings,
        problems: &mut Problems,
    ) -> Option<KeySourceSettings> {
        not_in_build(problems, "security.key_wrapping", "aws-kms")
    }

    #[cfg(feature = "azure-key-vault")]
    fn key_vault(
        &self,
        vault_url: &str,
        problems: &mut Problems,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Option<KeySourceSettings> {
        use queue_keys::KeyVaultCredential;
        let mut missing = |field: &str, value: &Option<String>| {
            let value = value.clone().filter(|value| !value.trim().is_empty());
            if value.is_none() {
                problems.push(format!("security.{field}"), "required by this key source");
            }
            value
        };
        let secret_name = missing("key_vault_secret", &self.key_vault_secret);
        let credential = match self.azure_credential.as_deref().unwrap_or("default") {
            "default" => Some(KeyVaultCredential::Default),
            "managed-identity" => Some(KeyVaultCredential::ManagedIdentity {
                client_id: self.azure_client_id.clone(),
            }),
            "workload-identity" => Some(KeyVaultCredential::WorkloadIdentity),
            "client-secret" => {
                let tenant_id = missing("azure_tenant_id", &self.azure_tenant_id);
                let client_id = missing("azure_client_id", &self.azure_client_id);
                let variable = self
                    .azure_client_secret_env
                    .clone()
                    .unwrap_or_else(|| "AZURE_CLIENT_SECRET".to_owned());
                let secret = env(&variable).filter(|value| !value.trim().is_empty());
                if secret.is_none() {
                    problems.push(
                        "security.azure_client_secret_env",
                        format!("the environment variable {variable} is not set"),
                    );
                }
                match (tenant_id, client_id, secret) {
                    (Some(tenant_id), Some(client_id), Some(secret)) => {
                        Some(KeyVaultCredential::ClientSecret {
                            tenant_id,
                            client_id,
                            secret: secret.into(),
                        })
                    }
                    _ => None,
                }
            }
            other => {
                problems.push(
                    "security.azure_credential",
                    format!(
                        "{other:?}: expected \"default\", \"managed-identity\", \
                         \"workload-identity\" or \"client-secret\""
                    ),
                );
                None
            }
        };
        if !vault_url.starts_with("https://") {
            problems.push("security.key_vault_url", "must be https://");
            return None;
        }
        Some(KeySourceSettings::AzureKeyVault {
            vault_url: vault_url.to_owned(),
            secret_name: secret_name?,
            credential: credential?,
        })
    }

    #[cfg(not(feature = "azure-key-vault"))]
    fn key_vault(
        &self,
        _: &str,
        problems: &mut Problems,
        _: &dyn Fn(&str) -> Option<String>,
    ) -> Option<KeySourceSettings> {
        not_in_build(problems, "security.key_vault_url", "azure-key-vault")
    }
}

#[cfg(not(all(
    feature = "aws-secrets-manager",
    feature = "aws-kms",
    feature = "azure-key-vault"
)))]
fn not_in_build(problems: &mut Problems, path: &str, feature: &str) -> Option<KeySourceSettings> {
    problems.push(
        path,
        format!(
            "this key source is not in this build: enable the `{feature}` feature of queue-runtime"
        ),
    );
    None
}

#[cfg(any(
    feature = "aws-secrets-manager",
    feature = "aws-kms",
    feature = "azure-key-vault"
))]
/// A cloud key source, connected and read once (so a bad secret, a key that does not unwrap or a
/// denied call fails at startup), with the configuration path that names it.
pub(super) async fn connect(
    settings: &KeySourceSettings,
) -> Result<(Arc<dyn KeySource>, &'static str), queue_core::QueueError> {
    let path = match settings {
        #[cfg(feature = "aws-secrets-manager")]
        KeySourceSettings::AwsSecretsManager { .. } => "security.aws_secret_id",
        #[cfg(feature = "azure-key-vault")]
        KeySourceSettings::AzureKeyVault { .. } => "security.key_vault_url",
        #[cfg(feature = "aws-kms")]
        KeySourceSettings::AwsKmsWrapped { .. } => "security.key_wrapping",
        _ => {
            return Err(ConfigError::single("security", "not a key source in the cloud").into());
        }
    };
    let source: Arc<dyn KeySource> = Arc::new(super::KeyDocument::open(settings).await?);
    source
        .fetch()
        .await
        .map_err(|error| ConfigError::single(path, error.to_string()))?;
    Ok((source, path))
}

#[cfg(test)]
mod tests {
    use super::super::ClientConfig;
    use super::*;

    fn security(toml: &str) -> Result<KeySourceSettings, Vec<String>> {
        ClientConfig::from_toml_str(&format!("[security]\n{toml}"))
            .map(|config| config.security.map(|security| security.keys))
            .map_err(|error| {
                error
                    .problems()
                    .iter()
                    .map(|problem| format!("{}: {}", problem.path, problem.reason))
                    .collect()
            })
            .and_then(|keys| keys.ok_or_else(Vec::new))
    }

    #[test]
    fn one_key_source_and_fields_where_they_apply() {
        let problems = security("key_file = \"k\"\naws_secret_id = \"s\"").unwrap_err();
        assert!(
            problems.iter().any(|p| p.contains("set one key source")),
            "{problems:?}"
        );
        let problems = security("aws_region = \"eu-west-1\"").unwrap_err();
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("security.aws_region")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.contains("needs a key source")),
            "{problems:?}"
        );
        let problems = security("key_file = \"k\"\nazure_credential = \"default\"").unwrap_err();
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("security.azure_credential")),
            "{problems:?}"
        );
        let problems = security("key_file = \"k\"\nkey_wrapping = \"rot13\"").unwrap_err();
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("security.key_wrapping")),
            "{problems:?}"
        );
    }

    #[cfg(not(feature = "aws-secrets-manager"))]
    #[test]
    fn a_source_not_in_the_build_names_its_feature() {
        let problems = security("aws_secret_id = \"s\"").unwrap_err();
        assert!(
            problems
                .iter()
                .any(|p| p.contains("`aws-secrets-manager` feature")),
            "{problems:?}"
        );
    }

    #[cfg(all(feature = "aws-secrets-manager", feature = "aws-kms"))]
    #[test]
    fn aws_sources_read_from_the_file() {
        let keys = security(
            "aws_secret_id = \"queue-runtime/orders\"\naws_region = \"eu-west-1\"\nkey_wrapping = \"aws-kms\"",
        )
        .unwrap();
        let aws = queue_keys::AwsSettings::new().with_region("eu-west-1");
        assert_eq!(
            keys,
            KeySourceSettings::AwsKmsWrapped {
                store: Box::new(KeySourceSettings::AwsSecretsManager {
                    secret_id: "queue-runtime/orders".to_owned(),
                    aws: aws.clone(),
                }),
                aws,
            }
        );
        let problems =
            security("aws_secret_id = \"s\"\naws_endpoint = \"http://10.0.0.1\"").unwrap_err();
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("security.aws_endpoint")),
            "{problems:?}"
        );
        let problems = security("key_env = \"K\"\nkey_wrapping = \"aws-kms\"").unwrap_err();
        assert!(
            problems.iter().any(|p| p.contains("not key_env")),
            "{problems:?}"
        );
    }

    #[cfg(feature = "azure-key-vault")]
    #[test]
    fn key_vault_sources_read_from_the_file() {
        let keys = security(
            "key_vault_url = \"https://orders.vault.azure.net/\"\nkey_vault_secret = \"keys\"\nazure_credential = \"managed-identity\"\nazure_client_id = \"c1\"",
        )
        .unwrap();
        assert_eq!(
            keys,
            KeySourceSettings::AzureKeyVault {
                vault_url: "https://orders.vault.azure.net/".to_owned(),
                secret_name: "keys".to_owned(),
                credential: queue_keys::KeyVaultCredential::ManagedIdentity {
                    client_id: Some("c1".to_owned())
                },
            }
        );
        let problems = security(
            "key_vault_url = \"http://orders.vault.azure.net/\"\nazure_credential = \"client-secret\"\nazure_client_secret_env = \"QUEUE_RUNTIME_TEST_UNSET_VARIABLE\"",
        )
        .unwrap_err();
        for expected in [
            "security.key_vault_url",
            "security.key_vault_secret",
            "security.azure_tenant_id",
            "security.azure_client_id",
            "security.azure_client_secret_env",
        ] {
            assert!(
                problems.iter().any(|p| p.starts_with(expected)),
                "{expected}: {problems:?}"
            );
        }
    }
}
