//! The secure client over Azure Service Bus: sealed round trip, a tampered message dead-lettered
//! with its reason, interleaved sessions each opened in order, the processor (session order
//! through a retry; lock renewal, dead-letter outcomes and panics), and the dead-letter tools
//! (list, purge, replay). They run against the namespace or emulator named by
//! `QUEUE_RUNTIME_TEST_AZURE_CONNECTION_STRING`, on the test queues of `queue_azure::testing`
//! (`cargo xtask test` starts our emulator and sets it); in a plain `cargo test` they are
//! ignored, never passed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/remote.rs"]
mod remote;

use std::sync::Arc;
use std::time::Duration;

use queue_azure::AzureProvider;
use queue_azure::testing::{missing_connection_string, purge, test_config};
use queue_runtime::core::QueueProvider;
use queue_runtime::dead_letters::DeadLetterFilter;
use queue_runtime::prelude::*;
use remote::{keys, sealing_client};

/// A provider, an emptied test queue, and a sealing client over them.
async fn setup(sessions: bool) -> (AzureProvider, QueueName, QueueClient) {
    let config = test_config().unwrap_or_else(|| panic!("{}", missing_connection_string()));
    let provider = AzureProvider::connect(&config).await.unwrap();
    let name = if sessions {
        "qr-conformance-sessions"
    } else {
        "qr-conformance"
    };
    let queue = QueueName::new(name).unwrap();
    purge(&provider, &queue, sessions).await.unwrap();
    let client = sealing_client(Arc::new(provider.clone()), keys());
    (provider, queue, client)
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs QUEUE_RUNTIME_TEST_AZURE_CONNECTION_STRING; run by `cargo xtask test` when it is set"]
async fn sealed_round_trip_over_service_bus() {
    let (provider, queue, client) = setup(false).await;
    remote::sealed_round_trip(&provider, &queue, &client).await;
    provider.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs QUEUE_RUNTIME_TEST_AZURE_CONNECTION_STRING; run by `cargo xtask test` when it is set"]
async fn tampered_message_lands_in_the_dead_letter_queue_with_its_reason() {
    let (provider, queue, client) = setup(false).await;
    remote::tampered_copy_is_dead_lettered(&provider, &queue, &client).await;
    provider.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs QUEUE_RUNTIME_TEST_AZURE_CONNECTION_STRING; run by `cargo xtask test` when it is set"]
async fn interleaved_sessions_are_each_opened_in_order() {
    let (provider, queue, client) = setup(true).await;
    let sessions = ["octo/repo#1", "octo/repo#2", "octo/other#7"];
    remote::send_interleaved(&client, &queue, &sessions, 6).await;
    for session in sessions {
        let held = client
            .accept_named_session(
                &queue,
                &SessionId::new(session).unwrap(),
                Duration::from_secs(10),
            )
            .await
            .unwrap()
            .expect("the session");
        let mut seen = Vec::new();
        while seen.len() < 6 {
            let received = held.receive(10, Duration::from_secs(10)).await.unwrap();
            assert!(
                !received.is_empty(),
                "{session}: messages left after {seen:?}"
            );
            for message in &received {
                assert!(message.delivery.seal.is_some());
                seen.push(String::from_utf8(message.body().to_vec()).unwrap());
                client.complete(message).await.unwrap();
            }
        }
        let expected = remote::steps(session, 6);
        assert_eq!(seen, expected, "{session}");
        held.close().await.unwrap();
    }
    provider.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs QUEUE_RUNTIME_TEST_AZURE_CONNECTION_STRING; run by `cargo xtask test` when it is set"]
async fn the_processor_keeps_session_order_through_a_retry() {
    let (provider, queue, client) = setup(true).await;
    remote::processor_keeps_session_order_through_a_retry(&client, &queue).await;
    provider.close().await.unwrap();
}

/// The dead-letter tools over Service Bus, which can peek: refused messages are listed with
/// their reasons and opened bodies, a purge by reason removes only what it names, and a replay
/// re-seals and sends first, then removes the copy; the replayed message passes the checks.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs QUEUE_RUNTIME_TEST_AZURE_CONNECTION_STRING; run by `cargo xtask test` when it is set"]
async fn dead_letters_are_listed_purged_and_replayed() {
    let (provider, queue, client) = setup(false).await;
    for (body, reason) in [("refused once", "invalid-order"), ("spam", "spam")] {
        client.send(&queue, Message::new(body)).await.unwrap();
        let received = client
            .receive(&queue, 1, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(received.len(), 1, "{body} arrives");
        client
            .dead_letter(&received[0], reason, "the first look failed")
            .await
            .unwrap();
    }

    let dead_letters = client.dead_letters(&queue);
    let mut listed = dead_letters.list(10).await.unwrap();
    listed.sort_by_key(|dead_letter| dead_letter.reason.clone());
    let seen: Vec<_> = listed
        .iter()
        .map(|dead_letter| {
            assert!(dead_letter.is_authenticated(), "{dead_letter:?}");
            (
                dead_letter.reason.as_deref().unwrap_or_default(),
                String::from_utf8_lossy(dead_letter.message.body()).into_owned(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("invalid-order", "refused once".to_owned()),
            ("spam", "spam".to_owned())
        ]
    );

    let purged = dead_letters
        .purge(&DeadLetterFilter::all().with_reason("spam"))
        .await
        .unwrap();
    assert_eq!(purged.purged.len(), 1, "{purged:?}");
    assert!(purged.failed.is_empty(), "{purged:?}");

    let replay = dead_letters.replay(&DeadLetterFilter::all()).await.unwrap();
    assert_eq!(replay.replayed.len(), 1, "{replay:?}");
    let again = client
        .receive(&queue, 1, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(again.len(), 1, "the replayed copy passes the checks");
    assert_eq!(again[0].message_id(), &replay.replayed[0].1);
    assert_eq!(again[0].body().as_ref(), b"refused once");
    client.complete(&again[0]).await.unwrap();
    assert!(dead_letters.list(10).await.unwrap().is_empty());
    provider.close().await.unwrap();
}

/// Runs `processor` until `done` (or 30 s), then stops it: its report, and how long it ran.
async fn run_until(processor: Processor, done: impl Fn() -> bool) -> (ProcessorReport, Duration) {
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(processor.run(shutdown.clone()));
    let started = tokio::time::Instant::now();
    while !done() && started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    let report = running.await.unwrap().unwrap();
    (report, started.elapsed())
}

/// A processor stopped mid-flight gives back at once what it has not finished: the handler
/// that would not stop is cut off at the shutdown deadline and its message abandoned, so a
/// second processor handles it well before its 5 s lock would have run out, and every message
/// is handled exactly once across the two.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs QUEUE_RUNTIME_TEST_AZURE_CONNECTION_STRING; run by `cargo xtask test` when it is set"]
async fn a_processor_stopped_mid_flight_gives_back_at_once_and_loses_nothing() {
    use std::sync::Mutex;

    const COUNT: usize = 12;
    let (provider, queue, client) = setup(false).await;
    for index in 0..COUNT {
        client
            .send(&queue, Message::new(format!("{index}")))
            .await
            .unwrap();
    }
    let handled: Arc<Mutex<Vec<String>>> = Arc::default();
    let handler = |stuck: bool| {
        let handled = handled.clone();
        move |message: ReceivedMessage, _: HandlerContext| {
            let handled = handled.clone();
            async move {
                let body = String::from_utf8_lossy(message.body()).into_owned();
                // Message 7 hangs in the first processor: its shutdown must not wait for it.
                let nap = if stuck && body == "7" { 3_600 } else { 0 };
                tokio::time::sleep(Duration::from_secs(nap) + Duration::from_millis(100)).await;
                handled.lock().unwrap().push(body);
                Outcome::Complete
            }
        }
    };
    let options = ProcessorOptions::default()
        .with_max_concurrency(4)
        .with_shutdown_deadline(Duration::from_millis(500));
    let count = || handled.lock().unwrap().len();
    let (first, _) = run_until(
        Processor::new(client.clone(), queue.clone(), handler(true)).with_options(options.clone()),
        || count() >= 8,
    )
    .await;
    assert_eq!(first.abandoned_at_shutdown, 1, "{first:?}");
    assert!(!handled.lock().unwrap().contains(&"7".to_owned()));

    let (second, took) = run_until(
        Processor::new(client.clone(), queue.clone(), handler(false)).with_options(options),
        || count() >= COUNT,
    )
    .await;
    eprintln!(
        "DEBUG first {first:?} second {second:?} took {took:?} order {:?}",
        handled.lock().unwrap()
    );
    assert!(
        took < Duration::from_secs(4),
        "the rest took {took:?}: given back only when the 5 s lock ran out?"
    );
    let mut all = handled.lock().unwrap().clone();
    all.sort();
    let before = all.len();
    all.dedup();
    assert_eq!((before, all.len()), (COUNT, COUNT), "each once: {all:?}");
    assert_eq!(
        first.completed + second.completed,
        COUNT as u64,
        "{first:?} {second:?}"
    );
    provider.close().await.unwrap();
}

/// The processor over Service Bus (issue 18's processor evidence): a handler slower than the
/// queue's 5 s lock keeps its message (the lock is renewed; handled and completed once), a
/// handler's dead-letter outcome lands with its reason, and a handler that panics every time
/// is retried until the broker's maximum delivery count (3 on this queue) dead-letters the
/// message; the processor itself keeps going throughout.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs QUEUE_RUNTIME_TEST_AZURE_CONNECTION_STRING; run by `cargo xtask test` when it is set"]
async fn the_processor_renews_locks_dead_letters_and_survives_panics() {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    let config = test_config().unwrap_or_else(|| panic!("{}", missing_connection_string()));
    let provider = AzureProvider::connect(&config).await.unwrap();
    let queue = QueueName::new("qr-conformance-max3").unwrap();
    purge(&provider, &queue, false).await.unwrap();
    let client = sealing_client(Arc::new(provider.clone()), keys());
    for body in ["slow", "reject", "panic"] {
        client.send(&queue, Message::new(body)).await.unwrap();
    }

    let calls = Arc::new(Mutex::new(BTreeMap::<String, u32>::new()));
    let handler = {
        let calls = calls.clone();
        move |message: ReceivedMessage, _: HandlerContext| {
            let calls = calls.clone();
            async move {
                let body = String::from_utf8(message.body().to_vec()).unwrap();
                *calls.lock().unwrap().entry(body.clone()).or_default() += 1;
                match body.as_str() {
                    "slow" => {
                        // Longer than the 5 s lock: only renewal keeps it.
                        tokio::time::sleep(Duration::from_secs(7)).await;
                        Outcome::Complete
                    }
                    "reject" => Outcome::dead_letter("invalid-order", "no such order"),
                    _ => panic!("the handler cannot cope with {body}"),
                }
            }
        }
    };
    let shutdown = CancellationToken::new();
    let processor = Processor::new(client.clone(), queue.clone(), handler)
        .with_options(ProcessorOptions::default().with_max_concurrency(3));
    let running = tokio::spawn(processor.run(shutdown.clone()));
    let started = tokio::time::Instant::now();
    loop {
        let dead = client.dead_letters(&queue).list(10).await.unwrap().len();
        let slow_done = calls.lock().unwrap().get("slow").is_some()
            && started.elapsed() > Duration::from_secs(9);
        if (dead >= 2 && slow_done) || started.elapsed() > Duration::from_secs(60) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    shutdown.cancel();
    let report = running.await.unwrap().unwrap();

    let calls = std::mem::take(&mut *calls.lock().unwrap());
    assert_eq!(
        calls.get("slow"),
        Some(&1),
        "handled once despite the short lock: {calls:?}"
    );
    assert_eq!(calls.get("reject"), Some(&1), "{calls:?}");
    assert_eq!(
        calls.get("panic"),
        Some(&3),
        "one call per delivery: {calls:?}"
    );
    assert_eq!(report.completed, 1, "{report:?}");
    assert_eq!(report.dead_lettered, 1, "{report:?}");
    assert_eq!(report.panicked, 3, "{report:?}");
    assert_eq!(report.lock_lost, 0, "{report:?}");
    let mut reasons: Vec<String> = client
        .dead_letters(&queue)
        .list(10)
        .await
        .unwrap()
        .into_iter()
        .map(|dead| {
            format!(
                "{}: {}",
                String::from_utf8_lossy(dead.message.body()),
                dead.reason.unwrap_or_default()
            )
        })
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        ["panic: MaxDeliveryCountExceeded", "reject: invalid-order"]
    );
    purge(&provider, &queue, false).await.unwrap();
    provider.close().await.unwrap();
}
