//! Frames: the 8-byte frame header, protocol headers, and the performatives and SASL frames
//! inside (decoded and encoded by `fe2o3-amqp-types`).

use bytes::{Bytes, BytesMut};
use fe2o3_amqp_types::performatives::{
    Attach, Begin, Close, Detach, Disposition, End, Flow, Open, Performative, Transfer,
};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::codec::value_len;
use crate::error::ProtocolError;

/// The protocol header of plain AMQP 1.0.
pub(crate) const AMQP_HEADER: [u8; 8] = *b"AMQP\x00\x01\x00\x00";
/// The protocol header of the SASL layer.
pub(crate) const SASL_HEADER: [u8; 8] = *b"AMQP\x03\x01\x00\x00";
/// The smallest max-frame-size AMQP allows a peer to announce.
pub(crate) const MIN_MAX_FRAME_SIZE: u32 = 512;

const FRAME_TYPE_AMQP: u8 = 0;
const FRAME_TYPE_SASL: u8 = 1;

/// A frame as it came off the wire: its type, channel and body (without the header).
#[derive(Debug)]
pub(crate) struct RawFrame {
    pub(crate) sasl: bool,
    pub(crate) channel: u16,
    pub(crate) body: Bytes,
}

/// Reads one frame; `None` at a clean end of stream between frames.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max_frame_size: u32,
) -> Result<Option<RawFrame>, ProtocolError> {
    let mut header = [0u8; 8];
    match reader.read_exact(&mut header[..1]).await {
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(ProtocolError::Io(error)),
    }
    reader
        .read_exact(&mut header[1..])
        .await
        .map_err(ProtocolError::Io)?;
    let size = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
    let doff = header[4];
    let kind = header[5];
    let channel = u16::from_be_bytes([header[6], header[7]]);
    if size < 8 || size > max_frame_size {
        return Err(ProtocolError::framing(format!(
            "a frame of {size} bytes (this broker takes 8 to {max_frame_size})"
        )));
    }
    let extended = usize::from(doff) * 4;
    if extended < 8 || extended > size as usize {
        return Err(ProtocolError::framing(format!(
            "a data offset of {doff} in a frame of {size} bytes"
        )));
    }
    let sasl = match kind {
        FRAME_TYPE_AMQP => false,
        FRAME_TYPE_SASL => true,
        other => {
            return Err(ProtocolError::framing(format!(
                "unknown frame type {other}"
            )));
        }
    };
    let mut rest = BytesMut::zeroed(size as usize - 8);
    reader
        .read_exact(&mut rest)
        .await
        .map_err(ProtocolError::Io)?;
    let body = rest.freeze().slice(extended - 8..);
    Ok(Some(RawFrame {
        sasl,
        channel,
        body,
    }))
}

/// A performative (and a transfer's payload), or an empty frame (a heartbeat).
#[derive(Debug)]
pub(crate) enum Body {
    Empty,
    Open(Open),
    Begin(Begin),
    Attach(Attach),
    Flow(Flow),
    Transfer(Transfer, Bytes),
    Disposition(Disposition),
    Detach(Detach),
    End(End),
    Close(Close),
}

impl Body {
    /// Decodes the body of an AMQP frame.
    pub(crate) fn decode(body: Bytes) -> Result<Body, ProtocolError> {
        if body.is_empty() {
            return Ok(Body::Empty);
        }
        let len = value_len(&body).map_err(|error| ProtocolError::decode(error.to_string()))?;
        let performative: Performative = serde_amqp::from_slice(&body[..len])
            .map_err(|error| ProtocolError::decode(format!("not a performative: {error}")))?;
        Ok(match performative {
            Performative::Open(open) => Body::Open(open),
            Performative::Begin(begin) => Body::Begin(begin),
            Performative::Attach(attach) => Body::Attach(attach),
            Performative::Flow(flow) => Body::Flow(flow),
            Performative::Transfer(transfer) => Body::Transfer(transfer, body.slice(len..)),
            Performative::Disposition(disposition) => Body::Disposition(disposition),
            Performative::Detach(detach) => Body::Detach(detach),
            Performative::End(end) => Body::End(end),
            Performative::Close(close) => Body::Close(close),
        })
    }

    /// The performative's name, for messages.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Body::Empty => "empty frame",
            Body::Open(_) => "open",
            Body::Begin(_) => "begin",
            Body::Attach(_) => "attach",
            Body::Flow(_) => "flow",
            Body::Transfer(..) => "transfer",
            Body::Disposition(_) => "disposition",
            Body::Detach(_) => "detach",
            Body::End(_) => "end",
            Body::Close(_) => "close",
        }
    }
}

/// Appends a frame holding `performative` (and `payload`) to `out`.
pub(crate) fn encode(
    out: &mut Vec<u8>,
    sasl: bool,
    channel: u16,
    performative: &impl Serialize,
    payload: &[u8],
) -> Result<(), ProtocolError> {
    let body = serde_amqp::to_vec(performative)
        .map_err(|error| ProtocolError::Internal(format!("cannot encode a frame: {error}")))?;
    push_frame(out, sasl, channel, &body, payload);
    Ok(())
}

/// Appends an empty frame (a heartbeat).
pub(crate) fn encode_empty(out: &mut Vec<u8>) {
    push_frame(out, false, 0, &[], &[]);
}

fn push_frame(out: &mut Vec<u8>, sasl: bool, channel: u16, body: &[u8], payload: &[u8]) {
    let size = 8 + body.len() + payload.len();
    out.extend_from_slice(&(size as u32).to_be_bytes());
    out.push(2);
    out.push(if sasl {
        FRAME_TYPE_SASL
    } else {
        FRAME_TYPE_AMQP
    });
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(body);
    out.extend_from_slice(payload);
}

