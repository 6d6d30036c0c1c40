//! Project automation. `cargo xtask help` lists the commands; `cargo xtask ci` is what CI runs.
//!
//! Every command it runs is echoed first (`$ cargo ...`), so a failure can be reproduced by hand.

// This program talks to a terminal: printing is its job.
#![allow(clippy::print_stdout)]

mod deny;
mod moto;
mod python;
mod redis;
mod run;
mod servicebus;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::run::{cargo, workspace_root};

const HELP: &str = "\
cargo xtask <command>

  ci                      everything CI checks, in order: fmt, clippy, test, quickstart, doc, deny
  fmt [--check]           format the workspace (or only check it)
  clippy                  clippy on every package, all targets, warnings denied; queue-runtime
                          again with each provider feature alone; then checks that the
                          quickstart's build (the default members) compiles no cloud SDK
  test                    every test of the workspace (with a local moto SQS server and a
                          Redis, installed from PyPI and Debian when missing, and our
                          Service Bus emulator), the Azure Service Bus suites beside them
                          (against the emulator, or the namespace of
                          QUEUE_RUNTIME_TEST_AZURE_CONNECTION_STRING when set), then the
                          doctests, then the Service Bus judge (below), then the interop of
                          Python's SDK and queue-azure both ways (judge/interop.py)
  servicebus-judge        Microsoft's Python SDK (azure-servicebus, installed from PyPI into
                          .xtask/servicebus-venv) runs its scenario against our Service Bus
                          emulator, which the xtask builds and starts on port 5672 of a free
                          loopback address;
                          without Python it fails when CI=true, else says SKIPPED
  quickstart              run the quickstart, github_bot and public_keys examples
  doc                     build the docs with warnings denied
  deny                    cargo deny: licenses, bans, sources, advisories (offline snapshot)
  conformance --provider memory|sqs|azure
                          the conformance suite against one provider (sqs: against a
                          local moto server the xtask installs and starts; azure: against
                          our emulator, or QUEUE_RUNTIME_TEST_AZURE_CONNECTION_STRING when set)
  bench [criterion args]  the benchmarks (criterion's short runs by default), with moto, Redis
                          and our Service Bus emulator running
  fuzz [seconds]          fuzz the envelope's open/peek_header (nightly; default 60 s)
  help                    this text
";

/// One step of `cargo xtask ci`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Fmt,
    Clippy,
    Test,
    Quickstart,
    Doc,
    Deny,
}

impl Step {
    const CI: [Step; 6] = [
        Step::Fmt,
        Step::Clippy,
        Step::Test,
        Step::Quickstart,
        Step::Doc,
        Step::Deny,
    ];

    fn name(self) -> &'static str {
        match self {
            Step::Fmt => "fmt --check",
            Step::Clippy => "clippy",
            Step::Test => "test",
            Step::Quickstart => "quickstart",
            Step::Doc => "doc",
            Step::Deny => "deny",
        }
    }

    fn run(self, root: &Path) -> Result<()> {
        match self {
            Step::Fmt => fmt(root, true),
            Step::Clippy => clippy(root),
            Step::Test => test(root),
            Step::Quickstart => quickstart(root),
            Step::Doc => doc(root),
            Step::Deny => deny::check(root),
        }
    }
}

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Command {
    Ci,
    Step(Step),
    Fmt { check: bool },
    Conformance { provider: String },
    ServiceBusJudge,
    Bench { args: Vec<String> },
    Fuzz { seconds: u64 },
    Help,
}

/// The providers whose conformance suite exists in this workspace, with the test that runs it.
/// Each provider's conformance test: (provider, package, test target).
const CONFORMANCE: &[(&str, &str, &str)] = &[
    ("memory", "queue-conformance", "memory"),
    ("sqs", "queue-sqs", "conformance"),
    ("azure", "queue-azure", "conformance"),
];

/// The variable naming the Service Bus namespace (or emulator) the live Azure tests use.
const AZURE_VARIABLE: &str = "QUEUE_RUNTIME_TEST_AZURE_CONNECTION_STRING";

/// The Azure tests that need a namespace: `#[ignore]`d in a plain run, so that they are never
/// counted as passed without one. (package, test target).
const AZURE_LIVE_TESTS: &[(&str, &str)] = &[
    ("queue-azure", "conformance"),
    ("queue-conformance", "azure"),
    ("queue-runtime-cli", "servicebus"),
];

