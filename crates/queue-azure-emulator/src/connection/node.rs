//! Requests to the `$management` and `$cbs` nodes, and the routing of their replies.
//!
//! A reply goes to the link on this connection whose target (the client's node address) is the
//! request's `reply-to`, else whose source is (Python uses `<entity>/$management` for
//! `reply-to`, source and target alike), else to the reply link of the same node: with several
//! reply links on one node (the Rust SDK opens one per sender and per receiver), only the
//! target tells them apart. Without `reply-to`:
//! Python's CBS requests carry no `reply-to`, and Java reuses one reply address on every
//! connection, so replies are routed per connection, never by address alone.

use super::Connection;
use super::links::{CBS_KEY, Feed, LinkRole, node_key};
use crate::cbs;
use crate::error::ProtocolError;
use crate::management::{self, Node, Request, Style};

impl Connection {
    /// Runs a request to a node (`None`: `$cbs`) and sends the reply.
    pub(super) async fn on_request(
        &mut self,
        channel: u16,
        node: Option<&Node>,
        payload: &[u8],
    ) -> Result<(), ProtocolError> {
        let (style, key) = match node {
            Some(node) => (Style::Management, node_key(node)),
            None => (Style::Cbs, CBS_KEY.to_owned()),
        };
        let request = match Request::parse(payload) {
            Ok(request) => request,
            Err(failure) => {
                // Without a readable request there is no id to answer to.
                tracing::debug!(description = %failure.description, "an unreadable request");
                return Ok(());
            }
        };
        let reply = match node {
            Some(node) => management::execute(&self.broker, node, &request).await,
            None => cbs::execute(&request),
        };
        tracing::debug!(
            node = %key,
            operation = request.operation().unwrap_or_default(),
            status = reply.status,
            "request"
        );
        let encoded = reply.encode(&request, style);
        self.route_reply(channel, request.reply_to.as_deref(), &key, encoded)
    }

    fn route_reply(
        &mut self,
        channel: u16,
        reply_to: Option<&str>,
        key: &str,
        encoded: Vec<u8>,
    ) -> Result<(), ProtocolError> {
        let is_reply_link =
            |feed: &Feed, wanted: &str| matches!(feed, Feed::Replies { key, .. } if key == wanted);
        let mut by_reply_address = None;
        let mut by_address = None;
        let mut by_node = None;
        for (id, link) in &self.links {
            let LinkRole::Sending(sending) = &link.role else {
                continue;
            };
            if !matches!(sending.feed, Feed::Replies { .. }) {
                continue;
            }
            if reply_to.is_some() && sending.reply_address.as_deref() == reply_to {
                by_reply_address = Some(*id);
            }
            if reply_to.is_some() && sending.address.as_deref() == reply_to {
                by_address = Some(*id);
            }
            // Prefer the node's reply link on the request's own session.
            if is_reply_link(&sending.feed, key) && (by_node.is_none() || link.channel == channel) {
                by_node = Some(*id);
            }
        }
        let Some(id) = by_reply_address.or(by_address).or(by_node) else {
            tracing::debug!(key, "a reply with no reply link to go to was dropped");
            return Ok(());
        };
        let Some(mut link) = self.links.remove(&id) else {
            return Ok(());
        };
        let result = match &mut link.role {
            LinkRole::Sending(sending) => {
                self.send_reply(link.channel, link.local_handle, sending, encoded)
            }
            _ => Ok(()),
        };
        self.links.insert(id, link);
        result
    }
}
