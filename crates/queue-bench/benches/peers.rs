//! The embedded broker and `QueueClient` next to omniqueue's in-memory backend, in one run.
//!
//! Contenders, each on its own queue, all with the same 1 KiB payload:
//! - `omniqueue`: omniqueue 0.3's in-memory backend (a tokio channel; no locks, no redelivery,
//!   no delivery counts; its API copies the payload on send and on receive);
//! - `provider`: the `queue-memory` provider used directly (peek-lock, lock expiry, delivery
//!   counts, capacity, TTL, dead-lettering all in place);
//! - `client`: `QueueClient` over that provider, sealing off;
//! - `sealed`: `QueueClient` with security (AES-256-GCM, a static keyset behind a `KeyRing`,
//!   the in-process replay guard): every message sealed, opened, checked for freshness and
//!   claimed and completed in the replay guard;
//! - `envelope`: the envelope alone, seal + open of the same body bound to the same context the
//!   client binds (queue and message id): the floor under `sealed`.
//!
//! Scenarios (N messages, default 100,000):
//! - `one_task`: one task sends N, then receives and completes N, one at a time;
//! - `four_consumers`: N queued beforehand (not timed), four tasks drain them, receiving and
//!   completing one at a time;
//! - `steady_empty` / `steady_deep`: N times send + receive + complete with 0 or DEPTH (default
//!   1,000,000) messages already queued (filled once, not timed; the loop keeps the depth).
//!
//! Rounds are interleaved (every contender once per round, the starting one rotating), so load
//! from other processes hits every contender alike; each ratio is taken within a round and the
//! median of the rounds reported. Then criterion measures the per-message round trip of each
//! contender and the envelope's seal + open, as a cross-check with its own statistics.
//!
//! Knobs (environment): `PEERS_MESSAGES`, `PEERS_ROUNDS` (default 5), `PEERS_DEPTH`,
//! `PEERS_ONLY` (comma-separated contenders), `PEERS_SCENARIOS` (comma-separated scenarios),
//! `PEERS_CRITERION=0` (skip the criterion part), `PEERS_VERBOSE=1` (every run's time). With `PEERS_ONLY` and `PEERS_SCENARIOS` a run
//! does one thing, which is what `valgrind --tool=callgrind` wants for instruction counts.
//! Run directly (not through `cargo bench`), the binary needs `--bench` for these sizes; without
//! it (as `cargo test --all-targets` runs it) it does one round of 200 messages.

#![allow(
    missing_docs,
    clippy::print_stdout,
    clippy::expect_used,
    clippy::unwrap_used
)]

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput};
use omniqueue::backends::InMemoryBackend;
use omniqueue::backends::in_memory::{InMemoryConsumer, InMemoryProducer};
use queue_core::{Message, QueueName, QueueProvider, QueueProviderExt};
use queue_crypto::{Context, Key, KeyId, KeyMaterial, KeyState, Keyset, Sealer};
use queue_keys::{KeyRing, StaticKeys};
use queue_memory::{MemoryConfig, MemoryProvider, QueueOptions};
use queue_runtime::QueueClient;
use queue_runtime::security::Security;

const BODY_BYTES: usize = 1024;
const WAIT: Duration = Duration::from_secs(5);

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn selected(variable: &str, name: &str) -> bool {
    std::env::var(variable)
        .map(|list| list.split(',').any(|item| item.trim() == name))
        .unwrap_or(true)
}

fn keyset() -> Keyset {
    Keyset::new([Key::new(
        KeyId::new("bench").expect("an id"),
        KeyMaterial::from_array([7; 32]),
        KeyState::Primary,
    )])
    .expect("a keyset")
}

/// One contender's queue, and how it sends, receives and completes.
enum Side {
    Omniqueue {
        producer: InMemoryProducer,
        // omniqueue's consumer receives through `&mut self`: consumers share it behind a lock.
        consumer: tokio::sync::Mutex<InMemoryConsumer>,
    },
    Provider(MemoryProvider, QueueName),
    Client(QueueClient, QueueName),
}

