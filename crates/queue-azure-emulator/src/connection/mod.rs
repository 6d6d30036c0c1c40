//! One client connection: a task that owns the socket's writing half and every session and link
//! on it. A second task reads frames (so a frame is never half-read when something else wakes
//! the connection); link pumps and session accepts run as tasks of their own and report back
//! through [`Event`]s. Nothing a client sends can panic the task; a protocol violation closes
//! this connection with a condition and leaves every other connection alone.

mod deliveries;
mod links;
mod node;
mod pump;
mod session;
mod settle;
#[cfg(test)]
mod tests;
mod transfers;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use fe2o3_amqp_types::definitions;
use fe2o3_amqp_types::performatives::{ChannelMax, Close, End, MaxFrameSize, Open};
use tokio::io::{AsyncRead, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::broker::Broker;
use crate::error::{ProtocolError, condition};
use crate::frame::{self, Body, MIN_MAX_FRAME_SIZE, RawFrame};
use crate::sasl;

use links::{Link, LinkId};
pub(crate) use pump::Event;
use session::Session;

/// How long a client may take from connecting to the end of SASL.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// The container id the broker announces.
const CONTAINER_ID: &str = "queue-azure-emulator";
/// The highest channel (session) number a client may use.
const CHANNEL_MAX: u16 = 255;
/// The longest a connection waits for a link's pump to answer a drain before reading on.
const DRAIN_ANSWER_LIMIT: Duration = Duration::from_secs(1);
/// Frames read ahead of the connection task.
const READ_AHEAD: usize = 64;

/// Serves one accepted socket until either side closes it.
pub(crate) async fn serve(stream: TcpStream, broker: Arc<Broker>) {
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "unknown peer".to_owned(), |address| address.to_string());
    let _ = stream.set_nodelay(true);
    let (read, write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut writer = write;
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, sasl::handshake(&mut reader, &mut writer)).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::debug!(%peer, %error, "handshake refused");
            let _ = writer.shutdown().await;
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "handshake timed out");
            return;
        }
    }
    let max_frame_size = broker.config.max_frame_size();
    let (frames_tx, frames_rx) = mpsc::channel(READ_AHEAD);
    let reader_task = tokio::spawn(read_frames(reader, max_frame_size, frames_tx));
    let (events_tx, events_rx) = mpsc::channel(256);
    let mut connection = Connection {
        broker,
        writer,
        out: Vec::new(),
        events: events_tx,
        opened: false,
        peer_max_frame_size: MIN_MAX_FRAME_SIZE,
        heartbeat: None,
        last_sent: Instant::now(),
        sessions: HashMap::new(),
        ended: HashSet::new(),
        links: HashMap::new(),
        next_link: 1,
        draining: Vec::new(),
    };
    let result = connection.run(frames_rx, events_rx).await;
    match &result {
        Ok(()) => tracing::debug!(%peer, "connection closed"),
        Err(ProtocolError::Io(error)) => tracing::debug!(%peer, %error, "connection lost"),
        Err(error) => {
            tracing::info!(%peer, %error, "closing a connection on a protocol error");
            if let Some(amqp) = error.to_amqp() {
                connection.close(Some(amqp));
                let _ = connection.flush().await;
            }
        }
    }
    connection.release_everything().await;
    let _ = connection.writer.shutdown().await;
    reader_task.abort();
}

async fn read_frames<R: AsyncRead + Unpin>(
    mut reader: R,
    max_frame_size: u32,
    frames: mpsc::Sender<Result<RawFrame, ProtocolError>>,
) {
    loop {
        match frame::read_frame(&mut reader, max_frame_size).await {
            Ok(Some(frame)) => {
                if frames.send(Ok(frame)).await.is_err() {
                    return;
                }
            }
            Ok(None) => return,
            Err(error) => {
                let _ = frames.send(Err(error)).await;
                return;
            }
        }
    }
}

/// Whether the connection goes on after a frame.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    Continue,
    Closed,
}

