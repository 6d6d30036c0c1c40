//! Bad input over raw TCP: every broken connection is answered (a protocol header, or a `close`
//! carrying a condition) and closed, never left hanging; the emulator never falls over; and a
//! well-behaved client on another connection keeps working through all of it.

// Test helpers fail the test by unwrapping.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use fe2o3_amqp::types::performatives::{Begin, End, MaxFrameSize, Open, Performative};
use fe2o3_amqp::types::primitives::Symbol;
use queue_azure_emulator::{Emulator, EmulatorConfig, QueueConfig};
use support::{ANSWER_DELAY, attach_peek_lock_receiver, attach_sender, open_session, step};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod support;

const AMQP_HEADER: &[u8] = b"AMQP\x00\x01\x00\x00";
const SASL_HEADER: &[u8] = b"AMQP\x03\x01\x00\x00";

fn frame(channel: u16, body: &[u8], frame_type: u8) -> Vec<u8> {
    let mut out = ((8 + body.len()) as u32).to_be_bytes().to_vec();
    out.extend([2, frame_type]);
    out.extend(channel.to_be_bytes());
    out.extend(body);
    out
}

fn performative(channel: u16, value: &impl serde::Serialize) -> Vec<u8> {
    frame(channel, &serde_amqp::to_vec(value).unwrap(), 0)
}

fn open() -> Vec<u8> {
    performative(
        0,
        &Open {
            container_id: "garbage".into(),
            hostname: None,
            max_frame_size: MaxFrameSize(65536),
            channel_max: Default::default(),
            idle_time_out: None,
            outgoing_locales: None,
            incoming_locales: None,
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        },
    )
}

fn begin(channel: u16) -> Vec<u8> {
    performative(
        channel,
        &Begin {
            remote_channel: None,
            next_outgoing_id: 0,
            incoming_window: 100,
            outgoing_window: 100,
            handle_max: Default::default(),
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        },
    )
}

/// Sends `bytes` on a fresh connection and reads until the broker closes it (failing if it
/// does not within a few seconds); returns what the broker wrote.
async fn answer_to(address: std::net::SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .expect("the broker left a broken connection open")
        .unwrap();
    answer
}

/// The condition of the `close` frame at the end of an answer.
fn close_condition(answer: &[u8]) -> String {
    let mut rest = answer;
    if rest.starts_with(AMQP_HEADER) {
        rest = &rest[8..];
    }
    let mut last = None;
    while rest.len() >= 8 {
        let size = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let doff = usize::from(rest[4]) * 4;
        if let Ok(Performative::Close(close)) = serde_amqp::from_slice(&rest[doff..size]) {
            // Well-known conditions decode into typed variants: read back their symbol.
            last = close.error.map(|error| {
                let bytes = serde_amqp::to_vec(&error.condition).unwrap();
                serde_amqp::from_slice::<Symbol>(&bytes).unwrap().0
            });
        }
        rest = &rest[size..];
    }
    last.expect("no close with an error in the answer")
}

async fn round_trip(address: std::net::SocketAddr, body: &str) {
    let (mut connection, mut session) = open_session(address, "good").await;
    let mut sender = attach_sender(&mut session, "good-sender", "r").await;
    step("send", sender.send(body.to_owned())).await.unwrap();
    let mut receiver = attach_peek_lock_receiver(&mut session, "good-receiver", "r").await;
    let delivery = step("receive", receiver.recv::<String>()).await.unwrap();
    assert_eq!(delivery.body(), body);
    step("accept", receiver.accept(&delivery)).await.unwrap();
    step("receiver close", receiver.close()).await.unwrap();
    step("sender close", sender.close()).await.unwrap();
    step("end", session.end()).await.unwrap();
    step("close", connection.close()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_answered_and_closed_and_disturbs_no_one() {
    let config = EmulatorConfig::new()
        .with_answer_delay(ANSWER_DELAY)
        .with_max_frame_size(65536)
        .with_queue(QueueConfig::new("q"))
        .with_queue(QueueConfig::new("r"));
    let emulator = Emulator::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let address = emulator.local_addr();

    // A good client that stays connected through everything below.
    let (mut bystander, mut bystander_session) = open_session(address, "bystander").await;
    let mut bystander_sender = attach_sender(&mut bystander_session, "bystander", "q").await;

    // Not AMQP at all: the broker says which protocol it speaks, then closes.
    let answer = answer_to(address, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(answer, SASL_HEADER);
    // TLS: refused the same way (the broker is plain).
    assert_eq!(
        answer_to(address, b"AMQP\x02\x01\x00\x00").await,
        SASL_HEADER
    );
    // A SASL frame that is not a SASL init.
    let mut bad_sasl = SASL_HEADER.to_vec();
    bad_sasl.extend(frame(0, &[0xde, 0xad, 0xbe, 0xef], 1));
    let answer = answer_to(address, &bad_sasl).await;
    assert!(answer.starts_with(SASL_HEADER));

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "a frame far above the max frame size",
            [AMQP_HEADER, &[0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0]].concat(),
            "amqp:connection:framing-error",
        ),
        (
            "a frame shorter than its header",
            [AMQP_HEADER, &[0, 0, 0, 4, 2, 0, 0, 0]].concat(),
            "amqp:connection:framing-error",
        ),
        (
            "an unknown frame type",
            [AMQP_HEADER, &frame(0, b"x", 7)[..]].concat(),
            "amqp:connection:framing-error",
        ),
        (
            "a body that is not a performative",
            [AMQP_HEADER, &frame(0, &[0xff; 16], 0)[..]].concat(),
            "amqp:decode-error",
        ),
        (
            "a described value with an unknown descriptor",
            [AMQP_HEADER, &frame(0, &[0x00, 0x53, 0x99, 0x45], 0)[..]].concat(),
            "amqp:decode-error",
        ),
        (
            "begin before open",
            [AMQP_HEADER, &begin(0)[..]].concat(),
            "amqp:illegal-state",
        ),
        (
            "a second open",
            [AMQP_HEADER, &open(), &open()].concat(),
            "amqp:illegal-state",
        ),
        (
            "an end on a channel without a session",
            [AMQP_HEADER, &open(), &performative(5, &End { error: None })].concat(),
            "amqp:illegal-state",
        ),
        (
            "a SASL frame after SASL",
            [AMQP_HEADER, &open(), &frame(0, &[0x40], 1)].concat(),
            "amqp:illegal-state",
        ),
    ];
    for (what, bytes, condition) in cases {
        let answer = answer_to(address, &bytes).await;
        assert!(answer.starts_with(AMQP_HEADER), "{what}: {answer:?}");
        let closed_with = close_condition(&answer);
        assert!(
            closed_with.contains(condition),
            "{what}: closed with {closed_with} instead of {condition}"
        );
    }

    // Random bytes after a good start, many times over.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..50 {
        let mut noise = [AMQP_HEADER, &open()].concat();
        for _ in 0..64 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            noise.push(seed as u8);
        }
        let _ = answer_to(address, &noise).await;
    }

    // The bystander never noticed, and new clients are served.
    let outcome = step(
        "bystander send",
        bystander_sender.send("still here".to_owned()),
    )
    .await
    .unwrap();
    assert!(outcome.is_accepted());
    round_trip(address, "after the garbage").await;
    step("bystander detach", bystander_sender.close())
        .await
        .unwrap();
    step("bystander end", bystander_session.end())
        .await
        .unwrap();
    step("bystander close", bystander.close()).await.unwrap();
    step("stop", emulator.stop()).await;
}
