//! What the broker sends on links: messages its pumps took (peek-lock with lock tokens, or
//! receive-and-delete), node replies, and the end of a drain.

use std::sync::Arc;

use fe2o3_amqp_types::definitions::Handle;
use fe2o3_amqp_types::performatives::Transfer;
use queue_core::{DeadLetterReason, QueueProvider, ReceivedMessage, SubQueue};
use serde_bytes::ByteBuf;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::Connection;
use super::links::{Feed, Link, LinkId, LinkRole, Sending, Unsettled};
use super::pump::{Credit, Event};
use crate::error::{Failure, ProtocolError};
use crate::frame;
use crate::locks;
use crate::message::Outgoing;

impl Connection {
    pub(super) async fn on_event(&mut self, event: Event) -> Result<(), ProtocolError> {
        match event {
            Event::Deliveries {
                link,
                messages,
                drained,
                done,
            } => self.on_deliveries(link, messages, drained, done).await,
            Event::SessionAccepted { link, result } => self.on_session_accepted(link, result).await,
            Event::SessionLost { link } => {
                self.detach_with(
                    link,
                    &Failure::session_lock_lost("the session lock expired"),
                );
                Ok(())
            }
            Event::Failed { link, failure } => {
                self.detach_with(link, &failure);
                Ok(())
            }
        }
    }

    /// Sends what the link's credit allows of messages its pump took, and releases the rest.
    async fn on_deliveries(
        &mut self,
        id: LinkId,
        messages: Vec<ReceivedMessage>,
        drained: bool,
        done: oneshot::Sender<()>,
    ) -> Result<(), ProtocolError> {
        let Some(mut link) = self.links.remove(&id) else {
            for message in &messages {
                let _ = self.broker.provider.release(&message.receipt);
            }
            return Ok(());
        };
        let result = self.deliver_all(&mut link, messages, drained).await;
        self.links.insert(id, link);
        let _ = done.send(());
        result
    }

    async fn deliver_all(
        &mut self,
        link: &mut Link,
        messages: Vec<ReceivedMessage>,
        drained: bool,
    ) -> Result<(), ProtocolError> {
        let LinkRole::Sending(sending) = &mut link.role else {
            for message in &messages {
                let _ = self.broker.provider.release(&message.receipt);
            }
            return Ok(());
        };
        let mut messages = messages.into_iter();
        while sending.credit > 0 {
            let Some(received) = messages.next() else {
                break;
            };
            self.deliver(link.channel, link.local_handle, sending, received)
                .await?;
        }
        for unsent in messages {
            let _ = self.broker.provider.release(&unsent.receipt);
        }
        if drained && sending.drain {
            self.finish_drain(link.channel, link.local_handle, sending)?;
        }
        publish_credit(sending);
        Ok(())
    }

    /// Sends one message on a link.
    async fn deliver(
        &mut self,
        channel: u16,
        local_handle: u32,
        sending: &mut Sending,
        received: ReceivedMessage,
    ) -> Result<(), ProtocolError> {
        let Feed::Queue {
            entity,
            sub_queue,
            receive_and_delete,
            session,
        } = &sending.feed
        else {
            return Ok(());
        };
        let broker = Arc::clone(&self.broker);
        let mut lock = None;
        let tag = if *receive_and_delete {
            if let Err(error) = broker.provider.complete(&received.receipt).await {
                tracing::debug!(%error, "a receive-and-delete message was lost before it went out");
                return Ok(());
            }
            *Uuid::new_v4().as_bytes()
        } else {
            let holder = session.as_ref().map(|held| held.serial);
            let token = broker
                .locks
                .issue(received.receipt.clone(), received.locked_until, holder);
            lock = Some((token, received.locked_until));
            locks::delivery_tag(token)
        };
        let payload = Outgoing {
            message: &received.message,
            info: &received.delivery,
            delivery_count: received.delivery.delivery_count.saturating_sub(1),
            lock,
            dead_letter_source: (*sub_queue == SubQueue::DeadLetter).then(|| entity.name.as_str()),
            state: None,
        }
        .encode();
        let payload = match payload {
            Ok(payload) => payload,
            Err(error) => {
                // Every stored message was read when it came in; one that cannot be written out
                // again is set aside rather than offered forever.
                tracing::warn!(%error, "a stored message cannot be encoded; dead-lettering it");
                let reason = DeadLetterReason::new("UnreadableMessage", error.to_string());
                let _ = broker.provider.dead_letter(&received.receipt, reason).await;
                if let Some((token, _)) = lock {
                    broker.locks.remove(&token);
                }
                return Ok(());
            }
        };
        let delivery_id =
            self.send_delivery(channel, local_handle, Some(&tag), lock.is_none(), &payload)?;
        sending.delivery_count = sending.delivery_count.wrapping_add(1);
        sending.credit = sending.credit.saturating_sub(1);
        tracing::debug!(
            delivery_id,
            sequence_number = ?received.delivery.sequence_number,
            lock_token = ?lock.map(|(token, _)| token),
            credit_left = sending.credit,
            "delivered"
        );
        if let Some((token, _)) = lock {
            sending.unsettled.insert(
                delivery_id,
                Unsettled {
                    token,
                    receipt: received.receipt,
                },
            );
        }
        Ok(())
    }