/// The longest the workspace's tests may run (about 20 minutes on a 2-core machine beside the
/// Service Bus suites); past it the run is stopped, naming the test executable still running,
/// so that a hang fails in time to be read instead of running CI into its own timeout.
const WORKSPACE_TESTS_LIMIT: Duration = Duration::from_secs(40 * 60);

/// The same for each Service Bus suite (the conformance suite takes about 6 minutes) and for
/// the doctests (about 2).
const SUITE_LIMIT: Duration = Duration::from_secs(20 * 60);

/// The feature sets of queue-runtime checked on their own (all of them together are checked
/// with every package).
const FACADE_FEATURE_SETS: &[&str] = &["memory", "sqs", "azure"];

/// Crates the default build of the facade must not compile, its tests and examples included (the
/// quickstart compiles the facade's dev-dependencies): the cloud SDKs come only with their
/// features, and criterion and OpenTelemetry's SDK only with the `tests/` member.
const NOT_IN_DEFAULT_BUILD: &[&str] = &[
    "azservicebus",
    "azure_core",
    "aws-sdk-sqs",
    "aws-config",
    "criterion",
    "opentelemetry_sdk",
];

/// The Service Bus namespace the caller named in its variable, if any.
fn azure_namespace() -> Option<String> {
    std::env::var(AZURE_VARIABLE)
        .ok()
        .filter(|value| !value.trim().is_empty())
}

fn azure_configured() -> bool {
    azure_namespace().is_some()
}

