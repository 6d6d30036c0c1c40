//! Processor throughput on the embedded broker with sealing on, for 1, 4 and 16 sessions, next
//! to the baseline in the same run: a hand-written loop over the same client (accept a session,
//! receive, complete) doing the same work without the processor. Each iteration handles
//! `MESSAGES` messages already in the queue; the difference per message is what the processor
//! adds (spans, metrics, lock keeping, panic catching, the handler call).

// A benchmark aborts on the first failure: that is what `expect` is for here.
#![allow(clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use queue_runtime::core::QueueProvider;
use queue_runtime::memory::{MemoryConfig, MemoryProvider, QueueOptions};
use queue_runtime::prelude::*;

/// Messages handled per iteration.
const MESSAGES: usize = 1_000;
/// How long workers wait on an empty queue or session before looking again.
const IDLE: Duration = Duration::from_millis(20);

/// A sealing client over a fresh broker with one session queue.
fn sealed_client(queue: &QueueName) -> QueueClient {
    let broker = MemoryProvider::new(MemoryConfig::default());
    broker
        .create_queue(queue, QueueOptions::default().with_sessions(true))
        .expect("a queue");
    QueueClient::new(Arc::new(broker) as Arc<dyn QueueProvider>).with_security(support::security())
}

async fn fill(client: &QueueClient, queue: &QueueName, sessions: usize) {
    let messages: Vec<Message> = (0..MESSAGES)
        .map(|index| {
            Message::builder(format!("message {index}"))
                .session_id(format!("session-{}", index % sessions))
                .build()
                .expect("a message")
        })
        .collect();
    for chunk in messages.chunks(100) {
        for outcome in client
            .send_batch(queue, chunk.to_vec())
            .await
            .expect("sent")
        {
            outcome.expect("sent");
        }
    }
}

/// The processor: time until every message is handled (shutdown not included).
async fn with_processor(client: &QueueClient, queue: &QueueName, sessions: usize) -> Duration {
    let handled = Arc::new(AtomicUsize::new(0));
    let handler = {
        let handled = handled.clone();
        move |_: ReceivedMessage, _: HandlerContext| {
            handled.fetch_add(1, Ordering::Relaxed);
            async { Outcome::Complete }
        }
    };
    let options = ProcessorOptions::default()
        .with_sessions(true)
        .with_max_concurrency(sessions)
        .with_receive_wait(IDLE)
        .with_session_idle(IDLE);
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let running = tokio::spawn(
        Processor::new(client.clone(), queue.clone(), handler)
            .with_options(options)
            .run(shutdown.clone()),
    );
    while handled.load(Ordering::Relaxed) < MESSAGES {
        tokio::task::yield_now().await;
    }
    let elapsed = started.elapsed();
    shutdown.cancel();
    running.await.expect("joined").expect("ran");
    elapsed
}

/// The baseline: `sessions` tasks each accepting sessions, receiving and completing, by hand;
/// timed the same way (until every message is handled, the workers' last idle wait excluded).
async fn by_hand(client: &QueueClient, queue: &QueueName, sessions: usize) -> Duration {
    let handled = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..sessions)
        .map(|_| {
            let (client, queue, handled) = (client.clone(), queue.clone(), handled.clone());
            tokio::spawn(async move {
                while handled.load(Ordering::Relaxed) < MESSAGES {
                    let Some(session) = client
                        .accept_next_session(&queue, IDLE)
                        .await
                        .expect("accepted")
                    else {
                        continue;
                    };
                    loop {
                        let batch = session.receive(10, IDLE).await.expect("received");
                        if batch.is_empty() {
                            break;
                        }
                        for message in &batch {
                            client.complete(message).await.expect("completed");
                            handled.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    session.close().await.expect("closed");
                }
            })
        })
        .collect();
    while handled.load(Ordering::Relaxed) < MESSAGES {
        tokio::task::yield_now().await;
    }
    let elapsed = started.elapsed();
    for worker in workers {
        worker.await.expect("joined");
    }
    elapsed
}

fn processor_throughput(c: &mut Criterion) {
    let rt = support::runtime();
    let queue = QueueName::new("bench").expect("a valid name");
    let mut group = c.benchmark_group("processor_sealed");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Elements(MESSAGES as u64));
    for sessions in [1_usize, 4, 16] {
        for (name, processed) in [("raw_client_loop", false), ("processor", true)] {
            group.bench_with_input(
                BenchmarkId::new(name, sessions),
                &sessions,
                |b, &sessions| {
                    b.to_async(&rt).iter_custom(|iterations| {
                        let queue = queue.clone();
                        async move {
                            let mut total = Duration::ZERO;
                            for _ in 0..iterations {
                                let client = sealed_client(&queue);
                                fill(&client, &queue, sessions).await;
                                total += if processed {
                                    with_processor(&client, &queue, sessions).await
                                } else {
                                    by_hand(&client, &queue, sessions).await
                                };
                            }
                            total
                        }
                    });
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, processor_throughput);
criterion_main!(benches);
