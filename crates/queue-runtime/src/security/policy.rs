//! Per-queue security policy.

use std::time::Duration;

use serde::Deserialize;

/// What the client does with a message that arrives unsealed on a queue whose keys are
/// configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnsealedPolicy {
    /// Refuse it: dead-letter it as `rejected: unsealed`. The default.
    #[default]
    Reject,
    /// Hand it to the application as it is (a queue shared with senders that do not seal).
    Allow,
    /// Hand it over, and log a warning and count `queue_crypto_errors_total{error_type="unsealed"}`
    /// for each one (the step before `Reject` when migrating a queue to sealing).
    AllowWithAlert,
}

/// What the client does when the replay store cannot be reached (a shared store's outage).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplayFailure {
    /// Give the message back (it waits, nothing is dead-lettered or lost), log and count
    /// `queue_replay_store_errors_total`; stop receiving from the queue until the store answers
    /// again. The default.
    #[default]
    FailClosed,
    /// Hand the message over without the replay check (freshness still applies), log a warning
    /// and count `queue_replay_store_failed_open_total`: availability over replay protection,
    /// chosen per queue.
    FailOpen,
}

/// Which envelope a queue's messages are sealed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SealMode {
    /// Version 1: one shared master key that every party holds. Whoever can seal can also open,
    /// and any holder can seal as any other. The default.
    #[default]
    SharedKey,
    /// Version 2: sealed to the consumers' recipient public key and signed by the producer's
    /// signing key. Producers seal but cannot open; consumers know which producer sealed each
    /// message, and refuse a shared-key envelope on this queue (anyone holding the shared key
    /// could have sealed it).
    PublicKey,
}

/// The security policy of one queue. Secure by default: seal on send, refuse unsealed messages,
/// a 5-minute freshness window with 1 minute of clock skew tolerated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueuePolicy {
    /// Seal messages sent to this queue.
    pub seal: bool,
    /// Which envelope seals them, and which envelopes are accepted from it.
    pub mode: SealMode,
    /// What to do with unsealed messages received from it.
    pub unsealed: UnsealedPolicy,
    /// A sealed message is refused when the broker enqueued it later than this after it was
    /// sealed (or after its not-before time, for a scheduled message). The broker's enqueue time
    /// is the reference, not the time of processing: a backlog or redeliveries do not age a
    /// message; re-sending its bytes later does.
    pub freshness_window: Duration,
    /// How far the sender's, the broker's and this process's clocks may disagree.
    pub clock_skew: Duration,
    /// What to do when the replay store cannot be reached.
    pub replay_failure: ReplayFailure,
}

impl Default for QueuePolicy {
    fn default() -> Self {
        QueuePolicy {
            seal: true,
            mode: SealMode::SharedKey,
            unsealed: UnsealedPolicy::Reject,
            freshness_window: Duration::from_secs(5 * 60),
            clock_skew: Duration::from_secs(60),
            replay_failure: ReplayFailure::FailClosed,
        }
    }
}

impl QueuePolicy {
    /// Sets [`seal`](Self::seal).
    #[must_use]
    pub fn with_seal(mut self, seal: bool) -> Self {
        self.seal = seal;
        self
    }

    /// Sets [`mode`](Self::mode).
    #[must_use]
    pub fn with_mode(mut self, mode: SealMode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets [`unsealed`](Self::unsealed).
    #[must_use]
    pub fn with_unsealed(mut self, unsealed: UnsealedPolicy) -> Self {
        self.unsealed = unsealed;
        self
    }

    /// Sets [`freshness_window`](Self::freshness_window).
    #[must_use]
    pub fn with_freshness_window(mut self, window: Duration) -> Self {
        self.freshness_window = window;
        self
    }

    /// Sets [`clock_skew`](Self::clock_skew).
    #[must_use]
    pub fn with_clock_skew(mut self, skew: Duration) -> Self {
        self.clock_skew = skew;
        self
    }

    /// Sets [`replay_failure`](Self::replay_failure).
    #[must_use]
    pub fn with_replay_failure(mut self, failure: ReplayFailure) -> Self {
        self.replay_failure = failure;
        self
    }

    /// How long a completed envelope id must be remembered for this queue: past the window in
    /// which a copy could still be enqueued and judged fresh.
    pub(crate) fn replay_horizon(&self) -> Duration {
        self.freshness_window
            .saturating_add(self.clock_skew.saturating_mul(2))
    }
}