/// A broker whose queue holds up to `capacity` messages, without sessions.
fn broker(capacity: usize) -> (MemoryProvider, QueueName) {
    let broker = MemoryProvider::new(MemoryConfig::default().with_auto_create_queues(false));
    let queue = QueueName::new("bench").expect("a valid name");
    broker
        .create_queue(&queue, QueueOptions::default().with_capacity(capacity))
        .expect("a new queue");
    (broker, queue)
}

impl Side {
    async fn new(who: Who, capacity: usize) -> Side {
        match who {
            Who::Omniqueue => {
                let (producer, consumer) = InMemoryBackend::builder()
                    .build_pair()
                    .await
                    .expect("an omniqueue pair");
                Side::Omniqueue {
                    producer,
                    consumer: tokio::sync::Mutex::new(consumer),
                }
            }
            Who::Provider => {
                let (broker, queue) = broker(capacity);
                Side::Provider(broker, queue)
            }
            Who::Client => {
                let (broker, queue) = broker(capacity);
                Side::Client(QueueClient::new(Arc::new(broker)), queue)
            }
            Who::Sealed => {
                let (broker, queue) = broker(capacity);
                let security = Security::new(KeyRing::new(Arc::new(StaticKeys::new(keyset()))));
                let client = QueueClient::new(Arc::new(broker)).with_security(security);
                Side::Client(client, queue)
            }
        }
    }

    async fn send(&self, body: &Bytes) {
        match self {
            Side::Omniqueue { producer, .. } => producer.send_raw(body).await.expect("sent"),
            Side::Provider(broker, queue) => {
                broker
                    .send(queue, Message::new(body.clone()))
                    .await
                    .expect("sent");
            }
            Side::Client(client, queue) => {
                client
                    .send(queue, Message::new(body.clone()))
                    .await
                    .expect("sent");
            }
        }
    }

