//! Trace context through a message (the `opentelemetry` feature): the consumer's process span
//! links to the producer's send span, across a sealed message, and both carry the OpenTelemetry
//! messaging attributes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../crates/queue-runtime/tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use queue_runtime::crypto::KeyState;
use queue_runtime::prelude::*;
use queue_runtime::telemetry::TRACEPARENT_PROPERTY;
use support::{broker, client, key, keyset};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

// One thread, so the thread-local subscriber sees the processor's tasks too.
#[tokio::test(flavor = "current_thread")]
async fn the_consumer_span_links_to_the_producer_span_through_a_sealed_message() {
    let exporter = InMemorySpanExporter::default();
    let tracer_provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(tracer_provider.tracer("test")));
    let _default = tracing::subscriber::set_default(subscriber);

    let broker = broker();
    let client = client(&broker, keyset([key("trace-key", KeyState::Primary)]));
    let events = QueueName::new("events").unwrap();
    client
        .send(&events, Message::new("traced"))
        .instrument(tracing::info_span!("webhook"))
        .await
        .unwrap();

    let carried = Arc::new(std::sync::Mutex::new(None));
    let handled = Arc::new(AtomicUsize::new(0));
    let handler = {
        let (carried, handled) = (carried.clone(), handled.clone());
        move |message: ReceivedMessage, _: HandlerContext| {
            *carried.lock().unwrap() = message
                .message
                .properties()
                .get(TRACEPARENT_PROPERTY)
                .map(str::to_owned);
            handled.fetch_add(1, Ordering::SeqCst);
            async { Outcome::Complete }
        }
    };
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(Processor::new(client, events, handler).run(shutdown.clone()));
    let started = Instant::now();
    while handled.load(Ordering::SeqCst) == 0 && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shutdown.cancel();
    running.await.unwrap().unwrap();
    tracer_provider.force_flush().unwrap();

    let spans = exporter.get_finished_spans().unwrap();
    let named = |name: &str| {
        spans
            .iter()
            .find(|span| span.name == name)
            .unwrap_or_else(|| {
                panic!(
                    "no span {name}: {:?}",
                    spans.iter().map(|s| &s.name).collect::<Vec<_>>()
                )
            })
    };
    let send = named("send events");
    let process = named("process events");
    assert!(
        process
            .links
            .links
            .iter()
            .any(
                |link| link.span_context.span_id() == send.span_context.span_id()
                    && link.span_context.trace_id() == send.span_context.trace_id()
            ),
        "the process span links to the send span"
    );
    let traceparent = carried
        .lock()
        .unwrap()
        .clone()
        .expect("traceparent carried");
    assert!(
        traceparent.contains(&send.span_context.span_id().to_string()),
        "{traceparent}"
    );
    for span in [send, process] {
        assert_eq!(
            attribute(span, "messaging.system").as_deref(),
            Some("queue_runtime_memory")
        );
        assert_eq!(
            attribute(span, "messaging.destination.name").as_deref(),
            Some("events")
        );
    }
    assert_eq!(
        attribute(send, "messaging.operation.type").as_deref(),
        Some("send")
    );
    assert_eq!(
        attribute(process, "messaging.operation.type").as_deref(),
        Some("process")
    );
    assert!(attribute(process, "messaging.message.id").is_some());
}
