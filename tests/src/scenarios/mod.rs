//! The scenarios, by topic. Each is `pub async fn(&dyn Fixture) -> Outcome` and checks one
//! `# Behavior` item of the provider contract in `queue-core`.

pub mod basic;
pub mod batch;
pub mod concurrency;
pub mod dead_letter;
pub mod lifecycle;
pub mod limits;
pub mod peek;
pub mod scheduling;
pub mod sessions;
pub mod settle;
