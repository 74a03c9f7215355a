//! The facilitator stopped, then restarted: the paid request is 503 with `Retry-After` and moves no money; the
//! same payment, sent again once the facilitator is back, buys its job. This test stops a shared service (by
//! its pid in `.ouro/run/facilitator.pid`, restored with `cargo xtask up`), so it is a test binary of its own:
//! cargo runs test binaries one after another, never beside the others.

use std::process::Command;
use std::time::{Duration, Instant};

use alloy_primitives::U256;
use ouro_client::sign_payment;
use ouro_e2e::{authorization_used, client, edge_answers_within, finished, usdc_balance, wallet, Account};
use serde_json::json;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn facilitator_url() -> String {
    std::env::var("OURO_FACILITATOR_URL").unwrap_or_else(|_| "http://127.0.0.1:4022".into())
}

async fn facilitator_answers() -> bool {
    let probe = reqwest::Client::new().get(format!("{}/health", facilitator_url())).timeout(Duration::from_secs(2));
    probe.send().await.is_ok_and(|r| r.status().is_success())
}

/// Stops the facilitator's process group (as `cargo xtask down` would, for this one service).
async fn stop_facilitator() {
    let pid_file = format!("{ROOT}/.ouro/run/facilitator.pid");
    let text = std::fs::read_to_string(&pid_file).unwrap_or_else(|e| panic!("{pid_file}: {e}"));
    let pid: u32 = text.trim().parse().unwrap_or_else(|_| panic!("{pid_file} holds {text:?}, not a pid"));
    assert!(pid > 1);
    // Only ever the facilitator's own process group: the pid must be the facilitator, leading its group.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(String::from_utf8_lossy(&cmdline).contains("facilitator/server.mjs"), "pid {pid} is not the facilitator");
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let pgid = stat.rsplit(") ").next().and_then(|rest| rest.split_whitespace().nth(2)).unwrap_or_default();
    assert_eq!(pgid, pid.to_string(), "the facilitator leads its own process group");
    let status = Command::new("kill").args(["-TERM", "--", &format!("-{pid}")]).status().expect("kill runs");
    assert!(status.success(), "kill -TERM -- -{pid}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while facilitator_answers().await {
        assert!(Instant::now() < deadline, "the facilitator did not stop");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn restore_stack() {
    let status = Command::new("cargo").args(["xtask", "up"]).current_dir(ROOT).status().expect("cargo xtask up runs");
    assert!(status.success(), "cargo xtask up");
}

#[tokio::test]
async fn facilitator_down_is_503_with_no_charge_and_the_same_payment_succeeds_once_it_is_back() {
    assert!(edge_answers_within(Duration::from_secs(120)).await, "the edge does not answer");
    let client = client().await;
    let payer = wallet(Account::MoneyFacilitator);
    let body = json!({"script": "echo after the outage"});
    let required = client.submit_unpaid(&body).await.unwrap().into_payment_required().unwrap();
    let payment = sign_payment(&payer.key, &required, |_| {}).unwrap();
    let before_outage = usdc_balance(payer.address).await;

    stop_facilitator().await;
    let outage = client.submit_paid(&body, &payment).await;
    // Read the chain before `up` runs: it tops every test account back up to 1,000 USDC.
    let (after_outage, spent_in_outage) =
        (usdc_balance(payer.address).await, authorization_used(payer.address, &payment.payload.authorization.nonce).await);
    // Put the stack back before any assertion can fail and leave it broken for the tests after this one.
    restore_stack();
    let before = usdc_balance(payer.address).await;
    let outage = outage.unwrap();
    assert_eq!(outage.status, 503, "{}", outage.body);
    assert_eq!(outage.body["code"], "facilitator_unavailable");
    let retry_after: u32 = outage.retry_after().expect("Retry-After").parse().unwrap();
    assert!(retry_after > 0);
    assert!(outage.body.get("job_id").is_none());
    assert_eq!(after_outage, before_outage, "nothing moved");
    assert!(!spent_in_outage);

    assert!(facilitator_answers().await, "cargo xtask up restarted the facilitator");
    let answer = client.submit_paid(&body, &payment).await.unwrap();
    assert_eq!(answer.status, 200, "the same payment, retried: {}", answer.body);
    let job_id = answer.text("job_id").unwrap().to_string();
    assert_eq!(finished(&client, &job_id, Duration::from_secs(180)).await["output"], "after the outage\n");
    let price = U256::from(payment.accepted.amount.parse::<u64>().unwrap());
    assert_eq!(before - usdc_balance(payer.address).await, price, "charged once, after the outage");
}
