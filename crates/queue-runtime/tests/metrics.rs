//! The metrics the secure client reports through the `metrics` facade.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use queue_runtime::core::QueueProvider;
use queue_runtime::crypto::KeyState;
use queue_runtime::memory::{MemoryConfig, MemoryProvider, QueueOptions};
use queue_runtime::prelude::*;
use queue_runtime::resilience::Resilience;
use support::*;

type Store = Arc<Mutex<BTreeMap<String, f64>>>;

/// Records every counter increment, gauge value and histogram sample count by
/// `name{label=value,...}` (labels sorted).
#[derive(Debug, Default, Clone)]
struct Recording(Store);

struct Handle {
    name: String,
    store: Store,
}

impl Handle {
    fn add(&self, amount: f64) {
        *self
            .store
            .lock()
            .unwrap()
            .entry(self.name.clone())
            .or_default() += amount;
    }
}

impl CounterFn for Handle {
    fn increment(&self, value: u64) {
        self.add(value as f64);
    }
    fn absolute(&self, value: u64) {
        self.store
            .lock()
            .unwrap()
            .insert(self.name.clone(), value as f64);
    }
}

impl GaugeFn for Handle {
    fn increment(&self, value: f64) {
        self.add(value);
    }
    fn decrement(&self, value: f64) {
        self.add(-value);
    }
    fn set(&self, value: f64) {
        self.store.lock().unwrap().insert(self.name.clone(), value);
    }
}

impl HistogramFn for Handle {
    fn record(&self, _value: f64) {
        self.add(1.0);
    }
}

impl Recording {
    fn handle(&self, key: &Key) -> Arc<Handle> {
        let mut labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        Arc::new(Handle {
            name: format!("{}{{{}}}", key.name(), labels.join(",")),
            store: Arc::clone(&self.0),
        })
    }

    fn value(&self, name: &str) -> f64 {
        self.0.lock().unwrap().get(name).copied().unwrap_or(0.0)
    }
}

impl Recorder for Recording {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.handle(key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.handle(key))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.handle(key))
    }
}

/// The recorder of this test binary (a global recorder can be set once per process; each test
/// uses its own queue names).
fn recording() -> &'static Recording {
    static RECORDING: OnceLock<Recording> = OnceLock::new();
    RECORDING.get_or_init(|| {
        let recording = Recording::default();
        metrics::set_global_recorder(recording.clone()).unwrap();
        recording
    })
}

#[tokio::test(start_paused = true)]
async fn sends_receives_refusals_and_durations_are_counted() {
    let recording = recording();

    let broker = broker();
    let client = client(&broker, keyset([key("k1", KeyState::Primary)]));
    let events = queue("events");
    for _ in 0..3 {
        client.send(&events, Message::new("sealed")).await.unwrap();
    }
    broker.send(&events, Message::new("forged")).await.unwrap();
    assert_eq!(drain(&client, "events").await.len(), 3);

    assert_eq!(
        recording.value("queue_messages_sent_total{encrypted=true,queue=events}"),
        3.0
    );
    assert_eq!(
        recording.value("queue_messages_received_total{encrypted=true,queue=events}"),
        3.0
    );
    assert_eq!(
        recording.value("queue_crypto_errors_total{error_type=unsealed,queue=events}"),
        1.0
    );
    assert_eq!(recording.value("queue_crypto_enabled{queue=events}"), 1.0);
    assert_eq!(
        recording.value("queue_crypto_seal_duration_seconds{queue=events}"),
        3.0
    );
    assert_eq!(
        recording.value("queue_crypto_open_duration_seconds{queue=events}"),
        3.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processor_outcomes_durations_renewals_in_flight_and_circuit_are_measured() {
    let recording = recording();
    let broker = Arc::new(MemoryProvider::new(MemoryConfig::default()));
    let measured = queue("measured");
    broker
        .create_queue(
            &measured,
            QueueOptions::default().with_lock_duration(Duration::from_millis(300)),
        )
        .unwrap();
    let client = QueueClient::new(broker.clone())
        .with_resilience(Resilience::default())
        .unwrap();
    client.send(&measured, Message::new("slow")).await.unwrap();
    client
        .send(&measured, Message::new("invalid"))
        .await
        .unwrap();

    let finished = Arc::new(AtomicUsize::new(0));
    let handler = {
        let finished = finished.clone();
        move |message: ReceivedMessage, _: HandlerContext| {
            let finished = finished.clone();
            async move {
                let outcome = if message.body().as_ref() == b"slow" {
                    tokio::time::sleep(Duration::from_millis(700)).await;
                    Outcome::Complete
                } else {
                    Outcome::dead_letter("invalid", "refused by the test")
                };
                finished.fetch_add(1, Ordering::SeqCst);
                outcome
            }
        }
    };
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(Processor::new(client, measured, handler).run(shutdown.clone()));
    let started = Instant::now();
    while finished.load(Ordering::SeqCst) < 2 && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shutdown.cancel();
    running.await.unwrap().unwrap();

    let processed = |outcome: &str| {
        recording.value(&format!(
            "queue_processor_messages_total{{outcome={outcome},queue=measured}}"
        ))
    };
    assert_eq!(processed("completed"), 1.0);
    assert_eq!(processed("dead_lettered"), 1.0);
    assert_eq!(
        recording.value("queue_processor_dead_lettered_total{queue=measured,reason=invalid}"),
        1.0
    );
    assert_eq!(
        recording.value("queue_processor_handler_duration_seconds{queue=measured}"),
        2.0
    );
    assert!(
        recording.value("queue_processor_lock_renewals_total{queue=measured,result=ok}") >= 1.0
    );
    assert_eq!(
        recording.value("queue_processor_in_flight{queue=measured}"),
        0.0
    );
    assert_eq!(recording.value("queue_circuit_state{provider=memory}"), 0.0);
}
