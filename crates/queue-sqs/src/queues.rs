//! What the provider knows of each queue, looked up once: its URL and the attributes that
//! shape every call (FIFO or not, size limit, visibility timeout, dead-letter queue).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::QueueAttributeName;
use parking_lot::RwLock;
use queue_core::{ErrorKind, QueueError, QueueName};
use tokio::sync::OnceCell;

use crate::error::map_sdk_error;

/// SQS's default message size limit (and the largest it allows).
pub(crate) const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_048_576;
/// SQS's default visibility timeout.
const DEFAULT_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(30);

/// One queue, as the provider uses it.
#[derive(Debug)]
pub(crate) struct QueueInfo {
    /// The queue's own name (for a dead-letter queue: its name, not the source queue's).
    pub(crate) name: QueueName,
    pub(crate) url: String,
    pub(crate) fifo: bool,
    /// `MaximumMessageSize`.
    pub(crate) max_message_bytes: usize,
    /// `VisibilityTimeout`: how long a receive hides a message, and what a renewal adds.
    pub(crate) visibility_timeout: Duration,
    /// The dead-letter queue's ARN from the `RedrivePolicy`, if there is one.
    redrive_target: Option<String>,
    dead_letter: OnceCell<Arc<QueueInfo>>,
}

impl QueueInfo {
    #[cfg(test)]
    pub(crate) fn for_tests(name: &str, fifo: bool, max_message_bytes: usize) -> Self {
        QueueInfo {
            name: QueueName::new(name).expect("valid"),
            url: format!("http://127.0.0.1/000000000000/{name}"),
            fifo,
            max_message_bytes,
            visibility_timeout: DEFAULT_VISIBILITY_TIMEOUT,
            redrive_target: None,
            dead_letter: OnceCell::new(),
        }
    }
}

/// The queue lookups of one provider.
#[derive(Debug, Default)]
pub(crate) struct QueueDirectory {
    queues: RwLock<HashMap<QueueName, Arc<QueueInfo>>>,
    dead_letter_names: BTreeMap<QueueName, QueueName>,
}

impl QueueDirectory {
    pub(crate) fn new(dead_letter_names: BTreeMap<QueueName, QueueName>) -> Self {
        QueueDirectory {
            queues: RwLock::default(),
            dead_letter_names,
        }
    }

    /// The queue, from the cache or from SQS (`GetQueueUrl` and `GetQueueAttributes`).
    pub(crate) async fn get(
        &self,
        client: &Client,
        name: &QueueName,
    ) -> Result<Arc<QueueInfo>, QueueError> {
        if let Some(info) = self.queues.read().get(name) {
            return Ok(Arc::clone(info));
        }
        let info = Arc::new(look_up(client, name, None).await?);
        self.queues.write().insert(name.clone(), Arc::clone(&info));
        Ok(info)
    }

    /// The dead-letter queue of `queue`: the configured one, else its redrive policy's.
    pub(crate) async fn dead_letter_of(
        &self,
        client: &Client,
        queue: &QueueInfo,
    ) -> Result<Arc<QueueInfo>, QueueError> {
        queue
            .dead_letter
            .get_or_try_init(|| async {
                if let Some(name) = self.dead_letter_names.get(&queue.name) {
                    return self.get(client, name).await;
                }
                let Some(arn) = &queue.redrive_target else {
                    return Err(QueueError::new(
                        ErrorKind::NotFound,
                        format!(
                            "queue {} has no dead-letter queue: give it a RedrivePolicy or \
                             configure one with SqsConfig::with_dead_letter_queue",
                            queue.name
                        ),
                    ));
                };
                // arn:aws:sqs:<region>:<account>:<name>
                let mut parts = arn.rsplitn(2, ':');
                let name = parts.next().unwrap_or_default();
                let account = parts.next().and_then(|rest| rest.rsplit(':').next());
                let name = QueueName::new(name).map_err(|error| {
                    QueueError::new(
                        ErrorKind::Config,
                        format!(
                            "the RedrivePolicy of queue {} names {arn:?}: {error}",
                            queue.name
                        ),
                    )
                })?;
                Ok(Arc::new(look_up(client, &name, account).await?))
            })
            .await
            .cloned()
    }

    /// Drops a cached queue after SQS said it does not exist, so a re-created one is found.
    pub(crate) fn forget(&self, name: &QueueName) {
        self.queues.write().remove(name);
    }
}

async fn look_up(
    client: &Client,
    name: &QueueName,
    owner_account: Option<&str>,
) -> Result<QueueInfo, QueueError> {
    let url = client
        .get_queue_url()
        .queue_name(name.as_str())
        .set_queue_owner_aws_account_id(owner_account.map(str::to_owned))
        .send()
        .await
        .map_err(|error| {
            let error = map_sdk_error("GetQueueUrl", error);
            if error.kind() == ErrorKind::NotFound {
                // Say which queue: an operator's check lists several.
                QueueError::new(
                    ErrorKind::NotFound,
                    format!("SQS queue {name} does not exist"),
                )
                .with_operation("GetQueueUrl")
                .with_source(error)
            } else {
                error
            }
        })?
        .queue_url
        .ok_or_else(|| QueueError::new(ErrorKind::Provider, "SQS GetQueueUrl returned no URL"))?;
    let attributes = client
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::VisibilityTimeout)
        .attribute_names(QueueAttributeName::MaximumMessageSize)
        .attribute_names(QueueAttributeName::FifoQueue)
        .attribute_names(QueueAttributeName::RedrivePolicy)
        .send()
        .await
        .map_err(|error| map_sdk_error("GetQueueAttributes", error))?
        .attributes
        .unwrap_or_default();
    let number = |attribute: QueueAttributeName| {
        attributes
            .get(&attribute)
            .and_then(|value| value.parse::<u64>().ok())
    };
    let redrive_target = attributes
        .get(&QueueAttributeName::RedrivePolicy)
        .and_then(|policy| serde_json::from_str::<serde_json::Value>(policy).ok())
        .and_then(|policy| {
            policy
                .get("deadLetterTargetArn")
                .and_then(|arn| arn.as_str())
                .map(str::to_owned)
        });
    Ok(QueueInfo {
        name: name.clone(),
        url,
        fifo: attributes
            .get(&QueueAttributeName::FifoQueue)
            .is_some_and(|fifo| fifo.eq_ignore_ascii_case("true"))
            || name.as_str().ends_with(".fifo"),
        max_message_bytes: number(QueueAttributeName::MaximumMessageSize)
            .and_then(|bytes| usize::try_from(bytes).ok())
            .unwrap_or(DEFAULT_MAX_MESSAGE_BYTES),
        visibility_timeout: number(QueueAttributeName::VisibilityTimeout)
            .map_or(DEFAULT_VISIBILITY_TIMEOUT, Duration::from_secs),
        redrive_target,
        dead_letter: OnceCell::new(),
    })
}
