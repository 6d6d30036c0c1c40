//! Links: attach (and its refusals), flow and credit, transfers both ways, dispositions and
//! their echoes, detach, and the events of link tasks.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use fe2o3_amqp_types::definitions::{Fields, Handle, ReceiverSettleMode, Role, SenderSettleMode};
use fe2o3_amqp_types::messaging::{DeliveryState, Rejected, Source, TargetArchetype};
use fe2o3_amqp_types::performatives::{Attach, Detach, Disposition, Flow};
use fe2o3_amqp_types::primitives::{OrderedMap, Symbol};
use queue_core::{Receipt, SessionReceiver, SessionSelector, SubQueue};
use serde_amqp::Value;
use serde_amqp::described::Described;
use serde_amqp::descriptor::Descriptor;
use tokio::sync::watch;
use uuid::Uuid;

use super::Connection;
use super::deliveries::publish_credit;
use super::pump::{self, Credit, Source as PumpSource};
use crate::address::Address;
use crate::broker::{Entity, HeldSession};
use crate::error::{Failure, ProtocolError, condition, condition_name};
use crate::management::Node;
use crate::message;

/// A link's identity within its connection (handles can be reused, ids are not).
pub(crate) type LinkId = u64;

/// The most links one connection may have attached (each receiver link runs a task).
const MAX_LINKS: usize = 4096;
/// The most replies a node link holds while the client gives it no credit.
pub(super) const MAX_QUEUED_REPLIES: usize = 1024;
/// Credit the broker grants a client that sends, topped up when half is used.
pub(super) const SEND_CREDIT: u32 = 1000;
/// The largest request a management or CBS node takes.
pub(super) const MAX_REQUEST_SIZE: usize = 4 * 1024 * 1024;
/// The session filter of a session receiver.
const SESSION_FILTER: &str = "com.microsoft:session-filter";
/// The descriptor Go and Rust put on the session filter; used in the echo when the client sent
/// a bare value.
const SESSION_FILTER_CODE: u64 = 0x0000_0013_7000_000c;
/// The link property in which a next-available session receiver names its wait.
const TIMEOUT_PROPERTY: &str = "com.microsoft:timeout";
/// The attach property with a session's lock deadline, in .NET ticks.
const LOCKED_UNTIL_PROPERTY: &str = "com.microsoft:locked-until-utc";
/// The attach property with the largest batch a sender may send.
const MAX_BATCH_PROPERTY: &str = "com.microsoft:max-message-batch-size";

#[derive(Debug)]
pub(super) struct Link {
    pub(super) name: String,
    pub(super) channel: u16,
    pub(super) local_handle: u32,
    /// Whether the broker's handle is still taken (a link the broker detached frees it at
    /// once: clients such as Python never answer that detach).
    holds_handle: bool,
    pub(super) role: LinkRole,
}

#[derive(Debug)]
pub(super) enum LinkRole {
    /// The client sends; the broker receives.
    Receiving(Receiving),
    /// The client receives; the broker sends.
    Sending(Sending),
    /// A session receiver waiting for its session; the attach is answered when it comes.
    Accepting {
        attach: Box<Attach>,
        entity: Arc<Entity>,
        named: bool,
        /// The task waiting for the session: stopped when the link goes first.
        wait: tokio::task::AbortHandle,
    },
    /// Refused or detached by the broker: waiting for the client's detach.
    Closing,
}

/// Where the messages of a receiving link go.
#[derive(Debug)]
pub(super) enum Target {
    Entity(Arc<Entity>),
    Management(Node),
    Cbs,
}

#[derive(Debug)]
pub(super) struct Receiving {
    pub(super) target: Target,
    pub(super) credit: u32,
    pub(super) delivery_count: u32,
    pub(super) partial: Option<Partial>,
}

/// A delivery arriving in several frames.
#[derive(Debug)]
pub(super) struct Partial {
    pub(super) delivery_id: u32,
    pub(super) settled: bool,
    pub(super) format: u32,
    pub(super) payload: Vec<u8>,
    pub(super) oversized: bool,
}

