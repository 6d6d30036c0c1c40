//! The dispatch: which providers this build has, how each reads its own section and connects.
//!
//! The facade knows provider names only. Each provider crate owns its configuration type, reads
//! its section (reporting every problem with its path) and connects from it, the way opendal's
//! services own their `S3Config`; adding a provider is one variant and one arm in each `match`
//! below.

use std::sync::Arc;

use queue_core::config::ConfigError;
use queue_core::{QueueProvider, Result};

/// The providers this library knows, and the cargo feature that brings each in.
pub(super) const PROVIDERS: &[(&str, &str)] =
    &[("memory", "memory"), ("sqs", "sqs"), ("azure", "azure")];

/// The provider and its settings, as its own crate defines them.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ProviderConfig {
    /// The embedded broker.
    #[cfg(feature = "memory")]
    Memory(queue_memory::MemoryConfig),
    /// Amazon SQS.
    #[cfg(feature = "sqs")]
    Sqs(queue_sqs::SqsConfig),
    /// Azure Service Bus.
    #[cfg(feature = "azure")]
    Azure(queue_azure::AzureConfig),
}

impl ProviderConfig {
    /// The provider's name, as the configuration's `provider` field names it.
    pub fn name(&self) -> &'static str {
        match self {
            #[cfg(feature = "memory")]
            ProviderConfig::Memory(_) => "memory",
            #[cfg(feature = "sqs")]
            ProviderConfig::Sqs(_) => "sqs",
            #[cfg(feature = "azure")]
            ProviderConfig::Azure(_) => "azure",
        }
    }

    /// Builds the provider: SQS and Service Bus connect (and check their credentials and
    /// queues, unless told not to); the embedded broker creates its declared queues.
    pub async fn connect(&self) -> Result<Arc<dyn QueueProvider>> {
        Ok(match self {
            #[cfg(feature = "memory")]
            ProviderConfig::Memory(config) => {
                Arc::new(queue_memory::MemoryProvider::connect(config.clone())?)
            }
            #[cfg(feature = "sqs")]
            ProviderConfig::Sqs(config) => {
                Arc::new(queue_sqs::SqsProvider::connect(config.clone()).await?)
            }
            #[cfg(feature = "azure")]
            ProviderConfig::Azure(config) => {
                Arc::new(queue_azure::AzureProvider::connect(config).await?)
            }
        })
    }
}

/// Reads the section of the provider named `name` (an empty section when absent) with that
/// provider's own reader; paths come back inside the section's name.
pub(super) fn read(
    name: &str,
    section: Option<toml::Value>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ProviderConfig, ConfigError> {
    let section = section.unwrap_or_else(|| toml::Value::Table(toml::Table::new()));
    let read = match name {
        #[cfg(feature = "memory")]
        "memory" => {
            queue_memory::MemoryConfig::from_section(section, env).map(ProviderConfig::Memory)
        }
        #[cfg(feature = "sqs")]
        "sqs" => queue_sqs::SqsConfig::from_section(section, env).map(ProviderConfig::Sqs),
        #[cfg(feature = "azure")]
        "azure" => queue_azure::AzureConfig::from_section(section, env).map(ProviderConfig::Azure),
        _ => return Err(unavailable(name)),
    };
    read.map_err(|error| error.within(name))
}

/// The error for a provider this build does not have: unknown, or its feature is off.
fn unavailable(name: &str) -> ConfigError {
    let reason = match PROVIDERS.iter().find(|(known, _)| *known == name) {
        Some((_, feature)) => format!(
            "the {name} provider is not in this build: enable the `{feature}` feature of \
             queue-runtime"
        ),
        None => {
            let known: Vec<&str> = PROVIDERS.iter().map(|(known, _)| *known).collect();
            format!(
                "unknown provider {name:?}; expected one of {}",
                known.join(", ")
            )
        }
    };
    ConfigError::single("provider", reason)
}
