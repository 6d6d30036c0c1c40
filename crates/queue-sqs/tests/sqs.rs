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

/// Receives until `count` messages are held.
async fn receive_all(
    provider: &SqsProvider,
    queue: &QueueName,
    count: usize,
) -> Vec<ReceivedMessage> {
    let mut held = Vec::new();
    while held.len() < count {
        let batch = provider
            .receive(queue, ReceiveOptions::new(10, Duration::from_secs(2)))
            .await
            .unwrap();
        assert!(!batch.is_empty(), "only {} of {count} arrived", held.len());
        held.extend(batch);
    }
    held
}

/// Settles from separate tasks share one batch call; the entry SQS fails (its receipt handle no
/// longer valid: the message was deleted behind the provider's back) fails alone, with SQS's
/// own code, and the others succeed.
#[tokio::test(flavor = "multi_thread")]
async fn settles_from_many_tasks_share_a_batch_and_a_failed_entry_fails_alone() {
    let Some(endpoint) = test_server_or_skip().unwrap() else {
        return;
    };
    let counter = queue_sqs::testing::RequestCounter::start(&endpoint)
        .await
        .unwrap();
    // A long linger, so that three tasks spawned together surely meet in one batch here.
    let config = SqsConfig::new().with_settle_linger(Duration::from_millis(200));
    let provider = SqsProvider::for_local_server(counter.endpoint(), &config).unwrap();
    let queue = fresh_queue(&provider, false).await;
    for index in 0..3 {
        provider
            .send(&queue, Message::new(format!("{index}")))
            .await
            .unwrap();
    }
    let mut held = receive_all(&provider, &queue, 3).await;
    held.sort_by(|a, b| a.body().cmp(b.body()));
    let url = provider
        .client()
        .get_queue_url()
        .queue_name(queue.as_str())
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    provider
        .client()
        .delete_message()
        .queue_url(url)
        .receipt_handle(queue_sqs::testing::receipt_handle(&held[1].receipt).unwrap())
        .send()
        .await
        .unwrap();
    counter.reset();

    let renewals: Vec<_> = held
        .iter()
        .map(|message| {
            let (provider, receipt) = (provider.clone(), message.receipt.clone());
            tokio::spawn(async move { provider.renew_lock(&receipt).await })
        })
        .collect();
    let mut results = Vec::new();
    for renewal in renewals {
        results.push(renewal.await.unwrap());
    }
    assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
    let failed = results[1].as_ref().expect_err("its handle is gone");
    assert_eq!(failed.kind(), ErrorKind::LockLost, "{failed}");
    assert!(
        failed.to_string().contains("ReceiptHandleIsInvalid"),
        "{failed}"
    );
    assert_eq!(
        counter.count("ChangeMessageVisibilityBatch"),
        1,
        "{:?}",
        counter.counts()
    );
    assert_eq!(counter.count("ChangeMessageVisibility"), 0);

    let completes: Vec<_> = [&held[0], &held[2]]
        .into_iter()
        .map(|message| {
            let (provider, receipt) = (provider.clone(), message.receipt.clone());
            tokio::spawn(async move { provider.complete(&receipt).await })
        })
        .collect();
    for complete in completes {
        complete.await.unwrap().unwrap();
    }
    assert_eq!(
        counter.count("DeleteMessageBatch"),
        1,
        "{:?}",
        counter.counts()
    );
    assert_eq!(counter.count("DeleteMessage"), 0);
}

/// A batch call that fails as a whole fails every caller's entry, and none is acknowledged: the
/// messages are still there afterwards.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_batch_call_fails_every_entry_and_acknowledges_none() {
    let Some(endpoint) = test_server_or_skip().unwrap() else {
        return;
    };
    let provider = local(&endpoint);
    let queue = fresh_queue(&provider, false).await;
    for index in 0..3 {
        provider
            .send(&queue, Message::new(format!("{index}")))
            .await
            .unwrap();
    }
    let held = receive_all(&provider, &queue, 3).await;
    let broken = failing(&provider, "DeleteMessageBatch");
    let completes: Vec<_> = held
        .iter()
        .map(|message| {
            let (provider, receipt) = (broken.clone(), message.receipt.clone());
            tokio::spawn(async move { provider.complete(&receipt).await })
        })
        .collect();
    for complete in completes {
        let error = complete.await.unwrap().expect_err("the call failed");
        assert!(error.to_string().contains("injected failure"), "{error}");
    }
    for message in &held {
        provider.abandon(&message.receipt, None).await.unwrap();
    }
    assert_eq!(receive_all(&provider, &queue, 3).await.len(), 3);
}

/// A server that stops answering in the middle of a receive yields a `Timeout` error once the
/// long poll and the attempt timeout have passed (and the SDK's own retries ran), not a hang.
#[tokio::test(flavor = "multi_thread")]
async fn a_receive_the_server_never_answers_times_out_instead_of_hanging() {
    let Some(endpoint) = test_server_or_skip().unwrap() else {
        return;
    };
    let counter = queue_sqs::testing::RequestCounter::start(&endpoint)
        .await
        .unwrap();
    let config = SqsConfig::new().with_attempt_timeout(Duration::from_millis(500));
    let provider = SqsProvider::for_local_server(counter.endpoint(), &config).unwrap();
    let queue = fresh_queue(&provider, false).await;
    provider
        .send(&queue, Message::new("waiting"))
        .await
        .unwrap();
    counter.stall("ReceiveMessage");
    let started = std::time::Instant::now();
    let outcome = tokio::time::timeout(
        Duration::from_secs(60),
        provider.receive(&queue, ReceiveOptions::new(1, Duration::from_secs(2))),
    )
    .await
    .expect("the receive returned by itself");
    let error = outcome.expect_err("nothing answered");
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
    let took = started.elapsed();
    // Each attempt gets the long poll (2 s) and the attempt timeout (0.5 s); the SDK tries three
    // times, with its backoff in between.
    assert!(took >= Duration::from_millis(2500), "{took:?}");
    assert!(took < Duration::from_secs(20), "{took:?}");
}

/// A server that accepts connections and never answers anything: even the first call (the
/// queue's URL) times out instead of hanging.
#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_never_answers_times_out_instead_of_hanging() {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let accepting = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream); // read nothing, answer nothing, close nothing
        }
    });
    let config = SqsConfig::new().with_attempt_timeout(Duration::from_millis(500));
    let provider = SqsProvider::for_local_server(&endpoint, &config).unwrap();
    let queue = QueueName::new("silent").unwrap();
    let started = std::time::Instant::now();
    let outcome = tokio::time::timeout(
        Duration::from_secs(60),
        provider.receive(&queue, ReceiveOptions::new(1, Duration::from_secs(1))),
    )
    .await
    .expect("the receive returned by itself");
    let error = outcome.expect_err("nothing answered");
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
    // Three attempts of 0.5 s each, with the SDK's backoff.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    accepting.abort();
}
