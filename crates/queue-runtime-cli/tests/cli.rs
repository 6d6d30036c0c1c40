//! The `queue-runtime` command as an operator runs it: against the local SQS server
//! `cargo xtask test` starts (moto), and against the embedded broker where a command makes sense
//! in one process.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use assert_cmd::Command;
use predicates::prelude::*;
use queue_runtime::prelude::*;
use queue_sqs::admin::{QueueSetup, create_queue_with_dead_letter};
use queue_sqs::testing::test_server_or_skip;

mod support;

/// The command, with no colour and the credentials moto accepts.
fn command(config: &Path) -> Command {
    let mut command = Command::cargo_bin("queue-runtime").unwrap();
    command
        .arg("--config")
        .arg(config)
        .env("NO_COLOR", "1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env_remove("QUEUE_RUNTIME_CONFIG");
    command
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A fresh SQS queue with its dead-letter queue, a keyset, and a configuration naming both.
struct Sqs {
    _dir: tempfile::TempDir,
    config: std::path::PathBuf,
    keys: std::path::PathBuf,
    queue: QueueName,
}

async fn sqs(endpoint: &str) -> Sqs {
    let dir = tempfile::tempdir().unwrap();
    let provider =
        queue_sqs::SqsProvider::for_local_server(endpoint, &queue_sqs::SqsConfig::new()).unwrap();
    let queue = QueueName::new(format!("cli-{}", uuid::Uuid::new_v4().simple())).unwrap();
    create_queue_with_dead_letter(&provider, &queue, &QueueSetup::default())
        .await
        .unwrap();
    let keys = dir.path().join("keys.json");
    queue_runtime::keys::generate_keyset_file(
        &keys,
        queue_runtime::crypto::KeyId::new("k1").unwrap(),
    )
    .unwrap();
    let config = dir.path().join("sqs.toml");
    std::fs::write(
        &config,
        format!(
            "provider = \"sqs\"\n[sqs]\nregion = \"us-east-1\"\nendpoint = \"{endpoint}\"\nqueues = [\"{queue}\"]\n[security]\nkey_file = \"{}\"\n",
            keys.display()
        ),
    )
    .unwrap();
    Sqs {
        _dir: dir,
        config,
        keys,
        queue,
    }
}

/// The application's side, in this process: the same queue and keys as the command's (built
/// for the local server directly: this process has no AWS credentials to give the SDK's chain).
fn client(endpoint: &str, keys: &Path) -> QueueClient {
    let provider =
        queue_sqs::SqsProvider::for_local_server(endpoint, &queue_sqs::SqsConfig::new()).unwrap();
    let security = Security::from_source(std::sync::Arc::new(queue_runtime::keys::FileKeys::new(
        keys,
    )));
    QueueClient::new(std::sync::Arc::new(provider)).with_security(security)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_lists_opens_replays_and_purges_dead_letters_on_sqs() {
    let Some(endpoint) = test_server_or_skip().unwrap() else {
        return;
    };
    let sqs = sqs(&endpoint).await;
    let queue = sqs.queue.as_str();

    // Three orders, sent (sealed) with the command.
    support::send_three_orders(|| command(&sqs.config), queue);
    // The application refuses two of them.
    let client = client(&endpoint, &sqs.keys);
    support::refuse_two_of_three(&client, &sqs.queue).await;

    // List: reasons, descriptions, opened bodies (the keys open them).
    support::assert_two_refusals_listed(&support::json(
        &command(&sqs.config)
            .args(["dlq", "list", queue, "--show-body", "--output", "json"])
            .output()
            .unwrap(),
    ));
    command(&sqs.config)
        .args(["dlq", "list", queue])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("invalid-order")
                .and(predicate::str::contains("2 dead letter(s)")),
        );

    // Replay the invalid order: a dry run first, then without confirmation (refused: no
    // terminal), then confirmed.
    command(&sqs.config)
        .args([
            "dlq",
            "replay",
            queue,
            "--reason",
            "invalid-order",
            "--dry-run",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("would replay 1"));
    command(&sqs.config)
        .args(["dlq", "replay", queue, "--reason", "invalid-order"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("--yes"));
    command(&sqs.config)
        .args(["dlq", "replay", queue, "--reason", "invalid-order", "--yes"])
        .assert()
        .success()
        .stdout(predicate::str::contains("replayed 1, skipped 0, failed 0"));
    let replayed = client
        .receive_one(&sqs.queue, Duration::from_secs(5))
        .await
        .unwrap()
        .expect("the replayed order");
    assert!(replayed.body().starts_with(b"order "));
    assert!(replayed.delivery.seal.is_some(), "re-sealed, and accepted");
    client.complete(&replayed).await.unwrap();

    // Purge the rest, for scripts.
    let purged = command(&sqs.config)
        .args(["dlq", "purge", queue, "--yes", "--output", "json"])
        .output()
        .unwrap();
    assert!(purged.status.success(), "{purged:?}");
    let purged: serde_json::Value = serde_json::from_str(&stdout(&purged)).unwrap();
    assert_eq!(purged["purged"].as_array().unwrap().len(), 1);

    // Stats: SQS's approximate counts; peek: not available on SQS, said plainly.
    let stats = command(&sqs.config)
        .args(["stats", queue, "--output", "json"])
        .output()
        .unwrap();
    assert!(stats.status.success(), "{stats:?}");
    let stats: serde_json::Value = serde_json::from_str(&stdout(&stats)).unwrap();
    assert_eq!(stats["dead_letter"], 0);
    assert_eq!(stats["provider"], "sqs");
    command(&sqs.config)
        .args(["peek", queue])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("peek is not available on sqs"));

    // Nothing secret on any stream, even with --verbose.
    let material = std::fs::read_to_string(&sqs.keys).unwrap();
    let material: serde_json::Value = serde_json::from_str(&material).unwrap();
    let secret = material["keys"][0]["material"].as_str().unwrap().to_owned();
    let verbose = command(&sqs.config)
        .args(["--verbose", "send", queue, "--body", "one more"])
        .output()
        .unwrap();
    assert!(verbose.status.success());
    let everything = format!(
        "{}{}",
        stdout(&verbose),
        String::from_utf8_lossy(&verbose.stderr)
    );
    assert!(!everything.contains(&secret), "key material printed");
    assert!(
        !everything.contains("one more"),
        "a body printed by --verbose"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_names_every_problem_and_a_missing_queue() {
    let Some(endpoint) = test_server_or_skip().unwrap() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("missing.toml");
    std::fs::write(
        &config,
        format!("provider = \"sqs\"\n[sqs]\nregion = \"us-east-1\"\nendpoint = \"{endpoint}\"\nqueues = [\"no-such-queue-{}\"]\n", uuid::Uuid::new_v4().simple()),
    )
    .unwrap();
    command(&config).arg("check").assert().code(1).stdout(
        predicate::str::contains("no-such-queue").and(predicate::str::contains("1 problem")),
    );
    let sqs = sqs(&endpoint).await;
    command(&sqs.config)
        .arg("check")
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "sqs: configuration valid, connected",
        ));
}

#[test]
fn on_the_embedded_broker_bad_input_gets_clear_errors_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("memory.toml");
    std::fs::write(
        &good,
        "provider = \"memory\"\n[[memory.queues]]\nname = \"orders\"\n",
    )
    .unwrap();
    command(&good).arg("check").assert().success();
    command(&good)
        .args([
            "send",
            "orders",
            "--body",
            "hello",
            "--property",
            "kind=order",
        ])
        .assert()
        .success()
        .stdout(predicate::str::starts_with("sent "));
    command(&good)
        .args([
            "send",
            "orders",
            "--body",
            "x",
            "--property",
            "no-equals-sign",
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("expected KEY=VALUE"));
    command(&good)
        .args(["stats", "orders"])
        .assert()
        .success()
        .stdout(predicate::str::contains("orders"));
    command(&good).args(["frobnicate"]).assert().code(2);
    command(&good).args(["dlq", "purge"]).assert().code(2);

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "provider = \"memory\"\n[memory]\nmax_delivery_count = 0\n[[memory.queues]]\nname = \"bad name\"\n",
    )
    .unwrap();
    command(&bad).arg("check").assert().code(1).stdout(
        predicate::str::contains("memory.max_delivery_count: must be at least 1")
            .and(predicate::str::contains("memory.queues[0].name")),
    );
    let json = command(&bad)
        .args(["check", "--output", "json"])
        .output()
        .unwrap();
    assert_eq!(json.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["problems"].as_array().unwrap().len(), 2);
    command(&bad)
        .args(["stats", "orders"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("memory.max_delivery_count"));
    let unsupported = dir.path().join("azure.toml");
    std::fs::write(&unsupported, "provider = \"kafka\"\n").unwrap();
    command(&unsupported)
        .arg("check")
        .assert()
        .code(1)
        .stdout(predicate::str::contains("unknown provider \"kafka\""));
}
