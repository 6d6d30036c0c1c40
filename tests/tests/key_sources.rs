//! The key sources in the cloud through the facade, against moto (`cargo xtask test` starts it
//! and sets `QUEUE_RUNTIME_SQS_TEST_ENDPOINT`; without it: SKIPPED): a client whose
//! `[security]` settings name a keyset wrapped by a KMS key and kept in a Secrets Manager secret
//! seals and opens, sees a rotation at the next refresh, keeps the last good keyset when the
//! secret is replaced by something that is not a wrapped keyset, and fails at startup with a
//! clear error on bad input. Across the whole run, no key material, no secret value and no
//! credential appears in any log line or `Debug` output (the capture check of
//! `crates/queue-runtime/tests/secrets.rs`, extended to these sources).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../crates/queue-runtime/tests/support/mod.rs"]
mod support;

use std::sync::Arc;

use queue_runtime::config::{KeySourceSettings, SecuritySettings};
use queue_runtime::crypto::KeyId;
use queue_runtime::keys::{
    AwsSettings, AwsStaticCredentials, DocumentStore, KeysetDocument, KmsKeys, KmsWrapper,
    SecretsManagerSecret,
};
use queue_runtime::prelude::*;
use support::{Captured, broker, client_with, drain, forms, queue};

#[tokio::test]
async fn cloud_key_sources_through_the_facade_leak_nothing() {
    let Some(endpoint) = queue_sqs::testing::test_server_or_skip().unwrap() else {
        return;
    };
    let captured = Captured::default();
    let writer = captured.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish(),
    )
    .unwrap();

    // Credentials (moto accepts any). The secret key must never show; the access key id is an
    // identifier, not a secret (AWS puts it in every signed request and CloudTrail), and the SDK's
    // own TRACE logs print it in the canonical request, so it is not checked.
    let access_key = "AKIAQUEUERUNTIMETEST1";
    let secret_key = "c2VjcmV0LWFjY2Vzcy1rZXktdmFsdWUtZm9yLXRlc3Q";
    let aws = AwsSettings::local_server(&endpoint)
        .with_credentials(AwsStaticCredentials::new(access_key, secret_key));
    let wrapper = KmsWrapper::connect(&aws).await.unwrap();
    let kms_key = wrapper
        .client()
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .arn()
        .unwrap()
        .to_owned();
    let secret_id = format!("queue-runtime-test/keys-{}", std::process::id());
    let secret = SecretsManagerSecret::connect(&aws, &secret_id)
        .await
        .unwrap();
    let keys = KmsKeys::new(wrapper.clone(), secret.clone());
    let first = keys
        .create(&kms_key, KeyId::new("k-old").unwrap())
        .await
        .unwrap();

    let settings = SecuritySettings::new(KeySourceSettings::AwsKmsWrapped {
        store: Box::new(KeySourceSettings::AwsSecretsManager {
            secret_id: secret_id.clone(),
            aws: aws.clone(),
        }),
        aws: aws.clone(),
    });
    let security = settings.build().await.unwrap();
    let ring = Arc::clone(security.keys());
    let broker = broker();
    let client = client_with(&broker, security);
    let events = queue("events");
    client.send(&events, Message::new("first")).await.unwrap();

    // Rotation: a new secret version; seen at the next refresh; the old key keeps opening.
    let rotated = keys
        .edit(|document| {
            document.add_generated(KeyId::new("k-new").unwrap())?;
            document.promote("k-new")
        })
        .await
        .unwrap();
    let keyset = ring.refresh().await.unwrap();
    assert_eq!(
        keyset.shared().unwrap().primary().unwrap().id().as_str(),
        "k-new"
    );
    client.send(&events, Message::new("second")).await.unwrap();
    assert_eq!(drain(&client, "events").await.len(), 2);

    // A new version that is not a wrapped keyset: the last good keyset stays in use.
    let plain = KeysetDocument::generate(KeyId::new("k-plain").unwrap()).unwrap();
    secret.write(&plain.to_json().unwrap()).await.unwrap();
    let kept = ring.refresh().await.unwrap();
    assert_eq!(
        kept.shared().unwrap().primary().unwrap().id().as_str(),
        "k-new"
    );
    client.send(&events, Message::new("third")).await.unwrap();
    assert_eq!(drain(&client, "events").await.len(), 1);

    // At startup the same document is a clear configuration error.
    let error = settings.build().await.unwrap_err();
    assert_eq!(error.kind(), queue_runtime::core::ErrorKind::Config);
    assert!(error.message().contains("security.key_wrapping"), "{error}");
    assert!(
        error.message().contains("not a KMS-wrapped keyset"),
        "{error}"
    );
    // And a plain keyset source reading it is fine, while a secret that is not JSON is refused.
    let plain_settings = SecuritySettings::new(KeySourceSettings::AwsSecretsManager {
        secret_id: secret_id.clone(),
        aws: aws.clone(),
    });
    plain_settings.build().await.unwrap();
    secret
        .write(b"password=hunter2-not-a-keyset")
        .await
        .unwrap();
    let error = plain_settings.build().await.unwrap_err();
    assert!(
        error.message().contains("security.aws_secret_id"),
        "{error}"
    );

    let debug_output = format!(
        "{settings:?}\n{plain_settings:?}\n{aws:?}\n{secret:?}\n{keys:?}\n{wrapper:?}\n{ring:?}\n{client:?}\n{:?}\n{error}\n{error:?}",
        client.security()
    );
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("keyset loaded"), "the run logged key loading");
    assert!(
        logs.contains("keeping the last good keyset"),
        "the run logged the bad version"
    );
    let mut secrets: Vec<Vec<u8>> = first
        .keys()
        .chain(rotated.keys())
        .chain(plain.keys())
        .map(|key| key.material().expose().to_vec())
        .collect();
    secrets.push(secret_key.as_bytes().to_vec());
    secrets.push(b"hunter2-not-a-keyset".to_vec());
    for secret in &secrets {
        for form in forms(secret) {
            assert!(
                !logs.contains(&form),
                "a secret appears in the logs as {form}"
            );
            assert!(
                !debug_output.contains(&form),
                "a secret appears in Debug output as {form}"
            );
        }
    }
}
