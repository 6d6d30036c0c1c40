//! Python tools the tests run (moto's SQS server, Microsoft's Service Bus SDK), each in its own
//! virtual environment under `.xtask/`, installed from PyPI the first time.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

/// Whether this machine can make virtual environments (`python3 -m venv`): the tools need it.
pub(crate) fn available() -> Result<(), String> {
    let python = python();
    let works = |args: &[&str]| {
        Command::new(&python)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    if !works(&["--version"]) {
        return Err(format!("{python} is not installed"));
    }
    if !works(&["-m", "venv", "--help"]) {
        return Err(format!(
            "{python} has no venv module (on Debian: apt-get install python3-venv)"
        ));
    }
    Ok(())
}

/// The Python the environments are made with: `$PYTHON`, else `python3`.
fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// The virtual environment `.xtask/<name>` with `requirement` installed, made when missing.
pub(crate) fn venv(root: &Path, name: &str, requirement: &str) -> Result<PathBuf> {
    let venv = crate::xtask_dir(root).join(name);
    let marker = venv.join(format!(
        ".installed-{}",
        requirement.replace(['[', ']', '=', '<', '>'], "_")
    ));
    if marker.exists() {
        return Ok(venv);
    }
    let venv_text = venv.to_str().context("the workspace path is not UTF-8")?;
    crate::run::run(root, &python(), &["-m", "venv", venv_text], &[]).with_context(|| {
        format!(
            "cannot create a Python virtual environment for {requirement} (on Debian: apt-get \
             install python3-venv)"
        )
    })?;
    let pip = venv.join("bin").join("pip");
    let pip = pip.to_str().context("the workspace path is not UTF-8")?;
    crate::run::run(
        root,
        pip,
        &[
            "install",
            "--quiet",
            "--disable-pip-version-check",
            requirement,
        ],
        &[],
    )
    .with_context(|| format!("cannot install {requirement} from PyPI"))?;
    File::create(&marker).with_context(|| format!("cannot write {}", marker.display()))?;
    Ok(venv)
}
