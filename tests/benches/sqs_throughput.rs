//! Steady-state throughput against the local SQS server `cargo xtask bench` starts, next to the
//! same work done with raw `aws-sdk-sqs` calls in the same run.
//!
//! The shape (the issue's): 2,000 messages of 1 KiB; send a batch of 10, receive them, complete
//! them in one batch, repeat, so the queue stays shallow (moto scans the whole queue on every
//! call). Three ways, each run [`ROUNDS`] times, interleaved so drift hits them alike:
//! - `raw sdk`: `SendMessageBatch`, `ReceiveMessage`, `DeleteMessageBatch`, nothing else;
//! - `provider`: the same through `SqsProvider` (encoding, size checks, receipts);
//! - `sealed`: through the secure `QueueClient` (every message sealed and opened).
//!
//! Reported: messages per second (median round) and client CPU per message (user + system time
//! of this process, which is only the client: moto runs in its own).

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs
)]

mod support;

use std::sync::Arc;

use queue_runtime::QueueClient;
use queue_runtime::core::QueueName;
use queue_sqs::admin::{QueueSetup, create_queue_with_dead_letter};
use queue_sqs::sdk::types::{DeleteMessageBatchRequestEntry, SendMessageBatchRequestEntry};
use queue_sqs::{SqsConfig, SqsProvider};
use support::throughput::{
    BATCH, BODY_BYTES, Round, finish, report, rounds, sealed, start, through_provider,
};

const MESSAGES: usize = 2_000;
const ROUNDS: usize = 3;

async fn raw_sdk(provider: &SqsProvider, url: &str) -> Round {
    let client = provider.client();
    let body = "x".repeat(BODY_BYTES);
    let clocks = start();
    for _ in 0..MESSAGES / BATCH {
        let entries = (0..BATCH)
            .map(|index| {
                SendMessageBatchRequestEntry::builder()
                    .id(index.to_string())
                    .message_body(body.clone())
                    .build()
                    .unwrap()
            })
            .collect();
        client
            .send_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .unwrap();
        let mut handles = Vec::with_capacity(BATCH);
        while handles.len() < BATCH {
            let output = client
                .receive_message()
                .queue_url(url)
                .max_number_of_messages((BATCH - handles.len()) as i32)
                .wait_time_seconds(1)
                .send()
                .await
                .unwrap();
            for message in output.messages() {
                assert_eq!(message.body().map(str::len), Some(BODY_BYTES));
                handles.push(message.receipt_handle().unwrap().to_owned());
            }
        }
        let entries = handles
            .iter()
            .enumerate()
            .map(|(index, handle)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(index.to_string())
                    .receipt_handle(handle)
                    .build()
                    .unwrap()
            })
            .collect();
        client
            .delete_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .unwrap();
    }
    finish(clocks)
}

fn main() {
    let Some(endpoint) = queue_sqs::testing::test_server_endpoint().unwrap() else {
        println!("SKIPPED sqs throughput: no local SQS server; `cargo xtask bench` starts one");
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let provider = SqsProvider::for_local_server(&endpoint, &SqsConfig::new()).unwrap();
        let queue = QueueName::new(format!("bench-{}", uuid::Uuid::new_v4().simple())).unwrap();
        create_queue_with_dead_letter(&provider, &queue, &QueueSetup::default())
            .await
            .unwrap();
        let url = provider
            .client()
            .get_queue_url()
            .queue_name(queue.as_str())
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        let client =
            QueueClient::new(Arc::new(provider.clone())).with_security(support::security());

        let mut results: [(&str, Vec<Round>); 3] = [
            ("raw sdk", Vec::new()),
            ("provider", Vec::new()),
            ("sealed", Vec::new()),
        ];
        for _ in 0..rounds(ROUNDS) {
            results[0].1.push(raw_sdk(&provider, &url).await);
            results[1]
                .1
                .push(through_provider(&provider, &queue, MESSAGES).await);
            results[2].1.push(sealed(&client, &queue, MESSAGES).await);
        }
        report("sqs throughput against moto", MESSAGES, &results);
    });
}
