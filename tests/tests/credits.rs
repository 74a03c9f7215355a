//! Credits on the real stack: unused time is credited pro rata when a job ends, and the wallet's credit pays
//! (part of) its next job when the request names the wallet (`submitter_address`); a job the credit covers is
//! free and moves no money. The expected figures come from `ouro_core::credits`, the rule itself, with the
//! pricing the edge runs (the defaults: `wrangler.toml` sets no price knobs).

use std::time::{Duration, Instant};

use alloy_primitives::U256;
use ouro_client::SubmitAnswer;
use ouro_core::credits::{apply, earned, time_part, Application, EndedJob, Ending};
use ouro_core::pricing::{format_usd, parse_usd, PriceRequest, PricingConfig, SubmissionMode};
use ouro_e2e::{authorization_used, client_when_up, credit_balance, credits_of, finished, usdc_balance, wallet, Account, Wallet};
use serde_json::{json, Value};

const SHORT: Duration = Duration::from_secs(180);

/// The credit and the amount due a 402 quotes.
fn quoted(unpaid: &SubmitAnswer) -> (u64, u64) {
    assert_eq!(unpaid.status, 402, "{}", unpaid.body);
    let accepted = &unpaid.payment_required.as_ref().expect("PAYMENT-REQUIRED").accepts[0];
    let credit = accepted.extra.other.get("credit").and_then(Value::as_str).map(|c| c.parse().unwrap()).unwrap_or(0);
    (credit, accepted.amount.parse().unwrap())
}

fn full_price(unpaid: &SubmitAnswer) -> u64 {
    parse_usd(unpaid.body["price"].as_str().expect("price in the 402 body")).unwrap()
}

/// Quote → check the quote applies the wallet's credit by the rule → pay → check the answer and the chain.
async fn pay_with_credit(w: &Wallet, body: &Value) -> (String, Application) {
    let client = client_when_up().await;
    let before_credit = credit_balance(w).await;
    let unpaid = client.submit_unpaid(body).await.unwrap();
    let price = full_price(&unpaid);
    let expected = apply(before_credit, price);
    assert_eq!(quoted(&unpaid), (expected.credit, expected.due), "the 402 applies {before_credit} of credit to {price}");

    let before = usdc_balance(w.address).await;
    let required = unpaid.payment_required.clone().unwrap();
    let payment = ouro_client::sign_payment(&w.key, &required, |_| {}).unwrap();
    let paid = client.submit_paid(body, &payment).await.unwrap();
    assert_eq!(paid.status, 200, "{}", paid.body);
    assert_eq!(paid.body["credit_applied"], format_usd(expected.credit), "{}", paid.body);
    assert_eq!(paid.body["paid_with_credit"], expected.is_free(), "{}", paid.body);
    assert_eq!(paid.body["amount_paid"], expected.due.to_string());
    assert_eq!(before - usdc_balance(w.address).await, U256::from(expected.due), "the payer paid exactly the rest");
    if expected.is_free() {
        let nonce = &payment.payload.authorization.nonce;
        assert!(!authorization_used(w.address, nonce).await, "a free job's authorization of 0 is never settled");
    }
    assert_eq!(credit_balance(w).await, before_credit - expected.credit, "the credit applied is spent");
    (paid.body["job_id"].as_str().unwrap().to_string(), expected)
}

/// The credit the rule gives `job` (a finished job's detail) bought as `bought`.
fn rule_credit(job: &Value, bought: Application) -> u64 {
    let minutes = job["time_limit_min"].as_u64().unwrap() as u32;
    let cpus = job["cpus"].as_u64().unwrap() as u32;
    let request = PriceRequest { cpus, time_limit_min: minutes, mode: SubmissionMode::Script };
    let ending = Ending::of(
        job["status"].as_str().unwrap(),
        job["failure_reason"].as_str(),
        job["fault"].as_str(),
    )
    .unwrap();
    let price = bought.credit + bought.due;
    earned(&EndedJob {
        price,
        time_part: time_part(&PricingConfig::default(), request, price),
        paid: bought.due,
        credit_spent: bought.credit,
        time_limit_min: minutes,
        used_s: job["compute_duration_s"].as_f64(),
        ending,
    })
}

