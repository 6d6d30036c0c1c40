//! A small pull-request bot on the embedded broker.
//!
//! Events of three pull requests arrive interleaved on one session queue, one session per pull
//! request. Two workers accept sessions and handle each pull request's events strictly in order.
//! One event is poison: its handler always fails, so it is given back until the broker
//! dead-letters it after its third delivery. The bot then reads the dead-letter queue and prints
//! a summary; it exits with an error if any check fails.
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

    let client = QueueClient::from_config(&ClientConfig::from_toml_str(CONFIG)?)?;
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
    let workers: Vec<_> = (0..2)
        .map(|worker| tokio::spawn(work(worker, client.clone(), queue.clone(), handled.clone())))
        .collect();
    for worker in workers {
        worker.await??;
    }

    let dead = client
        .receive_dead_letters(&queue, 10, Duration::from_millis(200))
        .await?;
    for message in &dead {
        client.complete(message).await?;
    }

    println!("Handled, per pull request, in order:");
    let handled = handled.lock().map_err(|_| "a worker panicked")?.clone();
    for (pull_request, events) in &handled {
        println!("  {pull_request}: {}", events.join(" -> "));
    }
    println!("Dead-lettered:");
    for message in &dead {
        let reason = message
            .delivery
            .dead_letter
            .clone()
            .unwrap_or_else(|| DeadLetterReason::new("(none)", ""));
        println!(
            "  {} in {}: {} ({})",
            message.message_id(),
            message.session_id().map_or("-", SessionId::as_str),
            reason.reason,
            reason.description
        );
    }

    // The checks that make this example a test of its own.
    let expected: Vec<String> = EVENTS.iter().map(|event| event.to_string()).collect();
    for pull_request in PULL_REQUESTS {
        if handled.get(pull_request) != Some(&expected) {
            return Err(format!("{pull_request} was not handled in order").into());
        }
    }
    let poison_dead_lettered = dead.len() == 1
        && dead[0].message_id().as_str() == "poison-event"
        && dead[0]
            .delivery
            .dead_letter
            .as_ref()
            .map(|r| r.reason.as_str())
            == Some(DeadLetterReason::MAX_DELIVERY_COUNT_EXCEEDED);
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

/// A worker: takes the next session with events, handles them in order, and stops when no
/// session has had anything for a second.
async fn work(
    worker: usize,
    client: QueueClient,
    queue: QueueName,
    handled: Handled,
) -> Result<(), QueueError> {
    while let Some(session) = client
        .accept_next_session(&queue, Duration::from_secs(1))
        .await?
    {
        tracing::info!(worker, session = %session.session_id(), "accepted");
        loop {
            // One at a time: a failed event must be retried before anything behind it.
            let messages = session.receive(1, Duration::from_millis(100)).await?;
            if messages.is_empty() {
                break;
            }
            for message in messages {
                match handle(&message) {
                    Ok(event) => {
                        handled
                            .lock()
                            .map_err(|_| QueueError::new(ErrorKind::Provider, "poisoned lock"))?
                            .entry(session.session_id().to_string())
                            .or_default()
                            .push(event);
                        session.complete(&message).await?;
                    }
                    Err(why) => {
                        tracing::warn!(
                            worker,
                            message_id = %message.message_id(),
                            delivery = message.delivery_count(),
                            why,
                            "handler failed; giving the event back"
                        );
                        // It comes back first: everything behind it waits, so order is kept.
                        session.abandon(&message, None).await?;
                    }
                }
            }
        }
        session.close().await?;
    }
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
