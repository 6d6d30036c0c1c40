//! The SDK's receivers behind one small trait, so plain and session links share the receive
//! loop and the settlement code.
//!
//! Every SDK receiver method takes `&mut self`, so each link sits behind its own async mutex.
//! A long wait is cut into short polls that let the mutex go in between: a settle queued on
//! the link gets it within one poll, not after the whole wait.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use azservicebus::primitives::service_bus_received_message::ServiceBusReceivedMessage;
use azservicebus::receiver::DeadLetterOptions;
use azservicebus::{ServiceBusReceiver, ServiceBusSessionReceiver};
use queue_core::{DeadLetterReason, QueueError};

use crate::provider::NAME;

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
#[async_trait]
pub(crate) trait LinkReceiver: Send {
    async fn receive_for(
        &mut self,
        max_messages: u32,
        wait: Duration,
    ) -> Result<Vec<ServiceBusReceivedMessage>, azure_core::Error>;
    /// Settles `message` on this link (the one that delivered it).
    async fn settle(
        &mut self,
        message: &ServiceBusReceivedMessage,
        how: Settle,
    ) -> Result<(), azure_core::Error>;
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
        #[async_trait]
        impl LinkReceiver for $type {
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

/// One poll of a receive: up to `max_messages`, returning soon after the first arrived.
pub(crate) async fn poll<R: LinkReceiver + ?Sized>(
    receiver: &mut R,
    max_messages: u32,
    wait: Duration,
) -> Result<Vec<ServiceBusReceivedMessage>, azure_core::Error> {
    let mut messages = receiver.receive_for(1, wait).await?;
    if !messages.is_empty() && max_messages > 1 {
        messages.extend(
            receiver
                .receive_for(max_messages - 1, MORE_MESSAGES_WAIT)
                .await?,
        );
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
}
