//! What a provider can do, declared up front rather than discovered by error.

/// The features and limits of a provider. Callers (and the conformance suite) consult this
/// instead of probing; an operation outside it fails with
/// [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// Session queues: messages with a session id are delivered in order, one receiver per
    /// session at a time, through [`accept_session`](crate::QueueProvider::accept_session).
    pub sessions: bool,
    /// A session can be accepted by its id (not only the next available one).
    pub accept_named_session: bool,
    /// Plain [`receive`](crate::QueueProvider::receive) keeps session order: messages with the
    /// same session id come in send order, and while one of them is held no later one of that
    /// session is delivered to anyone (SQS FIFO message groups). Providers with
    /// [`sessions`](Self::sessions) give order through session receivers instead.
    pub session_order_on_receive: bool,
    /// Session state can be read and written.
    pub session_state: bool,
    /// Messages can be scheduled to become visible later.
    pub scheduling: bool,
    /// A scheduled message can be cancelled by its sequence number.
    pub cancel_scheduled: bool,
    /// `abandon` can make the message visible again only after a delay.
    pub abandon_with_delay: bool,
    /// The broker moves dead-lettered messages itself, atomically; otherwise the provider copies
    /// the message to the dead-letter queue and then deletes it (duplicates possible, no loss).
    pub native_dead_letter: bool,
    /// The broker dead-letters a message delivered more than its maximum delivery count.
    pub max_delivery_count: bool,
    /// Messages expire after their time to live.
    pub time_to_live: bool,
    /// Messages can be read without locking them.
    pub peek: bool,
    /// A message lock can be renewed.
    pub lock_renewal: bool,
    /// Messages carry a broker sequence number.
    pub sequence_numbers: bool,
    /// [`counts`](crate::QueueProvider::counts) tells how many messages a queue holds.
    pub counts: bool,
    /// The largest message the provider accepts, in bytes, as [`Message::approximate_size`]
    /// (or the provider's own encoding) counts it.
    ///
    /// [`Message::approximate_size`]: crate::Message::approximate_size
    pub max_message_bytes: usize,
    /// The most messages one `send_batch` call sends in one request (more are split).
    pub max_batch_messages: usize,
    /// The most bytes the messages of one `send_batch` request may take together, as
    /// [`QueueProvider::batch_entry_bytes`](crate::QueueProvider::batch_entry_bytes) counts
    /// them (more are split); 0 when the provider declares no such limit.
    pub max_batch_bytes: usize,
    /// The most messages one `receive` call returns.
    pub max_receive_messages: usize,
    /// The most application properties a message may carry through this provider.
    pub max_properties: usize,
}
