//! Money safety against the running stack, with real settlement on anvil: one authorization buys at most one
//! job however often and however concurrently it is sent; distinct authorizations each buy theirs; the
//! payment-identifier extension; bound quotes; the per-wallet rate limit (never after money was taken); a payer
//! without funds; the v1 fields of the 402; CORS for browsers. Each test pays from its own account.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alloy_primitives::{Address, U256};
use k256::ecdsa::SigningKey;
use ouro_client::{sign_payment, Client, SubmitAnswer};
use ouro_core::pricing::parse_usd;
use ouro_core::x402::{header, quote as bound_quote, PaymentPayload, PaymentRequired};
use ouro_e2e::{
    authorization_used, block_number, client, edge_url, finished, transfers, usdc_balance, wallet, Account, PAY_TO,
};
use serde_json::{json, Value};

fn pay_to() -> Address {
    PAY_TO.parse().unwrap()
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

async fn required_for(client: &Client, body: &Value) -> PaymentRequired {
    let answer = client.submit_unpaid(body).await.unwrap();
    assert_eq!(answer.status, 402, "{}", answer.body);
    answer.into_payment_required().unwrap()
}

/// Sends `payment` for `body` `n` times at once.
async fn concurrently(body: &Value, payment: &PaymentPayload, n: usize) -> Vec<SubmitAnswer> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (body, payment) = (body.clone(), payment.clone());
            tokio::spawn(async move { Client::new(edge_url()).unwrap().submit_paid(&body, &payment).await.unwrap() })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

fn job_id(answer: &SubmitAnswer) -> String {
    answer.text("job_id").unwrap_or_else(|| panic!("no job_id: {}", answer.body)).to_string()
}

#[tokio::test]
async fn one_authorization_sent_sequentially_and_concurrently_buys_one_job_and_one_settlement() {
    let client = client().await;
    let payer = wallet(Account::MoneyReplay);
    let body = json!({"script": "echo bought once"});
    let (start_block, before) = (block_number().await, usdc_balance(payer.address).await);
    let payment = sign_payment(&payer.key, &required_for(&client, &body).await, |_| {}).unwrap();

    // Five at once: exactly one settles; the others wait for it and answer with its job (or, if it took too
    // long, say "in progress" — never a second job).
    let answers = concurrently(&body, &payment, 5).await;
    let paid: Vec<&SubmitAnswer> = answers.iter().filter(|a| a.status == 200).collect();
    assert!(!paid.is_empty(), "{:?}", answers.iter().map(|a| (a.status, a.body.clone())).collect::<Vec<_>>());
    for answer in &answers {
        assert!(
            answer.status == 200 || (answer.status == 409 && answer.body["code"] == "payment_in_progress"),
            "{} {}",
            answer.status,
            answer.body
        );
    }
    let job = job_id(paid[0]);
    assert!(paid.iter().all(|a| job_id(a) == job), "one job for every answer");
    let tx = &paid[0].payment_response.as_ref().expect("PAYMENT-RESPONSE").transaction;
    assert!(paid.iter().all(|a| &a.payment_response.as_ref().unwrap().transaction == tx), "one settlement");

    // And again, one after another.
    for _ in 0..2 {
        let again = client.submit_paid(&body, &payment).await.unwrap();
        assert_eq!((again.status, job_id(&again)), (200, job.clone()), "{}", again.body);
    }
    let other = client.submit_with_header(&json!({"script": "echo another"}), &header::encode(&payment)).await.unwrap();
    assert_eq!((other.status, other.body["code"].as_str()), (409, Some("payment_conflict")), "{}", other.body);

    let done = finished(&client, &job, Duration::from_secs(180)).await;
    assert_eq!(done["output"], "bought once\n");
    let price = U256::from(payment.accepted.amount.parse::<u64>().unwrap());
    assert_eq!(before - usdc_balance(payer.address).await, price, "charged once");
    assert!(authorization_used(payer.address, &payment.payload.authorization.nonce).await);
    assert_eq!(transfers(payer.address, pay_to(), start_block).await, 1, "one transfer on chain");
}

#[tokio::test]
async fn five_concurrent_distinct_authorizations_buy_five_jobs() {
    let client = client().await;
    let payer = wallet(Account::MoneyConcurrent);
    let (start_block, before) = (block_number().await, usdc_balance(payer.address).await);
    let mut tasks = Vec::new();
    let mut total = 0u64;
    for i in 0..5 {
        let body = json!({"script": format!("echo distinct {i}")});
        let payment = sign_payment(&payer.key, &required_for(&client, &body).await, |_| {}).unwrap();
        total += payment.accepted.amount.parse::<u64>().unwrap();
        tasks.push(tokio::spawn(async move {
            Client::new(edge_url()).unwrap().submit_paid(&body, &payment).await.unwrap()
        }));
    }
    let mut jobs = Vec::new();
    for task in tasks {
        let answer = task.await.unwrap();
        assert_eq!(answer.status, 200, "{}", answer.body);
        jobs.push(job_id(&answer));
    }
    let mut distinct = jobs.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 5, "five jobs");
    for (i, job) in jobs.iter().enumerate() {
        assert_eq!(finished(&client, job, Duration::from_secs(240)).await["output"], format!("distinct {i}\n"));
    }
    assert_eq!(before - usdc_balance(payer.address).await, U256::from(total), "five payments");
    assert_eq!(transfers(payer.address, pay_to(), start_block).await, 5, "five settlements on chain");
}

