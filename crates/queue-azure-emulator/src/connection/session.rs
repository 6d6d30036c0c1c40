//! A session: its transfer windows, its delivery ids, and the links attached on it by handle.
//!
//! Windows count transfer frames, as AMQP says. The broker announces a large incoming window
//! and tops it up with a session flow whenever half of it is used; on the way out it respects
//! the client's incoming window, holding back deliveries (whole) until the client's flow makes
//! room.

use std::collections::{BTreeSet, HashMap, VecDeque};

use fe2o3_amqp_types::definitions::Handle;
use fe2o3_amqp_types::performatives::{Begin, Flow};

use super::links::LinkId;

/// The broker's incoming window, in transfer frames.
const INCOMING_WINDOW: u32 = 8192;
/// The broker's outgoing window (informational in AMQP 1.0).
const OUTGOING_WINDOW: u32 = u32::MAX >> 1;
/// The highest link handle a client may use.
pub(super) const HANDLE_MAX: u32 = 4095;

/// Encoded transfer frames held back by the client's window.
#[derive(Debug)]
struct Held {
    bytes: Vec<u8>,
    frames: u32,
}

#[derive(Debug)]
pub(super) struct Session {
    /// The transfer id of the next frame the broker sends.
    next_outgoing_id: u32,
    /// The client's `next-incoming-id` and `incoming-window`, from its begin and flows.
    peer_next_incoming_id: u32,
    peer_incoming_window: u32,
    /// The transfer id of the next frame the client sends.
    next_incoming_id: u32,
    /// Frames received since the broker last announced its window.
    received_since_flow: u32,
    /// The next delivery id the broker assigns (delivery ids are per session).
    next_delivery_id: u32,
    /// Links by the client's handle.
    pub(super) handles: HashMap<u32, LinkId>,
    /// The broker's handles in use on this session.
    local_handles: BTreeSet<u32>,
    held: VecDeque<Held>,
}

impl Session {
    pub(super) fn new(begin: &Begin) -> Self {
        Session {
            next_outgoing_id: 0,
            peer_next_incoming_id: 0,
            peer_incoming_window: begin.incoming_window,
            next_incoming_id: begin.next_outgoing_id,
            received_since_flow: 0,
            next_delivery_id: 0,
            handles: HashMap::new(),
            local_handles: BTreeSet::new(),
            held: VecDeque::new(),
        }
    }

    pub(super) fn begin_reply(&self, remote_channel: u16) -> Begin {
        Begin {
            remote_channel: Some(remote_channel),
            next_outgoing_id: self.next_outgoing_id,
            incoming_window: INCOMING_WINDOW,
            outgoing_window: OUTGOING_WINDOW,
            handle_max: Handle(HANDLE_MAX),
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        }
    }

    /// The links of this session.
    pub(super) fn links(&self) -> Vec<LinkId> {
        self.handles.values().copied().collect()
    }

    /// The lowest free handle for the broker's end of a link; `None` when all are taken.
    pub(super) fn local_handle(&mut self) -> Option<u32> {
        let handle = (0..=HANDLE_MAX).find(|handle| !self.local_handles.contains(handle))?;
        self.local_handles.insert(handle);
        Some(handle)
    }

    /// Frees the broker's handle of a link that is gone.
    pub(super) fn free_local_handle(&mut self, handle: u32) {
        self.local_handles.remove(&handle);
    }

    /// A fresh delivery id.
    pub(super) fn delivery_id(&mut self) -> u32 {
        let id = self.next_delivery_id;
        self.next_delivery_id = self.next_delivery_id.wrapping_add(1);
        id
    }

    /// A flow frame with this session's state, for `handle` when given (its link fields are
    /// left to the caller).
    pub(super) fn flow(&self, handle: Option<u32>) -> Flow {
        Flow {
            next_incoming_id: Some(self.next_incoming_id),
            incoming_window: INCOMING_WINDOW.saturating_sub(self.received_since_flow),
            next_outgoing_id: self.next_outgoing_id,
            outgoing_window: OUTGOING_WINDOW,
            handle: handle.map(Handle),
            delivery_count: None,
            link_credit: None,
            available: None,
            drain: false,
            echo: false,
            properties: None,
        }
    }

    /// Counts a frame received from the client; returns a session flow to send when the
    /// broker's window needs topping up.
    pub(super) fn received_frame(&mut self) -> Option<Flow> {
        self.next_incoming_id = self.next_incoming_id.wrapping_add(1);
        self.received_since_flow = self.received_since_flow.saturating_add(1);
        (self.received_since_flow >= INCOMING_WINDOW / 2).then(|| {
            self.received_since_flow = 0;
            self.flow(None)
        })
    }

    /// Records the client's session flow fields.
    pub(super) fn peer_flow(&mut self, flow: &Flow) {
        self.peer_next_incoming_id = flow.next_incoming_id.unwrap_or(0);
        self.peer_incoming_window = flow.incoming_window;
    }

    fn window_left(&self) -> u32 {
        let used = self
            .next_outgoing_id
            .wrapping_sub(self.peer_next_incoming_id);
        self.peer_incoming_window.saturating_sub(used)
    }

    /// Takes the encoded frames of one delivery: returns the bytes to write now (this delivery
    /// and any held before it that now fit), holding back what the client's window has no room
    /// for.
    pub(super) fn transfer(&mut self, bytes: Vec<u8>, frames: u32) -> Vec<u8> {
        self.held.push_back(Held { bytes, frames });
        self.release_held()
    }

    /// Writes out held deliveries the window now has room for.
    pub(super) fn release_held(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(next) = self.held.front() {
            // A delivery larger than the whole window still goes once the window is full open.
            let fits = next.frames <= self.window_left()
                || (self.window_left() == self.peer_incoming_window
                    && self.peer_incoming_window > 0);
            if !fits {
                break;
            }
            if let Some(held) = self.held.pop_front() {
                self.next_outgoing_id = self.next_outgoing_id.wrapping_add(held.frames);
                out.extend(held.bytes);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn begin(incoming_window: u32) -> Begin {
        Begin {
            remote_channel: None,
            next_outgoing_id: 5,
            incoming_window,
            outgoing_window: 10,
            handle_max: Handle(10),
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        }
    }

    #[test]
    fn deliveries_wait_for_the_clients_window() {
        let mut session = Session::new(&begin(2));
        assert_eq!(session.transfer(vec![1], 1), vec![1]);
        assert_eq!(session.transfer(vec![2], 1), vec![2]);
        assert!(
            session.transfer(vec![3], 1).is_empty(),
            "the window is full"
        );
        let mut flow = session.flow(None);
        flow.next_incoming_id = Some(2);
        flow.incoming_window = 2;
        session.peer_flow(&flow);
        assert_eq!(session.release_held(), vec![3]);
    }

    #[test]
    fn handles_are_reused_once_free() {
        let mut session = Session::new(&begin(1));
        assert_eq!(session.local_handle(), Some(0));
        assert_eq!(session.local_handle(), Some(1));
        session.free_local_handle(0);
        assert_eq!(session.local_handle(), Some(0));
        assert_eq!(session.local_handle(), Some(2));
    }

    #[test]
    fn the_brokers_window_is_topped_up() {
        let mut session = Session::new(&begin(100));
        let flows = (0..INCOMING_WINDOW)
            .filter_map(|_| session.received_frame())
            .count();
        assert_eq!(flows, 2);
        assert_eq!(
            session.flow(None).next_incoming_id,
            Some(5 + INCOMING_WINDOW)
        );
    }
}
