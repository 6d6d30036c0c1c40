//! `queue-runtime check`: the configuration, the connection, every declared queue, the keys.

use anyhow::Result;
use console::style;
use queue_runtime::QueueClient;
use serde::Serialize;

use super::{Done, explain, load};
use crate::cli::Cli;
use crate::output::{Output, write_line};

#[derive(Serialize)]
struct Report {
    ok: bool,
    provider: Option<&'static str>,
    sealed: bool,
    problems: Vec<Problem>,
}

#[derive(Serialize)]
struct Problem {
    path: String,
    reason: String,
}

pub(super) async fn run(cli: &Cli, output: Output) -> Result<Done> {
    let mut report = Report {
        ok: false,
        provider: None,
        sealed: false,
        problems: Vec::new(),
    };
    match load(cli) {
        Err(error) => {
            report.problems = error
                .problems()
                .iter()
                .map(|problem| Problem {
                    path: problem.path.clone(),
                    reason: problem.reason.clone(),
                })
                .collect();
        }
        Ok(config) => {
            report.provider = Some(config.provider.name());
            report.sealed = config.security.is_some();
            // Connecting checks the credentials, every declared queue (that it exists, and
            // has sessions as declared), reads the key source once and reaches the replay
            // store: each failure is one problem here.
            match QueueClient::connect(&config).await {
                Ok(client) => {
                    let _ = client.close().await;
                }
                Err(error) => report.problems.push(Problem {
                    path: config.provider.name().to_owned(),
                    reason: explain(&error),
                }),
            }
        }
    }
    report.ok = report.problems.is_empty();
    output.emit(&report, || {
        for problem in &report.problems {
            write_line(&format!(
                "{} {}: {}",
                style("✗").red(),
                problem.path,
                problem.reason
            ));
        }
        if let Some(provider) = report.provider
            && report.ok
        {
            write_line(&format!(
                "{} {provider}: configuration valid, connected, declared queues present{}",
                style("✓").green(),
                if report.sealed { ", keys readable" } else { "" }
            ));
        }
    });
    if report.ok {
        output.summary(true, "check: ok");
        Ok(Done::Ok)
    } else {
        output.summary(
            false,
            &format!("check: {} problem(s)", report.problems.len()),
        );
        Ok(Done::Failed)
    }
}
