//! Public-key mode, end to end: a producer and a consumer, each configured from its own file.
//!
//! The consumer holds the only private key that opens the `orders` queue; the producer (say, a
//! webhook front end) holds that key's public half and its own signing key, so it can seal to
//! the queue but never read it, and the consumer knows which producer sealed each message. The
//! keys are made the way the operator's command makes them (`queue-runtime keys recipient ...`,
//! `signer ...`, `export-public ...`, `import-public ...`). An intruder that
//! knows the queue's public key but is not on the consumer's trust list is refused, and its
//! message is dead-lettered as `rejected: authentication`.
//!
//! In production the two files name the same SQS queue or Service Bus namespace and run in two
//! processes; here both share one embedded broker (built from the consumer's file), and
//! everything else (keys, role, the queue's mode) comes from each side's own file.
//!
//! Run it with `cargo run --example public_keys`; it exits with an error if a check fails.

// The summary is this program's output.
#![allow(clippy::print_stdout)]

use std::error::Error;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use queue_runtime::core::QueueProvider;
use queue_runtime::crypto::KeyId;
use queue_runtime::crypto::public::Kem;
use queue_runtime::keys::{KeysetDocument, Role};
use queue_runtime::prelude::*;

/// One side's configuration file: the broker, its keys, and the queue in public-key mode.
fn config_file(keys: &Path, role: &str) -> String {
    format!(
        r#"
provider = "memory"

[[memory.queues]]
name = "orders"

[security]
key_file = "{}"
role = "{role}"              # "producer": keys that could open are refused

[[security.queues]]
name = "orders"
mode = "public_key"          # sealed to the consumer's public key, signed by the producer
"#,
        keys.display()
    )
}

/// A client on `broker` with everything else from the configuration file at `file`.
async fn client_from(
    file: &Path,
    broker: &Arc<dyn QueueProvider>,
) -> Result<QueueClient, Box<dyn Error>> {
    let config = ClientConfig::from_file(file)?;
    let security = config
        .security
        .as_ref()
        .ok_or("the file has no [security]")?
        .build()
        .await?;
    Ok(QueueClient::new(Arc::clone(broker)).with_security(security))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let directory = tempfile::tempdir()?;
    let path = |name: &str| directory.path().join(name);

    // Keys, as the keys tool makes them. The consumer: a recipient key pair (X-Wing: the
    // backlog stays confidential against a future quantum computer).
    let mut consumer_keys = KeysetDocument::empty(Some(Role::Consumer));
    consumer_keys.generate_recipient_key(KeyId::new("orders-r1")?, Kem::XWing)?;
    // The producer: a signing key, and the consumer's public half.
    let mut producer_keys = KeysetDocument::empty(Some(Role::Producer));
    producer_keys.generate_signing_key(KeyId::new("webhook-1")?)?;
    producer_keys.import_public(&consumer_keys.export_public()?)?;
    // The consumer trusts the producer's public half.
    consumer_keys.import_public(&producer_keys.export_public()?)?;
    // An intruder: it knows the queue's public key (public keys are not secret), but the
    // consumer has never heard of its signing key.
    let mut intruder_keys = KeysetDocument::empty(Some(Role::Producer));
    intruder_keys.generate_signing_key(KeyId::new("intruder")?)?;
    intruder_keys.import_public(&consumer_keys.export_public()?)?;

    consumer_keys.write_file(path("consumer-keys.json"))?;
    producer_keys.write_file(path("producer-keys.json"))?;
    intruder_keys.write_file(path("intruder-keys.json"))?;
    std::fs::write(
        path("consumer.toml"),
        config_file(&path("consumer-keys.json"), "any"),
    )?;
    std::fs::write(
        path("producer.toml"),
        config_file(&path("producer-keys.json"), "producer"),
    )?;
    std::fs::write(
        path("intruder.toml"),
        config_file(&path("intruder-keys.json"), "producer"),
    )?;

    // Each side from its own file; one broker between them.
    let consumer_config = ClientConfig::from_file(path("consumer.toml"))?;
    let broker = consumer_config.provider.connect().await?;
    let consumer = client_from(&path("consumer.toml"), &broker).await?;
    let producer = client_from(&path("producer.toml"), &broker).await?;
    let intruder = client_from(&path("intruder.toml"), &broker).await?;

    // A producer's file that holds the consumer's private key is refused at startup.
    std::fs::write(
        path("misconfigured.toml"),
        config_file(&path("consumer-keys.json"), "producer"),
    )?;
    let refused = match client_from(&path("misconfigured.toml"), &broker).await {
        Ok(_) => return Err("a producer's configuration accepted a recipient private key".into()),
        Err(error) => error.to_string(),
    };

    let orders = QueueName::new("orders")?;
    for order in 1..=3 {
        let message = Message::builder(format!(r#"{{"order":{order}}}"#))
            .content_type("application/json")
            .build()?;
        producer.send(&orders, message).await?;
    }
    intruder
        .send(&orders, Message::new(r#"{"refund":1000}"#))
        .await?;

    // What the producer can see of what it sent: envelopes, never the orders.
    let peeked = producer
        .peek(&orders, queue_runtime::core::PeekOptions::new(10))
        .await?;
    let producer_opened = peeked.iter().filter(|m| m.delivery.seal.is_some()).count();

    let mut handled = Vec::new();
    for _ in 0..10 {
        let batch = consumer
            .receive(&orders, 10, Duration::from_millis(100))
            .await?;
        if batch.is_empty() {
            break;
        }
        for message in batch {
            let sender = message
                .delivery
                .seal
                .as_ref()
                .and_then(|seal| seal.sender_key_id.clone())
                .unwrap_or_default();
            handled.push((String::from_utf8(message.body().to_vec())?, sender));
            consumer.complete(&message).await?;
        }
    }
    let mut reasons = Vec::new();
    for dead in consumer
        .receive_dead_letters(&orders, 10, Duration::from_millis(100))
        .await?
    {
        reasons.push(
            dead.delivery
                .dead_letter
                .as_ref()
                .map(|d| d.reason.clone())
                .unwrap_or_default(),
        );
        consumer.complete(&dead).await?;
    }

    println!("The consumer opened, with the producer's signature checked:");
    for (body, sender) in &handled {
        println!("  {body}  (signed by {sender})");
    }
    println!("Dead-lettered: {}", reasons.join(", "));
    println!(
        "The producer could open {producer_opened} of the {} envelopes it peeked at",
        peeked.len()
    );
    println!("A producer configured with the consumer's key file: {refused}");

    let expected: Vec<(String, String)> = (1..=3)
        .map(|order| (format!(r#"{{"order":{order}}}"#), "webhook-1".to_owned()))
        .collect();
    if handled != expected {
        return Err(format!("expected the three orders from webhook-1, got {handled:?}").into());
    }
    if reasons != ["rejected: authentication"] {
        return Err(format!("expected the intruder's message refused, got {reasons:?}").into());
    }
    if producer_opened != 0 || peeked.len() != 4 {
        return Err("the producer opened an envelope".into());
    }
    Ok(())
}
