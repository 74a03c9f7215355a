//! `ouro-latency`: median paid-submit → completed latency of `echo hello` through the running local stack,
//! against a bare container run of the same script measured in the same run, printed as a ratio.
//!
//! The bare run is the executor's own container lifecycle (`ouro_executor::run::Runner::run`: image check →
//! workspace → create → attach → start → wait → inspect → remove, with the sandbox's HostConfig, network none),
//! driven directly on the engine socket with no edge, payment or dispatch around it. The paid run is what a user
//! sees: `Client::pay_and_submit` (402 → sign → paid submit, settled on the local chain) then `Client::wait`
//! until a terminal status is seen. Rounds interleave the two (alternating which goes first), after one
//! uncounted warm-up of each.
//!
//! A measurement script, not a test: `cargo run -p ouro-bench --bin ouro-latency -- --rounds 15`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use clap::Parser;
use k256::ecdsa::SigningKey;
use ouro_client::{key_from_hex, Client};
use ouro_core::dispatch::JobAssignment;
use ouro_executor::engine;
use ouro_executor::run::Runner;
use serde_json::{json, Value};
use tokio::sync::watch;

const SCRIPT: &str = "echo hello";
const EXPECTED: &str = "hello\n";
const IMAGE_ALIAS: &str = "ouro-ubuntu";
/// Upper bound on `--rounds`: every loop here is bounded in count as well as time.
const MAX_ROUNDS: usize = 200;

#[derive(Debug, Parser)]
#[command(name = "ouro-latency", about = "Paid echo-hello latency through the local stack vs a bare container run.")]
struct Cli {
    /// Counted rounds (each one bare run and one paid job), after one uncounted warm-up of each.
    #[arg(long, default_value_t = 15)]
    rounds: usize,
    /// The edge; only loopback addresses are accepted.
    #[arg(long, default_value = "http://127.0.0.1:8787")]
    edge: String,
    /// Docker engine socket for the bare runs.
    #[arg(long, default_value = "unix:///var/run/docker.sock")]
    docker_socket: String,
    /// Engine image the bare runs use (what the executor maps `ouro-ubuntu` to).
    #[arg(long, default_value = "ouro-ubuntu:latest")]
    image: String,
    /// Anvil accounts file; the payer is the account with index `--account`.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../stack/chain/accounts.json"))]
    accounts: PathBuf,
    /// Account indexes that pay, in turn (1 and 29 are for demos and benchmarks; the others belong to the tests).
    /// The edge admits 10 paid submits per minute per wallet and the rounds pay faster than that, so they rotate.
    #[arg(long, value_delimiter = ',', default_value = "1,29")]
    account: Vec<u64>,
    /// Work dir for the bare runs' workspaces (must differ from the running executor's).
    #[arg(long, default_value = "/tmp/ouro-bench")]
    work_dir: PathBuf,
    /// Per-sample deadline, in seconds (a paid job must be terminal by then; a bare run is killed).
    #[arg(long, default_value_t = 90)]
    sample_timeout_s: u64,
}

/// One bare run, in seconds.
struct Bare {
    total: f64,
    setup: f64,
    compute: f64,
    teardown: f64,
}

/// One paid job, in seconds (client clock, except the server-side fields).
struct Paid {
    total: f64,
    /// `pay_and_submit`: unpaid 402, signing, paid submit including settlement.
    submit: f64,
    /// From the accepted submit to the terminal status seen by polling.
    wait: f64,
    compute: f64,
    /// Server clock: submitted_at → started_at and started_at → completed_at (None if unparseable).
    queued: Option<f64>,
    ran: Option<f64>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    ensure!((1..=MAX_ROUNDS).contains(&cli.rounds), "--rounds must be from 1 to {MAX_ROUNDS}");
    ensure!(is_loopback(&cli.edge), "--edge must be a loopback URL (http://127.0.0.1:...), got {:?}", cli.edge);
    ensure!(cli.work_dir != std::path::Path::new("/tmp/ouro-executor"), "--work-dir must not be the executor's");
    let sample_timeout = Duration::from_secs(cli.sample_timeout_s.max(1));

