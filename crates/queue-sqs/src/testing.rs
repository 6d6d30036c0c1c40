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
