//! Send + receive + complete of 1 KiB messages through the embedded broker, next to a plain
//! tokio channel doing only a send and a receive (the baseline: no locks, no redelivery).

// A benchmark aborts on the first failure: that is what `expect` is for here.
#![allow(clippy::expect_used)]
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use queue_core::{Message, QueueName, QueueProvider, QueueProviderExt};
use queue_memory::{MemoryConfig, MemoryProvider, QueueOptions};

const BODY_BYTES: usize = 1024;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// A broker with one queue holding `depth` messages already.
fn broker_with_depth(depth: usize) -> (MemoryProvider, QueueName) {
    let broker = MemoryProvider::new(MemoryConfig::default().with_auto_create_queues(false));
    let queue = QueueName::new("bench").expect("a valid name");
    broker
        .create_queue(
            &queue,
            QueueOptions::default().with_capacity(depth + 1_000_000),
        )
        .expect("a new queue");
    let body = Bytes::from(vec![7_u8; BODY_BYTES]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        for _ in 0..depth {
            broker
                .send(&queue, Message::new(body.clone()))
                .await
                .expect("sent");
        }
    });
    (broker, queue)
}

async fn round_trip(broker: &MemoryProvider, queue: &QueueName, body: &Bytes) {
    broker
        .send(queue, Message::new(body.clone()))
        .await
        .expect("sent");
    let received = broker
        .receive_one(queue, Duration::from_secs(1))
        .await
        .expect("received")
        .expect("a message");
    broker.complete(&received.receipt).await.expect("completed");
    black_box(received);
}

fn send_receive_complete(c: &mut Criterion) {
    let rt = runtime();
    let body = Bytes::from(vec![7_u8; BODY_BYTES]);
    let mut group = c.benchmark_group("memory/send_receive_complete_1KiB");
    group.throughput(Throughput::Elements(1));

    for (name, depth) in [
        ("one_task", 0),
        ("depth_10k", 10_000),
        ("depth_1m", 1_000_000),
    ] {
        let (broker, queue) = broker_with_depth(depth);
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| round_trip(&broker, &queue, &body));
        });
    }

    // Four tasks each doing the loop: one iteration is one message per task.
    let (broker, queue) = broker_with_depth(0);
    group.throughput(Throughput::Elements(4));
    group.bench_function("four_tasks", |b| {
        b.to_async(&rt).iter_custom(|iterations| {
            let broker = broker.clone();
            let queue = queue.clone();
            let body = body.clone();
            async move {
                let start = std::time::Instant::now();
                let tasks: Vec<_> = (0..4)
                    .map(|_| {
                        let broker = broker.clone();
                        let queue = queue.clone();
                        let body = body.clone();
                        tokio::spawn(async move {
                            for _ in 0..iterations {
                                round_trip(&broker, &queue, &body).await;
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await.expect("task finished");
                }
                start.elapsed()
            }
        });
    });
    group.finish();

    let mut baseline = c.benchmark_group("baseline/tokio_mpsc_1KiB");
    baseline.throughput(Throughput::Elements(1));
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
    let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
    baseline.bench_function("send_recv", |b| {
        b.to_async(&rt).iter(|| {
            let sender = sender.clone();
            let receiver = Arc::clone(&receiver);
            let body = body.clone();
            async move {
                sender.send(body).expect("open");
                let got = receiver.lock().await.recv().await.expect("a message");
                black_box(got);
            }
        });
    });
    baseline.finish();
}

criterion_group!(benches, send_receive_complete);
criterion_main!(benches);
