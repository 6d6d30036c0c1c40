//! The whole secure path of a GitHub bot, on the embedded broker.
//!
//! 1. Webhook deliveries arrive with an `X-Hub-Signature-256` header; each is verified against
//!    the raw body before anything else. A forged delivery is refused at the door.
//! 2. Verified events are sealed (a keyset file generated for the run) and sent with the pull
//!    request as the session, so each pull request's events are processed in order.
//! 3. A consumer with the same key file accepts sessions and handles each pull request's events
//!    in order; what arrives on the queue is authenticated plaintext.
//! 4. An attacker with access to the queue injects a plaintext event and replays a sealed one:
//!    both are refused and dead-lettered (`rejected: unsealed`, `rejected: replay`), and the
//!    handler never sees them.
//!
//! Run it with `cargo run --example github_bot`. It exits with an error if any check fails.

// The summary is this program's output.
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use queue_runtime::core::{PeekOptions, QueueProvider};
use queue_runtime::crypto::KeyId;
use queue_runtime::keys::{FileKeys, generate_keyset_file};
use queue_runtime::memory::{MemoryConfig, MemoryProvider, QueueOptions};
use queue_runtime::prelude::*;
use queue_runtime::webhook::{
    SIGNATURE_HEADER, WebhookSecret, sign_github_payload, verify_github_signature,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::WARN)
        .init();

    // Keys: one file, shared by the webhook receiver (sender) and the worker (receiver).
    let directory = std::env::temp_dir().join(format!("github-bot-{}", std::process::id()));
    std::fs::create_dir_all(&directory)?;
    let key_file = directory.join("keys.json");
    generate_keyset_file(&key_file, KeyId::new("bot-2026-11")?)?;

    let broker = Arc::new(MemoryProvider::new(MemoryConfig::default()));
    let queue = QueueName::new("pr-events")?;
    broker.create_queue(&queue, QueueOptions::default().with_sessions(true))?;
    let client = QueueClient::new(broker.clone() as Arc<dyn QueueProvider>)
        .with_security(Security::from_source(Arc::new(FileKeys::new(&key_file))));

    // 1-2. Deliveries as GitHub sends them; one forged.
    let webhook_secret = WebhookSecret::new("configured-on-the-github-app");
    let mut deliveries = Vec::new();
    for (pull_request, action) in [
        (7, "opened"),
        (8, "opened"),
        (7, "synchronize"),
        (8, "closed"),
        (7, "closed"),
    ] {
        let body = format!(r#"{{"action":"{action}","number":{pull_request}}}"#);
        let signature = sign_github_payload(&webhook_secret, body.as_bytes());
        deliveries.push((body, Some(signature)));
    }
    // Forged: signed with a guessed secret.
    let forged_body = r#"{"action":"closed","number":7}"#;
    let forged_signature =
        sign_github_payload(&WebhookSecret::new("guess"), forged_body.as_bytes());
    deliveries.push((forged_body.to_owned(), Some(forged_signature)));
    let mut refused_at_the_door = 0;
    for (body, signature) in &deliveries {
        if let Err(error) =
            verify_github_signature(&webhook_secret, body.as_bytes(), signature.as_deref())
        {
            println!("refused delivery ({SIGNATURE_HEADER}): {error}");
            refused_at_the_door += 1;
            continue;
        }
        let number = body.rsplit(':').next().unwrap_or("0").trim_end_matches('}');
        let message = Message::builder(body.clone())
            .session_id(format!("pr-{number}"))
            .content_type("application/json")
            .build()?;
        client.send(&queue, message).await?;
    }

    // 4. The attacker: a plaintext event, and a copy of a sealed one to replay later.
    let stolen = broker
        .peek(&queue, PeekOptions::new(1))
        .await?
        .remove(0)
        .message;
    let forged = Message::builder(r#"{"action":"merged","number":7}"#)
        .session_id("pr-7")
        .build()?;
    broker.send(&queue, forged).await?;

    // 3. The worker: sessions one by one, each in order.
    let mut handled: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut round = 0;
    while let Some(session) = client
        .accept_next_session(&queue, Duration::from_millis(100))
        .await?
    {
        loop {
            let batch = session.receive(10, Duration::ZERO).await?;
            if batch.is_empty() {
                break;
            }
            for message in batch {
                let event = String::from_utf8(message.body().to_vec())?;
                handled
                    .entry(session.session_id().to_string())
                    .or_default()
                    .push(event);
                client.complete(&message).await?;
            }
        }
        session.close().await?;
        round += 1;
        if round == 1 {
            // The replay arrives after its original was completed.
            broker.send(&queue, stolen.clone()).await?;
        }
    }

    let dead = client
        .receive_dead_letters(&queue, 10, Duration::from_millis(100))
        .await?;
    let mut reasons: Vec<String> = Vec::new();
    for message in &dead {
        reasons.push(
            message
                .delivery
                .dead_letter
                .as_ref()
                .map(|d| d.reason.clone())
                .unwrap_or_default(),
        );
        client.complete(message).await?;
    }
    reasons.sort();
    // Before the process ends: on a network broker, settles reach it by the time close returns.
    client.close().await?;

    println!("Handled, per pull request, in order:");
    for (pull_request, events) in &handled {
        println!("  {pull_request}: {}", events.join(" -> "));
    }
    println!(
        "Refused at the door: {refused_at_the_door}; dead-lettered: {}",
        reasons.join(", ")
    );
    std::fs::remove_dir_all(&directory)?;

    let expected_7 = [
        r#"{"action":"opened","number":7}"#,
        r#"{"action":"synchronize","number":7}"#,
        r#"{"action":"closed","number":7}"#,
    ];
    if handled.get("pr-7").map(Vec::as_slice) != Some(&expected_7.map(String::from)[..])
        || handled.get("pr-8").map(Vec::len) != Some(2)
        || refused_at_the_door != 1
        || reasons != ["rejected: replay", "rejected: unsealed"]
    {
        return Err("the bot did not behave as described".into());
    }
    Ok(())
}
