//! `GET /api/wallet`: the service wallet (`SERVICE_WALLET`, else `PAY_TO`) — its ETH and USDC balances read live
//! over JSON-RPC, and up to 100 snapshots (newest first) recorded by the scheduled handler. An unreachable RPC
//! is an answer too: 200 with `"status": "degraded"`, the error, null balances and the snapshots D1 still has.

use futures_util::future::join;
use ouro_core::pricing::ATOMIC_PER_USD;
use ouro_core::time::rfc3339_from_millis;
use serde_json::{json, Value};
use worker::{Env, Request, Response, Result, RouteContext};

use super::now_ms;
use crate::config::Config;
use crate::rpc::{Rpc, RpcError};
use crate::{db, http};

/// Snapshots shown, and kept.
pub const SNAPSHOTS_SHOWN: u32 = 100;
const SNAPSHOTS_KEPT: u32 = 1000;
const WEI_PER_ETH: f64 = 1e18;

pub struct Balances {
    pub eth_wei: u128,
    pub usdc_atomic: u128,
}

/// The service wallet's balances now.
pub async fn read_balances(config: &Config) -> std::result::Result<Balances, RpcError> {
    let ops = &config.ops;
    let rpc = Rpc { url: &ops.rpc_url, timeout_ms: ops.rpc_timeout_ms };
    let asset = format!("{:#x}", config.chain.asset);
    let (eth, usdc) = join(rpc.eth_balance(&ops.service_wallet), rpc.erc20_balance(&asset, &ops.service_wallet)).await;
    Ok(Balances { eth_wei: eth?, usdc_atomic: usdc? })
}

fn usdc(atomic: u128) -> f64 {
    atomic as f64 / ATOMIC_PER_USD as f64
}

pub async fn get(_req: Request, ctx: RouteContext<()>) -> Result<Response> {
    let config = match Config::from_env(&ctx.env) {
        Ok(c) => c,
        Err(e) => return http::error(500, "misconfigured", e),
    };
    let ops = &config.ops;
    let db = ctx.env.d1("DB")?;
    let live = read_balances(&config).await;
    let snapshots = db::wallet_snapshots(&db, &ops.service_wallet, SNAPSHOTS_SHOWN).await?;
    let address = ouro_core::x402::parse_address(&ops.service_wallet)
        .map(|a| a.to_checksum(None))
        .unwrap_or_else(|| ops.service_wallet.clone());
    let mut body = json!({
        "address": address,
        "network": config.chain.network,
        "asset": config.chain.asset.to_checksum(None),
        "status": "ok",
        "error": Value::Null,
        "eth_balance_wei": Value::Null,
        "eth_balance": Value::Null,
        "eth_balance_usd": Value::Null,
        "usdc_balance": Value::Null,
        "usdc_balance_atomic": Value::Null,
        "eth_price_usd": ops.eth_price_usd,
        "min_eth_wei": ops.wallet_min_eth_wei.to_string(),
        "eth_low": Value::Null,
        "read_at": rfc3339_from_millis(now_ms()),
        "snapshots": snapshots.iter().map(|s| {
            let usdc_atomic: u128 = s.usdc_balance_atomic.parse().unwrap_or(0);
            json!({
                "eth_balance_wei": s.eth_balance_wei,
                "usdc_balance": usdc(usdc_atomic),
                "usdc_balance_atomic": s.usdc_balance_atomic,
                "eth_price_usd": s.eth_price_usd,
                "recorded_at": rfc3339_from_millis(s.recorded_at),
            })
        }).collect::<Vec<_>>(),
    });
    match live {
        Ok(b) => {
            let eth = b.eth_wei as f64 / WEI_PER_ETH;
            body["eth_balance_wei"] = json!(b.eth_wei.to_string());
            body["eth_balance"] = json!(eth);
            body["eth_balance_usd"] = json!(eth * ops.eth_price_usd);
            body["usdc_balance"] = json!(usdc(b.usdc_atomic));
            body["usdc_balance_atomic"] = json!(b.usdc_atomic.to_string());
            body["eth_low"] = json!(b.eth_wei < ops.wallet_min_eth_wei);
        }
        Err(e) => {
            body["status"] = json!("degraded");
            body["error"] = json!(format!("the wallet's balances could not be read: {e}"));
        }
    }
    http::json(200, &body)
}

/// The scheduled handler's part: records a snapshot of the service wallet (nothing when the RPC is down).
pub async fn snapshot(env: &Env, now_ms: u64) -> Result<()> {
    let config = Config::from_env(env).map_err(|e| worker::Error::RustError(e.to_string()))?;
    match read_balances(&config).await {
        Ok(b) => {
            let db = env.d1("DB")?;
            db::record_wallet_snapshot(
                &db,
                &config.ops.service_wallet,
                b.eth_wei,
                b.usdc_atomic,
                config.ops.eth_price_usd,
                now_ms,
                SNAPSHOTS_KEPT,
            )
            .await
        }
        Err(e) => {
            worker::console_error!("wallet snapshot skipped: {e}");
            Ok(())
        }
    }
}
