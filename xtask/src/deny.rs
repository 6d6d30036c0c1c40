//! `cargo deny`, installed and fed an advisory database without the network.
//!
//! cargo-deny fetches the RustSec advisory database with git, which this project's machines
//! cannot reach. A snapshot of the database (plain files) is kept beside the workspace, in
//! `../shared/advisory-db` (or wherever `QUEUE_RUNTIME_ADVISORY_SNAPSHOT` points). When it is
//! there, this copies it into a git repository where cargo-deny looks for its clone, commits it,
//! and runs every check offline. When it is not, it says so and runs every check but advisories.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::run::{cargo, installed_tool, run};

/// The cargo-deny release this project is checked with.
const CARGO_DENY_VERSION: &str = "0.20.2";

/// The directory cargo-deny derives from the default database URL
/// (`https://github.com/RustSec/advisory-db`) inside its `db-path`.
pub(crate) const ADVISORY_DB_DIR: &str = "advisory-db-3157b0e258782691";

/// The environment variable deny.toml reads its `db-path` from.
const DB_PATH_VAR: &str = "QUEUE_RUNTIME_ADVISORY_DBS";

pub(crate) fn check(root: &Path) -> Result<()> {
    let deny = installed_tool(root, "cargo-deny", CARGO_DENY_VERSION, "cargo-deny")?;
    let deny = deny.to_str().context("the cargo-deny path is not UTF-8")?;
    // cargo-deny reads the dependency graph offline; make sure every crate is downloaded.
    cargo(root, &["fetch", "--locked"], &[])?;
    let db_root = crate::xtask_dir(root).join("advisory-dbs");
    let db_root_text = db_root
        .to_str()
        .context("the workspace path is not UTF-8")?;
    let env = [(DB_PATH_VAR, db_root_text)];
    let snapshot = snapshot_path(root);
    if is_snapshot(&snapshot) {
        prepare_database(&snapshot, &db_root.join(ADVISORY_DB_DIR))?;
        return run(root, deny, &["deny", "--offline", "check"], &env);
    }
    println!(
        "deny: advisories SKIPPED: no RustSec snapshot at {} (set \
         QUEUE_RUNTIME_ADVISORY_SNAPSHOT to one); checking licenses, bans and sources only",
        snapshot.display()
    );
    run(
        root,
        deny,
        &["deny", "--offline", "check", "licenses", "bans", "sources"],
        &env,
    )
}

fn default_snapshot(root: &Path) -> PathBuf {
    root.join("..").join("shared").join("advisory-db")
}

/// Where to look for the snapshot: `QUEUE_RUNTIME_ADVISORY_SNAPSHOT`, else
/// `../shared/advisory-db` beside the workspace.
fn snapshot_path(root: &Path) -> PathBuf {
    std::env::var_os("QUEUE_RUNTIME_ADVISORY_SNAPSHOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| default_snapshot(root))
}

/// A RustSec database has a `crates` directory of advisories.
fn is_snapshot(path: &Path) -> bool {
    path.join("crates").is_dir()
}

/// Makes `target` a git repository holding exactly the snapshot's files, committed.
fn prepare_database(snapshot: &Path, target: &Path) -> Result<()> {
    if target.exists() {
        std::fs::remove_dir_all(target)
            .with_context(|| format!("cannot clear {}", target.display()))?;
    }
    copy_tree(snapshot, target)?;
    let git = |args: &[&str]| {
        let mut full = vec![
            "-c",
            "user.name=xtask",
            "-c",
            "user.email=xtask@localhost",
            "-c",
            "commit.gpgsign=false",
        ];
        full.extend_from_slice(args);
        run(target, "git", &full, &[])
    };
    git(&["init", "--quiet"])?;
    git(&["add", "--all"])?;
    git(&[
        "commit",
        "--quiet",
        "-m",
        "RustSec advisory database snapshot",
    ])?;
    Ok(())
}

/// Copies a directory tree (files and directories; a `.git` inside is skipped).
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    for entry in
        std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))?
    {
        let entry = entry?;
        let name = entry.file_name();
        if name == ".git" {
            continue;
        }
        let source = entry.path();
        let destination = to.join(&name);
        if entry.file_type()?.is_dir() {
            copy_tree(&source, &destination)?;
        } else {
            std::fs::copy(&source, &destination)
                .with_context(|| format!("cannot copy {}", source.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_is_recognised_by_its_crates_directory() {
        let dir = std::env::temp_dir().join(format!("xtask-snapshot-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("crates").join("foo")).unwrap();
        std::fs::write(
            dir.join("crates").join("foo").join("RUSTSEC-0000-0000.md"),
            "x",
        )
        .unwrap();
        assert!(is_snapshot(&dir));
        assert!(!is_snapshot(&dir.join("crates")));

        let copy = dir.with_extension("copy");
        copy_tree(&dir, &copy).unwrap();
        assert!(copy.join("crates/foo/RUSTSEC-0000-0000.md").is_file());
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::remove_dir_all(&copy).unwrap();
    }
}
