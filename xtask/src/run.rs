//! Running commands, echoed, from the workspace root.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The workspace root: the parent of this crate's directory, known at compile time.
pub(crate) fn workspace_root() -> Result<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .context("xtask lives inside the workspace")
}

/// Runs `program args` in `dir` with extra environment variables, echoing it first; fails when
/// it exits unsuccessfully.
pub(crate) fn run(dir: &Path, program: &str, args: &[&str], env: &[(&str, &str)]) -> Result<()> {
    let prefix: String = env
        .iter()
        .map(|(key, value)| format!("{key}={value:?} "))
        .collect();
    println!("$ {prefix}{program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .status()
        .with_context(|| format!("cannot start {program}"))?;
    if !status.success() {
        bail!("`{program} {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

/// The cargo that runs us (so the pinned toolchain's), else `cargo` from the PATH.
fn cargo_program() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// Runs cargo (the one that runs us) in the workspace.
pub(crate) fn cargo(root: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<()> {
    run(root, &cargo_program(), args, env)
}

/// What cargo prints on stdout for `args` (not echoed: for queries such as `cargo tree`).
pub(crate) fn cargo_output(root: &Path, args: &[&str]) -> Result<String> {
    let output = Command::new(cargo_program())
        .args(args)
        .current_dir(root)
        .output()
        .with_context(|| format!("cannot run cargo {}", args.join(" ")))?;
    if !output.status.success() {
        bail!(
            "`cargo {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    String::from_utf8(output.stdout).context("cargo printed invalid UTF-8")
}

/// `cargo metadata` of the workspace (its own packages only).
fn metadata(root: &Path) -> Result<serde_json::Value> {
    let output = cargo_output(root, &["metadata", "--no-deps", "--format-version", "1"])?;
    serde_json::from_str(&output).context("cargo metadata printed invalid JSON")
}

/// The names of the workspace's packages, from `cargo metadata`.
pub(crate) fn workspace_packages(root: &Path) -> Result<Vec<String>> {
    let packages = metadata(root)?["packages"]
        .as_array()
        .context("cargo metadata has no packages")?
        .iter()
        .filter_map(|package| package["name"].as_str().map(str::to_owned))
        .collect();
    Ok(packages)
}

/// Where cargo puts what it builds (`target/`, or `CARGO_TARGET_DIR`), from `cargo metadata`.
pub(crate) fn target_directory(root: &Path) -> Result<PathBuf> {
    metadata(root)?["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .context("cargo metadata names no target directory")
}

/// Where the xtask installs the tools it needs (`cargo install --root`).
pub(crate) fn xtask_tool_root(root: &Path) -> PathBuf {
    crate::xtask_dir(root).join("tools")
}

/// The binary `binary` of crate `package` at `version`, installed under `.xtask/tools` the
/// first time it is needed.
pub(crate) fn installed_tool(
    root: &Path,
    package: &str,
    version: &str,
    binary: &str,
) -> Result<PathBuf> {
    let tools = xtask_tool_root(root);
    let local = tools.join("bin").join(binary);
    if !local.is_file() {
        let tools_text = tools.to_str().context("the workspace path is not UTF-8")?;
        cargo(
            root,
            &[
                "install",
                "--locked",
                package,
                "--version",
                version,
                "--root",
                tools_text,
            ],
            &[],
        )?;
    }
    Ok(local)
}
