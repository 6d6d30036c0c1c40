//! Verifying GitHub webhook deliveries before they are enqueued: a bot checks where an event
//! came from, then seals and sends it.
//!
//! ```
//! use queue_runtime::webhook::{WebhookSecret, sign_github_payload, verify_github_signature};
//!
//! let secret = WebhookSecret::new("it's a secret to everybody");
//! let body = br#"{"action":"opened","number":42}"#;
//! let header = sign_github_payload(&secret, body); // what GitHub sends in X-Hub-Signature-256
//! verify_github_signature(&secret, body, Some(&header))?;
//! assert!(verify_github_signature(&secret, b"{}", Some(&header)).is_err());
//! # Ok::<(), queue_runtime::webhook::WebhookError>(())
//! ```

use std::fmt;

use ring::hmac;
use secrecy::{ExposeSecret, SecretBox};

/// The header GitHub signs deliveries in: `sha256=` and the hex HMAC-SHA256 of the body.
pub const SIGNATURE_HEADER: &str = "X-Hub-Signature-256";

const PREFIX: &str = "sha256=";

/// A webhook secret: zeroized on drop, `Debug` redacted.
pub struct WebhookSecret(SecretBox<[u8]>);

impl WebhookSecret {
    /// The secret configured on the GitHub webhook (or App).
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        WebhookSecret(SecretBox::new(secret.into().into_boxed_slice()))
    }

    fn key(&self) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, self.0.expose_secret())
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret([REDACTED])")
    }
}

/// Why a delivery was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// No `X-Hub-Signature-256` header.
    #[error("the delivery has no {SIGNATURE_HEADER} header")]
    MissingSignature,
    /// The header is not `sha256=` followed by 64 hex digits.
    #[error("the {SIGNATURE_HEADER} header is not sha256=<64 hex digits>")]
    MalformedSignature,
    /// The signature does not match the body under the secret.
    #[error("the {SIGNATURE_HEADER} signature does not match the body")]
    InvalidSignature,
}

/// Checks a delivery's `X-Hub-Signature-256` header against its raw body, in constant time
/// (`ring::hmac::verify`). Verify the exact bytes received, before any JSON parsing.
pub fn verify_github_signature(
    secret: &WebhookSecret,
    body: &[u8],
    signature_header: Option<&str>,
) -> Result<(), WebhookError> {
    let header = signature_header.ok_or(WebhookError::MissingSignature)?;
    let hex_digits = header
        .trim()
        .strip_prefix(PREFIX)
        .ok_or(WebhookError::MalformedSignature)?;
    let mut tag = [0_u8; 32];
    hex::decode_to_slice(hex_digits, &mut tag).map_err(|_| WebhookError::MalformedSignature)?;
    hmac::verify(&secret.key(), body, &tag).map_err(|_| WebhookError::InvalidSignature)
}

/// The header value GitHub would send for `body`: for tests, and for services that forward
/// deliveries.
pub fn sign_github_payload(secret: &WebhookSecret, body: &[u8]) -> String {
    format!(
        "{PREFIX}{}",
        hex::encode(hmac::sign(&secret.key(), body).as_ref())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_documentation_example_verifies() {
        // The example from GitHub's "Validating webhook deliveries" documentation.
        let secret = WebhookSecret::new("It's a Secret to Everybody");
        let header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(
            verify_github_signature(&secret, b"Hello, World!", Some(header)),
            Ok(())
        );
        assert_eq!(sign_github_payload(&secret, b"Hello, World!"), header);
    }

    #[test]
    fn every_bad_header_is_refused_with_its_reason() {
        let secret = WebhookSecret::new("s");
        let good = sign_github_payload(&secret, b"body");
        assert_eq!(
            verify_github_signature(&secret, b"body", None),
            Err(WebhookError::MissingSignature)
        );
        for malformed in [
            "",
            "sha1=00",
            "sha256=",
            "sha256=zz",
            &good[..good.len() - 1],
            &good.replace("sha256=", "SHA256="),
        ] {
            assert_eq!(
                verify_github_signature(&secret, b"body", Some(malformed)),
                Err(WebhookError::MalformedSignature),
                "{malformed}"
            );
        }
        assert_eq!(
            verify_github_signature(&secret, b"body!", Some(&good)),
            Err(WebhookError::InvalidSignature)
        );
        assert_eq!(
            verify_github_signature(&WebhookSecret::new("t"), b"body", Some(&good)),
            Err(WebhookError::InvalidSignature)
        );
        assert_eq!(format!("{secret:?}"), "WebhookSecret([REDACTED])");
    }
}
