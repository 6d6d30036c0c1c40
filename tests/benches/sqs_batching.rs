//! Automatic batching on SQS against hand-batched SDK calls, in one criterion run against the
//! local SQS server `cargo xtask bench` starts (skipped, saying so, without one).
//!
//! Each iteration sends, receives and completes [`MESSAGES`] messages of 1 KiB on one queue,
//! three ways:
//! - `raw_sdk_batches`: `aws-sdk-sqs` by hand, `SendMessageBatch` of ten, `ReceiveMessage` of up
//!   to ten, `DeleteMessageBatch` of ten, one call after the other (0.3 requests per message);
//! - `batching_on`: what an application writes without thinking about requests, with the
//!   defaults: [`TASKS`] tasks each `send` single messages through one batching sender (linger
//!   5 ms), receive through the client, then [`TASKS`] tasks each `complete` single messages
//!   (coalesced by the provider, settle linger 5 ms);
//! - `batching_off`: the same code with plain `send` and `settle_linger = 0` (one request per
//!   send and per complete).
//!
//! Criterion reports each way's time and throughput. Then, in the same run, [`ROUNDS`] rounds of
//! one iteration of each way, interleaved (the server's speed drifts), give each way's ratio to
//! the raw SDK calls' time: the number to compare, as moto's own speed moves between runs.

// A benchmark aborts on the first failure: that is what `expect` is for here.
#![allow(clippy::expect_used, clippy::print_stdout, missing_docs)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use queue_runtime::batching::{BatchingOptions, BatchingSender};
use queue_runtime::core::QueueProvider;
use queue_runtime::prelude::*;
use queue_sqs::admin::{QueueSetup, create_queue_with_dead_letter};
use queue_sqs::sdk::types::{DeleteMessageBatchRequestEntry, SendMessageBatchRequestEntry};
use queue_sqs::{SqsConfig, SqsProvider};

/// Messages sent, received and completed per iteration.
const MESSAGES: usize = 100;
/// SQS's most entries per batch call.
const BATCH: usize = 10;
/// Tasks sending, and completing, at once in the provider's ways (as in `sqs_requests.rs`).
const TASKS: usize = 16;
const BODY_BYTES: usize = 1024;
/// How long a receive waits for messages that were just sent.
const RECEIVE_WAIT: Duration = Duration::from_secs(1);

fn body() -> String {
    "x".repeat(BODY_BYTES)
}

/// Send, receive and complete by hand with batch calls.
async fn raw_sdk_batches(provider: &SqsProvider, url: &str) {
    let client = provider.client();
    let body = body();
    for _ in 0..MESSAGES / BATCH {
        let entries = (0..BATCH)
            .map(|index| {
                SendMessageBatchRequestEntry::builder()
                    .id(index.to_string())
                    .message_body(body.clone())
                    .build()
                    .expect("an entry")
            })
            .collect();
        let sent = client
            .send_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .expect("sent");
        assert!(sent.failed().is_empty(), "{:?}", sent.failed());
    }
    let mut handles = Vec::with_capacity(MESSAGES);
    while handles.len() < MESSAGES {
        let output = client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages((MESSAGES - handles.len()).min(BATCH) as i32)
            .wait_time_seconds(RECEIVE_WAIT.as_secs() as i32)
            .send()
            .await
            .expect("received");
        assert!(!output.messages().is_empty(), "{} arrived", handles.len());
        for message in output.messages() {
            assert_eq!(message.body().map(str::len), Some(BODY_BYTES));
            handles.push(message.receipt_handle().expect("a receipt").to_owned());
        }
    }
    for chunk in handles.chunks(BATCH) {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(index, handle)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(index.to_string())
                    .receipt_handle(handle)
                    .build()
                    .expect("an entry")
            })
            .collect();
        let deleted = client
            .delete_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .expect("deleted");
        assert!(deleted.failed().is_empty(), "{:?}", deleted.failed());
    }
}

/// Send single messages from [`TASKS`] tasks (through `sender` when given, else plain `send`),
/// receive them ten at a time, and complete each one, again from [`TASKS`] tasks.
async fn one_at_a_time(client: &QueueClient, queue: &QueueName, sender: Option<&BatchingSender>) {
    let body = body();
    let sends: Vec<_> = (0..TASKS)
        .map(|task| {
            let (client, queue, sender, body) =
                (client.clone(), queue.clone(), sender.cloned(), body.clone());
            tokio::spawn(async move {
                for _ in (task..MESSAGES).step_by(TASKS) {
                    let message = Message::new(body.clone());
                    match &sender {
                        Some(sender) => sender.send(message).await,
                        None => client.send(&queue, message).await,
                    }
                    .expect("sent");
                }
            })
        })
        .collect();
    for send in sends {
        send.await.expect("joined");
    }
    let mut received = Vec::with_capacity(MESSAGES);
    while received.len() < MESSAGES {
        let wanted = (MESSAGES - received.len()).min(BATCH);
        let batch = client
            .receive(queue, wanted, RECEIVE_WAIT)
            .await
            .expect("received");
        assert!(!batch.is_empty(), "{} arrived", received.len());
        assert!(
            batch
                .iter()
                .all(|message| message.body().len() == BODY_BYTES)
        );
        received.extend(batch);
    }
    let mut shares: Vec<Vec<ReceivedMessage>> = (0..TASKS).map(|_| Vec::new()).collect();
    for (index, message) in received.into_iter().enumerate() {
        shares[index % TASKS].push(message);
    }
    let completes: Vec<_> = shares
        .into_iter()
        .map(|share| {
            let client = client.clone();
            tokio::spawn(async move {
                for message in &share {
                    client.complete(message).await.expect("completed");
                }
            })
        })
        .collect();
    for complete in completes {
        complete.await.expect("joined");
    }
}

