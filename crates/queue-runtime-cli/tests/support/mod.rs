//! What the operator tests of every provider share: the application's side of a dead-letter
//! scenario, and reading the command's JSON.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use queue_runtime::prelude::*;

/// The command's stdout as JSON, after checking it succeeded.
pub(crate) fn json(output: &std::process::Output) -> serde_json::Value {
    assert!(output.status.success(), "{output:?}");
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The operator sends three orders (`order 1` to `order 3`, property `kind=order`) with the
/// command `command` makes; each is sealed.
pub(crate) fn send_three_orders(command: impl Fn() -> assert_cmd::Command, queue: &str) {
    for n in 1..=3 {
        command()
            .args([
                "send",
                queue,
                "--body",
                &format!("order {n}"),
                "--property",
                "kind=order",
            ])
            .assert()
            .success()
            .stdout(predicates::str::contains("sealed"));
    }
}

/// The application receives the three orders the operator sent and refuses the first two (as
/// `invalid-order` and `out-of-stock`, "the application said no"), completing the third.
pub(crate) async fn refuse_two_of_three(client: &QueueClient, queue: &QueueName) {
    let mut reasons = ["invalid-order", "out-of-stock"].into_iter();
    let mut handled = 0;
    while handled < 3 {
        let received = client
            .receive(queue, 10, Duration::from_secs(5))
            .await
            .unwrap();
        assert!(!received.is_empty(), "an order went missing");
        for message in received {
            handled += 1;
            match reasons.next() {
                Some(reason) => client
                    .dead_letter(&message, reason, "the application said no")
                    .await
                    .unwrap(),
                None => client.complete(&message).await.unwrap(),
            }
        }
    }
}

/// `dlq list --show-body --output json` after [`refuse_two_of_three`]: both refusals, with
/// their reasons and description, opened by the configured keys.
pub(crate) fn assert_two_refusals_listed(listed: &serde_json::Value) {
    let rows = listed.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let mut reasons: Vec<&str> = rows
        .iter()
        .map(|row| row["reason"].as_str().unwrap())
        .collect();
    reasons.sort_unstable();
    assert_eq!(reasons, ["invalid-order", "out-of-stock"]);
    for row in rows {
        assert_eq!(row["seal"], "opened");
        assert_eq!(row["description"], "the application said no");
        assert!(row["body"].as_str().unwrap().starts_with("order "));
    }
}
