//! `queue-runtime keys` as an operator runs it: on keyset files (a shared-key rotation, the
//! public-key exchange between a consumer and a producer), and on a keyset kept in AWS Secrets
//! Manager, plain and wrapped by a KMS key, against the local AWS server `cargo xtask test`
//! starts (moto).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use assert_cmd::Command;
use predicates::prelude::*;
use queue_sqs::testing::test_server_or_skip;

/// The command, with no colour, no configuration from the environment, and the credentials
/// moto accepts.
fn keys() -> Command {
    let mut command = Command::cargo_bin("queue-runtime").unwrap();
    command
        .env("NO_COLOR", "1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env_remove("QUEUE_RUNTIME_CONFIG")
        .arg("keys");
    command
}

mod support;
use support::json;

/// `keys --file PATH`.
fn on_file(path: &str) -> Command {
    let mut command = keys();
    command.args(["--file", path]);
    command
}

/// `keys list --output json` on what `command` names (`--file` or `--config`).
fn list_json(mut command: Command) -> serde_json::Value {
    json(&command.args(["list", "--output", "json"]).output().unwrap())
}

/// (id, state, kind) of every key the report lists.
fn listed(report: &serde_json::Value) -> Vec<(String, String, String)> {
    report["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| {
            (
                key["id"].as_str().unwrap().to_owned(),
                key["state"].as_str().unwrap().to_owned(),
                key["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn key(id: &str, state: &str, kind: &str) -> (String, String, String) {
    (id.to_owned(), state.to_owned(), kind.to_owned())
}

/// Every `material` and `private_key` value of a keyset file: what must never be printed.
fn secrets_of(path: &Path) -> Vec<String> {
    let document: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let mut secrets = Vec::new();
    for section in ["keys", "recipient_keys", "signing_keys"] {
        for entry in document[section].as_array().into_iter().flatten() {
            for field in ["material", "private_key", "seed"] {
                if let Some(secret) = entry[field].as_str() {
                    secrets.push(secret.to_owned());
                }
            }
        }
    }
    assert!(!secrets.is_empty(), "no secret found in {}", path.display());
    secrets
}

fn assert_no_secret(output: &std::process::Output, secrets: &[String]) {
    let everything = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    for secret in secrets {
        assert!(
            !everything.contains(secret.as_str()),
            "a secret was printed"
        );
    }
}

#[test]
fn a_shared_key_rotation_on_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys.json");
    let file = file.to_str().unwrap();
    on_file(file)
        .args(["generate", "--id", "orders-2026-11"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "created with orders-2026-11 as the primary key",
        ));
    // Never over an existing keyset: losing a key loses its messages.
    on_file(file)
        .args(["generate", "--id", "again"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("refusing to overwrite"));

    // The three steps: add (active), promote, retire; then remove, confirmed.
    on_file(file)
        .args(["add", "--id", "orders-2026-12"])
        .assert()
        .success();
    on_file(file)
        .args(["promote", "--id", "orders-2026-12"])
        .assert()
        .success();
    let report = json(
        &on_file(file)
            .args(["--output", "json", "retire", "--id", "orders-2026-11"])
            .output()
            .unwrap(),
    );
    assert_eq!(
        listed(&report),
        [
            key("orders-2026-11", "retired", "shared"),
            key("orders-2026-12", "primary", "shared")
        ]
    );
    assert_eq!(report["source"], format!("file {file}"));
    assert_eq!(report["done"], "retired orders-2026-11");

    let secrets = secrets_of(Path::new(file));
    // Removing is destructive: refused without a terminal to ask, done with --yes.
    let refused = on_file(file)
        .args(["remove", "--id", "orders-2026-11"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--yes"));
    let listing = on_file(file).args(["list"]).output().unwrap();
    assert!(listing.status.success());
    assert!(String::from_utf8_lossy(&listing.stdout).contains("orders-2026-11"));
    assert_no_secret(&listing, &secrets);
    on_file(file)
        .args(["remove", "--id", "orders-2026-11", "--yes"])
        .assert()
        .success()
        .stdout(predicate::str::contains("removed orders-2026-11"));

    // Bad input: a refused step changes nothing and says why; usage errors exit 2.
    on_file(file)
        .args(["retire", "--id", "orders-2026-12"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("promote its successor first"));
    on_file(file)
        .args(["promote", "--id", "nobody"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("nobody"));
    on_file(file)
        .args(["add", "--id", "bad id!"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("--id"));
    on_file(file).args(["promote"]).assert().code(2);
    let report = list_json(on_file(file));
    assert_eq!(
        listed(&report),
        [key("orders-2026-12", "primary", "shared")]
    );
    on_file(dir.path().join("none.json").to_str().unwrap())
        .args(["list"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("none.json"));
}

#[test]
fn public_key_mode_is_set_up_by_exchanging_public_halves() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let (consumer, producer) = (path("consumer.json"), path("producer.json"));
    let (consumer_public, producer_public) =
        (path("consumer-public.json"), path("producer-public.json"));

    on_file(&consumer)
        .args(["recipient", "--id", "orders-r1", "--kem", "x-wing"])
        .assert()
        .success()
        .stdout(predicate::str::contains("x-wing"));
    on_file(&producer)
        .args(["signer", "--id", "webhook-1"])
        .assert()
        .success();
    // A producer's keyset never holds a key that opens.
    on_file(&producer)
        .args(["recipient", "--id", "stolen"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("producer"));

    on_file(&consumer)
        .args(["export-public", "--out", &consumer_public])
        .assert()
        .success()
        .stdout(predicate::str::contains("no secret in it"));
    on_file(&producer)
        .args(["import-public", "--from", &consumer_public])
        .assert()
        .success()
        .stdout(predicate::str::contains("imported orders-r1"));
    // To stdout: the export is JSON whatever the output format.
    let export = on_file(&producer).args(["export-public"]).output().unwrap();
    assert!(export.status.success());
    std::fs::write(&producer_public, &export.stdout).unwrap();
    assert_no_secret(&export, &secrets_of(Path::new(&producer)));
    on_file(&consumer)
        .args(["import-public", "--from", &producer_public])
        .assert()
        .success();

    let consumer_report = list_json(on_file(&consumer));
    assert_eq!(consumer_report["role"], "consumer");
    assert_eq!(
        listed(&consumer_report),
        [
            key("orders-r1", "primary", "recipient_keys"),
            key("webhook-1", "primary", "trusted_senders")
        ]
    );
    assert_eq!(consumer_report["keys"][0]["kem"], "x-wing");
    // The trusted sender's public key is the producer's signing key's public half.
    let producer_report = list_json(on_file(&producer));
    let signing_public = producer_report["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|key| key["kind"] == "signing_keys")
        .unwrap()["public_key"]
        .clone();
    assert_eq!(consumer_report["keys"][1]["public_key"], signing_public);

    // One more sender, trusted by its base64 public key.
    on_file(&consumer)
        .args([
            "trust",
            "--id",
            "webhook-2",
            "--public-key",
            signing_public.as_str().unwrap(),
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("trusting sender webhook-2"));
    on_file(&consumer)
        .args(["trust", "--id", "webhook-3", "--public-key", "***"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("not valid base64"));
}

/// A new key in the local server's KMS, by id.
async fn new_kms_key(kms: &queue_runtime::keys::KmsWrapper) -> String {
    kms.client()
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .key_id()
        .to_owned()
}

/// A configuration whose keys live in a Secrets Manager secret of the local server, wrapped by
/// `kms` when given.
fn secret_config(dir: &Path, endpoint: &str, secret: &str, wrapped: bool) -> std::path::PathBuf {
    let config = dir.join(format!("{secret}.toml"));
    let wrapping = if wrapped {
        "key_wrapping = \"aws-kms\"\n"
    } else {
        ""
    };
    std::fs::write(
        &config,
        format!(
            "provider = \"memory\"\n[[memory.queues]]\nname = \"orders\"\n[security]\n\
             aws_secret_id = \"{secret}\"\naws_region = \"us-east-1\"\n\
             aws_endpoint = \"{endpoint}\"\n{wrapping}"
        ),
    )
    .unwrap();
    config
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_kept_in_secrets_manager_plain_and_wrapped_by_kms() {
    let Some(endpoint) = test_server_or_skip().unwrap() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let with = |config: &Path| {
        let mut command = keys();
        command.arg("--config").arg(config);
        command
    };

    // Plain: generate makes the secret, a rotation step writes a new version, and the client
    // reads the keys from it (send sealed with the command).
    let plain = secret_config(dir.path(), &endpoint, &format!("cli-plain-{unique}"), false);
    with(&plain)
        .args(["generate", "--id", "k1"])
        .assert()
        .success()
        .stdout(predicate::str::contains("aws-secrets-manager"));
    with(&plain).args(["add", "--id", "k2"]).assert().success();
    let report = list_json(with(&plain));
    assert_eq!(
        listed(&report),
        [
            key("k1", "primary", "shared"),
            key("k2", "active", "shared")
        ]
    );
    Command::cargo_bin("queue-runtime")
        .unwrap()
        .env("NO_COLOR", "1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .arg("--config")
        .arg(&plain)
        .args(["send", "orders", "--body", "hello"])
        .assert()
        .success()
        .stdout(predicate::str::contains("sealed"));

    // Wrapped by KMS: a new keyset needs the KMS key that wraps it.
    let settings = queue_runtime::keys::AwsSettings::local_server(&endpoint);
    let kms = queue_runtime::keys::KmsWrapper::connect(&settings)
        .await
        .unwrap();
    let kms_key = new_kms_key(&kms).await;
    let wrapped = secret_config(dir.path(), &endpoint, &format!("cli-kms-{unique}"), true);
    with(&wrapped)
        .args(["generate", "--id", "w1"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("KMS key"));
    with(&wrapped)
        .args(["generate", "--id", "w1", "--kms-key", &kms_key])
        .assert()
        .success()
        .stdout(predicate::str::contains("aws-kms"));
    with(&wrapped)
        .args(["add", "--id", "w2"])
        .assert()
        .success();
    with(&wrapped)
        .args(["promote", "--id", "w2"])
        .assert()
        .success();
    // Moving to another KMS key: the same keys, wrapped anew.
    let other_kms_key = new_kms_key(&kms).await;
    with(&wrapped)
        .args(["rewrap", "--kms-key", &other_kms_key])
        .assert()
        .success()
        .stdout(predicate::str::contains(other_kms_key.as_str()));
    let report = list_json(with(&wrapped));
    assert_eq!(
        listed(&report),
        [
            key("w1", "active", "shared"),
            key("w2", "primary", "shared")
        ]
    );
    // A plain keyset has nothing to re-wrap.
    with(&plain)
        .args(["rewrap"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("not wrapped"));
    // A keyset in an environment variable cannot be rewritten: said plainly.
    let env = dir.path().join("env.toml");
    std::fs::write(
        &env,
        "provider = \"memory\"\n[[memory.queues]]\nname = \"orders\"\n[security]\nkey_env = \"ORDERS_KEYS\"\n",
    )
    .unwrap();
    with(&env)
        .args(["add", "--id", "x"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("--file"));
}
