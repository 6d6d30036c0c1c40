//! A real SQS server for the tests: moto's server (from PyPI), installed into a virtual
//! environment under `.xtask/moto-venv` the first time it is needed, started on a free loopback
//! port, and stopped when the guard is dropped.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The moto release the suite is known to pass against.
const MOTO: &str = "moto[server]==5.2.5";
/// The variable the SQS tests read the endpoint from (`queue_sqs::admin::TEST_SERVER_VARIABLE`).
const ENDPOINT_VARIABLE: &str = "QUEUE_RUNTIME_SQS_TEST_ENDPOINT";
/// Tells the SQS tests a server was promised, so a missing endpoint fails them instead of
/// skipping (`queue_sqs::admin::REQUIRE_TEST_SERVER_VARIABLE`).
const REQUIRE_VARIABLE: &str = "QUEUE_RUNTIME_REQUIRE_SQS";
/// How long moto may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running moto server; dropping it stops the server.
#[derive(Debug)]
pub(crate) struct MotoServer {
    child: Child,
    endpoint: String,
}

impl MotoServer {
    /// Installs moto if needed and starts it on a free loopback port.
    pub(crate) fn start(root: &Path) -> Result<MotoServer> {
        let server = installed_server(root)?;
        let port = free_port()?;
        let log_path = crate::xtask_dir(root).join("moto.log");
        let log = File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        println!(
            "$ {} -H 127.0.0.1 -p {port}  (log: {})",
            server.display(),
            log_path.display()
        );
        let child = Command::new(&server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("cannot share the moto log")?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", server.display()))?;
        let mut moto = MotoServer {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        moto.wait_until_listening(port, &log_path)?;
        Ok(moto)
    }

    /// The variables that point the SQS tests at this server.
    pub(crate) fn test_env(&self) -> [(&'static str, &str); 2] {
        [(ENDPOINT_VARIABLE, &self.endpoint), (REQUIRE_VARIABLE, "1")]
    }

    fn wait_until_listening(&mut self, port: u16, log: &Path) -> Result<()> {
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let started = Instant::now();
        while started.elapsed() < START_TIMEOUT {
            if let Some(status) = self.child.try_wait().context("cannot watch moto")? {
                bail!("moto exited at start ({status}); see {}", log.display());
            }
            if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                println!("moto is listening on {}", self.endpoint);
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        bail!(
            "moto did not listen on port {port} within {START_TIMEOUT:?}; see {}",
            log.display()
        )
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        // Best effort: the server is ours alone and holds nothing worth a graceful stop.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `moto_server` from the project's virtual environment, created and filled when missing.
fn installed_server(root: &Path) -> Result<PathBuf> {
    let venv = crate::xtask_dir(root).join("moto-venv");
    let server = venv.join("bin").join("moto_server");
    let marker = venv.join(format!(".installed-{}", MOTO.replace(['[', ']', '='], "_")));
    if server.exists() && marker.exists() {
        return Ok(server);
    }
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let venv_text = venv.to_str().context("the workspace path is not UTF-8")?;
    crate::run::run(root, &python, &["-m", "venv", venv_text], &[]).context(
        "cannot create a Python virtual environment for moto (on Debian: apt-get install \
         python3-venv)",
    )?;
    let pip = venv.join("bin").join("pip");
    let pip = pip.to_str().context("the workspace path is not UTF-8")?;
    crate::run::run(
        root,
        pip,
        &["install", "--quiet", "--disable-pip-version-check", MOTO],
        &[],
    )
    .context("cannot install moto from PyPI")?;
    File::create(&marker).with_context(|| format!("cannot write {}", marker.display()))?;
    Ok(server)
}

/// A port nobody listens on now (the OS picks it; the server binds it a moment later).
pub(crate) fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("no free loopback port")?;
    Ok(listener.local_addr().context("no local address")?.port())
}
