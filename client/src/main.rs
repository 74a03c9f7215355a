//! `ouro`: quote, pay for and run a script on an Ouro service. Progress and diagnostics go to stderr so that
//! stdout carries only the job's own output, byte for byte.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand};
use ouro_client::report::{self, CLIENT_ERROR_EXIT};
use ouro_client::{key_from_hex, Client, ClientError, Progress};
use ouro_core::submit::{DEFAULT_CPUS, DEFAULT_TIME_LIMIT_MIN, MAX_CPUS, MAX_TIME_LIMIT_MIN, MIN_CPUS, MIN_TIME_LIMIT_MIN};
use serde_json::{json, Value};

const KEY_ENV: &str = "OURO_PRIVATE_KEY";
/// Beyond the job's own time limit: queueing, pulling the image, reporting back.
const WAIT_SLACK_S: u64 = 120;

#[derive(Parser)]
#[command(name = "ouro", version, about = "Run scripts on an Ouro compute service, paid per job with x402 (USDC)")]
struct Cli {
    /// Base URL of the service.
    #[arg(long, global = true, env = "OURO_URL", default_value = "http://127.0.0.1:8787")]
    url: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show what a job would cost now, with the price breakdown.
    Quote(Shape),
    /// Pay for and run a script (key from OURO_PRIVATE_KEY), print its output, exit with its exit code.
    Run(RunArgs),
    /// Show a job as JSON.
    Job {
        /// The job id (a UUID).
        id: String,
    },
}

#[derive(Args)]
struct Shape {
    /// CPUs for the job.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(i64::from(MIN_CPUS)..=i64::from(MAX_CPUS)))]
    cpus: Option<u32>,
    /// Wall-clock limit in minutes.
    #[arg(long, value_name = "MINUTES", value_parser = clap::value_parser!(u32).range(i64::from(MIN_TIME_LIMIT_MIN)..=i64::from(MAX_TIME_LIMIT_MIN)))]
    time_limit: Option<u32>,
}

#[derive(Args)]
#[command(group(ArgGroup::new("source").required(true).args(["script", "inline"])))]
struct RunArgs {
    /// Script file to run, or `-` to read it from stdin.
    script: Option<PathBuf>,
    /// The script's text, instead of a file.
    #[arg(short = 'c', long = "command", value_name = "TEXT")]
    inline: Option<String>,
    #[command(flatten)]
    shape: Shape,
    /// Prebuilt image (ouro-ubuntu, ouro-python, ouro-nodejs).
    #[arg(long)]
    image: Option<String>,
    /// Give up waiting after this many seconds (default: the time limit plus two minutes).
    #[arg(long, value_name = "SECONDS")]
    wait_timeout: Option<u64>,
}

/// Failures of the command itself, as opposed to the job's.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{KEY_ENV} is not set: export the payer's private key (hex) to pay for jobs")]
    NoKey,
    #[error("reading the script from {path}: {source}")]
    ReadScript {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("writing the job's output: {0}")]
    WriteOutput(#[source] std::io::Error),
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("ouro: error: {}", chain(&e));
            ExitCode::from(CLIENT_ERROR_EXIT as u8)
        }
    }
}

/// An error with its sources, `a: b: c`, so transport errors show the actual cause (connection refused, ...).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

async fn run(cli: Cli) -> Result<i32, CliError> {
    let client = Client::new(cli.url)?;
    match cli.command {
        Command::Quote(shape) => quote(&client, &shape).await,
        Command::Run(args) => run_job(&client, args).await,
        Command::Job { id } => {
            let job = client.job(&id).await?;
            println!("{}", pretty(&job));
            Ok(0)
        }
    }
}

async fn quote(client: &Client, shape: &Shape) -> Result<i32, CliError> {
    let cpus = shape.cpus.unwrap_or(DEFAULT_CPUS);
    let minutes = shape.time_limit.unwrap_or(DEFAULT_TIME_LIMIT_MIN);
    let q = client.quote(cpus, minutes).await?;
    println!("{} for {cpus} CPU(s), up to {minutes} min ({} atomic USDC units)", q.price, q.amount);
    println!("{}", pretty(&q.breakdown));
    Ok(0)
}