fn parse(args: &[String]) -> Result<Command> {
    let Some((command, rest)) = args.split_first() else {
        return Ok(Command::Help);
    };
    let no_arguments = |command: Command| {
        if rest.is_empty() {
            Ok(command)
        } else {
            bail!("`{}` takes no arguments, got {rest:?}", args[0])
        }
    };
    match command.as_str() {
        "ci" => no_arguments(Command::Ci),
        "fmt" => match rest {
            [] => Ok(Command::Fmt { check: false }),
            [flag] if flag == "--check" => Ok(Command::Fmt { check: true }),
            _ => bail!("usage: cargo xtask fmt [--check]"),
        },
        "clippy" => no_arguments(Command::Step(Step::Clippy)),
        "test" => no_arguments(Command::Step(Step::Test)),
        "quickstart" => no_arguments(Command::Step(Step::Quickstart)),
        "doc" => no_arguments(Command::Step(Step::Doc)),
        "deny" => no_arguments(Command::Step(Step::Deny)),
        "servicebus-judge" => no_arguments(Command::ServiceBusJudge),
        "conformance" => {
            let provider = match rest {
                [flag, provider] if flag == "--provider" => provider.clone(),
                [] => "memory".to_owned(),
                _ => bail!("usage: cargo xtask conformance --provider <name>"),
            };
            if !CONFORMANCE.iter().any(|(name, _, _)| *name == provider) {
                let known: Vec<&str> = CONFORMANCE.iter().map(|(name, _, _)| *name).collect();
                bail!(
                    "no conformance suite for provider {provider:?} in this workspace; \
                     available: {}",
                    known.join(", ")
                );
            }
            Ok(Command::Conformance { provider })
        }
        "bench" => Ok(Command::Bench {
            args: rest.to_vec(),
        }),
        "fuzz" => match rest {
            [] => Ok(Command::Fuzz { seconds: 60 }),
            [seconds] => Ok(Command::Fuzz {
                seconds: seconds.parse().with_context(|| {
                    format!("`cargo xtask fuzz [seconds]`: not a number: {seconds:?}")
                })?,
            }),
            _ => bail!("usage: cargo xtask fuzz [seconds]"),
        },
        "help" | "--help" | "-h" => Ok(Command::Help),
        other => bail!("unknown command {other:?}\n\n{HELP}"),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse(&args).and_then(execute) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn execute(command: Command) -> Result<()> {
    let root = workspace_root()?;
    match command {
        Command::Help => {
            print!("{HELP}");
            Ok(())
        }
        Command::Ci => ci(&root),
        Command::Step(step) => step.run(&root),
        Command::Fmt { check } => fmt(&root, check),
        Command::Conformance { provider } => {
            let (_, package, test) = CONFORMANCE
                .iter()
                .find(|(name, _, _)| *name == provider)
                .context("provider checked while parsing")?;
            // The memory suite runs without a server; SQS runs on moto; Service Bus on the
            // namespace of its variable when set, else on our emulator.
            let moto = (provider == "sqs")
                .then(|| moto::MotoServer::start(&root))
                .transpose()?;
            let emulator = (provider == "azure" && !azure_configured())
                .then(|| servicebus::ServiceBusEmulator::start(&root))
                .transpose()?;
            let mut env: Vec<(&str, &str)> =
                moto.iter().flat_map(moto::MotoServer::test_env).collect();
            env.extend(
                emulator
                    .iter()
                    .map(|emulator| (AZURE_VARIABLE, emulator.connection_string())),
            );
            let mut args = vec!["test", "-p", package, "--test", test, "--", "--nocapture"];
            // The Azure suite is ignored in a plain run; here it is asked for.
            if provider == "azure" {
                args.push("--include-ignored");
            }
            cargo(&root, &args, &env)
        }
        Command::ServiceBusJudge => {
            let emulator = servicebus::ServiceBusEmulator::start(&root)?;
            servicebus::judge(&root, &emulator)
        }
        Command::Bench { args } => bench(&root, &args),
        Command::Fuzz { seconds } => fuzz(&root, seconds),
    }
}

fn ci(root: &Path) -> Result<()> {
    let mut timings: Vec<(Step, Duration, String)> = Vec::new();
    for step in Step::CI {
        println!("\n==> {}", step.name());
        let started = Instant::now();
        let outcome = step.run(root);
        // Disk after each step: a build that fills the disk fails in the linker with a signal
        // that does not say so (SIGBUS), and the timings are what the CI record keeps.
        timings.push((step, started.elapsed(), run::disk_use(&root.join("target"))));
        if let Err(error) = outcome {
            print_timings(&timings);
            return Err(error.context(format!("ci step `{}` failed", step.name())));
        }
    }
    print_timings(&timings);
    println!("ci: all steps passed");
    Ok(())
}

fn print_timings(timings: &[(Step, Duration, String)]) {
    println!("\nci timings:");
    for (step, elapsed, disk) in timings {
        println!(
            "  {:<12} {:>7.1} s   {disk}",
            step.name(),
            elapsed.as_secs_f64()
        );
    }
}

fn fmt(root: &Path, check: bool) -> Result<()> {
    let mut args = vec!["fmt", "--all"];
    if check {
        args.extend(["--", "--check"]);
    }
    cargo(root, &args, &[])
}

fn clippy(root: &Path) -> Result<()> {
    for package in run::workspace_packages(root)? {
        cargo(
            root,
            &[
                "clippy",
                "-p",
                &package,
                "--all-targets",
                "--all-features",
                "--",
                "-D",
                "warnings",
            ],
            &[],
        )?;
    }
    for provider in FACADE_FEATURE_SETS {
        // Users build one provider at a time: each alone must build without warnings too.
        cargo(
            root,
            &[
                "clippy",
                "-p",
                "queue-runtime",
                "--no-default-features",
                "--features",
                provider,
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
            &[],
        )?;
    }
    check_default_build(root)
}

/// Fails when what `cargo run --example quickstart` builds at the root (the workspace's default
/// members, with their dev-dependencies: queue-runtime with its default features) pulls in a
/// cloud SDK.
fn check_default_build(root: &Path) -> Result<()> {
    let tree = run::cargo_output(root, &["tree", "-e", "normal,dev", "--prefix", "none"])?;
    let pulled: Vec<&str> = NOT_IN_DEFAULT_BUILD
        .iter()
        .copied()
        .filter(|name| {
            tree.lines()
                .any(|line| line.starts_with(&format!("{name} ")))
        })
        .collect();
    if !pulled.is_empty() {
        bail!(
            "`cargo run --example quickstart` compiles {pulled:?}; keep cloud SDKs behind \
             features, and default-members in Cargo.toml to queue-runtime"
        );
    }
    println!(
        "the quickstart's build (the default members): no cloud SDK ({})",
        NOT_IN_DEFAULT_BUILD.join(", ")
    );
    Ok(())
}

/// Every test, with a local SQS server (moto), a Redis and our Service Bus emulator running for
/// the tests that need them; then the doctests and the Service Bus judge.
fn test(root: &Path) -> Result<()> {
    let moto = moto::MotoServer::start(root)?;
    let redis = redis::RedisServer::start(root)?;
    let servers: Vec<(&str, &str)> = moto
        .test_env()
        .into_iter()
        .chain(redis.test_env())
        .collect();
    // Every feature, so the optional providers of the facade (`sqs`) are tested too. Built
    // first, so that the Service Bus suites can run beside the rest from the same build, on the
    // emulator it built.
    let all = ["test", "--workspace", "--all-targets", "--all-features"];
    let binaries = run::cargo_build_tests(root, &all, &servers)?;
    let emulator_binary = run::built(
        &binaries,
        "queue-azure-emulator",
        "queue-azure-emulator",
        false,
    )
    .context("the test build made no queue-azure-emulator executable")?;
    let emulator = servicebus::ServiceBusEmulator::start_built(root, &emulator_binary.program)?;
    let namespace = azure_namespace();
    let service_bus = namespace
        .as_deref()
        .unwrap_or_else(|| emulator.connection_string());
    if namespace.is_some() {
        println!("the Azure Service Bus suites run against {AZURE_VARIABLE}, not the emulator");
    }
    std::thread::scope(|scope| {
        // They mostly wait on locks and sleeps, one scenario at a time: beside the rest, they
        // cost the run almost nothing.
        let azure = scope.spawn(|| azure_live_tests(root, &binaries, service_bus));
        let rest = run::cargo_within(root, &all, &servers, WORKSPACE_TESTS_LIMIT);
        let azure = azure
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the Service Bus suites' thread panicked")));
        rest.and(azure)
    })?;
    run::cargo_within(
        root,
        &["test", "--workspace", "--doc", "--all-features"],
        &[],
        SUITE_LIMIT,
    )?;
    servicebus::judge(root, &emulator)?;
    let interop = run::built(&binaries, "queue-azure", "interop", true)
        .context("the interop test of queue-azure was not built")?;
    servicebus::interop(root, &emulator, interop, AZURE_VARIABLE)
}

/// The Service Bus suites (`#[ignore]`d in a plain run, so that they never count as passed
/// without a broker) against `connection_string`, run from the executables of the workspace
/// build (`binaries`), one after the other; their output is kept in
/// `.xtask/servicebus-tests.log` and printed when they are done.
fn azure_live_tests(
    root: &Path,
    binaries: &[run::TestBinary],
    connection_string: &str,
) -> Result<()> {
    let log = xtask_dir(root).join("servicebus-tests.log");
    let mut failures = Vec::new();
    let mut output = String::new();
    // The tests share the fixed test queues: one at a time.
    let args = ["--ignored", "--nocapture", "--test-threads=1"];
    for (package, test) in AZURE_LIVE_TESTS {
        let name = format!("{package} --test {test}");
        let Some(binary) = run::built(binaries, package, test, true) else {
            output.push_str(&format!("{name}: not among the built tests\n"));
            failures.push(name);
            continue;
        };
        let started = Instant::now();
        let result = run::captured(
            &binary.dir,
            &binary.program,
            &args,
            &[(AZURE_VARIABLE, connection_string)],
            SUITE_LIMIT,
        );
        let took = started.elapsed();
        let (passed, text) = result.unwrap_or_else(|error| (false, format!("{error:#}")));
        output.push_str(&format!(
            "$ {} {} ({name}: {}; {took:.0?})\n{text}\n",
            binary.program.display(),
            args.join(" "),
            if passed { "passed" } else { "FAILED" }
        ));
        if !passed {
            failures.push(name);
        }
    }
    std::fs::write(&log, &output).with_context(|| format!("cannot write {}", log.display()))?;
    println!(
        "--- the Service Bus suites (log: {}) ---\n{output}",
        log.display()
    );
    if !failures.is_empty() {
        bail!("Service Bus suites failed: {}", failures.join(", "));
    }
    Ok(())
}

fn quickstart(root: &Path) -> Result<()> {
    cargo(root, &["run", "--example", "quickstart"], &[])?;
    // The secure path end to end: webhook check, sealing, sessions, refused attacks.
    cargo(root, &["run", "--example", "github_bot"], &[])?;
    // Public-key mode: a producer and a consumer from two configuration files.
    cargo(root, &["run", "--example", "public_keys"], &[])
}

fn doc(root: &Path) -> Result<()> {
    cargo(
        root,
        &["doc", "--workspace", "--no-deps", "--all-features"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    )
}

fn bench(root: &Path, extra: &[String]) -> Result<()> {
    let moto = moto::MotoServer::start(root)?;
    let redis = redis::RedisServer::start(root)?;
    // Service Bus: the namespace of its variable when set (cargo passes it on), else our emulator.
    let emulator = (!azure_configured())
        .then(|| servicebus::ServiceBusEmulator::start(root))
        .transpose()?;
    let servers: Vec<(&str, &str)> = moto
        .test_env()
        .into_iter()
        .chain(redis.test_env())
        .chain(
            emulator
                .iter()
                .map(|emulator| (AZURE_VARIABLE, emulator.connection_string())),
        )
        .collect();
    let mut args: Vec<&str> = vec!["bench", "--workspace", "--all-features", "--"];
    if extra.is_empty() {
        // Short runs by default: the machine is small and shared.
        args.extend(["--warm-up-time", "1", "--measurement-time", "3"]);
    } else {
        args.extend(extra.iter().map(String::as_str));
    }
    cargo(root, &args, &servers)
}

/// Runs the envelope fuzz target with cargo-fuzz (installed under `.xtask/tools` if missing).
/// New inputs go to `.xtask/fuzz-corpus/open`; the committed seeds in `fuzz/corpus/open` are
/// read, not written, so fuzzing leaves the repository clean. Crashes land in `fuzz/artifacts`.
fn fuzz(root: &Path, seconds: u64) -> Result<()> {
    let cargo_fuzz = run::installed_tool(root, "cargo-fuzz", "0.13.2", "cargo-fuzz")?;
    let work_corpus = xtask_dir(root).join("fuzz-corpus").join("open");
    std::fs::create_dir_all(&work_corpus)
        .with_context(|| format!("cannot create {}", work_corpus.display()))?;
    let work_corpus = work_corpus
        .to_str()
        .context("the workspace path is not UTF-8")?;
    let cargo_fuzz = cargo_fuzz
        .to_str()
        .context("the workspace path is not UTF-8")?;
    let max_time = format!("-max_total_time={seconds}");
    // cargo-fuzz needs nightly; the pinned toolchain stays the default for everything else.
    run::run(
        root,
        "rustup",
        &[
            "run",
            "nightly",
            cargo_fuzz,
            "fuzz",
            "run",
            "open",
            work_corpus,
            "fuzz/corpus/open",
            "--",
            &max_time,
        ],
        &[],
    )
}

/// Where project-local tools and data live (git-ignored).
fn xtask_dir(root: &Path) -> PathBuf {
    root.join(".xtask")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn commands_parse() {
        assert_eq!(parse(&args("")).unwrap(), Command::Help);
        assert_eq!(parse(&args("ci")).unwrap(), Command::Ci);
        assert_eq!(
            parse(&args("fmt --check")).unwrap(),
            Command::Fmt { check: true }
        );
        assert_eq!(
            parse(&args("conformance --provider memory")).unwrap(),
            Command::Conformance {
                provider: "memory".into()
            }
        );
        assert_eq!(
            parse(&args("bench --measurement-time 1")).unwrap(),
            Command::Bench {
                args: args("--measurement-time 1")
            }
        );
        assert_eq!(
            parse(&args("fuzz 5")).unwrap(),
            Command::Fuzz { seconds: 5 }
        );
        assert_eq!(
            parse(&args("servicebus-judge")).unwrap(),
            Command::ServiceBusJudge
        );
    }

    #[test]
    fn bad_commands_are_explained() {
        assert!(parse(&args("ci now")).is_err());
        assert!(parse(&args("fmt --fix")).is_err());
        assert!(parse(&args("servicebus-judge now")).is_err());
        let error = parse(&args("conformance --provider kafka")).unwrap_err();
        assert!(error.to_string().contains("available: memory"), "{error}");
        assert!(
            parse(&args("deploy"))
                .unwrap_err()
                .to_string()
                .contains("unknown command")
        );
    }

    #[test]
    fn ci_runs_every_step_once() {
        let names: Vec<&str> = Step::CI.iter().map(|step| step.name()).collect();
        assert_eq!(
            names,
            ["fmt --check", "clippy", "test", "quickstart", "doc", "deny"]
        );
    }
}
