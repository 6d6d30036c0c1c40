//! `queue-runtime stats`: how many messages a queue and its dead-letter queue hold.

use anyhow::Result;
use queue_runtime::QueueClient;
use queue_runtime::core::ErrorKind;
use serde::Serialize;

use super::{Done, explain, queue_name};
use crate::cli::QueueArg;
use crate::output::{Output, age, table, unix_millis, write_line};

#[derive(Serialize)]
struct Stats {
    queue: String,
    provider: &'static str,
    active: Option<u64>,
    in_flight: Option<u64>,
    scheduled: Option<u64>,
    dead_letter: Option<u64>,
    oldest_enqueued_at_ms: Option<u64>,
}

pub(super) async fn run(client: &QueueClient, args: &QueueArg, output: Output) -> Result<Done> {
    let queue = queue_name(client, &args.queue)?;
    let provider = client.provider().name();
    let counts = match client.counts(&queue).await {
        Ok(counts) => counts,
        Err(error) if error.kind() == ErrorKind::Unsupported => {
            anyhow::bail!(
                "stats are not available on {provider}: its data-plane API does not tell how many \
                 messages a queue holds (use the cloud's own console or metrics)"
            )
        }
        Err(error) => anyhow::bail!(explain(&error)),
    };
    let stats = Stats {
        queue: queue.to_string(),
        provider,
        active: counts.active,
        in_flight: counts.in_flight,
        scheduled: counts.scheduled,
        dead_letter: counts.dead_letter,
        oldest_enqueued_at_ms: counts.oldest_enqueued_at.map(unix_millis),
    };
    output.emit(&stats, || {
        let shown = |count: Option<u64>| count.map_or_else(|| "-".to_owned(), |n| n.to_string());
        let mut table = table(&[
            "queue",
            "active",
            "in flight",
            "scheduled",
            "dead letters",
            "oldest",
        ]);
        table.add_row([
            stats.queue.clone(),
            shown(stats.active),
            shown(stats.in_flight),
            shown(stats.scheduled),
            shown(stats.dead_letter),
            age(counts.oldest_enqueued_at),
        ]);
        write_line(&table.to_string());
        if provider == "sqs" {
            write_line("(SQS counts are approximate; SQS does not tell the oldest message's age)");
        }
    });
    Ok(Done::Ok)
}