    ensure!(!cli.account.is_empty(), "--account names at least one account");
    let keys = cli.account.iter().map(|&i| load_key(&cli.accounts, i)).collect::<Result<Vec<_>>>()?;
    let key_for = |round: usize| &keys[round % keys.len()];
    let client = Client::new(cli.edge.clone())?;
    let api_timeout = Duration::from_secs(30);
    let docker = engine::connect(&cli.docker_socket, api_timeout).await.context("connecting to the Docker engine")?;
    let runner =
        Runner::new(docker, HashMap::from([(IMAGE_ALIAS.to_string(), cli.image.clone())]), cli.work_dir.clone(), api_timeout);
    ensure!(runner.image_present(&cli.image).await, "image {} is not in the engine's store", cli.image);
    // Held for the whole run: the runner's abort signal, never sent.
    let (_abort_tx, abort_rx) = watch::channel(false);

    let run_id = std::process::id();
    eprintln!("warm-up (not counted)...");
    bare(&runner, &format!("bench-{run_id}-warm"), sample_timeout, abort_rx.clone()).await?;
    paid(&client, key_for(0), sample_timeout).await?;

    let mut bares = Vec::with_capacity(cli.rounds);
    let mut paids = Vec::with_capacity(cli.rounds);
    for round in 0..cli.rounds {
        let id = format!("bench-{run_id}-{round}");
        // Alternate which goes first so neither always runs right after the other's teardown.
        if round % 2 == 0 {
            bares.push(bare(&runner, &id, sample_timeout, abort_rx.clone()).await?);
            paids.push(paid(&client, key_for(round + 1), sample_timeout).await?);
        } else {
            paids.push(paid(&client, key_for(round + 1), sample_timeout).await?);
            bares.push(bare(&runner, &id, sample_timeout, abort_rx.clone()).await?);
        }
        let (b, p) = (bares.last().unwrap(), paids.last().unwrap());
        eprintln!("round {:>2}: bare {:>6.0} ms   paid {:>6.0} ms", round + 1, b.total * 1e3, p.total * 1e3);
    }

    let n = cli.rounds;
    println!("ouro-latency: `{SCRIPT}` in {} ({IMAGE_ALIAS}), {n} rounds after 1 warm-up each", cli.image);
    println!("{:<34} {:>9} {:>9} {:>9}", "", "min ms", "median ms", "p90 ms");
    let bare_total = Stats::of(bares.iter().map(|b| b.total));
    let paid_total = Stats::of(paids.iter().map(|p| p.total));
    bare_total.print("bare container run (total)");
    paid_total.print("paid submit -> completed (total)");
    println!("ratio median_paid / median_bare = {:.2}", paid_total.median / bare_total.median);
    println!("breakdown (medians):");
    let med = |xs: &mut dyn Iterator<Item = f64>| Stats::of(xs).median * 1e3;
    println!(
        "  bare: setup {:.0} ms, compute {:.0} ms, teardown {:.0} ms",
        med(&mut bares.iter().map(|b| b.setup)),
        med(&mut bares.iter().map(|b| b.compute)),
        med(&mut bares.iter().map(|b| b.teardown)),
    );
    let queued: Vec<f64> = paids.iter().filter_map(|p| p.queued).collect();
    let ran: Vec<f64> = paids.iter().filter_map(|p| p.ran).collect();
    println!(
        "  paid: pay_and_submit {:.0} ms, wait-to-terminal {:.0} ms, job compute_duration_s {:.0} ms; \
         server clock submitted->started {}, started->completed {}",
        med(&mut paids.iter().map(|p| p.submit)),
        med(&mut paids.iter().map(|p| p.wait)),
        med(&mut paids.iter().map(|p| p.compute)),
        opt_ms(&queued),
        opt_ms(&ran),
    );
    println!("  (Client::wait polls after 100, 150, 225, ... up to 1000 ms, so wait-to-terminal is quantized by polling)");
    Ok(())
}

/// One container run of the script through the executor's own lifecycle, no edge involved.
async fn bare(runner: &Runner, id: &str, timeout: Duration, abort: watch::Receiver<bool>) -> Result<Bare> {
    let job = JobAssignment {
        job_id: id.to_string(),
        image: IMAGE_ALIAS.to_string(),
        script: SCRIPT.to_string(),
        files: Vec::new(),
        entrypoint: None,
        cpus: 1,
        time_limit_min: 1,
        output_cap_bytes: 1 << 20,
        mount_storage: false,
        output_limits: Default::default(),
    };
    let started = Instant::now();
    // The runner kills the container at `timeout`; the outer bound covers a wedged engine call sequence.
    let report = tokio::time::timeout(timeout * 2, runner.run(&job, timeout, abort, || {}))
        .await
        .with_context(|| format!("bare run {id} did not finish"))?;
    let total = started.elapsed().as_secs_f64();
    let o = &report.outcome;
    if o.failure.is_some() || o.exit_code != Some(0) || o.output != EXPECTED {
        bail!("bare run {id} did not print {EXPECTED:?} and exit 0: {o:?}");
    }
    Ok(Bare { total, setup: report.setup_s, compute: o.compute_duration_s, teardown: report.teardown_s })
}

