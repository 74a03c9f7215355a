//! `GET /api/ledger`: the operators' view of the money — every payment with its state and settlement
//! transaction (`ledger_payments`, migration 0005), the sums by state, and `payTo`'s token balance on chain next
//! to the settled sum, so that anyone holding the operator token can see the two agree. Bearer
//! `OPERATOR_TOKEN`; without one configured the route does not exist.

use serde_json::json;
use worker::{Request, Response, Result, RouteContext};

use super::now_ms;
use crate::config::Config;
use crate::db::payments;
use crate::http;
use crate::rpc::Rpc;

const DEFAULT_ENTRIES: u32 = 100;
const MAX_ENTRIES: u32 = 1000;

/// Compares in time independent of where the first difference is.
fn same_secret(given: &str, expected: &str) -> bool {
    given.len() == expected.len() && given.bytes().zip(expected.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

pub async fn get(req: Request, ctx: RouteContext<()>) -> Result<Response> {
    let config = match Config::from_env(&ctx.env) {
        Ok(c) => c,
        Err(e) => return http::error(500, "misconfigured", e),
    };
    let Some(token) = config.admission.operator_token.as_deref() else {
        return http::error(404, "not_found", "no route for GET /api/ledger");
    };
    let given = req.headers().get("authorization")?.unwrap_or_default();
    if !same_secret(given.strip_prefix("Bearer ").unwrap_or_default().trim(), token) {
        return http::error(401, "unauthorized", "the ledger needs Authorization: Bearer <operator token>");
    }
    let url = req.url()?;
    let query = |name: &str| url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.to_string());
    let limit = match query("limit").map(|v| v.parse::<u32>()) {
        None => DEFAULT_ENTRIES,
        Some(Ok(n)) if (1..=MAX_ENTRIES).contains(&n) => n,
        Some(_) => return http::field_error("limit", &format!("must be a whole number from 1 to {MAX_ENTRIES}")),
    };
    let before = match query("before").map(|v| v.parse::<u64>()) {
        None => u64::MAX / 2,
        Some(Ok(ms)) => ms,
        Some(Err(_)) => return http::field_error("before", "must be unix milliseconds"),
    };
    let db = ctx.env.d1("DB")?;
    let sums = payments::ledger_sums(&db).await?;
    let entries = payments::ledger_entries(&db, before, limit).await?;
    // Credits (A2): every credit earned and spent is a row of `credits` (migration 0008).
    let credits = json!({
        "sums": crate::db::credits::totals(&db).await?,
        "entries": crate::db::credits::ledger(&db, before, limit).await?,
    });
    let pay_to = format!("{:#x}", config.chain.pay_to);
    let rpc = Rpc { url: &config.ops.rpc_url, timeout_ms: config.ops.rpc_timeout_ms };
    let chain = match rpc.erc20_balance(&config.chain.asset.to_checksum(None), &pay_to).await {
        Ok(balance) => json!({
            "pay_to_balance_atomic": balance.to_string(),
            "settled_minus_balance_atomic": (i128::from(sums.settled_atomic) - balance as i128).to_string(),
        }),
        Err(e) => json!({ "error": e.to_string() }),
    };
    http::json(
        200,
        &json!({
            "as_of_ms": now_ms(),
            "network": config.chain.network,
            "asset": config.chain.asset.to_checksum(None),
            "pay_to": pay_to,
            "sums": sums,
            "chain": chain,
            "entries": entries,
            "credits": credits,
        }),
    )
}
