//! `queue-runtime dlq list | replay | purge`.

use std::time::Duration;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use queue_runtime::QueueClient;
use queue_runtime::core::MessageId;
use queue_runtime::dead_letters::{DeadLetter, DeadLetterFilter};
use serde::Serialize;

use super::peek::{body_of, seal_of};
use super::{Done, confirm, explain, queue_name};
use crate::cli::{FilterArgs, ListArgs, SelectArgs};
use crate::output::{Output, table, unix_millis, write_line};

/// How many dead letters a dry run looks at, at most, when no limit is given.
const DRY_RUN_MAX: usize = 10_000;

#[derive(Serialize)]
struct Listed {
    message_id: String,
    reason: Option<String>,
    description: Option<String>,
    delivery_count: u32,
    enqueued_at_ms: u64,
    age_seconds: u64,
    size: usize,
    /// `opened` (sealed and authenticated with our keys), `sealed` (did not open), `plain`.
    seal: &'static str,
    body: Option<String>,
}

fn listed(dead: &DeadLetter, show_body: bool) -> Listed {
    Listed {
        message_id: dead.message.message_id().to_string(),
        reason: dead.reason.clone(),
        description: dead.description.clone(),
        delivery_count: dead.delivery_count,
        enqueued_at_ms: unix_millis(dead.enqueued_at),
        age_seconds: dead.age.as_secs(),
        size: dead.message.body().len(),
        seal: seal_of(&dead.message, dead.is_authenticated()),
        body: show_body.then(|| body_of(&dead.message, dead.is_authenticated())),
    }
}

fn filter_of(args: &FilterArgs) -> Result<DeadLetterFilter> {
    let mut filter = DeadLetterFilter::all();
    if let Some(reason) = &args.reason {
        filter = filter.with_reason(reason);
    }
    if let Some(age) = args.older_than {
        filter = filter.older_than(age);
    }
    if !args.ids.is_empty() {
        let ids = args
            .ids
            .iter()
            .map(|id| MessageId::new(id).map_err(|error| anyhow::anyhow!("--id {id:?}: {error}")))
            .collect::<Result<Vec<_>>>()?;
        filter = filter.with_message_ids(ids);
    }
    if let Some(limit) = args.limit {
        filter = filter.with_limit(limit);
    }
    Ok(filter)
}

fn print_listed(rows: &[Listed], show_body: bool) {
    let mut headers = vec![
        "message id",
        "reason",
        "description",
        "deliveries",
        "age",
        "size",
        "seal",
    ];
    if show_body {
        headers.push("body");
    }
    let mut table = table(&headers);
    for row in rows {
        let mut cells = vec![
            row.message_id.clone(),
            row.reason.clone().unwrap_or_default(),
            row.description.clone().unwrap_or_default(),
            row.delivery_count.to_string(),
            humantime::format_duration(Duration::from_secs(row.age_seconds)).to_string(),
            row.size.to_string(),
            row.seal.to_owned(),
        ];
        if let Some(body) = &row.body {
            cells.push(body.clone());
        }
        table.add_row(cells);
    }
    write_line(&table.to_string());
}

pub(super) async fn list(client: &QueueClient, args: &ListArgs, output: Output) -> Result<Done> {
    let queue = queue_name(client, &args.queue)?;
    let filter = filter_of(&args.filter)?;
    let all = client
        .dead_letters(&queue)
        .list(args.max)
        .await
        .map_err(|error| anyhow::anyhow!(explain(&error)))?;
    let rows: Vec<Listed> = all
        .iter()
        .filter(|dead| filter.matches(dead))
        .map(|dead| listed(dead, args.show_body))
        .collect();
    output.emit(&rows, || print_listed(&rows, args.show_body));
    output.summary(true, &format!("{} dead letter(s)", rows.len()));
    Ok(Done::Ok)
}

#[derive(Serialize)]
struct ReplaySummary {
    dry_run: bool,
    replayed: Vec<Moved>,
    skipped: Vec<NotDone>,
    failed: Vec<NotDone>,
    selected: Vec<Listed>,
}

#[derive(Serialize)]
struct Moved {
    message_id: String,
    new_message_id: String,
}

#[derive(Serialize)]
struct NotDone {
    message_id: String,
    why: String,
}

/// The dead letters a filter selects, looked at without taking them (for a dry run).
async fn selected(
    client: &QueueClient,
    queue: &queue_runtime::core::QueueName,
    filter: &DeadLetterFilter,
    limit: Option<usize>,
) -> Result<Vec<Listed>> {
    let all = client
        .dead_letters(queue)
        .list(limit.unwrap_or(DRY_RUN_MAX).max(DRY_RUN_MAX.min(1000)))
        .await
        .map_err(|error| anyhow::anyhow!(explain(&error)))?;
    let mut rows: Vec<Listed> = all
        .iter()
        .filter(|dead| filter.matches(dead))
        .map(|dead| listed(dead, false))
        .collect();
    if let Some(limit) = limit {
        rows.truncate(limit);
    }
    Ok(rows)
}

