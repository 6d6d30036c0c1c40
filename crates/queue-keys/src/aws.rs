//! What the AWS key sources share: how their SDK clients are configured, and how an AWS error
//! becomes a [`KeyError`] (one table for Secrets Manager and KMS).

use std::fmt;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_smithy_http_client::tls::{Provider as TlsProvider, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use zeroize::Zeroizing;

use crate::error::{KeyError, Result};

/// How the AWS key sources reach AWS: region, endpoint, credentials, attempts.
///
/// By default everything comes from the standard AWS chain (environment, profile, web identity,
/// container and instance metadata), as for SQS. `Debug` never shows credentials.
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AwsSettings {
    /// The region; else `AWS_REGION` or the profile's.
    pub region: Option<String>,
    /// Another endpoint (LocalStack, moto, a VPC endpoint): `https://`, or `http://` to a
    /// loopback address only.
    pub endpoint: Option<String>,
    /// Fixed credentials instead of the chain (tests against a local server).
    pub credentials: Option<AwsStaticCredentials>,
    /// Attempts per call, the SDK's retries of throttling and transient errors included;
    /// `None` keeps the SDK's standard mode (3).
    pub max_attempts: Option<u32>,
}

/// An access key pair (and session token), zeroized on drop, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct AwsStaticCredentials {
    access_key_id: Zeroizing<String>,
    secret_access_key: Zeroizing<String>,
    session_token: Option<Zeroizing<String>>,
}

impl AwsStaticCredentials {
    /// An access key id and its secret.
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        AwsStaticCredentials {
            access_key_id: Zeroizing::new(access_key_id.into()),
            secret_access_key: Zeroizing::new(secret_access_key.into()),
            session_token: None,
        }
    }

    /// With a session token (temporary credentials).
    #[must_use]
    pub fn with_session_token(mut self, token: impl Into<String>) -> Self {
        self.session_token = Some(Zeroizing::new(token.into()));
        self
    }
}

impl fmt::Debug for AwsStaticCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AwsStaticCredentials([REDACTED])")
    }
}

impl fmt::Debug for AwsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsSettings")
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|_| "[REDACTED]"),
            )
            .field("max_attempts", &self.max_attempts)
            .finish()
    }
}

impl AwsSettings {
    /// The standard chain for everything.
    pub fn new() -> Self {
        AwsSettings::default()
    }

    /// A server on this machine (moto, LocalStack): `endpoint` (a loopback address), region
    /// `us-east-1`, the fixed credentials `test`/`test`.
    pub fn local_server(endpoint: impl Into<String>) -> Self {
        AwsSettings {
            region: Some("us-east-1".to_owned()),
            endpoint: Some(endpoint.into()),
            credentials: Some(AwsStaticCredentials::new("test", "test")),
            max_attempts: None,
        }
    }

    /// Sets [`region`](Self::region).
    #[must_use]
    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Sets [`endpoint`](Self::endpoint).
    #[must_use]
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// Sets [`credentials`](Self::credentials).
    #[must_use]
    pub fn with_credentials(mut self, credentials: AwsStaticCredentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// Sets [`max_attempts`](Self::max_attempts).
    #[must_use]
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts.max(1));
        self
    }

    /// Checks the settings that can be checked without I/O: the endpoint's scheme and host.
    ///
    /// # Errors
    /// [`KeyError::Invalid`] naming the problem.
    pub fn check(&self) -> Result<()> {
        if let Some(endpoint) = &self.endpoint {
            check_endpoint(endpoint)?;
        }
        Ok(())
    }

    /// The SDK configuration: HTTPS through rustls on `ring` (certificates checked against the
    /// system's roots), the chain's or the fixed credentials, the region.
    ///
    /// # Errors
    /// [`KeyError::Invalid`] when the endpoint is not allowed or no region is found.
    pub async fn sdk_config(&self) -> Result<SdkConfig> {
        self.check()?;
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(
            aws_smithy_http_client::Builder::new()
                .tls_provider(TlsProvider::Rustls(CryptoMode::Ring))
                .build_https(),
        );
        if let Some(region) = &self.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(endpoint) = &self.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        if let Some(credentials) = &self.credentials {
            loader = loader.credentials_provider(Credentials::new(
                credentials.access_key_id.as_str(),
                credentials.secret_access_key.as_str(),
                credentials
                    .session_token
                    .as_ref()
                    .map(|token| token.as_str().to_owned()),
                None,
                "queue-keys static credentials",
            ));
        }
        if let Some(attempts) = self.max_attempts {
            loader = loader.retry_config(
                RetryConfig::standard()
                    .with_max_attempts(attempts)
                    .with_initial_backoff(Duration::from_millis(100)),
            );
        }
        let config = loader.load().await;
        if config.region().is_none() {
            return Err(KeyError::Invalid {
                source_name: "aws".to_owned(),
                reason: "no AWS region: set one in the settings, AWS_REGION or the profile"
                    .to_owned(),
            });
        }
        Ok(config)
    }
}