/// Waits until the wallet's credit balance is `expected` (the credit is written right after the result).
async fn balance_becomes(w: &Wallet, expected: u64) {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let now = credit_balance(w).await;
        if now == expected {
            return;
        }
        assert!(Instant::now() < until, "credit balance is {now}, expected {expected}: {}", credits_of(w).await);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn unused_time_is_credited_pro_rata_and_the_next_job_uses_it() {
    let client = client_when_up().await;
    let w = wallet(Account::CreditsProRata);
    let me = format!("{:#x}", w.address);

    // A job that ends in about 5 s of its 1-minute limit.
    let body = json!({"script": "sleep 4; echo done", "time_limit_min": 1, "submitter_address": me});
    // The balance right after the spend, from the one before it: a short job may have earned its credit by the
    // time a read after the payment arrives.
    let before = credit_balance(&w).await;
    let (job_id, bought) = pay_with_credit(&w, &body).await;
    let after_spend = before - bought.credit;
    let job = finished(&client, &job_id, SHORT).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["credit_applied"].as_f64().unwrap(), bought.credit as f64 / 1e6, "{job}");
    let used = job["compute_duration_s"].as_f64().unwrap();
    assert!((4.0..20.0).contains(&used), "{used}");
    let credit = rule_credit(&job, bought);
    // The time part of a $0.01 job is 1/6 of it (compute $0.0002 of a $0.0012 floor); 55 of 60 s unused.
    assert!(credit > 0 && credit < (bought.credit + bought.due) / 6, "{credit}");
    balance_becomes(&w, after_spend + credit).await;
    let history = credits_of(&w).await;
    let entry = history["entries"].as_array().unwrap().iter().find(|e| e["job_id"] == job_id.as_str() && e["kind"] == "earn");
    let entry = entry.unwrap_or_else(|| panic!("the earned credit is a ledger row: {history}"));
    assert_eq!(entry["rule"], "unused_time");
    assert_eq!(entry["amount_atomic"], credit.to_string());

    // The next job of the wallet uses it, and pays only the rest.
    let next = json!({"script": "echo next", "time_limit_min": 1, "submitter_address": me});
    let (next_id, next_bought) = pay_with_credit(&w, &next).await;
    assert!(next_bought.credit > 0, "the credit applies to the next job");
    let next_job = finished(&client, &next_id, SHORT).await;
    assert_eq!(next_job["status"], "completed", "{next_job}");
    assert_eq!(next_job["credit_applied"].as_f64().unwrap(), next_bought.credit as f64 / 1e6);
    let rows = credits_of(&w).await;
    assert!(
        rows["entries"].as_array().unwrap().iter().any(|e| e["job_id"] == next_id.as_str() && e["kind"] == "spend"),
        "the credit spent is a ledger row pointing at the job it paid for: {rows}"
    );
}

#[tokio::test]
async fn a_job_the_credit_covers_is_free_and_moves_no_money() {
    let client = client_when_up().await;
    let w = wallet(Account::CreditsFree);
    let me = format!("{:#x}", w.address);

    // A 60-minute limit that ends at once leaves almost all of its time part, more than a 1-minute job costs.
    let long = json!({"script": "true", "time_limit_min": 60, "submitter_address": me});
    let before = credit_balance(&w).await;
    let (long_id, bought) = pay_with_credit(&w, &long).await;
    let after_spend = before - bought.credit;
    let job = finished(&client, &long_id, SHORT).await;
    assert_eq!(job["status"], "completed", "{job}");
    let credit = rule_credit(&job, bought);
    balance_becomes(&w, after_spend + credit).await;

    let short = json!({"script": "echo free", "time_limit_min": 1, "submitter_address": me});
    let unpaid = client.submit_unpaid(&short).await.unwrap();
    let (quoted_credit, due) = quoted(&unpaid);
    assert_eq!(due, 0, "the credit covers it: the 402 asks for 0 ({})", unpaid.body);
    assert_eq!(quoted_credit, full_price(&unpaid).min(after_spend + credit));
    let (id, free) = pay_with_credit(&w, &short).await;
    assert!(free.is_free());
    let job = finished(&client, &id, SHORT).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["output"], "free\n");
    assert!(job["payment"]["transaction"].is_null() || job["payment"]["transaction"] == "", "{job}");

    // The same authorization of 0 again is the same job, and spends nothing more.
    let balance = credit_balance(&w).await;
    let unpaid = client.submit_unpaid(&short).await.unwrap();
    let payment = ouro_client::sign_payment(&w.key, unpaid.payment_required.as_ref().unwrap(), |_| {}).unwrap();
    let first = client.submit_paid(&short, &payment).await.unwrap();
    assert_eq!(first.status, 200, "{}", first.body);
    let again = client.submit_paid(&short, &payment).await.unwrap();
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["job_id"], first.body["job_id"]);
    let spent_once = quoted(&unpaid).0;
    let ended = finished(&client, first.body["job_id"].as_str().unwrap(), SHORT).await;
    assert_eq!(ended["status"], "completed");
    let bought = Application { credit: spent_once, due: 0 };
    balance_becomes(&w, balance - spent_once + rule_credit(&ended, bought)).await;
}

