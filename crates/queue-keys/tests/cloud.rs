//! The AWS key sources end to end against a local AWS server (moto, which serves Secrets Manager
//! and KMS as well as SQS): `cargo xtask test` starts it and sets
//! `QUEUE_RUNTIME_SQS_TEST_ENDPOINT`; without it every test here says SKIPPED (and fails when
//! `QUEUE_RUNTIME_REQUIRE_SQS` promised a server).
//!
//! What moto cannot show (it never refuses a disabled KMS key, never throttles, and checks key
//! policies only for `DescribeKey`) is covered by the error tables' unit tests in `src/aws.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use metrics::{
    Counter, CounterFn, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use queue_crypto::{KeyId, KeyState, Keyset};
use queue_keys::{
    AwsSettings, DocumentStore, FileDocument, KEY_SOURCE_FAILURES, KeyError, KeyRing,
    KeyRingOptions, KeySource, KeysetDocument, KmsKeys, KmsWrapper, SecretsManagerSecret,
    StoredKeys, WrappedKeyset,
};

/// The local server, or `None` after printing why the test is SKIPPED.
fn endpoint() -> Option<String> {
    match std::env::var("QUEUE_RUNTIME_SQS_TEST_ENDPOINT") {
        Ok(endpoint) if !endpoint.is_empty() => Some(endpoint),
        _ if std::env::var_os("QUEUE_RUNTIME_REQUIRE_SQS").is_some() => {
            panic!("QUEUE_RUNTIME_REQUIRE_SQS is set but QUEUE_RUNTIME_SQS_TEST_ENDPOINT is not")
        }
        _ => {
            eprintln!(
                "SKIPPED: no local AWS server (QUEUE_RUNTIME_SQS_TEST_ENDPOINT unset); \
                 `cargo xtask test` starts moto"
            );
            None
        }
    }
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}
static COUNTER: AtomicU64 = AtomicU64::new(0);

fn id(text: &str) -> KeyId {
    KeyId::new(text).unwrap()
}

/// What holds a shared keyset: the keyset itself, or the keys a source hands out.
trait SharedKeys {
    fn shared_keyset(&self) -> &Keyset;
}

impl SharedKeys for Keyset {
    fn shared_keyset(&self) -> &Keyset {
        self
    }
}

impl SharedKeys for queue_keys::Keys {
    fn shared_keyset(&self) -> &Keyset {
        self.shared().unwrap()
    }
}

impl<T: SharedKeys> SharedKeys for Arc<T> {
    fn shared_keyset(&self) -> &Keyset {
        (**self).shared_keyset()
    }
}

fn ids(keys: &impl SharedKeys) -> Vec<(String, KeyState)> {
    keys.shared_keyset()
        .keys()
        .map(|key| (key.id().to_string(), key.state()))
        .collect()
}

/// Every printable form of every key's material, for "never in the document at rest".
fn material_forms(document: &KeysetDocument) -> Vec<String> {
    document
        .keys()
        .flat_map(|key| {
            let bytes = key.material().expose();
            [hex::encode(bytes), STANDARD.encode(bytes)]
        })
        .collect()
}

async fn secret(endpoint: &str, prefix: &str) -> SecretsManagerSecret {
    SecretsManagerSecret::connect(&AwsSettings::local_server(endpoint), unique(prefix))
        .await
        .unwrap()
}

async fn kms(endpoint: &str) -> (KmsWrapper, String) {
    let wrapper = KmsWrapper::connect(&AwsSettings::local_server(endpoint))
        .await
        .unwrap();
    let key = wrapper
        .client()
        .create_key()
        .description("queue-keys test")
        .send()
        .await
        .unwrap();
    let arn = key.key_metadata().unwrap().arn().unwrap().to_owned();
    (wrapper, arn)
}

/// Counts the key-source failure counter by its `fallback` label.
#[derive(Default)]
struct Failures(Mutex<BTreeMap<String, u64>>);

struct FailureCounter {
    fallback: String,
    failures: &'static Failures,
}

impl CounterFn for FailureCounter {
    fn increment(&self, value: u64) {
        *self
            .failures
            .0
            .lock()
            .unwrap()
            .entry(self.fallback.clone())
            .or_default() += value;
    }
    fn absolute(&self, _value: u64) {}
}