/// `https://`, or `http://` to a loopback host: never credentials or keys in clear over a
/// network.
fn check_endpoint(endpoint: &str) -> Result<()> {
    let invalid = |reason: String| KeyError::Invalid {
        source_name: "aws".to_owned(),
        reason,
    };
    let uri: http::Uri = endpoint
        .parse()
        .map_err(|_| invalid(format!("endpoint {endpoint:?} is not a URL")))?;
    let host = uri.host().unwrap_or_default();
    match uri.scheme_str() {
        Some("https") if !host.is_empty() => Ok(()),
        Some("http") if is_loopback(host) => Ok(()),
        Some("http") => Err(invalid(format!(
            "endpoint {endpoint:?}: plain http is allowed to a loopback address only"
        ))),
        _ => Err(invalid(format!(
            "endpoint {endpoint:?} must be https:// (or http:// to a loopback address)"
        ))),
    }
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

/// What an AWS error code means for a key source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AwsFailure {
    /// Too many calls: the SDK already retried.
    Throttled,
    /// The caller may not do this (IAM, key policy, credentials).
    Denied,
    /// The KMS key is disabled, pending deletion or pending import.
    KeyDisabled,
    /// The secret or key does not exist (or is deleted).
    NotFound,
    /// The ciphertext is not one this KMS key (and encryption context) made.
    DoesNotUnwrap,
    /// The service failed or could not be reached.
    Service,
    /// Anything else the service refused.
    Refused,
}

/// The one table from AWS error codes (both services) to what they mean here.
pub(crate) fn classify(code: Option<&str>) -> AwsFailure {
    match code.unwrap_or_default() {
        "ThrottlingException"
        | "Throttling"
        | "TooManyRequestsException"
        | "RequestLimitExceeded"
        | "LimitExceededException" => AwsFailure::Throttled,
        "AccessDeniedException"
        | "AccessDenied"
        | "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "SignatureDoesNotMatch"
        | "ExpiredTokenException"
        | "InvalidClientTokenId"
        | "IncompleteSignature" => AwsFailure::Denied,
        "DisabledException" | "KMSInvalidStateException" | "KeyUnavailableException" => {
            AwsFailure::KeyDisabled
        }
        "ResourceNotFoundException" | "NotFoundException" => AwsFailure::NotFound,
        "InvalidCiphertextException" | "IncorrectKeyException" | "InvalidKeyUsageException" => {
            AwsFailure::DoesNotUnwrap
        }
        ""
        | "InternalServiceError"
        | "InternalFailure"
        | "KMSInternalException"
        | "ServiceUnavailable"
        | "DependencyTimeoutException"
        | "DecryptionFailure" => AwsFailure::Service,
        _ => AwsFailure::Refused,
    }
}

/// An AWS SDK error as a [`KeyError`]: what failed, in words an operator can act on, with the
/// service's error code; never a request or response body.
pub(crate) fn key_error<E, R>(error: &SdkError<E, R>, source_name: &str, what: &str) -> KeyError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: fmt::Debug,
{
    let (code, detail) = match error {
        SdkError::ServiceError(service) => {
            let code = service.err().code().map(str::to_owned);
            (code, None)
        }
        SdkError::TimeoutError(_) => (None, Some("timed out".to_owned())),
        SdkError::DispatchFailure(failure) => (
            None,
            Some(if failure.is_io() {
                "cannot connect".to_owned()
            } else if failure.is_timeout() {
                "timed out".to_owned()
            } else {
                "the request could not be sent".to_owned()
            }),
        ),
        SdkError::ResponseError(_) => (None, Some("the response could not be read".to_owned())),
        SdkError::ConstructionFailure(_) => (
            None,
            Some("the request could not be built (credentials or region?)".to_owned()),
        ),
        _ => (None, Some("unknown failure".to_owned())),
    };
    failure_error(
        classify(code.as_deref()),
        code.as_deref(),
        detail,
        source_name,
        what,
    )
}

