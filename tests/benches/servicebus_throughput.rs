//! Steady-state throughput against Service Bus (our emulator, which `cargo xtask bench`
//! starts, or the namespace of `QUEUE_RUNTIME_TEST_AZURE_CONNECTION_STRING`), next to the same
//! work done with raw `azservicebus` calls in the same run.
//!
//! The shape mirrors the SQS bench: 1,000 messages of 1 KiB; send a batch of 10, receive them,
//! complete them, repeat. Four ways, each run [`ROUNDS`] times, interleaved so drift hits them
//! alike:
//! - `raw sdk`: `send_message_batch`, `receive_messages_with_max_wait_time`, `complete_message`
//!   per message (the SDK has no batch settle), nothing else;
//! - `raw + ids`: the same with a message id on each message (the provider always sends one);
//! - `provider`: the same through `AzureProvider` (encoding, size checks, receipts, pooled links);
//! - `sealed`: through the secure `QueueClient` (every message sealed and opened).
//!
//! Reported: messages per second (median round) and client CPU per message (user + system time
//! of this process; the emulator runs in its own). Against our emulator every transfer waits
//! its `--answer-delay` (10 ms in the xtask), so throughput is latency-bound and its ratios sit
//! close to 1: the CPU ratio is the one that tells the provider's cost.

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs
)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use azservicebus::core::BasicRetryPolicy;
use azservicebus::{
    ServiceBusClient, ServiceBusClientOptions, ServiceBusMessage, ServiceBusReceiverOptions,
    ServiceBusSenderOptions,
};
use queue_azure::AzureProvider;
use queue_azure::testing::{TEST_CONNECTION_STRING_VARIABLE, purge, test_config};
use queue_runtime::QueueClient;
use queue_runtime::core::{QueueName, QueueProvider};
use support::throughput::{
    BATCH, BODY_BYTES, Round, cpu_ratio, finish, report, rounds, sealed, start, through_provider,
};

const MESSAGES: usize = 1_000;
/// Rounds of each way unless `QUEUE_RUNTIME_BENCH_ROUNDS` says otherwise.
const ROUNDS: usize = 9;
/// A plain test queue (see `queue_azure::testing::TEST_QUEUES`).
const QUEUE: &str = "qr-conformance";

/// Raw SDK calls; `with_ids` gives each message a message id, as every message of the provider
/// has one (the contract's), so the ratio to it shows what carrying the id costs on the wire.
async fn raw_sdk(client: &mut ServiceBusClient<BasicRetryPolicy>, with_ids: bool) -> Round {
    let mut sender = client
        .create_sender(QUEUE, ServiceBusSenderOptions::default())
        .await
        .unwrap();
    let mut receiver = client
        .create_receiver_for_queue(QUEUE, ServiceBusReceiverOptions::default())
        .await
        .unwrap();
    let body = vec![b'x'; BODY_BYTES];
    let clocks = start();
    for _ in 0..MESSAGES / BATCH {
        let mut batch = sender.create_message_batch(Default::default()).unwrap();
        for _ in 0..BATCH {
            let mut message = ServiceBusMessage::new(body.clone());
            if with_ids {
                message
                    .set_message_id(uuid::Uuid::new_v4().to_string())
                    .unwrap();
            }
            batch.try_add_message(message).unwrap();
        }
        sender.send_message_batch(batch).await.unwrap();
        let mut received = Vec::with_capacity(BATCH);
        while received.len() < BATCH {
            let wanted = u32::try_from(BATCH - received.len()).unwrap();
            let messages = receiver
                .receive_messages_with_max_wait_time(wanted, Some(Duration::from_secs(1)))
                .await
                .unwrap();
            for message in &messages {
                assert_eq!(message.body().unwrap().len(), BODY_BYTES);
            }
            received.extend(messages);
        }
        for message in &received {
            receiver.complete_message(message).await.unwrap();
        }
    }
    let round = finish(clocks);
    sender.dispose().await.unwrap();
    receiver.dispose().await.unwrap();
    round
}

fn main() {
    let Some(config) = test_config() else {
        println!(
            "SKIPPED servicebus throughput: {TEST_CONNECTION_STRING_VARIABLE} is not set; \
             `cargo xtask bench` starts our emulator"
        );
        return;
    };
    let connection_string = std::env::var(TEST_CONNECTION_STRING_VARIABLE).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let provider = AzureProvider::connect(&config).await.unwrap();
        let queue = QueueName::new(QUEUE).unwrap();
        purge(&provider, &queue, false).await.unwrap();
        let options = ServiceBusClientOptions::default();
        let mut raw = if connection_string.contains("UseDevelopmentEmulator=true") {
            ServiceBusClient::unsecured()
                .new_from_connection_string(connection_string.as_str(), options)
                .await
        } else {
            ServiceBusClient::new_from_connection_string(connection_string.as_str(), options).await
        }
        .unwrap();
        let client =
            QueueClient::new(Arc::new(provider.clone())).with_security(support::security());

        let mut results: [(&str, Vec<Round>); 4] = [
            ("raw sdk", Vec::new()),
            ("raw + ids", Vec::new()),
            ("provider", Vec::new()),
            ("sealed", Vec::new()),
        ];
        for _ in 0..rounds(ROUNDS) {
            results[0].1.push(raw_sdk(&mut raw, false).await);
            results[1].1.push(raw_sdk(&mut raw, true).await);
            results[2]
                .1
                .push(through_provider(&provider, &queue, MESSAGES).await);
            results[3].1.push(sealed(&client, &queue, MESSAGES).await);
        }
        report("servicebus throughput", MESSAGES, &results);
        // Like for like: the provider against raw calls that carry the same message ids.
        let (ratio, lowest, highest) = cpu_ratio(&results[1].1, &results[2].1);
        println!(
            "  provider / raw + ids: client CPU {ratio:.2}x (rounds {lowest:.2}-{highest:.2}x)"
        );
        raw.dispose().await.unwrap();
        provider.close().await.unwrap();
    });
}
