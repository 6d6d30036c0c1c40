//! Key sources, the key ring's caches, and the keyset file format.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use queue_crypto::{Context, CryptoError, Key, KeyId, KeyMaterial, KeyState, Keyset, Sealer};
use queue_keys::{
    EnvKeys, FileKeys, KeyError, KeyRing, KeyRingOptions, KeySource, Keys, KeysetDocument,
    StaticKeys,
};

fn id(text: &str) -> KeyId {
    KeyId::new(text).unwrap()
}

fn keyset_with(ids: &[(&str, KeyState)]) -> Keyset {
    Keyset::new(
        ids.iter()
            .map(|(key_id, state)| Key::new(id(key_id), KeyMaterial::generate().unwrap(), *state)),
    )
    .unwrap()
}

async fn primary_id(ring: &KeyRing) -> String {
    ring.keyset()
        .await
        .unwrap()
        .primary()
        .unwrap()
        .id()
        .to_string()
}

#[test]
fn a_document_round_trips_through_json() {
    let mut document = KeysetDocument::generate(id("k1")).unwrap();
    document.add_generated(id("k2")).unwrap();
    let json = document.to_json().unwrap();
    let parsed = KeysetDocument::parse(&json, "test").unwrap();
    let original: Vec<_> = document
        .keys()
        .map(|k| (k.id().clone(), k.state(), *k.material().expose()))
        .collect();
    let again: Vec<_> = parsed
        .keys()
        .map(|k| (k.id().clone(), k.state(), *k.material().expose()))
        .collect();
    assert_eq!(original, again);
    assert!(parsed.keys().all(|key| key.created().is_some()));
}