    /// Receives one message (it must be there) and completes it.
    async fn take_one(&self) {
        match self {
            Side::Omniqueue { consumer, .. } => {
                let delivery = consumer.lock().await.receive().await.expect("received");
                assert_eq!(delivery.borrow_payload().map(<[u8]>::len), Some(BODY_BYTES));
                delivery
                    .ack()
                    .await
                    .map_err(|(error, _)| error)
                    .expect("acked");
            }
            Side::Provider(broker, queue) => {
                let received = broker
                    .receive_one(queue, WAIT)
                    .await
                    .expect("received")
                    .expect("a message");
                assert_eq!(received.body().len(), BODY_BYTES);
                broker.complete(&received.receipt).await.expect("completed");
                black_box(received);
            }
            Side::Client(client, queue) => {
                let received = client
                    .receive_one(queue, WAIT)
                    .await
                    .expect("received")
                    .expect("a message");
                assert_eq!(received.body().len(), BODY_BYTES);
                client.complete(&received).await.expect("completed");
                black_box(received);
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Omniqueue,
    Provider,
    Client,
    Sealed,
}

impl Who {
    const ALL: [Who; 4] = [Who::Omniqueue, Who::Provider, Who::Client, Who::Sealed];

    fn name(self) -> &'static str {
        match self {
            Who::Omniqueue => "omniqueue",
            Who::Provider => "provider",
            Who::Client => "client",
            Who::Sealed => "sealed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    OneTask,
    FourConsumers,
    SteadyEmpty,
    SteadyDeep,
}

impl Scenario {
    const ALL: [Scenario; 4] = [
        Scenario::OneTask,
        Scenario::FourConsumers,
        Scenario::SteadyEmpty,
        Scenario::SteadyDeep,
    ];

    fn name(self) -> &'static str {
        match self {
            Scenario::OneTask => "one_task",
            Scenario::FourConsumers => "four_consumers",
            Scenario::SteadyEmpty => "steady_empty",
            Scenario::SteadyDeep => "steady_deep",
        }
    }

    fn describe(self, messages: usize, depth: usize) -> String {
        match self {
            Scenario::OneTask => format!("one task: send {messages}, then receive + complete them"),
            Scenario::FourConsumers => {
                format!("four consumer tasks draining {messages} (queued beforehand, not timed)")
            }
            Scenario::SteadyEmpty => {
                format!("{messages} x (send + receive + complete), empty queue")
            }
            Scenario::SteadyDeep => {
                format!("{messages} x (send + receive + complete), {depth} already queued")
            }
        }
    }

    /// The sealed client is left out of the deep queue: a million sealed bodies are a million
    /// distinct 1.1 KiB buffers (the others share one body), and its cost is the one-task cost.
    fn runs(self, who: Who) -> bool {
        !(self == Scenario::SteadyDeep && who == Who::Sealed)
    }
}

/// Runs one scenario once on `side`; returns the time of the timed part.
async fn run(scenario: Scenario, side: &Arc<Side>, body: &Bytes, messages: usize) -> Duration {
    match scenario {
        Scenario::OneTask => {
            let started = Instant::now();
            for _ in 0..messages {
                side.send(body).await;
            }
            for _ in 0..messages {
                side.take_one().await;
            }
            started.elapsed()
        }
        Scenario::FourConsumers => {
            for _ in 0..messages {
                side.send(body).await;
            }
            let remaining = Arc::new(AtomicUsize::new(messages));
            let started = Instant::now();
            let consumers: Vec<_> = (0..4)
                .map(|_| {
                    let side = Arc::clone(side);
                    let remaining = Arc::clone(&remaining);
                    tokio::spawn(async move {
                        while remaining
                            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                                left.checked_sub(1)
                            })
                            .is_ok()
                        {
                            side.take_one().await;
                        }
                    })
                })
                .collect();
            for consumer in consumers {
                consumer.await.expect("a consumer finished");
            }
            started.elapsed()
        }
        Scenario::SteadyEmpty | Scenario::SteadyDeep => {
            let started = Instant::now();
            for _ in 0..messages {
                side.send(body).await;
                side.take_one().await;
            }
            started.elapsed()
        }
    }
}

/// The envelope alone: seal + open of `messages` bodies under the context the client binds.
fn envelope(body: &Bytes, messages: usize) -> Duration {
    let keyset = keyset();
    let sealer = Sealer::new();
    let context = Context::new("bench").with_message_id("3f1e8d8a-8c55-4b1e-9f0e-0d4c3a2b1c00");
    let started = Instant::now();
    for _ in 0..messages {
        let sealed = sealer.seal(&keyset, body, &context).expect("sealed");
        let opened = queue_crypto::open(&keyset, &sealed, &context).expect("opened");
        black_box(opened);
    }
    started.elapsed()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Which side of a goal's value passes.
#[derive(Debug, Clone, Copy)]
enum Bound {
    AtLeast(f64),
    AtMost(f64),
}

/// Per round, seconds per message of each contender in each scenario, and of the envelope.
#[derive(Default)]
struct Rounds {
    /// `(scenario, who) -> seconds per message, one entry per round`
    times: Vec<((Scenario, Who), Vec<f64>)>,
    envelope: Vec<f64>,
}

impl Rounds {
    fn push(&mut self, key: (Scenario, Who), per_message: f64) {
        match self.times.iter_mut().find(|(k, _)| *k == key) {
            Some((_, values)) => values.push(per_message),
            None => self.times.push((key, vec![per_message])),
        }
    }

    fn get(&self, key: (Scenario, Who)) -> Option<&[f64]> {
        self.times
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, values)| values.as_slice())
    }

    /// Median over rounds of `f(round)`, for the rounds where both series exist.
    fn median_of(&self, a: (Scenario, Who), b: (Scenario, Who), f: fn(f64, f64) -> f64) -> f64 {
        match (self.get(a), self.get(b)) {
            (Some(a), Some(b)) => {
                let mut values: Vec<f64> = a.iter().zip(b).map(|(&a, &b)| f(a, b)).collect();
                median(&mut values)
            }
            _ => f64::NAN,
        }
    }
}

