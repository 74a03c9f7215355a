//! What a job costs. Money is integer atomic USDC units (6 decimals, so 1 unit = $0.000001) from the first
//! input to the last output: no float ever decides an amount. Prices are whole multiples of $0.0001 so the
//! `"$%.4f"` string a client reads and the atomic `amount` it signs are the same number.
//!
//! ```text
//! cost_floor = gas_upper_bound + llm_upper_bound + cpus × minutes × compute_rate + setup_cost
//! price      = max(cost_floor × margin × demand, cost_floor × min_profit, min_price), rounded up to $0.0001
//! ```

use serde::{Deserialize, Serialize};

/// Atomic units in one US dollar (USDC has 6 decimals).
pub const ATOMIC_PER_USD: u64 = 1_000_000;
/// Prices are quoted to $0.0001.
pub const PRICE_STEP: u64 = 100;
const BP: u64 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubmissionMode {
    Script,
    MultiFile,
}

impl SubmissionMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SubmissionMode::Script => "script",
            SubmissionMode::MultiFile => "multi_file",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "script" => Some(SubmissionMode::Script),
            "multi_file" => Some(SubmissionMode::MultiFile),
            _ => None,
        }
    }
}

/// The operator's knobs, all in atomic units or basis points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricingConfig {
    pub gas_upper_bound: u64,
    pub llm_upper_bound: u64,
    pub compute_per_cpu_minute: u64,
    pub multi_file_setup: u64,
    pub margin_base_bp: u64,
    pub min_profit_bp: u64,
    pub min_price: u64,
    pub max_demand_bp: u64,
}

impl Default for PricingConfig {
    fn default() -> Self {
        PricingConfig {
            gas_upper_bound: 1_000,      // $0.001 for one transferWithAuthorization on Base
            llm_upper_bound: 0,          // no model runs on a job's path
            compute_per_cpu_minute: 200, // $0.0002
            multi_file_setup: 1_000,     // $0.001
            margin_base_bp: 15_000,      // × 1.5
            min_profit_bp: 12_000,       // never under cost × 1.2
            min_price: 10_000,           // $0.01
            max_demand_bp: 50_000,       // demand never multiplies a price by more than 5
        }
    }
}

/// The service's survival phase, from the sustainability ratio (revenue ÷ costs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Phase {
    Optimal,
    Cautious,
    Survival,
    Critical,
}

impl Phase {
    /// `None` means no costs recorded yet: nothing is being lost, so the service is in its optimal phase.
    pub fn from_ratio(ratio: Option<f64>) -> Phase {
        match ratio {
            None => Phase::Optimal,
            Some(r) if r >= 1.5 => Phase::Optimal,
            Some(r) if r >= 1.0 => Phase::Cautious,
            Some(r) if r >= 0.5 => Phase::Survival,
            Some(_) => Phase::Critical,
        }
    }

    fn margin_bp(self) -> u64 {
        match self {
            Phase::Optimal => 10_000,
            Phase::Cautious => 11_000,
            Phase::Survival => 13_000,
            Phase::Critical => 30_000,
        }
    }
}

/// What the market looks like when a price is made.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Market {
    pub jobs_last_hour: u64,
    pub sustainability_ratio: Option<f64>,
}

/// Demand from jobs in the last hour: none → 0.8, 1–3 → 1.0, then +0.15 per job above 3, capped.
pub fn demand_bp(jobs_last_hour: u64, max_bp: u64) -> u64 {
    match jobs_last_hour {
        0 => 8_000,
        1..=3 => 10_000,
        n => (10_000 + 1_500 * (n - 3)).min(max_bp),
    }
}

/// The priced parameters of a job: two submissions with equal `PriceRequest`s cost the same at the same time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PriceRequest {
    pub cpus: u32,
    pub time_limit_min: u32,
    pub mode: SubmissionMode,
}

