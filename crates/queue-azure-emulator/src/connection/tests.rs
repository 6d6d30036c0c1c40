//! The link protocol frame by frame, from a raw client: credit and drain, settlement echoes
//! (and their refusals), lock tokens, oversized messages.

use std::time::Duration;

use bytes::Bytes;
use fe2o3_amqp_types::definitions::{Handle, ReceiverSettleMode, Role, SenderSettleMode};
use fe2o3_amqp_types::messaging::{
    Accepted, DeliveryState, Modified, Released, Source, Target, TargetArchetype,
};
use fe2o3_amqp_types::performatives::{
    Attach, Begin, ChannelMax, Disposition, Flow, MaxFrameSize, Open, Transfer,
};
use queue_core::{QueueName, QueueProvider};
use serde_amqp::Value;
use serde_bytes::ByteBuf;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use uuid::Uuid;

use crate::codec;
use crate::config::{EmulatorConfig, QueueConfig};
use crate::error::condition_name;
use crate::frame::{self, AMQP_HEADER, Body};
use crate::listener::Emulator;
use crate::message::{self, Inbound, Kind};

/// A client that writes and reads frames itself.
struct RawClient {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl RawClient {
    /// Connects without SASL, opens, and begins a session on channel 0.
    async fn connect(emulator: &Emulator) -> RawClient {
        let stream = TcpStream::connect(emulator.local_addr()).await.unwrap();
        let (read, writer) = stream.into_split();
        let mut client = RawClient {
            reader: BufReader::new(read),
            writer,
        };
        client.write(&AMQP_HEADER).await;
        let mut header = [0u8; 8];
        tokio::io::AsyncReadExt::read_exact(&mut client.reader, &mut header)
            .await
            .unwrap();
        assert_eq!(header, AMQP_HEADER);
        client
            .send(&Open {
                container_id: "raw".into(),
                hostname: None,
                max_frame_size: MaxFrameSize(65536),
                channel_max: ChannelMax(10),
                idle_time_out: None,
                outgoing_locales: None,
                incoming_locales: None,
                offered_capabilities: None,
                desired_capabilities: None,
                properties: None,
            })
            .await;
        assert!(matches!(client.next().await, Body::Open(_)));
        client
            .send(&Begin {
                remote_channel: None,
                next_outgoing_id: 0,
                incoming_window: 1000,
                outgoing_window: 1000,
                handle_max: Handle(100),
                offered_capabilities: None,
                desired_capabilities: None,
                properties: None,
            })
            .await;
        assert!(matches!(client.next().await, Body::Begin(_)));
        client
    }

    async fn write(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.unwrap();
    }

    async fn send(&mut self, performative: &impl serde::Serialize) {
        let mut out = Vec::new();
        frame::encode(&mut out, false, 0, performative, &[]).unwrap();
        self.write(&out).await;
    }

    /// The next frame (heartbeats skipped), failing after two seconds.
    async fn next(&mut self) -> Body {
        self.next_within(Duration::from_secs(2))
            .await
            .expect("no frame came")
    }

    async fn next_within(&mut self, wait: Duration) -> Option<Body> {
        loop {
            let frame = tokio::time::timeout(wait, frame::read_frame(&mut self.reader, 1 << 20))
                .await
                .ok()?
                .unwrap()
                .unwrap();
            match Body::decode(frame.body).unwrap() {
                Body::Empty => continue,
                body => return Some(body),
            }
        }
    }

    async fn flow(&mut self, delivery_count: u32, link_credit: u32, drain: bool) {
        self.send(&flow(delivery_count, link_credit, drain)).await;
    }

    async fn transfer(&mut self) -> (Transfer, Bytes) {
        match self.next().await {
            Body::Transfer(transfer, payload) => (transfer, payload),
            other => panic!("expected a transfer, got {other:?}"),
        }
    }

    async fn disposition(&mut self) -> Disposition {
        match self.next().await {
            Body::Disposition(disposition) => disposition,
            other => panic!("expected a disposition, got {other:?}"),
        }
    }

