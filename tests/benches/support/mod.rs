//! What the benches share: the runtime they run on and the keys they seal with.

#![allow(
    dead_code,
    unreachable_pub,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::print_stdout
)]

use std::sync::Arc;

use queue_runtime::crypto::{Key, KeyId, KeyMaterial, KeyState, Keyset};
use queue_runtime::keys::{KeyRing, StaticKeys};
use queue_runtime::security::Security;

/// A multi-threaded runtime of two workers (the benchmark machine's two cores), for the
/// in-process benches.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Sealing with one fresh primary key behind a static key ring (AES-256-GCM, the default suite).
pub fn security() -> Security {
    let keyset = Keyset::new([Key::new(
        KeyId::new("bench").expect("an id"),
        KeyMaterial::generate().expect("a key"),
        KeyState::Primary,
    )])
    .expect("a keyset");
    Security::new(KeyRing::new(Arc::new(StaticKeys::new(keyset))))
}

/// The steady-state throughput benches (`sqs_throughput`, `servicebus_throughput`): each way of
/// doing the same work is timed in rounds, then reported next to the first (the raw SDK).
pub mod throughput {
    use std::time::{Duration, Instant};

    use cpu_time::ProcessTime;
    use queue_runtime::QueueClient;
    use queue_runtime::core::{Message, QueueName, QueueProvider, ReceiveOptions};

    /// Messages per batch, in every way.
    pub const BATCH: usize = 10;
    /// The body size of every message.
    pub const BODY_BYTES: usize = 1024;

    /// One round of one way: wall time and this process's CPU time (the client's only).
    #[derive(Debug, Clone, Copy)]
    pub struct Round {
        seconds: f64,
        cpu_seconds: f64,
    }

    /// The clocks a round starts from.
    pub fn start() -> (Instant, ProcessTime) {
        (Instant::now(), ProcessTime::now())
    }

    /// The round begun at `started`.
    pub fn finish((started, cpu): (Instant, ProcessTime)) -> Round {
        Round {
            seconds: started.elapsed().as_secs_f64(),
            cpu_seconds: cpu.elapsed().as_secs_f64(),
        }
    }

    /// `messages` messages through `provider`: send a batch, receive it, complete it, repeat.
    pub async fn through_provider(
        provider: &dyn QueueProvider,
        queue: &QueueName,
        messages: usize,
    ) -> Round {
        let body = vec![b'x'; BODY_BYTES];
        let clocks = start();
        for _ in 0..messages / BATCH {
            let batch = (0..BATCH).map(|_| Message::new(body.clone())).collect();
            for result in provider.send_batch(queue, batch).await.unwrap() {
                result.unwrap();
            }
            let mut receipts = Vec::with_capacity(BATCH);
            while receipts.len() < BATCH {
                let options = ReceiveOptions::new(BATCH - receipts.len(), Duration::from_secs(1));
                for message in provider.receive(queue, options).await.unwrap() {
                    assert_eq!(message.body().len(), BODY_BYTES);
                    receipts.push(message.receipt);
                }
            }
            for result in provider.complete_batch(&receipts).await.unwrap() {
                result.unwrap();
            }
        }
        finish(clocks)
    }

    /// The same through the secure client: every message sealed and opened.
    pub async fn sealed(client: &QueueClient, queue: &QueueName, messages: usize) -> Round {
        let body = vec![b'x'; BODY_BYTES];
        let clocks = start();
        for _ in 0..messages / BATCH {
            let batch = (0..BATCH).map(|_| Message::new(body.clone())).collect();
            for result in client.send_batch(queue, batch).await.unwrap() {
                result.unwrap();
            }
            let mut received = Vec::with_capacity(BATCH);
            while received.len() < BATCH {
                let got = client
                    .receive(queue, BATCH - received.len(), Duration::from_secs(1))
                    .await
                    .unwrap();
                for message in &got {
                    assert_eq!(message.body().len(), BODY_BYTES);
                    assert!(message.delivery.seal.is_some());
                }
                received.extend(got);
            }
            for result in client.complete_batch(&received).await.unwrap() {
                result.unwrap();
            }
        }
        finish(clocks)
    }

    fn median(values: &mut [f64]) -> f64 {
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
    }

    /// How many rounds a bench runs: `QUEUE_RUNTIME_BENCH_ROUNDS`, else `default`; one in a
    /// `cargo test --all-targets` run (no `--bench` argument), as a check that the bench works.
    pub fn rounds(default: usize) -> usize {
        if !std::env::args().any(|arg| arg == "--bench") {
            return 1;
        }
        std::env::var("QUEUE_RUNTIME_BENCH_ROUNDS")
            .ok()
            .and_then(|rounds| rounds.parse().ok())
            .filter(|rounds| *rounds > 0)
            .unwrap_or(default)
    }

    /// `way`'s client CPU as a ratio to `base`'s: the median over rounds of the two ways' ratio
    /// within each round (the ways of a round run back to back, so the machine's drift between
    /// rounds cancels out), with the lowest and the highest round's.
    pub fn cpu_ratio(base: &[Round], way: &[Round]) -> (f64, f64, f64) {
        let mut ratios: Vec<f64> = base
            .iter()
            .zip(way)
            .map(|(base, round)| round.cpu_seconds / base.cpu_seconds)
            .collect();
        let ratio = median(&mut ratios);
        let lowest = ratios.first().copied().unwrap_or(f64::NAN);
        let highest = ratios.last().copied().unwrap_or(f64::NAN);
        (ratio, lowest, highest)
    }

    /// Prints each way's median messages per second and client CPU per message, and both as a
    /// ratio to the first way's (per round, as [`cpu_ratio`]).
    pub fn report(title: &str, messages: usize, results: &[(&str, Vec<Round>)]) {
        let rounds = results.first().map_or(0, |(_, rounds)| rounds.len());
        println!(
            "{title}: {messages} messages of {BODY_BYTES} B, batches of {BATCH}, median of \
             {rounds} round(s)"
        );
        let Some((_, baseline)) = results.first() else {
            return;
        };
        for (name, way) in results {
            let seconds = median(&mut way.iter().map(|round| round.seconds).collect::<Vec<_>>());
            let cpu = median(
                &mut way
                    .iter()
                    .map(|round| round.cpu_seconds)
                    .collect::<Vec<_>>(),
            );
            let rate = messages as f64 / seconds;
            let cpu_per_message = cpu / messages as f64 * 1e6;
            let rate_ratio = median(
                &mut baseline
                    .iter()
                    .zip(way)
                    .map(|(base, round)| base.seconds / round.seconds)
                    .collect::<Vec<_>>(),
            );
            let (cpu_ratio, lowest, highest) = cpu_ratio(baseline, way);
            println!(
                "  {name:<9} {rate:>7.1} msgs/s ({rate_ratio:.2}x raw)   client CPU \
                 {cpu_per_message:>6.1} µs/msg ({cpu_ratio:.2}x raw, rounds {lowest:.2}-{highest:.2}x)"
            );
        }
    }
}
