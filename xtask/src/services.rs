//! The services of the local stack, each with how to tell it is up and how to start it. Every `ensure_*`
//! leaves a healthy service alone and answers whether it started one.

use std::fs;
use std::process::Command;
use std::time::Duration;

use crate::{fail, install, paths, probe, procs, Result};

pub const EDGE_PORT: u16 = 8787;
pub const EDGE_INSPECTOR_PORT: u16 = 9329;
pub const ANVIL_PORT: u16 = 8545;
pub const FACILITATOR_PORT: u16 = 4022;
pub const EXECUTOR_PORT: u16 = 8788;
pub const DOCKER_SOCKET: &str = "/var/run/docker.sock";
pub const CHAIN_ID_HEX: &str = "0x14a34"; // 84532, Base Sepolia
pub const EXECUTOR_SLOTS: u32 = 4;
/// Images the stack builds (stack/images/build.sh knows their recipes).
pub const IMAGES: [&str; 3] = ["ouro-ubuntu", "ouro-python", "ouro-nodejs"];

/// Services in start order; `down` stops them in reverse.
pub const ORDER: [&str; 5] = ["dockerd", "anvil", "facilitator", "executor", "edge"];

fn say(msg: &str) {
    eprintln!("==> {msg}");
}

/// Waits for a service just started; gives up early if its process dies.
fn wait_ready(name: &str, timeout: Duration, mut ready: impl FnMut() -> bool) -> Result<()> {
    let mut is_ready = false;
    probe::wait_until(timeout, || {
        is_ready = ready();
        is_ready || procs::running(name).is_none()
    });
    if is_ready {
        return Ok(());
    }
    let why = if procs::running(name).is_none() { "exited".to_string() } else { format!("was not ready within {} s", timeout.as_secs()) };
    fail(format!(
        "{name} {why}; last log lines ({}):\n{}",
        procs::log_file(name).display(),
        procs::log_tail(name, 30)
    ))
}

pub fn ensure_docker() -> Result<bool> {
    if probe::docker_ping(DOCKER_SOCKET) {
        return Ok(false);
    }
    say("starting dockerd (no bridge, no iptables: containers get loopback only)");
    let mut cmd = Command::new("dockerd");
    cmd.args(["--host", &format!("unix://{DOCKER_SOCKET}"), "--bridge=none", "--iptables=false"]);
    procs::spawn("dockerd", cmd)?;
    wait_ready("dockerd", Duration::from_secs(60), || probe::docker_ping(DOCKER_SOCKET))?;
    Ok(true)
}

pub fn ensure_images() -> Result<()> {
    for image in IMAGES {
        procs::run(
            &format!("building image {image}"),
            Command::new("bash").arg(paths::stack().join("images/build.sh")).arg(image),
        )?;
    }
    Ok(())
}

fn anvil_ready() -> bool {
    probe::rpc(ANVIL_PORT, "eth_chainId", "[]").is_some_and(|r| r.contains(CHAIN_ID_HEX))
}

pub fn ensure_anvil() -> Result<bool> {
    let started = if anvil_ready() {
        false
    } else {
        if probe::port_open(ANVIL_PORT) {
            return fail(format!("port {ANVIL_PORT} is taken by something that is not anvil on chain 84532"));
        }
        say("starting anvil (chain id 84532)");
        let mut cmd = Command::new(paths::npm_bin("anvil"));
        cmd.args(["--chain-id", "84532", "--host", "127.0.0.1", "--port", &ANVIL_PORT.to_string()]);
        procs::spawn("anvil", cmd)?;
        wait_ready("anvil", Duration::from_secs(30), anvil_ready)?;
        true
    };
    // Idempotent: installs the token and Multicall3 and tops up accounts 1-39 only where needed.
    let summary = procs::output(
        "chain setup",
        Command::new(paths::node())
            .arg(paths::stack().join("chain/setup.mjs"))
            .args(["--rpc", &format!("http://127.0.0.1:{ANVIL_PORT}")]),
    )?;
    if !summary.contains("\"alreadySetUp\":true") {
        say("chain set up: test USDC at 0x036CbD53842c5426634e7929541eC2318f3dCF7e, accounts 1-39 funded");
    }
    Ok(started)
}