impl PriceRequest {
    /// A stable text naming what was priced (what a bound quote is bound to).
    pub fn fingerprint(&self) -> String {
        format!("cpus={};time_limit_min={};mode={}", self.cpus, self.time_limit_min, self.mode.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Breakdown {
    pub gas_upper_bound: f64,
    pub llm_upper_bound: f64,
    pub compute_cost: f64,
    pub setup_cost: f64,
    pub submission_mode: SubmissionMode,
    pub cost_floor: f64,
    pub margin_multiplier: f64,
    pub demand_multiplier: f64,
    pub phase: Phase,
    pub min_profit_pct: f64,
    pub safety_factor: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Quote {
    /// Atomic units: the `amount` of the requirements and the `value` the payer signs.
    pub amount: u64,
    pub breakdown: Breakdown,
}

impl Quote {
    /// The `"$0.0841"` form of the amount.
    pub fn price(&self) -> String {
        format_usd(self.amount)
    }
}

fn usd(atomic: u64) -> f64 {
    atomic as f64 / ATOMIC_PER_USD as f64
}

fn mul_bp_ceil(value: u64, bp: u64) -> u64 {
    (value * bp).div_ceil(BP)
}

pub fn quote(config: &PricingConfig, req: PriceRequest, market: Market) -> Quote {
    let compute = config.compute_per_cpu_minute * u64::from(req.cpus) * u64::from(req.time_limit_min);
    let setup = match req.mode {
        SubmissionMode::Script => 0,
        SubmissionMode::MultiFile => config.multi_file_setup,
    };
    let floor = config.gas_upper_bound + config.llm_upper_bound + compute + setup;
    let phase = Phase::from_ratio(market.sustainability_ratio);
    let margin_bp = config.margin_base_bp * phase.margin_bp() / BP;
    let demand = demand_bp(market.jobs_last_hour, config.max_demand_bp);
    let marked_up = mul_bp_ceil(mul_bp_ceil(floor, margin_bp), demand);
    let min_profit = mul_bp_ceil(floor, config.min_profit_bp);
    let amount = round_up_to_step(marked_up.max(min_profit).max(config.min_price));
    Quote {
        amount,
        breakdown: Breakdown {
            gas_upper_bound: usd(config.gas_upper_bound),
            llm_upper_bound: usd(config.llm_upper_bound),
            compute_cost: usd(compute),
            setup_cost: usd(setup),
            submission_mode: req.mode,
            cost_floor: usd(floor),
            margin_multiplier: margin_bp as f64 / BP as f64,
            demand_multiplier: demand as f64 / BP as f64,
            phase,
            min_profit_pct: (config.min_profit_bp.saturating_sub(BP)) as f64 / 100.0,
            safety_factor: config.min_profit_bp as f64 / BP as f64,
        },
    }
}

fn round_up_to_step(atomic: u64) -> u64 {
    atomic.div_ceil(PRICE_STEP) * PRICE_STEP
}

/// `"$0.0841"` for 84100; amounts off the $0.0001 grid are rounded up, never down.
pub fn format_usd(atomic: u64) -> String {
    let atomic = round_up_to_step(atomic);
    format!("${}.{:04}", atomic / ATOMIC_PER_USD, (atomic % ATOMIC_PER_USD) / PRICE_STEP)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a dollar amount like \"$0.0841\"")]
pub struct BadUsd(pub String);

/// Parses `"$0.0841"` (the `$` optional) into atomic units, exactly; digits past the sixth round up.
pub fn parse_usd(s: &str) -> Result<u64, BadUsd> {
    let bad = || BadUsd(s.to_string());
    let t = s.trim();
    let t = t.strip_prefix('$').unwrap_or(t);
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    if whole.is_empty() && frac.is_empty() {
        return Err(bad());
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let whole: u64 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| bad())? };
    let (kept, rest) = frac.split_at(frac.len().min(6));
    let mut micro: u64 = format!("{kept:0<6}").parse().map_err(|_| bad())?;
    if rest.bytes().any(|b| b != b'0') {
        micro += 1;
    }
    whole.checked_mul(ATOMIC_PER_USD).and_then(|w| w.checked_add(micro)).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(cpus: u32, minutes: u32) -> PriceRequest {
        PriceRequest { cpus, time_limit_min: minutes, mode: SubmissionMode::Script }
    }

    #[test]
    fn usd_amounts_round_trip_exactly() {
        assert_eq!(parse_usd("$0.0841"), Ok(84_100));
        assert_eq!(format_usd(84_100), "$0.0841");
        assert_eq!(parse_usd("$0.01"), Ok(10_000));
        assert_eq!(parse_usd("1"), Ok(1_000_000));
        assert_eq!(parse_usd("$12.000001"), Ok(12_000_001));
        assert_eq!(parse_usd("$0.0000001"), Ok(1), "sub-atomic digits round up");
        assert_eq!(parse_usd("$0.00000010"), Ok(1));
        assert_eq!(parse_usd("$0.0000000"), Ok(0));
        for bad in ["", "$", "abc", "$-1", "$1.2.3", "$ 1", "$1e3"] {
            assert!(parse_usd(bad).is_err(), "{bad:?}");
        }
        assert_eq!(format_usd(84_101), "$0.0842", "formatting never understates");
        assert_eq!(format_usd(12_345_600), "$12.3456");
    }

    #[test]
    fn floor_price_applies_to_small_jobs() {
        let q = quote(&PricingConfig::default(), req(1, 1), Market::default());
        assert_eq!(q.amount, 10_000);
        assert_eq!(q.price(), "$0.0100");
        assert_eq!(q.breakdown.cost_floor, 0.0012);
        assert_eq!(q.breakdown.demand_multiplier, 0.8);
        assert_eq!(q.breakdown.phase, Phase::Optimal);
    }

    #[test]
    fn big_jobs_pay_margin_and_demand() {
        // floor = 1000 + 200 × 8 × 60 = 97_000; × 1.5 × 1.0 (2 jobs last hour) = 145_500 → $0.1455
        let q = quote(&PricingConfig::default(), req(8, 60), Market { jobs_last_hour: 2, sustainability_ratio: None });
        assert_eq!(q.amount, 145_500);
        assert_eq!(q.price(), "$0.1455");
        // 5 jobs: demand 1.3 → 145_500 × 1.3 = 189_150 → rounded up to 189_200
        let q = quote(&PricingConfig::default(), req(8, 60), Market { jobs_last_hour: 5, sustainability_ratio: None });
        assert_eq!(q.amount, 189_200);
        assert_eq!(q.amount % PRICE_STEP, 0);
    }

    #[test]
    fn phase_raises_margin_and_demand_is_capped() {
        let crit = Market { jobs_last_hour: 1, sustainability_ratio: Some(0.1) };
        let q = quote(&PricingConfig::default(), req(8, 60), crit);
        assert_eq!(q.breakdown.phase, Phase::Critical);
        assert_eq!(q.breakdown.margin_multiplier, 4.5);
        assert_eq!(q.amount, 436_500);
        assert_eq!(demand_bp(10_000, PricingConfig::default().max_demand_bp), 50_000);
        assert_eq!(Phase::from_ratio(Some(1.2)), Phase::Cautious);
        assert_eq!(Phase::from_ratio(Some(0.7)), Phase::Survival);
        assert_eq!(Phase::from_ratio(Some(2.0)), Phase::Optimal);
    }

    #[test]
    fn multi_file_carries_setup_cost() {
        let mut r = req(1, 1);
        r.mode = SubmissionMode::MultiFile;
        let q = quote(&PricingConfig::default(), r, Market::default());
        assert_eq!(q.breakdown.setup_cost, 0.001);
        assert_eq!(q.breakdown.submission_mode, SubmissionMode::MultiFile);
        assert_ne!(r.fingerprint(), req(1, 1).fingerprint());
    }

    #[test]
    fn breakdown_serialises_with_the_public_keys() {
        let q = quote(&PricingConfig::default(), req(1, 1), Market::default());
        let v = serde_json::to_value(&q.breakdown).unwrap();
        for key in [
            "gas_upper_bound", "llm_upper_bound", "compute_cost", "setup_cost", "submission_mode", "cost_floor",
            "margin_multiplier", "demand_multiplier", "phase", "min_profit_pct", "safety_factor",
        ] {
            assert!(v.get(key).is_some(), "{key}");
        }
        assert_eq!(v["phase"], "OPTIMAL");
        assert_eq!(v["submission_mode"], "script");
    }
}
