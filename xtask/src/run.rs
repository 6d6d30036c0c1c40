//! Running commands, echoed, from the workspace root.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

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
    run_within(dir, program, args, env, None)
}

/// [`run`], stopped (with every process it started) and failed when it runs past `limit`.
pub(crate) fn run_within(
    dir: &Path,
    program: &str,
    args: &[&str],
    env: &[(&str, &str)],
    limit: Option<Duration>,
) -> Result<()> {
    let prefix: String = env
        .iter()
        .map(|(key, value)| format!("{key}={value:?} "))
        .collect();
    let line = format!("{program} {}", args.join(" "));
    println!("$ {prefix}{line}");
    let child = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .spawn()
        .with_context(|| format!("cannot start {program}"))?;
    let status = wait_within(child, limit, &line)?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

/// Waits for `child`; past `limit`, prints what it was still running (its process tree, with
/// each process's age: the test executable that hangs, and its arguments), stops all of it and
/// fails. A hung test then costs its limit and names itself, instead of running a CI job into
/// its own timeout with nothing said.
pub(crate) fn wait_within(
    mut child: Child,
    limit: Option<Duration>,
    what: &str,
) -> Result<ExitStatus> {
    let Some(limit) = limit else {
        return child
            .wait()
            .with_context(|| format!("cannot wait for `{what}`"));
    };
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child
            .try_wait()
            .with_context(|| format!("cannot wait for `{what}`"))?
        {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let tree = process_tree(child.id());
    println!(
        "xtask: `{what}` ran past its limit of {} s; still running (pid, age, command):",
        limit.as_secs()
    );
    for (_, line) in &tree {
        println!("  {line}");
    }
    // Children first, so that none is left to a parent that is gone.
    for (pid, _) in tree.iter().rev() {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    let _ = child.kill();
    let _ = child.wait();
    bail!(
        "`{what}` ran past its limit of {} s and was stopped (what it was running is printed above)",
        limit.as_secs()
    )
}

/// `root` and its descendants, parents before children: (pid, `ps` line with age and command).
fn process_tree(root: u32) -> Vec<(u32, String)> {
    let Ok(output) = Command::new("ps")
        .args(["-e", "-o", "pid=,ppid=,etime=,args="])
        .output()
    else {
        return vec![(root, root.to_string())];
    };
    let listing = String::from_utf8_lossy(&output.stdout);
    let processes: Vec<(u32, u32, String)> = listing
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let pid = fields.next()?.parse().ok()?;
            let parent = fields.next()?.parse().ok()?;
            Some((pid, parent, line.trim().to_owned()))
        })
        .collect();
    let mut tree: Vec<(u32, String)> = processes
        .iter()
        .filter(|(pid, _, _)| *pid == root)
        .map(|(pid, _, line)| (*pid, line.clone()))
        .collect();
    let mut next = 0;
    while next < tree.len() {
        let parent = tree[next].0;
        tree.extend(
            processes
                .iter()
                .filter(|(_, ppid, _)| *ppid == parent)
                .map(|(pid, _, line)| (*pid, line.clone())),
        );
        next += 1;
    }
    tree
}

/// How much `target` holds and how much its disk has left, as `target/ 9.1 GB, 40.2 GB free`
/// (from `du` and `df`; what could not be read is left out of the line).
pub(crate) fn disk_use(target: &Path) -> String {
    let kib = |program: &str, args: &[&str], column: usize| -> Option<f64> {
        let output = Command::new(program).args(args).arg(target).output().ok()?;
        let text = String::from_utf8_lossy(&output.stdout);
        let line = text.lines().last()?;
        let value: f64 = line.split_whitespace().nth(column)?.parse().ok()?;
        Some(value * 1024.0 / 1e9)
    };
    let used = kib("du", &["-sk"], 0).map(|gb| format!("target/ {gb:.1} GB"));
    let free = kib("df", &["-Pk"], 3).map(|gb| format!("{gb:.1} GB free"));
    used.into_iter().chain(free).collect::<Vec<_>>().join(", ")
}

/// The cargo that runs us (so the pinned toolchain's), else `cargo` from the PATH.
fn cargo_program() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// Runs cargo (the one that runs us) in the workspace.
pub(crate) fn cargo(root: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<()> {
    run(root, &cargo_program(), args, env)
}

/// [`cargo`], stopped and failed past `limit` (see [`wait_within`]).
pub(crate) fn cargo_within(
    root: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    limit: Duration,
) -> Result<()> {
    run_within(root, &cargo_program(), args, env, Some(limit))
}

/// An executable a test build made: its package, its target's name, the program, the
/// package's directory (where cargo runs it), and whether it is a test harness (else a binary
/// target, built for the package's integration tests).
pub(crate) struct TestBinary {
    pub(crate) package: String,
    pub(crate) target: String,
    pub(crate) program: PathBuf,
    pub(crate) dir: PathBuf,
    pub(crate) harness: bool,
}

/// The test harness (`harness`) or the binary target `target` of `package` among `binaries`.
pub(crate) fn built<'a>(
    binaries: &'a [TestBinary],
    package: &str,
    target: &str,
    harness: bool,
) -> Option<&'a TestBinary> {
    binaries.iter().find(|binary| {
        binary.package == package && binary.target == target && binary.harness == harness
    })
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
            harness: message["profile"]["test"].as_bool().unwrap_or(true),
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
/// Stopped past `limit`: then the output so far is returned, with what was still running.
pub(crate) fn captured(
    dir: &Path,
    program: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    limit: Duration,
) -> Result<(bool, String)> {
    // Both streams into one file, in the order they were written.
    let path = std::env::temp_dir().join(format!(
        "xtask-{}-{}.log",
        std::process::id(),
        program
            .file_name()
            .map_or_else(String::new, |name| name.to_string_lossy().into_owned())
    ));
    let file = std::fs::File::create(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let child = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .with_context(|| format!("cannot run {}", program.display()))?;
    let waited = wait_within(child, Some(limit), &program.display().to_string());
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let _ = std::fs::remove_file(&path);
    match waited {
        Ok(status) => Ok((status.success(), text)),
        Err(error) => Ok((false, format!("{text}\n{error:#}"))),
    }
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
    fn disk_use_reads_the_folder_and_its_free_space() {
        // This crate's own folder: small, so `du` is quick whatever else the machine holds.
        let line = disk_use(Path::new(env!("CARGO_MANIFEST_DIR")));
        assert!(line.starts_with("target/ "), "{line}");
        assert!(line.ends_with(" GB free"), "{line}");
    }

    #[test]
    fn a_command_past_its_limit_is_stopped_with_its_children() {
        let child = Command::new("sh")
            .args(["-c", "sleep 60 & sleep 60; wait"])
            .spawn()
            .unwrap();
        let shell = child.id();
        let started = Instant::now();
        let error = wait_within(child, Some(Duration::from_secs(1)), "two sleepers").unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(20));
        assert!(error.to_string().contains("ran past its limit"), "{error}");
        assert!(
            process_tree(shell).is_empty(),
            "the shell or its sleepers are still running"
        );
    }

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