fn progress(output: Output, verb: &'static str) -> ProgressBar {
    // Hidden when stderr is no terminal (indicatif's draw target), and for scripts.
    let bar = if output.is_json() {
        ProgressBar::hidden()
    } else {
        ProgressBar::new_spinner()
    };
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} [{elapsed}]") {
        bar.set_style(style);
    }
    bar.set_message(format!("{verb} 0"));
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

pub(super) async fn replay(
    client: &QueueClient,
    args: &SelectArgs,
    output: Output,
) -> Result<Done> {
    let queue = queue_name(client, &args.queue)?;
    let filter = filter_of(&args.filter)?;
    if args.dry_run {
        let rows = selected(client, &queue, &filter, args.filter.limit).await?;
        let summary = ReplaySummary {
            dry_run: true,
            replayed: vec![],
            skipped: vec![],
            failed: vec![],
            selected: rows,
        };
        output.emit(&summary, || print_listed(&summary.selected, false));
        output.summary(
            true,
            &format!(
                "dry run: would replay {} dead letter(s)",
                summary.selected.len()
            ),
        );
        return Ok(Done::Ok);
    }
    if !args.yes
        && !confirm(&format!(
            "Replay the selected dead letters of {queue} to it"
        ))?
    {
        output.summary(false, "replay: not confirmed, nothing done");
        return Ok(Done::Failed);
    }
    let bar = progress(output, "replayed");
    let report = client
        .dead_letters(&queue)
        .replay_with_progress(&filter, &|done| bar.set_message(format!("replayed {done}")))
        .await;
    bar.finish_and_clear();
    let report = report.map_err(|error| anyhow::anyhow!(explain(&error)))?;
    let summary = ReplaySummary {
        dry_run: false,
        replayed: report
            .replayed
            .iter()
            .map(|(old, new)| Moved {
                message_id: old.to_string(),
                new_message_id: new.to_string(),
            })
            .collect(),
        skipped: report
            .skipped
            .iter()
            .map(|(id, why)| NotDone {
                message_id: id.to_string(),
                why: why.clone(),
            })
            .collect(),
        failed: report
            .not_removed
            .iter()
            .map(|(id, why)| NotDone {
                message_id: id.to_string(),
                why: format!("replayed, but the dead-letter copy stays: {why}"),
            })
            .collect(),
        selected: vec![],
    };
    output.emit(&summary, || {
        for skipped in &summary.skipped {
            write_line(&format!("skipped {}: {}", skipped.message_id, skipped.why));
        }
        for failed in &summary.failed {
            write_line(&format!("{}: {}", failed.message_id, failed.why));
        }
    });
    let ok = summary.failed.is_empty();
    output.summary(
        ok,
        &format!(
            "replayed {}, skipped {}, failed {}",
            summary.replayed.len(),
            summary.skipped.len(),
            summary.failed.len()
        ),
    );
    Ok(if ok { Done::Ok } else { Done::Failed })
}

#[derive(Serialize)]
struct PurgeSummary {
    dry_run: bool,
    purged: Vec<String>,
    failed: Vec<NotDone>,
    selected: Vec<Listed>,
}

pub(super) async fn purge(client: &QueueClient, args: &SelectArgs, output: Output) -> Result<Done> {
    let queue = queue_name(client, &args.queue)?;
    let filter = filter_of(&args.filter)?;
    if args.dry_run {
        let rows = selected(client, &queue, &filter, args.filter.limit).await?;
        let summary = PurgeSummary {
            dry_run: true,
            purged: vec![],
            failed: vec![],
            selected: rows,
        };
        output.emit(&summary, || print_listed(&summary.selected, false));
        output.summary(
            true,
            &format!(
                "dry run: would purge {} dead letter(s)",
                summary.selected.len()
            ),
        );
        return Ok(Done::Ok);
    }
    if !args.yes
        && !confirm(&format!(
            "Delete the selected dead letters of {queue} for good"
        ))?
    {
        output.summary(false, "purge: not confirmed, nothing done");
        return Ok(Done::Failed);
    }
    let bar = progress(output, "purged");
    let report = client
        .dead_letters(&queue)
        .purge_with_progress(&filter, &|done| bar.set_message(format!("purged {done}")))
        .await;
    bar.finish_and_clear();
    let report = report.map_err(|error| anyhow::anyhow!(explain(&error)))?;
    let summary = PurgeSummary {
        dry_run: false,
        purged: report.purged.iter().map(ToString::to_string).collect(),
        failed: report
            .failed
            .iter()
            .map(|(id, why)| NotDone {
                message_id: id.to_string(),
                why: why.clone(),
            })
            .collect(),
        selected: vec![],
    };
    output.emit(&summary, || {
        for failed in &summary.failed {
            write_line(&format!("{}: {}", failed.message_id, failed.why));
        }
    });
    let ok = summary.failed.is_empty();
    output.summary(
        ok,
        &format!(
            "purged {}, failed {}",
            summary.purged.len(),
            summary.failed.len()
        ),
    );
    Ok(if ok { Done::Ok } else { Done::Failed })
}
