//! Installing what the stack needs, idempotently: each step checks first and does nothing when the right
//! version is already there, so `up` on a ready machine costs seconds.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::{fail, paths, procs, Result};

pub const WORKER_BUILD_VERSION: &str = "0.8.7";

fn say(msg: &str) {
    eprintln!("==> {msg}");
}

fn has_command(name: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {name}")]).stdout(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Debian packages: the Docker engine and mmdebstrap (prebuilt images are made from Debian packages).
pub fn apt_packages() -> Result<()> {
    let wanted = [("dockerd", "docker.io"), ("mmdebstrap", "mmdebstrap"), ("curl", "curl")];
    let missing: Vec<&str> = wanted.iter().filter(|(cmd, _)| !has_command(cmd)).map(|(_, pkg)| *pkg).collect();
    if missing.is_empty() {
        return Ok(());
    }
    say(&format!("installing Debian packages: {}", missing.join(" ")));
    procs::run("apt-get update", Command::new("apt-get").args(["update", "-q"]))?;
    procs::run(
        "apt-get install",
        Command::new("apt-get").args(["install", "-y", "-q", "--no-install-recommends"]).args(&missing).env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

pub fn wasm_target() -> Result<()> {
    let installed = procs::output("rustup", Command::new("rustup").args(["target", "list", "--installed"]))?;
    if installed.lines().any(|l| l.trim() == "wasm32-unknown-unknown") {
        return Ok(());
    }
    say("adding the wasm32-unknown-unknown target");
    procs::run("rustup target add", Command::new("rustup").args(["target", "add", "wasm32-unknown-unknown"]))
}

/// The version of a package in Cargo.lock (the wasm-bindgen CLI must equal the library exactly).
fn locked_version(package: &str) -> Result<String> {
    let lock = fs::read_to_string(paths::root().join("Cargo.lock"))
        .map_err(|e| crate::Error(format!("reading Cargo.lock: {e}")))?;
    let needle = format!("name = \"{package}\"\nversion = \"");
    let Some(at) = lock.find(&needle) else {
        return fail(format!("{package} is not in Cargo.lock"));
    };
    let rest = &lock[at + needle.len()..];
    Ok(rest.split('"').next().unwrap_or_default().to_string())
}

fn cargo_tool(krate: &str, version: &str, bin: &str) -> Result<()> {
    let current = Command::new(paths::cargo_bin(bin)).arg("--version").output().ok();
    let current = current.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    if current.split_whitespace().any(|w| w.trim_start_matches('v') == version) {
        return Ok(());
    }
    say(&format!("installing {krate} {version} from crates.io (several minutes on a cold machine)"));
    procs::run(
        &format!("cargo install {krate}"),
        Command::new("cargo").args(["install", krate, "--version", &format!("={version}")]),
    )
}

pub fn worker_toolchain() -> Result<()> {
    wasm_target()?;
    cargo_tool("worker-build", WORKER_BUILD_VERSION, "worker-build")?;
    cargo_tool("wasm-bindgen-cli", &locked_version("wasm-bindgen")?, "wasm-bindgen")
}

fn stamp_matches(stamp: &Path, content: &[u8]) -> bool {
    fs::read(stamp).is_ok_and(|old| old == content)
}

/// `npm ci` in stack/ when node_modules does not match package-lock.json.
pub fn npm_packages() -> Result<()> {
    let lock = fs::read(paths::stack().join("package-lock.json"))
        .map_err(|e| crate::Error(format!("reading stack/package-lock.json: {e}")))?;
    let stamp = paths::node_modules().join(".ouro-lock-stamp");
    if stamp_matches(&stamp, &lock) && paths::node().exists() {
        return Ok(());
    }
    say("installing npm packages in stack/ (node 24, wrangler, anvil, solc, x402 facilitator)");
    procs::run(
        "npm ci",
        Command::new("npm").args(["ci", "--no-audit", "--no-fund", "--loglevel=error"]).current_dir(paths::stack()),
    )?;
    fs::write(&stamp, &lock).map_err(|e| crate::Error(format!("writing {}: {e}", stamp.display())))
}

/// A Python virtualenv with the official x402 SDK and pytest, for the Python end-to-end tests.
pub fn python_venv() -> Result<()> {
    let reqs_path = paths::root().join("tests/python/requirements.txt");
    let reqs = fs::read(&reqs_path).map_err(|e| crate::Error(format!("reading {}: {e}", reqs_path.display())))?;
    let stamp = paths::venv().join(".ouro-requirements-stamp");
    if stamp_matches(&stamp, &reqs) {
        return Ok(());
    }
    say("creating the Python test environment (x402 SDK from PyPI)");
    procs::run("python3 -m venv", Command::new("python3").args(["-m", "venv"]).arg(paths::venv()))?;
    procs::run(
        "pip install",
        Command::new(paths::venv().join("bin/pip")).args(["install", "-q", "--disable-pip-version-check", "-r"]).arg(&reqs_path),
    )?;
    fs::write(&stamp, &reqs).map_err(|e| crate::Error(format!("writing {}: {e}", stamp.display())))
}
