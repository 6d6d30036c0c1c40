//! The replay guard shared on Redis (the `redis` feature), against a real Redis that
//! `cargo xtask test` starts (`QUEUE_RUNTIME_REDIS_TEST_URL`): the store's semantics, separate
//! clients that share nothing but Redis, an outage (fail closed, fail open), and three consumer
//! processes on one SQS queue with an attacker re-sending completed messages.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

#[path = "../../crates/queue-runtime/tests/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use queue_runtime::core::{QueueProvider, QueueProviderExt, ReplayClaim};
use queue_runtime::crypto::{KeyState, Keyset};
use queue_runtime::keys::{KeyRing, StaticKeys};
use queue_runtime::memory::{MemoryConfig, MemoryProvider, QueueOptions};
use queue_runtime::prelude::*;
use queue_runtime::security::{
    ClaimOutcome, RedisReplayStore, RedisStoreOptions, ReplayFailure, ReplayKey, ReplayStore,
};
use secrecy::SecretString;
use support::{copy_key, dead_letter_reasons, key, keyset, queue, raw_messages};

const URL_VARIABLE: &str = "QUEUE_RUNTIME_REDIS_TEST_URL";
const REQUIRE_VARIABLE: &str = "QUEUE_RUNTIME_REQUIRE_REDIS";

/// The test Redis, `None` (after one `SKIPPED` line) when there is none; a failure when the
/// harness promised one.
fn redis_url() -> Option<SecretString> {
    match std::env::var(URL_VARIABLE)
        .ok()
        .filter(|url| !url.is_empty())
    {
        Some(url) => Some(SecretString::from(url)),
        None if std::env::var_os(REQUIRE_VARIABLE).is_some() => {
            panic!("{REQUIRE_VARIABLE} is set but {URL_VARIABLE} is not")
        }
        None => {
            eprintln!("SKIPPED: no Redis ({URL_VARIABLE} unset); `cargo xtask test` starts one");
            None
        }
    }
}

/// A store of its own (a fresh prefix), as one consumer process would have.
async fn store(url: &SecretString, prefix: &str) -> Arc<RedisReplayStore> {
    let options = RedisStoreOptions::default()
        .with_prefix(prefix)
        .with_response_timeout(Duration::from_millis(500));
    Arc::new(RedisReplayStore::connect(url, options).await.unwrap())
}

