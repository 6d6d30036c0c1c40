//! For tests (the `testing` feature): finding the local SQS server `cargo xtask test` starts.
//! Not part of the provider's API; queues themselves are made with [`crate::admin`].

use queue_core::QueueError;

/// The variable naming a local SQS server for tests (`cargo xtask test` sets it to the moto
/// server it starts).
pub const TEST_SERVER_VARIABLE: &str = "QUEUE_RUNTIME_SQS_TEST_ENDPOINT";
/// Set by `cargo xtask test` next to [`TEST_SERVER_VARIABLE`]: a test run that was promised a
/// server must not quietly skip for want of one.
pub const REQUIRE_TEST_SERVER_VARIABLE: &str = "QUEUE_RUNTIME_REQUIRE_SQS";

/// The local SQS server tests should use: `Ok(None)` when none is configured (the tests then
/// skip, saying so), an error when [`REQUIRE_TEST_SERVER_VARIABLE`] is set but the endpoint is
/// not, so a broken harness fails instead of skipping.
pub fn test_server_endpoint() -> Result<Option<String>, QueueError> {
    let endpoint = std::env::var(TEST_SERVER_VARIABLE)
        .ok()
        .filter(|value| !value.is_empty());
    if endpoint.is_none() && std::env::var_os(REQUIRE_TEST_SERVER_VARIABLE).is_some() {
        return Err(QueueError::new(
            queue_core::ErrorKind::Config,
            format!("{REQUIRE_TEST_SERVER_VARIABLE} is set but {TEST_SERVER_VARIABLE} is not"),
        ));
    }
    Ok(endpoint)
}

/// For tests: [`test_server_endpoint`], printing the one `SKIPPED` line that says why when there
/// is no server (the test then returns early).
pub fn test_server_or_skip() -> Result<Option<String>, QueueError> {
    let endpoint = test_server_endpoint()?;
    if endpoint.is_none() {
        eprintln!(
            "SKIPPED: no local SQS server ({TEST_SERVER_VARIABLE} unset); `cargo xtask test` starts one"
        );
    }
    Ok(endpoint)
}

/// A loopback HTTP proxy in front of an SQS server that counts the requests it forwards, by
/// action (`ReceiveMessage`, `DeleteMessageBatch`, ...: the `X-Amz-Target` header of the JSON
/// protocol, less its `AmazonSQS.` prefix). What it counts is what the server received, so what
/// SQS would bill, retries included.
///
/// Built on hyper (already in the SDK's tree): parsing HTTP by hand, even the little the SDK
/// sends, would be more code to trust than the proxy itself.
#[derive(Debug)]
pub struct RequestCounter {
    endpoint: String,
    counts: std::sync::Arc<parking_lot::Mutex<std::collections::BTreeMap<String, u64>>>,
    stalled: Stalled,
    accepting: tokio::task::JoinHandle<()>,
}

/// The actions whose requests the proxy accepts and never answers.
type Stalled = std::sync::Arc<parking_lot::Mutex<std::collections::BTreeSet<String>>>;

impl RequestCounter {
    /// Starts the proxy on a free loopback port, forwarding to `upstream` (`http://host:port`).
    pub async fn start(upstream: &str) -> Result<Self, QueueError> {
        use hyper_util::client::legacy::Client;
        use hyper_util::rt::{TokioExecutor, TokioIo};

        let io_error = |error: std::io::Error| {
            QueueError::new(queue_core::ErrorKind::Connection, error.to_string())
        };
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(io_error)?;
        let endpoint = format!("http://{}", listener.local_addr().map_err(io_error)?);
        let upstream: http::Uri = upstream
            .parse()
            .map_err(|_| QueueError::invalid_input(format!("{upstream:?} is not a URL")))?;
        let counts = std::sync::Arc::default();
        let stalled = Stalled::default();
        let client = Client::builder(TokioExecutor::new()).build_http();
        let shared = std::sync::Arc::clone(&counts);
        let shared_stalled = std::sync::Arc::clone(&stalled);
        let accepting = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (client, counts, stalled, upstream) = (
                    client.clone(),
                    std::sync::Arc::clone(&shared),
                    std::sync::Arc::clone(&shared_stalled),
                    upstream.clone(),
                );
                let service = hyper::service::service_fn(move |request| {
                    let stalled = stalled.lock().clone();
                    forward(
                        client.clone(),
                        std::sync::Arc::clone(&counts),
                        stalled,
                        upstream.clone(),
                        request,
                    )
                });
                tokio::spawn(async move {
                    // A connection the client dropped mid-request ends here; nothing to report.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(RequestCounter {
            endpoint,
            counts,
            stalled,
            accepting,
        })
    }

    /// Where to send requests (`http://127.0.0.1:<port>`).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The requests forwarded so far, by action.
    pub fn counts(&self) -> std::collections::BTreeMap<String, u64> {
        self.counts.lock().clone()
    }

    /// The requests of `action` forwarded so far.
    pub fn count(&self, action: &str) -> u64 {
        self.counts.lock().get(action).copied().unwrap_or(0)
    }

    /// From now on, requests of `action` are accepted and never answered: a server that stops
    /// answering in the middle of a call.
    pub fn stall(&self, action: &str) {
        self.stalled.lock().insert(action.to_owned());
    }

    /// Forgets the counts so far.
    pub fn reset(&self) {
        self.counts.lock().clear();
    }
}

impl Drop for RequestCounter {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

type Forwarded =
    Result<hyper::Response<hyper::body::Incoming>, Box<dyn std::error::Error + Send + Sync>>;

/// Counts `request` and sends it on to `upstream` (the body read whole: SQS requests are small).
async fn forward(
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Full<bytes::Bytes>,
    >,
    counts: std::sync::Arc<parking_lot::Mutex<std::collections::BTreeMap<String, u64>>>,
    stalled: std::collections::BTreeSet<String>,
    upstream: http::Uri,
    request: hyper::Request<hyper::body::Incoming>,
) -> Forwarded {
    use http_body_util::BodyExt;

    let action = request
        .headers()
        .get("x-amz-target")
        .and_then(|target| target.to_str().ok())
        .map_or("(no X-Amz-Target)", |target| {
            target.strip_prefix("AmazonSQS.").unwrap_or(target)
        })
        .to_owned();
    if stalled.contains(&action) {
        return std::future::pending().await;
    }
    *counts.lock().entry(action).or_default() += 1;
    let (mut parts, body) = request.into_parts();
    let body = body.collect().await?.to_bytes();
    let mut uri = upstream.into_parts();
    uri.path_and_query = parts.uri.path_and_query().cloned();
    parts.uri = http::Uri::from_parts(uri)?;
    Ok(client
        .request(hyper::Request::from_parts(
            parts,
            http_body_util::Full::new(body),
        ))
        .await?)
}

/// The SQS receipt handle inside a receipt of this provider, for tests that must act on a
/// message behind the provider's back (delete it with the SDK, say).
pub fn receipt_handle(receipt: &queue_core::Receipt) -> Result<&str, QueueError> {
    crate::provider::receipt_handle(receipt)
}