fn interleaved_rounds(rt: &tokio::runtime::Runtime, benchmarking: bool) {
    // `cargo test --all-targets` runs this binary too (without `--bench`): then one small round
    // checks that every contender and scenario still works, in seconds.
    let (messages, rounds, depth) = if benchmarking {
        (100_000, 5, 1_000_000)
    } else {
        (200, 1, 1_000)
    };
    let messages = env_usize("PEERS_MESSAGES", messages);
    let rounds = env_usize("PEERS_ROUNDS", rounds);
    let depth = env_usize("PEERS_DEPTH", depth);
    let body = Bytes::from(vec![0x5A_u8; BODY_BYTES]);
    let contenders: Vec<Who> = Who::ALL
        .into_iter()
        .filter(|who| selected("PEERS_ONLY", who.name()))
        .collect();
    let scenarios: Vec<Scenario> = Scenario::ALL
        .into_iter()
        .filter(|scenario| selected("PEERS_SCENARIOS", scenario.name()))
        .collect();
    let with_envelope = selected("PEERS_ONLY", "envelope");
    let verbose = std::env::var("PEERS_VERBOSE").is_ok_and(|value| value == "1");
    let capacity = depth + messages + 1_000;

    // Every (scenario, contender) keeps its queue across rounds: each round leaves it as found
    // (empty, or holding the deep queue's `depth`).
    let mut sides: Vec<((Scenario, Who), Arc<Side>)> = Vec::new();
    rt.block_on(async {
        for &scenario in &scenarios {
            for &who in &contenders {
                if !scenario.runs(who) {
                    continue;
                }
                let side = Arc::new(Side::new(who, capacity).await);
                if scenario == Scenario::SteadyDeep {
                    for _ in 0..depth {
                        side.send(&body).await;
                    }
                }
                sides.push(((scenario, who), side));
            }
        }
    });

    let mut results = Rounds::default();
    for round in 0..rounds {
        for &scenario in &scenarios {
            let in_scenario: Vec<&((Scenario, Who), Arc<Side>)> =
                sides.iter().filter(|((s, _), _)| *s == scenario).collect();
            let count = in_scenario.len().max(1);
            for index in 0..in_scenario.len() {
                let (key, side) = in_scenario[(index + round) % count];
                let elapsed = rt.block_on(run(scenario, side, &body, messages));
                if verbose {
                    println!(
                        "round {round} {} {}: {:.3} µs/msg",
                        scenario.name(),
                        key.1.name(),
                        elapsed.as_secs_f64() / messages as f64 * 1e6
                    );
                }
                results.push(*key, elapsed.as_secs_f64() / messages as f64);
            }
        }
        if with_envelope && !scenarios.is_empty() {
            let elapsed = envelope(&body, messages);
            results
                .envelope
                .push(elapsed.as_secs_f64() / messages as f64);
        }
    }
    if scenarios.is_empty() && with_envelope {
        for _ in 0..rounds {
            let elapsed = envelope(&body, messages);
            results
                .envelope
                .push(elapsed.as_secs_f64() / messages as f64);
        }
    }
    report(&results, &scenarios, messages, rounds, depth);
}