#[tokio::test]
async fn a_payment_identifier_answers_its_payment_and_refuses_another() {
    let client = client().await;
    let payer = wallet(Account::MoneyIdentifier);
    let body = json!({"script": "echo identified"});
    let required = required_for(&client, &body).await;
    let declared = required.extensions.as_ref().and_then(|e| e.get("payment-identifier"));
    assert_eq!(declared.map(|d| &d["info"]["required"]), Some(&json!(false)), "the 402 declares the extension");

    let id = format!("pay_{}", hex::encode(unix_now().to_be_bytes()));
    let with_id = |mut p: PaymentPayload| {
        p.extensions = Some(json!({"payment-identifier": {"info": {"required": false, "id": id}}}));
        p
    };
    let first = with_id(sign_payment(&payer.key, &required, |_| {}).unwrap());
    let answer = client.submit_paid(&body, &first).await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    let again = client.submit_paid(&body, &first).await.unwrap();
    assert_eq!((again.status, job_id(&again)), (200, job_id(&answer)), "same id, same payment: the same answer");

    let second = with_id(sign_payment(&payer.key, &required_for(&client, &body).await, |_| {}).unwrap());
    let conflict = client.submit_paid(&body, &second).await.unwrap();
    assert_eq!(conflict.status, 409, "same id, another payment: {}", conflict.body);
    assert!(!authorization_used(payer.address, &second.payload.authorization.nonce).await, "never settled");

    let mut bad = sign_payment(&payer.key, &required, |_| {}).unwrap();
    bad.extensions = Some(json!({"payment-identifier": {"info": {"required": false, "id": "short"}}}));
    assert_eq!(client.submit_paid(&body, &bad).await.unwrap().status, 400, "a malformed id");
    finished(&client, &job_id(&answer), Duration::from_secs(180)).await;
}

fn quote_secret() -> Vec<u8> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../.dev.vars");
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("QUOTE_SECRET="))
        .expect("QUOTE_SECRET in .dev.vars")
        .trim()
        .as_bytes()
        .to_vec()
}

