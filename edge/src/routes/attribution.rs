//! Builder-code attribution.
//!
//! - `GET /api/attribution[?code=]`: the paid jobs submitted with `X-BUILDER-CODE` — totals, the most recent
//!   attributed settlements with their codes and gas, and jobs and revenue per code (a job with two codes counts
//!   for both). `tx_hash` is the job's settlement transaction; the job id is never shown.
//! - `GET /api/attribution/decode?tx_hash=`: the ERC-8021 suffix of any transaction on our chain, read with
//!   `eth_getTransactionByHash` and decoded by `ouro_core::erc8021` (bad hash → 400, unknown → 404, RPC down → 503).

use ouro_core::erc8021::{decode, Attribution};
use ouro_core::pricing::{format_usd, ATOMIC_PER_USD};
use ouro_core::time::rfc3339_from_millis;
use serde_json::{json, Value};
use worker::{Request, Response, Result, RouteContext};

use crate::config::Config;
use crate::rpc::{is_tx_hash, Rpc};
use crate::{db, http};

const RECENT: u32 = 20;
const CODES_SHOWN: u32 = 100;

fn query(req: &Request, name: &str) -> Result<Option<String>> {
    Ok(req.url()?.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned()))
}

fn usdc(atomic: u64) -> f64 {
    atomic as f64 / ATOMIC_PER_USD as f64
}

pub async fn list(req: Request, ctx: RouteContext<()>) -> Result<Response> {
    let code = query(&req, "code")?.filter(|c| !c.is_empty());
    let db = ctx.env.d1("DB")?;
    let totals = db::attribution_totals(&db).await?;
    let rows = db::recent_attributions(&db, RECENT).await?;
    let by_code = db::code_stats(&db, code.as_deref(), CODES_SHOWN).await?;

    // Rows of one job are adjacent and in header order.
    let mut recent: Vec<Value> = Vec::new();
    let mut current: Option<&str> = None;
    for row in &rows {
        if current != Some(row.job_id.as_str()) {
            current = Some(row.job_id.as_str());
            recent.push(json!({
                "tx_hash": row.tx_hash,
                "codes": [],
                "is_multi": false,
                "gas_used": row.gas_used,
                "price": format_usd(row.amount_atomic),
                "revenue_usdc": usdc(row.amount_atomic),
                "created_at": rfc3339_from_millis(row.created_at),
            }));
        }
        if let Some(entry) = recent.last_mut() {
            if let Some(codes) = entry["codes"].as_array_mut() {
                codes.push(json!(row.code));
                let multi = codes.len() > 1;
                entry["is_multi"] = json!(multi);
            }
        }
    }
    http::json(
        200,
        &json!({
            // These records come from the X-BUILDER-CODE header of paid submissions, kept with each job in D1;
            // the settlement transactions themselves carry no ERC-8021 suffix (see /api/attribution/decode).
            "source": "x-builder-code",
            "total_attributed_txs": totals.total_attributed_txs,
            "multi_code_txs": totals.multi_code_txs,
            "total_gas_attributed": totals.total_gas_attributed,
            "distinct_codes": totals.distinct_codes,
            "recent": recent,
            "codes": by_code.iter().map(|c| json!({
                "code": c.code,
                "jobs": c.jobs,
                "revenue_usdc": usdc(c.revenue_atomic),
                "revenue_atomic": c.revenue_atomic.to_string(),
                "first_seen": rfc3339_from_millis(c.first_seen),
                "last_seen": rfc3339_from_millis(c.last_seen),
            })).collect::<Vec<_>>(),
        }),
    )
}

pub async fn decode_tx(req: Request, ctx: RouteContext<()>) -> Result<Response> {
    let config = match Config::from_env(&ctx.env) {
        Ok(c) => c,
        Err(e) => return http::error(500, "misconfigured", e),
    };
    let Some(tx_hash) = query(&req, "tx_hash")? else {
        return bad_hash("tx_hash is required: a transaction hash, 0x and 64 hex digits");
    };
    if !is_tx_hash(&tx_hash) {
        return bad_hash("tx_hash must be a transaction hash: 0x and 64 hex digits");
    }
    let tx_hash = tx_hash.to_ascii_lowercase();
    let rpc = Rpc { url: &config.ops.rpc_url, timeout_ms: config.ops.rpc_timeout_ms };
    let input = match rpc.transaction_input(&tx_hash).await {
        Ok(Some(input)) => input,
        Ok(None) => {
            return http::error(404, "tx_not_found", format!("no transaction {tx_hash} on {}", config.chain.network))
        }
        Err(e) => {
            worker::console_error!("attribution decode of {tx_hash}: {e}");
            let resp = http::error(503, "rpc_unavailable", format!("the chain could not be read: {e}"))?;
            return http::with_retry_after(resp, 10);
        }
    };
    http::json(200, &decoded(&tx_hash, decode(&input).as_ref()))
}

fn bad_hash(message: &str) -> Result<Response> {
    http::json(400, &json!({ "error": message, "code": "invalid_tx_hash", "field": "tx_hash" }))
}

/// `{tx_hash, has_attribution, codes, schema_id, registry, app_code, wallet_code, service_codes}`.
fn decoded(tx_hash: &str, attribution: Option<&Attribution>) -> Value {
    let Some(a) = attribution else {
        return json!({
            "tx_hash": tx_hash,
            "has_attribution": false,
            "codes": [],
            "schema_id": Value::Null,
            "registry": Value::Null,
            "app_code": Value::Null,
            "wallet_code": Value::Null,
            "service_codes": [],
        });
    };
    let (app, wallet, services) = match a {
        Attribution::Schema2 { app, wallet, services } => (app.clone(), wallet.clone(), services.clone()),
        _ => (None, None, Vec::new()),
    };
    json!({
        "tx_hash": tx_hash,
        "has_attribution": true,
        "codes": a.codes(),
        "schema_id": a.schema_id(),
        "registry": a.registry().map(|(address, chain_id)| json!({
            "address": address.to_checksum(None),
            "chain_id": chain_id,
        })),
        "app_code": app,
        "wallet_code": wallet,
        "service_codes": services,
    })
}
