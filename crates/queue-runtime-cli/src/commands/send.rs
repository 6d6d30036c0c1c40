//! `queue-runtime send`: one message, sealed per the queue's policy.

use std::io::Read;

use anyhow::{Context, Result};
use queue_runtime::QueueClient;
use queue_runtime::core::Message;
use serde::Serialize;

use super::{Done, explain, queue_name};
use crate::cli::SendArgs;
use crate::output::{Output, write_line};

#[derive(Serialize)]
struct Sent {
    queue: String,
    message_id: String,
    sequence_number: Option<u64>,
    sealed: bool,
}

pub(super) async fn run(client: &QueueClient, args: &SendArgs, output: Output) -> Result<Done> {
    let queue = queue_name(client, &args.queue)?;
    let body = match (&args.body, &args.file) {
        (Some(text), _) => text.clone().into_bytes(),
        (None, Some(path)) if path.as_os_str() != "-" => std::fs::read(path)
            .with_context(|| format!("cannot read the body from {}", path.display()))?,
        (None, _) => {
            let mut body = Vec::new();
            std::io::stdin()
                .read_to_end(&mut body)
                .context("cannot read the body from stdin")?;
            body
        }
    };
    let mut builder = Message::builder(body);
    for property in &args.properties {
        let (key, value) = property
            .split_once('=')
            .with_context(|| format!("--property {property:?}: expected KEY=VALUE"))?;
        builder = builder.property(key, value);
    }
    if let Some(session) = &args.session {
        builder = builder.session_id(session);
    }
    if let Some(correlation_id) = &args.correlation_id {
        builder = builder.correlation_id(correlation_id);
    }
    if let Some(content_type) = &args.content_type {
        builder = builder.content_type(content_type);
    }
    if let Some(delay) = args.delay {
        builder = builder.delay(delay);
    }
    if let Some(at) = args.at {
        builder = builder.scheduled_enqueue_time(at);
    }
    let message = builder
        .build()
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    let sealed = client
        .security()
        .is_some_and(|security| security.policy(&queue).seal);
    let outcome = client
        .send(&queue, message)
        .await
        .map_err(|error| anyhow::anyhow!(explain(&error)))?;
    let sent = Sent {
        queue: queue.to_string(),
        message_id: outcome.message_id.to_string(),
        sequence_number: outcome.sequence_number,
        sealed,
    };
    output.emit(&sent, || {
        write_line(&format!(
            "sent {} to {}{}{}",
            sent.message_id,
            sent.queue,
            sent.sequence_number
                .map(|n| format!(" (sequence number {n})"))
                .unwrap_or_default(),
            if sealed { ", sealed" } else { "" }
        ));
    });
    Ok(Done::Ok)
}