#[tokio::test]
async fn a_bound_quote_is_honoured_after_the_price_moved_and_not_after_it_expired() {
    // The price a client saw stays its price for maxTimeoutSeconds. To see that without waiting for demand to
    // move, the test makes the quote the edge would have made at another price (with the stack's own secret).
    let client = client().await;
    let payer = wallet(Account::MoneyQuote);
    let body = json!({"script": "echo quoted", "time_limit_min": 2});
    let fingerprint = ouro_core::submit::validate(body.to_string().as_bytes()).unwrap().price_request().fingerprint();
    let required = required_for(&client, &body).await;
    let moved = required.accepts[0].amount.parse::<u64>().unwrap() + 1_000;
    let quoted_at = |amount: u64, expires: u64| {
        let mut r = required.clone();
        r.accepts[0].amount = amount.to_string();
        r.accepts[0].extra.quote = Some(bound_quote::issue(&quote_secret(), &fingerprint, amount, expires));
        r
    };

    let expired = sign_payment(&payer.key, &quoted_at(moved, unix_now() - 1), |_| {}).unwrap();
    let refused = client.submit_paid(&body, &expired).await.unwrap();
    assert_eq!(
        (refused.status, refused.body["reason"].as_str()),
        (402, Some("requirements_mismatch")),
        "{}",
        refused.body
    );

    let before = usdc_balance(payer.address).await;
    let live = sign_payment(&payer.key, &quoted_at(moved, unix_now() + 300), |_| {}).unwrap();
    let answer = client.submit_paid(&body, &live).await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(parse_usd(answer.text("price").unwrap()).unwrap(), moved, "the quoted price, not today's");
    assert_eq!(before - usdc_balance(payer.address).await, U256::from(moved));
    finished(&client, &job_id(&answer), Duration::from_secs(180)).await;
}

/// Sleeps into the next minute: a fresh rate window, untouched by an earlier run of this test.
async fn at_start_of_a_window() {
    tokio::time::sleep(Duration::from_secs(61 - unix_now() % 60)).await;
}

#[tokio::test]
async fn the_eleventh_submit_of_a_wallet_in_a_minute_is_429_but_its_paid_job_is_still_answered() {
    let client = client().await;
    let payer = wallet(Account::MoneyLimits);
    let body = json!({"script": "echo limited"});
    at_start_of_a_window().await;
    let before = usdc_balance(payer.address).await;
    // 1: a real payment.
    let paid_payment = sign_payment(&payer.key, &required_for(&client, &body).await, |_| {}).unwrap();
    let paid = client.submit_paid(&body, &paid_payment).await.unwrap();
    assert_eq!(paid.status, 200, "{}", paid.body);
    // 2-10: payments refused by a local check (they count, and move no money).
    let required = required_for(&client, &body).await;
    let underpaid = || {
        sign_payment(&payer.key, &required, |a| a.value = (a.value.parse::<u64>().unwrap() - 1).to_string()).unwrap()
    };
    for i in 2..=10 {
        let answer = client.submit_paid(&body, &underpaid()).await.unwrap();
        assert_eq!(answer.status, 402, "submit {i}: {}", answer.body);
    }
    // 11: over the limit, before any check or money.
    let limited = underpaid();
    let answer = client.submit_paid(&body, &limited).await.unwrap();
    assert_eq!(answer.status, 429, "{}", answer.body);
    assert_eq!(answer.body["code"], "rate_limited");
    let retry_after: u64 = answer.retry_after().expect("Retry-After").parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    // The payment that already bought a job still gets it: a limit never stands between a payer and its job.
    let replay = client.submit_paid(&body, &paid_payment).await.unwrap();
    assert_eq!((replay.status, job_id(&replay)), (200, job_id(&paid)), "{}", replay.body);
    // Another wallet is not affected by this one's limit.
    let stranger = SigningKey::random(&mut rand_core_free_rng());
    let other = client.submit_paid(&body, &sign_payment(&stranger, &required, |_| {}).unwrap()).await.unwrap();
    assert_ne!(other.status, 429, "{}", other.body);

    finished(&client, &job_id(&paid), Duration::from_secs(180)).await;
    let price = U256::from(paid_payment.accepted.amount.parse::<u64>().unwrap());
    assert_eq!(before - usdc_balance(payer.address).await, price, "only the paid job was charged");
}

