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
        (scenario.run)(&fixture).await
    });
    if let Outcome::Skipped(reason) = &outcome {
        eprintln!("SKIPPED {}: {reason}", scenario.name);
    }
    outcome
}

/// Runs every scenario in order and returns the names of those skipped (a failure panics).
pub fn run_all<F: Fixture + 'static>(
    mode: TimeMode,
    make_fixture: impl Fn() -> F,
) -> Vec<&'static str> {
    crate::SCENARIOS
        .iter()
        .filter_map(
            |scenario| match run_scenario(scenario, mode, &make_fixture) {
                Outcome::Passed => None,
                Outcome::Skipped(_) => Some(scenario.name),
            },
        )
        .collect()
}
