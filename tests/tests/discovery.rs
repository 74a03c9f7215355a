//! Discovery, the ledger, the treasury wallet, builder-code attribution and readiness, against the running stack.
//!
//! Other suites pay and run jobs at the same time, so totals are compared as "at least", and what belongs to this
//! suite alone (its own random builder codes) is compared exactly. Paid jobs here use `Account::Images`.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ouro_core::erc8021::{encode, Attribution};
use ouro_core::job::IMAGE_ALIASES;
use ouro_core::pricing::parse_usd;
use ouro_core::submit::{MAX_SCRIPT_CHARS, MAX_TIME_LIMIT_MIN};
use ouro_core::workspace::{MAX_FILES, MAX_WORKSPACE_BYTES};
use ouro_e2e::{
    client, edge_url, eth_balance, finished, pay_and_submit_with_headers, rpc, str_of, usdc_balance, wallet, Account,
    NETWORK, PAY_TO, TOKEN,
};
use serde_json::{json, Value};

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(60)).build().unwrap()
}

async fn get(path: &str) -> (u16, Value) {
    let resp = http().get(format!("{}{path}", edge_url())).send().await.unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn get_ok(path: &str) -> Value {
    let (status, body) = get(path).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// A suffix no other run has used: builder codes of this run are its own.
fn unique() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("{:x}", (nanos as u64) ^ (u64::from(std::process::id()) << 40))
}

/// A `[vars]` value of wrangler.toml: the configuration the edge runs with.
fn config_var(name: &str) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../wrangler.toml");
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == name)
        .map(|(_, v)| v.trim().trim_matches('"').to_string())
        .unwrap_or_else(|| panic!("wrangler.toml has no {name}"))
}

fn atomic(v: &Value) -> u128 {
    v.as_str().unwrap_or_else(|| panic!("{v} is not a decimal string")).parse().unwrap()
}

/// Sends a transaction from an unlocked anvil account (this suite's own, so no one else's nonces move) with
/// `data` as its input; answers its hash once mined.
async fn send_tx(data: &[u8]) -> String {
    let from = wallet(Account::Images).address;
    let tx = json!([{
        "from": format!("{from:#x}"),
        "to": "0x000000000000000000000000000000000000dead",
        "value": "0x0",
        "data": format!("0x{}", hex::encode(data)),
    }]);
    let hash = rpc("eth_sendTransaction", tx).await.as_str().expect("a tx hash").to_string();
    for _ in 0..50 {
        if !rpc("eth_getTransactionReceipt", json!([hash])).await.is_null() {
            return hash;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("transaction {hash} was not mined");
}

#[tokio::test]
async fn erc8021_suffixes_sent_to_anvil_decode_through_the_api() {
    client().await;
    let code = format!("e2e_{}", unique());
    let schema0 = Attribution::Schema0 { codes: vec!["baseapp".into(), code.clone()] };
    let mut data = vec![0xdd; 4];
    data.extend(encode(&schema0).unwrap());
    let tx = send_tx(&data).await;
    let decoded = get_ok(&format!("/api/attribution/decode?tx_hash={tx}")).await;
    assert_eq!(decoded["tx_hash"], tx.to_lowercase());
    assert_eq!(decoded["has_attribution"], true, "{decoded}");
    assert_eq!(decoded["schema_id"], 0);
    assert_eq!(decoded["codes"], json!(["baseapp", code]));
    assert!(decoded["registry"].is_null());

    // Schema 1 names its registry; the hash is accepted in upper case too.
    let registry: alloy_primitives::Address = "0xcccccccccccccccccccccccccccccccccccccccc".parse().unwrap();
    let schema1 = Attribution::Schema1 { codes: vec![code.clone()], registry, chain_id: 84532 };
    let mut data = vec![0xdd; 4];
    data.extend(encode(&schema1).unwrap());
    let tx = send_tx(&data).await;
    let decoded = get_ok(&format!("/api/attribution/decode?tx_hash=0x{}", tx[2..].to_uppercase())).await;
    assert_eq!((decoded["schema_id"].clone(), decoded["codes"].clone()), (json!(1), json!([code])), "{decoded}");
    assert_eq!(decoded["registry"]["chain_id"], 84532);
    assert_eq!(decoded["registry"]["address"].as_str().unwrap().to_lowercase(), format!("{registry:#x}"));

    // Plain calldata carries no attribution: an answer, not an error.
    let tx = send_tx(&[0xdd; 4]).await;
    let decoded = get_ok(&format!("/api/attribution/decode?tx_hash={tx}")).await;
    assert_eq!((decoded["has_attribution"].clone(), decoded["codes"].clone()), (json!(false), json!([])));
}

#[tokio::test]
async fn decode_refuses_bad_hashes_and_does_not_know_unknown_ones() {
    client().await;
    for query in ["", "?tx_hash=", "?tx_hash=0x12", "?tx_hash=xyz", &format!("?tx_hash=0x{}", "g".repeat(64))] {
        let (status, body) = get(&format!("/api/attribution/decode{query}")).await;
        assert_eq!((status, body["field"].as_str()), (400, Some("tx_hash")), "{query}: {body}");
    }
    let unknown = format!("0x{}", "ab".repeat(32));
    let (status, body) = get(&format!("/api/attribution/decode?tx_hash={unknown}")).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("tx_not_found")), "{body}");
}