    async fn settle(&mut self, delivery_id: u32, state: DeliveryState) -> Disposition {
        self.send(&settlement(delivery_id, state)).await;
        self.disposition().await
    }
}

/// The client's unsettled settlement of one delivery.
fn settlement(delivery_id: u32, state: DeliveryState) -> Disposition {
    Disposition {
        role: Role::Receiver,
        first: delivery_id,
        last: None,
        settled: false,
        state: Some(state),
        batchable: false,
    }
}

/// An unsettled transfer on the link on handle 0, tagged with its id; `more` when another frame
/// of the same message follows.
fn transfer(delivery_id: u32, more: bool) -> Transfer {
    Transfer {
        handle: Handle(0),
        delivery_id: Some(delivery_id),
        delivery_tag: Some(ByteBuf::from(delivery_id.to_be_bytes().to_vec())),
        message_format: Some(0),
        settled: Some(false),
        more,
        rcv_settle_mode: None,
        state: None,
        resume: false,
        aborted: false,
        batchable: false,
    }
}

/// A flow for the link on handle 0.
fn flow(delivery_count: u32, link_credit: u32, drain: bool) -> Flow {
    Flow {
        next_incoming_id: Some(0),
        incoming_window: 1000,
        next_outgoing_id: 0,
        outgoing_window: 1000,
        handle: Some(Handle(0)),
        delivery_count: Some(delivery_count),
        link_credit: Some(link_credit),
        available: None,
        drain,
        echo: false,
        properties: None,
    }
}

fn attach(role: Role, address: &str) -> Attach {
    let sender = role == Role::Sender;
    let (snd, rcv) = match role {
        Role::Receiver => (SenderSettleMode::Unsettled, ReceiverSettleMode::Second),
        Role::Sender => (SenderSettleMode::Unsettled, ReceiverSettleMode::First),
    };
    Attach {
        name: format!("{role:?}-link"),
        handle: Handle(0),
        role,
        snd_settle_mode: snd,
        rcv_settle_mode: rcv,
        source: Some(Box::new(Source::builder().address(address).build())),
        target: Some(Box::new(TargetArchetype::Target(
            Target::builder().address(address).build(),
        ))),
        unsettled: None,
        incomplete_unsettled: false,
        initial_delivery_count: sender.then_some(0),
        max_message_size: None,
        offered_capabilities: None,
        desired_capabilities: None,
        properties: None,
    }
}

/// An encoded message with a data body.
fn encoded(body: &[u8]) -> Vec<u8> {
    codec::described(0x75, &codec::binary(body))
}

async fn emulator(queue: QueueConfig) -> Emulator {
    let config = EmulatorConfig::new().with_queue(queue);
    Emulator::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

async fn seed(emulator: &Emulator, queue: &str, bodies: &[&str]) {
    for body in bodies {
        let message = Inbound::read(Bytes::from(encoded(body.as_bytes())))
            .unwrap()
            .into_message()
            .unwrap();
        emulator
            .provider()
            .send(&QueueName::new(queue).unwrap(), message)
            .await
            .unwrap();
    }
}

fn rejected_condition(disposition: &Disposition) -> String {
    match &disposition.state {
        Some(DeliveryState::Rejected(rejected)) => {
            condition_name(&rejected.error.as_ref().unwrap().condition)
        }
        other => panic!("expected rejected, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credit_follows_flows_a_repeated_flow_changes_nothing_and_drain_uses_it_up() {
    let emulator = emulator(QueueConfig::new("q")).await;
    seed(&emulator, "q", &["one", "two", "three"]).await;
    let mut client = RawClient::connect(&emulator).await;
    client
        .send(&attach(Role::Receiver, "amqps://localhost:5671/Q"))
        .await;
    let Body::Attach(reply) = client.next().await else {
        panic!("no attach");
    };
    assert_eq!(reply.role, Role::Sender);
    assert_eq!(reply.initial_delivery_count, Some(0));
    assert_eq!(reply.max_message_size, Some(256 * 1024));
    assert_eq!(
        reply.source.unwrap().address.as_deref(),
        Some("amqps://localhost:5671/Q"),
        "the source is echoed as the client wrote it"
    );

    // Credit 1, twice: one message, not two.
    client.flow(0, 1, false).await;
    client.flow(0, 1, false).await;
    let (first, payload) = client.transfer().await;
    assert!(
        client
            .next_within(Duration::from_millis(300))
            .await
            .is_none()
    );
    let tag: [u8; 16] = first.delivery_tag.unwrap().to_vec().try_into().unwrap();
    assert_eq!(first.settled, Some(false));
    let parts = message::sections(&payload).unwrap();
    let annotations = parts
        .iter()
        .find(|part| part.kind == Kind::DeliveryAnnotations)
        .unwrap();
    let Value::Map(annotations) = serde_amqp::from_slice::<Value>(annotations.value).unwrap()
    else {
        panic!("delivery annotations are not a map");
    };
    let token = annotations
        .get(&Value::Symbol("x-opt-lock-token".into()))
        .unwrap();
    assert_eq!(
        token,
        &Value::Uuid((*Uuid::from_bytes_le(tag).as_bytes()).into()),
        "the tag is the lock token in .NET GUID order"
    );

    // The next credit, counted from the client's delivery count.
    client.flow(1, 1, false).await;
    let (second, _) = client.transfer().await;
    // Drain: what is there comes, the rest of the credit is used up and reported.
    client.flow(2, 5, true).await;
    let (third, _) = client.transfer().await;
    let Body::Flow(drained) = client.next().await else {
        panic!("no flow after the drain");
    };
    assert!(drained.drain);
    assert_eq!(drained.link_credit, Some(0));
    assert_eq!(drained.delivery_count, Some(7));

    // Each settlement is echoed with the same outcome, settled; deferral is refused.
    let echo = client
        .settle(first.delivery_id.unwrap(), Accepted {}.into())
        .await;
    assert!(echo.settled && echo.role == Role::Sender);
    assert!(matches!(echo.state, Some(DeliveryState::Accepted(_))));
    let defer = Modified {
        delivery_failed: Some(true),
        undeliverable_here: Some(true),
        message_annotations: None,
    };
    let refused = client
        .settle(second.delivery_id.unwrap(), defer.into())
        .await;
    assert_eq!(rejected_condition(&refused), "amqp:not-allowed");
    let released = client
        .settle(third.delivery_id.unwrap(), Released {}.into())
        .await;
    assert!(matches!(released.state, Some(DeliveryState::Released(_))));
    let stats = emulator
        .provider()
        .queue_stats(&QueueName::new("q").unwrap())
        .unwrap();
    assert_eq!((stats.active, stats.in_flight), (1, 1), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settlement_after_the_lock_expired_is_rejected_as_lock_lost() {
    let queue = QueueConfig::new("q").with_lock_duration(Duration::from_millis(100));
    let emulator = emulator(queue).await;
    seed(&emulator, "q", &["late"]).await;
    let mut client = RawClient::connect(&emulator).await;
    client.send(&attach(Role::Receiver, "q")).await;
    assert!(matches!(client.next().await, Body::Attach(_)));
    client.flow(0, 1, false).await;
    let (transfer, _) = client.transfer().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let echo = client
        .settle(transfer.delivery_id.unwrap(), Accepted {}.into())
        .await;
    assert!(echo.settled);
    assert_eq!(rejected_condition(&echo), "com.microsoft:message-lock-lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_are_rejected_whole_or_in_frames() {
    let emulator = emulator(QueueConfig::new("q").with_max_message_size(1024)).await;
    let mut client = RawClient::connect(&emulator).await;
    client.send(&attach(Role::Sender, "q")).await;
    let Body::Attach(reply) = client.next().await else {
        panic!("no attach");
    };
    assert_eq!(reply.max_message_size, Some(1024));
    let Body::Flow(credit) = client.next().await else {
        panic!("no credit");
    };
    assert!(credit.link_credit.unwrap() > 0);
    let big = encoded(&[7; 2000]);
    for (id, frames) in [
        (0u32, vec![&big[..]]),
        (1, vec![&big[..1500], &big[1500..]]),
    ] {
        let count = frames.len();
        for (index, part) in frames.into_iter().enumerate() {
            let mut out = Vec::new();
            frame::encode(&mut out, false, 0, &transfer(id, index + 1 < count), part).unwrap();
            client.write(&out).await;
        }
        let disposition = client.disposition().await;
        assert_eq!(disposition.first, id);
        assert_eq!(
            rejected_condition(&disposition),
            "amqp:link:message-size-exceeded"
        );
    }
    let mut out = Vec::new();
    frame::encode(&mut out, false, 0, &transfer(2, false), &encoded(b"small")).unwrap();
    client.write(&out).await;
    let accepted = client.disposition().await;
    assert!(matches!(accepted.state, Some(DeliveryState::Accepted(_))));
    let stats = emulator
        .provider()
        .queue_stats(&QueueName::new("q").unwrap())
        .unwrap();
    assert_eq!(stats.active, 1);
}

#[tokio::test]
async fn a_transfer_is_answered_no_sooner_than_the_answer_delay() {
    let delay = Duration::from_millis(200);
    let config = EmulatorConfig::new()
        .with_queue(QueueConfig::new("q"))
        .with_answer_delay(delay);
    let emulator = Emulator::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut client = RawClient::connect(&emulator).await;
    client.send(&attach(Role::Sender, "q")).await;
    let Body::Attach(_) = client.next().await else {
        panic!("no attach");
    };
    let Body::Flow(_) = client.next().await else {
        panic!("no credit");
    };
    let mut out = Vec::new();
    frame::encode(&mut out, false, 0, &transfer(0, false), &encoded(b"late")).unwrap();
    let sent = tokio::time::Instant::now();
    client.write(&out).await;
    let answer = client.disposition().await;
    assert!(matches!(answer.state, Some(DeliveryState::Accepted(_))));
    assert!(
        sent.elapsed() >= delay,
        "answered after {:?}, before the {delay:?} delay",
        sent.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_is_answered_before_the_frames_that_follow_it() {
    let emulator = emulator(QueueConfig::new("q")).await;
    seed(&emulator, "q", &["given back"]).await;
    let mut client = RawClient::connect(&emulator).await;
    client.send(&attach(Role::Receiver, "q")).await;
    assert!(matches!(client.next().await, Body::Attach(_)));
    client.flow(0, 1, false).await;
    let (delivered, _) = client.transfer().await;

    // A receive that found nothing more drains its credit, and the application at once gives
    // back what it holds: two frames, read together. The drain finds the queue empty (the
    // message is locked), so it uses the credit up; the abandoned message must not go to it.
    let abandon = settlement(
        delivered.delivery_id.unwrap(),
        Modified {
            delivery_failed: None,
            undeliverable_here: None,
            message_annotations: None,
        }
        .into(),
    );
    let mut out = Vec::new();
    frame::encode(&mut out, false, 0, &flow(1, 1, true), &[]).unwrap();
    frame::encode(&mut out, false, 0, &abandon, &[]).unwrap();
    client.write(&out).await;
    let Body::Flow(drained) = client.next().await else {
        panic!("the drain is not answered first");
    };
    assert!(drained.drain);
    assert_eq!(drained.link_credit, Some(0));
    assert_eq!(drained.delivery_count, Some(2));
    let echo = client.disposition().await;
    assert!(matches!(echo.state, Some(DeliveryState::Modified(_))));
    assert!(
        client
            .next_within(Duration::from_millis(300))
            .await
            .is_none(),
        "the abandoned message went to the drained credit"
    );
    let stats = emulator
        .provider()
        .queue_stats(&QueueName::new("q").unwrap())
        .unwrap();
    assert_eq!((stats.active, stats.in_flight), (1, 0), "{stats:?}");
}