/// The three ways, in the order they are reported.
const WAYS: [&str; 3] = ["raw_sdk_batches", "batching_on", "batching_off"];
/// Interleaved rounds after criterion's runs, for the ratios.
const ROUNDS: usize = 7;

/// One queue and what each way sends through.
struct Setup {
    /// Settle linger 5 ms (the default); its SDK client makes the raw calls.
    batched_provider: SqsProvider,
    batched: QueueClient,
    sender: BatchingSender,
    /// Settle linger zero.
    unbatched: QueueClient,
    queue: QueueName,
    url: String,
}

impl Setup {
    async fn new(endpoint: &str) -> Setup {
        let batched_provider =
            SqsProvider::for_local_server(endpoint, &SqsConfig::new()).expect("a provider");
        let unbatched_provider = SqsProvider::for_local_server(
            endpoint,
            &SqsConfig::new().with_settle_linger(Duration::ZERO),
        )
        .expect("a provider");
        let queue =
            QueueName::new(format!("bench-{}", uuid::Uuid::new_v4().simple())).expect("a name");
        create_queue_with_dead_letter(&batched_provider, &queue, &QueueSetup::default())
            .await
            .expect("a queue");
        let url = batched_provider
            .client()
            .get_queue_url()
            .queue_name(queue.as_str())
            .send()
            .await
            .expect("the queue's URL")
            .queue_url
            .expect("a URL");
        let batched =
            QueueClient::new(Arc::new(batched_provider.clone()) as Arc<dyn QueueProvider>);
        let sender = batched
            .batching_sender(&queue, BatchingOptions::default())
            .expect("a sender");
        let unbatched = QueueClient::new(Arc::new(unbatched_provider) as Arc<dyn QueueProvider>);
        Setup {
            batched_provider,
            batched,
            sender,
            unbatched,
            queue,
            url,
        }
    }

    /// One iteration of `way`, timed.
    async fn run(&self, way: &str) -> Duration {
        let started = Instant::now();
        match way {
            "raw_sdk_batches" => raw_sdk_batches(&self.batched_provider, &self.url).await,
            "batching_on" => one_at_a_time(&self.batched, &self.queue, Some(&self.sender)).await,
            _ => one_at_a_time(&self.unbatched, &self.queue, None).await,
        }
        started.elapsed()
    }
}

fn sqs_batching(c: &mut Criterion, rt: &tokio::runtime::Runtime, setup: &Arc<Setup>) {
    let mut group = c.benchmark_group("sqs_batching");
    group
        .sample_size(10)
        .throughput(Throughput::Elements(MESSAGES as u64));
    for way in WAYS {
        group.bench_function(way, |b| {
            b.to_async(rt).iter_custom(|iterations| {
                let setup = Arc::clone(setup);
                async move {
                    let mut total = Duration::ZERO;
                    for _ in 0..iterations {
                        total += setup.run(way).await;
                    }
                    total
                }
            });
        });
    }
    group.finish();
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// [`ROUNDS`] rounds of one iteration of each way, the first way rotating, so that drift in the
/// server's speed hits every way alike; each way's ratio to the raw calls is taken within a
/// round, and the median round is printed.
async fn interleaved_ratios(setup: &Setup) {
    let mut seconds: Vec<Vec<f64>> = vec![Vec::new(); WAYS.len()];
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); WAYS.len()];
    for round in 0..ROUNDS {
        let mut took = [0.0; WAYS.len()];
        for offset in 0..WAYS.len() {
            let way = (round + offset) % WAYS.len();
            took[way] = setup.run(WAYS[way]).await.as_secs_f64();
        }
        for way in 0..WAYS.len() {
            seconds[way].push(took[way]);
            ratios[way].push(took[way] / took[0]);
        }
    }
    println!(
        "sqs batching against moto: {MESSAGES} messages of {BODY_BYTES} B sent, received and \
         completed per iteration; {ROUNDS} interleaved rounds, median:"
    );
    for (way, name) in WAYS.iter().enumerate() {
        let took = median(&mut seconds[way]);
        println!(
            "  {name:<16} {:>7.1} ms per iteration ({:>6.1} msgs/s), {:.2}x the raw calls' time",
            took * 1e3,
            MESSAGES as f64 / took,
            median(&mut ratios[way])
        );
    }
}

fn main() {
    let Some(endpoint) = queue_sqs::testing::test_server_endpoint().expect("the test server")
    else {
        println!("SKIPPED sqs batching: no local SQS server; `cargo xtask bench` starts one");
        return;
    };
    let rt = support::runtime();
    let setup = Arc::new(rt.block_on(Setup::new(&endpoint)));
    let mut criterion = Criterion::default().configure_from_args();
    sqs_batching(&mut criterion, &rt, &setup);
    criterion.final_summary();
    // `cargo test --benches` runs each way once to check it works (criterion's test mode, without
    // `--bench`): the ratios are for benchmark runs only.
    if std::env::args().any(|argument| argument == "--bench") {
        rt.block_on(interleaved_ratios(&setup));
    }
}
