//! Shared fixtures of the end-to-end suite: where the stack listens, the funded test accounts, and reads of
//! the chain (balances, EIP-3009 authorization state) straight from anvil, independent of the service.
//!
//! Each test that checks a balance pays from an account of its own (see [`Account`]), so tests can run in
//! parallel without seeing each other's payments.

pub mod sse;

use std::time::Duration;

use alloy_primitives::{keccak256, Address, U256};
use k256::ecdsa::SigningKey;
use ouro_client::Client;
use serde_json::{json, Value};

pub const TOKEN: &str = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";
pub const PAY_TO: &str = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
pub const NETWORK: &str = "eip155:84532";

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

pub fn edge_url() -> String {
    env_or("OURO_URL", "http://127.0.0.1:8787")
}

pub fn rpc_url() -> String {
    env_or("OURO_RPC_URL", "http://127.0.0.1:8545")
}

/// Waits up to `limit` for the edge to answer `/health` (it does not while `wrangler dev` reloads a rebuilt
/// Worker); for long tests that must not fail on a reload they did not cause.
pub async fn edge_answers_within(limit: Duration) -> bool {
    let until = std::time::Instant::now() + limit;
    let http = reqwest::Client::new();
    loop {
        let up = http.get(format!("{}/health", edge_url())).timeout(Duration::from_secs(5)).send().await;
        if up.is_ok_and(|r| r.status().is_success()) {
            return true;
        }
        if std::time::Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// A client for the edge, after checking the stack answers (with a message saying how to start it).
pub async fn client() -> Client {
    let url = edge_url();
    let up = reqwest::Client::new().get(format!("{url}/health")).timeout(Duration::from_secs(5)).send().await;
    assert!(
        up.is_ok_and(|r| r.status().is_success()),
        "the local stack does not answer at {url}: run `cargo xtask up` (or `cargo xtask test`)"
    );
    Client::new(url).expect("edge URL")
}

/// Which funded anvil account a test pays from. One per test that checks balances; 1 is the demo's and 9 the
/// Python suite's.
#[derive(Debug, Clone, Copy)]
pub enum Account {
    HelloBalance = 2,
    BadPayments = 3,
    Replay = 4,
    ExitCode = 5,
    TimeLimit = 6,
    Streams = 7,
    Images = 8,
    // Money safety (tests/tests/money*.rs, tests/js, tests/python/test_v1_*.py).
    MoneyReplay = 10,
    MoneyConcurrent = 11,
    MoneyLimits = 12,
    MoneyFacilitator = 13,
    MoneyCapacity = 14,
    // Credits and stuck jobs (tests/tests/credits.rs, executor_loss.rs).
    CreditsProRata = 15,
    CreditsFree = 16,
    CreditsGuard = 17,
    ExecutorLoss = 18,
    // Live events, output, webhooks, cancel, signed reads (tests/tests/{events,webhooks,cancel}.rs,
    // tests/python/test_signed_reads.py).
    Events = 19,
    Webhooks = 20,
    Cancel = 21,
    SignedReadsPython = 22,
    Output = 23,
    // Storage and output files (tests/tests/{storage,output_files}.rs, tests/python/test_storage_*.py).
    StorageOwner = 24,
    StorageOther = 25,
    StorageQuota = 26,
    Outputs = 27,
    StoragePython = 28,
    // 29 is the benchmark's second payer. One account per balance-checking test, and a pool for suites whose
    // many paid jobs would otherwise pass the per-wallet rate limit (10 submits a minute).
    MoneyIdentifier = 30,
    MoneyQuote = 31,
    MoneyReconcile = 32,
    CapacityProbe = 33,
    CapacityA = 34,
    WorkspacesA = 35,
    WorkspacesB = 36,
    WorkspacesC = 37,
    CapacityB = 38,
    CapacityC = 39,
}

pub struct Wallet {
    pub key: SigningKey,
    pub address: Address,
}

pub fn wallet(account: Account) -> Wallet {
    let path = env_or("OURO_ACCOUNTS_FILE", concat!(env!("CARGO_MANIFEST_DIR"), "/../stack/chain/accounts.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let accounts: Value = serde_json::from_str(&text).expect("accounts.json is JSON");
    let entry = &accounts["accounts"][account as usize];
    let key = ouro_client::key_from_hex(entry["private_key"].as_str().expect("private_key")).expect("a valid key");
    let address = ouro_core::eip712::address_of(&key);
    assert_eq!(
        Some(address),
        entry["address"].as_str().and_then(|a| a.parse().ok()),
        "accounts.json address of {account:?} does not match its key"
    );
    Wallet { key, address }
}

async fn eth_call(data: String) -> String {
    let result = rpc("eth_call", json!([{ "to": TOKEN, "data": data }, "latest"])).await;
    result.as_str().unwrap_or_else(|| panic!("eth_call answered {result}")).to_string()
}

fn selector(signature: &str) -> String {
    hex::encode(&keccak256(signature.as_bytes())[..4])
}

fn word(bytes: &[u8]) -> String {
    format!("{:0>64}", hex::encode(bytes))
}

/// The test USDC balance of `who`, read from the chain.
pub async fn usdc_balance(who: Address) -> U256 {
    let data = format!("0x{}{}", selector("balanceOf(address)"), word(who.as_slice()));
    U256::from_str_radix(eth_call(data).await.trim_start_matches("0x"), 16).expect("a uint256")
}

/// Whether the token has seen the EIP-3009 authorization `(from, nonce)` (i.e. it was settled on chain).
pub async fn authorization_used(from: Address, nonce: &str) -> bool {
    let nonce = hex::decode(nonce.trim_start_matches("0x")).expect("nonce hex");
    let data = format!("0x{}{}{}", selector("authorizationState(address,bytes32)"), word(from.as_slice()), word(&nonce));
    U256::from_str_radix(eth_call(data).await.trim_start_matches("0x"), 16).expect("a bool") != U256::ZERO
}

/// Waits for a job to end, with room for the queue and the container on a busy machine.
pub async fn finished(client: &Client, job_id: &str, limit: Duration) -> Value {
    client.wait(job_id, limit).await.unwrap_or_else(|e| panic!("job {job_id} did not finish: {e}"))
}

pub fn str_of<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field].as_str().unwrap_or_else(|| panic!("{field} is not a string in {v}"))
}

/// One JSON-RPC call to anvil; its `result` (panics on an RPC error).
pub async fn rpc(method: &str, params: Value) -> Value {
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
    let answer: Value = reqwest::Client::new()
        .post(rpc_url())
        .json(&body)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("anvil answers")
        .json()
        .await
        .expect("a JSON-RPC answer");
    assert!(answer.get("error").is_none_or(Value::is_null), "{method} failed: {answer}");
    answer["result"].clone()
}

/// The ETH balance of `who` in wei, read from the chain.
pub async fn eth_balance(who: Address) -> U256 {
    let result = rpc("eth_getBalance", json!([format!("{who:#x}"), "latest"])).await;
    let hex = result.as_str().expect("a quantity").trim_start_matches("0x");
    U256::from_str_radix(hex, 16).expect("a quantity")
}

/// The whole x402 round trip of [`Client::pay_and_submit`], with extra request `headers` (e.g.
/// `X-BUILDER-CODE`) on both the unpaid and the paid request. Answers the paid request's answer.
pub async fn pay_and_submit_with_headers(
    key: &SigningKey,
    body: &Value,
    headers: &[(&str, &str)],
) -> ouro_client::SubmitAnswer {
    let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(120)).build().expect("a client");
    let url = format!("{}/api/compute/submit", edge_url());
    let send = |payment: Option<String>| {
        let mut request = http.post(&url).json(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(p) = payment {
            request = request.header("payment-signature", p);
        }
        async move {
            let resp = request.send().await.expect("the edge answers");
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let bytes = resp.bytes().await.expect("a body");
            ouro_client::SubmitAnswer::new(status, headers, &bytes).expect("a well-formed answer")
        }
    };
    let unpaid = send(None).await;
    assert_eq!(unpaid.status, 402, "{}", unpaid.body);
    let required = unpaid.payment_required.expect("PAYMENT-REQUIRED on a 402");
    let payment = ouro_client::sign_payment(key, &required, |_| {}).expect("signed");
    send(Some(ouro_core::x402::header::encode(&payment))).await
}

/// The operator token of `GET /api/ledger`: `OURO_OPERATOR_TOKEN`, else the local `.dev.vars` (written by
/// `cargo xtask up`).
pub fn operator_token() -> String {
    if let Ok(token) = std::env::var("OURO_OPERATOR_TOKEN") {
        return token;
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../.dev.vars");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    text.lines()
        .find_map(|l| l.trim().strip_prefix("OPERATOR_TOKEN="))
        .map(|t| t.trim().to_string())
        .unwrap_or_else(|| panic!("{path} has no OPERATOR_TOKEN: run `cargo xtask up`"))
}

/// `GET /api/ledger` with the operator token.
pub async fn ledger() -> Value {
    let resp = reqwest::Client::new()
        .get(format!("{}/api/ledger?limit=1000", edge_url()))
        .bearer_auth(operator_token())
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("the edge answers");
    assert_eq!(resp.status().as_u16(), 200, "GET /api/ledger");
    resp.json().await.expect("the ledger is JSON")
}

/// The number of the latest block.
pub async fn block_number() -> u64 {
    let result = rpc("eth_blockNumber", json!([])).await;
    u64::from_str_radix(result.as_str().expect("a quantity").trim_start_matches("0x"), 16).expect("a quantity")
}

/// Transfers of the test token from `from` to `to` in blocks after `from_block` (a settlement is one).
pub async fn transfers(from: Address, to: Address, from_block: u64) -> usize {
    let topic = format!("0x{}", hex::encode(keccak256("Transfer(address,address,uint256)".as_bytes())));
    let logs = rpc(
        "eth_getLogs",
        json!([{ "address": TOKEN, "fromBlock": format!("{:#x}", from_block + 1), "toBlock": "latest",
                 "topics": [topic, format!("0x{}", word(from.as_slice())), format!("0x{}", word(to.as_slice()))] }]),
    )
    .await;
    logs.as_array().map(Vec::len).unwrap_or(0)
}

/// `GET /api/credits`, signed by `w` (EIP-191 over `ouro-credit-balance:{wallet}:{ts}`): its credit balance and
/// history.
pub async fn credits_of(w: &Wallet) -> Value {
    let wallet = format!("{:#x}", w.address);
    let ts = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    let message = ouro_core::wallet_auth::Action::CreditBalance.message(&wallet, ts);
    let digest = alloy_primitives::eip191_hash_message(message.as_bytes());
    let signature = ouro_core::eip712::sign_digest(&w.key, &digest).expect("signed");
    let url = format!("{}/api/credits?wallet={wallet}&signature=0x{}&timestamp={ts}", edge_url(), hex::encode(signature));
    let resp = reqwest::Client::new().get(url).timeout(Duration::from_secs(30)).send().await.expect("the edge answers");
    assert_eq!(resp.status().as_u16(), 200, "GET /api/credits");
    resp.json().await.expect("JSON")
}

/// The credit balance of `w` in atomic units.
pub async fn credit_balance(w: &Wallet) -> u64 {
    let answer = credits_of(w).await;
    answer["balance_atomic"].as_str().and_then(|b| b.parse().ok()).unwrap_or_else(|| panic!("balance in {answer}"))
}

/// Runs the edge's cron now (wrangler dev runs it on request, `--test-scheduled`).
pub async fn run_cron() {
    let url = format!("{}/__scheduled?cron=*/10+*+*+*+*", edge_url());
    let resp = reqwest::Client::new().get(url).timeout(Duration::from_secs(120)).send().await.expect("the edge answers");
    assert!(resp.status().is_success(), "the cron ran: HTTP {}", resp.status());
}

/// Query parameters `wallet`, `signature`, `timestamp` of a request signed by `key` (EIP-191 over
/// `action`'s message with the lowercase address), `skew_s` seconds away from now.
pub fn signed_query(key: &SigningKey, action: ouro_core::wallet_auth::Action<'_>, skew_s: i64) -> Vec<(&'static str, String)> {
    let wallet = format!("{:#x}", ouro_core::eip712::address_of(key));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("a clock").as_secs() as i64;
    let ts = (now + skew_s) as u64;
    let digest = alloy_primitives::eip191_hash_message(action.message(&wallet, ts).as_bytes());
    let sig = ouro_core::eip712::sign_digest(key, &digest).expect("signed");
    vec![("wallet", wallet), ("signature", format!("0x{}", hex::encode(sig))), ("timestamp", ts.to_string())]
}

/// [`client`], after waiting (up to two minutes, [`edge_answers_within`]) for the edge to answer: it stalls
/// while wrangler rebuilds the Worker, which every saved edit of `edge/src` or `core/src` triggers.
pub async fn client_when_up() -> Client {
    edge_answers_within(Duration::from_secs(120)).await;
    client().await
}
