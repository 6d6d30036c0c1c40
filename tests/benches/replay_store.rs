//! What the shared replay guard costs per message: the sealed round trip (send + receive +
//! complete through `QueueClient` over the embedded broker) with the in-process store and with
//! the Redis store, in the same run, against the Redis that `cargo xtask bench` starts
//! (`QUEUE_RUNTIME_REDIS_TEST_URL`). Per message the Redis store makes two round trips: the
//! claim at receive (one script) and the completion (one `PSETEX`).

// A benchmark aborts on the first failure: that is what `expect` is for here.
#![allow(clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use queue_runtime::core::QueueProvider;
use queue_runtime::memory::{MemoryConfig, MemoryProvider};
use queue_runtime::prelude::*;
use queue_runtime::security::{RedisReplayStore, RedisStoreOptions};

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

fn replay_stores(c: &mut Criterion) {
    let Some(url) = std::env::var("QUEUE_RUNTIME_REDIS_TEST_URL").ok() else {
        eprintln!(
            "SKIPPED: the replay-store bench needs QUEUE_RUNTIME_REDIS_TEST_URL (cargo xtask bench starts Redis)"
        );
        return;
    };
    let rt = support::runtime();
    let queue = QueueName::new("bench").expect("a valid name");
    let body = Bytes::from(vec![7_u8; 256]);
    let broker =
        || Arc::new(MemoryProvider::new(MemoryConfig::default())) as Arc<dyn QueueProvider>;
    let in_process = QueueClient::new(broker()).with_security(support::security());
    let redis = rt.block_on(async {
        let store = RedisReplayStore::connect(
            &url.into(),
            RedisStoreOptions::default().with_prefix(format!("bench-{}", std::process::id())),
        )
        .await
        .expect("Redis answers");
        QueueClient::new(broker())
            .with_security(support::security().with_replay_store(Arc::new(store)))
    });
    let mut group = c.benchmark_group("sealed_round_trip_256B");
    group.bench_function("in_process_replay_store", |b| {
        b.to_async(&rt)
            .iter(|| round_trip(&in_process, &queue, &body));
    });
    group.bench_function("redis_replay_store", |b| {
        b.to_async(&rt).iter(|| round_trip(&redis, &queue, &body));
    });
    group.finish();
}

criterion_group!(benches, replay_stores);
criterion_main!(benches);
