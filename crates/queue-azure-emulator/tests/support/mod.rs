//! What the emulator's tests with fe2o3-amqp clients share.

use std::future::Future;
use std::time::Duration;

/// How long the emulator waits before taking in a transfer, in these tests as in the xtask.
/// The clients here are fe2o3-amqp 0.14.1's, which lose the outcome of a transfer answered
/// before they have recorded it (an answer from loopback can be, when the OS preempts the
/// sending thread); the send then waits for it forever. Seen once in CI: this suite hung its run
/// for twenty minutes in a bystander's send.
pub(crate) const ANSWER_DELAY: Duration = Duration::from_millis(10);

/// Runs a step of a client, failing the test with the step's name (rather than hanging it)
/// after five seconds.
pub(crate) async fn step<T>(name: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), future)
        .await
        .unwrap_or_else(|_| panic!("{name} did not finish within five seconds"))
}
