//! The secure client over Amazon SQS, against the local server `cargo xtask test` starts:
//! sealed round trip, a tampered message dead-lettered with its reason, and session order on a
//! FIFO queue with sessions interleaved; the processor over a FIFO queue, and dead-letter
//! tooling where the provider cannot peek.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/remote.rs"]
mod remote;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use queue_runtime::core::{QueueProvider, QueueProviderExt};
use queue_runtime::crypto::Keyset;
use queue_runtime::dead_letters::DeadLetterFilter;
use queue_runtime::prelude::*;
use queue_sqs::admin::{QueueSetup, create_queue_with_dead_letter};
use queue_sqs::testing::test_server_or_skip;
use queue_sqs::{SqsConfig, SqsProvider};
use remote::{keys, sealing_client};

/// A provider, a fresh queue with its dead-letter queue, and a sealing client over them.
async fn setup(endpoint: &str, fifo: bool, keys: Keyset) -> (SqsProvider, QueueName, QueueClient) {
    let provider = SqsProvider::for_local_server(endpoint, &SqsConfig::new()).unwrap();
    let suffix = if fifo { ".fifo" } else { "" };
    let queue = QueueName::new(format!("e2e-{}{suffix}", uuid::Uuid::new_v4().simple())).unwrap();
    let setup = QueueSetup {
        fifo,
        visibility_timeout: Duration::from_secs(5),
        ..QueueSetup::default()
    };
    create_queue_with_dead_letter(&provider, &queue, &setup)
        .await
        .unwrap();
    let client = sealing_client(Arc::new(provider.clone()), keys);
    (provider, queue, client)
}

