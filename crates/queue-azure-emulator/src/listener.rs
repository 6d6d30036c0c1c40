//! The listening socket: one task accepts, one task per connection serves.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use queue_memory::MemoryProvider;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

use crate::broker::Broker;
use crate::config::EmulatorConfig;
use crate::connection;
use crate::error::EmulatorError;

/// A running emulator: a socket accepting AMQP connections, and the broker behind it.
///
/// Dropping it (or [`stop`](Emulator::stop)) closes the socket and every connection.
///
/// ```
/// use queue_azure_emulator::{Emulator, EmulatorConfig, QueueConfig};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let config = EmulatorConfig::new().with_queue(QueueConfig::new("orders"));
/// let emulator = Emulator::start(config, "127.0.0.1:0".parse().unwrap()).await?;
/// let connection_string = emulator.connection_string();
/// assert!(connection_string.ends_with(";UseDevelopmentEmulator=true"));
/// emulator.stop().await;
/// # Ok::<(), queue_azure_emulator::EmulatorError>(())
/// # }).unwrap();
/// ```
#[derive(Debug)]
pub struct Emulator {
    address: SocketAddr,
    broker: Arc<Broker>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Emulator {
    /// Opens `address` (port 0 picks a free one) and serves it on the current tokio runtime.
    pub async fn start(
        config: EmulatorConfig,
        address: SocketAddr,
    ) -> Result<Emulator, EmulatorError> {
        let broker = Arc::new(Broker::new(config)?);
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| EmulatorError::Bind { address, source })?;
        let address = listener
            .local_addr()
            .map_err(|source| EmulatorError::Bind { address, source })?;
        let (shutdown, stopped) = oneshot::channel();
        let task = tokio::spawn(accept(listener, Arc::clone(&broker), stopped));
        Ok(Emulator {
            address,
            broker,
            shutdown: Some(shutdown),
            task,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// A Service Bus connection string for it, as the SDKs take it for the development
    /// emulator (plain AMQP, the port kept). The key is a placeholder: nothing is authorized.
    pub fn connection_string(&self) -> String {
        connection_string(self.address)
    }

    /// The embedded broker behind it, to inspect or seed queues from a test.
    pub fn provider(&self) -> &MemoryProvider {
        &self.broker.provider
    }

    /// Stops accepting, closes every connection, and waits until that is done.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The connection string of an emulator listening on `address`.
pub fn connection_string(address: SocketAddr) -> String {
    format!(
        "Endpoint=sb://{address};SharedAccessKeyName=RootManageSharedAccessKey;\
         SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true"
    )
}

async fn accept(listener: TcpListener, broker: Arc<Broker>, mut stopped: oneshot::Receiver<()>) {
    // Connections live in the set: when accepting ends, dropping it ends them all.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(connection::serve(stream, Arc::clone(&broker)));
                }
                Err(error) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = &mut stopped => return,
        }
    }
}