/// A key from the OS's randomness (k256 wants a CryptoRng; the test crate has no rand dependency).
fn rand_core_free_rng() -> impl k256::elliptic_curve::rand_core::CryptoRngCore {
    k256::elliptic_curve::rand_core::OsRng
}

#[tokio::test]
async fn a_payer_without_test_usdc_gets_the_facilitators_reason_and_no_job() {
    let client = client().await;
    let penniless = SigningKey::random(&mut rand_core_free_rng());
    let address = ouro_core::eip712::address_of(&penniless);
    assert_eq!(usdc_balance(address).await, U256::ZERO);
    let body = json!({"script": "echo unpaid"});
    let payment = sign_payment(&penniless, &required_for(&client, &body).await, |_| {}).unwrap();
    let answer = client.submit_paid(&body, &payment).await.unwrap();
    assert_eq!(answer.status, 402, "{}", answer.body);
    assert_eq!(answer.body["error"], "Payment verification failed", "refused by the facilitator: {}", answer.body);
    let reason = answer.body["reason"].as_str().expect("the facilitator's reason");
    assert!(reason.contains("insufficient") || reason.contains("balance") || reason.contains("funds"), "{reason}");
    assert!(answer.body.get("job_id").is_none());
    assert!(answer.payment_required.is_some(), "fresh requirements come with the refusal");
    assert!(!authorization_used(address, &payment.payload.authorization.nonce).await);
}

#[tokio::test]
async fn the_402_carries_v1_requirements_beside_the_price() {
    let client = client().await;
    let answer = client.submit_unpaid(&json!({"script": "echo v1"})).await.unwrap();
    assert_eq!(answer.status, 402);
    let v2 = &answer.payment_required.as_ref().unwrap().accepts[0];
    let body = &answer.body;
    assert_eq!(body["x402Version"], 1);
    let v1 = &body["accepts"][0];
    assert_eq!(v1["scheme"], "exact");
    assert_eq!(v1["network"], "base-sepolia");
    assert_eq!(v1["maxAmountRequired"], v2.amount.as_str());
    assert_eq!(v1["payTo"], v2.pay_to.as_str());
    assert_eq!(v1["asset"], v2.asset.as_str());
    assert!(v1["resource"].as_str().unwrap().ends_with("/api/compute/submit"));
    assert_eq!(v1["extra"], json!({"name": "USDC", "version": "2"}));
    assert_eq!(parse_usd(body["price"].as_str().unwrap()).unwrap().to_string(), v2.amount, "and our own fields");
    assert!(body["breakdown"].is_object());
}

#[tokio::test]
async fn browsers_may_send_and_read_the_x402_headers() {
    let http = reqwest::Client::new();
    let url = format!("{}/api/compute/submit", edge_url());
    let preflight = http
        .request(reqwest::Method::OPTIONS, &url)
        .header("origin", "http://localhost:3000")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type, payment-signature, x-payment")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status().as_u16(), 204);
    let h = |r: &reqwest::Response, name: &str| {
        r.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_lowercase()
    };
    let allowed = h(&preflight, "access-control-allow-headers");
    for name in ["payment-signature", "x-payment", "content-type"] {
        assert!(allowed.contains(name), "{name} not allowed: {allowed}");
    }
    assert!(h(&preflight, "access-control-allow-methods").contains("post"));
    assert_eq!(h(&preflight, "access-control-allow-origin"), "*");
    // On the answers themselves the browser may read the x402 headers.
    let quote = http
        .post(&url)
        .header("origin", "http://localhost:3000")
        .json(&json!({"script": "echo"}))
        .send()
        .await
        .unwrap();
    assert_eq!(quote.status().as_u16(), 402);
    let exposed = h(&quote, "access-control-expose-headers");
    for name in ["payment-required", "payment-response", "x-payment-response", "retry-after"] {
        assert!(exposed.contains(name), "{name} not exposed: {exposed}");
    }
}
