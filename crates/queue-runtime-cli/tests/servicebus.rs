//! The `queue-runtime` command on Azure Service Bus, as an operator runs it: against the
//! namespace or emulator named by `QUEUE_RUNTIME_TEST_AZURE_CONNECTION_STRING` (`cargo xtask
//! test` starts our emulator and sets it), on the `qr-conformance` test queue. In a plain
//! `cargo test` it is ignored, never passed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use assert_cmd::Command;
use predicates::prelude::*;
use queue_azure::testing::{
    TEST_CONNECTION_STRING_VARIABLE, missing_connection_string, purge, test_config,
};
use queue_runtime::core::QueueProvider;
use queue_runtime::prelude::*;

const QUEUE: &str = "qr-conformance";

fn command(config: &Path) -> Command {
    let mut command = Command::cargo_bin("queue-runtime").unwrap();
    command
        .arg("--config")
        .arg(config)
        .env("NO_COLOR", "1")
        .env_remove("QUEUE_RUNTIME_CONFIG");
    command
}

mod support;
use support::json;

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs QUEUE_RUNTIME_TEST_AZURE_CONNECTION_STRING; run by `cargo xtask test` when it is set"]
async fn an_operator_sends_peeks_lists_replays_and_purges_on_service_bus() {
    let azure = test_config().unwrap_or_else(|| panic!("{}", missing_connection_string()));
    let provider = queue_azure::AzureProvider::connect(&azure).await.unwrap();
    let queue = QueueName::new(QUEUE).unwrap();
    purge(&provider, &queue, false).await.unwrap();
    // And its dead-letter queue, which earlier runs may have left dead letters in.
    QueueClient::new(Arc::new(provider.clone()))
        .dead_letters(&queue)
        .purge(&queue_runtime::dead_letters::DeadLetterFilter::all())
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.json");
    command(Path::new("unused"))
        .args([
            "keys",
            "--file",
            keys.to_str().unwrap(),
            "generate",
            "--id",
            "k1",
        ])
        .assert()
        .success();
    // The connection string stays in the environment: the file names the variable.
    let config = dir.path().join("azure.toml");
    std::fs::write(
        &config,
        format!(
            "provider = \"azure\"\n[azure]\nconnection_string_env = \"{TEST_CONNECTION_STRING_VARIABLE}\"\n\
             [[azure.queues]]\nname = \"{QUEUE}\"\n[security]\nkey_file = \"{}\"\n",
            keys.display()
        ),
    )
    .unwrap();
    command(&config)
        .arg("check")
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "azure: configuration valid, connected",
        ));

    support::send_three_orders(|| command(&config), QUEUE);
    // Peek opens what the keys open, and takes nothing.
    let peeked = json(
        &command(&config)
            .args(["peek", QUEUE, "--show-body", "--output", "json"])
            .output()
            .unwrap(),
    );
    let peeked = peeked.as_array().unwrap();
    assert_eq!(peeked.len(), 3, "{peeked:?}");
    assert!(
        peeked.iter().all(|row| row["seal"] == "opened"),
        "{peeked:?}"
    );
    assert_eq!(peeked[0]["body"], "order 1");

    // The application refuses two of them.
    let security = Security::from_source(Arc::new(queue_runtime::keys::FileKeys::new(&keys)));
    let client = QueueClient::new(Arc::new(provider.clone())).with_security(security);
    support::refuse_two_of_three(&client, &queue).await;
    support::assert_two_refusals_listed(&json(
        &command(&config)
            .args(["dlq", "list", QUEUE, "--show-body", "--output", "json"])
            .output()
            .unwrap(),
    ));

    command(&config)
        .args([
            "dlq",
            "replay",
            QUEUE,
            "--reason",
            "invalid-order",
            "--dry-run",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("would replay 1"));
    command(&config)
        .args(["dlq", "replay", QUEUE, "--reason", "invalid-order", "--yes"])
        .assert()
        .success()
        .stdout(predicate::str::contains("replayed 1, skipped 0, failed 0"));
    let replayed = client
        .receive_one(&queue, Duration::from_secs(5))
        .await
        .unwrap()
        .expect("the replayed order");
    assert!(replayed.body().starts_with(b"order "));
    assert!(replayed.delivery.seal.is_some(), "re-sealed, and accepted");
    client.complete(&replayed).await.unwrap();

    command(&config)
        .args(["dlq", "purge", QUEUE, "--reason", "out-of-stock"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("--yes"));
    command(&config)
        .args(["dlq", "purge", QUEUE, "--yes"])
        .assert()
        .success()
        .stdout(predicate::str::contains("purged 1"));
    let left = json(
        &command(&config)
            .args(["dlq", "list", QUEUE, "--output", "json"])
            .output()
            .unwrap(),
    );
    assert_eq!(left.as_array().unwrap().len(), 0, "{left:?}");

    // Counts come from Service Bus's management API, not AMQP: said plainly.
    command(&config)
        .args(["stats", QUEUE])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("not available on azure"));
    provider.close().await.unwrap();
}
