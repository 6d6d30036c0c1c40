//! The memory-provider round trip (send + receive + complete) through `QueueClient`, with
//! sealing off and on, in the same run: what end-to-end encryption costs per message.

// A benchmark aborts on the first failure: that is what `expect` is for here.
#![allow(clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use queue_runtime::core::QueueProvider;
use queue_runtime::memory::{MemoryConfig, MemoryProvider};
use queue_runtime::prelude::*;

fn client(sealed: bool) -> QueueClient {
    let broker: Arc<dyn QueueProvider> = Arc::new(MemoryProvider::new(MemoryConfig::default()));
    let client = QueueClient::new(broker);
    if sealed {
        client.with_security(support::security())
    } else {
        client
    }
}

async fn round_trip(client: &QueueClient, queue: &QueueName, body: &Bytes) {
    client
        .send(queue, Message::new(body.clone()))
        .await
        .expect("sent");
    let received = client
        .receive_one(queue, Duration::from_secs(1))
        .await
        .expect("received")
        .expect("a message");
    client.complete(&received).await.expect("completed");
}

fn sealing(c: &mut Criterion) {
    let rt = support::runtime();
    let queue = QueueName::new("bench").expect("a valid name");
    let mut group = c.benchmark_group("client_round_trip");
    for size in [256_usize, 4096, 65536] {
        let body = Bytes::from(vec![7_u8; size]);
        group.throughput(Throughput::Bytes(size as u64));
        for (label, sealed) in [("unsealed", false), ("sealed", true)] {
            let client = client(sealed);
            group.bench_with_input(BenchmarkId::new(label, size), &body, |b, body| {
                b.to_async(&rt).iter(|| round_trip(&client, &queue, body));
            });
        }
    }
    group.finish();
}

criterion_group!(benches, sealing);
criterion_main!(benches);
