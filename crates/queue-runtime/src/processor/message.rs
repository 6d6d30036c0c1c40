//! One message's life in the processor: poison check, the handler, and settling its outcome.

use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use queue_core::{DeadLetterReason, QueueError, ReceivedMessage};
use tokio::time::Instant;
use tracing::{Instrument, debug, error, info, warn};

use super::Shared;
use super::handler::{HandlerContext, Outcome};
use crate::telemetry::{self, propagation};

/// What to do with the messages after this one in the same ordered run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Next {
    Continue,
    /// This message goes back (or its fate is unknown): the later ones must not overtake it.
    GiveBackTheRest,
}

/// How one handler call ended.
enum Ended {
    Handled(Outcome),
    Panicked,
    LockLost(QueueError),
    Deadline,
}

/// Handles one message whose lock is held, in its span. `lock_lost` resolves if the lock is
/// lost meanwhile (for a session message, the session's keeper stops the whole session
/// instead, so it never resolves).
pub(super) async fn handle_one(
    shared: &Shared,
    message: ReceivedMessage,
    lock_lost: impl Future<Output = QueueError>,
) -> Next {
    let span = telemetry::operation_span(
        shared.client.provider().messaging_system(),
        "process",
        "process",
        &shared.queue,
    );
    span.record("messaging.message.id", message.message_id().as_str());
    span.record("messaging.message.delivery_count", message.delivery_count());
    if let Some(session) = message.session_id() {
        span.record("session", shared.session_ids.display(session));
    }
    propagation::link(&span, &message.message);
    handle_in_span(shared, message, lock_lost)
        .instrument(span)
        .await
}

async fn handle_in_span(
    shared: &Shared,
    message: ReceivedMessage,
    lock_lost: impl Future<Output = QueueError>,
) -> Next {
    if shared.shutdown.is_cancelled() {
        // Received but not started: back to the queue for the next processor.
        give_back(shared, &message).await;
        return Next::GiveBackTheRest;
    }
    let max = shared.options.max_delivery_count;
    if message.delivery_count() > max {
        let reason = DeadLetterReason::new(
            DeadLetterReason::MAX_DELIVERY_COUNT_EXCEEDED,
            format!(
                "delivered {} times; the processor allows {max}",
                message.delivery_count()
            ),
        );
        warn!(
            delivery_count = message.delivery_count(),
            "poison message dead-lettered"
        );
        return match dead_letter(shared, &message, &reason).await {
            Ok(()) => {
                shared.meters.poison.add();
                shared.meters.dead_lettered_by_reason(&reason.reason);
                Next::Continue
            }
            Err(error) => settle_failed(shared, &error),
        };
    }
    if shared
        .handled_but_unsettled
        .contains_key(message.message_id())
    {
        // Handled already; only its complete was lost with the lock.
        info!("redelivery of a message already handled; completing it without the handler");
        let next = settle(shared, &message, Outcome::Complete).await;
        if next == Next::Continue {
            shared
                .handled_but_unsettled
                .invalidate(message.message_id());
        }
        return next;
    }

    let cancellation = shared.hard_stop.child_token();
    let context = HandlerContext {
        queue: shared.queue.clone(),
        cancellation: cancellation.clone(),
    };
    let can_delay = shared.client.capabilities().abandon_with_delay;
    let handler = shared.handler.clone();
    let handed = message.clone();
    let work = async move {
        match AssertUnwindSafe(handler.handle(handed, context))
            .catch_unwind()
            .await
        {
            Ok(Outcome::Retry { after: Some(delay) }) if !can_delay => {
                // The provider cannot delay a redelivery: hold the message (its lock renewed
                // meanwhile) for the delay, then give it back.
                tokio::time::sleep(delay).await;
                Ended::Handled(Outcome::retry())
            }
            Ok(outcome) => Ended::Handled(outcome),
            Err(_) => Ended::Panicked,
        }
    };
    shared.meters.in_flight.increment(1.0);
    let started = Instant::now();
    let ended = tokio::select! {
        biased;
        ended = work => ended,
        error = lock_lost => Ended::LockLost(error),
        () = shared.hard_stop.cancelled() => Ended::Deadline,
    };
    cancellation.cancel();
    shared.meters.in_flight.decrement(1.0);
    shared
        .meters
        .handler_duration
        .record(started.elapsed().as_secs_f64());

    match ended {
        Ended::Handled(outcome) => settle(shared, &message, outcome).await,
        Ended::Panicked => {
            error!("handler panicked; the message will be delivered again");
            shared.meters.panicked.add();
            settle(shared, &message, Outcome::retry()).await
        }
        Ended::LockLost(error) => {
            shared.meters.lock_lost.add();
            warn!(%error, "lock lost while the handler ran; not settled, the broker redelivers it");
            Next::GiveBackTheRest
        }
        Ended::Deadline => {
            shared.meters.abandoned_at_shutdown.add();
            warn!("shutdown deadline passed; handler stopped, message given back");
            give_back(shared, &message).await;
            Next::GiveBackTheRest
        }
    }
}