#[tokio::test]
async fn invalid_builder_codes_are_422_naming_the_header_before_any_price() {
    client().await;
    let url = format!("{}/api/compute/submit", edge_url());
    for bad in ["Bad_Code", "a,,b", "a b", &"x".repeat(33), "a,b,c,d,e,f", "code-with-dash"] {
        let resp = http().post(&url).header("X-BUILDER-CODE", bad).json(&json!({"script": "echo"})).send().await.unwrap();
        let status = resp.status().as_u16();
        let priced = resp.headers().contains_key("payment-required");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(status, 422, "{bad:?}: {body}");
        assert_eq!(body["field"], "X-BUILDER-CODE", "{body}");
        assert!(!priced, "no price for a bad header");
    }
    // Good codes (and a blank header) go on to the price.
    for good in ["bc_b8nos5a8", " a , b ", ""] {
        let resp = http().post(&url).header("X-BUILDER-CODE", good).json(&json!({"script": "echo"})).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 402, "{good:?}");
    }
}

async fn attribution_of(code: &str) -> Value {
    let body = get_ok(&format!("/api/attribution?code={code}")).await;
    let codes = body["codes"].as_array().unwrap();
    assert!(codes.len() <= 1, "filtered to one code: {body}");
    codes.first().cloned().unwrap_or(Value::Null)
}

