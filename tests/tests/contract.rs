//! The public contract before any money moves: 402 quotes, 422 validation, the price endpoint, 404s, and the
//! executors' side door refusing strangers.

use ouro_core::pricing::parse_usd;
use ouro_core::x402::header;
use ouro_e2e::{client, edge_url, str_of, NETWORK, PAY_TO, TOKEN};
use serde_json::{json, Value};

#[tokio::test]
async fn unpaid_submit_is_a_valid_402() {
    let client = client().await;
    let answer = client.submit_unpaid(&json!({"script": "echo hello"})).await.unwrap();
    assert_eq!(answer.status, 402);
    assert_eq!(answer.headers.get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"));
    let raw = answer.headers.get("payment-required").and_then(|v| v.to_str().ok()).expect("PAYMENT-REQUIRED header");
    assert!(raw.starts_with("eyJ4NDAyVmVyc2lvbiI6Mi"), "standard base64 of {{\"x402Version\":2,...: {raw}");
    let required: ouro_core::x402::PaymentRequired = header::decode(raw).unwrap();
    assert_eq!(required.x402_version, 2);
    assert!(required.resource.url.ends_with("/api/compute/submit"));
    assert_eq!(required.accepts.len(), 1);
    let req = &required.accepts[0];
    assert_eq!(req.scheme, "exact");
    assert_eq!(req.network, NETWORK);
    assert_eq!(req.asset.to_lowercase(), TOKEN.to_lowercase());
    assert_eq!(req.pay_to.to_lowercase(), PAY_TO.to_lowercase());
    assert_eq!(req.max_timeout_seconds, 300);
    assert_eq!((req.extra.name.as_str(), req.extra.version.as_str()), ("USDC", "2"));
    assert!(req.extra.quote.is_some(), "the quote is bound in extra.quote");

    let body = &answer.body;
    assert_eq!(body["error"], "Payment required");
    let price = str_of(body, "price");
    assert!(price.starts_with('$') && price.split('.').nth(1).map(str::len) == Some(4), "{price}");
    assert_eq!(parse_usd(price).unwrap().to_string(), req.amount, "the body's price is the header's amount");
    for key in [
        "gas_upper_bound", "llm_upper_bound", "compute_cost", "setup_cost", "submission_mode", "cost_floor",
        "margin_multiplier", "demand_multiplier", "phase", "min_profit_pct", "safety_factor",
    ] {
        assert!(body["breakdown"].get(key).is_some(), "breakdown.{key} missing: {body}");
    }
}

#[tokio::test]
async fn price_endpoint_agrees_with_the_402() {
    let client = client().await;
    // Demand pricing can move between two reads when another test's job lands; the 402 must equal the quote
    // of one side of it, and both sides when they agree.
    let before = client.quote(2, 5).await.unwrap();
    let answer = client.submit_unpaid(&json!({"script": "echo x", "cpus": 2, "time_limit_min": 5})).await.unwrap();
    let after = client.quote(2, 5).await.unwrap();
    let price = answer.price().unwrap();
    assert!(price == before.price || price == after.price, "402 {price}, quotes {} / {}", before.price, after.price);
    assert_eq!(before.breakdown["submission_mode"], "script");
    assert!(before.breakdown["compute_cost"].as_f64().unwrap() > 0.0019, "2 cpus × 5 min × $0.0002");
}

async fn status_and_body(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn invalid_submissions_are_422_naming_the_field_before_any_price() {
    let client = client().await;
    let cases = [
        (json!({"script": "echo", "cpus": 9}), "cpus"),
        (json!({"script": "echo", "cpus": 0}), "cpus"),
        (json!({"script": "echo", "cpus": "two"}), "cpus"),
        (json!({"script": "echo", "time_limit_min": 61}), "time_limit_min"),
        (json!({"script": ""}), "script"),
        (json!({"script": "a".repeat(65_537)}), "script"),
        (json!({"cpus": 1}), "script"),
        (json!({"script": "echo", "image": "alpine:latest"}), "image"),
        (json!({"script": "echo", "submitter_address": "0x12"}), "submitter_address"),
        (json!({"script": "echo", "time_limit": 5}), "time_limit"),
    ];
    for (body, field) in cases {
        let answer = client.submit_unpaid(&body).await.unwrap();
        assert_eq!(answer.status, 422, "{body}");
        assert_eq!(answer.body["field"], field, "{}", answer.body);
        assert!(answer.payment_required.is_none(), "no price for an invalid body");
    }
    let raw = reqwest::Client::new()
        .post(format!("{}/api/compute/submit", edge_url()))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let (status, body) = status_and_body(raw).await;
    assert_eq!((status, body["field"].as_str()), (422, Some("body")));
}

#[tokio::test]
async fn price_query_is_validated() {
    let http = reqwest::Client::new();
    for (query, field) in [("cpus=9", "cpus"), ("time_limit_min=abc", "time_limit_min"), ("submission_mode=x", "submission_mode")] {
        let (status, body) = status_and_body(http.get(format!("{}/api/price?{query}", edge_url())).send().await.unwrap()).await;
        assert_eq!((status, body["field"].as_str()), (422, Some(field)), "{query}");
    }
}

#[tokio::test]
async fn health_and_unknown_jobs() {
    let http = reqwest::Client::new();
    let (status, body) = status_and_body(http.get(format!("{}/health", edge_url())).send().await.unwrap()).await;
    assert_eq!((status, body), (200, json!({"status": "ok"})));
    let client = client().await;
    for id in ["5b0d8a4c-1f7e-4c8e-9a51-3f2f1b7e0c11", "not-a-uuid", "../../etc"] {
        assert!(matches!(client.job(id).await, Err(ouro_client::ClientError::NotFound(_))), "{id}");
    }
}

#[tokio::test]
async fn executor_side_door_refuses_unsigned_and_forged_calls() {
    let http = reqwest::Client::new();
    let url = format!("{}/internal/jobs/5b0d8a4c-1f7e-4c8e-9a51-3f2f1b7e0c11/result", edge_url());
    let (status, _) = status_and_body(http.post(&url).body("{}").send().await.unwrap()).await;
    assert_eq!(status, 401);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let forged = ouro_core::dispatch::sign_request(b"not-the-secret-at-all", now, "POST", "/internal/jobs/x/result", b"{}");
    let resp = http
        .post(&url)
        .header("x-ouro-timestamp", now.to_string())
        .header("x-ouro-signature", forged)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
}

#[tokio::test]
async fn cors_preflight_allows_x402_headers() {
    let resp = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, format!("{}/api/compute/submit", edge_url()))
        .header("origin", "http://localhost:3000")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let allowed = resp.headers()["access-control-allow-headers"].to_str().unwrap().to_lowercase();
    assert!(allowed.contains("payment-signature"), "{allowed}");
    let exposed = resp.headers()["access-control-expose-headers"].to_str().unwrap();
    assert!(exposed.contains("PAYMENT-REQUIRED") && exposed.contains("PAYMENT-RESPONSE"), "{exposed}");
}

#[tokio::test]
async fn cpus_beyond_the_executors_are_refused_before_any_price() {
    // `cargo xtask up` tells the edge this machine's core count; asking for more would buy CPUs nobody has.
    let cores = std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1);
    if cores >= 8 {
        return; // every API value is servable here
    }
    let client = client().await;
    let answer = client.submit_unpaid(&json!({"script": "echo", "cpus": cores + 1})).await.unwrap();
    assert_eq!(answer.status, 422, "{}", answer.body);
    assert_eq!(answer.body["field"], "cpus");
    assert!(answer.body["error"].as_str().unwrap().contains(&format!("at most {cores}")), "{}", answer.body);
    assert!(matches!(client.quote(cores + 1, 1).await, Err(ouro_client::ClientError::Invalid { .. })));
    assert!(client.quote(cores, 1).await.is_ok());
}
