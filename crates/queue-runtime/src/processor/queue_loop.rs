//! Queues without session receivers: one receive loop, each run of messages in its own task.

use std::collections::HashMap;
use std::sync::Arc;

use queue_core::{ReceivedMessage, Result, SessionId};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::error;

use super::locks::HeldRun;
use super::message::{Next, expired_before_handling, give_back, handle_one};
use super::{Shared, back_off, is_fatal};

/// One receive loop; each received message (or run of one session's messages, in order) is
/// handled in its own task, at most `max_concurrency` at once.
pub(super) async fn run_queue(shared: &Arc<Shared>) -> Result<()> {
    let slots = Arc::new(Semaphore::new(shared.options.max_concurrency));
    let batch_limit = shared
        .options
        .receive_batch
        .min(shared.client.capabilities().max_receive_messages.max(1));
    let mut tasks = JoinSet::new();
    let mut failures = 0_u32;
    let mut outcome = Ok(());
    loop {
        // Shutdown first: with a slot free as well, an unbiased select picked either, so a
        // stopping processor went on receiving (each receive up to `receive_wait`, and every
        // message it took given straight back, a delivery counted for nothing).
        let first = tokio::select! {
            biased;
            () = shared.shutdown.cancelled() => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let mut permits = gather_slots(shared, &slots, first, batch_limit).await;
        if shared.shutdown.is_cancelled() {
            break;
        }
        while tasks.try_join_next().is_some() {}
        // Not raced against shutdown: a receive dropped half-way could leave messages locked
        // until their lock expires. It returns within `receive_wait`.
        match shared
            .client
            .receive(&shared.queue, permits.len(), shared.options.receive_wait)
            .await
        {
            Ok(messages) => {
                failures = 0;
                for group in in_session_runs(messages) {
                    // One slot per run; a provider returning more than asked for still has every
                    // message handled (never left locked and unseen), just past the bound.
                    let permit = permits.pop();
                    let shared = shared.clone();
                    tasks.spawn(async move { handle_run(&shared, group, permit).await });
                }
            }
            Err(error) if is_fatal(&error) => {
                error!(messaging.destination.name = %shared.queue, %error, "processor stopping");
                outcome = Err(error);
                break;
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                if !back_off(shared, &error, failures).await {
                    break;
                }
            }
        }
    }
    while let Some(joined) = tasks.join_next().await {
        if let Err(join_error) = joined {
            error!(%join_error, "a processor task failed");
        }
    }
    outcome
}

/// The slots to receive for: `first`, every other one free now, and, while handlers run, the
/// ones that free within `receive_gather`, up to `wanted`.
async fn gather_slots(
    shared: &Shared,
    slots: &Arc<Semaphore>,
    first: OwnedSemaphorePermit,
    batch_limit: usize,
) -> Vec<OwnedSemaphorePermit> {
    let wanted = batch_limit.min(shared.options.max_concurrency);
    let gather_until = Instant::now() + shared.options.receive_gather;
    let mut permits = vec![first];
    while permits.len() < wanted {
        if let Ok(permit) = slots.clone().try_acquire_owned() {
            permits.push(permit);
            continue;
        }
        // Every slot not held here is busy with a handler; wait a little for some to free.
        let more = tokio::select! {
            biased;
            () = shared.shutdown.cancelled() => break,
            permit = tokio::time::timeout_at(gather_until, slots.clone().acquire_owned()) => permit,
        };
        match more {
            Ok(Ok(permit)) => permits.push(permit),
            _ => break,
        }
    }
    permits
}

/// Splits a received batch into runs to handle one after the other: each message alone, except
/// messages of one session, which stay together in the order received.
pub(super) fn in_session_runs(messages: Vec<ReceivedMessage>) -> Vec<Vec<ReceivedMessage>> {
    let mut runs: Vec<Vec<ReceivedMessage>> = Vec::new();
    let mut run_of_session: HashMap<SessionId, usize> = HashMap::new();
    for message in messages {
        match message.session_id().cloned() {
            Some(session) => match run_of_session.get(&session) {
                Some(&index) => runs[index].push(message),
                None => {
                    run_of_session.insert(session, runs.len());
                    runs.push(vec![message]);
                }
            },
            None => runs.push(vec![message]),
        }
    }
    runs
}

/// Handles a run's messages one after the other while keeping every one of them locked; when
/// one is given back (or its lock ran out before it could start), the rest are given back too,
/// so none overtakes it.
async fn handle_run(
    shared: &Shared,
    run: Vec<ReceivedMessage>,
    _slot: Option<OwnedSemaphorePermit>,
) {
    let held = HeldRun::new(run);
    tokio::select! {
        biased;
        () = work_run(shared, &held) => {}
        () = held.keep(shared) => {}
    }
}

async fn work_run(shared: &Shared, held: &HeldRun) {
    for index in 0..held.len() {
        if held.released(index) {
            return;
        }
        let next = match held.take_up(index) {
            Ok(message) => {
                handle_giving_back_the_rest_at_shutdown(shared, held, index, message).await
            }
            Err(error) => {
                expired_before_handling(shared, held.message(index), &error).await;
                Next::GiveBackTheRest
            }
        };
        held.let_go(index);
        if next == Next::GiveBackTheRest {
            for rest in index + 1..held.len() {
                if held.released(rest) {
                    break;
                }
                give_back(shared, held.message(rest)).await;
                held.let_go(rest);
            }
            return;
        }
    }
}

/// Handles the message at `index`; if shutdown comes meanwhile, the messages waiting behind it
/// are given back at once, not after it.
async fn handle_giving_back_the_rest_at_shutdown(
    shared: &Shared,
    held: &HeldRun,
    index: usize,
    message: ReceivedMessage,
) -> Next {
    let finished = CancellationToken::new();
    let handling = async {
        let next = handle_one(shared, message, held.lost(index)).await;
        finished.cancel();
        next
    };
    let early_give_back = async {
        tokio::select! {
            biased;
            () = finished.cancelled() => {}
            () = shared.shutdown.cancelled() => held.give_back_after(shared, index).await,
        }
    };
    tokio::join!(handling, early_give_back).0
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use queue_core::{Message, QueueName, Receipt};

    use super::*;

    fn received(session: Option<&str>, body: &str) -> ReceivedMessage {
        let mut builder = Message::builder(body.to_owned());
        if let Some(session) = session {
            builder = builder.session_id(session);
        }
        let message = builder.build().unwrap_or_else(|_| unreachable!());
        ReceivedMessage {
            receipt: Receipt::new(
                "test",
                QueueName::new("q").unwrap_or_else(|_| unreachable!()),
                None,
                (),
            ),
            delivery: queue_core::DeliveryInfo {
                delivery_count: 1,
                enqueued_at: SystemTime::now(),
                sequence_number: None,
                expires_at: None,
                dead_letter: None,
                seal: None,
            },
            locked_until: SystemTime::now(),
            message,
        }
    }

    #[test]
    fn a_batch_splits_into_runs_that_keep_each_session_in_order() {
        let batch = vec![
            received(Some("a"), "a1"),
            received(None, "x"),
            received(Some("b"), "b1"),
            received(Some("a"), "a2"),
            received(None, "y"),
            received(Some("a"), "a3"),
        ];
        let runs: Vec<Vec<String>> = in_session_runs(batch)
            .iter()
            .map(|run| {
                run.iter()
                    .map(|m| String::from_utf8_lossy(m.body()).into_owned())
                    .collect()
            })
            .collect();
        assert_eq!(
            runs,
            [vec!["a1", "a2", "a3"], vec!["x"], vec!["b1"], vec!["y"]]
        );
    }
}