/// The state of one connection.
#[derive(Debug)]
pub(crate) struct Connection {
    broker: Arc<Broker>,
    writer: tokio::net::tcp::OwnedWriteHalf,
    /// Encoded frames waiting to be written.
    out: Vec<u8>,
    events: mpsc::Sender<Event>,
    opened: bool,
    peer_max_frame_size: u32,
    /// Send an empty frame when nothing else went out for this long (half the client's idle
    /// timeout).
    heartbeat: Option<Duration>,
    last_sent: Instant,
    /// Sessions by the client's channel (the broker answers on the same number).
    sessions: HashMap<u16, Session>,
    /// Channels whose session the client ended: Python detaches its links after its end, so
    /// frames may still come on them until the channel is begun again.
    ended: HashSet<u16>,
    links: HashMap<LinkId, Link>,
    next_link: u64,
    /// Links whose drain the client asked for and the pump has not answered yet: answered
    /// before the next frame is read (see [`Connection::answer_drains`]).
    draining: Vec<LinkId>,
}

impl Connection {
    async fn run(
        &mut self,
        mut frames: mpsc::Receiver<Result<RawFrame, ProtocolError>>,
        mut events: mpsc::Receiver<Event>,
    ) -> Result<(), ProtocolError> {
        loop {
            let beat_at = self.heartbeat.map(|every| self.last_sent + every);
            tokio::select! {
                frame = frames.recv() => match frame {
                    None => return Ok(()),
                    Some(Err(error)) => return Err(error),
                    Some(Ok(frame)) => {
                        if self.on_frame(frame).await? == Step::Closed {
                            // The client may be gone already: its close is what counted.
                            let _ = self.flush().await;
                            return Ok(());
                        }
                        self.answer_drains(&mut events).await?;
                    }
                },
                Some(event) = events.recv() => self.on_event(event).await?,
                () = sleep_until_option(beat_at) => frame::encode_empty(&mut self.out),
            }
            self.flush().await?;
        }
    }

    /// Answers every pending drain before the next frame is read, as Service Bus does by
    /// handling a connection's frames in order: a drain finds the messages available when it
    /// arrives, and only those. Left to the link's pump alone, a disposition that came right
    /// after the drain (an abandon) could make its message available first and have it
    /// delivered to the drained credit, locked in a client that believes its receive is over.
    async fn answer_drains(
        &mut self,
        events: &mut mpsc::Receiver<Event>,
    ) -> Result<(), ProtocolError> {
        let deadline = Instant::now() + DRAIN_ANSWER_LIMIT;
        while let Some(&link) = self.draining.last() {
            if !self.is_draining(link) {
                self.draining.pop();
                continue;
            }
            // The pump answers a drain with one receive that does not wait; the limit only
            // guards against a pump that is gone.
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(event)) => self.on_event(event).await?,
                Ok(None) | Err(_) => {
                    self.draining.clear();
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), ProtocolError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let bytes = std::mem::take(&mut self.out);
        self.writer
            .write_all(&bytes)
            .await
            .map_err(ProtocolError::Io)?;
        self.last_sent = Instant::now();
        Ok(())
    }

    /// Queues a frame for writing.
    fn send(
        &mut self,
        channel: u16,
        performative: &impl serde::Serialize,
    ) -> Result<(), ProtocolError> {
        frame::encode(&mut self.out, false, channel, performative, &[])
    }

    fn close(&mut self, error: Option<definitions::Error>) {
        // A close that cannot be encoded leaves the socket to say it.
        let _ = frame::encode(&mut self.out, false, 0, &Close { error }, &[]);
    }

