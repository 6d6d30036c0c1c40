//! What only SQS needs proving, against the local server `cargo xtask test` starts: the
//! dead-letter move interrupted between its two steps, fail-fast checks at connect, and FIFO
//! order per session through plain receive.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::Duration;

use queue_core::{
    DeadLetterReason, ErrorKind, Message, QueueName, QueueProvider, QueueProviderExt,
    ReceiveOptions, ReceivedMessage,
};
use queue_sqs::admin::{QueueSetup, create_queue_with_dead_letter};
use queue_sqs::sdk::config::interceptors::BeforeTransmitInterceptorContextRef;
use queue_sqs::sdk::config::{ConfigBag, Intercept, RuntimeComponents};
use queue_sqs::sdk::error::BoxError;
use queue_sqs::sdk::types::QueueAttributeName;
use queue_sqs::testing::test_server_or_skip;
use queue_sqs::{SqsConfig, SqsCredentials, SqsProvider};

fn local(endpoint: &str) -> SqsProvider {
    SqsProvider::for_local_server(endpoint, &SqsConfig::new()).unwrap()
}

/// A fresh queue (and dead-letter queue) with a short visibility timeout.
async fn fresh_queue(provider: &SqsProvider, fifo: bool) -> QueueName {
    let suffix = if fifo { ".fifo" } else { "" };
    let name = QueueName::new(format!("t-{}{suffix}", uuid::Uuid::new_v4().simple())).unwrap();
    let setup = QueueSetup {
        fifo,
        visibility_timeout: Duration::from_secs(3),
        ..QueueSetup::default()
    };
    create_queue_with_dead_letter(provider, &name, &setup)
        .await
        .unwrap();
    name
}

/// Fails every request for one SQS operation, as a crash or a lost connection at that moment
/// would: the real server is never told.
#[derive(Debug)]
struct FailOperation(&'static str);

impl Intercept for FailOperation {
    fn name(&self) -> &'static str {
        "FailOperation"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let target = context
            .request()
            .headers()
            .get("x-amz-target")
            .unwrap_or_default();
        if target == format!("AmazonSQS.{}", self.0) {
            return Err(format!("injected failure of {}", self.0).into());
        }
        Ok(())
    }
}

/// The same server through a client whose `operation` calls all fail.
fn failing(provider: &SqsProvider, operation: &'static str) -> SqsProvider {
    let config = provider
        .client()
        .config()
        .to_builder()
        .interceptor(FailOperation(operation))
        .build();
    SqsProvider::from_client(queue_sqs::sdk::Client::from_conf(config), &SqsConfig::new())
}

/// A fresh queue holding one message, received (so held) once.
async fn poison(provider: &SqsProvider) -> (QueueName, ReceivedMessage) {
    let queue = fresh_queue(provider, false).await;
    provider.send(&queue, Message::new("poison")).await.unwrap();
    let received = provider
        .receive_one(&queue, Duration::from_secs(5))
        .await
        .unwrap()
        .expect("a message");
    (queue, received)
}

