//! The commands: `up`, `down`, `demo`, `test`, `status`.

use std::fs;
use std::process::Command;

use crate::services::{self, ANVIL_PORT, EDGE_PORT, EXECUTOR_PORT, FACILITATOR_PORT};
use crate::{fail, install, paths, procs, Result};

/// The anvil account the demo pays with (the end-to-end tests use accounts 2-28).
const DEMO_ACCOUNT: usize = 1;

fn accounts() -> Result<Vec<(String, String)>> {
    let path = paths::stack().join("chain/accounts.json");
    let text = fs::read_to_string(&path).map_err(|e| crate::Error(format!("reading {}: {e}", path.display())))?;
    // A flat scan is enough for this fixed file and keeps xtask free of dependencies.
    let field = |chunk: &str, name: &str| {
        chunk.split(&format!("\"{name}\": \"")).nth(1).and_then(|r| r.split('"').next()).map(str::to_string)
    };
    Ok(text
        .split("\"index\"")
        .skip(1)
        .filter_map(|chunk| Some((field(chunk, "address")?, field(chunk, "private_key")?)))
        .collect())
}

/// Installs and starts everything; answers the services it started itself.
pub fn up() -> Result<Vec<&'static str>> {
    install::apt_packages()?;
    install::npm_packages()?;
    let vars = services::dev_vars()?;
    services::ensure_dev_vars_entries()?;
    let mut started = Vec::new();
    let mut note = |name: &'static str, did: bool| {
        if did {
            started.push(name);
        }
    };
    note("dockerd", services::ensure_docker()?);
    services::ensure_images()?;
    let fresh_chain = services::ensure_anvil()?;
    if fresh_chain {
        services::reset_edge_state()?;
    }
    note("anvil", fresh_chain);
    note("facilitator", services::ensure_facilitator()?);
    note("executor", services::ensure_executor(&vars)?);
    note("edge", services::ensure_edge()?);
    print_summary()?;
    Ok(started)
}

fn print_summary() -> Result<()> {
    eprintln!();
    eprintln!("Ouro local stack is up (logs in {}):", paths::logs().display());
    eprintln!("  edge (wrangler dev, D1/R2/Queues)  http://127.0.0.1:{EDGE_PORT}");
    eprintln!("  executor (Docker, network none)    http://127.0.0.1:{EXECUTOR_PORT}");
    eprintln!("  x402 facilitator                   http://127.0.0.1:{FACILITATOR_PORT}");
    eprintln!("  anvil (chain 84532, test USDC)     http://127.0.0.1:{ANVIL_PORT}");
    eprintln!("  Docker engine                      unix://{}", services::DOCKER_SOCKET);
    eprintln!("Funded test accounts (anvil's public dev keys, 1,000 test USDC each):");
    for (i, (address, key)) in accounts()?.iter().enumerate().skip(1).take(9) {
        eprintln!("  {i}  {address}  {key}");
    }
    eprintln!("  (accounts 10-39, also funded: stack/chain/accounts.json)");
    eprintln!();
    Ok(())
}

pub fn down() -> Result<()> {
    for name in services::ORDER.iter().rev() {
        if procs::stop(name)? {
            eprintln!("==> stopped {name}");
        }
    }
    Ok(())
}

fn stop(names: &[&str]) {
    for name in services::ORDER.iter().rev().filter(|n| names.contains(n)) {
        match procs::stop(name) {
            Ok(true) => eprintln!("==> stopped {name}"),
            Ok(false) => {}
            Err(e) => eprintln!("xtask: {e}"),
        }
    }
}

pub fn status() -> Result<()> {
    for name in services::ORDER {
        match (procs::running(name), procs::recorded(name)) {
            (Some(pid), _) => eprintln!("{name:12} running (pid {pid})"),
            (None, Some(pid)) => eprintln!("{name:12} exited (was pid {pid}; see {})", procs::log_file(name).display()),
            (None, None) => eprintln!("{name:12} not started by xtask"),
        }
    }
    Ok(())
}

fn edge_url() -> String {
    format!("http://127.0.0.1:{EDGE_PORT}")
}

