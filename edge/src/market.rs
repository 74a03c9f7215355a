//! The market a price is made in (the ledger's figures: demand and the sustainability ratio), and the quote for a
//! job right now. The submit path, `GET /api/price`, `/.well-known/x402` and `/api/stats` all come through here,
//! so the same parameters get the same price at the same moment, and the stats show the market that priced it.

use ouro_core::pricing::{quote, PriceRequest, Quote};
use worker::{D1Database, Result};

use crate::config::Config;

pub async fn current_quote(db: &D1Database, config: &Config, req: PriceRequest, now_ms: u64) -> Result<Quote> {
    let figures = crate::ledger::figures(db, &config.ops, now_ms).await?;
    Ok(quote_in(config, req, &figures))
}

/// The quote in the market the ledger's `figures` describe: the same figures `/api/stats` shows.
pub fn quote_in(config: &Config, req: PriceRequest, figures: &crate::ledger::Figures) -> Quote {
    quote(&config.pricing, req, figures.market())
}
