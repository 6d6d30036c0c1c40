//! How a processor works a queue ([`ProcessorOptions`]) and what it did ([`ProcessorReport`]).

use std::time::Duration;

use queue_core::{ErrorKind, QueueError, Result};

/// How the processor works a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessorOptions {
    /// Handlers running at once; on a session queue, sessions held at once (each handled one
    /// message at a time, in order).
    pub max_concurrency: usize,
    /// Whether the queue is a session queue: its messages are handled in order per session.
    /// Providers with sessions hold each session with one worker; providers whose plain receive
    /// keeps session order (SQS FIFO) get the same guarantee through it.
    pub sessions: bool,
    /// The most messages one receive asks for (queues without session receivers; a session
    /// receiver fetches one message at a time, see docs/processor.md).
    pub receive_batch: usize,
    /// How long one receive (or session accept) waits; also the longest a shutdown waits for a
    /// receive in progress.
    pub receive_wait: Duration,
    /// While handlers run, how long the next receive waits for more of them to finish, so that
    /// it asks for a full batch (`receive_batch` messages, or `max_concurrency` if fewer) instead
    /// of the one or two slots free at that moment. Settles are batched, so slots tend to free
    /// together. Zero asks at once for whatever is free.
    pub receive_gather: Duration,
    /// A session with no message for this long is released, so another one can be taken.
    pub session_idle: Duration,
    /// A message delivered more times than this is dead-lettered with
    /// `MaxDeliveryCountExceeded` before its handler sees it.
    pub max_delivery_count: u32,
    /// The longest a lock is renewed while one handler runs; after that, it is left to expire.
    pub max_lock_renewal: Duration,
    /// After shutdown is asked for, how long running handlers may take before they are stopped
    /// and their messages given back.
    pub shutdown_deadline: Duration,
}

impl Default for ProcessorOptions {
    fn default() -> Self {
        ProcessorOptions {
            max_concurrency: 8,
            sessions: false,
            receive_batch: 10,
            receive_wait: Duration::from_secs(1),
            receive_gather: Duration::from_millis(10),
            session_idle: Duration::from_secs(1),
            max_delivery_count: 10,
            max_lock_renewal: Duration::from_secs(300),
            shutdown_deadline: Duration::from_secs(30),
        }
    }
}

impl ProcessorOptions {
    /// Handlers (or sessions) at once.
    #[must_use]
    pub fn with_max_concurrency(mut self, max_concurrency: usize) -> Self {
        self.max_concurrency = max_concurrency;
        self
    }

    /// A session queue: order per session.
    #[must_use]
    pub fn with_sessions(mut self, sessions: bool) -> Self {
        self.sessions = sessions;
        self
    }

    /// The most messages per receive.
    #[must_use]
    pub fn with_receive_batch(mut self, receive_batch: usize) -> Self {
        self.receive_batch = receive_batch;
        self
    }

    /// How long one receive waits.
    #[must_use]
    pub fn with_receive_wait(mut self, wait: Duration) -> Self {
        self.receive_wait = wait;
        self
    }

    /// How long a receive waits for more free slots.
    #[must_use]
    pub fn with_receive_gather(mut self, gather: Duration) -> Self {
        self.receive_gather = gather;
        self
    }

    /// How long an idle session is held.
    #[must_use]
    pub fn with_session_idle(mut self, idle: Duration) -> Self {
        self.session_idle = idle;
        self
    }

    /// Deliveries before a message is poison.
    #[must_use]
    pub fn with_max_delivery_count(mut self, max_delivery_count: u32) -> Self {
        self.max_delivery_count = max_delivery_count;
        self
    }

    /// The longest a lock is renewed for one handler.
    #[must_use]
    pub fn with_max_lock_renewal(mut self, max: Duration) -> Self {
        self.max_lock_renewal = max;
        self
    }

    /// How long shutdown waits for running handlers.
    #[must_use]
    pub fn with_shutdown_deadline(mut self, deadline: Duration) -> Self {
        self.shutdown_deadline = deadline;
        self
    }

    /// Fails with a [`Config`](ErrorKind::Config) error naming the first invalid field.
    pub fn validate(&self) -> Result<()> {
        let invalid = |what: &str| {
            Err(QueueError::new(
                ErrorKind::Config,
                format!("processor: {what}"),
            ))
        };
        if self.max_concurrency == 0 {
            return invalid("max_concurrency must be at least 1");
        }
        if self.receive_batch == 0 {
            return invalid("receive_batch must be at least 1");
        }
        if self.max_delivery_count == 0 {
            return invalid("max_delivery_count must be at least 1");
        }
        Ok(())
    }
}

/// What a processor did, counted from its start to its stop.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessorReport {
    /// Messages completed.
    pub completed: u64,
    /// Messages given back for another delivery (handler asked, or it panicked).
    pub retried: u64,
    /// Messages the handler dead-lettered.
    pub dead_lettered: u64,
    /// Messages dead-lettered for too many deliveries, unseen by the handler.
    pub poison: u64,
    /// Handler calls that panicked (each also counted in `retried`).
    pub panicked: u64,
    /// Messages whose lock was lost before they were settled (redelivered by the broker).
    pub lock_lost: u64,
    /// Messages whose lock had run out before their handler could start: given back unseen
    /// (the broker delivers them again).
    pub expired_before_handling: u64,
    /// Handlers stopped at the shutdown deadline, their messages given back.
    pub abandoned_at_shutdown: u64,
    /// Settles that failed for another reason (the broker redelivers the message).
    pub settle_failed: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_options_are_refused() {
        assert!(ProcessorOptions::default().validate().is_ok());
        assert!(
            ProcessorOptions::default()
                .with_max_concurrency(0)
                .validate()
                .is_err()
        );
        assert!(
            ProcessorOptions::default()
                .with_max_delivery_count(0)
                .validate()
                .is_err()
        );
    }
}