pub fn ensure_facilitator() -> Result<bool> {
    if probe::get_ok(FACILITATOR_PORT, "/health") {
        return Ok(false);
    }
    say("starting the x402 facilitator (reference TypeScript implementation)");
    let mut cmd = Command::new(paths::node());
    cmd.arg(paths::stack().join("facilitator/server.mjs"))
        .env("RPC_URL", format!("http://127.0.0.1:{ANVIL_PORT}"))
        .env("FACILITATOR_PORT", FACILITATOR_PORT.to_string());
    procs::spawn("facilitator", cmd)?;
    wait_ready("facilitator", Duration::from_secs(30), || probe::get_ok(FACILITATOR_PORT, "/health"))?;
    Ok(true)
}

/// Secrets shared by the edge (from .dev.vars) and the executor; made once per checkout, never committed.
pub fn dev_vars() -> Result<Vec<(String, String)>> {
    let path = paths::root().join(".dev.vars");
    if !path.exists() {
        let random = |n: usize| -> Result<String> {
            let mut buf = vec![0u8; n];
            use std::io::Read;
            fs::File::open("/dev/urandom")
                .and_then(|mut f| f.read_exact(&mut buf))
                .map_err(|e| crate::Error(format!("reading /dev/urandom: {e}")))?;
            Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
        };
        let text = format!(
            "# Local secrets for `wrangler dev`, made by `cargo xtask up`. Never commit.\nEXECUTOR_SECRET={}\nQUOTE_SECRET={}\n",
            random(32)?,
            random(32)?
        );
        fs::write(&path, text).map_err(|e| crate::Error(format!("writing {}: {e}", path.display())))?;
    }
    let text = fs::read_to_string(&path).map_err(|e| crate::Error(format!("reading {}: {e}", path.display())))?;
    Ok(text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect())
}

/// Entries `.dev.vars` must have, added when missing (a checkout made before they existed keeps its secrets):
/// the operator token of `GET /api/ledger`, and the local stack's overrides of the submit limits. The suite
/// submits hundreds of jobs a minute from 127.0.0.1, so the per-IP and service-wide limits are raised here;
/// `wrangler.toml` keeps the documented values, and the per-wallet limits (each suite pays from its own
/// accounts) stay real.
pub fn ensure_dev_vars_entries() -> Result<()> {
    let path = paths::root().join(".dev.vars");
    let text = fs::read_to_string(&path).map_err(|e| crate::Error(format!("reading {}: {e}", path.display())))?;
    let has = |key: &str| text.lines().any(|l| l.trim_start().starts_with(&format!("{key}=")));
    let mut added = String::new();
    if !has("OPERATOR_TOKEN") {
        let mut buf = [0u8; 24];
        use std::io::Read;
        fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut buf))
            .map_err(|e| crate::Error(format!("reading /dev/urandom: {e}")))?;
        let token: String = buf.iter().map(|b| format!("{b:02x}")).collect();
        added.push_str(&format!("OPERATOR_TOKEN={token}\n"));
    }
    for (key, value) in LOCAL_OVERRIDES {
        if !has(key) {
            added.push_str(&format!("{key}={value}\n"));
        }
    }
    if added.is_empty() {
        return Ok(());
    }
    let mut text = text;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str("# Added by `cargo xtask up`: the ledger's operator token and the local stack's submit-limit overrides.\n");
    text.push_str(&added);
    fs::write(&path, text).map_err(|e| crate::Error(format!("writing {}: {e}", path.display())))
}

/// `[vars]` the local stack overrides in `.dev.vars` (see [`ensure_dev_vars_entries`]).
const LOCAL_OVERRIDES: [(&str, &str); 2] = [("SUBMIT_LIMIT_PER_IP", "1000000"), ("SUBMIT_LIMIT_TOTAL", "1000000")];

/// A fresh anvil is a chain without any of the settlements the local D1 remembers: the edge's state (D1, R2,
/// Queues) is reset with it, so that the ledger and the chain keep agreeing. The edge runs from that state, so
/// it is stopped first and started again by `ensure_edge`.
pub fn reset_edge_state() -> Result<()> {
    let dir = paths::state().join("wrangler");
    if !dir.exists() {
        return Ok(());
    }
    say("anvil started from genesis: resetting the edge's local D1/R2/Queue state to match the new chain");
    procs::stop("edge")?;
    fs::remove_dir_all(&dir).map_err(|e| crate::Error(format!("removing {}: {e}", dir.display())))
}

