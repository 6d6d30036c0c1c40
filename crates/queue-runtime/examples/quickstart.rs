//! A small pull-request bot on the embedded broker.
//!
//! Events of three pull requests arrive interleaved on one session queue, one session per pull
//! request. A processor holding two sessions at a time handles each pull request's events
//! strictly in order. One event is poison: its handler always asks for a retry, so it is given
//! back until the broker dead-letters it after its third delivery. The bot then lists the
//! dead-letter queue, prints a summary, and purges it; it exits with an error if any check fails.
//!
//! Run it with `cargo run --example quickstart`.

// The summary is this program's output.
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::error::Error;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use queue_runtime::prelude::*;

const CONFIG: &str = r#"
provider = "memory"

[[memory.queues]]
name = "pr-events"
sessions = true
lock_duration = "5s"
max_delivery_count = 3
"#;

const PULL_REQUESTS: [&str; 3] = ["pr-101", "pr-102", "pr-103"];
const EVENTS: [&str; 4] = ["opened", "synchronize", "review_requested", "closed"];
const POISON: &str = "{ not json";

type Handled = Arc<Mutex<BTreeMap<String, Vec<String>>>>;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::INFO)
        .init();

    let client = QueueClient::connect(&ClientConfig::from_toml_str(CONFIG)?).await?;
    let queue = QueueName::new("pr-events")?;

    // Interleaved, as webhooks arrive: every pull request's first event, then every second one...
    for (step, event) in EVENTS.iter().enumerate() {
        for pull_request in PULL_REQUESTS {
            let message = Message::builder(format!("{pull_request}:{event}"))
                .session_id(pull_request)
                .content_type("text/plain")
                .property("event", *event)
                .build()?;
            client.send(&queue, message).await?;
        }
        if step == 1 {
            let poison = Message::builder(POISON)
                .session_id("pr-102")
                .message_id("poison-event")
                .build()?;
            client.send(&queue, poison).await?;
        }
    }

    let handled: Handled = Arc::default();
    let handler = {
        let handled = handled.clone();
        move |message: ReceivedMessage, _: HandlerContext| {
            let handled = handled.clone();
            async move {
                match handle(&message) {
                    Ok(event) => {
                        if let (Ok(mut handled), Some(session)) =
                            (handled.lock(), message.session_id())
                        {
                            handled.entry(session.to_string()).or_default().push(event);
                        }
                        Outcome::Complete
                    }
                    // Given back, it comes first again: everything behind it waits, so order is
                    // kept; after its third delivery the broker dead-letters it.
                    Err(why) => {
                        tracing::warn!(message_id = %message.message_id(), why, "handler failed");
                        Outcome::retry()
                    }
                }
            }
        }
    };
    let options = ProcessorOptions::default()
        .with_sessions(true)
        .with_max_concurrency(2);
    let shutdown = CancellationToken::new();
    let processor = Processor::new(client.clone(), queue.clone(), handler).with_options(options);
    let running = tokio::spawn(processor.run(shutdown.clone()));

    // Stop once every event is handled and the poison event is dead-lettered (or after 30 s).
    let dead_letters = client.dead_letters(&queue);
    let all_events = PULL_REQUESTS.len() * EVENTS.len();
    let mut dead = Vec::new();
    for _ in 0..300 {
        let handled_count: usize = handled
            .lock()
            .map_err(|_| "a handler panicked")?
            .values()
            .map(Vec::len)
            .sum();
        dead = dead_letters.list(10).await?;
        if handled_count == all_events && !dead.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.cancel();
    let report = running.await??;

    println!("Handled, per pull request, in order:");
    let handled = handled.lock().map_err(|_| "a handler panicked")?.clone();
    for (pull_request, events) in &handled {
        println!("  {pull_request}: {}", events.join(" -> "));
    }
    println!("Dead-lettered:");
    for dead_letter in &dead {
        println!(
            "  {} in {}: {} ({})",
            dead_letter.message.message_id(),
            dead_letter
                .message
                .session_id()
                .map_or("-", SessionId::as_str),
            dead_letter.reason.as_deref().unwrap_or("(none)"),
            dead_letter.description.as_deref().unwrap_or("")
        );
    }
    println!(
        "Processor: {} completed, {} retried.",
        report.completed, report.retried
    );
    dead_letters
        .purge(&queue_runtime::dead_letters::DeadLetterFilter::all())
        .await?;

    // The checks that make this example a test of its own.
    let expected: Vec<String> = EVENTS.iter().map(|event| event.to_string()).collect();
    for pull_request in PULL_REQUESTS {
        if handled.get(pull_request) != Some(&expected) {
            return Err(format!("{pull_request} was not handled in order").into());
        }
    }
    let poison_dead_lettered = dead.len() == 1
        && dead[0].message.message_id().as_str() == "poison-event"
        && dead[0].reason.as_deref() == Some(DeadLetterReason::MAX_DELIVERY_COUNT_EXCEEDED);
    if !poison_dead_lettered {
        return Err("the poison event was not dead-lettered".into());
    }
    println!(
        "All {} pull requests handled in order; 1 poison event dead-lettered.",
        PULL_REQUESTS.len()
    );
    client.close().await?;
    Ok(())
}

/// The bot's handler: parses `<pull request>:<event>`.
fn handle(message: &ReceivedMessage) -> Result<String, &'static str> {
    let text = std::str::from_utf8(message.body()).map_err(|_| "not UTF-8")?;
    let (_, event) = text.split_once(':').ok_or("not an event")?;
    if !EVENTS.contains(&event) {
        return Err("unknown event");
    }
    Ok(event.to_owned())
}