async fn run_job(client: &Client, args: RunArgs) -> Result<i32, CliError> {
    // The key is checked before the script is read, so a missing key costs nothing, not even a read of stdin.
    let key = std::env::var(KEY_ENV).map_err(|_| CliError::NoKey)?;
    let key = key_from_hex(&key)?;
    let script = read_script(&args)?;
    let mut body = json!({ "script": script });
    if let Some(cpus) = args.shape.cpus {
        body["cpus"] = json!(cpus);
    }
    if let Some(minutes) = args.shape.time_limit {
        body["time_limit_min"] = json!(minutes);
    }
    if let Some(image) = &args.image {
        body["image"] = json!(image);
    }
    // Naming our own wallet lets the service apply its credits (unused time of earlier jobs) to this price.
    body["submitter_address"] = json!(ouro_core::eip712::address_of(&key).to_checksum(None));

    let paid = client
        .pay_and_submit_with(&key, &body, |progress| match progress {
            Progress::Priced { price, amount, network, payer } => {
                eprintln!("ouro: price {price} ({amount} atomic units on {network}), paid by {payer}");
            }
        })
        .await?;
    let credit = paid.answer.text("credit_applied").filter(|c| *c != "$0.0000");
    if let Some(credit) = credit {
        eprintln!("ouro: credit applied {credit} (from earlier jobs' unused time)");
    }
    if paid.answer.body.get("paid_with_credit").and_then(Value::as_bool) == Some(true) {
        eprintln!("ouro: paid entirely with credit, no transfer");
    } else {
        let tx = if paid.transaction.is_empty() { "(none reported)" } else { paid.transaction.as_str() };
        eprintln!("ouro: settled in transaction {tx}");
    }
    eprintln!("ouro: job {}", paid.job_id);

    let minutes = args.shape.time_limit.unwrap_or(DEFAULT_TIME_LIMIT_MIN);
    let timeout = Duration::from_secs(args.wait_timeout.unwrap_or(u64::from(minutes) * 60 + WAIT_SLACK_S));
    let started = std::time::Instant::now();
    let mut last_status = paid.answer.text("status").unwrap_or("").to_string();
    let job = client
        .wait_with(&paid.job_id, timeout, |job| {
            let status = job.get("status").and_then(Value::as_str).unwrap_or("unknown");
            if status != last_status {
                eprintln!("ouro: {status} ({:.1} s)", started.elapsed().as_secs_f64());
                last_status = status.to_string();
            }
        })
        .await?;

    write_verbatim(&mut std::io::stdout(), &job, "output")?;
    write_verbatim(&mut std::io::stderr(), &job, "error_output")?;
    for (field, stream) in [("output_truncated", "output"), ("error_output_truncated", "error output")] {
        if job.get(field).and_then(Value::as_bool) == Some(true) {
            eprintln!("ouro: the job's {stream} was truncated by the service");
        }
    }
    eprintln!("ouro: {}", report::summary(&job));
    Ok(report::exit_code(&job))
}

fn read_script(args: &RunArgs) -> Result<String, CliError> {
    if let Some(text) = &args.inline {
        return Ok(text.clone());
    }
    // clap's group guarantees one of the two; an absent path reads as stdin rather than panicking.
    let path = args.script.clone().unwrap_or_else(|| PathBuf::from("-"));
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|source| CliError::ReadScript { path: "stdin".into(), source })?;
        return Ok(text);
    }
    std::fs::read_to_string(&path).map_err(|source| CliError::ReadScript { path: path.display().to_string(), source })
}

fn write_verbatim(out: &mut dyn Write, job: &Value, field: &str) -> Result<(), CliError> {
    if let Some(text) = job.get(field).and_then(Value::as_str) {
        out.write_all(text.as_bytes()).and_then(|()| out.flush()).map_err(CliError::WriteOutput)?;
    }
    Ok(())
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}
