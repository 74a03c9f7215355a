//! `GET /api/price?cpus=&time_limit_min=&submission_mode=`: the price a submission with these parameters gets now.

use ouro_core::submit::validate_price_query;
use serde_json::json;
use worker::{Request, Response, Result, RouteContext};

use super::now_ms;
use crate::config::Config;
use crate::http;
use crate::market::current_quote;

pub async fn handle(req: Request, ctx: RouteContext<()>) -> Result<Response> {
    let config = match Config::from_env(&ctx.env) {
        Ok(c) => c,
        Err(e) => return http::error(500, "misconfigured", e),
    };
    let url = req.url()?;
    let param = |name: &str| url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
    let (cpus, minutes, mode) = (param("cpus"), param("time_limit_min"), param("submission_mode"));
    let checked = validate_price_query(cpus.as_deref(), minutes.as_deref(), mode.as_deref())
        .and_then(|p| config.check_cpus(p.cpus).map(|()| p));
    let priced = match checked {
        Ok(p) => p,
        Err(e) => return http::field_error(&e.field, &e.message),
    };
    let quote = current_quote(&ctx.env.d1("DB")?, &config, priced, now_ms()).await?;
    http::json(
        200,
        &json!({
            "price": quote.price(),
            "amount": quote.amount.to_string(),
            "network": config.chain.network,
            "asset": config.chain.asset.to_checksum(None),
            "breakdown": quote.breakdown,
        }),
    )
}