#[tokio::test]
async fn paid_jobs_with_builder_codes_show_in_attribution_and_stats() {
    let client = client().await;
    let payer = wallet(Account::Images);
    let run = unique();
    let (solo, shared) = (format!("e2e_solo_{run}"), format!("e2e_shared_{run}"));
    let before = get_ok("/api/stats").await;

    let first = pay_and_submit_with_headers(&payer.key, &json!({"script": "echo one"}), &[("X-BUILDER-CODE", &shared)]).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let both = format!("{shared}, {solo},{shared}");
    let second = pay_and_submit_with_headers(&payer.key, &json!({"script": "echo two"}), &[("X-BUILDER-CODE", &both)]).await;
    assert_eq!(second.status, 200, "{}", second.body);
    let price = |a: &ouro_client::SubmitAnswer| u128::from(parse_usd(a.text("price").unwrap()).unwrap());
    let (p1, p2) = (price(&first), price(&second));
    let (tx1, tx2) = (str_of(&first.body, "transaction").to_string(), str_of(&second.body, "transaction").to_string());

    // Per code: exactly these jobs and their revenue (a job with two codes counts for both).
    let shared_stats = attribution_of(&shared).await;
    assert_eq!(shared_stats["jobs"], 2, "{shared_stats}");
    assert_eq!(atomic(&shared_stats["revenue_atomic"]), p1 + p2);
    let solo_stats = attribution_of(&solo).await;
    assert_eq!(solo_stats["jobs"], 1, "{solo_stats}");
    assert_eq!(atomic(&solo_stats["revenue_atomic"]), p2);
    assert!(attribution_of(&format!("e2e_never_{run}")).await.is_null());

    // The recent attributions list both settlements with their codes in header order (duplicates dropped).
    let all = get_ok("/api/attribution").await;
    let recent = all["recent"].as_array().unwrap();
    let entry = |tx: &str| recent.iter().find(|e| e["tx_hash"] == tx).cloned().unwrap_or_else(|| panic!("{tx} in {all}"));
    let (e1, e2) = (entry(&tx1), entry(&tx2));
    assert_eq!((e1["codes"].clone(), e1["is_multi"].clone()), (json!([shared]), json!(false)));
    assert_eq!((e2["codes"].clone(), e2["is_multi"].clone()), (json!([shared, solo]), json!(true)));
    for e in [&e1, &e2] {
        assert!(e["gas_used"].as_u64().is_some_and(|g| g > 21_000), "gas from the settlement receipt: {e}");
    }
    assert!(all["total_attributed_txs"].as_u64().unwrap() >= 2 && all["multi_code_txs"].as_u64().unwrap() >= 1);

    // Both jobs end; the ledger has at least their revenue, their jobs and their settlements' gas.
    for job in [&first, &second] {
        let done = finished(&client, job.text("job_id").unwrap(), Duration::from_secs(180)).await;
        assert_eq!(done["status"], "completed", "{done}");
    }
    let after = get_ok("/api/stats").await;
    let n = |v: &Value, k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"));
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or_else(|| panic!("{k} in {v}"));
    assert!(atomic(&after["total_revenue_atomic"]) >= atomic(&before["total_revenue_atomic"]) + p1 + p2);
    assert!(n(&after, "total_jobs") >= n(&before, "total_jobs") + 2);
    assert!(n(&after, "completed_jobs") >= n(&before, "completed_jobs") + 2);
    assert!(n(&after, "settlement_txs") >= n(&before, "settlement_txs") + 2);
    assert!(n(&after, "jobs_last_hour") >= 2);
    assert!(f(&after, "gas_costs_usd") > f(&before, "gas_costs_usd"));
    assert!(f(&after, "compute_costs_usd") > f(&before, "compute_costs_usd"));
    let total = f(&after, "gas_costs_usd") + f(&after, "compute_costs_usd") + f(&after, "storage_costs_usd");
    assert!((f(&after, "total_costs_usd") - total).abs() < 1e-9, "{after}");
    assert!((f(&after, "net_pnl_usd") - (f(&after, "total_revenue_usdc") - total)).abs() < 1e-9, "{after}");
    let ratio = f(&after, "sustainability_ratio");
    assert!((ratio - f(&after, "total_revenue_usdc") / total).abs() < 1e-9 && after["sustainability_ratio_note"].is_null());
}

#[tokio::test]
async fn stats_show_the_market_quotes_are_made_in() {
    client().await;
    let stats = get_ok("/api/stats").await;
    for key in [
        "total_revenue_usdc", "gas_costs_usd", "compute_costs_usd", "total_costs_usd", "net_pnl_usd", "completed_jobs",
        "active_jobs", "avg_duration_s", "sustainability_ratio", "survival_phase", "demand_multiplier",
        "margin_multiplier", "jobs_last_hour", "avg_cost_per_job", "avg_price_per_job", "avg_margin_per_job", "recent_jobs",
    ] {
        assert!(stats.get(key).is_some(), "{key} missing: {stats}");
    }
    assert!(stats["recent_jobs"].as_array().unwrap().len() <= 10);
    assert!(stats["recent_jobs"].as_array().unwrap().iter().all(|j| j.get("id").is_none() && j.get("job_id").is_none()));
    if stats["sustainability_ratio"].is_null() {
        assert!(stats["sustainability_ratio_note"].is_string(), "explicit when costs are zero: {stats}");
    }
    // A quote made in the same moment carries the same phase, margin and demand. Jobs of other suites can move
    // demand between two reads: the stats must match whenever the quotes on either side agree.
    for _ in 0..10 {
        let q1 = get_ok("/api/price").await["breakdown"].clone();
        let stats = get_ok("/api/stats").await;
        let q2 = get_ok("/api/price").await["breakdown"].clone();
        if q1 != q2 {
            continue;
        }
        assert_eq!(stats["survival_phase"], q1["phase"], "{stats}");
        assert_eq!(stats["margin_multiplier"], q1["margin_multiplier"]);
        assert_eq!(stats["demand_multiplier"], q1["demand_multiplier"]);
        return;
    }
    panic!("the market never held still for two quotes");
}