fn secret(vars: &[(String, String)], name: &str) -> Result<String> {
    match vars.iter().find(|(k, _)| k == name) {
        Some((_, v)) => Ok(v.clone()),
        None => fail(format!(".dev.vars has no {name}; delete the file and run `cargo xtask up` again")),
    }
}

fn executor_binary() -> std::path::PathBuf {
    paths::root().join("target/debug/ouro-executor")
}

pub fn ensure_executor(vars: &[(String, String)]) -> Result<bool> {
    procs::run(
        "building the executor",
        Command::new("cargo").args(["build", "--quiet", "-p", "ouro-executor"]).current_dir(paths::root()),
    )?;
    let pid_file = paths::run().join("executor.pid");
    let stale = match (fs::metadata(executor_binary()), fs::metadata(&pid_file)) {
        (Ok(bin), Ok(pid)) => bin.modified().ok() > pid.modified().ok(),
        _ => true,
    };
    if procs::running("executor").is_some() && !stale && probe::get_ok(EXECUTOR_PORT, "/v1/health") {
        return Ok(false);
    }
    procs::stop("executor")?;
    if probe::port_open(EXECUTOR_PORT) {
        return fail(format!("port {EXECUTOR_PORT} is taken by a process this tool did not start"));
    }
    say("starting the executor");
    let mut cmd = Command::new(executor_binary());
    cmd.env("OURO_EXECUTOR_LISTEN", format!("127.0.0.1:{EXECUTOR_PORT}"))
        .env("OURO_EDGE_URL", format!("http://127.0.0.1:{EDGE_PORT}"))
        .env("OURO_EXECUTOR_SECRET", secret(vars, "EXECUTOR_SECRET")?)
        .env("OURO_EXECUTOR_SLOTS", EXECUTOR_SLOTS.to_string())
        .env("RUST_LOG", "info");
    procs::spawn("executor", cmd)?;
    wait_ready("executor", Duration::from_secs(30), || probe::get_ok(EXECUTOR_PORT, "/v1/health"))?;
    Ok(true)
}

fn wrangler(args: &[&str]) -> Command {
    let mut cmd = Command::new(paths::node());
    cmd.arg(paths::node_modules().join("wrangler/bin/wrangler.js"))
        .args(args)
        .current_dir(paths::root())
        .env("PATH", paths::path_env())
        .env("WRANGLER_SEND_METRICS", "false")
        .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
        .env("WASM_BINDGEN_BIN", paths::cargo_bin("wasm-bindgen"))
        .env("WASM_OPT_BIN", paths::npm_bin("wasm-opt"))
        .env("ESBUILD_BIN", paths::node_modules().join("@esbuild/linux-x64/bin/esbuild"));
    cmd
}

fn persist_dir() -> String {
    paths::state().join("wrangler").display().to_string()
}

pub fn ensure_edge() -> Result<bool> {
    let persist = persist_dir();
    // Always: a migration added while the edge runs applies to the same local D1 file it serves from.
    procs::run(
        "applying D1 migrations",
        wrangler(&["d1", "migrations", "apply", "DB", "--local", "--persist-to", &persist]).env("CI", "true"),
    )?;
    if procs::running("edge").is_some() && probe::get_ok(EDGE_PORT, "/health") {
        return Ok(false);
    }
    procs::stop("edge")?;
    if probe::port_open(EDGE_PORT) {
        return fail(format!("port {EDGE_PORT} is taken by a process this tool did not start"));
    }
    install::worker_toolchain()?;
    say("starting the edge under wrangler dev (the first build of the Worker takes a few minutes)");
    let (port, inspector) = (EDGE_PORT.to_string(), EDGE_INSPECTOR_PORT.to_string());
    // Jobs may not ask for more CPUs than this machine's executor can give.
    let max_cpus = format!("MAX_CPUS:{}", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(8));
    let cmd = wrangler(&[
        "dev",
        "--local",
        "--ip",
        "127.0.0.1",
        "--port",
        &port,
        "--inspector-port",
        &inspector,
        "--persist-to",
        &persist,
        "--show-interactive-dev-session=false",
        // The cron handler then runs on GET /__scheduled?cron=... (crons never fire by themselves in dev).
        "--test-scheduled",
        "--var",
        &max_cpus,
    ]);
    procs::spawn("edge", cmd)?;
    wait_ready("edge", Duration::from_secs(900), || probe::get_ok(EDGE_PORT, "/health"))?;
    Ok(true)
}
