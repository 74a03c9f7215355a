//! The market a price is made in, read from D1, and the quote for a job right now. The submit path and
//! `GET /api/price` both come through here, so the same parameters get the same price at the same moment.

use ouro_core::pricing::{quote, Market, PriceRequest, Quote};
use worker::{D1Database, Result};

use crate::config::Config;
use crate::db;

const HOUR_MS: u64 = 3_600_000;

pub async fn current_quote(db: &D1Database, config: &Config, req: PriceRequest, now_ms: u64) -> Result<Quote> {
    let market = Market {
        jobs_last_hour: db::jobs_since(db, now_ms.saturating_sub(HOUR_MS)).await?,
        // Costs are not yet recorded in the ledger: with no costs the phase is OPTIMAL.
        sustainability_ratio: None,
    };
    Ok(quote(&config.pricing, req, market))
}
