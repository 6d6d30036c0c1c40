//! Our Service Bus emulator for the tests (`crates/queue-azure-emulator`), and Microsoft's Python
//! SDK as its judge: the emulator is built once, started on a free loopback port and stopped
//! when the guard is dropped; `azure-servicebus` is installed from PyPI into
//! `.xtask/servicebus-venv` the first time, and runs `judge/scenario.py` against it.

use std::fs::File;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The SDK release the scenario is known to pass against (the issue asks for >= 7.15.0: it
/// waits for settlement echoes and pads omitted trailing fields).
const AZURE_SERVICEBUS: &str = "azure-servicebus==7.15.0";
/// The variable that hands the emulator's connection string to tests.
pub(crate) const CONNECTION_STRING_VARIABLE: &str = "QUEUE_RUNTIME_SERVICEBUS_EMULATOR";
/// How long the emulator may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// The emulator crate, relative to the workspace root.
const CRATE: &str = "crates/queue-azure-emulator";

/// A running emulator; dropping it stops it.
#[derive(Debug)]
pub(crate) struct ServiceBusEmulator {
    child: Child,
    connection_string: String,
}

impl ServiceBusEmulator {
    /// Builds the emulator and starts it with every entity the judge and the Azure suites use
    /// (`judge/entities.toml` and `crates/queue-azure/emulator-entities.toml`, written together
    /// into `.xtask/servicebus-entities.toml`), on port 5672 of a free loopback address.
    pub(crate) fn start(root: &Path) -> Result<ServiceBusEmulator> {
        crate::run::cargo(
            root,
            &[
                "build",
                "--quiet",
                "-p",
                "queue-azure-emulator",
                "--bin",
                "queue-azure-emulator",
            ],
            &[],
        )?;
        let binary = crate::run::target_directory(root)?
            .join("debug")
            .join("queue-azure-emulator");
        Self::start_built(root, &binary)
    }

    /// [`start`](Self::start) with an emulator executable already built (by the workspace's
    /// test build, which builds it for the emulator's own tests: building it again alone would
    /// compile its dependencies a second time under other features).
    pub(crate) fn start_built(root: &Path, binary: &Path) -> Result<ServiceBusEmulator> {
        let entities = entities_file(root)?;
        let log_path = crate::xtask_dir(root).join("servicebus-emulator.log");
        let log = File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let entities_text = entities
            .to_str()
            .context("the workspace path is not UTF-8")?;
        let address = free_loopback_address()?.to_string();
        let port = AMQP_PORT.to_string();
        let answer_delay = ANSWER_DELAY_MS.to_string();
        let args = [
            "--config",
            entities_text,
            "--bind",
            &address,
            "--port",
            &port,
            "--answer-delay",
            &answer_delay,
            "--verbose",
        ];
        println!(
            "$ {} {}  (log: {})",
            binary.display(),
            args.join(" "),
            log_path.display()
        );
        let child = Command::new(binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("cannot share the emulator log")?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let mut emulator = ServiceBusEmulator {
            child,
            connection_string: String::new(),
        };
        emulator.connection_string = emulator.wait_until_ready(&log_path)?;
        Ok(emulator)
    }

    /// The connection string of this emulator
    /// (`Endpoint=sb://127.x.y.z:5672;...;UseDevelopmentEmulator=true`).
    pub(crate) fn connection_string(&self) -> &str {
        &self.connection_string
    }

    /// Waits for the `ready` line the emulator prints once it accepts connections, and reads
    /// its connection string from the log (the port is the one the system picked).
    fn wait_until_ready(&mut self, log: &Path) -> Result<String> {
        let started = Instant::now();
        while started.elapsed() < START_TIMEOUT {
            if let Some(status) = self.child.try_wait().context("cannot watch the emulator")? {
                bail!(
                    "the emulator exited at start ({status}); see {}",
                    log.display()
                );
            }
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if text.lines().any(|line| line == "ready") {
                let connection_string = text
                    .lines()
                    .find_map(|line| line.strip_prefix("connection string: "))
                    .context("the emulator printed no connection string")?
                    .to_owned();
                println!("the Service Bus emulator is ready: {connection_string}");
                return Ok(connection_string);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "the emulator was not ready within {START_TIMEOUT:?}; see {}",
            log.display()
        )
    }
}

impl Drop for ServiceBusEmulator {
    fn drop(&mut self) {
        // Best effort: the emulator is ours alone and keeps nothing.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How long the emulator waits before answering a transfer, in milliseconds: Service Bus
/// answers from across a network, and azservicebus 0.25 (fe2o3-amqp 0.14.1) loses the outcome
/// of a transfer answered before it has recorded it, which an answer from loopback can be
/// when the machine is busy (see the emulator's README).
const ANSWER_DELAY_MS: u32 = 10;

/// The AMQP port. azservicebus 0.25 drops the port of a connection string's endpoint and always
/// dials 5672 (`build_connection_resource` sets it to none), so the emulator must listen there.
const AMQP_PORT: u16 = 5672;

/// A loopback address whose port 5672 is free. All of 127.0.0.0/8 is loopback on Linux, so each
/// run (and each engineer's run on a shared machine) takes an address of its own rather than
/// fighting over 127.0.0.1:5672.
fn free_loopback_address() -> Result<Ipv4Addr> {
    let seed = std::process::id();
    for attempt in 0..64u32 {
        let value = seed
            .wrapping_mul(2_654_435_761)
            .wrapping_add(attempt.wrapping_mul(40_503));
        let [_, b, c, d] = value.to_be_bytes();
        let address = Ipv4Addr::new(127, b, c, d.max(2));
        if TcpListener::bind((address, AMQP_PORT)).is_ok() {
            return Ok(address);
        }
    }
    bail!("no loopback address with a free port {AMQP_PORT} found in 64 attempts")
}

/// Every entity of the judge and of the Azure suites in one file, so one emulator serves both.
fn entities_file(root: &Path) -> Result<PathBuf> {
    let sources = [
        root.join(CRATE).join("judge").join("entities.toml"),
        root.join("crates/queue-azure/emulator-entities.toml"),
    ];
    let mut text = String::new();
    for source in &sources {
        text.push_str(
            &std::fs::read_to_string(source)
                .with_context(|| format!("cannot read {}", source.display()))?,
        );
        text.push('\n');
    }
    let path = crate::xtask_dir(root).join("servicebus-entities.toml");
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Whether CI runs us: there, a judge that cannot run fails instead of skipping.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value == "true" || value == "1")
}

/// The judge's Python (from its venv, installed on first use), or `None` when Python cannot
/// run here: that fails in CI and says SKIPPED, naming `what`, elsewhere.
fn judge_python(root: &Path, what: &str) -> Result<Option<PathBuf>> {
    if let Err(reason) = crate::python::available() {
        if in_ci() {
            bail!("{what} needs Python with venv, and CI=true: {reason}");
        }
        println!("SKIPPED: {what} because {reason}; nothing was checked against the emulator");
        return Ok(None);
    }
    let venv = crate::python::venv(root, "servicebus-venv", AZURE_SERVICEBUS)?;
    Ok(Some(venv.join("bin").join("python")))
}

/// A path as the `&str` a command line takes.
fn text(path: &Path) -> Result<&str> {
    path.to_str().context("the workspace path is not UTF-8")
}

/// The longest the judge's scenario, or one half of the interop, may run (they take seconds to
/// a minute; past this, something hangs).
const JUDGE_LIMIT: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// Runs Microsoft's Python SDK scenario against `emulator`. Without Python (or its venv module)
/// it fails in CI and says SKIPPED elsewhere.
pub(crate) fn judge(root: &Path, emulator: &ServiceBusEmulator) -> Result<()> {
    let what = "the Service Bus judge (Microsoft's Python SDK against the emulator)";
    let Some(python) = judge_python(root, what)? else {
        return Ok(());
    };
    let scenario: PathBuf = root.join(CRATE).join("judge").join("scenario.py");
    crate::run::run_within(
        root,
        text(&python)?,
        &[text(&scenario)?],
        &[
            (CONNECTION_STRING_VARIABLE, emulator.connection_string()),
            ("PYTHONDONTWRITEBYTECODE", "1"),
        ],
        Some(JUDGE_LIMIT),
    )
    .context("Microsoft's Python SDK failed against the emulator (the steps above say which)")
}

/// Cross-client interop through `emulator`: Python sends a message with every field
/// (`judge/interop.py send`), queue-azure receives and checks it and sends its own
/// (`rust_half`: the `interop` test of queue-azure, with the test connection variable named
/// `test_variable`), and Python checks that one (`interop.py check`).
pub(crate) fn interop(
    root: &Path,
    emulator: &ServiceBusEmulator,
    rust_half: &crate::run::TestBinary,
    test_variable: &str,
) -> Result<()> {
    let what = "the interop of Microsoft's Python SDK and queue-azure";
    let Some(python) = judge_python(root, what)? else {
        return Ok(());
    };
    let script: PathBuf = root.join(CRATE).join("judge").join("interop.py");
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let run_id = format!("{}-{started}", std::process::id());
    let connection_string = emulator.connection_string();
    let python_half = |half: &str| {
        crate::run::run_within(
            root,
            text(&python)?,
            &[text(&script)?, half, &run_id, connection_string],
            &[("PYTHONDONTWRITEBYTECODE", "1")],
            Some(JUDGE_LIMIT),
        )
    };
    python_half("send").context("Python could not send its interop message")?;
    crate::run::run_within(
        &rust_half.dir,
        text(&rust_half.program)?,
        &["--ignored", "--nocapture"],
        &[
            (test_variable, connection_string),
            ("QUEUE_RUNTIME_INTEROP_RUN", &run_id),
        ],
        Some(JUDGE_LIMIT),
    )
    .context("queue-azure did not read Python's message as sent (or could not answer)")?;
    python_half("check").context("Python did not read queue-azure's message as sent")
}