/// Appends a delivery as one or more transfer frames, none larger than `max_frame_size`: the
/// first carries the delivery id, tag and format, the others only the handle and `more`.
pub(crate) fn encode_transfer(
    out: &mut Vec<u8>,
    channel: u16,
    transfer: Transfer,
    payload: &[u8],
    max_frame_size: u32,
) -> Result<usize, ProtocolError> {
    let first = serde_amqp::to_vec(&transfer)
        .map_err(|error| ProtocolError::Internal(format!("cannot encode a transfer: {error}")))?;
    let limit = max_frame_size as usize;
    if 8 + first.len() + payload.len() <= limit {
        push_frame(out, false, channel, &first, payload);
        return Ok(1);
    }
    let more = |more: bool, full: bool| -> Result<Vec<u8>, ProtocolError> {
        let performative = if full {
            Transfer {
                more,
                ..transfer.clone()
            }
        } else {
            Transfer {
                handle: transfer.handle.clone(),
                delivery_id: None,
                delivery_tag: None,
                message_format: None,
                settled: None,
                more,
                rcv_settle_mode: None,
                state: None,
                resume: false,
                aborted: false,
                batchable: transfer.batchable,
            }
        };
        serde_amqp::to_vec(&performative)
            .map_err(|error| ProtocolError::Internal(format!("cannot encode a transfer: {error}")))
    };
    let head = more(true, true)?;
    let middle = more(true, false)?;
    let last = more(false, false)?;
    if 8 + head.len().max(middle.len()) >= limit {
        return Err(ProtocolError::Internal(format!(
            "the peer's max-frame-size of {limit} bytes leaves no room for a payload"
        )));
    }
    let mut rest = payload;
    let take = (limit - 8 - head.len()).min(rest.len());
    push_frame(out, false, channel, &head, &rest[..take]);
    rest = &rest[take..];
    let mut frames = 1;
    loop {
        frames += 1;
        if 8 + last.len() + rest.len() <= limit {
            push_frame(out, false, channel, &last, rest);
            return Ok(frames);
        }
        let take = (limit - 8 - middle.len()).min(rest.len());
        push_frame(out, false, channel, &middle, &rest[..take]);
        rest = &rest[take..];
    }
}

#[cfg(test)]
mod tests {
    use fe2o3_amqp_types::definitions::Handle;
    use serde_bytes::ByteBuf;

    use super::*;

    fn transfer() -> Transfer {
        Transfer {
            handle: Handle(3),
            delivery_id: Some(9),
            delivery_tag: Some(ByteBuf::from(vec![7; 16])),
            message_format: Some(0),
            settled: Some(false),
            more: false,
            rcv_settle_mode: None,
            state: None,
            resume: false,
            aborted: false,
            batchable: false,
        }
    }

    async fn frames(mut bytes: &[u8]) -> Vec<(Transfer, Bytes)> {
        let mut found = Vec::new();
        while let Some(frame) = read_frame(&mut bytes, 1 << 20).await.unwrap() {
            let Body::Transfer(transfer, payload) = Body::decode(frame.body).unwrap() else {
                panic!("not a transfer");
            };
            found.push((transfer, payload));
        }
        found
    }

    #[tokio::test]
    async fn large_deliveries_are_split_and_reassemble() {
        let payload: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        let mut out = Vec::new();
        let count = encode_transfer(&mut out, 1, transfer(), &payload, 1024).unwrap();
        let frames = frames(&out).await;
        assert_eq!(frames.len(), count);
        assert!(count >= 5);
        let mut joined = Vec::new();
        for (index, (transfer, payload)) in frames.iter().enumerate() {
            let last = index == frames.len() - 1;
            assert_eq!(transfer.more, !last);
            assert_eq!(transfer.delivery_id.is_some(), index == 0);
            joined.extend_from_slice(payload);
        }
        assert_eq!(joined, payload);
        assert!(out.len() < 5000 + count * 64);

        let mut small = Vec::new();
        assert_eq!(
            encode_transfer(&mut small, 1, transfer(), b"hi", 1024).unwrap(),
            1
        );
    }

    #[tokio::test]
    async fn bad_frame_headers_are_refused() {
        let cases: [&[u8]; 4] = [
            &[0, 0, 0, 4, 2, 0, 0, 0],
            &[0, 0, 0, 9, 1, 0, 0, 0, 0],
            &[0, 0, 0, 8, 2, 7, 0, 0],
            &[0, 16, 0, 0, 2, 0, 0, 0],
        ];
        for mut case in cases {
            assert!(read_frame(&mut case, 4096).await.is_err(), "{case:?}");
        }
        let mut truncated: &[u8] = &[0, 0, 0, 20, 2, 0, 0, 0, 1];
        assert!(read_frame(&mut truncated, 4096).await.is_err());
        let mut empty: &[u8] = &[];
        assert!(read_frame(&mut empty, 4096).await.unwrap().is_none());
    }

    #[test]
    fn garbage_bodies_are_decode_errors() {
        for body in [
            &b"\x00\x53\x10"[..],
            b"\x00\x53\x99\x45",
            b"\xa1\x01a",
            b"\x00",
        ] {
            assert!(
                Body::decode(Bytes::copy_from_slice(body)).is_err(),
                "{body:?}"
            );
        }
        assert!(matches!(Body::decode(Bytes::new()).unwrap(), Body::Empty));
    }
}
