//! What was wrong with a configuration: every invalid field, each with its path.
//!
//! Each provider checks its own section and reports problems with paths relative to it
//! (`queues[0].lock_duration`); whoever reads the whole file puts the section in front
//! ([`ConfigError::within`]), so the user sees `memory.queues[0].lock_duration`.

use std::fmt;

use crate::error::{ErrorKind, QueueError};

/// One invalid field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Where: `memory.queues[0].max_delivery_count`, or an environment variable's name.
    pub path: String,
    /// What is wrong and what is expected.
    pub reason: String,
}

/// Every invalid field of a configuration (at least one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    problems: Vec<ConfigProblem>,
}

impl ConfigError {
    /// One problem.
    pub fn single(path: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            problems: vec![ConfigProblem {
                path: path.into(),
                reason: reason.into(),
            }],
        }
    }

    /// Every problem found.
    pub fn problems(&self) -> &[ConfigProblem] {
        &self.problems
    }

    /// The same problems, their paths inside `section` (`queues[0]` becomes
    /// `memory.queues[0]`; a problem of the section as a whole becomes `memory`).
    #[must_use]
    pub fn within(mut self, section: &str) -> Self {
        for problem in &mut self.problems {
            problem.path = join(section, &problem.path);
        }
        self
    }

    /// The same problems, each path after `prefix` as is (`keys.toml: ` names the file).
    #[must_use]
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        for problem in &mut self.problems {
            problem.path = format!("{prefix}{}", problem.path);
        }
        self
    }

    /// These problems followed by `other`'s.
    #[must_use]
    pub fn and(mut self, other: ConfigError) -> Self {
        self.problems.extend(other.problems);
        self
    }
}

fn join(section: &str, path: &str) -> String {
    match (section.is_empty(), path.is_empty()) {
        (true, _) => path.to_owned(),
        (false, true) => section.to_owned(),
        (false, false) if path.starts_with('[') => format!("{section}{path}"),
        (false, false) => format!("{section}.{path}"),
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid queue-runtime configuration:")?;
        for problem in &self.problems {
            write!(f, "\n  {}: {}", problem.path, problem.reason)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl From<ConfigError> for QueueError {
    fn from(error: ConfigError) -> Self {
        QueueError::new(ErrorKind::Config, error.to_string())
    }
}

/// Collects problems while a configuration is read, so every one is reported, not only the
/// first.
#[derive(Debug, Default)]
pub struct Problems {
    found: Vec<ConfigProblem>,
}

impl Problems {
    /// No problem yet.
    pub fn new() -> Self {
        Problems::default()
    }

    /// Notes a problem at `path`.
    pub fn push(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.found.push(ConfigProblem {
            path: path.into(),
            reason: reason.into(),
        });
    }

    /// Notes every problem of `error`, inside `section`.
    pub fn extend(&mut self, section: &str, error: ConfigError) {
        self.found.extend(error.within(section).problems);
    }

    /// The value of `result`, or `None` after noting its error at `path`.
    pub fn check<T>(
        &mut self,
        path: impl Into<String>,
        result: Result<T, QueueError>,
    ) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.push(path, error.message().to_owned());
                None
            }
        }
    }

    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    /// `value` when nothing was found (it must then be `Some`), every problem otherwise.
    pub fn finish<T>(self, value: Option<T>) -> Result<T, ConfigError> {
        match value {
            Some(value) if self.found.is_empty() => Ok(value),
            Some(_) | None if !self.found.is_empty() => Err(ConfigError {
                problems: self.found,
            }),
            _ => Err(ConfigError::single(
                "",
                "incomplete configuration (no problem was named: a bug in its reader)",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_prefix_every_path_and_every_problem_is_kept() {
        let mut problems = Problems::new();
        problems.push("queues[0].lock_duration", "must be at least 1ms");
        problems.push("", "needs a key source");
        let error = problems.finish::<()>(None).unwrap_err().within("memory");
        let paths: Vec<&str> = error.problems().iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["memory.queues[0].lock_duration", "memory"]);
        assert_eq!(join("memory.queues", "[1].name"), "memory.queues[1].name");
        let shown = error.to_string();
        assert!(shown.contains("memory.queues[0].lock_duration: must be at least 1ms"));
        assert_eq!(Problems::new().finish(Some(3)), Ok(3));
    }
}