/// What a sending link sends.
#[derive(Debug)]
pub(super) enum Feed {
    /// Messages of a queue, its dead-letter queue, or a session.
    Queue {
        entity: Arc<Entity>,
        sub_queue: SubQueue,
        receive_and_delete: bool,
        session: Option<Arc<HeldSession>>,
    },
    /// Replies of a node: `key` names the node for routing.
    Replies { key: String },
}

#[derive(Debug)]
pub(super) struct Sending {
    pub(super) feed: Feed,
    /// The client's source address (replies may be routed by it).
    pub(super) address: Option<String>,
    /// The client's target address: its node address, where most clients (fe2o3-amqp's
    /// management client, .NET, Go; Python uses `<entity>/$management` for both) point a
    /// request's `reply-to`, unique per reply link even when several share a node.
    pub(super) reply_address: Option<String>,
    pub(super) credit: u32,
    pub(super) delivery_count: u32,
    pub(super) drain: bool,
    /// Whether deliveries go settled (the client asked for snd-settle-mode settled or mixed).
    pub(super) settled_sends: bool,
    pub(super) unsettled: HashMap<u32, Unsettled>,
    pub(super) credit_tx: Option<watch::Sender<Credit>>,
    pub(super) queued: VecDeque<Vec<u8>>,
}

/// A peek-lock delivery the client has not settled.
#[derive(Debug)]
pub(super) struct Unsettled {
    pub(super) token: Uuid,
    pub(super) receipt: Receipt,
}

/// The node key of a management node, for routing replies.
pub(super) fn node_key(node: &Node) -> String {
    format!("{}|{:?}", node.entity.name, node.sub_queue)
}

/// The node key of `$cbs`.
pub(super) const CBS_KEY: &str = "$cbs";

/// Which session a receiver asks for.
enum SessionFilter {
    None,
    Next,
    Named(String),
}

fn session_filter(source: Option<&Source>) -> Result<SessionFilter, Failure> {
    let Some(filters) = source.and_then(|source| source.filter.as_ref()) else {
        return Ok(SessionFilter::None);
    };
    let Some((_, value)) = filters
        .iter()
        .find(|(key, _)| key.as_str().eq_ignore_ascii_case(SESSION_FILTER))
    else {
        return Ok(SessionFilter::None);
    };
    let value = match value {
        Value::Described(described) => &described.value,
        other => other,
    };
    match value {
        Value::Null => Ok(SessionFilter::Next),
        Value::String(id) => Ok(SessionFilter::Named(id.clone())),
        Value::Symbol(id) => Ok(SessionFilter::Named(id.as_str().to_owned())),
        other => Err(Failure::argument(format!(
            "the session filter holds {other:?}, not a session id"
        ))),
    }
}

/// The client's source with the session filter set to the granted session, described (go-amqp
/// refuses a bare echo; Python drops the descriptor).
fn echo_session(source: Option<Box<Source>>, session: &str) -> Option<Box<Source>> {
    let mut source = source?;
    let mut filters = source.filter.take().unwrap_or_default();
    let key = filters
        .keys()
        .find(|key| key.as_str().eq_ignore_ascii_case(SESSION_FILTER))
        .cloned()
        .unwrap_or_else(|| Symbol::from(SESSION_FILTER));
    let descriptor = match filters.get(&key) {
        Some(Value::Described(described)) => described.descriptor.clone(),
        _ => Descriptor::Code(SESSION_FILTER_CODE),
    };
    filters.insert(
        key,
        Value::Described(Box::new(Described {
            descriptor,
            value: Value::String(session.to_owned()),
        })),
    );
    source.filter = Some(filters);
    Some(source)
}

fn source_address(attach: &Attach) -> Option<&str> {
    attach.source.as_ref()?.address.as_deref()
}

