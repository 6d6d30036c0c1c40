//! The SDK's receivers behind one small trait, so plain and session links share the receive
//! loop and the settlement code.
//!
//! Every SDK receiver method takes `&mut self`, so each link sits behind its own async mutex.
//! A long wait is cut into short polls that let the mutex go in between: a settle queued on
//! the link gets it within one poll, not after the whole wait.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use azservicebus::primitives::service_bus_received_message::ServiceBusReceivedMessage;
use azservicebus::receiver::DeadLetterOptions;
use azservicebus::{ServiceBusReceiver, ServiceBusSessionReceiver};
use queue_core::{DeadLetterReason, QueueError};

use crate::provider::NAME;
use crate::sdk::sdk_call;

/// The longest single poll: the most a settle waits behind a receive on the same link.
pub(crate) const POLL: Duration = Duration::from_secs(1);
/// The shortest poll, for `wait == 0`: a network broker needs a round trip to say "nothing".
pub(crate) const MIN_POLL: Duration = Duration::from_millis(250);
/// After the first message arrived, how long to keep collecting up to `max_messages` (the SDK
/// would otherwise wait the whole poll for a full batch).
pub(crate) const MORE_MESSAGES_WAIT: Duration = Duration::from_millis(100);
/// After a receive's last poll came back empty, one more poll this short. The SDK ends an
/// empty poll by draining the link's credit without waiting for the broker, and the broker
/// answers a drain by sending what it has: those deliveries land in the link's buffer after the
/// poll returned, where they would sit locked until a later receive on this link. The drain
/// also leaves the SDK's next credit stale (its flow carries the delivery count from before the
/// broker's answer, so the broker grants nothing), which is why the first poll after an empty
/// one can stay empty however much is queued. The grace poll collects what the drain brought.
pub(crate) const DRAIN_GRACE: Duration = Duration::from_millis(50);

/// What a receive link does, plain or session.
///
/// The futures are the SDK's own, unboxed: a caller boxes them ([`sdk_call`]) or awaits them
/// in place, as a batch of settles does.
pub(crate) trait LinkReceiver: Send {
    /// What the link delivers (the SDK's received message; a number in the unit tests).
    type Delivery: Send + Sync;

    fn receive_for(
        &mut self,
        max_messages: u32,
        wait: Duration,
    ) -> impl Future<Output = Result<Vec<Self::Delivery>, azure_core::Error>> + Send;
    /// Settles `message` on this link (the one that delivered it).
    fn settle(
        &mut self,
        message: &Self::Delivery,
        how: Settle,
    ) -> impl Future<Output = Result<(), azure_core::Error>> + Send;
}

/// How to settle a delivery.
pub(crate) enum Settle {
    Complete,
    Abandon,
    DeadLetter(DeadLetterReason),
}

impl Settle {
    /// An abandon; Service Bus has no delayed one (the message is available again at once).
    pub(crate) fn abandon_at_once(delay: Option<Duration>) -> Result<Settle, QueueError> {
        if delay.is_some_and(|delay| !delay.is_zero()) {
            return Err(QueueError::unsupported(NAME, "abandon with a delay"));
        }
        Ok(Settle::Abandon)
    }

    pub(crate) fn operation(&self) -> &'static str {
        match self {
            Settle::Complete => "complete",
            Settle::Abandon => "abandon",
            Settle::DeadLetter(_) => "dead_letter",
        }
    }
}

/// What the reason adds to the message: two application properties (names, values, and a few
/// bytes of AMQP framing each).
fn dead_letter_properties_size(reason: &DeadLetterReason) -> usize {
    const FRAMING: usize = 2 * 8;
    "DeadLetterReason".len()
        + "DeadLetterErrorDescription".len()
        + reason.reason.len()
        + reason.description.len()
        + FRAMING
}

fn dead_letter_options(reason: DeadLetterReason) -> DeadLetterOptions {
    // Every accepted message keeps DEAD_LETTER_RESERVE free: a reason cut to it always fits.
    let reason = reason
        .bounded(queue_core::DEAD_LETTER_RESERVE, dead_letter_properties_size)
        .unwrap_or(reason);
    DeadLetterOptions {
        dead_letter_reason: Some(reason.reason),
        dead_letter_error_description: Some(reason.description),
        properties_to_modify: None,
    }
}

