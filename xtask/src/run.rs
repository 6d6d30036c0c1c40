//! Running commands, echoed, from the workspace root.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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

/// A test executable cargo built: its package, its target's name, the program, and the
/// package's directory (where cargo runs it).
pub(crate) struct TestBinary {
    pub(crate) package: String,
    pub(crate) target: String,
    pub(crate) program: PathBuf,
    pub(crate) dir: PathBuf,
}

/// Builds tests with `cargo <args> --no-run` (echoed, diagnostics shown as usual) and returns
/// the test executables it built, read from cargo's JSON messages.
pub(crate) fn cargo_build_tests(
    root: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<Vec<TestBinary>> {
    let mut args = args.to_vec();
    args.extend(["--no-run", "--message-format=json-render-diagnostics"]);
    println!("$ cargo {}", args.join(" "));
    let output = Command::new(cargo_program())
        .args(&args)
        .envs(env.iter().copied())
        .current_dir(root)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run cargo {}", args.join(" ")))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut binaries = Vec::new();
    for line in stdout.lines() {
        // Cargo renders the diagnostics to stderr itself; what is not JSON here is a build
        // script's output.
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let (Some(program), Some(target), Some(id), Some(manifest)) = (
            message["executable"].as_str(),
            message["target"]["name"].as_str(),
            message["package_id"].as_str(),
            message["manifest_path"].as_str(),
        ) else {
            continue;
        };
        binaries.push(TestBinary {
            package: package_name(id).to_owned(),
            target: target.to_owned(),
            program: PathBuf::from(program),
            dir: Path::new(manifest)
                .parent()
                .map_or_else(|| root.to_path_buf(), Path::to_path_buf),
        });
    }
    if !output.status.success() {
        bail!("`cargo {}` failed ({})", args.join(" "), output.status);
    }
    Ok(binaries)
}

/// The package name in a cargo package id (`path+file:///x/crates/name#name@0.1.0`, or the
/// older `name 0.1.0 (path+file:///x)`).
fn package_name(id: &str) -> &str {
    match id.rsplit_once('#') {
        Some((url, rest)) => match rest.split_once('@') {
            Some((name, _)) => name,
            // `…/name#0.1.0`: the name is the directory's.
            None => url.rsplit('/').next().unwrap_or(rest),
        },
        None => id.split(' ').next().unwrap_or(id),
    }
}

/// Runs a program with its output captured (for a job running beside another whose output
/// it must not interleave with): whether it succeeded, and stdout then stderr.
pub(crate) fn captured(
    dir: &Path,
    program: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<(bool, String)> {
    let output = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .output()
        .with_context(|| format!("cannot run {}", program.display()))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok((output.status.success(), text))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names_come_out_of_both_id_formats() {
        assert_eq!(
            package_name("path+file:///work/crates/queue-azure#queue-azure@0.1.0"),
            "queue-azure"
        );
        assert_eq!(
            package_name("path+file:///work/tests#queue-conformance@0.1.0"),
            "queue-conformance"
        );
        assert_eq!(
            package_name("path+file:///work/crates/xtask#0.1.0"),
            "xtask"
        );
        assert_eq!(
            package_name("queue-azure 0.1.0 (path+file:///work/crates/queue-azure)"),
            "queue-azure"
        );
    }
}
