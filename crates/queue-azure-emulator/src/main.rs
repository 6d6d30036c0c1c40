//! `queue-azure-emulator --config entities.toml [--bind 127.0.0.1] [--port 5672]`: serves the
//! queues of the file until interrupted. It prints the address, the connection string and a
//! `ready` line once it accepts connections.

// This program talks to a terminal: printing is its job.
#![allow(clippy::print_stdout)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use queue_azure_emulator::{Emulator, EmulatorConfig};

const HELP: &str = "\
queue-azure-emulator: a Service Bus test broker (AMQP 1.0, plain, no authorization)

usage: queue-azure-emulator --config <entities.toml> [--bind <ip>] [--port <port>]
                            [--answer-delay <ms>] [--verbose]

  --config <file>   the queues to serve (see the crate's README for the format)
  --bind <ip>       the address to listen on (default 127.0.0.1; anything but loopback
                    exposes an unauthenticated broker)
  --port <port>     the port (default 5672; 0 picks a free one)
  --answer-delay <ms>
                    wait this long before taking in each message or request a client
                    transfers, like a namespace across a network (overrides the file's
                    emulator.answer_delay; see the README for why the tests use 10)
  --verbose         log connections and protocol errors
  --help            this text
";

#[derive(Debug, PartialEq, Eq)]
struct Options {
    config: PathBuf,
    address: SocketAddr,
    answer_delay: Option<Duration>,
    verbose: bool,
}

fn parse(args: &[String]) -> Result<Option<Options>, String> {
    let mut config = None;
    let mut ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut port: u16 = 5672;
    let mut verbose = false;
    let mut answer_delay = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "--config" => config = Some(PathBuf::from(value("--config")?)),
            "--bind" => {
                let text = value("--bind")?;
                ip = text
                    .parse()
                    .map_err(|_| format!("--bind: {text:?} is not an IP address"))?;
            }
            "--port" => {
                let text = value("--port")?;
                port = text
                    .parse()
                    .map_err(|_| format!("--port: {text:?} is not a port number"))?;
            }
            "--answer-delay" => {
                let text = value("--answer-delay")?;
                let millis: u64 = text.parse().map_err(|_| {
                    format!("--answer-delay: {text:?} is not a number of milliseconds")
                })?;
                answer_delay = Some(Duration::from_millis(millis));
            }
            "--verbose" => verbose = true,
            "--help" | "-h" => return Ok(None),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let config = config.ok_or("--config <entities.toml> is required")?;
    Ok(Some(Options {
        config,
        address: SocketAddr::new(ip, port),
        answer_delay,
        verbose,
    }))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match parse(&args) {
        Ok(Some(options)) => options,
        Ok(None) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("queue-azure-emulator: {error}\n\n{HELP}");
            return ExitCode::FAILURE;
        }
    };
    let level = if options.verbose {
        tracing::Level::DEBUG
    } else {
        tracing::Level::WARN
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("queue-azure-emulator: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("queue-azure-emulator: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(options: Options) -> Result<(), Box<dyn std::error::Error>> {
    let mut config = EmulatorConfig::from_file(&options.config)?;
    if let Some(delay) = options.answer_delay {
        config = config.with_answer_delay(delay);
        config.validate()?;
    }
    if !options.address.ip().is_loopback() {
        eprintln!(
            "queue-azure-emulator: warning: listening on {}, not loopback: anyone who can reach \
             it can use every queue (there is no authorization)",
            options.address.ip()
        );
    }
    let queues: Vec<&str> = config.queues().iter().map(|queue| queue.name()).collect();
    let emulator = Emulator::start(config.clone(), options.address).await?;
    println!(
        "queue-azure-emulator listening on {} (queues: {})",
        emulator.local_addr(),
        queues.join(", ")
    );
    println!("connection string: {}", emulator.connection_string());
    println!("ready");
    tokio::signal::ctrl_c().await?;
    emulator.stop().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn arguments_parse() {
        let options = parse(&args("--config q.toml --port 0 --bind 127.0.0.1"))
            .unwrap()
            .unwrap();
        assert_eq!(options.config, PathBuf::from("q.toml"));
        assert_eq!(options.address, "127.0.0.1:0".parse().unwrap());
        assert!(!options.verbose);
        assert_eq!(options.answer_delay, None);
        let delayed = parse(&args("--config q.toml --answer-delay 10"))
            .unwrap()
            .unwrap();
        assert_eq!(delayed.answer_delay, Some(Duration::from_millis(10)));
        let defaults = parse(&args("--config q.toml")).unwrap().unwrap();
        assert_eq!(defaults.address.port(), 5672);
        assert_eq!(parse(&args("--help")).unwrap(), None);
        for bad in [
            "",
            "--port 99999 --config q",
            "--bind nowhere --config q",
            "--config",
            "--colour red",
            "--config q --answer-delay soon",
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad}");
        }
    }
}
