//! Settlement of the broker's deliveries: the client's dispositions applied through the
//! provider, each answered (when the client waits for it) with the same outcome type, settled,
//! or with `rejected` and the reason (`com.microsoft:message-lock-lost`, ...) when it could not
//! be applied.

use std::sync::Arc;

use fe2o3_amqp_types::definitions::Role;
use fe2o3_amqp_types::messaging::{Accepted, DeliveryState, Modified, Rejected, Released};
use fe2o3_amqp_types::performatives::Disposition;
use queue_core::{DeadLetterReason, ErrorKind, QueueProvider, Receipt};
use serde_amqp::Value;

use super::Connection;
use super::links::{Feed, Link, LinkRole, disposition, rejected};
use crate::broker::HeldSession;
use crate::error::{Failure, ProtocolError};

impl Connection {
    /// A disposition from the client: settlements of messages the broker sent, each answered
    /// (when the client waits for it) with the same outcome type, settled, or with `rejected`
    /// and the reason when it could not be applied.
    pub(super) async fn on_disposition(
        &mut self,
        channel: u16,
        disposition: Disposition,
    ) -> Result<(), ProtocolError> {
        if disposition.role == Role::Sender {
            // About deliveries the client sent: the broker settles those itself, at once.
            return Ok(());
        }
        let first = disposition.first;
        let last = disposition.last.unwrap_or(first);
        let links = self.session(channel)?.links();
        for id in links {
            let Some(mut link) = self.links.remove(&id) else {
                continue;
            };
            let result = self.settle_link(&mut link, first, last, &disposition).await;
            self.links.insert(id, link);
            result?;
        }
        Ok(())
    }

    async fn settle_link(
        &mut self,
        link: &mut Link,
        first: u32,
        last: u32,
        disposition: &Disposition,
    ) -> Result<(), ProtocolError> {
        let channel = link.channel;
        let LinkRole::Sending(sending) = &mut link.role else {
            return Ok(());
        };
        // Delivery ids come from the client: walk the deliveries the link holds, not the range.
        let mut ids: Vec<u32> = sending
            .unsettled
            .keys()
            .copied()
            .filter(|id| (first..=last).contains(id))
            .collect();
        ids.sort_unstable();
        let session = match &sending.feed {
            Feed::Queue { session, .. } => session.clone(),
            Feed::Replies { .. } => None,
        };
        for id in ids {
            let Some(unsettled) = sending.unsettled.remove(&id) else {
                continue;
            };
            tracing::debug!(
                link = %link.name,
                delivery_id = id,
                state = ?disposition.state,
                settled = disposition.settled,
                "disposition"
            );
            let Some(state) = &disposition.state else {
                // Settled without an outcome: the lock stays until it expires.
                continue;
            };
            let Some(result) = self
                .apply(&unsettled.receipt, state, session.as_ref())
                .await
            else {
                // Not an outcome (`received`): nothing is settled yet.
                sending.unsettled.insert(id, unsettled);
                continue;
            };
            self.broker.locks.remove(&unsettled.token);
            if !disposition.settled {
                let echo = match result {
                    Ok(state) => state,
                    Err(failure) => rejected(&failure),
                };
                let mut reply = self::disposition(id, echo);
                reply.role = Role::Sender;
                self.send(channel, &reply)?;
            }
        }
        Ok(())
    }

    /// Applies an outcome to a delivery through the provider; the echo to send back, or why it
    /// failed. `None` when the state settles nothing.
    async fn apply(
        &self,
        receipt: &Receipt,
        state: &DeliveryState,
        session: Option<&Arc<HeldSession>>,
    ) -> Option<Result<DeliveryState, Failure>> {
        let provider = &self.broker.provider;
        let (result, echo) = match state {
            DeliveryState::Accepted(_) => (
                provider.complete(receipt).await,
                DeliveryState::Accepted(Accepted {}),
            ),
            DeliveryState::Released(_) => (
                provider.release(receipt),
                DeliveryState::Released(Released {}),
            ),
            DeliveryState::Modified(modified) if modified.undeliverable_here == Some(true) => {
                return Some(Err(Failure::not_allowed(
                    "this emulator does not support deferral (modified with undeliverable-here)",
                )));
            }
            DeliveryState::Modified(modified) => (
                provider.abandon(receipt, None).await,
                DeliveryState::Modified(Modified {
                    delivery_failed: modified.delivery_failed,
                    undeliverable_here: modified.undeliverable_here,
                    message_annotations: None,
                }),
            ),
            DeliveryState::Rejected(rejected) => {
                let reason = dead_letter_reason(rejected);
                (
                    provider.dead_letter(receipt, reason).await,
                    DeliveryState::Rejected(Rejected { error: None }),
                )
            }
            _ => return None,
        };
        Some(match result {
            Ok(()) => Ok(echo),
            Err(error) if error.kind() == ErrorKind::LockLost => {
                let session_lost = match session {
                    Some(held) => held
                        .receiver
                        .state()
                        .await
                        .is_err_and(|error| error.kind() == ErrorKind::LockLost),
                    None => false,
                };
                Err(if session_lost {
                    Failure::session_lock_lost(error.message().to_owned())
                } else {
                    Failure::message_lock_lost(error.message().to_owned())
                })
            }
            Err(error) => Err(Failure::from(error)),
        })
    }
}

/// The dead-letter reason and description of a `rejected` outcome: Python and .NET put them in
/// the error's info (`DeadLetterReason`, `DeadLetterErrorDescription`), with the description
/// also as the error's description.
fn dead_letter_reason(rejected: &Rejected) -> DeadLetterReason {
    let Some(error) = &rejected.error else {
        return DeadLetterReason::new("", "");
    };
    let info = |key: &str| {
        error.info.as_ref().and_then(|info| {
            info.iter()
                .find(|(name, _)| name.as_str() == key)
                .and_then(|(_, value)| match value {
                    Value::String(text) => Some(text.clone()),
                    Value::Symbol(text) => Some(text.as_str().to_owned()),
                    _ => None,
                })
        })
    };
    let reason = info("DeadLetterReason").unwrap_or_default();
    let description = info("DeadLetterErrorDescription")
        .or_else(|| error.description.clone())
        .unwrap_or_default();
    DeadLetterReason::new(reason, description)
}

#[cfg(test)]
mod tests {
    use fe2o3_amqp_types::definitions::Error;
    use fe2o3_amqp_types::primitives::{OrderedMap, Symbol};

    use super::*;

    #[test]
    fn dead_letter_reasons_come_from_the_error_info() {
        let mut info = OrderedMap::new();
        info.insert(
            Symbol::from("DeadLetterReason"),
            Value::String("Bad".into()),
        );
        info.insert(
            Symbol::from("DeadLetterErrorDescription"),
            Value::String("very bad".into()),
        );
        let rejected = Rejected {
            error: Some(Error {
                condition: fe2o3_amqp_types::definitions::ErrorCondition::Custom(Symbol::from(
                    "com.microsoft:dead-letter",
                )),
                description: Some("ignored when info has one".into()),
                info: Some(Box::new(info)),
            }),
        };
        let reason = dead_letter_reason(&rejected);
        assert_eq!(
            (reason.reason.as_str(), reason.description.as_str()),
            ("Bad", "very bad")
        );
        let bare = dead_letter_reason(&Rejected { error: None });
        assert!(bare.reason.is_empty());
    }
}
