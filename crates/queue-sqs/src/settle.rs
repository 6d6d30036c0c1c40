//! Settles as SQS calls: `complete` is a delete, `abandon` and lock renewals change the
//! visibility timeout. With a linger (the default), settles issued close together, by one task
//! or many, are coalesced into `DeleteMessageBatch` and `ChangeMessageVisibilityBatch` calls of
//! up to ten entries; without one, each settle is its own call.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
};
use queue_core::raw::batching::{
    BatchEntry, BatchLimits, Coalescer, Failure, Flush, copy_of, gather,
};
use queue_core::{ErrorKind, QueueError, Result};

use crate::error::map_sdk_error;
use crate::provider::{MAX_BATCH_ENTRIES, entry_results};

/// What a settle does to its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum SettleKind {
    /// `DeleteMessage`: complete.
    Delete,
    /// `ChangeMessageVisibility`: abandon (to zero or a delay) or renew (to the queue's timeout).
    Visibility,
}

/// One settle: the receipt handle, and for a visibility change its new timeout in seconds.
#[derive(Debug)]
pub(crate) struct SettleEntry {
    pub(crate) handle: String,
    pub(crate) visibility_seconds: i32,
}

impl BatchEntry for SettleEntry {
    /// SQS (and moto) refuse a batch naming one receipt handle twice; and two settles of one
    /// message in one call would race each other.
    fn conflicts_with(&self, other: &Self) -> bool {
        self.handle == other.handle
    }
}

/// A batch is per queue and per kind of settle.
type SettleKey = (String, SettleKind);

/// Sends settles: coalesced when a linger is set, one call each otherwise.
pub(crate) struct Settler {
    client: Client,
    coalescer: Option<Coalescer<SettleKey, SettleEntry, ()>>,
}

impl Settler {
    /// A settler over `client`; a zero `linger` turns coalescing off.
    pub(crate) fn new(client: Client, linger: Duration) -> Self {
        let coalescer = (!linger.is_zero()).then(|| {
            let flush_client = client.clone();
            let flush: Flush<SettleKey, SettleEntry, ()> =
                Arc::new(move |(url, kind): SettleKey, entries: Vec<SettleEntry>| {
                    let client = flush_client.clone();
                    Box::pin(async move { batch_call(&client, &url, kind, &entries).await })
                });
            Coalescer::new(
                BatchLimits {
                    max_entries: MAX_BATCH_ENTRIES,
                    max_bytes: usize::MAX,
                    linger,
                    max_in_flight: usize::MAX,
                },
                flush,
            )
        });
        Settler { client, coalescer }
    }

    /// Whether settles are coalesced.
    pub(crate) fn linger(&self) -> Option<Duration> {
        self.coalescer.as_ref().map(|c| c.limits().linger)
    }

    /// One settle; returns once SQS acknowledged it (or refused it).
    pub(crate) async fn one(&self, url: &str, kind: SettleKind, entry: SettleEntry) -> Result<()> {
        match &self.coalescer {
            Some(coalescer) => coalescer
                .submit((url.to_owned(), kind), entry)
                .await
                .map_err(Failure::into_error),
            None => single_call(&self.client, url, kind, &entry).await,
        }
    }

    /// Several settles of one caller, one result each in order. Coalesced, they share calls
    /// with everyone else's; otherwise they go in calls of ten of their own. Either way an
    /// error for every call (nothing done) is the outer `Err`.
    pub(crate) async fn many(
        &self,
        settles: Vec<(String, SettleKind, SettleEntry)>,
    ) -> Result<Vec<Result<()>>> {
        match &self.coalescer {
            Some(coalescer) => {
                let waiting = settles
                    .into_iter()
                    .map(|(url, kind, entry)| coalescer.submit((url, kind), entry));
                gather(futures::future::join_all(waiting).await)
            }
            None => self.in_own_calls(settles).await,
        }
    }