fn report(results: &Rounds, scenarios: &[Scenario], messages: usize, rounds: usize, depth: usize) {
    println!(
        "\npeers: {BODY_BYTES} B payload, {messages} messages, median of {rounds} interleaved \
         rounds; ratios are taken within each round"
    );
    for &scenario in scenarios {
        println!(
            "\n{}: {}",
            scenario.name(),
            scenario.describe(messages, depth)
        );
        println!(
            "  {:<10} {:>12} {:>10} {:>14}",
            "contender", "msgs/s", "µs/msg", "vs omniqueue"
        );
        for who in Who::ALL {
            let Some(values) = results.get((scenario, who)) else {
                continue;
            };
            let per_message = median(&mut values.to_vec());
            let ratio =
                results.median_of((scenario, who), (scenario, Who::Omniqueue), |ours, peer| {
                    peer / ours
                });
            println!(
                "  {:<10} {:>12.0} {:>10.3} {:>13.2}x",
                who.name(),
                1.0 / per_message,
                per_message * 1e6,
                ratio
            );
        }
    }
    if !results.envelope.is_empty() {
        let per_message = median(&mut results.envelope.clone());
        println!(
            "\nenvelope: seal + open of one {BODY_BYTES} B body: {:.3} µs/msg",
            per_message * 1e6
        );
    }

    println!("\ngoals (medians of per-round ratios):");
    let goal = |label: &str, value: f64, target: &str, met: bool| {
        if value.is_finite() {
            let verdict = if met { "met" } else { "NOT met" };
            println!("  {label:<58} {value:>7.3} (goal {target}) {verdict}");
        }
    };
    // Each goal is the median over rounds of `a / b` (times per message), with its bound.
    use Scenario::{FourConsumers, OneTask, SteadyDeep, SteadyEmpty};
    use Who::{Client, Omniqueue, Provider};
    let ratio_goals = [
        (
            "provider / omniqueue throughput, one_task",
            (OneTask, Omniqueue),
            (OneTask, Provider),
            Bound::AtLeast(1.0),
        ),
        (
            "provider / omniqueue throughput, four_consumers",
            (FourConsumers, Omniqueue),
            (FourConsumers, Provider),
            Bound::AtLeast(1.0),
        ),
        (
            "provider throughput, deep queue / empty queue",
            (SteadyEmpty, Provider),
            (SteadyDeep, Provider),
            Bound::AtLeast(0.9),
        ),
        (
            "client (unsealed) / provider cost, one_task",
            (OneTask, Client),
            (OneTask, Provider),
            Bound::AtMost(1.15),
        ),
        (
            "client (unsealed) / provider cost, four_consumers",
            (FourConsumers, Client),
            (FourConsumers, Provider),
            Bound::AtMost(1.15),
        ),
    ];
    for (label, a, b, bound) in ratio_goals {
        let ratio = results.median_of(a, b, |a, b| a / b);
        let (target, met) = match bound {
            Bound::AtLeast(least) => (format!(">= {least:.2}"), ratio >= least),
            Bound::AtMost(most) => (format!("<= {most:.2}"), ratio <= most),
        };
        goal(label, ratio, &target, met);
    }
    // The sealed goal is about one round trip (send + receive + complete of one message, as the
    // envelope bench seals and opens one), so it is read on the empty queue; one task's backlog
    // of 100,000 distinct ciphertexts (the unsealed contenders share one body) adds the heap
    // growth of holding them, shown beside it.
    for scenario in [Scenario::SteadyEmpty, Scenario::OneTask] {
        let (Some(sealed), Some(client)) = (
            results.get((scenario, Who::Sealed)),
            results.get((scenario, Who::Client)),
        ) else {
            continue;
        };
        if results.envelope.is_empty() {
            continue;
        }
        let mut added: Vec<f64> = sealed
            .iter()
            .zip(client)
            .zip(&results.envelope)
            .map(|((sealed, client), envelope)| (sealed - client - envelope) * 1e6)
            .collect();
        let over = median(&mut added);
        goal(
            &format!(
                "sealed - unsealed - envelope, µs per message ({})",
                scenario.name()
            ),
            over,
            "<= 1.0",
            over <= 1.0,
        );
    }
}

/// Criterion's view: one round trip (send + receive + complete, empty queue) per contender, and
/// the envelope's seal + open, each with its own statistics.
fn per_message(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let body = Bytes::from(vec![0x5A_u8; BODY_BYTES]);
    let mut group = c.benchmark_group("peers/round_trip_1KiB");
    group.throughput(Throughput::Elements(1));
    for who in Who::ALL {
        let side = rt.block_on(Side::new(who, 1_000_000));
        group.bench_function(who.name(), |b| {
            b.to_async(rt).iter(|| async {
                side.send(&body).await;
                side.take_one().await;
            });
        });
    }
    let keyset = keyset();
    let sealer = Sealer::new();
    let context = Context::new("bench").with_message_id("3f1e8d8a-8c55-4b1e-9f0e-0d4c3a2b1c00");
    group.bench_function("envelope_seal_open", |b| {
        b.iter(|| {
            let sealed = sealer.seal(&keyset, &body, &context).expect("sealed");
            queue_crypto::open(&keyset, &sealed, &context).expect("opened")
        });
    });
    group.finish();
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    // `cargo bench` passes `--bench`.
    let benchmarking = std::env::args().any(|arg| arg == "--bench");
    interleaved_rounds(&rt, benchmarking);
    if std::env::var("PEERS_CRITERION").as_deref() != Ok("0") {
        let mut criterion = Criterion::default()
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3))
            .configure_from_args();
        per_message(&mut criterion, &rt);
        criterion.final_summary();
    }
}