fn target_address(attach: &Attach) -> Option<&str> {
    match attach.target.as_deref()? {
        TargetArchetype::Target(target) => target.address.as_deref(),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

fn property_millis(properties: Option<&Fields>, key: &str) -> Option<Duration> {
    let value = properties?
        .iter()
        .find(|(name, _)| name.as_str() == key)
        .map(|(_, value)| value)?;
    let millis = match *value {
        Value::Uint(n) => u64::from(n),
        Value::Ulong(n) => n,
        Value::Int(n) => u64::try_from(n).ok()?,
        Value::Long(n) => u64::try_from(n).ok()?,
        _ => return None,
    };
    Some(Duration::from_millis(millis))
}

fn fields(entries: impl IntoIterator<Item = (&'static str, Value)>) -> Fields {
    let mut fields = OrderedMap::new();
    for (key, value) in entries {
        fields.insert(Symbol::from(key), value);
    }
    fields
}

pub(super) fn disposition(first: u32, state: DeliveryState) -> Disposition {
    Disposition {
        role: Role::Receiver,
        first,
        last: None,
        settled: true,
        state: Some(state),
        batchable: false,
    }
}

pub(super) fn rejected(failure: &Failure) -> DeliveryState {
    DeliveryState::Rejected(Rejected {
        error: Some(failure.to_amqp()),
    })
}

impl Connection {
    fn new_link_id(&mut self) -> LinkId {
        let id = self.next_link;
        self.next_link += 1;
        id
    }

    pub(super) async fn on_attach(
        &mut self,
        channel: u16,
        attach: Attach,
    ) -> Result<(), ProtocolError> {
        let peer_handle = attach.handle.0;
        if peer_handle > super::session::HANDLE_MAX {
            return Err(ProtocolError::Violation {
                condition: condition::INVALID_FIELD,
                description: format!("handle {peer_handle} is above handle-max"),
            });
        }
        let session = self.session(channel)?;
        if let Some(existing) = session.handles.get(&peer_handle).copied() {
            let closing = self
                .links
                .get(&existing)
                .is_none_or(|link| matches!(link.role, LinkRole::Closing));
            if !closing {
                return Err(ProtocolError::Violation {
                    condition: condition::HANDLE_IN_USE,
                    description: format!("handle {peer_handle} is attached already"),
                });
            }
            self.drop_link(existing).await;
        }
        let attached = self
            .links
            .values()
            .filter(|link| !matches!(link.role, LinkRole::Closing))
            .count();
        if attached >= MAX_LINKS {
            return Err(ProtocolError::Violation {
                condition: condition::RESOURCE_LIMIT_EXCEEDED,
                description: format!("a connection may attach at most {MAX_LINKS} links"),
            });
        }
        self.steal(&attach.name, attach.role.clone());
        let session = self.session(channel)?;
        let local_handle = session
            .local_handle()
            .ok_or_else(|| ProtocolError::Violation {
                condition: condition::RESOURCE_LIMIT_EXCEEDED,
                description: "every link handle of the session is in use".to_owned(),
            })?;
        let id = self.new_link_id();
        if let Some(session) = self.sessions.get_mut(&channel) {
            session.handles.insert(peer_handle, id);
        }
        let link = Link {
            name: attach.name.clone(),
            channel,
            local_handle,
            holds_handle: true,
            role: LinkRole::Closing,
        };
        self.links.insert(id, link);
        let result = match attach.role {
            Role::Sender => self.attach_receiving(id, &attach),
            Role::Receiver => self.attach_sending(id, attach.clone()),
        };
        match result {
            Ok(()) => Ok(()),
            Err(failure) => self.refuse(id, &attach, failure),
        }
    }

    /// A second attach with a link's name takes the link over (AMQP's link stealing): the old
    /// link is detached with `amqp:link:stolen`.
    fn steal(&mut self, name: &str, role: Role) {
        let stolen: Vec<LinkId> = self
            .links
            .iter()
            .filter(|(_, link)| link.name == name)
            .filter(|(_, link)| {
                matches!(
                    (&link.role, &role),
                    (LinkRole::Receiving(_), Role::Sender)
                        | (
                            LinkRole::Sending(_) | LinkRole::Accepting { .. },
                            Role::Receiver
                        )
                )
            })
            .map(|(id, _)| *id)
            .collect();
        for id in stolen {
            let failure = Failure::new(
                condition::LINK_STOLEN,
                409,
                "another attach with this link name took the link over",
            );
            self.detach_with(id, &failure);
        }
    }

    /// Answers an attach the broker cannot serve: an attach with null source and target, then a
    /// closing detach with the reason (Python reads the null terminus as "invalid link", then
    /// raises the detach's condition).
    fn refuse(
        &mut self,
        id: LinkId,
        attach: &Attach,
        failure: Failure,
    ) -> Result<(), ProtocolError> {
        let Some(link) = self.links.get_mut(&id) else {
            return Ok(());
        };
        link.role = LinkRole::Closing;
        let (channel, local_handle) = (link.channel, link.local_handle);
        self.free_handle(id);
        let broker_sends = attach.role == Role::Receiver;
        let reply = Attach {
            name: attach.name.clone(),
            handle: Handle(local_handle),
            role: if broker_sends {
                Role::Sender
            } else {
                Role::Receiver
            },
            snd_settle_mode: attach.snd_settle_mode.clone(),
            rcv_settle_mode: attach.rcv_settle_mode.clone(),
            source: None,
            target: None,
            unsettled: None,
            incomplete_unsettled: false,
            initial_delivery_count: broker_sends.then_some(0),
            max_message_size: None,
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        };
        self.send(channel, &reply)?;
        tracing::debug!(link = %attach.name, condition = failure.condition, "attach refused");
        self.send(
            channel,
            &Detach {
                handle: Handle(local_handle),
                closed: true,
                error: Some(failure.to_amqp()),
            },
        )
    }

    /// The client sends: to a queue, a management node, or `$cbs`.
    fn attach_receiving(&mut self, id: LinkId, attach: &Attach) -> Result<(), Failure> {
        let address = target_address(attach).unwrap_or_default();
        let target = match Address::parse(address) {
            Some(Address::Cbs) => Target::Cbs,
            Some(Address::Management(path)) => Target::Management(Node {
                entity: self.entity(&path.name)?,
                sub_queue: path.sub_queue,
            }),
            Some(Address::Entity(path)) => {
                let entity = self.entity(&path.name)?;
                if path.sub_queue == SubQueue::DeadLetter {
                    return Err(Failure::not_allowed(
                        "messages cannot be sent to a dead-letter queue",
                    ));
                }
                Target::Entity(entity)
            }
            None => return Err(not_found(address)),
        };
        let (max_message_size, properties) = match &target {
            Target::Entity(entity) => {
                let max = u64::from(entity.config.max_message_size());
                (max, Some(fields([(MAX_BATCH_PROPERTY, Value::Ulong(max))])))
            }
            _ => (MAX_REQUEST_SIZE as u64, None),
        };
        let link = self.links.get_mut(&id).ok_or_else(gone)?;
        let (channel, local_handle) = (link.channel, link.local_handle);
        let delivery_count = attach.initial_delivery_count.unwrap_or(0);
        link.role = LinkRole::Receiving(Receiving {
            target,
            credit: SEND_CREDIT,
            delivery_count,
            partial: None,
        });
        let reply = Attach {
            name: attach.name.clone(),
            handle: Handle(local_handle),
            role: Role::Receiver,
            snd_settle_mode: attach.snd_settle_mode.clone(),
            rcv_settle_mode: ReceiverSettleMode::First,
            source: attach.source.clone(),
            target: attach.target.clone(),
            unsettled: None,
            incomplete_unsettled: false,
            initial_delivery_count: None,
            max_message_size: Some(max_message_size),
            offered_capabilities: None,
            desired_capabilities: None,
            properties,
        };
        self.send(channel, &reply).map_err(internal)?;
        let mut flow = self
            .session(channel)
            .map_err(internal)?
            .flow(Some(local_handle));
        flow.delivery_count = Some(delivery_count);
        flow.link_credit = Some(SEND_CREDIT);
        self.send(channel, &flow).map_err(internal)
    }

    fn entity(&self, name: &str) -> Result<Arc<Entity>, Failure> {
        self.broker.entity(name).ok_or_else(|| not_found(name))
    }

    /// The client receives: from a queue (its dead-letter queue, a session) or a node's replies.
    fn attach_sending(&mut self, id: LinkId, attach: Attach) -> Result<(), Failure> {
        let address = source_address(&attach).unwrap_or_default().to_owned();
        let settled_sends = attach.snd_settle_mode != SenderSettleMode::Unsettled;
        let feed = match Address::parse(&address) {
            Some(Address::Cbs) => Feed::Replies {
                key: CBS_KEY.to_owned(),
            },
            Some(Address::Management(path)) => Feed::Replies {
                key: node_key(&Node {
                    entity: self.entity(&path.name)?,
                    sub_queue: path.sub_queue,
                }),
            },
            Some(Address::Entity(path)) => {
                let entity = self.entity(&path.name)?;
                let filter = session_filter(attach.source.as_deref())?;
                let wants_session = !matches!(filter, SessionFilter::None);
                if path.sub_queue == SubQueue::DeadLetter && wants_session {
                    return Err(Failure::not_allowed(
                        "a dead-letter queue has no sessions: receive from it without a session filter",
                    ));
                }
                if path.sub_queue == SubQueue::Main
                    && wants_session != entity.config.requires_session()
                {
                    return Err(Failure::not_allowed(if wants_session {
                        format!(
                            "{} does not require sessions: receive without a session filter",
                            entity.name
                        )
                    } else {
                        format!(
                            "{} requires sessions: receive through a session receiver",
                            entity.name
                        )
                    }));
                }
                let selector = match filter {
                    SessionFilter::None => None,
                    SessionFilter::Next => Some(SessionSelector::Next),
                    SessionFilter::Named(id) => Some(SessionSelector::Named(
                        queue_core::SessionId::new(&id)
                            .map_err(|error| Failure::argument(error.message().to_owned()))?,
                    )),
                };
                if let Some(selector) = selector {
                    let named = matches!(selector, SessionSelector::Named(_));
                    let wait = if named {
                        // A named session held by another receiver is refused at once.
                        Duration::ZERO
                    } else {
                        property_millis(attach.properties.as_ref(), TIMEOUT_PROPERTY)
                            .unwrap_or_else(|| self.broker.config.session_wait())
                    };
                    let wait = pump::spawn_accept(
                        id,
                        self.broker.provider.clone(),
                        entity.name.clone(),
                        selector,
                        wait,
                        self.events.clone(),
                    );
                    let link = self.links.get_mut(&id).ok_or_else(gone)?;
                    link.role = LinkRole::Accepting {
                        attach: Box::new(attach),
                        entity,
                        named,
                        wait,
                    };
                    return Ok(());
                }
                Feed::Queue {
                    entity,
                    sub_queue: path.sub_queue,
                    receive_and_delete: attach.snd_settle_mode == SenderSettleMode::Settled,
                    session: None,
                }
            }
            None => return Err(not_found(&address)),
        };
        self.open_sending(id, attach, feed, settled_sends, None)
    }

    /// Answers the attach of a link the broker sends on, and starts its pump.
    fn open_sending(
        &mut self,
        id: LinkId,
        attach: Attach,
        feed: Feed,
        settled_sends: bool,
        locked_until_ticks: Option<i64>,
    ) -> Result<(), Failure> {
        let address = source_address(&attach).map(str::to_owned);
        let reply_address = target_address(&attach).map(str::to_owned);
        let link = self.links.get_mut(&id).ok_or_else(gone)?;
        let (channel, local_handle) = (link.channel, link.local_handle);
        let max_message_size = match &feed {
            Feed::Queue { entity, .. } => u64::from(entity.config.max_message_size()),
            Feed::Replies { .. } => MAX_REQUEST_SIZE as u64,
        };
        let source = match &feed {
            Feed::Queue {
                session: Some(held),
                ..
            } => echo_session(attach.source.clone(), held.id().as_str()),
            _ => attach.source.clone(),
        };
        let credit_tx = match &feed {
            Feed::Queue {
                entity,
                sub_queue,
                session,
                ..
            } => {
                let source = match session {
                    Some(held) => PumpSource::Session {
                        provider: self.broker.provider.clone(),
                        held: Arc::clone(held),
                    },
                    None => PumpSource::Queue {
                        provider: self.broker.provider.clone(),
                        queue: entity.name.clone(),
                        sub_queue: *sub_queue,
                    },
                };
                let (credit_tx, credit_rx) = watch::channel(Credit::default());
                pump::spawn(id, source, credit_rx, self.events.clone());
                Some(credit_tx)
            }
            Feed::Replies { .. } => None,
        };
        link.role = LinkRole::Sending(Sending {
            feed,
            address,
            reply_address,
            credit: 0,
            delivery_count: 0,
            drain: false,
            settled_sends,
            unsettled: HashMap::new(),
            credit_tx,
            queued: VecDeque::new(),
        });
        let properties =
            locked_until_ticks.map(|ticks| fields([(LOCKED_UNTIL_PROPERTY, Value::Long(ticks))]));
        let reply = Attach {
            name: attach.name.clone(),
            handle: Handle(local_handle),
            role: Role::Sender,
            snd_settle_mode: attach.snd_settle_mode.clone(),
            rcv_settle_mode: attach.rcv_settle_mode.clone(),
            source,
            target: attach.target.clone(),
            unsettled: None,
            incomplete_unsettled: false,
            initial_delivery_count: Some(0),
            max_message_size: Some(max_message_size),
            offered_capabilities: None,
            desired_capabilities: None,
            properties,
        };
        self.send(channel, &reply).map_err(internal)
    }

    /// A session came (or did not) for a session receiver.
    pub(super) async fn on_session_accepted(
        &mut self,
        id: LinkId,
        result: Result<Option<Box<dyn SessionReceiver>>, queue_core::QueueError>,
    ) -> Result<(), ProtocolError> {
        let waiting = match self.links.get_mut(&id) {
            Some(link) if matches!(link.role, LinkRole::Accepting { .. }) => {
                Some(std::mem::replace(&mut link.role, LinkRole::Closing))
            }
            _ => None,
        };
        let Some(LinkRole::Accepting {
            attach,
            entity,
            named,
            ..
        }) = waiting
        else {
            // The link went away while it waited.
            if let Ok(Some(receiver)) = result {
                let _ = receiver.close().await;
            }
            return Ok(());
        };
        let outcome = match result {
            Ok(Some(receiver)) => {
                let locked_until = message::dotnet_ticks(receiver.locked_until());
                let held = self.broker.hold_session(entity.name.clone(), receiver);
                let feed = Feed::Queue {
                    entity,
                    sub_queue: SubQueue::Main,
                    receive_and_delete: attach.snd_settle_mode == SenderSettleMode::Settled,
                    session: Some(Arc::clone(&held)),
                };
                let settled_sends = attach.snd_settle_mode != SenderSettleMode::Unsettled;
                let opened = self.open_sending(
                    id,
                    (*attach).clone(),
                    feed,
                    settled_sends,
                    Some(locked_until),
                );
                if opened.is_err() {
                    let _ = held.receiver.close().await;
                    self.broker.forget_session(&held);
                }
                opened
            }
            Ok(None) if named => Err(Failure::new(
                condition::SESSION_CANNOT_BE_LOCKED,
                410,
                "the session is locked by another receiver",
            )),
            Ok(None) => Err(Failure::new(
                condition::TIMEOUT,
                408,
                "no session with available messages came within the wait",
            )),
            Err(error) => Err(Failure::from(error)),
        };
        match outcome {
            Ok(()) => Ok(()),
            Err(failure) => self.refuse(id, &attach, failure),
        }
    }

    /// The client detaches a link.
    pub(super) async fn on_detach(
        &mut self,
        channel: u16,
        detach: Detach,
    ) -> Result<(), ProtocolError> {
        let session = self.session(channel)?;
        let Some(id) = session.handles.remove(&detach.handle.0) else {
            // A detach for a link already gone (both sides detached at once): nothing to do.
            return Ok(());
        };
        let answer = match self.links.get(&id) {
            Some(link) if !matches!(link.role, LinkRole::Closing) => Some(link.local_handle),
            _ => None,
        };
        if let Some(error) = &detach.error {
            tracing::debug!(condition = %condition_name(&error.condition), "the client detached a link with an error");
        }
        self.drop_link(id).await;
        if let Some(local_handle) = answer {
            self.send(
                channel,
                &Detach {
                    handle: Handle(local_handle),
                    closed: detach.closed,
                    error: None,
                },
            )?;
        }
        Ok(())
    }

    /// Forgets a link and lets go of what it holds. A session receiver's unsettled messages
    /// are released without counting a delivery, then the session; peek-lock messages of a
    /// queue stay locked until settled by token or expired, as on Service Bus.
    pub(super) async fn drop_link(&mut self, id: LinkId) {
        let Some(link) = self.links.remove(&id) else {
            return;
        };
        if let Some(session) = self.sessions.get_mut(&link.channel) {
            session.handles.retain(|_, link_id| *link_id != id);
            if link.holds_handle {
                session.free_local_handle(link.local_handle);
            }
        }
        release_role(&self.broker, link.role).await;
    }

    /// Frees the broker's handle of a link it detached (once).
    fn free_handle(&mut self, id: LinkId) {
        let Some(link) = self.links.get_mut(&id) else {
            return;
        };
        if std::mem::replace(&mut link.holds_handle, false)
            && let Some(session) = self.sessions.get_mut(&link.channel)
        {
            session.free_local_handle(link.local_handle);
        }
    }

    /// Detaches a link from the broker's side with an error; the link waits for the client's
    /// detach.
    pub(super) fn detach_with(&mut self, id: LinkId, failure: &Failure) {
        let Some(link) = self.links.get_mut(&id) else {
            return;
        };
        let role = std::mem::replace(&mut link.role, LinkRole::Closing);
        let (channel, local_handle) = (link.channel, link.local_handle);
        self.free_handle(id);
        let _ = self.send(
            channel,
            &Detach {
                handle: Handle(local_handle),
                closed: true,
                error: Some(failure.to_amqp()),
            },
        );
        let broker = Arc::clone(&self.broker);
        // What the link held is let go in the background: the detach is what matters now.
        tokio::spawn(async move {
            release_role(&broker, role).await;
        });
    }

    /// A flow: the session's window, and for a link its credit (or the client's view of it).
    pub(super) fn on_flow(&mut self, channel: u16, flow: Flow) -> Result<(), ProtocolError> {
        let session = self.session(channel)?;
        session.peer_flow(&flow);
        let ready = session.release_held();
        self.out.extend(ready);
        let Some(Handle(peer_handle)) = flow.handle else {
            if flow.echo {
                let reply = self.session(channel)?.flow(None);
                self.send(channel, &reply)?;
            }
            return Ok(());
        };
        let Some(id) = self.session(channel)?.handles.get(&peer_handle).copied() else {
            return Ok(());
        };
        let Some(mut link) = self.links.remove(&id) else {
            return Ok(());
        };
        let result = self.link_flow(&mut link, &flow);
        // A drain the flow could not finish at once is the pump's to answer.
        if pump_owes_drain(&link) {
            self.draining.push(id);
        }
        self.links.insert(id, link);
        result
    }

    /// Whether the pump of `id` still owes the client the answer to a drain.
    pub(super) fn is_draining(&self, id: LinkId) -> bool {
        self.links.get(&id).is_some_and(pump_owes_drain)
    }

    fn link_flow(&mut self, link: &mut Link, flow: &Flow) -> Result<(), ProtocolError> {
        let (channel, local_handle) = (link.channel, link.local_handle);
        match &mut link.role {
            LinkRole::Sending(sending) => {
                // AMQP 2.6.7: credit = the receiver's delivery count + its credit − ours. A flow
                // repeating the last one leaves the credit as it was.
                let peer_count = flow.delivery_count.unwrap_or(0);
                let credit = peer_count
                    .wrapping_add(flow.link_credit.unwrap_or(0))
                    .wrapping_sub(sending.delivery_count);
                sending.credit = if credit > i32::MAX as u32 { 0 } else { credit };
                sending.drain = flow.drain;
                tracing::debug!(
                    link = %link.name,
                    peer_delivery_count = peer_count,
                    peer_credit = ?flow.link_credit,
                    credit = sending.credit,
                    drain = flow.drain,
                    "flow"
                );
                while sending.credit > 0 {
                    let Some(reply) = sending.queued.pop_front() else {
                        break;
                    };
                    self.send_reply(channel, local_handle, sending, reply)?;
                }
                let replies = matches!(sending.feed, Feed::Replies { .. });
                if sending.drain && (replies || sending.credit == 0) {
                    self.finish_drain(channel, local_handle, sending)?;
                }
                publish_credit(sending);
                if flow.echo {
                    let mut reply = self.session(channel)?.flow(Some(local_handle));
                    reply.delivery_count = Some(sending.delivery_count);
                    reply.link_credit = Some(sending.credit);
                    self.send(channel, &reply)?;
                }
            }
            LinkRole::Receiving(receiving) => {
                if flow.echo {
                    let mut reply = self.session(channel)?.flow(Some(local_handle));
                    reply.delivery_count = Some(receiving.delivery_count);
                    reply.link_credit = Some(receiving.credit);
                    self.send(channel, &reply)?;
                }
            }
            LinkRole::Accepting { .. } | LinkRole::Closing => {}
        }
        Ok(())
    }
}

/// Lets go of what a link held, outside the connection (for broker-side detaches).
async fn release_role(broker: &crate::broker::Broker, role: LinkRole) {
    let sending = match role {
        LinkRole::Sending(sending) => sending,
        LinkRole::Accepting { wait, .. } => {
            wait.abort();
            return;
        }
        LinkRole::Receiving(_) | LinkRole::Closing => return,
    };
    drop(sending.credit_tx);
    if let Feed::Queue {
        session: Some(held),
        ..
    } = sending.feed
    {
        for unsettled in sending.unsettled.values() {
            let _ = broker.provider.release(&unsettled.receipt);
            broker.locks.remove(&unsettled.token);
        }
        let _ = held.receiver.close().await;
        broker.forget_session(&held);
    }
}

fn not_found(name: &str) -> Failure {
    Failure::new(
        condition::NOT_FOUND,
        404,
        format!("the messaging entity {name:?} could not be found"),
    )
}

fn gone() -> Failure {
    Failure::new(condition::INTERNAL_ERROR, 500, "the link went away")
}

fn internal(error: ProtocolError) -> Failure {
    Failure::new(condition::INTERNAL_ERROR, 500, error.to_string())
}

/// A drain the client asked for on a link fed by a pump, not answered yet.
fn pump_owes_drain(link: &Link) -> bool {
    matches!(&link.role, LinkRole::Sending(sending) if sending.drain && sending.credit_tx.is_some())
}

#[cfg(test)]
mod tests {

    use super::*;

    fn source_with(filter: Option<Value>) -> Source {
        let mut source = Source::builder().address("amqps://h/q").build();
        if let Some(value) = filter {
            let mut filters = OrderedMap::new();
            filters.insert(Symbol::from(SESSION_FILTER), value);
            source.filter = Some(filters);
        }
        source
    }

    #[test]
    fn session_filters_are_read_bare_described_or_null() {
        assert!(matches!(session_filter(None), Ok(SessionFilter::None)));
        assert!(matches!(
            session_filter(Some(&source_with(Some(Value::Null)))),
            Ok(SessionFilter::Next)
        ));
        assert!(matches!(
            session_filter(Some(&source_with(Some(Value::String("s".into()))))),
            Ok(SessionFilter::Named(id)) if id == "s"
        ));
        let described = Value::Described(Box::new(Described {
            descriptor: Descriptor::Code(0x0000_0137_0000_000c),
            value: Value::String("t".into()),
        }));
        assert!(matches!(
            session_filter(Some(&source_with(Some(described)))),
            Ok(SessionFilter::Named(id)) if id == "t"
        ));
        assert!(session_filter(Some(&source_with(Some(Value::Int(1))))).is_err());
    }

    #[test]
    fn the_echo_is_described_and_keeps_the_address() {
        let echoed =
            echo_session(Some(Box::new(source_with(Some(Value::Null)))), "granted").unwrap();
        assert_eq!(echoed.address.as_deref(), Some("amqps://h/q"));
        let value = echoed
            .filter
            .unwrap()
            .get(&Symbol::from(SESSION_FILTER))
            .cloned();
        let Some(Value::Described(described)) = value else {
            panic!("not described: {value:?}");
        };
        assert_eq!(described.descriptor, Descriptor::Code(SESSION_FILTER_CODE));
        assert_eq!(described.value, Value::String("granted".into()));
    }

    #[test]
    fn timeouts_are_read_from_link_properties() {
        let properties = fields([(TIMEOUT_PROPERTY, Value::Uint(1500))]);
        assert_eq!(
            property_millis(Some(&properties), TIMEOUT_PROPERTY),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(property_millis(None, TIMEOUT_PROPERTY), None);
    }
}