    /// Calls of up to ten per queue and kind; the first failed call fails the whole when
    /// nothing was done yet, and its own entries otherwise.
    async fn in_own_calls(
        &self,
        settles: Vec<(String, SettleKind, SettleEntry)>,
    ) -> Result<Vec<Result<()>>> {
        let count = settles.len();
        let mut groups: HashMap<SettleKey, Vec<(usize, SettleEntry)>> = HashMap::new();
        for (index, (url, kind, entry)) in settles.into_iter().enumerate() {
            groups.entry((url, kind)).or_default().push((index, entry));
        }
        let mut results: Vec<Option<Result<()>>> = (0..count).map(|_| None).collect();
        let mut anything_done = false;
        for ((url, kind), mut group) in groups {
            while !group.is_empty() {
                let rest = group.split_off(group.len().min(MAX_BATCH_ENTRIES));
                let (indexes, entries): (Vec<usize>, Vec<SettleEntry>) =
                    std::mem::replace(&mut group, rest).into_iter().unzip();
                match batch_call(&self.client, &url, kind, &entries).await {
                    Ok(done) => {
                        anything_done = true;
                        for (index, result) in indexes.into_iter().zip(done) {
                            results[index] = Some(result);
                        }
                    }
                    Err(error) if !anything_done => return Err(error),
                    Err(error) => {
                        let whole = Arc::new(error);
                        for index in indexes {
                            results[index] = Some(Err(copy_of(&whole)));
                        }
                    }
                }
            }
        }
        Ok(results
            .into_iter()
            .map(|result| result.unwrap_or_else(|| Err(unreported())))
            .collect())
    }
}

fn unreported() -> QueueError {
    QueueError::new(
        ErrorKind::Provider,
        "SQS reported neither success nor failure for this batch entry",
    )
}

/// One `DeleteMessage` or `ChangeMessageVisibility` call.
async fn single_call(
    client: &Client,
    url: &str,
    kind: SettleKind,
    entry: &SettleEntry,
) -> Result<()> {
    match kind {
        SettleKind::Delete => {
            client
                .delete_message()
                .queue_url(url)
                .receipt_handle(&entry.handle)
                .send()
                .await
                .map_err(|error| map_sdk_error("DeleteMessage", error))?;
        }
        SettleKind::Visibility => {
            client
                .change_message_visibility()
                .queue_url(url)
                .receipt_handle(&entry.handle)
                .visibility_timeout(entry.visibility_seconds)
                .send()
                .await
                .map_err(|error| map_sdk_error("ChangeMessageVisibility", error))?;
        }
    }
    Ok(())
}

/// One `DeleteMessageBatch` or `ChangeMessageVisibilityBatch` call of at most ten entries
/// (their ids are their indexes); one result per entry, in order.
async fn batch_call(
    client: &Client,
    url: &str,
    kind: SettleKind,
    entries: &[SettleEntry],
) -> Result<Vec<Result<()>>> {
    let entry_error = |error: aws_sdk_sqs::error::BuildError| {
        QueueError::invalid_input(format!("batch entry: {error}"))
    };
    let (operation, mut reported) = match kind {
        SettleKind::Delete => {
            let request = entries
                .iter()
                .enumerate()
                .map(|(index, entry)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(index.to_string())
                        .receipt_handle(&entry.handle)
                        .build()
                        .map_err(entry_error)
                })
                .collect::<Result<Vec<_>>>()?;
            let operation = "DeleteMessageBatch";
            let output = client
                .delete_message_batch()
                .queue_url(url)
                .set_entries(Some(request))
                .send()
                .await
                .map_err(|error| map_sdk_error(operation, error))?;
            let reported = entry_results(
                operation,
                output.successful().iter().map(|done| done.id()),
                output.failed(),
            );
            (operation, reported)
        }
        SettleKind::Visibility => {
            let request = entries
                .iter()
                .enumerate()
                .map(|(index, entry)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(index.to_string())
                        .receipt_handle(&entry.handle)
                        .visibility_timeout(entry.visibility_seconds)
                        .build()
                        .map_err(entry_error)
                })
                .collect::<Result<Vec<_>>>()?;
            let operation = "ChangeMessageVisibilityBatch";
            let output = client
                .change_message_visibility_batch()
                .queue_url(url)
                .set_entries(Some(request))
                .send()
                .await
                .map_err(|error| map_sdk_error(operation, error))?;
            let reported = entry_results(
                operation,
                output.successful().iter().map(|done| done.id()),
                output.failed(),
            );
            (operation, reported)
        }
    };
    tracing::trace!(operation, entries = entries.len(), "settle batch sent");
    Ok((0..entries.len())
        .map(|index| reported.remove(&index).unwrap_or_else(|| Err(unreported())))
        .collect())
}
