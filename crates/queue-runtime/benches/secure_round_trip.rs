//! The memory-provider round trip (send + receive + complete) through `QueueClient`, with
//! sealing off and on, in the same run: what end-to-end encryption costs per message.

// A benchmark aborts on the first failure: that is what `expect` is for here.
#![allow(clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use queue_runtime::core::QueueProvider;
use queue_runtime::crypto::{Key, KeyId, KeyMaterial, KeyState, Keyset};
use queue_runtime::keys::{KeyRing, StaticKeys};
use queue_runtime::memory::{MemoryConfig, MemoryProvider};
use queue_runtime::prelude::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn client(sealed: bool) -> QueueClient {
    let broker: Arc<dyn QueueProvider> = Arc::new(MemoryProvider::new(MemoryConfig::default()));
    let client = QueueClient::new(broker);
    if !sealed {
        return client;
    }
    let keyset = Keyset::new([Key::new(
        KeyId::new("bench").expect("an id"),
        KeyMaterial::generate().expect("a key"),
        KeyState::Primary,
    )])
    .expect("a keyset");
    client.with_security(Security::new(KeyRing::new(Arc::new(StaticKeys::new(
        keyset,
    )))))
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
    let rt = runtime();
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
