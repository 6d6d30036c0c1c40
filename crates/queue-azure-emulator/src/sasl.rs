//! The protocol header exchange and the SASL layer.
//!
//! Service Bus clients negotiate SASL first: Python and the Rust crate with ANONYMOUS (then
//! authorize each link through CBS), .NET with its vendor mechanism MSSBCBS, others with PLAIN.
//! This is a loopback test broker: every mechanism it offers succeeds, whatever the
//! credentials (its README says so). A client that skips SASL and sends the plain AMQP header
//! is served too.

use fe2o3_amqp_types::primitives::{Array, Symbol};
use fe2o3_amqp_types::sasl::{SaslCode, SaslInit, SaslMechanisms, SaslOutcome};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::ProtocolError;
use crate::frame::{self, AMQP_HEADER, SASL_HEADER};

/// The mechanisms offered, in the order offered.
pub(crate) const MECHANISMS: [&str; 3] = ["MSSBCBS", "ANONYMOUS", "PLAIN"];

/// The largest SASL frame taken (a SASL init carries at most a user name and a key).
const MAX_SASL_FRAME: u32 = 64 * 1024;

/// Runs the header exchange (and SASL, when the client starts with it) until the plain AMQP
/// header has been exchanged. A client speaking another protocol (TLS, a newer AMQP) is told
/// the header this broker speaks, as AMQP asks, and refused.
pub(crate) async fn handshake<R, W>(reader: &mut R, writer: &mut W) -> Result<(), ProtocolError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let header = read_header(reader).await?;
    if header == AMQP_HEADER {
        return write(writer, &AMQP_HEADER).await;
    }
    if header != SASL_HEADER {
        write(writer, &SASL_HEADER).await?;
        return Err(ProtocolError::framing(format!(
            "protocol header {header:?} is not AMQP 1.0 (this broker speaks plain AMQP with SASL, \
             no TLS)"
        )));
    }
    let mut out = SASL_HEADER.to_vec();
    let mechanisms = SaslMechanisms {
        sasl_server_mechanisms: Array(MECHANISMS.iter().map(|m| Symbol::from(*m)).collect()),
    };
    frame::encode(&mut out, true, 0, &mechanisms, &[])?;
    write(writer, &out).await?;

    let init = frame::read_frame(reader, MAX_SASL_FRAME)
        .await?
        .ok_or_else(|| ProtocolError::framing("the connection closed during SASL"))?;
    if !init.sasl {
        return Err(ProtocolError::framing("expected a SASL init frame"));
    }
    let init: SaslInit = serde_amqp::from_slice(&init.body)
        .map_err(|error| ProtocolError::decode(format!("not a SASL init: {error}")))?;
    let known = MECHANISMS
        .iter()
        .any(|mechanism| mechanism.eq_ignore_ascii_case(init.mechanism.as_str()));
    let code = if known { SaslCode::Ok } else { SaslCode::Auth };
    let mut out = Vec::new();
    let outcome = SaslOutcome {
        code,
        additional_data: None,
    };
    frame::encode(&mut out, true, 0, &outcome, &[])?;
    write(writer, &out).await?;
    if !known {
        return Err(ProtocolError::Violation {
            condition: crate::error::condition::NOT_ALLOWED,
            description: format!(
                "SASL mechanism {:?} is not offered (offered: {})",
                init.mechanism.as_str(),
                MECHANISMS.join(", ")
            ),
        });
    }
    let header = read_header(reader).await?;
    if header != AMQP_HEADER {
        write(writer, &AMQP_HEADER).await?;
        return Err(ProtocolError::framing(format!(
            "expected the AMQP header after SASL, got {header:?}"
        )));
    }
    write(writer, &AMQP_HEADER).await
}

async fn read_header<R: AsyncRead + Unpin>(reader: &mut R) -> Result<[u8; 8], ProtocolError> {
    let mut header = [0u8; 8];
    reader
        .read_exact(&mut header)
        .await
        .map_err(ProtocolError::Io)?;
    Ok(header)
}

async fn write<W: AsyncWrite + Unpin>(writer: &mut W, bytes: &[u8]) -> Result<(), ProtocolError> {
    writer.write_all(bytes).await.map_err(ProtocolError::Io)?;
    writer.flush().await.map_err(ProtocolError::Io)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run(client_bytes: Vec<u8>) -> (Result<(), ProtocolError>, Vec<u8>) {
        let mut reader: &[u8] = &client_bytes;
        let mut written = Vec::new();
        let result = handshake(&mut reader, &mut written).await;
        (result, written)
    }

    fn sasl_init(mechanism: &str) -> Vec<u8> {
        let init = SaslInit {
            mechanism: Symbol::from(mechanism),
            initial_response: None,
            hostname: Some("localhost".into()),
        };
        let mut out = Vec::new();
        frame::encode(&mut out, true, 0, &init, &[]).unwrap();
        out
    }

    #[tokio::test]
    async fn anonymous_plain_and_mssbcbs_all_pass() {
        for mechanism in MECHANISMS {
            let mut client = SASL_HEADER.to_vec();
            client.extend(sasl_init(mechanism));
            client.extend(AMQP_HEADER);
            let (result, written) = run(client).await;
            result.unwrap();
            assert!(written.starts_with(&SASL_HEADER));
            assert!(written.ends_with(&AMQP_HEADER));
        }
    }

    #[tokio::test]
    async fn other_protocols_and_mechanisms_are_refused_with_a_header() {
        let (result, written) = run(b"AMQP\x02\x01\x00\x00".to_vec()).await;
        assert!(result.is_err());
        assert_eq!(written, SASL_HEADER);
        let mut client = SASL_HEADER.to_vec();
        client.extend(sasl_init("SCRAM-SHA-1"));
        let (result, written) = run(client).await;
        assert!(result.is_err());
        // The outcome frame says auth (code 1).
        assert!(written.len() > SASL_HEADER.len());
        let (result, written) = run(AMQP_HEADER.to_vec()).await;
        result.unwrap();
        assert_eq!(written, AMQP_HEADER);
        let (result, _) = run(b"GET / HTTP/1.1\r\n".to_vec()).await;
        assert!(result.is_err());
    }
}
