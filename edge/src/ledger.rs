//! The ledger: what the service has earned and what it has cost, read from D1.
//!
//! - Revenue: the sum of settled payments.
//! - Compute: CPU-seconds of ended jobs (cpus × compute_duration_s) × `COMPUTE_COST_PER_CPU_SECOND_USD`.
//! - Gas: each settlement transaction's `gasUsed × effectiveGasPrice` from its receipt (recorded right after the
//!   settle; `GAS_ESTIMATE_WEI` when the RPC did not give it, corrected later by the scheduled handler), in dollars
//!   at `ETH_PRICE_USD`.
//! - Storage: `STORAGE_COST_PER_JOB_USD` per paid job (0 by default: R2 and D1 are not billed per job yet).
//!
//! [`figures`] is the only place these are computed. `/api/stats` shows them and `market::current_quote` prices
//! with them (the sustainability ratio decides the phase), so a quote's breakdown and the stats always agree.

use ouro_core::pricing::{Market, ATOMIC_PER_USD};
use worker::{D1Database, Result};

use crate::config::Operations;
use crate::db::{self, LedgerTotals, NewGas};
use crate::rpc::Rpc;

const HOUR_MS: u64 = 3_600_000;
const WEI_PER_ETH: f64 = 1e18;

/// Said instead of a ratio while nothing has cost anything.
pub const NO_COSTS_NOTE: &str =
    "no costs recorded yet: revenue / costs is undefined; pricing treats the service as sustainable (phase OPTIMAL)";

#[derive(Debug, Clone)]
pub struct Figures {
    pub totals: LedgerTotals,
    pub revenue_usd: f64,
    pub compute_costs_usd: f64,
    pub gas_costs_usd: f64,
    pub storage_costs_usd: f64,
    pub total_costs_usd: f64,
    pub net_pnl_usd: f64,
    /// Revenue ÷ costs; `None` while costs are zero.
    pub sustainability_ratio: Option<f64>,
}

impl Figures {
    pub fn from_totals(totals: LedgerTotals, ops: &Operations) -> Figures {
        let revenue_usd = totals.revenue_atomic as f64 / ATOMIC_PER_USD as f64;
        let compute_costs_usd = totals.cpu_seconds * ops.compute_cost_per_cpu_second_usd;
        let gas_costs_usd = totals.gas_wei / WEI_PER_ETH * ops.eth_price_usd;
        let storage_costs_usd = totals.paid_jobs as f64 * ops.storage_cost_per_job_usd;
        let total_costs_usd = compute_costs_usd + gas_costs_usd + storage_costs_usd;
        let sustainability_ratio = (total_costs_usd > 0.0).then(|| revenue_usd / total_costs_usd);
        Figures {
            totals,
            revenue_usd,
            compute_costs_usd,
            gas_costs_usd,
            storage_costs_usd,
            total_costs_usd,
            net_pnl_usd: revenue_usd - total_costs_usd,
            sustainability_ratio,
        }
    }

    /// The market a price is made in now.
    pub fn market(&self) -> Market {
        Market { jobs_last_hour: self.totals.jobs_last_hour, sustainability_ratio: self.sustainability_ratio }
    }
}

/// Every ledger figure, now.
pub async fn figures(db: &D1Database, ops: &Operations, now_ms: u64) -> Result<Figures> {
    let totals = db::ledger_totals(db, now_ms.saturating_sub(HOUR_MS)).await?;
    Ok(Figures::from_totals(totals, ops))
}

/// Records the gas of a settlement just made: from its receipt, else the configured estimate. Runs after the
/// payment is recorded, so a failure here is logged and never turns a paid job into an error.
pub async fn record_settlement_gas(db: &D1Database, ops: &Operations, job_id: &str, tx_hash: &str, now_ms: u64) {
    let rpc = Rpc { url: &ops.rpc_url, timeout_ms: ops.rpc_timeout_ms };
    let gas = match rpc.receipt(tx_hash).await {
        Ok(Some(r)) => NewGas {
            tx_hash,
            job_id,
            gas_used: Some(r.gas_used),
            effective_gas_price_wei: Some(r.effective_gas_price_wei),
            gas_cost_wei: r.cost_wei(),
            source: "receipt",
            now_ms,
        },
        outcome => {
            let why = match outcome {
                Ok(_) => "no receipt yet".to_string(),
                Err(e) => e.to_string(),
            };
            worker::console_log!("settlement {tx_hash}: gas recorded as the estimate ({why})");
            NewGas {
                tx_hash,
                job_id,
                gas_used: None,
                effective_gas_price_wei: None,
                gas_cost_wei: ops.gas_estimate_wei,
                source: "estimate",
                now_ms,
            }
        }
    };
    if let Err(e) = db::record_gas(db, &gas).await {
        worker::console_error!("settlement {tx_hash} of job {job_id}: gas not recorded: {e}");
    }
}

/// Completes the gas figures: records the settlements that have none (from their receipts, else the
/// estimate), then replaces estimates with receipts where the RPC now has them. Answers how many rows changed.
pub async fn reconcile_gas(db: &D1Database, ops: &Operations, limit: u32, now_ms: u64) -> Result<u32> {
    let mut fixed = 0;
    for row in db::settlements_without_gas(db, limit).await? {
        record_settlement_gas(db, ops, &row.job_id, &row.tx_hash, now_ms).await;
        fixed += 1;
    }
    let rpc = Rpc { url: &ops.rpc_url, timeout_ms: ops.rpc_timeout_ms };
    // A receipt that has not appeared within a day never will (a reorg, or a chain that was reset).
    for row in db::estimated_gas(db, now_ms.saturating_sub(24 * HOUR_MS), limit).await? {
        match rpc.receipt(&row.tx_hash).await {
            Ok(Some(r)) => {
                db::gas_from_receipt(db, &row.tx_hash, r.gas_used, r.effective_gas_price_wei, r.cost_wei()).await?;
                fixed += 1;
            }
            Ok(None) => {}
            Err(e) => {
                worker::console_log!("gas reconciliation stopped: {e}");
                break;
            }
        }
    }
    Ok(fixed)
}