impl Recorder for &'static Failures {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        if key.name() != KEY_SOURCE_FAILURES {
            return Counter::noop();
        }
        let source = key.labels().find(|label| label.key() == "key_source");
        let fallback = key.labels().find(|label| label.key() == "fallback");
        Counter::from_arc(Arc::new(FailureCounter {
            fallback: format!(
                "{}|{}",
                source.map(|label| label.value()).unwrap_or_default(),
                fallback.map(|label| label.value()).unwrap_or_default()
            ),
            failures: self,
        }))
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

fn failures() -> &'static Failures {
    static FAILURES: OnceLock<&'static Failures> = OnceLock::new();
    FAILURES.get_or_init(|| {
        let failures: &'static Failures = Box::leak(Box::default());
        metrics::set_global_recorder(failures).unwrap();
        failures
    })
}

fn failure_count(source: &str, fallback: &str) -> u64 {
    failures()
        .0
        .lock()
        .unwrap()
        .get(&format!("{source}|{fallback}"))
        .copied()
        .unwrap_or(0)
}

#[tokio::test]
async fn a_keyset_in_secrets_manager_rotates_with_a_new_secret_version() {
    let Some(endpoint) = endpoint() else { return };
    let secret = secret(&endpoint, "plain").await;
    // The first version creates the secret (base64 of the JSON, as an env variable holds it).
    let first = KeysetDocument::generate(id("k1")).unwrap();
    secret
        .write(STANDARD.encode(first.to_json().unwrap()).as_bytes())
        .await
        .unwrap();
    let source = Arc::new(StoredKeys::new(secret.clone()));
    let ring = KeyRing::with_options(
        source.clone(),
        KeyRingOptions::default().with_refresh_interval(Duration::from_secs(3600)),
    );
    assert_eq!(
        ids(&ring.keyset().await.unwrap()),
        [("k1".to_owned(), KeyState::Primary)]
    );

    // Rotation: add, then promote, each a new version (AWSCURRENT moves).
    source
        .edit(|document| document.add_generated(id("k2")))
        .await
        .unwrap();
    source
        .edit(|document| document.promote("k2"))
        .await
        .unwrap();
    let versions = secret
        .client()
        .list_secret_version_ids()
        .secret_id(secret.secret_id())
        .send()
        .await
        .unwrap();
    assert_eq!(versions.versions().len(), 3, "{versions:?}");
    // Cached until the next refresh, then the new version.
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
    let keyset = ring.refresh().await.unwrap();
    assert_eq!(
        ids(&keyset),
        [
            ("k1".to_owned(), KeyState::Active),
            ("k2".to_owned(), KeyState::Primary)
        ]
    );
    assert_eq!(ring.fetch_count(), 2);
}