macro_rules! link_receiver {
    ($type:ty) => {
        impl LinkReceiver for $type {
            type Delivery = ServiceBusReceivedMessage;

            async fn receive_for(
                &mut self,
                max_messages: u32,
                wait: Duration,
            ) -> Result<Vec<ServiceBusReceivedMessage>, azure_core::Error> {
                self.receive_messages_with_max_wait_time(max_messages, wait)
                    .await
            }

            async fn settle(
                &mut self,
                message: &ServiceBusReceivedMessage,
                how: Settle,
            ) -> Result<(), azure_core::Error> {
                match how {
                    Settle::Complete => self.complete_message(message).await,
                    Settle::Abandon => self.abandon_message(message, None).await,
                    Settle::DeadLetter(reason) => {
                        self.dead_letter_message(message, dead_letter_options(reason))
                            .await
                    }
                }
            }
        }
    };
}

link_receiver!(ServiceBusReceiver);
link_receiver!(ServiceBusSessionReceiver);

/// Whether a queue (or a session) had more messages than the last receive took: its last poll
/// filled the batch it asked for.
///
/// A poll asks for one message first and for the rest once it came, so a lone message does
/// not wait for a batch to fill; that costs a second SDK call per poll (a flow frame and a
/// round trip of its own: about 9 µs of client CPU per message in batches of ten). With a
/// backlog the first message is as good as there, so the poll asks for the whole batch at once.
#[derive(Debug, Default)]
pub(crate) struct Backlog(AtomicBool);

impl Backlog {
    fn likely(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn record(&self, asked: u32, got: usize) {
        let filled = u32::try_from(got).is_ok_and(|got| got >= asked);
        self.0.store(filled, Ordering::Relaxed);
    }
}

/// One poll of a receive: up to `max_messages`, returning soon after the first arrived.
///
/// After a poll that filled its batch (`backlog`), the whole batch is asked for at once and
/// waited for at most [`MORE_MESSAGES_WAIT`]: as long as a partial batch waits today. If that
/// finds nothing, the backlog is gone and the poll returns empty; the receive's next poll waits
/// for a first message again.
pub(crate) async fn poll<R: LinkReceiver + ?Sized>(
    receiver: &mut R,
    max_messages: u32,
    wait: Duration,
    backlog: &Backlog,
) -> Result<Vec<R::Delivery>, azure_core::Error> {
    if max_messages > 1 && backlog.likely() {
        let messages =
            sdk_call(receiver.receive_for(max_messages, wait.min(MORE_MESSAGES_WAIT))).await?;
        backlog.record(max_messages, messages.len());
        return Ok(messages);
    }
    let mut messages = sdk_call(receiver.receive_for(1, wait)).await?;
    if !messages.is_empty() && max_messages > 1 {
        messages
            .extend(sdk_call(receiver.receive_for(max_messages - 1, MORE_MESSAGES_WAIT)).await?);
        backlog.record(max_messages, messages.len());
    }
    Ok(messages)
}

/// How long the next poll of a receive that must end at `deadline` may wait.
fn next_poll(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .clamp(MIN_POLL, POLL)
}

/// The polls of one receive (of a queue or of a session): polls of at most [`POLL`] until its
/// wait is over, then one [`DRAIN_GRACE`] poll for what the last drain brought.
///
/// The wait is for messages: it starts at the first poll, once the link is attached, as SQS's
/// long poll starts once the request arrived. Counting a first attach (a connection, a CBS
/// token, the link: hundreds of milliseconds on a busy machine) against a short wait would end
/// it before the first message could come.
pub(crate) struct Polls {
    wait: Duration,
    deadline: Option<Instant>,
    grace: bool,
}

impl Polls {
    /// The polls of a receive that waits `wait` from its first poll.
    pub(crate) fn new(wait: Duration) -> Self {
        Polls {
            wait,
            deadline: None,
            grace: false,
        }
    }

