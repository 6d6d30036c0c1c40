//! The client over the embedded broker, configured the ways an application configures it.

use std::time::Duration;

use bytes::Bytes;
use queue_runtime::core::{ErrorKind, PeekOptions};
use queue_runtime::prelude::*;

// A test helper: a bad configuration here is a failed test.
#[allow(clippy::unwrap_used)]
async fn client(config: &str) -> QueueClient {
    QueueClient::connect(&ClientConfig::from_toml_str(config).unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn declared_queues_exist_with_their_options() {
    let client = client(
        r#"
        [memory]
        auto_create_queues = false
        [[memory.queues]]
        name = "jobs"
        max_delivery_count = 1
        "#,
    )
    .await;
    let jobs = QueueName::new("jobs").unwrap();
    client.send(&jobs, Message::new("work")).await.unwrap();
    let message = client
        .receive_one(&jobs, Duration::from_secs(1))
        .await
        .unwrap()
        .unwrap();
    client.abandon(&message, None).await.unwrap();
    // One delivery allowed: the abandoned message is dead-lettered at once.
    let dead = client
        .receive_dead_letters(&jobs, 1, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);

    let unknown = QueueName::new("not-declared").unwrap();
    let error = client.send(&unknown, Message::new("x")).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NotFound);
}

#[tokio::test]
async fn sessions_through_the_client_keep_order_and_state() {
    let client = client(
        r#"
        [[memory.queues]]
        name = "chat"
        sessions = true
        "#,
    )
    .await;
    let chat = QueueName::new("chat").unwrap();
    for text in ["hello", "how are you", "bye"] {
        let message = Message::builder(text).session_id("alice").build().unwrap();
        client.send(&chat, message).await.unwrap();
    }
    let session = client
        .accept_next_session(&chat, Duration::from_secs(1))
        .await
        .unwrap()
        .expect("a session");
    assert_eq!(session.session_id().as_str(), "alice");
    let messages = session.receive(10, Duration::from_secs(1)).await.unwrap();
    let texts: Vec<&[u8]> = messages.iter().map(|m| m.body().as_ref()).collect();
    assert_eq!(texts, [&b"hello"[..], b"how are you", b"bye"]);
    for message in &messages {
        client.complete(message).await.unwrap();
    }
    session
        .set_state(Some(Bytes::from_static(b"greeted")))
        .await
        .unwrap();
    assert!(session.renew_lock().await.unwrap() >= session.locked_until() - Duration::from_secs(1));
    session.close().await.unwrap();

    let again = client
        .accept_named_session(
            &chat,
            &SessionId::new("alice").unwrap(),
            Duration::from_secs(1),
        )
        .await
        .unwrap()
        .expect("the session by name");
    assert_eq!(
        again.state().await.unwrap().as_deref(),
        Some(&b"greeted"[..])
    );
}

#[tokio::test]
async fn dead_letter_and_peek_through_the_client() {
    let client = QueueClient::memory();
    let queue = QueueName::new("inbox").unwrap();
    client.send(&queue, Message::new("bad")).await.unwrap();
    let peeked = client.peek(&queue, PeekOptions::new(5)).await.unwrap();
    assert_eq!(peeked.len(), 1);
    let message = client
        .receive_one(&queue, Duration::from_secs(1))
        .await
        .unwrap()
        .unwrap();
    client
        .dead_letter(&message, "Invalid", "the body is not an order")
        .await
        .unwrap();
    let dead = client
        .receive_dead_letters(&queue, 1, Duration::from_secs(1))
        .await
        .unwrap();
    let reason = dead[0].delivery.dead_letter.as_ref().unwrap();
    assert_eq!(
        (reason.reason.as_str(), reason.description.as_str()),
        ("Invalid", "the body is not an order")
    );
}

#[tokio::test]
async fn batches_and_scheduling_through_the_client() {
    let client = QueueClient::memory();
    let queue = QueueName::new("batch").unwrap();
    let limit = client.capabilities().max_message_bytes;
    let outcomes = client
        .send_batch(
            &queue,
            vec![Message::new("a"), Message::new(vec![0_u8; limit + 1])],
        )
        .await
        .unwrap();
    assert!(outcomes[0].is_ok());
    assert_eq!(
        outcomes[1].as_ref().unwrap_err().kind(),
        ErrorKind::MessageTooLarge
    );
    let scheduled = Message::builder("later")
        .delay(Duration::from_secs(3600))
        .build()
        .unwrap();
    let sent = client.send(&queue, scheduled).await.unwrap();
    client
        .cancel_scheduled(&queue, sent.sequence_number.unwrap())
        .await
        .unwrap();
    client.close().await.unwrap();
    let error = client.send(&queue, Message::new("x")).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Closed);
}

#[test]
fn configuration_errors_become_config_queue_errors() {
    let error = ClientConfig::from_toml_str("provider = \"azure\"").unwrap_err();
    let queue_error = QueueError::from(error);
    assert_eq!(queue_error.kind(), ErrorKind::Config);
    assert!(queue_error.to_string().contains("azure"));
}
