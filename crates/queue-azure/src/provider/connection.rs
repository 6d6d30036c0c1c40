//! Opening the SDK client: transport, retry policy and credentials from the configuration.

use std::sync::Arc;

use azservicebus::client::service_bus_client::WithCustomRetryPolicy;
use azservicebus::{
    ServiceBusClient, ServiceBusClientOptions, ServiceBusRetryOptions, ServiceBusTransportType,
};
use azure_core::credentials::{Secret, TokenCredential};
use azure_identity::{
    ClientSecretCredential, DefaultAzureCredential, ManagedIdentityCredential,
    ManagedIdentityCredentialOptions, UserAssignedId, WorkloadIdentityCredential,
};
use queue_core::Result;
use secrecy::ExposeSecret;

use super::Client;
use crate::config::{AzureConfig, AzureCredentials, AzureTransport, Endpoint};
use crate::error::map_sdk_error;
use crate::retry::FinalFailuresNotRetried;

pub(super) fn client_closed() -> azure_core::Error {
    azure_core::Error::message(
        azure_core::error::ErrorKind::Other,
        "The client is disposed",
    )
}

pub(super) async fn open_client(config: &AzureConfig, endpoint: &Endpoint) -> Result<Client> {
    open_sdk_client(config, endpoint)
        .await
        .map_err(|error| map_sdk_error("connect", error))
}

pub(super) async fn open_sdk_client(
    config: &AzureConfig,
    endpoint: &Endpoint,
) -> std::result::Result<Client, azure_core::Error> {
    let mut retry_options = ServiceBusRetryOptions::default();
    // Validated by AzureConfig::validate (1 s to 1 h, inside the SDK's range).
    let _ = retry_options.set_try_timeout(config.operation_timeout);
    let options = ServiceBusClientOptions {
        transport_type: match config.transport {
            AzureTransport::Amqp => ServiceBusTransportType::AmqpTcp,
            AzureTransport::AmqpWebSockets => ServiceBusTransportType::AmqpWebSocket,
        },
        retry_options,
        ..ServiceBusClientOptions::default()
    };
    match &config.credentials {
        AzureCredentials::ConnectionString(secret) if endpoint.emulator => {
            WithCustomRetryPolicy::<FinalFailuresNotRetried>::unsecured()
                .new_from_connection_string(secret.expose_secret(), options)
                .await
        }
        AzureCredentials::ConnectionString(secret) => {
            ServiceBusClient::with_custom_retry_policy::<FinalFailuresNotRetried>()
                .new_from_connection_string(secret.expose_secret(), options)
                .await
        }
        other => {
            let credential = token_credential(other)?;
            ServiceBusClient::with_custom_retry_policy::<FinalFailuresNotRetried>()
                .new_from_token_credential(endpoint.namespace.clone(), credential, options)
                .await
        }
    }
}

fn token_credential(
    credentials: &AzureCredentials,
) -> std::result::Result<Arc<dyn TokenCredential>, azure_core::Error> {
    Ok(match credentials {
        AzureCredentials::Default { .. } => DefaultAzureCredential::new()?,
        AzureCredentials::ManagedIdentity { client_id, .. } => {
            ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                user_assigned_id: client_id.clone().map(UserAssignedId::ClientId),
                ..ManagedIdentityCredentialOptions::default()
            }))?
        }
        AzureCredentials::ClientSecret {
            tenant_id,
            client_id,
            secret,
            ..
        } => ClientSecretCredential::new(
            tenant_id,
            client_id.clone(),
            Secret::new(secret.expose_secret().to_owned()),
            None,
        )?,
        AzureCredentials::WorkloadIdentity { .. } => WorkloadIdentityCredential::new(None)?,
        AzureCredentials::Token { credential, .. } => credential.clone(),
        AzureCredentials::ConnectionString(_) => {
            return Err(azure_core::Error::message(
                azure_core::error::ErrorKind::Credential,
                "a connection string is not a token credential",
            ));
        }
    })
}
