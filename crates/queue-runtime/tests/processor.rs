//! The processor over the embedded broker: order per session with sessions in parallel, lock
//! renewal, poison messages, panics, retries with delay (native and held), graceful shutdown,
//! the circuit breaker, and dead-letter replay of sealed messages.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use queue_runtime::core::{
    AcceptSessionOptions, Capabilities, DeadLetterReason, ErrorKind, PeekOptions, PeekedMessage,
    QueueProvider, Receipt, ReceiveOptions, SendOutcome, SessionReceiver,
};
use queue_runtime::dead_letters::DeadLetterFilter;
use queue_runtime::memory::{MemoryConfig, MemoryProvider, QueueOptions};
use queue_runtime::prelude::*;
use queue_runtime::resilience::{CircuitSettings, CircuitState, Resilience, RetryPolicy};
use support::{key, keyset};

fn queue(name: &str) -> QueueName {
    QueueName::new(name).unwrap()
}

/// A broker with one queue `work` (or a session queue, with `sessions`) and these lock and
/// delivery limits.
fn broker_with(sessions: bool, lock: Duration, max_deliveries: u32) -> Arc<MemoryProvider> {
    let broker = Arc::new(MemoryProvider::new(
        MemoryConfig::default().with_auto_create_queues(false),
    ));
    let options = QueueOptions::default()
        .with_sessions(sessions)
        .with_lock_duration(lock)
        .with_session_lock_duration(lock)
        .with_max_delivery_count(max_deliveries);
    broker.create_queue(&queue("work"), options).unwrap();
    broker
}

fn sealing_client(provider: Arc<dyn QueueProvider>) -> QueueClient {
    let keys = keyset([key(
        "processor-test",
        queue_runtime::crypto::KeyState::Primary,
    )]);
    QueueClient::new(provider).with_security(Security::new(queue_runtime::keys::KeyRing::new(
        Arc::new(queue_runtime::keys::StaticKeys::new(keys)),
    )))
}

fn body(message: &ReceivedMessage) -> String {
    String::from_utf8(message.body().to_vec()).unwrap()
}

/// Starts `processor`, waits until `done` says so (or 60 s pass), shuts it down, and returns its
/// report with the time the shutdown took.
async fn run_until(processor: Processor, done: impl Fn() -> bool) -> (ProcessorReport, Duration) {
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(processor.run(shutdown.clone()));
    let started = Instant::now();
    while !done() && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stopping = Instant::now();
    shutdown.cancel();
    let report = running.await.unwrap().unwrap();
    (report, stopping.elapsed())
}

/// A few milliseconds, at random.
fn random_few_ms() -> Duration {
    Duration::from_millis(1 + u64::from(uuid::Uuid::new_v4().as_bytes()[0] % 4))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_sessions_of_five_hundred_stay_in_order_and_run_in_parallel() {
    const SESSIONS: usize = 20;
    const PER_SESSION: usize = 500;
    let broker = broker_with(true, Duration::from_secs(30), 10);
    let client = sealing_client(broker.clone());
    let work = queue("work");
    for index in 0..PER_SESSION {
        let batch = (0..SESSIONS)
            .map(|session| {
                Message::builder(format!("{index}"))
                    .session_id(format!("octo/repo-{session}"))
                    .build()
                    .unwrap()
            })
            .collect();
        for outcome in client.send_batch(&work, batch).await.unwrap() {
            outcome.unwrap();
        }
    }

    let seen: Arc<Mutex<HashMap<String, Vec<usize>>>> = Arc::default();
    let slept = Arc::new(Mutex::new(Duration::ZERO));
    let handled = Arc::new(AtomicUsize::new(0));
    let handler = {
        let (seen, slept, handled) = (seen.clone(), slept.clone(), handled.clone());
        move |message: ReceivedMessage, _: HandlerContext| {
            let (seen, slept, handled) = (seen.clone(), slept.clone(), handled.clone());
            async move {
                assert!(message.delivery.seal.is_some(), "opened and authenticated");
                let nap = random_few_ms();
                tokio::time::sleep(nap).await;
                *slept.lock().unwrap() += nap;
                seen.lock()
                    .unwrap()
                    .entry(message.session_id().unwrap().as_str().to_owned())
                    .or_default()
                    .push(body(&message).parse().unwrap());
                handled.fetch_add(1, Ordering::SeqCst);
                Outcome::Complete
            }
        }
    };
    let started = Instant::now();
    let processor = Processor::new(client.clone(), work.clone(), handler).with_options(
        ProcessorOptions::default()
            .with_sessions(true)
            .with_max_concurrency(SESSIONS),
    );
    let (report, _) = run_until(processor, || {
        handled.load(Ordering::SeqCst) >= SESSIONS * PER_SESSION
    })
    .await;
    let wall = started.elapsed();

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), SESSIONS);
    for (session, order) in seen.iter() {
        assert_eq!(*order, (0..PER_SESSION).collect::<Vec<_>>(), "{session}");
    }
    assert_eq!(
        report.completed,
        (SESSIONS * PER_SESSION) as u64,
        "{report:?}"
    );
    assert_eq!(report.retried + report.lock_lost + report.settle_failed, 0);
    let serial = *slept.lock().unwrap();
    eprintln!("wall {wall:?} against a serial sum of handler sleeps of {serial:?}");
    assert!(wall < serial / 4, "wall {wall:?}, serial {serial:?}");
    assert!(broker_is_empty(&broker).await);
}