#[tokio::test]
async fn what_is_not_a_keyset_is_a_clear_error_at_startup() {
    let Some(endpoint) = endpoint() else { return };
    let secret = secret(&endpoint, "garbage").await;
    secret.write(b"hunter2 is my password").await.unwrap();
    let error = StoredKeys::new(secret.clone()).fetch().await.unwrap_err();
    assert!(matches!(error, KeyError::Invalid { .. }), "{error}");
    assert!(error.to_string().contains(secret.secret_id()), "{error}");
    assert!(!error.to_string().contains("hunter2"), "{error}");

    // JSON, but not a keyset: named by line and column, never quoted.
    secret.write(br#"{"password": "hunter2"}"#).await.unwrap();
    let error = StoredKeys::new(secret.clone()).fetch().await.unwrap_err();
    assert!(matches!(error, KeyError::Invalid { .. }), "{error}");
    assert!(!error.to_string().contains("hunter2"), "{error}");

    // A missing secret: unavailable (may appear), named.
    let missing =
        SecretsManagerSecret::connect(&AwsSettings::local_server(&endpoint), unique("missing"))
            .await
            .unwrap();
    let error = StoredKeys::new(missing).fetch().await.unwrap_err();
    assert!(error.is_transient(), "{error}");
    assert!(
        error.to_string().contains("ResourceNotFoundException"),
        "{error}"
    );

    // Nothing listens: unavailable, no keyset at startup, counted without a fallback.
    let nowhere = SecretsManagerSecret::connect(
        &AwsSettings::local_server("http://127.0.0.1:9").with_max_attempts(1),
        "nowhere",
    )
    .await
    .unwrap();
    let before = failure_count("aws-secrets-manager nowhere", "none");
    let ring = KeyRing::new(Arc::new(StoredKeys::new(nowhere)));
    let error = ring.keyset().await.unwrap_err();
    assert!(error.is_transient(), "{error}");
    assert_eq!(
        failure_count("aws-secrets-manager nowhere", "none"),
        before + 1
    );
}

#[tokio::test]
async fn after_startup_a_bad_version_keeps_the_last_good_keyset_and_is_counted() {
    let Some(endpoint) = endpoint() else { return };
    let secret = secret(&endpoint, "fallback").await;
    let document = KeysetDocument::generate(id("k1")).unwrap();
    secret.write(&document.to_json().unwrap()).await.unwrap();
    let source = StoredKeys::new(secret.clone());
    let name = source.name();
    let ring = KeyRing::new(Arc::new(source));
    ring.keyset().await.unwrap();
    let before = failure_count(&name, "last_good");

    secret.write(b"not a keyset").await.unwrap();
    let keyset = ring.refresh().await.unwrap();
    assert_eq!(ids(&keyset), [("k1".to_owned(), KeyState::Primary)]);
    assert_eq!(failure_count(&name, "last_good"), before + 1);

    // Deleted: still the last good keyset, counted again.
    secret
        .client()
        .delete_secret()
        .secret_id(secret.secret_id())
        .force_delete_without_recovery(true)
        .send()
        .await
        .unwrap();
    assert_eq!(
        ids(&ring.refresh().await.unwrap()),
        [("k1".to_owned(), KeyState::Primary)]
    );
    assert_eq!(failure_count(&name, "last_good"), before + 2);
}

#[tokio::test]
async fn a_kms_wrapped_keyset_in_a_file_holds_no_key_and_rotates() {
    let Some(endpoint) = endpoint() else { return };
    let (wrapper, arn) = kms(&endpoint).await;
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("keys.wrapped.json");
    let keys = KmsKeys::new(wrapper.clone(), FileDocument::new(&path));

    let created = keys.create(&arn, id("k1")).await.unwrap();
    // Never overwritten.
    assert!(matches!(
        keys.create(&arn, id("k9")).await,
        Err(KeyError::Invalid { .. })
    ));
    let at_rest = std::fs::read_to_string(&path).unwrap();
    for form in material_forms(&created) {
        assert!(!at_rest.contains(&form), "key material at rest");
    }
    let wrapped = WrappedKeyset::parse(at_rest.as_bytes(), "t").unwrap();
    assert_eq!(wrapped.kms_key_id(), arn);
    // A plain reader says what it found.
    let error = StoredKeys::new(FileDocument::new(&path))
        .fetch()
        .await
        .unwrap_err();
    assert!(error.to_string().contains("KMS-wrapped"), "{error}");

    let ring = KeyRing::new(Arc::new(KmsKeys::new(
        wrapper.clone(),
        FileDocument::new(&path),
    )));
    assert_eq!(
        ids(&ring.keyset().await.unwrap()),
        [("k1".to_owned(), KeyState::Primary)]
    );

    // Add and promote: each a re-wrap under a fresh data key.
    keys.edit(|document| {
        document.add_generated(id("k2"))?;
        document.promote("k2")
    })
    .await
    .unwrap();
    let rewrapped = keys.read_wrapped().await.unwrap();
    assert_ne!(rewrapped, wrapped);
    assert_eq!(
        ids(&ring.refresh().await.unwrap()),
        [
            ("k1".to_owned(), KeyState::Active),
            ("k2".to_owned(), KeyState::Primary)
        ]
    );
    // Material survives the round trips unchanged.
    let read = keys.read_document().await.unwrap();
    assert_eq!(
        read.keyset()
            .unwrap()
            .get("k1")
            .unwrap()
            .material()
            .expose(),
        created
            .keyset()
            .unwrap()
            .get("k1")
            .unwrap()
            .material()
            .expose()
    );

    // Moving to another KMS key.
    let (_, other_arn) = kms(&endpoint).await;
    assert_eq!(keys.rewrap(Some(&other_arn)).await.unwrap(), other_arn);
    assert_eq!(keys.read_wrapped().await.unwrap().kms_key_id(), other_arn);
    assert_eq!(ids(&ring.refresh().await.unwrap()).len(), 2);
}

#[tokio::test]
async fn a_kms_wrapped_keyset_in_secrets_manager() {
    let Some(endpoint) = endpoint() else { return };
    let (wrapper, arn) = kms(&endpoint).await;
    let secret = secret(&endpoint, "wrapped").await;
    let keys = KmsKeys::new(wrapper.clone(), secret.clone());
    let created = keys.create(&arn, id("k1")).await.unwrap();
    let at_rest = secret.read().await.unwrap();
    let at_rest = String::from_utf8(at_rest.to_vec()).unwrap();
    for form in material_forms(&created) {
        assert!(!at_rest.contains(&form), "key material at rest");
    }
    // Never overwritten: not when the secret holds a document, not when the store cannot tell.
    assert!(matches!(
        keys.create(&arn, id("k9")).await,
        Err(KeyError::Invalid { .. })
    ));
    let nowhere = SecretsManagerSecret::connect(
        &AwsSettings::local_server("http://127.0.0.1:9").with_max_attempts(1),
        "nowhere",
    )
    .await
    .unwrap();
    let error = KmsKeys::new(wrapper, nowhere)
        .create(&arn, id("k1"))
        .await
        .unwrap_err();
    assert!(error.is_transient(), "{error}");
    let ring = KeyRing::new(Arc::new(keys));
    assert_eq!(
        ids(&ring.keyset().await.unwrap()),
        [("k1".to_owned(), KeyState::Primary)]
    );
}

#[tokio::test]
async fn a_wrapped_key_that_does_not_unwrap_or_a_denied_key_is_refused() {
    let Some(endpoint) = endpoint() else { return };
    let (wrapper, arn) = kms(&endpoint).await;
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("keys.json");
    let keys = KmsKeys::new(wrapper.clone(), FileDocument::new(&path));
    keys.create(&arn, id("k1")).await.unwrap();
    let good = std::fs::read_to_string(&path).unwrap();
    let wrapped: serde_json::Value = serde_json::from_str(&good).unwrap();
    let with = |field: &str, value: serde_json::Value| {
        let mut altered = wrapped.clone();
        altered[field] = value;
        serde_json::to_vec(&altered).unwrap()
    };
    let flip_last = |field: &str| {
        let mut bytes = STANDARD.decode(wrapped[field].as_str().unwrap()).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        with(field, STANDARD.encode(bytes).into())
    };

    // The wrapped data key altered: KMS refuses to unwrap it.
    std::fs::write(&path, flip_last("wrapped_data_key")).unwrap();
    let error = keys.fetch().await.unwrap_err();
    assert!(matches!(error, KeyError::Invalid { .. }), "{error}");
    assert!(error.to_string().contains("does not unwrap"), "{error}");

    // The sealed document altered: the data key unwraps, the document does not open.
    std::fs::write(&path, flip_last("sealed_keyset")).unwrap();
    let error = keys.fetch().await.unwrap_err();
    assert!(matches!(error, KeyError::Invalid { .. }), "{error}");
    assert!(error.to_string().contains("does not open"), "{error}");

    // Another KMS key named: KMS denies the decrypt (the data key is not that key's).
    let (_, other_arn) = kms(&endpoint).await;
    std::fs::write(&path, with("kms_key_id", other_arn.into())).unwrap();
    let error = keys.fetch().await.unwrap_err();
    assert!(error.is_transient(), "{error}");
    assert!(error.to_string().contains("denied"), "{error}");

    // A key that does not exist.
    let missing_key = with(
        "kms_key_id",
        "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000".into(),
    );
    std::fs::write(&path, missing_key).unwrap();
    let error = keys.fetch().await.unwrap_err();
    assert!(error.is_transient(), "{error}");

    // Wrapping under a key that does not exist fails before anything is written.
    let empty = directory.path().join("none.json");
    let error = KmsKeys::new(wrapper, FileDocument::new(&empty))
        .create("alias/does-not-exist", id("k1"))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("GenerateDataKey"), "{error}");
    assert!(!empty.exists());

    // After startup: the last good keyset stays, counted.
    std::fs::write(&path, &good).unwrap();
    let name = keys.name();
    let ring = KeyRing::new(Arc::new(keys));
    ring.keyset().await.unwrap();
    let before = failure_count(&name, "last_good");
    std::fs::write(&path, flip_last("wrapped_data_key")).unwrap();
    assert_eq!(
        ids(&ring.refresh().await.unwrap()),
        [("k1".to_owned(), KeyState::Primary)]
    );
    assert_eq!(failure_count(&name, "last_good"), before + 1);
}
