//! The metrics the secure client reports through the `metrics` facade.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use queue_runtime::core::QueueProvider;
use queue_runtime::crypto::KeyState;
use queue_runtime::prelude::*;
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

#[tokio::test(start_paused = true)]
async fn sends_receives_refusals_and_durations_are_counted() {
    let recording = Recording::default();
    metrics::set_global_recorder(recording.clone()).unwrap();

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
