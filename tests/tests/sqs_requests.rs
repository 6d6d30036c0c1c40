//! What queue-runtime costs on SQS, in requests: a loopback proxy in front of the local SQS
//! server (moto, started by `cargo xtask test`) counts every request by action while the
//! processor drains 1,000 messages from a standard and from a FIFO queue, and while 16 tasks
//! send 1,000 messages through one batching sender. The goals (issue 21): processor receive +
//! settle at most 0.25 requests per message on a standard queue at full load, 0.35 on FIFO;
//! batched sends at most 0.12. The numbers are printed for `docs/performance.md`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

#[path = "support/remote.rs"]
mod remote;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use queue_runtime::batching::BatchingOptions;
use queue_runtime::prelude::*;
use queue_runtime::processor::ProcessorOptions;
use queue_runtime::resilience::Resilience;
use queue_sqs::admin::{QueueSetup, create_queue_with_dead_letter};
use queue_sqs::testing::{RequestCounter, test_server_or_skip};
use queue_sqs::{SqsConfig, SqsProvider};

const MESSAGES: usize = 1_000;

/// A proxy in front of `endpoint`, a provider through it, and a fresh queue.
async fn counted(endpoint: &str, fifo: bool) -> (RequestCounter, SqsProvider, QueueName) {
    let counter = RequestCounter::start(endpoint).await.unwrap();
    let provider = SqsProvider::for_local_server(counter.endpoint(), &SqsConfig::new()).unwrap();
    let suffix = if fifo { ".fifo" } else { "" };
    let queue = QueueName::new(format!("rq-{}{suffix}", uuid::Uuid::new_v4().simple())).unwrap();
    let setup = QueueSetup {
        fifo,
        visibility_timeout: Duration::from_secs(30),
        ..QueueSetup::default()
    };
    create_queue_with_dead_letter(&provider, &queue, &setup)
        .await
        .unwrap();
    (counter, provider, queue)
}

/// 1,000 messages, sent in batches (not counted); on FIFO, 100 sessions of ten.
async fn fill(provider: &SqsProvider, queue: &QueueName, fifo: bool) {
    use queue_runtime::core::QueueProvider;
    let messages: Vec<Message> = (0..MESSAGES)
        .map(|index| {
            let builder = Message::builder(format!("message {index}"));
            let builder = if fifo {
                builder.session_id(format!("session-{}", index % 100))
            } else {
                builder
            };
            builder.build().unwrap()
        })
        .collect();
    for result in provider.send_batch(queue, messages).await.unwrap() {
        result.unwrap();
    }
}

fn per_message(counts: &BTreeMap<String, u64>) -> f64 {
    counts.values().sum::<u64>() as f64 / MESSAGES as f64
}

/// Drains the queue with a processor whose handler completes at once; returns the requests
/// per message and the counts.
async fn drain(
    endpoint: &str,
    fifo: bool,
    options: ProcessorOptions,
) -> (f64, BTreeMap<String, u64>) {
    let (counter, provider, queue) = counted(endpoint, fifo).await;
    fill(&provider, &queue, fifo).await;
    let client = QueueClient::new(Arc::new(provider))
        .with_resilience(Resilience::default())
        .unwrap();
    counter.reset();
    let handled = Arc::new(AtomicUsize::new(0));
    let shutdown = CancellationToken::new();
    let processor = Processor::new(client, queue, {
        let (handled, shutdown) = (Arc::clone(&handled), shutdown.clone());
        move |_message: ReceivedMessage, _: HandlerContext| {
            let (handled, shutdown) = (Arc::clone(&handled), shutdown.clone());
            async move {
                if handled.fetch_add(1, Ordering::SeqCst) + 1 == MESSAGES {
                    shutdown.cancel();
                }
                Outcome::Complete
            }
        }
    })
    .with_options(options);
    let report = tokio::time::timeout(Duration::from_secs(300), processor.run(shutdown))
        .await
        .expect("drained in time")
        .unwrap();
    assert_eq!(report.completed, MESSAGES as u64, "{report:?}");
    let counts = counter.counts();
    (per_message(&counts), counts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_processor_on_a_standard_queue_needs_at_most_a_quarter_request_per_message() {
    let Some(endpoint) = test_server_or_skip().unwrap() else {
        return;
    };
    let default = drain(&endpoint, false, ProcessorOptions::default()).await;
    eprintln!(
        "standard queue, default options: {:.3} requests per message {:?}",
        default.0, default.1
    );
    let full = ProcessorOptions::default().with_max_concurrency(32);
    let (per_message, counts) = drain(&endpoint, false, full).await;
    eprintln!("standard queue, concurrency 32: {per_message:.3} requests per message {counts:?}");
    assert!(
        per_message <= 0.25,
        "{per_message} requests per message: {counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_processor_on_a_fifo_queue_needs_at_most_035_requests_per_message() {
    let Some(endpoint) = test_server_or_skip().unwrap() else {
        return;
    };
    let options = ProcessorOptions::default()
        .with_sessions(true)
        .with_max_concurrency(32);
    let (per_message, counts) = drain(&endpoint, true, options).await;
    eprintln!(
        "FIFO queue, 100 sessions, concurrency 32: {per_message:.3} requests per message {counts:?}"
    );
    assert!(
        per_message <= 0.35,
        "{per_message} requests per message: {counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_tasks_sending_through_one_batching_sender_need_at_most_012_requests_per_message() {
    let Some(endpoint) = test_server_or_skip().unwrap() else {
        return;
    };
    let (counter, provider, queue) = counted(&endpoint, false).await;
    let client = remote::sealing_client(Arc::new(provider), remote::keys())
        .with_resilience(Resilience::default())
        .unwrap();
    let sender = client
        .batching_sender(&queue, BatchingOptions::default())
        .unwrap();
    counter.reset();
    let started = Instant::now();
    let tasks: Vec<_> = (0..16)
        .map(|task| {
            let sender = sender.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for index in (task..MESSAGES).step_by(16) {
                    let message = Message::new(format!("message {index}"));
                    let id = message.message_id().clone();
                    let outcome = sender.send(message).await.unwrap();
                    assert_eq!(outcome.message_id, id, "each caller gets its own outcome");
                    ids.push(id);
                }
                ids
            })
        })
        .collect();
    let mut sent = 0;
    for task in tasks {
        sent += task.await.unwrap().len();
    }
    let took = started.elapsed();
    assert_eq!(sent, MESSAGES);
    let counts = counter.counts();
    let per_message = per_message(&counts);
    eprintln!(
        "batching sender, 16 tasks, sealed: {per_message:.3} requests per message {counts:?} in {took:?}"
    );
    assert!(
        per_message <= 0.12,
        "{per_message} requests per message: {counts:?}"
    );
    // Every message arrived, sealed, and opens.
    let mut received = 0;
    while received < MESSAGES {
        let batch = client
            .receive(&queue, 10, Duration::from_secs(2))
            .await
            .unwrap();
        assert!(!batch.is_empty(), "{received} of {MESSAGES} arrived");
        assert!(batch.iter().all(|message| message.delivery.seal.is_some()));
        received += batch.len();
        for result in client.complete_batch(&batch).await.unwrap() {
            result.unwrap();
        }
    }
}