#[test]
fn rotation_steps_keep_the_keyset_valid() {
    let mut document = KeysetDocument::generate(id("old")).unwrap();
    document.add_generated(id("new")).unwrap();
    let states = |d: &KeysetDocument| {
        d.keys()
            .map(|k| (k.id().to_string(), k.state()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        states(&document),
        [
            ("old".into(), KeyState::Primary),
            ("new".into(), KeyState::Active)
        ]
    );
    // The primary seals: retiring it would leave nothing to seal with.
    let refused = document.retire("old").unwrap_err();
    assert!(
        refused.to_string().contains("promote its successor first"),
        "{refused}"
    );
    document.promote("new").unwrap();
    assert_eq!(
        states(&document),
        [
            ("old".into(), KeyState::Active),
            ("new".into(), KeyState::Primary)
        ]
    );
    document.retire("old").unwrap();
    assert_eq!(
        states(&document),
        [
            ("old".into(), KeyState::Retired),
            ("new".into(), KeyState::Primary)
        ]
    );
    // A retired key never seals again; an unknown id is named; a duplicate id is refused.
    assert!(matches!(
        document.promote("old"),
        Err(KeyError::Invalid { .. })
    ));
    assert!(matches!(
        document.promote("nope"),
        Err(KeyError::Crypto(CryptoError::UnknownKeyId(_)))
    ));
    assert!(document.add_generated(id("new")).is_err());
    // Only retired keys are removed, and never the last key.
    assert!(document.remove("new").is_err());
    document.remove("old").unwrap();
    assert_eq!(states(&document), [("new".into(), KeyState::Primary)]);
}

#[test]
fn parse_errors_name_the_place_never_the_material() {
    let material = STANDARD.encode([7_u8; 32]);
    let cases = [
        // material where a number belongs: serde would quote it
        format!(r#"{{"version": "{material}", "keys": []}}"#),
        // material of the wrong length
        format!(
            r#"{{"version": 1, "keys": [{{"id": "k", "state": "primary", "material": "{}"}}]}}"#,
            STANDARD.encode([7_u8; 31])
        ),
        // not base64
        format!(
            r#"{{"version": 1, "keys": [{{"id": "k", "state": "primary", "material": "{material}!"}}]}}"#
        ),
        // unknown state
        format!(
            r#"{{"version": 1, "keys": [{{"id": "k", "state": "{material}", "material": "{material}"}}]}}"#
        ),
        // two primaries
        format!(
            r#"{{"version": 1, "keys": [{{"id": "a", "state": "primary", "material": "{material}"}}, {{"id": "b", "state": "primary", "material": "{material}"}}]}}"#
        ),
        // syntax error right after the material
        format!(
            r#"{{"version": 1, "keys": [{{"id": "k", "state": "primary", "material": "{material}" "#
        ),
        // unsupported version
        format!(
            r#"{{"version": 2, "keys": [{{"id": "k", "state": "primary", "material": "{material}"}}]}}"#
        ),
        // bad time
        format!(
            r#"{{"version": 1, "keys": [{{"id": "k", "state": "primary", "material": "{material}", "created": "yesterday"}}]}}"#
        ),
    ];
    for case in cases {
        let error = KeysetDocument::parse(case.as_bytes(), "file keys.json").unwrap_err();
        let text = format!("{error} {error:?}");
        assert!(matches!(error, KeyError::Invalid { .. }), "{text}");
        assert!(text.contains("keys.json"), "{text}");
        assert!(!text.contains(&material[..16]), "material leaked: {text}");
    }
}

#[test]
fn debug_output_never_shows_material() {
    let document = KeysetDocument::generate(id("k1")).unwrap();
    let material = *document
        .keyset()
        .unwrap()
        .primary()
        .unwrap()
        .material()
        .expose();
    let copy = KeysetDocument::parse(&document.to_json().unwrap(), "t").unwrap();
    let ring = KeyRing::new(Arc::new(StaticKeys::new(copy.into_keyset().unwrap())));
    let text = format!("{document:?} {:?} {ring:?}", document.keyset());
    for needle in [hex::encode(material), STANDARD.encode(material)] {
        assert!(!text.contains(&needle[..12]), "{text}");
    }
    assert!(text.contains("k1"));
}

#[test]
fn generated_files_are_never_overwritten_and_are_private() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("keys.json");
    queue_keys::generate_keyset_file(&path, id("k1")).unwrap();
    let error = queue_keys::generate_keyset_file(&path, id("k2")).unwrap_err();
    assert!(
        error.to_string().contains("refusing to overwrite"),
        "{error}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let document = KeysetDocument::read_file(&path).unwrap();
    assert_eq!(
        document.keyset().unwrap().primary().unwrap().id().as_str(),
        "k1"
    );
    // No temporary file is left behind.
    assert_eq!(std::fs::read_dir(directory.path()).unwrap().count(), 1);
}

#[tokio::test]
async fn the_file_source_sees_a_replaced_file_on_refresh() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("keys.json");
    let mut document = queue_keys::generate_keyset_file(&path, id("k1")).unwrap();
    let ring = KeyRing::with_options(
        Arc::new(FileKeys::new(&path)),
        KeyRingOptions::default().with_refresh_interval(Duration::from_millis(200)),
    );
    assert_eq!(primary_id(&ring).await, "k1");
    document.add_generated(id("k2")).unwrap();
    document.promote("k2").unwrap();
    document.write_file(&path).unwrap();
    // Within the refresh interval the cached keyset is still used...
    assert_eq!(primary_id(&ring).await, "k1");
    // ...and after it the replaced file is read.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(primary_id(&ring).await, "k2");
}

#[tokio::test]
async fn a_broken_file_keeps_the_last_good_keyset() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("keys.json");
    queue_keys::generate_keyset_file(&path, id("k1")).unwrap();
    let ring = KeyRing::new(Arc::new(FileKeys::new(&path)));
    ring.keyset().await.unwrap();
    std::fs::write(&path, b"{ half a file").unwrap();
    ring.refresh().await.unwrap();
    assert_eq!(primary_id(&ring).await, "k1");
    std::fs::remove_file(&path).unwrap();
    ring.refresh().await.unwrap();
    assert_eq!(primary_id(&ring).await, "k1");
    // A ring that never had a keyset reports the source's error.
    let fresh = KeyRing::new(Arc::new(FileKeys::new(&path)));
    let error = fresh.keyset().await.unwrap_err();
    assert!(error.is_transient(), "{error}");
    assert!(error.to_string().contains("keys.json"), "{error}");
}

/// The workspace forbids `unsafe`, and `std::env::set_var` is unsafe in edition 2024, so the
/// environment test runs in a child process (this same test binary) given the variables.
#[test]
fn the_env_source_reads_base64_or_json() {
    let document = KeysetDocument::generate(id("env-key")).unwrap();
    let json = document.to_json().unwrap();
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "env_source_in_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("QUEUE_KEYS_TEST_CHILD", "1")
        .env("QUEUE_KEYS_TEST_BASE64", STANDARD.encode(&*json))
        .env("QUEUE_KEYS_TEST_JSON", std::str::from_utf8(&json).unwrap())
        .env("QUEUE_KEYS_TEST_BAD", "not base64 at all!")
        .env_remove("QUEUE_KEYS_TEST_UNSET")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&child.stdout);
    assert!(child.status.success(), "{stdout}");
    // A filter that matched nothing would pass too: the child must have run the test.
    assert!(
        stdout.contains("test env_source_in_child ... ok"),
        "{stdout}"
    );
}

#[tokio::test]
async fn env_source_in_child() {
    if std::env::var_os("QUEUE_KEYS_TEST_CHILD").is_none() {
        return; // run by the_env_source_reads_base64_or_json, with the variables set
    }
    for variable in ["QUEUE_KEYS_TEST_BASE64", "QUEUE_KEYS_TEST_JSON"] {
        let keys = EnvKeys::new(variable).fetch().await.unwrap();
        assert_eq!(
            keys.shared().unwrap().primary().unwrap().id().as_str(),
            "env-key"
        );
    }
    let bad = EnvKeys::new("QUEUE_KEYS_TEST_BAD")
        .fetch()
        .await
        .unwrap_err();
    assert!(matches!(bad, KeyError::Invalid { .. }), "{bad}");
    let missing = EnvKeys::new("QUEUE_KEYS_TEST_UNSET")
        .fetch()
        .await
        .unwrap_err();
    assert!(missing.is_transient() && missing.to_string().contains("QUEUE_KEYS_TEST_UNSET"));
}

