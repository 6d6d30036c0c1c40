//! What the emulator's tests with fe2o3-amqp clients share.

use std::future::Future;
use std::time::Duration;

use fe2o3_amqp::connection::ConnectionHandle;
use fe2o3_amqp::link::Receiver;
use fe2o3_amqp::sasl_profile::SaslProfile;
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::types::definitions::ReceiverSettleMode;
use fe2o3_amqp::{Connection, Sender, Session};

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

/// A connection to the emulator at `address` as `who` (SASL ANONYMOUS), with one session.
pub(crate) async fn open_session(
    address: std::net::SocketAddr,
    who: &str,
) -> (ConnectionHandle<()>, SessionHandle<()>) {
    let url = format!("amqp://{address}");
    let mut connection = step(
        &format!("{who} open"),
        Connection::builder()
            .container_id(who)
            .sasl_profile(SaslProfile::Anonymous)
            .open(url.as_str()),
    )
    .await
    .unwrap();
    let session = step(&format!("{who} begin"), Session::begin(&mut connection))
        .await
        .unwrap();
    (connection, session)
}

/// A sender link named `name` to `queue`.
pub(crate) async fn attach_sender(
    session: &mut SessionHandle<()>,
    name: &str,
    queue: &str,
) -> Sender {
    step(
        &format!("{name} attach"),
        Sender::attach(session, name, queue),
    )
    .await
    .unwrap()
}

/// A peek-lock receiver link (receiver-settle-mode second, as Service Bus clients attach)
/// named `name` on `source`.
pub(crate) async fn attach_peek_lock_receiver(
    session: &mut SessionHandle<()>,
    name: &str,
    source: &str,
) -> Receiver {
    step(
        &format!("{name} attach"),
        Receiver::builder()
            .name(name)
            .source(source)
            .receiver_settle_mode(ReceiverSettleMode::Second)
            .attach(session),
    )
    .await
    .unwrap()
}