async fn dead_letter_count(provider: &SqsProvider, queue: &QueueName) -> usize {
    provider
        .receive(
            queue,
            ReceiveOptions::new(10, Duration::from_secs(1)).dead_letter(),
        )
        .await
        .unwrap()
        .len()
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_letter_interrupted_after_the_copy_duplicates_and_loses_nothing() {
    let Some(endpoint) = test_server_or_skip().unwrap() else {
        return;
    };
    let provider = local(&endpoint);
    let (queue, received) = poison(&provider).await;

    // The copy reaches the dead-letter queue; the delete never reaches the queue.
    let interrupted = failing(&provider, "DeleteMessage");
    let error = interrupted
        .dead_letter(&received.receipt, DeadLetterReason::new("Poison", "bad"))
        .await
        .expect_err("the delete was cut off");
    assert!(error.message().contains("DeleteMessage"), "{error}");

    // In the dead-letter queue with its reason...
    let dead = provider
        .receive(
            &queue,
            ReceiveOptions::new(1, Duration::from_secs(5)).dead_letter(),
        )
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body().as_ref(), b"poison");
    assert_eq!(
        dead[0].delivery.dead_letter.as_ref().unwrap().reason,
        "Poison"
    );
    // ...and back in the queue once its visibility timeout passes: a duplicate, not a loss.
    let again = provider
        .receive_one(&queue, Duration::from_secs(10))
        .await
        .unwrap()
        .expect("the original comes back");
    assert_eq!(again.message_id(), received.message_id());
    assert_eq!(again.delivery_count(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_letter_interrupted_before_the_copy_leaves_the_message_in_place() {
    let Some(endpoint) = test_server_or_skip().unwrap() else {
        return;
    };
    let provider = local(&endpoint);
    let (queue, received) = poison(&provider).await;

    let interrupted = failing(&provider, "SendMessage");
    interrupted
        .dead_letter(&received.receipt, DeadLetterReason::new("Poison", "bad"))
        .await
        .expect_err("the copy was cut off");

    assert_eq!(dead_letter_count(&provider, &queue).await, 0);
    let again = provider
        .receive_one(&queue, Duration::from_secs(10))
        .await
        .unwrap()
        .expect("still in the queue");
    assert_eq!(again.message_id(), received.message_id());
    // And the move completes when tried again.
    provider
        .dead_letter(&again.receipt, DeadLetterReason::new("Poison", "bad"))
        .await
        .unwrap();
    assert_eq!(dead_letter_count(&provider, &queue).await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_checks_credentials_and_queues() {
    let Some(endpoint) = test_server_or_skip().unwrap() else {
        return;
    };
    let existing = fresh_queue(&local(&endpoint), false).await;
    let config = SqsConfig::new()
        .with_region("us-east-1")
        .with_endpoint(endpoint.as_str())
        .unwrap()
        .with_credentials(SqsCredentials::fixed("test", "test"));

    let provider = SqsProvider::connect(config.clone().with_queue(existing.clone()))
        .await
        .expect("an existing queue passes the check");
    provider
        .send(&existing, Message::new("hello"))
        .await
        .unwrap();

    let missing = QueueName::new(format!("missing-{}", uuid::Uuid::new_v4().simple())).unwrap();
    let error = SqsProvider::connect(config.clone().with_queue(missing.clone()))
        .await
        .expect_err("a missing queue fails at connect");
    assert_eq!(error.kind(), ErrorKind::NotFound, "{error}");

    // Turned off, the same configuration connects; the first call reports the queue.
    let unchecked = SqsProvider::connect(
        config
            .with_queue(missing.clone())
            .with_check_on_connect(false),
    )
    .await
    .unwrap();
    let error = unchecked
        .send(&missing, Message::new("x"))
        .await
        .expect_err("missing");
    assert_eq!(error.kind(), ErrorKind::NotFound, "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn configured_dead_letter_queue_wins_and_missing_one_is_explained() {
    let Some(endpoint) = test_server_or_skip().unwrap() else {
        return;
    };
    let provider = local(&endpoint);
    let plain = QueueName::new(format!("plain-{}", uuid::Uuid::new_v4().simple())).unwrap();
    provider
        .client()
        .create_queue()
        .queue_name(plain.as_str())
        .attributes(QueueAttributeName::VisibilityTimeout, "2")
        .send()
        .await
        .unwrap();
    provider.send(&plain, Message::new("x")).await.unwrap();
    let received = provider
        .receive_one(&plain, Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    let error = provider
        .dead_letter(&received.receipt, DeadLetterReason::new("r", "d"))
        .await
        .expect_err("no dead-letter queue");
    assert!(error.message().contains("no dead-letter queue"), "{error}");

    let target = fresh_queue(&provider, false).await;
    let routed = SqsProvider::for_local_server(
        &endpoint,
        &SqsConfig::new().with_dead_letter_queue(plain.clone(), target.clone()),
    )
    .unwrap();
    let received = routed
        .receive_one(&plain, Duration::from_secs(10))
        .await
        .unwrap()
        .expect("redelivered after the timeout");
    routed
        .dead_letter(&received.receipt, DeadLetterReason::new("r", "d"))
        .await
        .unwrap();
    let moved = routed
        .receive_one(&target, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(moved.is_some(), "the copy went to the configured queue");
}

#[tokio::test(flavor = "multi_thread")]
async fn fifo_receive_keeps_each_session_in_order() {
    let Some(endpoint) = test_server_or_skip().unwrap() else {
        return;
    };
    let provider = local(&endpoint);
    let queue = fresh_queue(&provider, true).await;
    let sessions = ["alpha", "beta", "gamma"];
    let mut batch = Vec::new();
    for index in 0..8 {
        for session in sessions {
            batch.push(
                Message::builder(format!("{session}-{index}"))
                    .session_id(session)
                    .build()
                    .unwrap(),
            );
        }
    }
    for result in provider.send_batch(&queue, batch).await.unwrap() {
        result.unwrap();
    }
    let error = provider
        .send(&queue, Message::new("no session"))
        .await
        .expect_err("a FIFO queue needs a session");
    assert_eq!(error.kind(), ErrorKind::InvalidInput);

    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    while seen.values().map(Vec::len).sum::<usize>() < 24 {
        let received = provider
            .receive(&queue, ReceiveOptions::new(10, Duration::from_secs(5)))
            .await
            .unwrap();
        assert!(!received.is_empty(), "messages left after {seen:?}");
        for message in &received {
            let session = message.session_id().unwrap().as_str().to_owned();
            let body = String::from_utf8(message.body().to_vec()).unwrap();
            seen.entry(session).or_default().push(body);
        }
        let receipts: Vec<_> = received.iter().map(|m| m.receipt.clone()).collect();
        for result in provider.complete_batch(&receipts).await.unwrap() {
            result.unwrap();
        }
    }
    for session in sessions {
        let expected: Vec<String> = (0..8).map(|index| format!("{session}-{index}")).collect();
        assert_eq!(seen[session], expected);
    }
}