fn prefix() -> String {
    format!("test-{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test]
async fn claims_complete_and_expire_as_the_in_process_store_does() {
    let Some(url) = redis_url() else { return };
    let prefix = prefix();
    let store = store(&url, &prefix).await;
    let queue = queue("events");
    let id = [7_u8; 32];
    let key = ReplayKey {
        queue: &queue,
        envelope_id: &id,
    };
    let now = SystemTime::now();
    let (first, second) = (ReplayClaim::new(1), ReplayClaim::new(2));
    let soon = now + Duration::from_millis(400);
    assert_eq!(
        store.claim(key, first, soon, now).await.unwrap(),
        ClaimOutcome::Claimed
    );
    let other = store.claim(key, second, soon, now).await.unwrap();
    assert!(
        matches!(other, ClaimOutcome::HeldElsewhere { .. }),
        "{other:?}"
    );
    assert!(!store.extend(key, second, soon, now).await.unwrap());
    store.release(key, second).await.unwrap();
    assert!(matches!(
        store.claim(key, second, soon, now).await.unwrap(),
        ClaimOutcome::HeldElsewhere { .. }
    ));
    // The claim ends with its lock: Redis expires it.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let later = SystemTime::now();
    let until = later + Duration::from_secs(30);
    assert_eq!(
        store.claim(key, second, until, later).await.unwrap(),
        ClaimOutcome::Claimed
    );
    assert!(store.extend(key, second, until, later).await.unwrap());
    store
        .complete(key, Duration::from_secs(60), later)
        .await
        .unwrap();
    for claim in [first, second, ReplayClaim::new(3)] {
        assert_eq!(
            store.claim(key, claim, until, later).await.unwrap(),
            ClaimOutcome::Completed
        );
    }

    // Namespaced per queue, ids hashed: no envelope id, and no body or key, in Redis.
    let client = redis::Client::open(secrecy::ExposeSecret::expose_secret(&url)).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(
        keys[0].starts_with(&format!("{prefix}:events:")),
        "{keys:?}"
    );
    assert!(
        !keys[0].contains(&hex::encode(id)),
        "the id is hashed: {keys:?}"
    );
    let value: String = redis::cmd("GET")
        .arg(&keys[0])
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(value, "done");
}

/// One embedded broker (the queue) with a 2 s lock, and consumers that share nothing but it and
/// Redis: each its own key ring, replay store and security, like separate processes.
fn broker() -> Arc<MemoryProvider> {
    let broker = Arc::new(MemoryProvider::new(
        MemoryConfig::default().with_auto_create_queues(false),
    ));
    broker
        .create_queue(
            &queue("events"),
            QueueOptions::default()
                .with_lock_duration(Duration::from_secs(2))
                .with_max_delivery_count(20),
        )
        .unwrap();
    broker
}

fn consumer(
    broker: &Arc<MemoryProvider>,
    keys: Keyset,
    store: Arc<dyn ReplayStore>,
    failure: ReplayFailure,
) -> QueueClient {
    let security = Security::new(KeyRing::new(Arc::new(StaticKeys::new(keys))))
        .with_default_policy(QueuePolicy::default().with_replay_failure(failure))
        .with_replay_store(store);
    QueueClient::new(Arc::clone(broker) as Arc<dyn QueueProvider>).with_security(security)
}

async fn receive_all(client: &QueueClient, wait: Duration) -> Vec<ReceivedMessage> {
    client.receive(&queue("events"), 10, wait).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn separate_consumers_share_the_replay_guard_through_redis() {
    let Some(url) = redis_url() else { return };
    let prefix = prefix();
    let broker = broker();
    let k1 = key("k1", KeyState::Primary);
    let sender = consumer(
        &broker,
        keyset([copy_key(&k1, KeyState::Primary)]),
        store(&url, &prefix).await,
        ReplayFailure::FailClosed,
    );
    let a = consumer(
        &broker,
        keyset([copy_key(&k1, KeyState::Primary)]),
        store(&url, &prefix).await,
        ReplayFailure::FailClosed,
    );
    let b = consumer(
        &broker,
        keyset([k1]),
        store(&url, &prefix).await,
        ReplayFailure::FailClosed,
    );

    // A copy of a message completed by A is refused by B.
    sender
        .send(&queue("events"), Message::new("pay 10"))
        .await
        .unwrap();
    let copy = raw_messages(&broker, "events").await.remove(0);
    let handled = receive_all(&a, Duration::from_secs(1)).await;
    a.complete(&handled[0]).await.unwrap();
    broker.send(&queue("events"), copy).await.unwrap();
    assert!(receive_all(&b, Duration::from_millis(300)).await.is_empty());
    assert_eq!(
        dead_letter_reasons(&broker, "events").await,
        ["rejected: replay"]
    );

    // A duplicate delivered at the same time to A and B: handled once, the other copy waits
    // (not dead-lettered), and is refused once the original completes.
    sender
        .send(&queue("events"), Message::new("pay 20"))
        .await
        .unwrap();
    let copy = raw_messages(&broker, "events").await.remove(0);
    broker.send(&queue("events"), copy).await.unwrap();
    let first = receive_all(&a, Duration::from_secs(1)).await;
    assert_eq!(first.len(), 1, "A takes one copy and holds back the other");
    let second = receive_all(&b, Duration::from_millis(300)).await;
    assert!(
        second.is_empty(),
        "B does not get the copy while A holds it"
    );
    assert!(dead_letter_reasons(&broker, "events").await.is_empty());
    a.complete(&first[0]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(receive_all(&b, Duration::from_secs(2)).await.is_empty());
    assert_eq!(
        dead_letter_reasons(&broker, "events").await,
        ["rejected: replay"]
    );

    // A consumer that dies mid-handling blocks nobody: its claim ends with its lock.
    sender
        .send(&queue("events"), Message::new("pay 30"))
        .await
        .unwrap();
    let dying = receive_all(&a, Duration::from_secs(1)).await;
    assert_eq!(dying.len(), 1);
    drop(dying);
    tokio::time::sleep(Duration::from_millis(2300)).await;
    let redelivered = receive_all(&b, Duration::from_secs(2)).await;
    assert_eq!(redelivered.len(), 1, "B handles the redelivery");
    assert_eq!(redelivered[0].body().as_ref(), b"pay 30");
    assert_eq!(redelivered[0].delivery_count(), 2);
    b.complete(&redelivered[0]).await.unwrap();
    assert!(dead_letter_reasons(&broker, "events").await.is_empty());
}

/// A Redis of this test's own, to stop and start again.
struct OwnRedis {
    child: Child,
    port: u16,
}

impl OwnRedis {
    fn start(port: u16) -> Option<OwnRedis> {
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
            ])
            .args(["--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        for _ in 0..100 {
            if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
                return Some(OwnRedis { child, port });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    fn url(&self) -> SecretString {
        SecretString::from(format!("redis://127.0.0.1:{}", self.port))
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outage_fails_closed_by_default_and_open_when_a_queue_says_so() {
    if redis_url().is_none() {
        return;
    }
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let redis = OwnRedis::start(port).expect("redis-server on the PATH");
    let url = redis.url();
    let broker = broker();
    let k1 = key("k1", KeyState::Primary);
    let closed = consumer(
        &broker,
        keyset([copy_key(&k1, KeyState::Primary)]),
        store(&url, &prefix()).await,
        ReplayFailure::FailClosed,
    );
    let open = consumer(
        &broker,
        keyset([copy_key(&k1, KeyState::Primary)]),
        store(&url, &prefix()).await,
        ReplayFailure::FailOpen,
    );
    closed
        .send(&queue("events"), Message::new("during the outage"))
        .await
        .unwrap();
    drop(redis);

    // Fail closed: given back, an error, nothing dead-lettered.
    let error = closed
        .receive(&queue("events"), 10, Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(error.is_transient(), "{error}");
    // While the store is down the client does not even receive: no delivery is spent.
    let again = closed
        .receive(&queue("events"), 10, Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(again.is_transient(), "{again}");
    assert!(dead_letter_reasons(&broker, "events").await.is_empty());
    let raw = broker
        .peek(&queue("events"), queue_runtime::core::PeekOptions::new(10))
        .await
        .unwrap();
    assert_eq!(raw.len(), 1, "the message waits in the queue");
    assert_eq!(
        raw[0].delivery.delivery_count, 1,
        "received once, not at every retry"
    );

    // Fail open: handed over without the replay check.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let handed = open
        .receive(&queue("events"), 10, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(handed.len(), 1);
    assert_eq!(handed[0].body().as_ref(), b"during the outage");
    open.abandon(&handed[0], None).await.unwrap();

    // Redis back: the fail-closed consumer works again once its connection is re-made (the
    // processor's receive backoff does the same retrying).
    let _back = OwnRedis::start(port).expect("redis-server again");
    let mut handed = Vec::new();
    for _ in 0..20 {
        match closed
            .receive(&queue("events"), 10, Duration::from_secs(1))
            .await
        {
            Ok(received) if !received.is_empty() => {
                handed = received;
                break;
            }
            Ok(_) => {}
            Err(error) => assert!(error.is_transient(), "{error}"),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(handed.len(), 1, "received again once Redis is back");
    closed.complete(&handed[0]).await.unwrap();
}

// ---- Three consumer processes on one SQS queue --------------------------------------------------

const CHILD: &str = "QUEUE_RUNTIME_TEST_REDIS_CONSUMER";

/// Issue 19's scale evidence: three consumer **processes** share one SQS queue and one Redis; a
/// producer sends, and an attacker re-sends completed messages (exact copies, sealed bytes and
/// all) at random moments. Every replay is refused, every legitimate message is handled exactly
/// once, none is lost.
#[tokio::test(flavor = "multi_thread")]
async fn three_consumer_processes_share_one_replay_guard() {
    use queue_sqs::admin::{QueueSetup, create_queue_with_dead_letter};

    if std::env::var(CHILD).is_ok() {
        return run_consumer_process().await;
    }
    let Some(url) = redis_url() else { return };
    let Some(endpoint) = queue_sqs::testing::test_server_or_skip().unwrap() else {
        return;
    };
    let provider =
        queue_sqs::SqsProvider::for_local_server(&endpoint, &queue_sqs::SqsConfig::new()).unwrap();
    let queue_name = QueueName::new(format!("replay-{}", uuid::Uuid::new_v4().simple())).unwrap();
    create_queue_with_dead_letter(
        &provider,
        &queue_name,
        &QueueSetup {
            visibility_timeout: Duration::from_secs(5),
            ..QueueSetup::default()
        },
    )
    .await
    .unwrap();
    let keys = std::env::temp_dir().join(format!("replay-keys-{}.json", uuid::Uuid::new_v4()));
    queue_runtime::keys::generate_keyset_file(
        &keys,
        queue_runtime::crypto::KeyId::new("k1").unwrap(),
    )
    .unwrap();
    let prefix = prefix();
    let out_dir = tempfile::tempdir().unwrap();

    // The producer seals and sends every message.
    let security = Security::from_source(Arc::new(queue_runtime::keys::FileKeys::new(&keys)));
    let producer = QueueClient::new(Arc::new(provider.clone()) as Arc<dyn QueueProvider>)
        .with_security(security);
    const MESSAGES: usize = 60;
    let mut sent = BTreeSet::new();
    for index in 0..MESSAGES {
        let body = format!("order-{index:03}");
        producer
            .send(&queue_name, Message::new(body.clone()))
            .await
            .unwrap();
        sent.insert(body);
    }
    // The attacker reads the queue (sealed bytes and all) and keeps a copy of every fourth
    // message, giving them back untouched.
    let raw = Arc::new(provider.clone());
    let mut copies = Vec::new();
    let mut seen = 0;
    while seen < MESSAGES {
        let batch = raw
            .receive(
                &queue_name,
                queue_runtime::core::ReceiveOptions::new(10, Duration::from_secs(2)),
            )
            .await
            .unwrap();
        assert!(!batch.is_empty(), "the attacker sees every message");
        for message in batch {
            if seen % 4 == 0 {
                copies.push(message.message.clone());
            }
            seen += 1;
            raw.abandon(&message.receipt, None).await.unwrap();
        }
    }

    let consumers: Vec<Child> = (0..3)
        .map(|index| {
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "three_consumer_processes_share_one_replay_guard",
                    "--nocapture",
                ])
                .env(CHILD, index.to_string())
                .env("SQS_ENDPOINT", &endpoint)
                .env("QUEUE", queue_name.as_str())
                .env("KEYS", &keys)
                .env("REDIS_URL", secrecy::ExposeSecret::expose_secret(&url))
                .env("REDIS_PREFIX", &prefix)
                .env("OUT", out_dir.path().join(format!("consumer-{index}.txt")))
                .env("STOP", out_dir.path().join("stop"))
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    // The replays go in at varied moments: some while their original is in flight, most after
    // it was completed (exact copies: same body, message id and envelope).
    let replays = copies.len();
    for (index, copy) in copies.into_iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(100 + 150 * (index as u64 % 4))).await;
        raw.send(&queue_name, copy).await.unwrap();
    }

    // Wait until every legitimate message is handled (or time is up), then stop the consumers.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let handled = loop {
        let handled = read_handled(out_dir.path());
        let distinct: BTreeSet<&String> = handled.keys().collect();
        if distinct.len() >= MESSAGES || std::time::Instant::now() > deadline {
            break handled;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // Let the replays be judged, then stop.
    tokio::time::sleep(Duration::from_secs(12)).await;
    std::fs::write(out_dir.path().join("stop"), b"stop").unwrap();
    for mut consumer in consumers {
        assert!(
            consumer.wait().unwrap().success(),
            "a consumer process failed"
        );
    }
    let handled = {
        let mut latest = read_handled(out_dir.path());
        for (body, count) in handled {
            latest.entry(body).or_insert(count);
        }
        latest
    };
    let twice: Vec<_> = handled.iter().filter(|(_, count)| **count > 1).collect();
    assert!(twice.is_empty(), "handled more than once: {twice:?}");
    let missing: Vec<_> = sent
        .iter()
        .filter(|body| !handled.contains_key(*body))
        .collect();
    assert!(missing.is_empty(), "never handled: {missing:?}");
    let mut refused = Vec::new();
    loop {
        let dead = raw
            .receive_dead_letters(&queue_name, 10, Duration::from_secs(1))
            .await
            .unwrap();
        if dead.is_empty() {
            break;
        }
        for message in dead {
            refused.push(message.delivery.dead_letter.clone().unwrap().reason);
            raw.complete(&message.receipt).await.unwrap();
        }
    }
    println!(
        "3 processes: {} messages handled once each, {replays} replays sent, refused: {refused:?}",
        handled.len()
    );
    assert!(replays > 0, "the attacker sent replays");
    assert_eq!(refused.len(), replays, "every replay refused: {refused:?}");
    assert!(
        refused.iter().all(|reason| reason == "rejected: replay"),
        "{refused:?}"
    );
    std::fs::remove_file(&keys).unwrap();
}

/// Bodies handled, with how many times, over every consumer's output file.
fn read_handled(dir: &std::path::Path) -> BTreeMap<String, usize> {
    let mut handled = BTreeMap::new();
    for index in 0..3 {
        let text =
            std::fs::read_to_string(dir.join(format!("consumer-{index}.txt"))).unwrap_or_default();
        for line in text.lines() {
            *handled.entry(line.to_owned()).or_insert(0) += 1;
        }
    }
    handled
}

/// One consumer process: a processor over the SQS queue with the Redis replay store, writing
/// each handled body to its file, until the parent says stop.
async fn run_consumer_process() {
    let var = |name: &str| std::env::var(name).unwrap();
    let provider = queue_sqs::SqsProvider::for_local_server(
        &var("SQS_ENDPOINT"),
        &queue_sqs::SqsConfig::new(),
    )
    .unwrap();
    let url = SecretString::from(var("REDIS_URL"));
    let store = RedisReplayStore::connect(
        &url,
        RedisStoreOptions::default().with_prefix(var("REDIS_PREFIX")),
    )
    .await
    .unwrap();
    let security = Security::from_source(Arc::new(queue_runtime::keys::FileKeys::new(var("KEYS"))))
        .with_replay_store(Arc::new(store));
    let client =
        QueueClient::new(Arc::new(provider) as Arc<dyn QueueProvider>).with_security(security);
    let out = var("OUT");
    let handler = move |message: ReceivedMessage, _: HandlerContext| {
        let out = out.clone();
        async move {
            // Long enough for copies to overlap with the original's handling.
            tokio::time::sleep(Duration::from_millis(200)).await;
            use std::io::Write;
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&out)
                .unwrap();
            // One write per line: `writeln!` writes the body and the newline separately, and
            // the process's other tasks append to the same file between the two.
            let line = format!("{}\n", String::from_utf8_lossy(message.body()));
            file.write_all(line.as_bytes()).unwrap();
            Outcome::Complete
        }
    };
    let shutdown = CancellationToken::new();
    let processor = Processor::new(client, QueueName::new(var("QUEUE")).unwrap(), handler)
        .with_options(ProcessorOptions::default().with_max_concurrency(4));
    let running = tokio::spawn(processor.run(shutdown.clone()));
    let stop = std::path::PathBuf::from(var("STOP"));
    while !stop.exists() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    shutdown.cancel();
    running.await.unwrap().unwrap();
}