/// A source that counts its fetches and can be switched off.
#[derive(Debug)]
struct Counting {
    keyset: Arc<Keyset>,
    down: AtomicBool,
}

#[async_trait]
impl KeySource for Counting {
    fn name(&self) -> String {
        "counting".into()
    }
    async fn fetch(&self) -> queue_keys::Result<Arc<Keys>> {
        if self.down.load(Ordering::Relaxed) {
            return Err(KeyError::Unavailable {
                source_name: self.name(),
                reason: "down".into(),
            });
        }
        Ok(Arc::new(Keys::from(Arc::clone(&self.keyset))))
    }
}

#[tokio::test]
async fn a_flood_of_forged_key_ids_does_not_reach_the_source() {
    let keyset = Arc::new(keyset_with(&[("real", KeyState::Primary)]));
    let source = Arc::new(Counting {
        keyset: Arc::clone(&keyset),
        down: AtomicBool::new(false),
    });
    let ring = KeyRing::new(source);
    let context = Context::new("q");
    ring.keyset().await.unwrap();
    assert_eq!(ring.fetch_count(), 1);
    for n in 0..2_000 {
        // Each envelope claims a different key id, as a forger's would.
        let forged = Keyset::new([Key::new(
            id(&format!("forged-{n}")),
            KeyMaterial::generate().unwrap(),
            KeyState::Primary,
        )])
        .unwrap();
        let envelope = Sealer::new().seal(&forged, b"x", &context).unwrap();
        let error = ring.open(&envelope, &context).await.unwrap_err();
        assert_eq!(error, KeyError::unknown_key_id(format!("forged-{n}")));
    }
    // One forced refresh for the first unknown id; the rest answered without the source.
    assert_eq!(ring.fetch_count(), 2, "the source was asked per forged id");
    // The real key still opens.
    let envelope = Sealer::new().seal(&keyset, b"ok", &context).unwrap();
    assert_eq!(
        ring.open(&envelope, &context).await.unwrap().plaintext(),
        b"ok"
    );
    assert_eq!(ring.fetch_count(), 2);
}

#[tokio::test]
async fn a_key_added_at_the_source_is_found_by_a_forced_refresh() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("keys.json");
    let mut document = queue_keys::generate_keyset_file(&path, id("k1")).unwrap();
    let ring = KeyRing::new(Arc::new(FileKeys::new(&path)));
    ring.keyset().await.unwrap();
    // A sender got the new key first (the runbook says receivers first, but be forgiving).
    document.add_generated(id("k2")).unwrap();
    document.promote("k2").unwrap();
    document.write_file(&path).unwrap();
    let sender = KeysetDocument::read_file(&path)
        .unwrap()
        .into_keyset()
        .unwrap();
    let context = Context::new("q");
    let envelope = Sealer::new().seal(&sender, b"new key", &context).unwrap();
    assert_eq!(
        ring.open(&envelope, &context).await.unwrap().plaintext(),
        b"new key"
    );
}

#[tokio::test]
async fn an_unreachable_source_keeps_serving_and_errors_are_typed() {
    let keyset = Arc::new(keyset_with(&[
        ("k", KeyState::Primary),
        ("old", KeyState::Retired),
    ]));
    let source = Arc::new(Counting {
        keyset: Arc::clone(&keyset),
        down: AtomicBool::new(false),
    });
    let ring = KeyRing::new(Arc::clone(&source) as Arc<dyn KeySource>);
    let context = Context::new("q");
    let envelope = Sealer::new().seal(&keyset, b"hi", &context).unwrap();
    ring.keyset().await.unwrap();
    source.down.store(true, Ordering::Relaxed);
    ring.refresh().await.unwrap();
    assert_eq!(
        ring.open(&envelope, &context).await.unwrap().plaintext(),
        b"hi"
    );
    // Tampering stays a crypto error; a retired key is named.
    let mut tampered = envelope.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert_eq!(
        ring.open(&tampered, &context).await.unwrap_err(),
        KeyError::Crypto(CryptoError::DecryptFailed)
    );
    let retired = Keyset::new([Key::new(
        id("old"),
        KeyMaterial::from_slice(keyset.get("old").unwrap().material().expose()).unwrap(),
        KeyState::Primary,
    )])
    .unwrap();
    let old_envelope = Sealer::new().seal(&retired, b"old", &context).unwrap();
    assert_eq!(
        ring.open(&old_envelope, &context).await.unwrap_err(),
        KeyError::Crypto(CryptoError::RetiredKey("old".into()))
    );
}
