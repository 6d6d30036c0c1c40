//! The Key Vault source against a real vault: runs when `QUEUE_RUNTIME_KEY_VAULT_TEST_URL`
//! names one (`https://<vault>.vault.azure.net/`), with `DefaultAzureCredential` (environment,
//! workload or managed identity, Azure CLI) allowed to get and set secrets. Otherwise it says
//! SKIPPED: there is no Key Vault emulator. The mappings and errors are unit-tested in
//! `src/key_vault.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use queue_crypto::{KeyId, KeyState};
use queue_keys::{
    DocumentStore, KeyError, KeyRing, KeySource, KeyVaultCredential, KeyVaultSecret,
    KeysetDocument, StoredKeys,
};

const VARIABLE: &str = "QUEUE_RUNTIME_KEY_VAULT_TEST_URL";

#[tokio::test]
async fn a_keyset_in_key_vault_rotates_with_a_new_version() {
    let Some(vault_url) = std::env::var(VARIABLE).ok().filter(|url| !url.is_empty()) else {
        eprintln!("SKIPPED: {VARIABLE} is unset (no Key Vault to test against)");
        return;
    };
    let name = format!("queue-keys-test-{}", std::process::id());
    let secret = KeyVaultSecret::connect(&vault_url, &name, &KeyVaultCredential::Default).unwrap();
    let document = KeysetDocument::generate(KeyId::new("k1").unwrap()).unwrap();
    secret.write(&document.to_json().unwrap()).await.unwrap();
    let source = Arc::new(StoredKeys::new(secret.clone()));
    let ring = KeyRing::new(source.clone());
    assert_eq!(
        ring.keyset()
            .await
            .unwrap()
            .primary()
            .unwrap()
            .id()
            .as_str(),
        "k1"
    );
    source
        .edit(|document| {
            document.add_generated(KeyId::new("k2").unwrap())?;
            document.promote("k2")
        })
        .await
        .unwrap();
    let keys = ring.refresh().await.unwrap();
    let keyset = keys.shared().unwrap();
    assert_eq!(keyset.get("k1").unwrap().state(), KeyState::Active);
    assert_eq!(keyset.primary().unwrap().id().as_str(), "k2");

    // Not a keyset: refused, never quoted.
    secret.write(b"hunter2").await.unwrap();
    let error = source.fetch().await.unwrap_err();
    assert!(matches!(error, KeyError::Invalid { .. }), "{error}");
    assert!(!error.to_string().contains("hunter2"), "{error}");

    // A secret that does not exist.
    let missing = KeyVaultSecret::connect(
        &vault_url,
        format!("{name}-missing"),
        &KeyVaultCredential::Default,
    )
    .unwrap();
    let error = StoredKeys::new(missing).fetch().await.unwrap_err();
    assert!(error.is_transient(), "{error}");
    assert!(error.to_string().contains("404"), "{error}");
}
