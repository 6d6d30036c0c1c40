//! What every connection shares: the embedded broker, the configured entities, the lock
//! tokens, and the sessions held by receiver links.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use queue_core::{QueueName, SessionId, SessionReceiver};
use queue_memory::MemoryProvider;

use crate::config::{EmulatorConfig, QueueConfig};
use crate::error::EmulatorError;
use crate::locks::LockTable;

/// A configured queue.
#[derive(Debug)]
pub(crate) struct Entity {
    pub(crate) name: QueueName,
    pub(crate) config: QueueConfig,
}

/// A session accepted by a receiver link: the engine's session receiver, shared between the
/// link's pump (receives) and management operations (renew, state).
#[derive(Debug)]
pub(crate) struct HeldSession {
    pub(crate) queue: QueueName,
    pub(crate) receiver: Box<dyn SessionReceiver>,
    /// Tells this hold apart from a later hold of the same session (lock tokens name it).
    pub(crate) serial: u64,
}

impl HeldSession {
    pub(crate) fn id(&self) -> &SessionId {
        self.receiver.session_id()
    }
}

/// The broker state behind every connection.
#[derive(Debug)]
pub(crate) struct Broker {
    pub(crate) provider: MemoryProvider,
    pub(crate) config: EmulatorConfig,
    pub(crate) locks: LockTable,
    entities: HashMap<String, Arc<Entity>>,
    sessions: Mutex<HashMap<(QueueName, SessionId), Arc<HeldSession>>>,
    next_serial: AtomicU64,
}

impl Broker {
    /// Creates the engine and its queues.
    pub(crate) fn new(config: EmulatorConfig) -> Result<Broker, EmulatorError> {
        config.validate()?;
        let provider = MemoryProvider::new(config.memory_config());
        let mut entities = HashMap::new();
        for queue in config.queues() {
            let name = QueueName::new(queue.name())
                .map_err(|error| EmulatorError::Config(error.message().to_owned()))?;
            provider
                .create_queue(&name, queue.queue_options())
                .map_err(|error| EmulatorError::Config(error.message().to_owned()))?;
            entities.insert(
                queue.name().to_ascii_lowercase(),
                Arc::new(Entity {
                    name,
                    config: queue.clone(),
                }),
            );
        }
        Ok(Broker {
            provider,
            config,
            locks: LockTable::default(),
            entities,
            sessions: Mutex::new(HashMap::new()),
            next_serial: AtomicU64::new(1),
        })
    }

    /// The entity of a name, matched without case.
    pub(crate) fn entity(&self, name: &str) -> Option<Arc<Entity>> {
        self.entities.get(&name.to_ascii_lowercase()).cloned()
    }

    /// Records a session held by a receiver link.
    pub(crate) fn hold_session(
        &self,
        queue: QueueName,
        receiver: Box<dyn SessionReceiver>,
    ) -> Arc<HeldSession> {
        let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
        let held = Arc::new(HeldSession {
            queue,
            receiver,
            serial,
        });
        self.sessions
            .lock()
            .insert((held.queue.clone(), held.id().clone()), Arc::clone(&held));
        held
    }

    /// The held session of that id, if a link holds it.
    pub(crate) fn held_session(
        &self,
        queue: &QueueName,
        session: &SessionId,
    ) -> Option<Arc<HeldSession>> {
        self.sessions
            .lock()
            .get(&(queue.clone(), session.clone()))
            .cloned()
    }

    /// Forgets a held session (its link is gone), unless another link holds it by now.
    pub(crate) fn forget_session(&self, held: &Arc<HeldSession>) {
        let mut sessions = self.sessions.lock();
        let key = (held.queue.clone(), held.id().clone());
        if sessions
            .get(&key)
            .is_some_and(|current| Arc::ptr_eq(current, held))
        {
            sessions.remove(&key);
        }
        drop(sessions);
        self.locks.remove_holder(held.serial);
    }
}