    fn deadline(&mut self) -> Instant {
        *self
            .deadline
            .get_or_insert_with(|| Instant::now() + self.wait)
    }

    /// How long the next poll waits.
    pub(crate) fn next_wait(&mut self) -> Duration {
        if self.grace {
            DRAIN_GRACE
        } else {
            next_poll(self.deadline())
        }
    }

    /// After a poll: whether the receive is over (something arrived, or the grace poll ran).
    pub(crate) fn over(&mut self, got_any: bool) -> bool {
        if got_any || self.grace {
            return true;
        }
        self.grace = Instant::now() >= self.deadline();
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_are_between_the_minimum_and_the_maximum() {
        let now = Instant::now();
        assert_eq!(next_poll(now), MIN_POLL);
        assert_eq!(next_poll(now + Duration::from_secs(30)), POLL);
        let mid = next_poll(now + Duration::from_millis(600));
        assert!(mid > MIN_POLL && mid <= Duration::from_millis(600));
    }

    #[test]
    fn a_receive_whose_wait_is_over_ends_with_one_grace_poll() {
        let mut polls = Polls::new(Duration::ZERO);
        assert_eq!(polls.next_wait(), MIN_POLL);
        assert!(
            !polls.over(false),
            "an empty first poll is followed by the grace poll"
        );
        assert_eq!(polls.next_wait(), DRAIN_GRACE);
        assert!(polls.over(false), "and nothing after it");

        let mut waiting = Polls::new(Duration::from_secs(30));
        assert!(!waiting.over(false));
        assert_eq!(waiting.next_wait(), POLL, "no grace while the wait lasts");
        assert!(waiting.over(true), "something arrived");
    }

    /// A link on a queue of `queued` messages that records what each SDK call asked for.
    struct FakeLink {
        queued: u32,
        asks: Vec<(u32, Duration)>,
    }

    impl LinkReceiver for FakeLink {
        type Delivery = u32;

        async fn receive_for(
            &mut self,
            max_messages: u32,
            wait: Duration,
        ) -> Result<Vec<u32>, azure_core::Error> {
            self.asks.push((max_messages, wait));
            let taken = max_messages.min(self.queued);
            self.queued -= taken;
            Ok((0..taken).collect())
        }

        async fn settle(&mut self, _: &u32, _: Settle) -> Result<(), azure_core::Error> {
            Ok(())
        }
    }

    /// One poll of `max` on `link`: how many it took, and the SDK calls it made.
    async fn poll_calls(
        link: &mut FakeLink,
        max: u32,
        wait: Duration,
        backlog: &Backlog,
    ) -> (usize, Vec<(u32, Duration)>) {
        link.asks.clear();
        let taken = poll(link, max, wait, backlog).await.unwrap().len();
        (taken, std::mem::take(&mut link.asks))
    }

    #[tokio::test]
    async fn a_backlog_is_received_a_batch_per_call_and_a_lone_message_is_not_kept_waiting() {
        let wait = Duration::from_secs(1);
        let backlog = Backlog::default();
        let mut link = FakeLink {
            queued: 25,
            asks: Vec::new(),
        };
        let one_first = vec![(1, wait), (9, MORE_MESSAGES_WAIT)];
        let whole_batch = vec![(10, MORE_MESSAGES_WAIT)];
        assert_eq!(
            poll_calls(&mut link, 10, wait, &backlog).await,
            (10, one_first.clone()),
            "a first message before the rest"
        );
        assert_eq!(
            poll_calls(&mut link, 10, wait, &backlog).await,
            (10, whole_batch.clone()),
            "a full batch at once"
        );
        assert_eq!(
            poll_calls(&mut link, 10, wait, &backlog).await,
            (5, whole_batch),
            "what is left"
        );
        link.queued = 1;
        assert_eq!(
            poll_calls(&mut link, 10, wait, &backlog).await,
            (1, one_first),
            "the backlog was gone: the next poll waits for one message first"
        );
        assert_eq!(
            poll_calls(&mut link, 1, wait, &backlog).await,
            (0, vec![(1, wait)]),
            "one message asked for: one call"
        );
    }
}