async fn broker_is_empty(broker: &Arc<MemoryProvider>) -> bool {
    broker
        .peek(&queue("work"), PeekOptions::new(1))
        .await
        .unwrap()
        .is_empty()
}

/// A handler that counts its calls per body, sleeps `nap`, counts its finishes and completes.
#[derive(Clone, Default)]
struct Sleeper {
    nap: Duration,
    calls: Arc<Mutex<BTreeMap<String, u32>>>,
    finished: Arc<AtomicUsize>,
}

#[async_trait]
impl queue_runtime::processor::Handler for Sleeper {
    async fn handle(&self, message: ReceivedMessage, _: HandlerContext) -> Outcome {
        *self
            .calls
            .lock()
            .unwrap()
            .entry(body(&message))
            .or_default() += 1;
        tokio::time::sleep(self.nap).await;
        self.finished.fetch_add(1, Ordering::SeqCst);
        Outcome::Complete
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_slower_than_the_lock_keeps_it_and_runs_once() {
    for sessions in [false, true] {
        let broker = broker_with(sessions, Duration::from_millis(300), 10);
        let client = QueueClient::new(broker.clone());
        let mut message = Message::builder("slow");
        if sessions {
            message = message.session_id("s-1");
        }
        client
            .send(&queue("work"), message.build().unwrap())
            .await
            .unwrap();
        let sleeper = Sleeper {
            nap: Duration::from_millis(1500),
            ..Sleeper::default()
        };
        let processor = Processor::new(client, queue("work"), sleeper.clone()).with_options(
            ProcessorOptions::default()
                .with_sessions(sessions)
                .with_max_concurrency(2),
        );
        let (report, _) =
            run_until(processor, || sleeper.finished.load(Ordering::SeqCst) >= 1).await;
        assert_eq!(
            sleeper.calls.lock().unwrap().get("slow"),
            Some(&1),
            "sessions: {sessions}"
        );
        assert_eq!(report.completed, 1, "sessions: {sessions}: {report:?}");
        assert_eq!(report.lock_lost, 0, "sessions: {sessions}: {report:?}");
        assert!(broker_is_empty(&broker).await, "sessions: {sessions}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_is_dead_lettered_after_the_maximum_deliveries_unseen_by_the_handler() {
    // The broker would allow 100 deliveries; the processor's limit is 3.
    let broker = broker_with(false, Duration::from_secs(30), 100);
    let client = QueueClient::new(broker.clone());
    let work = queue("work");
    client.send(&work, Message::new("poison")).await.unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let handler = {
        let calls = calls.clone();
        move |_: ReceivedMessage, _: HandlerContext| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Outcome::retry() }
        }
    };
    let processor = Processor::new(client.clone(), work.clone(), handler)
        .with_options(ProcessorOptions::default().with_max_delivery_count(3));
    let dead = async || {
        broker
            .peek(&work, PeekOptions::new(10).dead_letter())
            .await
            .unwrap()
    };
    let (report, _) = run_until(processor, || calls.load(Ordering::SeqCst) >= 3).await;
    let mut dead_letters = dead().await;
    for _ in 0..100 {
        if !dead_letters.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        dead_letters = dead().await;
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "the fourth delivery never reached the handler"
    );
    assert_eq!(report.poison, 1, "{report:?}");
    assert_eq!(report.retried, 3, "{report:?}");
    let reason = dead_letters[0].delivery.dead_letter.clone().unwrap();
    assert_eq!(reason.reason, DeadLetterReason::MAX_DELIVERY_COUNT_EXCEEDED);
    assert!(
        reason.description.contains("delivered 4 times"),
        "{}",
        reason.description
    );
}

/// A provider that forwards to the embedded broker, but fails its receives on demand (as a
/// broken connection would) and can hide the broker's delayed abandon (as Service Bus lacks it).
#[derive(Debug)]
struct OnDemand {
    inner: Arc<MemoryProvider>,
    capabilities: Capabilities,
    failing: AtomicBool,
    receives: AtomicU32,
}

impl OnDemand {
    fn new(inner: Arc<MemoryProvider>, abandon_with_delay: bool) -> Arc<Self> {
        let mut capabilities = inner.capabilities().clone();
        capabilities.abandon_with_delay = abandon_with_delay;
        Arc::new(OnDemand {
            inner,
            capabilities,
            failing: AtomicBool::new(false),
            receives: AtomicU32::new(0),
        })
    }
}

#[async_trait]
impl QueueProvider for OnDemand {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn messaging_system(&self) -> &'static str {
        self.inner.messaging_system()
    }
    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }
    fn validate_queue_name(&self, queue: &QueueName) -> queue_runtime::core::Result<()> {
        self.inner.validate_queue_name(queue)
    }
    async fn send(
        &self,
        queue: &QueueName,
        message: Message,
    ) -> queue_runtime::core::Result<SendOutcome> {
        self.inner.send(queue, message).await
    }
    async fn send_batch(
        &self,
        queue: &QueueName,
        messages: Vec<Message>,
    ) -> queue_runtime::core::Result<Vec<queue_runtime::core::Result<SendOutcome>>> {
        self.inner.send_batch(queue, messages).await
    }
    async fn receive(
        &self,
        queue: &QueueName,
        options: ReceiveOptions,
    ) -> queue_runtime::core::Result<Vec<ReceivedMessage>> {
        self.receives.fetch_add(1, Ordering::SeqCst);
        if self.failing.load(Ordering::SeqCst) {
            return Err(QueueError::new(
                ErrorKind::Connection,
                "connection reset (on demand)",
            ));
        }
        self.inner.receive(queue, options).await
    }
    async fn peek(
        &self,
        queue: &QueueName,
        options: PeekOptions,
    ) -> queue_runtime::core::Result<Vec<PeekedMessage>> {
        self.inner.peek(queue, options).await
    }
    async fn complete(&self, receipt: &Receipt) -> queue_runtime::core::Result<()> {
        self.inner.complete(receipt).await
    }
    async fn abandon(
        &self,
        receipt: &Receipt,
        delay: Option<Duration>,
    ) -> queue_runtime::core::Result<()> {
        if delay.is_some() && !self.capabilities.abandon_with_delay {
            return Err(QueueError::unsupported("on-demand", "abandon with a delay"));
        }
        self.inner.abandon(receipt, delay).await
    }
    async fn dead_letter(
        &self,
        receipt: &Receipt,
        reason: DeadLetterReason,
    ) -> queue_runtime::core::Result<()> {
        self.inner.dead_letter(receipt, reason).await
    }
    async fn renew_lock(&self, receipt: &Receipt) -> queue_runtime::core::Result<SystemTime> {
        self.inner.renew_lock(receipt).await
    }
    async fn accept_session(
        &self,
        queue: &QueueName,
        options: AcceptSessionOptions,
    ) -> queue_runtime::core::Result<Option<Box<dyn SessionReceiver>>> {
        self.inner.accept_session(queue, options).await
    }
    async fn cancel_scheduled(
        &self,
        queue: &QueueName,
        sequence_number: u64,
    ) -> queue_runtime::core::Result<()> {
        self.inner.cancel_scheduled(queue, sequence_number).await
    }
    async fn close(&self) -> queue_runtime::core::Result<()> {
        self.inner.close().await
    }
}

