//! Creating queues: what operators (and the tests) need, with the settings the provider relies
//! on. Applications normally get their queues from infrastructure code instead.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use queue_core::{QueueError, QueueName, QueueProvider};

use crate::error::map_sdk_error;
use crate::provider::SqsProvider;

/// The settings of a queue and its dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSetup {
    /// A FIFO queue (its name, and its dead-letter queue's, must end in `.fifo`).
    pub fifo: bool,
    /// How long a receive hides a message: the lock duration.
    pub visibility_timeout: Duration,
    /// Receives before SQS moves a message to the dead-letter queue (`maxReceiveCount`).
    pub max_receive_count: u32,
    /// `MaximumMessageSize`, 1 KiB to 1 MiB.
    pub max_message_bytes: usize,
}

impl Default for QueueSetup {
    fn default() -> Self {
        QueueSetup {
            fifo: false,
            visibility_timeout: Duration::from_secs(30),
            max_receive_count: 10,
            max_message_bytes: crate::queues::DEFAULT_MAX_MESSAGE_BYTES,
        }
    }
}

/// The name of the dead-letter queue [`create_queue_with_dead_letter`] makes for `queue`:
/// `<name>-dlq`, before `.fifo` for a FIFO queue.
pub fn dead_letter_name(queue: &QueueName) -> Result<QueueName, QueueError> {
    let name = queue.as_str();
    match name.strip_suffix(".fifo") {
        Some(stem) => QueueName::new(format!("{stem}-dlq.fifo")),
        None => QueueName::new(format!("{name}-dlq")),
    }
}

/// Creates `queue` and its dead-letter queue, with a redrive policy joining them. Creating a
/// queue that exists with the same settings succeeds (SQS's own rule), so this is safe to
/// repeat.
pub async fn create_queue_with_dead_letter(
    provider: &SqsProvider,
    queue: &QueueName,
    setup: &QueueSetup,
) -> Result<QueueName, QueueError> {
    provider.validate_queue_name(queue)?;
    if setup.fifo != queue.as_str().ends_with(".fifo") {
        return Err(QueueError::invalid_input(format!(
            "queue {queue}: a FIFO queue's name ends in .fifo, a standard queue's does not"
        )));
    }
    let dead_letter = dead_letter_name(queue)?;
    provider.validate_queue_name(&dead_letter)?;
    let client = provider.client();
    let mut common = HashMap::new();
    if setup.fifo {
        common.insert(QueueAttributeName::FifoQueue, "true".to_owned());
    }
    common.insert(
        QueueAttributeName::MaximumMessageSize,
        setup.max_message_bytes.to_string(),
    );
    common.insert(
        QueueAttributeName::VisibilityTimeout,
        setup.visibility_timeout.as_secs().to_string(),
    );
    let dead_letter_url = client
        .create_queue()
        .queue_name(dead_letter.as_str())
        .set_attributes(Some(common.clone()))
        .send()
        .await
        .map_err(|error| map_sdk_error("CreateQueue", error))?
        .queue_url
        .unwrap_or_default();
    let dead_letter_arn = client
        .get_queue_attributes()
        .queue_url(dead_letter_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|error| map_sdk_error("GetQueueAttributes", error))?
        .attributes
        .and_then(|mut attributes| attributes.remove(&QueueAttributeName::QueueArn))
        .unwrap_or_default();
    let redrive = serde_json::json!({
        "deadLetterTargetArn": dead_letter_arn,
        "maxReceiveCount": setup.max_receive_count.to_string(),
    });
    common.insert(QueueAttributeName::RedrivePolicy, redrive.to_string());
    client
        .create_queue()
        .queue_name(queue.as_str())
        .set_attributes(Some(common))
        .send()
        .await
        .map_err(|error| map_sdk_error("CreateQueue", error))?;
    Ok(dead_letter)
}