/// A message whose lock ran out before its handler could start: it is not handled (another
/// consumer may already hold it); it is given back, counted and logged.
pub(super) async fn expired_before_handling(
    shared: &Shared,
    message: &ReceivedMessage,
    error: &QueueError,
) {
    shared.meters.expired_before_handling.add();
    warn!(
        messaging.destination.name = %shared.queue,
        messaging.message.id = %message.message_id(),
        %error,
        "the lock ran out before the handler could start; not handled, the broker delivers it again"
    );
    give_back(shared, message).await;
}

/// Gives a message back at once; a failure only delays its redelivery until its lock expires.
pub(super) async fn give_back(shared: &Shared, message: &ReceivedMessage) {
    if let Err(error) = shared.client.abandon(message, None).await {
        debug!(
            messaging.destination.name = %shared.queue,
            messaging.message.id = %message.message_id(),
            %error,
            "could not give the message back; it returns when its lock expires"
        );
    }
}

async fn dead_letter(
    shared: &Shared,
    message: &ReceivedMessage,
    reason: &DeadLetterReason,
) -> queue_core::Result<()> {
    shared
        .client
        .dead_letter(message, &reason.reason, &reason.description)
        .await
}

async fn settle(shared: &Shared, message: &ReceivedMessage, outcome: Outcome) -> Next {
    match outcome {
        Outcome::Complete => match shared.client.complete(message).await {
            Ok(()) => {
                shared.meters.completed.add();
                Next::Continue
            }
            Err(error) if error.is_lock_lost() => {
                shared
                    .handled_but_unsettled
                    .insert(message.message_id().clone(), ());
                shared.meters.lock_lost.add();
                warn!(%error, "handled, but the lock was lost before the complete; a redelivery here is completed without the handler");
                Next::GiveBackTheRest
            }
            Err(error) => settle_failed(shared, &error),
        },
        // A delay the provider cannot take was already waited out in `handle_in_span`.
        Outcome::Retry { after: delay } => match shared.client.abandon(message, delay).await {
            Ok(()) => {
                shared.meters.retried.add();
                debug!(?delay, "given back for another delivery");
                Next::GiveBackTheRest
            }
            Err(error) => settle_failed(shared, &error),
        },
        Outcome::DeadLetter(reason) => match dead_letter(shared, message, &reason).await {
            Ok(()) => {
                shared.meters.dead_lettered.add();
                shared.meters.dead_lettered_by_reason(&reason.reason);
                info!(reason = %reason.reason, "dead-lettered by the handler");
                Next::Continue
            }
            Err(error) => settle_failed(shared, &error),
        },
    }
}

/// A settle failed: the message stays locked until its lock expires, then comes back. Later
/// messages of its session must wait for it.
fn settle_failed(shared: &Shared, error: &QueueError) -> Next {
    if error.is_lock_lost() {
        shared.meters.lock_lost.add();
    } else {
        shared.meters.settle_failed.add();
    }
    warn!(%error, "settling failed; the message will be delivered again");
    Next::GiveBackTheRest
}