pub fn demo() -> Result<()> {
    up()?;
    procs::run(
        "building the ouro client",
        Command::new("cargo").args(["build", "--quiet", "-p", "ouro-client"]).current_dir(paths::root()),
    )?;
    let accounts = accounts()?;
    let Some((address, key)) = accounts.get(DEMO_ACCOUNT) else {
        return fail("stack/chain/accounts.json lists no demo account");
    };
    eprintln!("==> paying for `echo hello` from {address} with the ouro client");
    eprintln!("    $ ouro run -c 'echo hello'");
    procs::run(
        "the demo job",
        Command::new(paths::root().join("target/debug/ouro"))
            .args(["run", "-c", "echo hello"])
            .env("OURO_URL", edge_url())
            .env("OURO_PRIVATE_KEY", key),
    )
}

/// The latency benchmark: paid `echo hello` end to end against a bare container run, as a ratio.
pub fn bench(args: &[String]) -> Result<()> {
    up()?;
    procs::run(
        "the latency benchmark",
        Command::new("cargo")
            .args(["run", "--quiet", "-p", "ouro-bench", "--bin", "ouro-latency", "--"])
            .args(args)
            .env("OURO_URL", edge_url())
            .current_dir(paths::root()),
    )
}

/// Runs every test against the stack; stops afterwards whatever it had to start.
pub fn test(args: &[String]) -> Result<()> {
    let keep = args.iter().any(|a| a == "--keep");
    let filter: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let started = up()?;
    let result = run_suites(&filter);
    if !keep {
        stop(&started);
    }
    result
}

fn run_suites(filter: &[&String]) -> Result<()> {
    install::python_venv()?;
    let env = [
        ("OURO_URL", edge_url()),
        ("OURO_RPC_URL", format!("http://127.0.0.1:{ANVIL_PORT}")),
        ("OURO_FACILITATOR_URL", format!("http://127.0.0.1:{FACILITATOR_PORT}")),
        ("OURO_EXECUTOR_URL", format!("http://127.0.0.1:{EXECUTOR_PORT}")),
        ("OURO_ACCOUNTS_FILE", paths::stack().join("chain/accounts.json").display().to_string()),
    ];
    let mut failures = Vec::new();

    eprintln!("==> Rust tests: unit (core, client), executor on the real engine, end to end against the stack");
    let mut cargo = Command::new("cargo");
    // --no-fail-fast: one failing suite must not hide the results of the others.
    cargo.args(["test", "--no-fail-fast", "--workspace", "--exclude", "ouro-edge"]).current_dir(paths::root());
    cargo.arg("--");
    cargo.args(filter.iter().map(|s| s.as_str()));
    // End-to-end tests mostly wait on jobs: run them wide so the minute-long ones overlap.
    cargo.args(["--test-threads", "12"]);
    cargo.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    if let Err(e) = procs::run("cargo test", &mut cargo) {
        failures.push(e.0);
    }

    if filter.is_empty() {
        eprintln!("==> Python tests: the official x402 SDK paying the stack");
        let mut pytest = Command::new(paths::venv().join("bin/python"));
        pytest.args(["-m", "pytest", "-q", "tests/python"]).current_dir(paths::root());
        pytest.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        if let Err(e) = procs::run("pytest", &mut pytest) {
            failures.push(e.0);
        }
    }

    if filter.is_empty() {
        eprintln!("==> JavaScript tests: the official npm x402 client (@x402/fetch + @x402/evm) paying the stack");
        let mut node = Command::new(paths::node());
        node.arg("--test").args(js_tests()?).current_dir(paths::root());
        node.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        if let Err(e) = procs::run("node --test", &mut node) {
            failures.push(e.0);
        }

        // Last, once nothing else pays: the ledger in D1 against payTo's balance on chain.
        eprintln!("==> Reconciliation: settled payments in D1 == payTo's test-USDC balance on chain");
        let mut reconcile = Command::new("cargo");
        reconcile
            .args(["test", "-p", "ouro-e2e", "--test", "reconciliation", "--", "--ignored"])
            .current_dir(paths::root());
        reconcile.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        if let Err(e) = procs::run("reconciliation", &mut reconcile) {
            failures.push(e.0);
        }
    }

    if failures.is_empty() {
        Ok(())
    } else {
        fail(failures.join("; "))
    }
}

/// `tests/js/*.test.mjs`, sorted.
fn js_tests() -> Result<Vec<std::path::PathBuf>> {
    let dir = paths::root().join("tests/js");
    let entries = fs::read_dir(&dir).map_err(|e| crate::Error(format!("reading {}: {e}", dir.display())))?;
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".test.mjs"))
        .collect();
    files.sort();
    Ok(files)
}
