//! No key material and no connection-string secret in any log line or `Debug` output, across a
//! full run: sealing, opening, rotation, refusals, a broken key file, webhook verification. The
//! key sources in the cloud (Secrets Manager, KMS-wrapped keysets) get the same check against moto
//! in `tests/tests/key_sources.rs` (the facade's tests compile no cloud SDK).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use queue_runtime::config::Secret;
use queue_runtime::core::QueueProvider;
use queue_runtime::crypto::KeyId;
use queue_runtime::crypto::public::Kem;
use queue_runtime::keys::{FileKeys, KeyRing, KeyRingOptions, KeysetDocument, Role};
use queue_runtime::prelude::*;
use queue_runtime::webhook::{WebhookSecret, sign_github_payload, verify_github_signature};
use support::*;

#[tokio::test]
async fn no_secret_appears_in_logs_or_debug_output() {
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

    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("keys.json");
    let mut document = KeysetDocument::generate(KeyId::new("k-old").unwrap()).unwrap();
    document.write_file(&path).unwrap();
    let ring = Arc::new(KeyRing::with_options(
        Arc::new(FileKeys::new(&path)),
        KeyRingOptions::default().with_refresh_interval(Duration::from_millis(50)),
    ));
    let broker = broker();
    let client = client_with(&broker, Security::new(Arc::clone(&ring)));
    let events = queue("events");

    // Sealed round trip, rotation, a broken key file (last good keyset kept), refusals.
    client.send(&events, Message::new("first")).await.unwrap();
    document
        .add_generated(KeyId::new("k-new").unwrap())
        .unwrap();
    document.promote("k-new").unwrap();
    document.write_file(&path).unwrap();
    ring.refresh().await.unwrap();
    client.send(&events, Message::new("second")).await.unwrap();
    let copy = raw_messages(&broker, "events").await.remove(0);
    assert_eq!(drain(&client, "events").await.len(), 2);
    broker.send(&events, copy.clone()).await.unwrap(); // replay
    let mut tampered = copy.body().to_vec();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    broker
        .send(&events, copy.to_builder().body(tampered).build().unwrap())
        .await
        .unwrap();
    broker
        .send(&events, Message::new("unsealed"))
        .await
        .unwrap();
    std::fs::write(
        &path,
        format!(
            "{{\"version\": \"{}\"",
            STANDARD.encode(
                document
                    .keyset()
                    .unwrap()
                    .primary()
                    .unwrap()
                    .material()
                    .expose()
            )
        ),
    )
    .unwrap();
    ring.refresh().await.unwrap();
    assert!(drain(&client, "events").await.is_empty());
    assert_eq!(dead_letter_reasons(&broker, "events").await.len(), 3);
    let invalid =
        KeysetDocument::parse(std::fs::read(&path).unwrap().as_slice(), "file").unwrap_err();

    // Public-key mode: a consumer and a producer, each with its own key file; an untrusted
    // producer's message refused.
    let mut consumer_doc = KeysetDocument::empty(Some(Role::Consumer));
    consumer_doc
        .generate_recipient_key(KeyId::new("r1").unwrap(), Kem::XWing)
        .unwrap();
    let mut producer_doc = KeysetDocument::empty(Some(Role::Producer));
    producer_doc
        .generate_signing_key(KeyId::new("s1").unwrap())
        .unwrap();
    producer_doc
        .import_public(&consumer_doc.export_public().unwrap())
        .unwrap();
    consumer_doc
        .import_public(&producer_doc.export_public().unwrap())
        .unwrap();
    let mut intruder_doc = KeysetDocument::parse(&producer_doc.to_json().unwrap(), "p").unwrap();
    intruder_doc
        .generate_signing_key(KeyId::new("intruder").unwrap())
        .unwrap();
    intruder_doc.promote("intruder").unwrap();
    let audit = queue("audit");
    let public_side = |document: &KeysetDocument, name: &str, producer_only: bool| {
        let file = directory.path().join(name);
        document.write_file(&file).unwrap();
        Security::new(KeyRing::with_options(
            Arc::new(FileKeys::new(file)),
            KeyRingOptions::default().with_producer_only(producer_only),
        ))
        .with_queue_policy(
            audit.clone(),
            QueuePolicy::default().with_mode(SealMode::PublicKey),
        )
    };
    let producer = client_with(&broker, public_side(&producer_doc, "producer.json", true));
    let consumer = client_with(&broker, public_side(&consumer_doc, "consumer.json", false));
    let intruder = client_with(&broker, public_side(&intruder_doc, "intruder.json", true));
    producer.send(&audit, Message::new("third")).await.unwrap();
    intruder.send(&audit, Message::new("fourth")).await.unwrap();
    assert_eq!(drain(&consumer, "audit").await.len(), 1);
    assert_eq!(
        dead_letter_reasons(&broker, "audit").await,
        ["rejected: authentication"]
    );
    let mut public_secrets: Vec<Vec<u8>> = Vec::new();
    for document in [&consumer_doc, &producer_doc, &intruder_doc] {
        let keys = document.to_keys("d").unwrap();
        if let Some(consumer_keys) = keys.consumer() {
            public_secrets.extend(
                consumer_keys
                    .key_pairs()
                    .map(|pair| pair.expose_private_key().to_vec()),
            );
        }
        if let Some(producer_keys) = keys.producer() {
            public_secrets.extend(
                producer_keys
                    .signers()
                    .map(|key| key.expose_seed().to_vec()),
            );
        }
    }
    assert_eq!(
        public_secrets.len(),
        4,
        "r1, s1, and the intruder's s1 and key"
    );
    let public_debug = format!(
        "{consumer_doc:?} {producer_doc:?} {intruder_doc:?} {:?} {:?} {producer:?} {consumer:?} {:?}",
        consumer_doc.to_keys("c").unwrap(),
        producer_doc.to_keys("p").unwrap(),
        consumer.security(),
    );

    // Webhooks and configuration secrets.
    let webhook_secret = b"webhook-secret-value-0123456789abcdef".to_vec();
    let webhook = WebhookSecret::new(webhook_secret.clone());
    let header = sign_github_payload(&webhook, b"{}");
    verify_github_signature(&webhook, b"{}", Some(&header)).unwrap();
    let connection_secret = "SharedAccessKey=c2VjcmV0LWNvbm5lY3Rpb24ta2V5LXZhbHVlCg==";
    let connection = Secret::new(format!(
        "Endpoint=sb://example.servicebus.windows.net/;SharedAccessKeyName=app;{connection_secret}"
    ));

    let config = ClientConfig::from_toml_str(&format!(
        "[security]\nkey_file = \"{}\"\nunsealed = \"allow_with_alert\"",
        path.display()
    ))
    .unwrap();
    let debug_output = format!(
        "{public_debug}\n{config:?}\n{:?}\n{}",
        config.security,
        format_args!(
            "{client:?}\n{ring:?}\n{document:?}\n{:?}\n{webhook:?}\n{connection:?}\n{connection}\n{invalid}\n{invalid:?}\n{:?}",
            document.keyset(),
            client.security(),
        )
    );
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("message refused"),
        "the run logged its refusals"
    );
    assert!(logs.contains("keyset loaded"), "the run logged key loading");
    assert!(
        logs.contains("keeping the last good keyset"),
        "the run logged the broken file"
    );

    let mut secrets: Vec<Vec<u8>> = document
        .keys()
        .map(|key| key.material().expose().to_vec())
        .collect();
    secrets.extend(public_secrets);
    secrets.push(webhook_secret);
    secrets.push(connection_secret.as_bytes().to_vec());
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
    // And the bodies never appear in the logs either.
    for body in ["first", "second", "third", "fourth"] {
        assert!(
            !logs.contains(&format!("\"{body}\"")),
            "a body appears in the logs"
        );
    }
}