#[tokio::test]
async fn wallet_balances_are_the_chains_and_the_cron_records_snapshots() {
    client().await;
    let pay_to: alloy_primitives::Address = PAY_TO.parse().unwrap();
    // PAY_TO receives every suite's payments: compare within one quiet moment.
    let mut matched = false;
    for _ in 0..10 {
        let (eth, usdc) = (eth_balance(pay_to).await, usdc_balance(pay_to).await);
        let api = get_ok("/api/wallet").await;
        if (eth, usdc) != (eth_balance(pay_to).await, usdc_balance(pay_to).await) {
            continue;
        }
        assert_eq!(api["status"], "ok", "{api}");
        assert!(api["error"].is_null());
        assert_eq!(api["address"].as_str().unwrap().to_lowercase(), PAY_TO.to_lowercase());
        assert_eq!(api["eth_balance_wei"].as_str().unwrap(), eth.to_string());
        assert_eq!(api["usdc_balance_atomic"].as_str().unwrap(), usdc.to_string());
        let usdc_f: f64 = usdc.to_string().parse::<f64>().unwrap() / 1e6;
        assert!((api["usdc_balance"].as_f64().unwrap() - usdc_f).abs() < 1e-9);
        assert_eq!(api["eth_price_usd"].as_f64().unwrap(), config_var("ETH_PRICE_USD").parse::<f64>().unwrap());
        matched = true;
        break;
    }
    assert!(matched, "PAY_TO's balances never held still for one read");

    // The scheduled handler records a snapshot (wrangler dev runs it on request).
    let started = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis();
    let mut fired = false;
    for path in ["/__scheduled?cron=*/10+*+*+*+*", "/cdn-cgi/handler/scheduled?cron=*/10+*+*+*+*"] {
        let resp = http().get(format!("{}{path}", edge_url())).send().await.unwrap();
        let is_ours = resp.headers().get("content-type").is_some_and(|c| c.to_str().unwrap_or("").contains("json"));
        if resp.status().is_success() && !is_ours {
            fired = true;
            break;
        }
    }
    assert!(fired, "neither /__scheduled nor /cdn-cgi/handler/scheduled ran the cron");
    let api = get_ok("/api/wallet").await;
    let snapshots = api["snapshots"].as_array().unwrap();
    assert!(!snapshots.is_empty() && snapshots.len() <= 100, "{api}");
    let newest = &snapshots[0];
    let recorded = newest["recorded_at"].as_str().unwrap();
    assert!(recorded >= ouro_core::time::rfc3339_from_millis(started as u64 - 1000).as_str(), "{newest} after {started}");
    assert_eq!(newest["eth_balance_wei"].as_str().unwrap(), eth_balance(pay_to).await.to_string());
    let times: Vec<&str> = snapshots.iter().map(|s| s["recorded_at"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first: {times:?}");
}

#[tokio::test]
async fn capabilities_agent_card_and_x402_manifest_come_from_the_configuration() {
    client().await;
    let caps = get_ok("/api/capabilities").await;
    let pay = &caps["payment"];
    assert_eq!(pay["protocol"], "x402");
    assert_eq!(pay["network"], config_var("NETWORK"));
    assert_eq!(pay["network"], NETWORK);
    assert_eq!(pay["currency"], config_var("ASSET_NAME"));
    assert_eq!(pay["asset"].as_str().unwrap().to_lowercase(), config_var("ASSET").to_lowercase());
    assert_eq!(pay["asset"].as_str().unwrap().to_lowercase(), TOKEN.to_lowercase());
    assert_eq!(pay["pay_to"].as_str().unwrap().to_lowercase(), config_var("PAY_TO").to_lowercase());
    assert_eq!(pay["max_timeout_seconds"].to_string(), config_var("MAX_TIMEOUT_SECONDS"));
    assert!(pay["endpoint"].as_str().unwrap().ends_with("/api/compute/submit"));
    let compute = &caps["compute"];
    // `cargo xtask up` gives the edge this machine's core count (at most 8).
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(8);
    assert_eq!(compute["max_cpus"], cores);
    assert_eq!(compute["max_time_min"], MAX_TIME_LIMIT_MIN);
    assert_eq!(compute["max_script_bytes"], MAX_SCRIPT_CHARS);
    assert_eq!(compute["max_workspace_bytes"], MAX_WORKSPACE_BYTES);
    assert_eq!(compute["max_files"], MAX_FILES);
    assert_eq!(compute["allowed_images"], json!(IMAGE_ALIASES));
    assert_eq!(compute["submission_modes"], json!(["script", "multi_file"]));
    assert_eq!(compute["output_cap_bytes"].to_string(), config_var("OUTPUT_CAP_BYTES"));
    assert_eq!(compute["executors"], config_var("EXECUTOR_URLS").split(',').count());
    for key in ["mount_point", "free_tier_bytes", "max_files", "ttl_days"] {
        assert!(caps["storage"].get(key).is_some(), "storage.{key}");
    }
    for key in ["max_active_jobs_per_wallet", "rate_limit_per_wallet", "rate_limit_global"] {
        assert!(caps["limits"].get(key).is_some(), "limits.{key}");
    }

    let card = get_ok("/.well-known/agent-card.json").await;
    let skills: BTreeSet<&str> = card["skills"].as_array().unwrap().iter().map(|s| str_of(s, "id")).collect();
    for skill in ["run_job", "get_job_status", "get_price_quote", "get_allowed_images"] {
        assert!(skills.contains(skill), "{skill} in {skills:?}");
    }
    assert_eq!(card["authentication"]["schemes"], json!(["x402"]));
    assert!(card["securitySchemes"]["x402"].is_object());

    // The price range is the pricing function's for the smallest and the largest job, in the current market.
    for attempt in 0.. {
        let manifest = get_ok("/.well-known/x402").await;
        let low = get_ok("/api/price?cpus=1&time_limit_min=1&submission_mode=script").await;
        let high = get_ok(&format!("/api/price?cpus={cores}&time_limit_min={MAX_TIME_LIMIT_MIN}&submission_mode=multi_file")).await;
        let resource = &manifest["resources"][0];
        let range = &resource["price"];
        if (range["min"] != low["price"] || range["max"] != high["price"]) && attempt < 10 {
            continue; // demand moved between the reads
        }
        assert_eq!(manifest["x402Version"], 2);
        assert!(resource["resource"].as_str().unwrap().ends_with("/api/compute/submit"));
        assert_eq!((range["min"].clone(), range["max"].clone()), (low["price"].clone(), high["price"].clone()), "{manifest}");
        assert_eq!(range["min_amount"], low["amount"]);
        let accepts = &resource["accepts"][0];
        assert_eq!((accepts["scheme"].as_str(), accepts["network"].as_str()), (Some("exact"), Some(NETWORK)));
        assert_eq!(accepts["payTo"].as_str().unwrap().to_lowercase(), PAY_TO.to_lowercase());
        assert_eq!(accepts["amount"], low["amount"], "a complete PaymentRequirements, priced for the cheapest job");
        let input = &resource["inputSchema"];
        assert_eq!(input["properties"]["cpus"]["maximum"], cores, "{input}");
        assert!(input["properties"]["script"].is_object() && input["properties"]["files"]["items"]["properties"]["path"].is_object());
        assert!(resource["outputSchema"]["properties"]["job_id"].is_object());
        break;
    }
}

#[tokio::test]
async fn readiness_is_ready_with_every_check_ok() {
    client().await;
    let (status, body) = get("/health/ready").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ready")), "{body}");
    let checks = body["checks"].as_object().unwrap();
    for name in ["d1", "r2", "executor", "facilitator", "wallet_eth", "wallet_usdc"] {
        assert_eq!(checks[name]["status"], "ok", "{name}: {body}");
    }
    assert!(str_of(&checks["executor"], "detail").contains(&config_var("EXECUTOR_URLS")), "{body}");
}

/// `schema` with `$ref`s into `components.schemas` followed.
fn deref<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str().and_then(|r| r.strip_prefix("#/components/schemas/")) {
        Some(name) => deref(doc, &doc["components"]["schemas"][name]),
        None => schema,
    }
}

/// The few schema rules that catch drift between the document and the code: types, required keys, enums,
/// recursively. (The full check is schemathesis's, in tests/python/test_openapi.py.)
fn conforms(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let schema = deref(doc, schema);
    if let Some(options) = schema["oneOf"].as_array() {
        return options
            .iter()
            .find_map(|s| conforms(doc, s, value, at).ok())
            .ok_or_else(|| format!("{at}: {value} matches no oneOf"));
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    if !types.is_empty() && !types.iter().any(|t| *t == kind || (*t == "number" && kind == "integer")) {
        return Err(format!("{at}: {value} is {kind}, documented {types:?}"));
    }
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(value) {
            return Err(format!("{at}: {value} not in {allowed:?}"));
        }
    }
    if let Value::Object(map) = value {
        for key in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            if !map.contains_key(key) {
                return Err(format!("{at}: required {key} missing"));
            }
        }
        if let Some(props) = schema["properties"].as_object() {
            for (key, sub) in props {
                if let Some(v) = map.get(key) {
                    conforms(doc, sub, v, &format!("{at}.{key}"))?;
                }
            }
        }
    }
    if let (Value::Array(items), Some(item_schema)) = (value, schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            conforms(doc, item_schema, item, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

#[tokio::test]
async fn every_path_of_the_openapi_document_is_served_as_documented() {
    client().await;
    let doc = get_ok("/openapi.json").await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
    let paths = doc["paths"].as_object().unwrap();
    for required in [
        "/api/compute/submit", "/api/price", "/api/jobs/{job_id}", "/api/stats", "/api/wallet", "/api/attribution",
        "/api/attribution/decode", "/api/capabilities", "/.well-known/agent-card.json", "/.well-known/x402",
        "/openapi.json", "/health", "/health/ready",
    ] {
        assert!(paths.contains_key(required), "{required} is documented");
    }
    let submit = &paths["/api/compute/submit"]["post"]["responses"];
    for status in ["200", "402", "409", "422", "503"] {
        assert!(submit.get(status).is_some(), "submit documents {status}");
    }
    for (path, item) in paths {
        let concrete = path.replace("{job_id}", "5b0d8a4c-1f7e-4c8e-9a51-3f2f1b7e0c11");
        for (method, op) in item.as_object().unwrap().iter().filter(|(m, _)| ["get", "post"].contains(&m.as_str())) {
            let url = format!("{}{concrete}", edge_url());
            let request = if method == "get" { http().get(&url) } else { http().post(&url).json(&json!({})) };
            let resp = request.send().await.unwrap();
            let status = resp.status().as_u16();
            let json_type = resp.headers().get("content-type").is_some_and(|c| c.to_str().unwrap().starts_with("application/json"));
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            assert!(!(status == 404 && body["code"] == "not_found"), "{method} {path} is not routed: {body}");
            let documented = &op["responses"][status.to_string()];
            assert!(documented.is_object(), "{method} {path} answered {status}, not documented: {body}");
            assert!(json_type, "{method} {path}: JSON");
            let schema = &documented["content"]["application/json"]["schema"];
            if let Err(e) = conforms(&doc, schema, &body, &format!("{method} {path} {status}")) {
                panic!("{e}\n{body}");
            }
        }
    }
}

/// The other direction of the OpenAPI check: every public route the edge's router declares (read from its
/// source, so a new route cannot be forgotten) is described by the served document, with that method.
#[tokio::test]
async fn every_public_route_of_the_router_is_documented() {
    let source = include_str!("../../edge/src/lib.rs");
    let router = source.split("fn router()").nth(1).expect("edge/src/lib.rs has fn router()");
    let router = router.split("\n}\n").next().unwrap_or(router);
    let mut routes = Vec::new();
    for line in router.lines().map(str::trim) {
        for (call, method) in [(".get(", "get"), (".get_async(", "get"), (".post_async(", "post"), (".delete_async(", "delete")] {
            if let Some(rest) = line.strip_prefix(call) {
                let path = rest.split('"').nth(1).expect("a quoted route pattern");
                routes.push((method, path.to_string()));
            }
        }
    }
    assert!(routes.len() >= 10, "parsed the router: {routes:?}");
    let doc = get_ok("/openapi.json").await;
    let paths = doc["paths"].as_object().unwrap();
    for (method, pattern) in routes.iter().filter(|(_, p)| !p.starts_with("/internal/")) {
        // matchit's `:name` (and the catch-all `*name`) is OpenAPI's `{name}`; the parameter's name may differ,
        // its place may not.
        let shape = |p: &str| {
            let param = |s: &str| s.starts_with(':') || s.starts_with('*') || s.starts_with('{');
            p.split('/').map(|s| if param(s) { "{}" } else { s }).collect::<Vec<_>>().join("/")
        };
        let documented = paths.iter().find(|(p, _)| shape(p) == shape(pattern));
        let Some((_, item)) = documented else { panic!("{method} {pattern} is routed but not in /openapi.json") };
        assert!(item.get(*method).is_some(), "{method} {pattern} is documented without that method");
    }
}