/// The error for a classified failure: `what` is the call (`GetSecretValue`, `KMS Decrypt`).
pub(crate) fn failure_error(
    failure: AwsFailure,
    code: Option<&str>,
    detail: Option<String>,
    source_name: &str,
    what: &str,
) -> KeyError {
    let code = code.map(|code| format!(" ({code})")).unwrap_or_default();
    let detail = detail
        .map(|detail| format!(": {detail}"))
        .unwrap_or_default();
    let reason = match failure {
        AwsFailure::Throttled => format!("{what} was throttled{code}, after the SDK's retries"),
        AwsFailure::Denied => format!(
            "{what} was denied{code}: check the credentials, the IAM policy and the key policy"
        ),
        AwsFailure::KeyDisabled => format!(
            "{what} failed{code}: the KMS key is disabled or not usable; enable it or rewrap \
             the keyset under another key"
        ),
        AwsFailure::NotFound => format!("{what} failed{code}: not found"),
        AwsFailure::DoesNotUnwrap => {
            return KeyError::Invalid {
                source_name: source_name.to_owned(),
                reason: format!(
                    "{what} failed{code}: the wrapped data key does not unwrap with this KMS key \
                     and encryption context"
                ),
            };
        }
        AwsFailure::Service => format!("{what} failed{code}{detail}"),
        AwsFailure::Refused => format!("{what} was refused{code}"),
    };
    KeyError::Unavailable {
        source_name: source_name.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_meaning() {
        let table = [
            ("ThrottlingException", AwsFailure::Throttled),
            ("TooManyRequestsException", AwsFailure::Throttled),
            ("RequestLimitExceeded", AwsFailure::Throttled),
            ("LimitExceededException", AwsFailure::Throttled),
            ("AccessDeniedException", AwsFailure::Denied),
            ("UnrecognizedClientException", AwsFailure::Denied),
            ("InvalidSignatureException", AwsFailure::Denied),
            ("ExpiredTokenException", AwsFailure::Denied),
            ("DisabledException", AwsFailure::KeyDisabled),
            ("KMSInvalidStateException", AwsFailure::KeyDisabled),
            ("KeyUnavailableException", AwsFailure::KeyDisabled),
            ("ResourceNotFoundException", AwsFailure::NotFound),
            ("NotFoundException", AwsFailure::NotFound),
            ("InvalidCiphertextException", AwsFailure::DoesNotUnwrap),
            ("IncorrectKeyException", AwsFailure::DoesNotUnwrap),
            ("InvalidKeyUsageException", AwsFailure::DoesNotUnwrap),
            ("InternalServiceError", AwsFailure::Service),
            ("KMSInternalException", AwsFailure::Service),
            ("DecryptionFailure", AwsFailure::Service),
            ("InvalidParameterException", AwsFailure::Refused),
        ];
        for (code, failure) in table {
            assert_eq!(classify(Some(code)), failure, "{code}");
        }
        assert_eq!(classify(None), AwsFailure::Service);
    }

    #[test]
    fn only_a_ciphertext_that_does_not_unwrap_is_invalid() {
        for failure in [
            AwsFailure::Throttled,
            AwsFailure::Denied,
            AwsFailure::KeyDisabled,
            AwsFailure::NotFound,
            AwsFailure::Service,
            AwsFailure::Refused,
        ] {
            let error = failure_error(failure, Some("Code"), None, "kms test", "KMS Decrypt");
            assert!(error.is_transient(), "{error}");
            assert!(error.to_string().contains("kms test"), "{error}");
            assert!(error.to_string().contains("(Code)"), "{error}");
        }
        let error = failure_error(
            AwsFailure::DoesNotUnwrap,
            Some("InvalidCiphertextException"),
            None,
            "kms test",
            "KMS Decrypt",
        );
        assert!(matches!(error, KeyError::Invalid { .. }), "{error}");
        assert!(error.to_string().contains("does not unwrap"), "{error}");
    }

    #[test]
    fn endpoints_are_https_or_loopback_http() {
        for good in [
            "https://secretsmanager.eu-west-1.amazonaws.com",
            "http://127.0.0.1:5000",
            "http://localhost:4566",
            "http://[::1]:4566",
        ] {
            assert!(check_endpoint(good).is_ok(), "{good}");
        }
        for bad in [
            "http://10.0.0.1:5000",
            "http://example.com",
            "ftp://127.0.0.1",
            "not a url",
        ] {
            assert!(check_endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn credentials_never_show_in_debug() {
        let settings = AwsSettings::local_server("http://127.0.0.1:1").with_credentials(
            AwsStaticCredentials::new("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG")
                .with_session_token("FwoGZXIvYXdzEJr"),
        );
        let debug = format!("{settings:?}");
        for secret in ["AKIDEXAMPLE", "wJalrXUtnFEMI", "FwoGZXIvYXdzEJr"] {
            assert!(!debug.contains(secret), "{debug}");
        }
    }
}
