//! One module per command; this one loads the configuration and dispatches.

mod check;
mod dlq;
mod keys;
mod peek;
mod send;
mod stats;

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{Context, Result};
use queue_runtime::core::{ErrorKind, QueueError, QueueName};
use queue_runtime::{ClientConfig, ConfigError, QueueClient};

use crate::cli::{Cli, Command, DlqCommand};
use crate::output::Output;

/// A command that ran to its end, with or without finding problems.
pub(crate) enum Done {
    Ok,
    /// It ran, and what it found is a failure (`check` found problems).
    Failed,
}

impl Done {
    pub(crate) fn exit_code(&self) -> ExitCode {
        match self {
            Done::Ok => ExitCode::SUCCESS,
            Done::Failed => ExitCode::from(1),
        }
    }
}

pub(crate) async fn run(cli: Cli) -> Result<Done> {
    let output = Output::new(cli.output);
    let client = match &cli.command {
        Command::Check => return check::run(&cli, output).await,
        Command::Keys(args) => return keys::run(&cli, args, output).await,
        _ => connect(&cli).await?,
    };
    let done = match &cli.command {
        Command::Peek(args) => peek::run(&client, args, output).await,
        Command::Send(args) => send::run(&client, args, output).await,
        Command::Stats(args) => stats::run(&client, args, output).await,
        Command::Dlq(DlqCommand::List(args)) => dlq::list(&client, args, output).await,
        Command::Dlq(DlqCommand::Replay(args)) => dlq::replay(&client, args, output).await,
        Command::Dlq(DlqCommand::Purge(args)) => dlq::purge(&client, args, output).await,
        // Run above, without a client.
        Command::Check | Command::Keys(_) => Ok(Done::Ok),
    };
    // Before the process ends: a Service Bus settle returns once it is handed to the
    // connection, and only a close waits for what is queued there to reach the broker. A
    // `dlq purge` that exited at once could report a removal the broker never received.
    let closed = client.close().await;
    let done = done?;
    closed
        .map_err(|error| anyhow::anyhow!(explain(&error)))
        .context("closing the connection failed: what this command settled may not have reached the broker (it is delivered again when its lock expires)")?;
    Ok(done)
}

/// The configuration: the file given, or the environment's.
pub(crate) fn load(cli: &Cli) -> std::result::Result<ClientConfig, ConfigError> {
    match &cli.config {
        Some(path) => ClientConfig::from_file(path),
        None => ClientConfig::from_env(),
    }
}

/// A client from the configuration; a configuration error lists every problem.
async fn connect(cli: &Cli) -> Result<QueueClient> {
    let config = load(cli).map_err(|error| anyhow::anyhow!("{error}"))?;
    QueueClient::connect(&config)
        .await
        .map_err(|error| anyhow::anyhow!(explain(&error)))
        .context("cannot connect")
}

/// Asks the person at the terminal to confirm `what`; without a terminal, refuses (scripts pass
/// `--yes`).
pub(crate) fn confirm(what: &str) -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        anyhow::bail!(
            "{what}: refusing without confirmation; pass --yes to confirm (no terminal to ask)"
        );
    }
    let mut stderr = std::io::stderr();
    write!(stderr, "{what}? Type yes to go on: ")?;
    stderr.flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(answer.trim().eq_ignore_ascii_case("yes"))
}

/// A queue name as the provider accepts it.
pub(crate) fn queue_name(client: &QueueClient, name: &str) -> Result<QueueName> {
    let queue = QueueName::new(name).map_err(|error| anyhow::anyhow!("{error}"))?;
    client
        .provider()
        .validate_queue_name(&queue)
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    Ok(queue)
}

/// An error in plain words, with what to do where there is something to do.
pub(crate) fn explain(error: &QueueError) -> String {
    let fix = match error.kind() {
        ErrorKind::Unsupported => "; the provider cannot do this (see its capabilities)",
        ErrorKind::NotFound => "; check the queue's name, and that it exists",
        ErrorKind::Unauthorized => "; check the credentials and their permissions",
        ErrorKind::Connection | ErrorKind::Timeout | ErrorKind::ServiceUnavailable => {
            "; check that the broker is reachable, then try again"
        }
        ErrorKind::Config => "; fix the configuration (queue-runtime check lists every problem)",
        _ => "",
    };
    format!("{error}{fix}")
}
