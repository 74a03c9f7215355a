//! `GET /api/stats`: the ledger in public — revenue, costs, P&L, the sustainability ratio and the market it puts
//! prices in. Every figure comes from `ledger::figures`, and phase, margin and demand are read off a quote made
//! in that same market (`market::quote_in`), so they are exactly what a quote's breakdown says right now.

use ouro_core::pricing::{format_usd, PriceRequest, SubmissionMode, ATOMIC_PER_USD};
use ouro_core::time::rfc3339_from_millis;
use serde_json::json;
use worker::{Request, Response, Result, RouteContext};

use super::now_ms;
use crate::config::Config;
use crate::{db, http, ledger, market};

const RECENT_JOBS: u32 = 10;

pub async fn get(_req: Request, ctx: RouteContext<()>) -> Result<Response> {
    let config = match Config::from_env(&ctx.env) {
        Ok(c) => c,
        Err(e) => return http::error(500, "misconfigured", e),
    };
    let db = ctx.env.d1("DB")?;
    let figures = ledger::figures(&db, &config.ops, now_ms()).await?;
    let recent = db::recent_jobs(&db, RECENT_JOBS).await?;
    // Phase, margin and demand do not depend on the job's size: any quote in this market carries them.
    let reference = PriceRequest { cpus: 1, time_limit_min: 1, mode: SubmissionMode::Script };
    let breakdown = market::quote_in(&config, reference, &figures).breakdown;
    let t = &figures.totals;
    let per_job = |usd: f64| if t.paid_jobs == 0 { 0.0 } else { usd / t.paid_jobs as f64 };
    let (avg_price, avg_cost) = (per_job(figures.revenue_usd), per_job(figures.total_costs_usd));
    let ops = &config.ops;
    http::json(
        200,
        &json!({
            "total_revenue_usdc": figures.revenue_usd,
            "total_revenue_atomic": t.revenue_atomic.to_string(),
            "gas_costs_usd": figures.gas_costs_usd,
            "compute_costs_usd": figures.compute_costs_usd,
            "storage_costs_usd": figures.storage_costs_usd,
            "total_costs_usd": figures.total_costs_usd,
            "net_pnl_usd": figures.net_pnl_usd,
            "total_jobs": t.paid_jobs,
            "completed_jobs": t.completed_jobs,
            "failed_jobs": t.failed_jobs,
            "active_jobs": t.active_jobs,
            "avg_duration_s": t.avg_duration_s,
            "cpu_seconds": t.cpu_seconds,
            "settlement_txs": t.gas_txs,
            "settlement_txs_estimated": t.gas_estimated_txs,
            "sustainability_ratio": figures.sustainability_ratio,
            "sustainability_ratio_note": figures.sustainability_ratio.is_none().then_some(ledger::NO_COSTS_NOTE),
            "survival_phase": breakdown.phase,
            "demand_multiplier": breakdown.demand_multiplier,
            "margin_multiplier": breakdown.margin_multiplier,
            "jobs_last_hour": t.jobs_last_hour,
            "avg_cost_per_job": avg_cost,
            "avg_price_per_job": avg_price,
            "avg_margin_per_job": avg_price - avg_cost,
            "cost_rates": {
                "compute_cost_per_cpu_second_usd": ops.compute_cost_per_cpu_second_usd,
                "eth_price_usd": ops.eth_price_usd,
                "storage_cost_per_job_usd": ops.storage_cost_per_job_usd,
                "gas_estimate_wei": ops.gas_estimate_wei.to_string(),
            },
            "recent_jobs": recent.iter().map(|j| json!({
                "status": j.status,
                "image": j.image,
                "cpus": j.cpus,
                "time_limit_min": j.time_limit_min,
                "submission_mode": if j.file_count > 0 { "multi_file" } else { "script" },
                "price": format_usd(j.price_atomic),
                "price_usdc": j.price_atomic as f64 / ATOMIC_PER_USD as f64,
                "compute_duration_s": j.compute_duration_s,
                "submitted_at": rfc3339_from_millis(j.submitted_at),
                "completed_at": j.completed_at.map(rfc3339_from_millis),
            })).collect::<Vec<_>>(),
        }),
    )
}
