//! `GET /api/credits?wallet=&signature=&timestamp=`: a wallet's credit balance and history, signed by the wallet
//! (EIP-191 over `ouro-credit-balance:{wallet}:{ts}`): a wallet's credits are nobody else's business.

use ouro_core::pricing::format_usd;
use ouro_core::time::rfc3339_from_millis;
use ouro_core::wallet_auth::Action;
use serde_json::json;
use worker::{Request, Response, Result, RouteContext};

use crate::access::{signed_params, verify_signed};
use crate::db::credits as ledger;
use crate::http;

const HISTORY: u32 = 100;

pub async fn get(req: Request, ctx: RouteContext<()>) -> Result<Response> {
    let wallet = match verify_signed(&signed_params(&req)?, Action::CreditBalance)? {
        Ok(wallet) => wallet,
        Err(resp) => return Ok(resp),
    };
    let db = ctx.env.d1("DB")?;
    let balance = crate::credits::balance(&db, &wallet).await?;
    let history = ledger::wallet_history(&db, &wallet, HISTORY).await?;
    http::json(
        200,
        &json!({
            "wallet": wallet,
            "balance_atomic": balance.to_string(),
            "balance": format_usd(balance - balance % ouro_core::pricing::PRICE_STEP),
            "entries": history.iter().map(|row| json!({
                "kind": row.kind,
                "amount_atomic": row.amount_atomic.to_string(),
                "job_id": row.job_id,
                "rule": row.rule,
                "created_at": rfc3339_from_millis(row.created_at),
            })).collect::<Vec<_>>(),
        }),
    )
}
