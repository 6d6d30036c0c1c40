//! The processor's counts: one per outcome, feeding both the run's report and its metric.

use std::sync::atomic::{AtomicU64, Ordering};

use metrics::{Counter, Gauge, Histogram};
use queue_core::QueueName;

use super::options::ProcessorReport;

/// One outcome's count: for the run's [`ProcessorReport`] and its metric at once.
pub(super) struct Count {
    total: AtomicU64,
    meter: Counter,
}

impl Count {
    fn new(meter: Counter) -> Self {
        Count {
            total: AtomicU64::new(0),
            meter,
        }
    }

    pub(super) fn add(&self) {
        self.total.fetch_add(1, Ordering::Relaxed);
        self.meter.increment(1);
    }

    fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

/// The processor's counts and metrics, registered once per run (labels are built once, not per
/// message).
pub(super) struct Meters {
    queue: String,
    pub(super) completed: Count,
    pub(super) retried: Count,
    pub(super) dead_lettered: Count,
    pub(super) poison: Count,
    pub(super) panicked: Count,
    pub(super) lock_lost: Count,
    pub(super) expired_before_handling: Count,
    pub(super) abandoned_at_shutdown: Count,
    pub(super) settle_failed: Count,
    pub(super) handler_duration: Histogram,
    pub(super) lock_renewed: Counter,
    pub(super) lock_renewal_failed: Counter,
    pub(super) in_flight: Gauge,
}

impl Meters {
    pub(super) fn new(queue: &QueueName) -> Self {
        use crate::telemetry::metric;

        let queue = queue.to_string();
        let processed = |outcome: &'static str| {
            Count::new(metrics::counter!(
                metric::PROCESSOR_MESSAGES,
                "queue" => queue.clone(),
                "outcome" => outcome
            ))
        };
        let renewals = |result: &'static str| {
            metrics::counter!(
                metric::PROCESSOR_LOCK_RENEWALS,
                "queue" => queue.clone(),
                "result" => result
            )
        };
        Meters {
            completed: processed("completed"),
            retried: processed("retried"),
            dead_lettered: processed("dead_lettered"),
            poison: processed("poison"),
            panicked: processed("panicked"),
            lock_lost: processed("lock_lost"),
            expired_before_handling: processed("expired_before_handling"),
            abandoned_at_shutdown: processed("abandoned_at_shutdown"),
            settle_failed: processed("settle_failed"),
            handler_duration: metrics::histogram!(
                metric::PROCESSOR_HANDLER_DURATION,
                "queue" => queue.clone()
            ),
            lock_renewed: renewals("ok"),
            lock_renewal_failed: renewals("failed"),
            in_flight: metrics::gauge!(metric::PROCESSOR_IN_FLIGHT, "queue" => queue.clone()),
            queue,
        }
    }

    pub(super) fn dead_lettered_by_reason(&self, reason: &str) {
        metrics::counter!(
            crate::telemetry::metric::PROCESSOR_DEAD_LETTERED,
            "queue" => self.queue.clone(),
            "reason" => reason.to_owned()
        )
        .increment(1);
    }

    pub(super) fn report(&self) -> ProcessorReport {
        ProcessorReport {
            completed: self.completed.total(),
            retried: self.retried.total(),
            dead_lettered: self.dead_lettered.total(),
            poison: self.poison.total(),
            panicked: self.panicked.total(),
            lock_lost: self.lock_lost.total(),
            expired_before_handling: self.expired_before_handling.total(),
            abandoned_at_shutdown: self.abandoned_at_shutdown.total(),
            settle_failed: self.settle_failed.total(),
        }
    }
}