    /// Sends a reply on a reply link (or queues it until the link has credit).
    pub(super) fn send_reply(
        &mut self,
        channel: u16,
        local_handle: u32,
        sending: &mut Sending,
        payload: Vec<u8>,
    ) -> Result<(), ProtocolError> {
        if sending.credit == 0 {
            if sending.queued.len() >= super::links::MAX_QUEUED_REPLIES {
                return Err(ProtocolError::Violation {
                    condition: crate::error::condition::RESOURCE_LIMIT_EXCEEDED,
                    description: "requests keep coming while their reply link has no credit"
                        .to_owned(),
                });
            }
            sending.queued.push_back(payload);
            return Ok(());
        }
        self.send_delivery(channel, local_handle, None, sending.settled_sends, &payload)?;
        sending.delivery_count = sending.delivery_count.wrapping_add(1);
        sending.credit -= 1;
        Ok(())
    }

    /// Ends a drain: the credit left is used up, and the client is told so.
    pub(super) fn finish_drain(
        &mut self,
        channel: u16,
        local_handle: u32,
        sending: &mut Sending,
    ) -> Result<(), ProtocolError> {
        sending.delivery_count = sending.delivery_count.wrapping_add(sending.credit);
        sending.credit = 0;
        sending.drain = false;
        let mut flow = self.session(channel)?.flow(Some(local_handle));
        flow.delivery_count = Some(sending.delivery_count);
        flow.link_credit = Some(0);
        flow.drain = true;
        self.send(channel, &flow)
    }

    /// Sends one delivery (in as many frames as the client's max frame size needs), held back
    /// while the client's session window is full; returns its delivery id. Without a tag, the
    /// delivery id serves as one.
    fn send_delivery(
        &mut self,
        channel: u16,
        local_handle: u32,
        tag: Option<&[u8]>,
        settled: bool,
        payload: &[u8],
    ) -> Result<u32, ProtocolError> {
        let delivery_id = self.session(channel)?.delivery_id();
        let tag = tag.map_or_else(|| delivery_id.to_be_bytes().to_vec(), <[u8]>::to_vec);
        let transfer = Transfer {
            handle: Handle(local_handle),
            delivery_id: Some(delivery_id),
            delivery_tag: Some(ByteBuf::from(tag)),
            message_format: Some(0),
            settled: Some(settled),
            more: false,
            rcv_settle_mode: None,
            state: None,
            resume: false,
            aborted: false,
            batchable: false,
        };
        let mut bytes = Vec::new();
        let frames = frame::encode_transfer(
            &mut bytes,
            channel,
            transfer,
            payload,
            self.peer_max_frame_size,
        )?;
        let ready = self.session(channel)?.transfer(bytes, frames as u32);
        self.out.extend(ready);
        Ok(delivery_id)
    }
}

/// Tells the pump the link's credit, waking it only when it changed.
pub(super) fn publish_credit(sending: &Sending) {
    if let Some(credit_tx) = &sending.credit_tx {
        let credit = Credit {
            available: sending.credit,
            drain: sending.drain,
        };
        credit_tx.send_if_modified(|current| {
            let changed = *current != credit;
            *current = credit;
            changed
        });
    }
}