/// One paid job through the stack, timed from the start of the submit to the terminal status seen.
async fn paid(client: &Client, key: &SigningKey, timeout: Duration) -> Result<Paid> {
    let body = json!({ "script": SCRIPT });
    let started = Instant::now();
    let job = tokio::time::timeout(timeout, client.pay_and_submit(key, &body))
        .await
        .context("paid submit timed out")?
        .context("paid submit failed")?;
    let submit = started.elapsed().as_secs_f64();
    let remaining = timeout.saturating_sub(started.elapsed());
    let done = client.wait(&job.job_id, remaining).await.with_context(|| format!("waiting for job {}", job.job_id))?;
    let total = started.elapsed().as_secs_f64();

    let status = done.get("status").and_then(Value::as_str).unwrap_or("");
    let output = done.get("output").and_then(Value::as_str).unwrap_or("");
    if status != "completed" || output != EXPECTED {
        bail!(
            "paid job {} ended {status:?} with output {output:?} (expected completed, {EXPECTED:?}): {}",
            job.job_id,
            ouro_client::report::summary(&done)
        );
    }
    let compute = done.get("compute_duration_s").and_then(Value::as_f64).unwrap_or(f64::NAN);
    let at = |field: &str| done.get(field).and_then(Value::as_str).and_then(millis_of_day);
    let (sub, sta, com) = (at("submitted_at"), at("started_at"), at("completed_at"));
    Ok(Paid {
        total,
        submit,
        wait: total - submit,
        compute,
        queued: sub.zip(sta).map(|(a, b)| day_diff_s(a, b)),
        ran: sta.zip(com).map(|(a, b)| day_diff_s(a, b)),
    })
}

fn load_key(path: &PathBuf, index: u64) -> Result<SigningKey> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let accounts: Value = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let hex = accounts
        .get("accounts")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().find(|x| x.get("index").and_then(Value::as_u64) == Some(index)))
        .and_then(|x| x.get("private_key"))
        .and_then(Value::as_str)
        .with_context(|| format!("no account {index} with a private_key in {}", path.display()))?;
    Ok(key_from_hex(hex)?)
}

/// `http://127.0.0.1[:port]...` or `http://localhost[:port]...` only.
fn is_loopback(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else { return false };
    let host = rest.split(['/', '?']).next().unwrap_or("");
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
    matches!(host, "127.0.0.1" | "localhost")
}

/// Milliseconds since midnight of `2026-12-03T09:26:26.123Z` (the API's only time format).
fn millis_of_day(ts: &str) -> Option<i64> {
    let time = ts.split_once('T')?.1.strip_suffix('Z')?;
    let (hms, ms) = time.split_once('.').unwrap_or((time, "0"));
    let mut parts = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (h, m, s) = (parts.next()??, parts.next()??, parts.next()??);
    Some(((h * 60 + m) * 60 + s) * 1000 + ms.parse::<i64>().ok()?)
}

/// `b - a` in seconds for two times of day at most a day apart.
fn day_diff_s(a: i64, b: i64) -> f64 {
    (b - a).rem_euclid(86_400_000) as f64 / 1e3
}

fn opt_ms(xs: &[f64]) -> String {
    if xs.is_empty() {
        "n/a".into()
    } else {
        format!("{:.0} ms", Stats::of(xs.iter().copied()).median * 1e3)
    }
}

struct Stats {
    min: f64,
    median: f64,
    p90: f64,
}

impl Stats {
    fn of(xs: impl Iterator<Item = f64>) -> Stats {
        let mut v: Vec<f64> = xs.collect();
        assert!(!v.is_empty());
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
        // Nearest rank.
        let p90 = v[((0.9 * n as f64).ceil() as usize).clamp(1, n) - 1];
        Stats { min: v[0], median, p90 }
    }

    fn print(&self, label: &str) {
        println!("{label:<34} {:>9.0} {:>9.0} {:>9.0}", self.min * 1e3, self.median * 1e3, self.p90 * 1e3);
    }
}
