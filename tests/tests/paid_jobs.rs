//! Paid jobs on the real stack: real settlement on anvil, real containers, results read back over HTTP.

use std::time::{Duration, Instant};

use alloy_primitives::U256;
use ouro_core::pricing::parse_usd;
use ouro_e2e::{client, finished, str_of, usdc_balance, wallet, Account};
use serde_json::json;

const SHORT: Duration = Duration::from_secs(180);

#[tokio::test]
async fn paid_echo_hello_completes_and_costs_exactly_the_price() {
    let client = client().await;
    let payer = wallet(Account::HelloBalance);
    let before = usdc_balance(payer.address).await;
    let paid = client.pay_and_submit(&payer.key, &json!({"script": "echo hello"})).await.unwrap();
    assert_eq!(paid.answer.status, 200);
    assert_eq!(paid.answer.body["status"], "pending");
    let settlement = paid.answer.payment_response.as_ref().expect("PAYMENT-RESPONSE on success");
    assert!(settlement.success);
    assert_eq!(settlement.transaction.len(), 66, "a tx hash: {}", settlement.transaction);

    let job = finished(&client, &paid.job_id, SHORT).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["output"], "hello\n");
    assert_eq!(job["error_output"], "");
    assert_eq!(job["exit_code"], 0);
    assert!(job["fault"].is_null() && job["failure_reason"].is_null());
    assert!(job["compute_duration_s"].as_f64().unwrap() > 0.0);
    assert_eq!(job["payment"]["transaction"], settlement.transaction.as_str());
    let statuses: Vec<&str> = job["event_log"].as_array().unwrap().iter().map(|e| str_of(e, "message")).collect();
    assert!(statuses.len() >= 3, "queued, accepted, running, completed: {statuses:?}");

    let price = U256::from(parse_usd(&paid.price).unwrap());
    assert_eq!(before - usdc_balance(payer.address).await, price, "the payer paid exactly {}", paid.price);
}

#[tokio::test]
async fn non_zero_exit_is_a_user_error_with_its_code() {
    let client = client().await;
    let payer = wallet(Account::ExitCode);
    let paid = client.pay_and_submit(&payer.key, &json!({"script": "echo partial; exit 3"})).await.unwrap();
    let job = finished(&client, &paid.job_id, SHORT).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["exit_code"], 3);
    assert_eq!(job["fault"], "user_error");
    assert_eq!(job["failure_reason"], "non_zero_exit");
    assert_eq!(job["failure_stage"], "run");
    assert_eq!(job["output"], "partial\n");
}

#[tokio::test]
async fn stdout_and_stderr_are_kept_apart_and_the_sandbox_holds() {
    let client = client().await;
    let payer = wallet(Account::Streams);
    let script = "echo out; echo err >&2; id -u; ls /sys/class/net; touch /etc/x 2>/dev/null && echo rootfs-writable; touch /tmp/ok && echo tmp-writable";
    let paid = client.pay_and_submit(&payer.key, &json!({ "script": script })).await.unwrap();
    let job = finished(&client, &paid.job_id, SHORT).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["output"], "out\n65534\nlo\ntmp-writable\n", "unprivileged, loopback only, read-only root");
    assert_eq!(job["error_output"], "err\n");
}

#[tokio::test]
async fn python_image_runs_python() {
    let client = client().await;
    let payer = wallet(Account::Images);
    let body = json!({"script": "#!/usr/bin/env python3\nprint(6 * 7)\n", "image": "ouro-python"});
    let paid = client.pay_and_submit(&payer.key, &body).await.unwrap();
    let job = finished(&client, &paid.job_id, SHORT).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["output"], "42\n");
    assert_eq!(job["image"], "ouro-python");
}

#[tokio::test]
async fn time_limit_kills_at_about_a_minute_and_keeps_earlier_output() {
    let client = client().await;
    let payer = wallet(Account::TimeLimit);
    let body = json!({"script": "echo before the limit; sleep 120; echo never", "time_limit_min": 1});
    let started = Instant::now();
    let paid = client.pay_and_submit(&payer.key, &body).await.unwrap();
    let job = finished(&client, &paid.job_id, Duration::from_secs(300)).await;
    let waited = started.elapsed().as_secs_f64();
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["failure_reason"], "time_limit_exceeded");
    assert_eq!(job["fault"], "user_error");
    assert_eq!(job["output"], "before the limit\n", "output printed before the kill is kept");
    let ran = job["compute_duration_s"].as_f64().unwrap();
    assert!((58.0..75.0).contains(&ran), "killed at about 60 s of run time, ran {ran} s");
    assert!(waited < 150.0, "the client saw the end {waited} s after paying");
}