/// A stopping processor takes nothing more: once shutdown is asked, it finishes the receive in
/// flight and starts no other (each would wait up to `receive_wait`, and whatever it took would
/// be given straight back, a delivery counted for nothing). Twenty stops, each counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_processor_starts_no_more_receives() {
    let broker = broker_with(false, Duration::from_secs(30), 10);
    let provider = OnDemand::new(broker, true);
    let client = QueueClient::new(provider.clone());
    let mut started_after_stop = 0;
    for _ in 0..20 {
        let processor = Processor::new(
            client.clone(),
            queue("work"),
            |_: ReceivedMessage, _: HandlerContext| async { Outcome::Complete },
        )
        .with_options(
            ProcessorOptions::default()
                .with_max_concurrency(4)
                .with_receive_wait(Duration::from_millis(30)),
        );
        let shutdown = CancellationToken::new();
        let running = tokio::spawn(processor.run(shutdown.clone()));
        tokio::time::sleep(Duration::from_millis(45)).await;
        shutdown.cancel();
        let at_stop = provider.receives.load(Ordering::SeqCst);
        running.await.unwrap().unwrap();
        started_after_stop += provider.receives.load(Ordering::SeqCst) - at_stop;
    }
    // At most a receive that began in the instant between the loop's check and the stop, now
    // and then; an unbiased choice between "a slot is free" and "stop" made about one per stop.
    assert!(
        started_after_stop <= 2,
        "{started_after_stop} receives started after 20 stops"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_does_not_stop_the_processor() {
    let broker = broker_with(false, Duration::from_secs(30), 10);
    let client = QueueClient::new(broker.clone());
    let work = queue("work");
    for body in ["a", "boom", "b", "c"] {
        client.send(&work, Message::new(body)).await.unwrap();
    }
    let completed: Arc<Mutex<Vec<String>>> = Arc::default();
    let handler = {
        let completed = completed.clone();
        move |message: ReceivedMessage, _: HandlerContext| {
            let completed = completed.clone();
            async move {
                if body(&message) == "boom" && message.delivery_count() == 1 {
                    panic!("the handler blew up");
                }
                completed.lock().unwrap().push(body(&message));
                Outcome::Complete
            }
        }
    };
    let processor = Processor::new(client, work, handler);
    let (report, _) = run_until(processor, || completed.lock().unwrap().len() >= 4).await;
    let mut completed = completed.lock().unwrap().clone();
    completed.sort();
    assert_eq!(completed, ["a", "b", "boom", "c"]);
    assert_eq!(
        (report.panicked, report.retried, report.completed),
        (1, 1, 4),
        "{report:?}"
    );
}

/// Retry with a delay: natively on the embedded broker, and held by the processor where the
/// provider cannot delay (as on Service Bus). Either way the next delivery comes after the delay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_with_delay_redelivers_after_the_delay() {
    for native in [true, false] {
        let broker = broker_with(false, Duration::from_millis(400), 10);
        let provider = OnDemand::new(broker.clone(), native);
        let client = QueueClient::new(provider);
        let work = queue("work");
        client.send(&work, Message::new("later")).await.unwrap();
        let deliveries: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let handler = {
            let deliveries = deliveries.clone();
            move |message: ReceivedMessage, _: HandlerContext| {
                deliveries.lock().unwrap().push(Instant::now());
                async move {
                    if message.delivery_count() == 1 {
                        Outcome::retry_after(Duration::from_millis(900))
                    } else {
                        Outcome::Complete
                    }
                }
            }
        };
        let processor = Processor::new(client, work, handler);
        let (report, _) = run_until(processor, || deliveries.lock().unwrap().len() >= 2).await;
        let deliveries = deliveries.lock().unwrap();
        let gap = deliveries[1] - deliveries[0];
        assert!(
            gap >= Duration::from_millis(900),
            "native {native}: {gap:?}"
        );
        assert_eq!(
            (report.retried, report.completed),
            (1, 1),
            "native {native}: {report:?}"
        );
        // Held past its 400 ms lock without losing it: the lock was renewed meanwhile.
        assert_eq!(report.lock_lost, 0, "native {native}: {report:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_mid_flight_stops_within_the_deadline_and_loses_nothing() {
    const COUNT: usize = 200;
    let broker = broker_with(false, Duration::from_secs(30), 10);
    let client = QueueClient::new(broker.clone());
    let work = queue("work");
    for index in 0..COUNT {
        client
            .send(&work, Message::new(format!("{index}")))
            .await
            .unwrap();
    }
    let completed: Arc<Mutex<Vec<String>>> = Arc::default();
    let handler = |completed: Arc<Mutex<Vec<String>>>, stuck: bool| {
        move |message: ReceivedMessage, _: HandlerContext| {
            let completed = completed.clone();
            async move {
                // Message 7 hangs in the first processor: shutdown must not wait for it.
                let nap = if stuck && body(&message) == "7" {
                    3_600_000
                } else {
                    20
                };
                tokio::time::sleep(Duration::from_millis(nap)).await;
                completed.lock().unwrap().push(body(&message));
                Outcome::Complete
            }
        }
    };
    let options = ProcessorOptions::default()
        .with_max_concurrency(8)
        .with_shutdown_deadline(Duration::from_millis(500));
    let first = Processor::new(
        client.clone(),
        work.clone(),
        handler(completed.clone(), true),
    )
    .with_options(options.clone());
    let (first_report, stopping) =
        run_until(first, || completed.lock().unwrap().len() >= COUNT / 4).await;
    // The receive in progress (up to 1 s) plus the deadline, with room for a slow machine.
    assert!(
        stopping < Duration::from_secs(3),
        "shutdown took {stopping:?}"
    );
    assert_eq!(first_report.abandoned_at_shutdown, 1, "{first_report:?}");
    let after_first = completed.lock().unwrap().len();
    assert!(
        after_first < COUNT,
        "the first processor finished everything"
    );

    let second =
        Processor::new(client, work, handler(completed.clone(), false)).with_options(options);
    let (second_report, _) = run_until(second, || completed.lock().unwrap().len() >= COUNT).await;
    let completed = completed.lock().unwrap().clone();
    let mut unique = completed.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(completed.len(), COUNT, "every message handled exactly once");
    assert_eq!(unique.len(), COUNT);
    assert_eq!(
        first_report.completed + second_report.completed,
        COUNT as u64,
        "{first_report:?} {second_report:?}"
    );
    assert!(broker_is_empty(&broker).await);
}

/// A client over `provider` without retries, with a breaker of these settings.
fn breaker_client(
    provider: &Arc<OnDemand>,
    failure_threshold: u32,
    open_for: Duration,
    success_threshold: u32,
) -> QueueClient {
    let circuit = CircuitSettings {
        failure_threshold,
        open_for,
        success_threshold,
    };
    QueueClient::new(provider.clone())
        .with_resilience(
            Resilience::default()
                .with_retry(RetryPolicy::none())
                .with_circuit(circuit),
        )
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_circuit_breaker_opens_fails_fast_half_opens_and_closes() {
    let broker = broker_with(false, Duration::from_secs(30), 10);
    let provider = OnDemand::new(broker.clone(), true);
    let client = breaker_client(&provider, 5, Duration::from_millis(300), 3);
    let work = queue("work");
    assert_eq!(client.circuit_state(), Some(CircuitState::Closed));

    provider.failing.store(true, Ordering::SeqCst);
    for _ in 0..5 {
        let error = client.receive(&work, 1, Duration::ZERO).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Connection);
    }
    assert_eq!(client.circuit_state(), Some(CircuitState::Open));
    let error = client.receive(&work, 1, Duration::ZERO).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::CircuitOpen);
    assert!(error.retry_after().is_some());
    assert_eq!(
        provider.receives.load(Ordering::SeqCst),
        5,
        "failed fast: the provider was not called"
    );

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(client.circuit_state(), Some(CircuitState::HalfOpen));
    provider.failing.store(false, Ordering::SeqCst);
    for _ in 0..3 {
        client.receive(&work, 1, Duration::ZERO).await.unwrap();
    }
    assert_eq!(client.circuit_state(), Some(CircuitState::Closed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_processor_rides_out_an_open_circuit() {
    let broker = broker_with(false, Duration::from_secs(30), 10);
    let provider = OnDemand::new(broker.clone(), true);
    let client = breaker_client(&provider, 2, Duration::from_millis(200), 1);
    let work = queue("work");
    client
        .send(&work, Message::new("after the outage"))
        .await
        .unwrap();
    provider.failing.store(true, Ordering::SeqCst);
    let (sleeper, processor) = {
        let sleeper = Sleeper::default();
        (
            sleeper.clone(),
            Processor::new(client.clone(), work, sleeper),
        )
    };
    let outage = tokio::spawn({
        let provider = provider.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(700)).await;
            provider.failing.store(false, Ordering::SeqCst);
        }
    });
    let (report, _) = run_until(processor, || sleeper.finished.load(Ordering::SeqCst) >= 1).await;
    outage.await.unwrap();
    assert_eq!(report.completed, 1, "{report:?}");
    assert_eq!(client.circuit_state(), Some(CircuitState::Closed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_dead_letters_are_sealed_anew_and_pass_the_replay_guard() {
    let broker = broker_with(false, Duration::from_secs(30), 10);
    let client = sealing_client(broker.clone());
    let work = queue("work");
    for body in ["ok-1", "bad-1", "bad-2", "ok-2"] {
        client
            .send(
                &work,
                Message::builder(body)
                    .correlation_id(format!("c-{body}"))
                    .build()
                    .unwrap(),
            )
            .await
            .unwrap();
    }
    // First pass: the handler refuses the "bad" ones.
    let handled: Arc<Mutex<Vec<ReceivedMessage>>> = Arc::default();
    let refusing = {
        let handled = handled.clone();
        move |message: ReceivedMessage, _: HandlerContext| {
            let handled = handled.clone();
            async move {
                let refuse = body(&message).starts_with("bad");
                handled.lock().unwrap().push(message);
                if refuse {
                    Outcome::dead_letter("invalid-order", "the order failed validation")
                } else {
                    Outcome::Complete
                }
            }
        }
    };
    let (report, _) = run_until(
        Processor::new(client.clone(), work.clone(), refusing),
        || handled.lock().unwrap().len() >= 4,
    )
    .await;
    assert_eq!(
        (report.completed, report.dead_lettered),
        (2, 2),
        "{report:?}"
    );

    let dead_letters = client.dead_letters(&work);
    let listed = dead_letters.list(10).await.unwrap();
    assert_eq!(listed.len(), 2);
    for dead in &listed {
        assert_eq!(dead.reason.as_deref(), Some("invalid-order"));
        assert!(dead.is_authenticated(), "opened with our keys");
        assert!(String::from_utf8_lossy(dead.message.body()).starts_with("bad"));
        assert!(dead.age < Duration::from_secs(60));
    }

    let replay = dead_letters
        .replay(&DeadLetterFilter::all().with_reason("invalid-order"))
        .await
        .unwrap();
    assert_eq!(replay.replayed.len(), 2, "{replay:?}");
    assert!(
        replay.skipped.is_empty() && replay.not_removed.is_empty(),
        "{replay:?}"
    );
    assert!(
        dead_letters.list(10).await.unwrap().is_empty(),
        "the dead-letter copies are gone"
    );

    // Second pass: the replayed copies open, pass freshness and the replay guard.
    let original_seals: HashMap<String, SystemTime> = handled
        .lock()
        .unwrap()
        .iter()
        .map(|m| (body(m), m.delivery.seal.as_ref().unwrap().sealed_at))
        .collect();
    handled.lock().unwrap().clear();
    let accepting = {
        let handled = handled.clone();
        move |message: ReceivedMessage, _: HandlerContext| {
            handled.lock().unwrap().push(message);
            async { Outcome::Complete }
        }
    };
    let (report, _) = run_until(
        Processor::new(client.clone(), work.clone(), accepting),
        || handled.lock().unwrap().len() >= 2,
    )
    .await;
    assert_eq!(report.completed, 2, "{report:?}");
    let handled = handled.lock().unwrap().clone();
    for message in handled.iter() {
        let name = body(message);
        let seal = message.delivery.seal.as_ref().expect("sealed anew");
        assert!(seal.sealed_at >= original_seals[&name], "{name}");
        assert!(
            replay
                .replayed
                .iter()
                .any(|(_, new)| new == message.message_id())
        );
        assert_eq!(
            message.message.correlation_id(),
            Some(format!("c-{name}").as_str())
        );
    }
    assert!(
        dead_letters.list(10).await.unwrap().is_empty(),
        "nothing refused by the guard"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_purged_by_filter_and_forgeries_are_never_replayed() {
    let broker = broker_with(false, Duration::from_secs(30), 10);
    let client = sealing_client(broker.clone());
    let work = queue("work");
    // A forgery: plaintext put straight into the queue, refused and dead-lettered by the client.
    broker.send(&work, Message::new("forged")).await.unwrap();
    client.send(&work, Message::new("real")).await.unwrap();
    let received = client
        .receive(&work, 10, Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(received.len(), 1, "the forgery was refused");
    client
        .dead_letter(&received[0], "manual", "kept for the test")
        .await
        .unwrap();

    let dead_letters = client.dead_letters(&work);
    let replay = dead_letters.replay(&DeadLetterFilter::all()).await.unwrap();
    assert_eq!(replay.replayed.len(), 1, "{replay:?}");
    assert_eq!(replay.skipped.len(), 1, "the forgery stays: {replay:?}");
    assert!(replay.skipped[0].1.contains("not authenticated"));

    let listed = dead_letters.list(10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(!listed[0].is_authenticated());
    let purge = dead_letters
        .purge(&DeadLetterFilter::all().with_reason("no such reason"))
        .await
        .unwrap();
    assert!(purge.purged.is_empty());
    let purge = dead_letters
        .purge(&DeadLetterFilter::all().with_message_ids([listed[0].message.message_id().clone()]))
        .await
        .unwrap();
    assert_eq!(purge.purged.len(), 1);
    assert!(dead_letters.list(10).await.unwrap().is_empty());
}

#[test]
fn client_processor_and_dead_letter_futures_can_be_spawned() {
    fn spawnable<T: Send + 'static>(_: &T) {}
    let client = QueueClient::memory();
    let dead_letters = client.dead_letters(&queue("work"));
    let filter = DeadLetterFilter::all();
    let (list, replay, purge) = (
        dead_letters.list(1),
        dead_letters.replay(&filter),
        dead_letters.purge(&filter),
    );
    fn send<T: Send>(_: &T) {}
    send(&list);
    send(&replay);
    send(&purge);
    let work = queue("work");
    send(&client.peek(&work, PeekOptions::new(1)));
    send(&client.receive_dead_letters(&work, 1, Duration::ZERO));
    send(&client.receive(&work, 1, Duration::ZERO));
    send(&client.send(&work, Message::new("x")));
    let processor = Processor::new(client.clone(), work.clone(), Sleeper::default());
    spawnable(&processor.run(CancellationToken::new()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_message_does_not_drag_the_ones_behind_it_into_the_dead_letter_queue() {
    // The broker dead-letters after 3 deliveries; the poison message heads its session.
    let broker = broker_with(true, Duration::from_secs(30), 3);
    let client = QueueClient::new(broker.clone());
    let work = queue("work");
    for body in ["poison", "after-1", "after-2"] {
        let message = Message::builder(body).session_id("s-1").build().unwrap();
        client.send(&work, message).await.unwrap();
    }
    let completed: Arc<Mutex<Vec<String>>> = Arc::default();
    let handler = {
        let completed = completed.clone();
        move |message: ReceivedMessage, _: HandlerContext| {
            let completed = completed.clone();
            async move {
                if body(&message) == "poison" {
                    return Outcome::retry();
                }
                completed.lock().unwrap().push(body(&message));
                Outcome::Complete
            }
        }
    };
    let processor = Processor::new(client, work.clone(), handler)
        .with_options(ProcessorOptions::default().with_sessions(true));
    let (report, _) = run_until(processor, || completed.lock().unwrap().len() >= 2).await;
    assert_eq!(*completed.lock().unwrap(), ["after-1", "after-2"]);
    assert_eq!((report.retried, report.completed), (3, 2), "{report:?}");
    let dead = broker
        .peek(&work, PeekOptions::new(10).dead_letter())
        .await
        .unwrap();
    let dead: Vec<String> = dead
        .iter()
        .map(|m| String::from_utf8_lossy(m.message.body()).into_owned())
        .collect();
    assert_eq!(dead, ["poison"]);
}
