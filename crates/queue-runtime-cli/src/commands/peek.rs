//! `queue-runtime peek`: messages read without taking them.

use anyhow::Result;
use queue_runtime::QueueClient;
use queue_runtime::core::{ErrorKind, PeekOptions, SubQueue};
use serde::Serialize;

use super::{Done, explain, queue_name};
use crate::cli::PeekArgs;
use crate::output::{Output, age, preview, table, unix_millis, write_line};

#[derive(Serialize)]
pub(super) struct Shown {
    pub(super) message_id: String,
    pub(super) sequence_number: Option<u64>,
    pub(super) session_id: Option<String>,
    pub(super) enqueued_at_ms: u64,
    pub(super) size: usize,
    /// `opened` (sealed, authenticated with our keys), `sealed` (did not open), `plain`.
    pub(super) seal: &'static str,
    pub(super) body: Option<String>,
}

pub(super) fn seal_of(message: &queue_runtime::core::Message, opened: bool) -> &'static str {
    if opened {
        "opened"
    } else if queue_runtime::crypto::looks_sealed(message.body()) {
        "sealed"
    } else {
        "plain"
    }
}

/// A body as shown: its text when opened or plain; a sealed one that did not open shows as such
/// (its ciphertext means nothing to a reader).
pub(super) fn body_of(message: &queue_runtime::core::Message, opened: bool) -> String {
    match seal_of(message, opened) {
        "sealed" => "(sealed: the configured keys do not open it)".to_owned(),
        _ => preview(message.body()),
    }
}

pub(super) async fn run(client: &QueueClient, args: &PeekArgs, output: Output) -> Result<Done> {
    let queue = queue_name(client, &args.queue)?;
    let mut options = PeekOptions::new(args.max);
    options.from_sequence_number = args.from;
    if args.dead_letter {
        options.sub_queue = SubQueue::DeadLetter;
    }
    let peeked = match client.peek(&queue, options).await {
        Ok(peeked) => peeked,
        Err(error) if error.kind() == ErrorKind::Unsupported => anyhow::bail!(
            "peek is not available on {}: it has no way to read a message without taking it \
             (`queue-runtime dlq list` reads dead letters there by receiving and giving back)",
            client.provider().name()
        ),
        Err(error) => anyhow::bail!(explain(&error)),
    };
    let shown: Vec<Shown> = peeked
        .iter()
        .map(|message| Shown {
            message_id: message.message.message_id().to_string(),
            sequence_number: message.delivery.sequence_number,
            session_id: message.message.session_id().map(ToString::to_string),
            enqueued_at_ms: unix_millis(message.delivery.enqueued_at),
            size: message.message.body().len(),
            seal: seal_of(&message.message, message.delivery.seal.is_some()),
            body: args
                .show_body
                .then(|| body_of(&message.message, message.delivery.seal.is_some())),
        })
        .collect();
    output.emit(&shown, || {
        let mut headers = vec!["seq", "message id", "session", "age", "size", "seal"];
        if args.show_body {
            headers.push("body");
        }
        let mut table = table(&headers);
        for (row, message) in shown.iter().zip(&peeked) {
            let mut cells = vec![
                row.sequence_number
                    .map_or_else(|| "-".to_owned(), |n| n.to_string()),
                row.message_id.clone(),
                row.session_id.clone().unwrap_or_default(),
                age(Some(message.delivery.enqueued_at)),
                row.size.to_string(),
                row.seal.to_owned(),
            ];
            if let Some(body) = &row.body {
                cells.push(body.clone());
            }
            table.add_row(cells);
        }
        write_line(&table.to_string());
    });
    output.summary(true, &format!("{} message(s)", shown.len()));
    Ok(Done::Ok)
}
