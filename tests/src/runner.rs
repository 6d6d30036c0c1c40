//! Running scenarios: one runtime per scenario, shaped by the fixture's time mode.

use std::future::Future;
use std::pin::Pin;

use crate::fixture::{Fixture, TimeMode};

/// How a scenario ended, when it did not fail (a failure panics with its message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every check held.
    Passed,
    /// The provider cannot do what the scenario checks, as its capabilities or fixture say.
    Skipped(String),
}

/// A boxed scenario future.
pub type ScenarioFuture<'a> = Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>;

/// A named scenario of the suite.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    /// The scenario's name (its function's name).
    pub name: &'static str,
    /// Runs it against a fixture.
    pub run: for<'a> fn(&'a dyn Fixture) -> ScenarioFuture<'a>,
}

fn runtime(mode: TimeMode) -> tokio::runtime::Runtime {
    let mut builder = match mode {
        TimeMode::Paused => {
            let mut builder = tokio::runtime::Builder::new_current_thread();
            builder.start_paused(true);
            builder
        }
        TimeMode::Real => tokio::runtime::Builder::new_multi_thread(),
    };
    builder.enable_all().build().expect("a tokio runtime")
}

/// Runs one scenario against a fixture made inside its runtime (so a fixture may start tasks or
/// read the clock while it is built). A skip prints one line `SKIPPED <name>: <reason>` to stderr;
/// a failure panics.
pub fn run_scenario<F: Fixture + 'static>(
    scenario: &Scenario,
    mode: TimeMode,
    make_fixture: impl Fn() -> F,
) -> Outcome {
    let outcome = runtime(mode).block_on(async {
        let fixture = make_fixture();
        assert_eq!(
            fixture.time(),
            mode,
            "the fixture runs in the time mode it declares"
        );
        if let Some(skip) = fixture.cannot_run(scenario.name) {
            return Outcome::Skipped(format!("fixture: {skip}"));
        }
        (scenario.run)(&fixture).await
    });
    if let Outcome::Skipped(reason) = &outcome {
        eprintln!("SKIPPED {}: {reason}", scenario.name);
    }
    outcome
}

/// The environment variable that narrows a run to some scenarios: their names, separated by
/// commas (for chasing one failure against a slow broker). Unset or empty: every scenario.
pub const ONLY_VARIABLE: &str = "QUEUE_RUNTIME_CONFORMANCE_ONLY";

/// Whether the scenario named `name` runs, as [`ONLY_VARIABLE`] says.
pub fn selected(name: &str) -> bool {
    match std::env::var(ONLY_VARIABLE) {
        Ok(only) if !only.trim().is_empty() => only.split(',').any(|wanted| wanted.trim() == name),
        _ => true,
    }
}

/// Runs every scenario in order and returns the names of those skipped (a failure panics).
pub fn run_all<F: Fixture + 'static>(
    mode: TimeMode,
    make_fixture: impl Fn() -> F,
) -> Vec<&'static str> {
    crate::SCENARIOS
        .iter()
        .filter(|scenario| selected(scenario.name))
        .filter_map(
            |scenario| match run_scenario(scenario, mode, &make_fixture) {
                Outcome::Passed => None,
                Outcome::Skipped(_) => Some(scenario.name),
            },
        )
        .collect()
}

/// Runs every scenario, `parallel` at a time on threads of their own (for network brokers, where
/// scenarios mostly wait), and returns the names of those skipped, sorted. Failures do not stop
/// the others: they are gathered and reported together in one panic at the end.
pub fn run_all_parallel<F: Fixture + 'static>(
    mode: TimeMode,
    make_fixture: impl Fn() -> F + Sync,
    parallel: usize,
) -> Vec<&'static str> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let next = AtomicUsize::new(0);
    let skipped = Mutex::new(Vec::new());
    let failed = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..parallel.max(1) {
            scope.spawn(|| {
                while let Some(scenario) =
                    crate::SCENARIOS.get(next.fetch_add(1, Ordering::Relaxed))
                {
                    if !selected(scenario.name) {
                        continue;
                    }
                    let started = std::time::Instant::now();
                    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        run_scenario(scenario, mode, &make_fixture)
                    }));
                    let took = started.elapsed();
                    match outcome {
                        Ok(Outcome::Passed) => {
                            eprintln!("PASSED {} ({took:.1?})", scenario.name);
                        }
                        Ok(Outcome::Skipped(_)) => {
                            skipped.lock().unwrap().push(scenario.name);
                        }
                        Err(panic) => {
                            let message = panic
                                .downcast_ref::<String>()
                                .cloned()
                                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                                .unwrap_or_default();
                            eprintln!("FAILED {} ({took:.1?}): {message}", scenario.name);
                            failed
                                .lock()
                                .unwrap()
                                .push(format!("{}: {message}", scenario.name));
                        }
                    }
                }
            });
        }
    });
    let failed = failed.into_inner().unwrap();
    assert!(
        failed.is_empty(),
        "{} scenario(s) failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
    let mut skipped = skipped.into_inner().unwrap();
    skipped.sort_unstable();
    skipped
}
