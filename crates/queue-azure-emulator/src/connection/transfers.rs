//! What clients send on links: messages (single, batched, in several frames) for a queue, and
//! requests for a node; each settled at once with the outcome.

use bytes::Bytes;
use fe2o3_amqp_types::messaging::{Accepted, DeliveryState};
use fe2o3_amqp_types::performatives::Transfer;
use queue_core::QueueProvider;

use super::Connection;
use super::links::{
    Link, LinkRole, MAX_REQUEST_SIZE, Partial, SEND_CREDIT, Target, disposition, rejected,
};
use crate::broker::Entity;
use crate::error::{Failure, ProtocolError, condition};
use crate::message::{self, Inbound};

impl Connection {
    /// A transfer from the client: a frame of a message (or batch, or request) for the broker.
    pub(super) async fn on_transfer(
        &mut self,
        channel: u16,
        transfer: Transfer,
        payload: Bytes,
    ) -> Result<(), ProtocolError> {
        let session = self.session(channel)?;
        let top_up = session.received_frame();
        let link_id = session.handles.get(&transfer.handle.0).copied();
        if let Some(flow) = top_up {
            self.send(channel, &flow)?;
        }
        let Some(id) = link_id else {
            return Err(ProtocolError::Violation {
                condition: condition::UNATTACHED_HANDLE,
                description: format!(
                    "a transfer on handle {}, which is not attached",
                    transfer.handle.0
                ),
            });
        };
        let Some(mut link) = self.links.remove(&id) else {
            return Ok(());
        };
        let result = self.link_transfer(&mut link, transfer, payload).await;
        self.links.insert(id, link);
        result
    }

    async fn link_transfer(
        &mut self,
        link: &mut Link,
        transfer: Transfer,
        payload: Bytes,
    ) -> Result<(), ProtocolError> {
        let (channel, local_handle) = (link.channel, link.local_handle);
        let receiving = match &mut link.role {
            LinkRole::Receiving(receiving) => receiving,
            LinkRole::Closing => return Ok(()),
            _ => {
                return Err(ProtocolError::illegal(
                    "a transfer from the client on a link where the client receives",
                ));
            }
        };
        if transfer.aborted {
            receiving.partial = None;
            return Ok(());
        }
        let mut partial = match receiving.partial.take() {
            Some(partial) => partial,
            None => Partial {
                delivery_id: transfer.delivery_id.ok_or_else(|| {
                    ProtocolError::illegal("the first transfer of a delivery has no delivery-id")
                })?,
                settled: false,
                format: transfer.message_format.unwrap_or(0),
                payload: Vec::new(),
                oversized: false,
            },
        };
        partial.settled |= transfer.settled.unwrap_or(false);
        let limit = match &receiving.target {
            Target::Entity(entity) => entity.config.max_message_size() as usize,
            _ => MAX_REQUEST_SIZE,
        };
        if !partial.oversized {
            if partial.payload.len() + payload.len() > limit {
                partial.oversized = true;
                partial.payload = Vec::new();
            } else {
                partial.payload.extend_from_slice(&payload);
            }
        }
        if transfer.more {
            receiving.partial = Some(partial);
            return Ok(());
        }
        let delay = self.broker.config.answer_delay();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        receiving.delivery_count = receiving.delivery_count.wrapping_add(1);
        receiving.credit = receiving.credit.saturating_sub(1);
        let state = if partial.oversized {
            rejected(&Failure::new(
                condition::MESSAGE_SIZE_EXCEEDED,
                413,
                format!("the message is larger than this link's max-message-size of {limit} bytes"),
            ))
        } else {
            let payload = Bytes::from(partial.payload);
            match &receiving.target {
                Target::Entity(entity) => {
                    match self.enqueue(entity, partial.format, payload).await {
                        Ok(()) => DeliveryState::Accepted(Accepted {}),
                        Err(failure) => rejected(&failure),
                    }
                }
                Target::Management(node) => {
                    let node = node.clone();
                    self.on_request(channel, Some(&node), &payload).await?;
                    DeliveryState::Accepted(Accepted {})
                }
                Target::Cbs => {
                    self.on_request(channel, None, &payload).await?;
                    DeliveryState::Accepted(Accepted {})
                }
            }
        };
        if !partial.settled {
            self.send(channel, &disposition(partial.delivery_id, state))?;
        }
        if receiving.credit < SEND_CREDIT / 2 {
            receiving.credit = SEND_CREDIT;
            let mut flow = self.session(channel)?.flow(Some(local_handle));
            flow.delivery_count = Some(receiving.delivery_count);
            flow.link_credit = Some(SEND_CREDIT);
            self.send(channel, &flow)?;
        }
        Ok(())
    }

    /// Puts a sent message (or each message of a batch) into its queue.
    async fn enqueue(&self, entity: &Entity, format: u32, payload: Bytes) -> Result<(), Failure> {
        let mut messages = Vec::new();
        for encoded in message::unbatch(format, payload)? {
            crate::management::check_size(entity, encoded.len())?;
            messages.push(Inbound::read(encoded)?.into_message()?);
        }
        let provider = &self.broker.provider;
        if messages.len() == 1 {
            if let Some(message) = messages.pop() {
                provider
                    .send(&entity.name, message)
                    .await
                    .map_err(Failure::from)?;
            }
            return Ok(());
        }
        let outcomes = provider
            .send_batch(&entity.name, messages)
            .await
            .map_err(Failure::from)?;
        match outcomes.into_iter().find_map(Result::err) {
            Some(error) => Err(Failure::from(error)),
            None => Ok(()),
        }
    }
}