    async fn on_frame(&mut self, frame: RawFrame) -> Result<Step, ProtocolError> {
        if frame.sasl {
            return Err(ProtocolError::illegal("a SASL frame after SASL"));
        }
        let channel = frame.channel;
        let body = Body::decode(frame.body)?;
        if !self.opened {
            return match body {
                Body::Open(open) if channel == 0 => {
                    self.on_open(open)?;
                    Ok(Step::Continue)
                }
                Body::Empty => Ok(Step::Continue),
                other => Err(ProtocolError::illegal(format!(
                    "expected open on channel 0, got {} on channel {channel}",
                    other.name()
                ))),
            };
        }
        if self.ended.contains(&channel) && !matches!(body, Body::Begin(_) | Body::Close(_)) {
            return Ok(Step::Continue);
        }
        match body {
            Body::Empty => {}
            Body::Open(_) => return Err(ProtocolError::illegal("a second open")),
            Body::Close(close) => {
                if let Some(error) = &close.error {
                    tracing::debug!(?error, "the client closed with an error");
                }
                self.close(None);
                return Ok(Step::Closed);
            }
            Body::Begin(begin) => self.on_begin(channel, begin)?,
            Body::End(end) => {
                if let Some(error) = &end.error {
                    tracing::debug!(?error, "the client ended a session with an error");
                }
                self.on_end(channel).await?;
            }
            Body::Attach(attach) => self.on_attach(channel, attach).await?,
            Body::Flow(flow) => self.on_flow(channel, flow)?,
            Body::Transfer(transfer, payload) => {
                self.on_transfer(channel, transfer, payload).await?
            }
            Body::Disposition(disposition) => self.on_disposition(channel, disposition).await?,
            Body::Detach(detach) => self.on_detach(channel, detach).await?,
        }
        Ok(Step::Continue)
    }

    fn on_open(&mut self, open: Open) -> Result<(), ProtocolError> {
        let MaxFrameSize(max_frame_size) = open.max_frame_size;
        if max_frame_size < MIN_MAX_FRAME_SIZE {
            return Err(ProtocolError::Violation {
                condition: condition::INVALID_FIELD,
                description: format!(
                    "max-frame-size {max_frame_size} is below AMQP's minimum of {MIN_MAX_FRAME_SIZE}"
                ),
            });
        }
        self.peer_max_frame_size = max_frame_size;
        self.heartbeat = open
            .idle_time_out
            .filter(|millis| *millis > 0)
            .map(|millis| Duration::from_millis(u64::from(millis) / 2));
        self.opened = true;
        let reply = Open {
            container_id: CONTAINER_ID.to_owned(),
            hostname: None,
            max_frame_size: MaxFrameSize(self.broker.config.max_frame_size()),
            channel_max: ChannelMax(CHANNEL_MAX),
            idle_time_out: None,
            outgoing_locales: None,
            incoming_locales: None,
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        };
        self.send(0, &reply)
    }

    fn on_begin(
        &mut self,
        channel: u16,
        begin: fe2o3_amqp_types::performatives::Begin,
    ) -> Result<(), ProtocolError> {
        if begin.remote_channel.is_some() {
            return Err(ProtocolError::illegal(
                "a begin answering a session this broker never began",
            ));
        }
        if channel > CHANNEL_MAX {
            return Err(ProtocolError::Violation {
                condition: condition::INVALID_FIELD,
                description: format!("channel {channel} is above channel-max {CHANNEL_MAX}"),
            });
        }
        if self.sessions.contains_key(&channel) {
            return Err(ProtocolError::illegal(format!(
                "channel {channel} already has a session"
            )));
        }
        self.ended.remove(&channel);
        let session = Session::new(&begin);
        let reply = session.begin_reply(channel);
        self.sessions.insert(channel, session);
        self.send(channel, &reply)
    }

    async fn on_end(&mut self, channel: u16) -> Result<(), ProtocolError> {
        let Some(session) = self.sessions.remove(&channel) else {
            return Err(ProtocolError::illegal(format!(
                "end on channel {channel}, which has no session"
            )));
        };
        for link in session.links() {
            self.drop_link(link).await;
        }
        self.ended.insert(channel);
        self.send(channel, &End { error: None })
    }

    /// Releases what every link holds: the connection is going away.
    async fn release_everything(&mut self) {
        let links: Vec<LinkId> = self.links.keys().copied().collect();
        for link in links {
            self.drop_link(link).await;
        }
        self.sessions.clear();
    }

    fn session(&mut self, channel: u16) -> Result<&mut Session, ProtocolError> {
        self.sessions.get_mut(&channel).ok_or_else(|| {
            ProtocolError::illegal(format!(
                "a frame on channel {channel}, which has no session"
            ))
        })
    }
}

async fn sleep_until_option(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
