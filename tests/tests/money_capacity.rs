//! Capacity full → 503 with `Retry-After` before any 402 or settlement, and the payer's balance unchanged; once
//! the queue drains, the same payment buys its job. The test fills the executor's slots (`cargo xtask up`
//! starts it with 4) with sleeping jobs and then the queue up to `MAX_QUEUE_DEPTH` (wrangler.toml), so every
//! other submit meanwhile would be refused too: a test binary of its own (cargo runs binaries one by one).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use alloy_primitives::U256;
use ouro_client::{sign_payment, Client};
use ouro_e2e::{
    authorization_used, client, edge_answers_within, edge_url, finished, usdc_balance, wallet, Account, Wallet,
};
use serde_json::{json, Value};

fn executor_url() -> String {
    std::env::var("OURO_EXECUTOR_URL").unwrap_or_else(|_| "http://127.0.0.1:8788".into())
}

/// `MAX_QUEUE_DEPTH` as wrangler.toml documents it (the local stack does not override it).
fn max_queue_depth() -> usize {
    let toml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../wrangler.toml")).unwrap();
    toml.lines()
        .find_map(|l| l.trim().strip_prefix("MAX_QUEUE_DEPTH = "))
        .and_then(|v| v.trim_matches('"').parse().ok())
        .expect("MAX_QUEUE_DEPTH in wrangler.toml")
}

async fn slots_free() -> u64 {
    let health: Value = reqwest::get(format!("{}/v1/health", executor_url())).await.unwrap().json().await.unwrap();
    health["slots_free"].as_u64().expect("slots_free")
}

/// Pays for `body` from `payer`; the job id, or `None` when capacity refused it (unpaid or paid step).
async fn buy(payer: &Wallet, body: &Value) -> Option<String> {
    let client = Client::new(edge_url()).unwrap();
    let unpaid = client.submit_unpaid(body).await.unwrap();
    if unpaid.status == 503 {
        return None;
    }
    let payment = sign_payment(&payer.key, &unpaid.into_payment_required().unwrap(), |_| {}).unwrap();
    let paid = client.submit_paid(body, &payment).await.unwrap();
    match paid.status {
        200 => Some(paid.text("job_id").unwrap().to_string()),
        503 => None,
        other => panic!("HTTP {other}: {}", paid.body),
    }
}

#[tokio::test]
async fn a_full_service_says_503_before_any_payment_and_takes_the_same_payment_once_it_has_room() {
    // A fresh rate window: this test pays up to ~9 times a minute from each of its wallets.
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    tokio::time::sleep(Duration::from_secs(61 - now % 60)).await;
    assert!(edge_answers_within(Duration::from_secs(120)).await, "the edge does not answer");
    let client = client().await;
    let probe = wallet(Account::CapacityProbe);
    let probe_body = json!({"script": "echo room again"});
    let required = client.submit_unpaid(&probe_body).await.unwrap().into_payment_required().unwrap();
    let payment = sign_payment(&probe.key, &required, |_| {}).unwrap();
    let before = usdc_balance(probe.address).await;

    // Every slot busy...
    let filler = wallet(Account::MoneyCapacity);
    let mut jobs = Vec::new();
    for _ in 0..4 {
        jobs.push(buy(&filler, &json!({"script": "sleep 45", "time_limit_min": 1})).await.expect("room for fillers"));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while slots_free().await > 0 {
        assert!(Instant::now() < deadline, "the fillers did not take the slots");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // ...and the queue filled to its depth, paying from three other wallets (the per-wallet limit is 10 a minute;
    // the probe's wallet pays nothing else, so its balance tells whether the refused payment moved money).
    let payers = [wallet(Account::CapacityA), wallet(Account::CapacityB), wallet(Account::CapacityC)];
    let mut refused = false;
    for i in 0..(max_queue_depth() + 4) {
        match buy(&payers[i % 3], &json!({"script": "true"})).await {
            Some(job) => jobs.push(job),
            None => {
                refused = true;
                break;
            }
        }
    }
    assert!(refused, "capacity never ran out with {} jobs waiting", jobs.len() - 4);

    // Full: the quote is 503 with Retry-After and no price...
    let quote = client.submit_unpaid(&probe_body).await.unwrap();
    assert_eq!(quote.status, 503, "{}", quote.body);
    assert_eq!(quote.body["code"], "capacity_exhausted");
    assert!(quote.retry_after().is_some_and(|s| s.parse::<u32>().is_ok_and(|s| s > 0)));
    assert!(quote.payment_required.is_none(), "no 402 when the job could not run");
    // ...and a payment signed before is refused before settlement: no money moves.
    let paid = client.submit_paid(&probe_body, &payment).await.unwrap();
    assert_eq!((paid.status, paid.body["code"].as_str()), (503, Some("capacity_exhausted")), "{}", paid.body);
    assert!(paid.retry_after().is_some());
    assert_eq!(usdc_balance(probe.address).await, before, "nothing charged while full");
    assert!(!authorization_used(probe.address, &payment.payload.authorization.nonce).await);

    // Once the queue drains (asked with unpaid quotes: a paid retry counts against the wallet's limit), the
    // same payment buys its job.
    let deadline = Instant::now() + Duration::from_secs(240);
    while client.submit_unpaid(&probe_body).await.unwrap().status == 503 {
        assert!(Instant::now() < deadline, "the queue never drained");
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let answer = client.submit_paid(&probe_body, &payment).await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    let job = answer.text("job_id").unwrap().to_string();
    assert_eq!(finished(&client, &job, Duration::from_secs(180)).await["output"], "room again\n");
    let price = U256::from(payment.accepted.amount.parse::<u64>().unwrap());
    assert_eq!(before - usdc_balance(probe.address).await, price, "charged once, when there was room");
    for job in &jobs {
        finished(&client, job, Duration::from_secs(300)).await;
    }
}