#[tokio::test(flavor = "multi_thread")]
async fn sealed_round_trip_over_sqs() {
    let Some(endpoint) = test_server_or_skip().unwrap() else {
        return;
    };
    let (provider, queue, client) = setup(&endpoint, false, keys()).await;
    remote::sealed_round_trip(&provider, &queue, &client).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tampered_message_lands_in_the_dead_letter_queue_with_its_reason() {
    let Some(endpoint) = test_server_or_skip().unwrap() else {
        return;
    };
    let (provider, queue, client) = setup(&endpoint, false, keys()).await;
    remote::tampered_copy_is_dead_lettered(&provider, &queue, &client).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fifo_sessions_keep_their_order_when_interleaved() {
    let Some(endpoint) = test_server_or_skip().unwrap() else {
        return;
    };
    let (_provider, queue, client) = setup(&endpoint, true, keys()).await;
    let sessions = ["octo/repo#1", "octo/repo#2", "octo/other#7"];
    remote::send_interleaved(&client, &queue, &sessions, 6).await;
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    while seen.values().map(Vec::len).sum::<usize>() < 18 {
        let received = client
            .receive(&queue, 10, Duration::from_secs(5))
            .await
            .unwrap();
        assert!(!received.is_empty(), "messages left after {seen:?}");
        for message in &received {
            assert!(message.delivery.seal.is_some());
            seen.entry(message.session_id().unwrap().as_str().to_owned())
                .or_default()
                .push(String::from_utf8(message.body().to_vec()).unwrap());
        }
        for result in client.complete_batch(&received).await.unwrap() {
            result.unwrap();
        }
    }
    for session in sessions {
        let expected = remote::steps(session, 6);
        assert_eq!(seen[session], expected, "{session}");
    }
}

/// The processor over a FIFO queue: each message group handled in order, groups in parallel,
/// and a message given back mid-run does not let the later ones of its group overtake it.
#[tokio::test(flavor = "multi_thread")]
async fn the_processor_keeps_fifo_group_order_through_a_retry() {
    let Some(endpoint) = test_server_or_skip().unwrap() else {
        return;
    };
    let (_provider, queue, client) = setup(&endpoint, true, keys()).await;
    remote::processor_keeps_session_order_through_a_retry(&client, &queue).await;
}

/// Dead-letter tooling where the provider cannot peek: listing receives and gives back, replay
/// sends first and then removes the copy, and the replayed message is accepted.
#[tokio::test(flavor = "multi_thread")]
async fn dead_letters_are_listed_and_replayed_without_peek() {
    let Some(endpoint) = test_server_or_skip().unwrap() else {
        return;
    };
    let (_provider, queue, client) = setup(&endpoint, false, keys()).await;
    client
        .send(&queue, Message::new("refused once"))
        .await
        .unwrap();
    let received = client
        .receive(&queue, 1, Duration::from_secs(5))
        .await
        .unwrap();
    client
        .dead_letter(&received[0], "invalid-order", "the first look failed")
        .await
        .unwrap();

    let dead_letters = client.dead_letters(&queue);
    let listed = dead_letters.list(10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].reason.as_deref(), Some("invalid-order"));
    assert!(listed[0].is_authenticated());
    assert_eq!(listed[0].message.body().as_ref(), b"refused once");

    let replay = dead_letters.replay(&DeadLetterFilter::all()).await.unwrap();
    assert_eq!(replay.replayed.len(), 1, "{replay:?}");
    let again = client
        .receive(&queue, 1, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(again.len(), 1, "the replayed copy passes the checks");
    assert_eq!(again[0].message_id(), &replay.replayed[0].1);
    client.complete(&again[0]).await.unwrap();
    assert!(dead_letters.list(10).await.unwrap().is_empty());
}

/// What the processor did in one FIFO run: every handler call, with whether its message's lock
/// had already passed when the handler started.
#[derive(Debug, Default)]
struct Calls {
    bodies: Vec<String>,
    after_deadline: Vec<String>,
}

/// Issue 16: the messages of one FIFO group taken in one receive wait behind each other; every
/// one of them must keep its lock while it waits, so SQS never delivers it again meanwhile.
/// `groups` × `per_group` messages, a handler taking `handler_time`, visibility timeout 3 s.
async fn fifo_runs_keep_their_locks(
    groups: usize,
    per_group: usize,
    handler_time: Duration,
    slots: usize,
) {
    let Some(endpoint) = test_server_or_skip().unwrap() else {
        return;
    };
    let provider = SqsProvider::for_local_server(&endpoint, &SqsConfig::new()).unwrap();
    let queue = QueueName::new(format!("locks-{}.fifo", uuid::Uuid::new_v4().simple())).unwrap();
    let setup = QueueSetup {
        fifo: true,
        visibility_timeout: Duration::from_secs(3),
        ..QueueSetup::default()
    };
    create_queue_with_dead_letter(&provider, &queue, &setup)
        .await
        .unwrap();
    let client = sealing_client(Arc::new(provider.clone()), keys());
    let total = groups * per_group;
    for index in 0..per_group {
        for group in 0..groups {
            let message = Message::builder(format!("g{group}-{index:02}"))
                .session_id(format!("group-{group}"))
                .build()
                .unwrap();
            client.send(&queue, message).await.unwrap();
        }
    }

    let calls = Arc::new(std::sync::Mutex::new(Calls::default()));
    let handler = {
        let calls = calls.clone();
        move |message: ReceivedMessage, _: HandlerContext| {
            let calls = calls.clone();
            async move {
                let body = String::from_utf8(message.body().to_vec()).unwrap();
                {
                    let mut calls = calls.lock().unwrap();
                    if std::time::SystemTime::now() >= message.locked_until {
                        calls.after_deadline.push(body.clone());
                    }
                    calls.bodies.push(body);
                }
                tokio::time::sleep(handler_time).await;
                Outcome::Complete
            }
        }
    };
    let shutdown = CancellationToken::new();
    let processor = Processor::new(client.clone(), queue.clone(), handler).with_options(
        ProcessorOptions::default()
            .with_sessions(true)
            .with_max_concurrency(slots),
    );
    let running = tokio::spawn(processor.run(shutdown.clone()));
    let started = tokio::time::Instant::now();
    let budget = handler_time * u32::try_from(total).unwrap() + Duration::from_secs(60);
    loop {
        let report_so_far = calls.lock().unwrap().bodies.len();
        if report_so_far >= total || started.elapsed() > budget {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Let the last handlers finish and settle.
    tokio::time::sleep(handler_time + Duration::from_secs(1)).await;
    shutdown.cancel();
    let report = running.await.unwrap().unwrap();

    let calls = std::mem::take(&mut *calls.lock().unwrap());
    assert!(
        calls.after_deadline.is_empty(),
        "handlers started after their lock deadline: {:?}",
        calls.after_deadline
    );
    let mut seen = std::collections::HashSet::new();
    let twice: Vec<&String> = calls
        .bodies
        .iter()
        .filter(|body| !seen.insert(*body))
        .collect();
    assert!(twice.is_empty(), "handled twice: {twice:?}");
    assert_eq!(
        calls.bodies.len(),
        total,
        "every message handled: {report:?}"
    );
    for group in 0..groups {
        let prefix = format!("g{group}-");
        let order: Vec<&String> = calls
            .bodies
            .iter()
            .filter(|b| b.starts_with(&prefix))
            .collect();
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(order, sorted, "group {group} handled in order");
    }
    assert_eq!(
        report.completed,
        u64::try_from(total).unwrap(),
        "{report:?}"
    );
    assert_eq!(report.lock_lost, 0, "{report:?}");
    assert_eq!(report.expired_before_handling, 0, "{report:?}");
    let dead = client
        .receive_dead_letters(&queue, 10, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(dead.is_empty(), "nothing dead-lettered");
}

/// Shape one of issue 16: 3 groups of 10, a 1 s handler, 3 s visibility (was: 39 calls for 30
/// messages, 9 after their deadline, 9 handled twice).
#[tokio::test(flavor = "multi_thread")]
async fn fifo_runs_keep_their_locks_with_a_one_second_handler() {
    fifo_runs_keep_their_locks(3, 10, Duration::from_secs(1), 8).await;
}

/// Shape two of issue 16: 40 messages (8 groups of 5), a 2.8 s handler (longer than a lock
/// without renewal), 16 slots (was: 62 calls, 27 after their deadline, 18 handled twice, 5
/// dead-lettered by the redrive policy).
#[tokio::test(flavor = "multi_thread")]
async fn fifo_runs_keep_their_locks_with_handlers_near_the_visibility_timeout() {
    fifo_runs_keep_their_locks(8, 5, Duration::from_millis(2800), 16).await;
}

/// Issue 16 on SQS FIFO: a copy of a sealed message re-sent with a fresh deduplication id, in
/// the same message group, arrives in the same receive as its original. It is not handed over
/// while the original is in flight (it waits, given back with a delay, not dead-lettered); once
/// the original is completed it is refused as a replay.
#[tokio::test(flavor = "multi_thread")]
async fn a_copy_with_a_fresh_deduplication_id_is_handled_once() {
    let Some(endpoint) = test_server_or_skip().unwrap() else {
        return;
    };
    let (provider, queue, client) = setup(&endpoint, true, keys()).await;
    let original = Message::builder("pay 10")
        .session_id("octo/repo#1")
        .build()
        .unwrap();
    client.send(&queue, original).await.unwrap();
    // The attacker reads the sealed message off the queue and sends it again as is, with a new
    // deduplication id so that SQS takes it.
    let raw = provider
        .receive_one(&queue, Duration::from_secs(5))
        .await
        .unwrap()
        .expect("the sealed message");
    provider.abandon(&raw.receipt, None).await.unwrap();
    let copy = raw
        .message
        .to_builder()
        .deduplication_id(uuid::Uuid::new_v4().to_string())
        .build()
        .unwrap();
    provider.send(&queue, copy).await.unwrap();

    let mut handed = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while tokio::time::Instant::now() < deadline {
        let received = client
            .receive(&queue, 10, Duration::from_secs(2))
            .await
            .unwrap();
        for message in received {
            client.complete(&message).await.unwrap();
            handed.push(message);
        }
        // The dead-letter queue tells when the copy was judged.
        let refused = client
            .receive_dead_letters(&queue, 10, Duration::ZERO)
            .await
            .unwrap();
        if !refused.is_empty() {
            let reasons: Vec<_> = refused
                .iter()
                .map(|m| m.delivery.dead_letter.clone().unwrap().reason)
                .collect();
            assert_eq!(reasons, ["rejected: replay"]);
            break;
        }
    }
    assert_eq!(handed.len(), 1, "handled once");
    assert_eq!(handed[0].body().as_ref(), b"pay 10");
}

/// `QueueClient::from_env` builds an SQS client, for real: this test runs itself again in a
/// child process whose environment says `QUEUE_RUNTIME_PROVIDER=sqs` and points the AWS SDK at
/// the local server (the workspace forbids `unsafe`, so the parent's environment stays as is).
#[tokio::test(flavor = "multi_thread")]
#[allow(clippy::print_stdout)] // the child reports to its parent on stdout
async fn from_env_builds_an_sqs_client() {
    const CHILD: &str = "QUEUE_RUNTIME_TEST_FROM_ENV_CHILD";
    let Some(endpoint) = test_server_or_skip().unwrap() else {
        return;
    };
    let provider = SqsProvider::for_local_server(&endpoint, &SqsConfig::new()).unwrap();
    if std::env::var(CHILD).is_ok() {
        let queue = QueueName::new(std::env::var("QUEUE_NAME").unwrap()).unwrap();
        let client = QueueClient::from_env().await.unwrap();
        assert_eq!(client.provider().name(), "sqs");
        client
            .send(&queue, Message::new("from the environment"))
            .await
            .unwrap();
        let received = client
            .receive_one(&queue, Duration::from_secs(5))
            .await
            .unwrap()
            .expect("the message");
        assert_eq!(received.body().as_ref(), b"from the environment");
        client.complete(&received).await.unwrap();
        println!("from_env child: round trip done");
        return;
    }
    let queue = QueueName::new(format!("env-{}", uuid::Uuid::new_v4().simple())).unwrap();
    create_queue_with_dead_letter(&provider, &queue, &QueueSetup::default())
        .await
        .unwrap();
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        format!("provider = \"memory\"\n[sqs]\nqueues = [\"{queue}\"]\n"),
    )
    .unwrap();
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "from_env_builds_an_sqs_client", "--nocapture"])
        .env(CHILD, "1")
        .env("QUEUE_NAME", queue.as_str())
        .env("QUEUE_RUNTIME_CONFIG", config.path())
        // The variable overrides the file's provider.
        .env("QUEUE_RUNTIME_PROVIDER", "sqs")
        .env("AWS_ENDPOINT_URL_SQS", &endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("from_env child: round trip done"),
        "the child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Public-key mode over SQS (issue 20): the producer's orders open for the consumer, signed by
/// it; an untrusted producer and an impostor (its own signing key under the trusted producer's
/// key id) are dead-lettered as `rejected: authentication`; a client holding producer keys only
/// opens nothing (`rejected: key`).
#[tokio::test(flavor = "multi_thread")]
async fn public_key_attacks_are_refused_over_sqs() {
    use queue_runtime::core::ReceiveOptions;
    use queue_runtime::crypto::KeyId;
    use queue_runtime::crypto::public::Kem;
    use queue_runtime::keys::{KeyRing, KeyRingOptions, KeysetDocument, Role, StaticKeys};

    let Some(endpoint) = test_server_or_skip().unwrap() else {
        return;
    };
    let (provider, queue, _shared_key_client) = setup(&endpoint, false, keys()).await;
    let id = |text: &str| KeyId::new(text).unwrap();
    let mut consumer_doc = KeysetDocument::empty(Some(Role::Consumer));
    consumer_doc
        .generate_recipient_key(id("orders-r1"), Kem::XWing)
        .unwrap();
    let producer = |signing_key_id: &str| {
        let mut document = KeysetDocument::empty(Some(Role::Producer));
        document.generate_signing_key(id(signing_key_id)).unwrap();
        document
            .import_public(&consumer_doc.export_public().unwrap())
            .unwrap();
        document
    };
    let producer_doc = producer("webhook-1");
    let intruder_doc = producer("intruder");
    let impostor_doc = producer("webhook-1");
    consumer_doc
        .import_public(&producer_doc.export_public().unwrap())
        .unwrap();
    let client = |document: &KeysetDocument, producer_only: bool| {
        let ring = KeyRing::with_options(
            Arc::new(StaticKeys::new(document.to_keys("test").unwrap())),
            KeyRingOptions::default().with_producer_only(producer_only),
        );
        QueueClient::new(Arc::new(provider.clone())).with_security(
            Security::new(ring).with_queue_policy(
                queue.clone(),
                QueuePolicy::default().with_mode(SealMode::PublicKey),
            ),
        )
    };
    let consumer = client(&consumer_doc, false);
    for (document, body) in [
        (&producer_doc, "order 1"),
        (&intruder_doc, "refund from an intruder"),
        (&impostor_doc, "refund from an impostor"),
    ] {
        client(document, true)
            .send(&queue, Message::new(body))
            .await
            .unwrap();
    }
    let mut handed = Vec::new();
    for _ in 0..5 {
        for message in consumer
            .receive(&queue, 10, Duration::from_secs(2))
            .await
            .unwrap()
        {
            let seal = message.delivery.seal.clone().unwrap();
            handed.push((message.body().to_vec(), seal.sender_key_id));
            consumer.complete(&message).await.unwrap();
        }
    }
    assert_eq!(
        handed,
        [(b"order 1".to_vec(), Some("webhook-1".to_owned()))]
    );
    let reasons = |dead: &[ReceivedMessage]| -> Vec<String> {
        dead.iter()
            .map(|m| m.delivery.dead_letter.as_ref().unwrap().reason.clone())
            .collect()
    };
    let dead = provider
        .receive(
            &queue,
            ReceiveOptions::new(10, Duration::from_secs(2)).dead_letter(),
        )
        .await
        .unwrap();
    assert_eq!(
        reasons(&dead),
        ["rejected: authentication", "rejected: authentication"]
    );
    for message in &dead {
        provider.complete(&message.receipt).await.unwrap();
    }

    // The producer's own client receives what it sent: it cannot open it.
    let producer_client = client(&producer_doc, true);
    producer_client
        .send(&queue, Message::new("order 2"))
        .await
        .unwrap();
    let received = producer_client
        .receive(&queue, 10, Duration::from_secs(2))
        .await
        .unwrap();
    assert!(received.is_empty(), "the producer opened {received:?}");
    let dead = provider
        .receive(
            &queue,
            ReceiveOptions::new(10, Duration::from_secs(2)).dead_letter(),
        )
        .await
        .unwrap();
    assert_eq!(reasons(&dead), ["rejected: key"]);
}