#[tokio::test]
async fn credit_is_bound_to_its_wallet_and_spent_once() {
    let client = client_when_up().await;
    let w = wallet(Account::CreditsGuard);
    let me = format!("{:#x}", w.address);
    let long = |tag: &str| json!({"script": format!("echo {tag}"), "time_limit_min": 60, "submitter_address": me});

    let before = credit_balance(&w).await;
    if before < 1_000 {
        let (id, bought) = pay_with_credit(&w, &long("earn")).await;
        let after_spend = before - bought.credit;
        let job = finished(&client, &id, SHORT).await;
        balance_becomes(&w, after_spend + rule_credit(&job, bought)).await;
    }
    let mut credit = credit_balance(&w).await;

    // A request that does not name its wallet pays the full price: credits never change an unaware client's bill.
    let unaware = json!({"script": "echo unaware", "time_limit_min": 1});
    let unpaid = client.submit_unpaid(&unaware).await.unwrap();
    assert_eq!(quoted(&unpaid), (0, full_price(&unpaid)));
    let paid = client.pay_and_submit(&w.key, &unaware).await.unwrap();
    assert_eq!(paid.answer.body["credit_applied"], "$0.0000");
    assert_eq!(paid.answer.body["paid_with_credit"], false);
    let job = finished(&client, &paid.job_id, SHORT).await;
    let full = Application { credit: 0, due: parse_usd(&paid.price).unwrap() };
    credit += rule_credit(&job, full);
    balance_becomes(&w, credit).await;

    // Another wallet naming this one gets its quote, but cannot pay with it.
    // A key of no funded account: it can sign, it holds nothing.
    let thief = k256::ecdsa::SigningKey::from_slice(alloy_primitives::keccak256(b"ouro credits thief").as_slice()).unwrap();
    let unpaid = client.submit_unpaid(&long("theft")).await.unwrap();
    assert!(quoted(&unpaid).0 > 0, "the quote applies the named wallet's credit");
    let payment = ouro_client::sign_payment(&thief, unpaid.payment_required.as_ref().unwrap(), |_| {}).unwrap();
    let refused = client.submit_paid(&long("theft"), &payment).await.unwrap();
    assert_eq!(refused.status, 402, "{}", refused.body);
    assert_eq!(credit_balance(&w).await, credit, "nobody else spends it");

    // The owner's credited quote paid with a body that names nobody: the credit goes only with the named wallet.
    let unpaid = client.submit_unpaid(&long("unnamed")).await.unwrap();
    assert!(quoted(&unpaid).0 > 0);
    let payment = ouro_client::sign_payment(&w.key, unpaid.payment_required.as_ref().unwrap(), |_| {}).unwrap();
    let unnamed = json!({"script": "echo unnamed", "time_limit_min": 60});
    let refused = client.submit_paid(&unnamed, &payment).await.unwrap();
    assert_eq!(refused.status, 402, "{}", refused.body);
    assert!(!authorization_used(w.address, &payment.payload.authorization.nonce).await);
    assert_eq!(credit_balance(&w).await, credit, "the credit stays");

    // Two jobs quoted with the same credit, paid at once: one spends it, the other is refused before payment.
    let before = usdc_balance(w.address).await;
    let (a, b) = (long("race a"), long("race b"));
    let (qa, qb) = (client.submit_unpaid(&a).await.unwrap(), client.submit_unpaid(&b).await.unwrap());
    let (ca, da) = quoted(&qa);
    let (cb, db) = quoted(&qb);
    // The dues may differ (demand pricing moves with other suites' jobs); the claims on the credit may not.
    assert_eq!(ca, cb, "both quotes apply the same credit");
    assert!(ca > 0 && 2 * ca > credit, "one credit, two claims on it: {ca} of {credit}");
    let pa = ouro_client::sign_payment(&w.key, qa.payment_required.as_ref().unwrap(), |_| {}).unwrap();
    let pb = ouro_client::sign_payment(&w.key, qb.payment_required.as_ref().unwrap(), |_| {}).unwrap();
    let (ra, rb) = tokio::join!(client.submit_paid(&a, &pa), client.submit_paid(&b, &pb));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    let mut statuses = [ra.status, rb.status];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "{} / {}", ra.body, rb.body);
    let (loser_payment, winner, due) = if ra.status == 200 { (&pb, &ra, da) } else { (&pa, &rb, db) };
    assert_eq!(before - usdc_balance(w.address).await, U256::from(due), "only the winner paid");
    assert!(!authorization_used(w.address, &loser_payment.payload.authorization.nonce).await);
    let won = finished(&client, winner.body["job_id"].as_str().unwrap(), SHORT).await;
    balance_becomes(&w, credit - ca + rule_credit(&won, Application { credit: ca, due })).await;
}
