//! `GET /health/ready`: whether this edge can serve a paid job now. Each dependency is probed at once, under
//! its own deadline (`HEALTH_TIMEOUT_MS`), and named in the answer:
//!
//! - `d1`: `SELECT 1`; `r2`: a head of one key (absent is fine: the bucket answered);
//! - `executor`: at least one of `EXECUTOR_URLS` answers `GET /v1/health` with status ok;
//! - `facilitator`: its `/supported` lists x402 v2 `exact` on our network;
//! - `wallet_eth`: the gas wallet (`GAS_WALLET`, else the service wallet) holds at least `WALLET_MIN_ETH_WEI`
//!   ("low" degrades);
//! - `wallet_usdc`: its USDC, reported ("low" under `WALLET_LOW_USDC`) but never degrading readiness.
//!
//! Any degrading check not "ok" → 503 `{"status": "degraded", ...}`; otherwise 200 `{"status": "ready", ...}`.

use futures_util::future::{join, join5, join_all};
use serde_json::{json, Map, Value};
use worker::{Env, Request, Response, Result, RouteContext};

use crate::config::Config;
use crate::rpc::{decimal, Rpc};
use crate::{db, http, outbound, workspaces};

/// A key that is never written: a head of it proves the bucket answers.
const R2_PROBE_KEY: &str = "health/ready-probe";

struct Check {
    status: &'static str,
    detail: Option<String>,
    /// Whether a status other than "ok" makes the service degraded.
    degrades: bool,
}

impl Check {
    fn ok(detail: impl Into<String>) -> Check {
        Check { status: "ok", detail: Some(detail.into()), degrades: true }
    }

    fn bad(status: &'static str, detail: impl Into<String>) -> Check {
        Check { status, detail: Some(detail.into()), degrades: true }
    }

    fn json(&self) -> Value {
        let mut v = json!({ "status": self.status });
        if let Some(detail) = &self.detail {
            v["detail"] = json!(detail);
        }
        v
    }
}

pub async fn ready(_req: Request, ctx: RouteContext<()>) -> Result<Response> {
    let config = match Config::from_env(&ctx.env) {
        Ok(c) => c,
        Err(e) => return http::error(500, "misconfigured", e),
    };
    let (d1, r2, executor, facilitator, (wallet_eth, wallet_usdc)) = join5(
        check_d1(&ctx.env),
        check_r2(&ctx.env),
        check_executors(&config),
        check_facilitator(&config),
        check_wallet(&config),
    )
    .await;
    let checks = [
        ("d1", d1),
        ("r2", r2),
        ("executor", executor),
        ("facilitator", facilitator),
        ("wallet_eth", wallet_eth),
        ("wallet_usdc", wallet_usdc),
    ];
    let degraded = checks.iter().any(|(_, c)| c.degrades && c.status != "ok");
    let body = json!({
        "status": if degraded { "degraded" } else { "ready" },
        "checks": checks.iter().map(|(name, c)| (name.to_string(), c.json())).collect::<Map<String, Value>>(),
    });
    let resp = http::json(if degraded { 503 } else { 200 }, &body)?;
    if degraded {
        return http::with_retry_after(resp, 10);
    }
    Ok(resp)
}

async fn check_d1(env: &Env) -> Check {
    let result = match env.d1("DB") {
        Ok(db) => db::ping(&db).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => Check::ok("SELECT 1 answered"),
        Err(e) => Check::bad("error", format!("D1 binding DB: {e}")),
    }
}

async fn check_r2(env: &Env) -> Check {
    let result = match env.bucket(workspaces::BINDING) {
        Ok(bucket) => bucket.head(R2_PROBE_KEY).await.map(|_| ()),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => Check::ok(format!("head of {R2_PROBE_KEY} answered")),
        Err(e) => Check::bad("error", format!("R2 binding {}: {e}", workspaces::BINDING)),
    }
}

async fn check_executors(config: &Config) -> Check {
    let timeout = config.ops.health_timeout_ms;
    let answers = join_all(config.executor_urls.iter().map(|url| crate::capacity::probe_executor(url, timeout))).await;
    let mut up = Vec::new();
    let mut down = Vec::new();
    for (url, answer) in config.executor_urls.iter().zip(answers) {
        match answer {
            Ok(h) => up.push(format!("{url}: {} of {} slots free", h.slots_free, h.slots_total)),
            Err(why) => down.push(why),
        }
    }
    if up.is_empty() {
        Check::bad("unreachable", format!("no executor is available: {}", down.join("; ")))
    } else {
        let mut detail = up.join("; ");
        if !down.is_empty() {
            detail.push_str(&format!(" (also: {})", down.join("; ")));
        }
        Check::ok(detail)
    }
}

async fn check_facilitator(config: &Config) -> Check {
    let url = format!("{}/supported", config.facilitator_url);
    let network = &config.chain.network;
    match outbound::get(&url, config.ops.health_timeout_ms).await {
        Ok((200, text)) => {
            let supported: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let kinds = supported.get("kinds").and_then(Value::as_array).cloned().unwrap_or_default();
            let ours = kinds.iter().any(|k| {
                k.get("x402Version").and_then(Value::as_u64) == Some(u64::from(ouro_core::x402::X402_VERSION))
                    && k.get("scheme").and_then(Value::as_str) == Some("exact")
                    && k.get("network").and_then(Value::as_str) == Some(network.as_str())
            });
            if ours {
                Check::ok(format!("{url} lists x402 v2 exact on {network}"))
            } else {
                Check::bad("unsupported", format!("{url} does not list x402 v2 exact on {network}"))
            }
        }
        Ok((status, _)) => Check::bad("unreachable", format!("facilitator {url} answered HTTP {status}")),
        Err(e) => Check::bad("unreachable", format!("facilitator: {e}")),
    }
}

/// `(wallet_eth, wallet_usdc)`.
async fn check_wallet(config: &Config) -> (Check, Check) {
    let ops = &config.ops;
    let rpc = Rpc { url: &ops.rpc_url, timeout_ms: ops.health_timeout_ms };
    let (wallet, gas_wallet) = (&ops.service_wallet, &ops.gas_wallet);
    let asset = format!("{:#x}", config.chain.asset);
    let (eth, usdc) = join(rpc.eth_balance(gas_wallet), rpc.erc20_balance(&asset, wallet)).await;
    let wallet_for_eth = gas_wallet;
    let eth = match eth {
        Ok(wei) if wei >= ops.wallet_min_eth_wei => {
            Check::ok(format!("{wallet_for_eth} holds {} ETH (minimum {})", decimal(wei, 18), decimal(ops.wallet_min_eth_wei, 18)))
        }
        Ok(wei) => Check::bad(
            "low",
            format!(
                "{wallet_for_eth} holds {} ETH, under the {} ETH needed for gas",
                decimal(wei, 18),
                decimal(ops.wallet_min_eth_wei, 18)
            ),
        ),
        Err(e) => Check::bad("unreachable", format!("reading {wallet_for_eth}'s ETH balance: {e}")),
    };
    let usdc = match usdc {
        Ok(atomic) if atomic >= u128::from(ops.wallet_low_usdc_atomic) => {
            Check::ok(format!("{wallet} holds {} USDC", decimal(atomic, 6)))
        }
        Ok(atomic) => Check::bad("low", format!("{wallet} holds {} USDC (does not affect readiness)", decimal(atomic, 6))),
        Err(e) => Check::bad("unreachable", format!("reading {wallet}'s USDC balance: {e}")),
    };
    (eth, Check { degrades: false, ..usdc })
}
