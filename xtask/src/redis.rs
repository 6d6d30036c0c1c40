//! A real Redis for the shared replay guard's tests: Debian's `redis-server` (installed with
//! apt-get when missing and this runs as root), started on a free loopback port with nothing
//! persisted, and stopped when the guard is dropped.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The variable the Redis tests read the server's URL from.
const URL_VARIABLE: &str = "QUEUE_RUNTIME_REDIS_TEST_URL";
/// Tells the Redis tests a server was promised: a missing URL fails them instead of skipping.
const REQUIRE_VARIABLE: &str = "QUEUE_RUNTIME_REQUIRE_REDIS";
/// How long Redis may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running Redis; dropping it stops the server.
#[derive(Debug)]
pub(crate) struct RedisServer {
    child: Child,
    url: String,
}

impl RedisServer {
    /// Installs Redis if needed and starts it on a free loopback port.
    pub(crate) fn start(root: &Path) -> Result<RedisServer> {
        let server = installed_server(root)?;
        let port = crate::moto::free_port()?;
        let log_path = crate::xtask_dir(root).join("redis.log");
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let port_text = port.to_string();
        // Loopback only, no persistence, no protected-mode surprises, one database is enough.
        let args = [
            "--bind",
            "127.0.0.1",
            "--port",
            &port_text,
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
        ];
        println!(
            "$ {server} {}  (log: {})",
            args.join(" "),
            log_path.display()
        );
        let child = Command::new(&server)
            .args(args)
            .current_dir(crate::xtask_dir(root))
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("cannot share the redis log")?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {server}"))?;
        let mut redis = RedisServer {
            child,
            url: format!("redis://127.0.0.1:{port}"),
        };
        redis.wait_until_listening(port, &log_path)?;
        Ok(redis)
    }

    /// The variables that point the Redis tests at this server.
    pub(crate) fn test_env(&self) -> [(&'static str, &str); 2] {
        [(URL_VARIABLE, &self.url), (REQUIRE_VARIABLE, "1")]
    }

    fn wait_until_listening(&mut self, port: u16, log: &Path) -> Result<()> {
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let started = Instant::now();
        while started.elapsed() < START_TIMEOUT {
            if let Some(status) = self.child.try_wait().context("cannot watch redis")? {
                bail!("redis exited at start ({status}); see {}", log.display());
            }
            if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                println!("redis is listening on {}", self.url);
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "redis did not listen on port {port} within {START_TIMEOUT:?}; see {}",
            log.display()
        )
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // Nothing is persisted: killing it loses nothing the tests need.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `redis-server` from the PATH; installed from Debian's packages when missing (as root).
fn installed_server(root: &Path) -> Result<String> {
    const SERVER: &str = "redis-server";
    let found = || {
        Command::new(SERVER)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    if found() {
        return Ok(SERVER.to_owned());
    }
    println!("redis-server is not installed; installing Debian's package");
    crate::run::run(
        root,
        "apt-get",
        &[
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            "redis-server",
        ],
        &[("DEBIAN_FRONTEND", "noninteractive")],
    )
    .context(
        "cannot install redis-server (as root: apt-get install redis-server; or put a \
         redis-server on the PATH)",
    )?;
    if !found() {
        bail!("redis-server was installed but does not run");
    }
    Ok(SERVER.to_owned())
}
