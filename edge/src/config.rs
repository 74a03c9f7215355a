//! The edge's configuration, read once per request from `[vars]` and secrets (`.dev.vars` locally). The
//! chain profile, the facilitator, the executors and the money knobs are all here, never in code.

use ouro_core::pricing::{parse_usd, PricingConfig};
use ouro_core::x402::ChainProfile;
use worker::Env;

pub struct Config {
    pub chain: ChainProfile,
    pub pricing: PricingConfig,
    pub facilitator_url: String,
    pub executor_urls: Vec<String>,
    /// Shared with the executors: authenticates dispatch and result calls in both directions.
    pub executor_secret: Vec<u8>,
    /// Keys bound quotes (`extra.quote`).
    pub quote_secret: Vec<u8>,
    pub output_cap_bytes: u64,
    /// The most CPUs one job may ask for: what the executors can actually give (never above the API's 8).
    pub max_cpus: u32,
    pub facilitator_timeout_ms: u64,
    pub settle_timeout_ms: u64,
    /// The ledger's cost rates and the chain reads behind stats, the wallet and readiness.
    pub ops: Operations,
}

/// What the service's costs are made of and where its wallet is read: the ledger (`ledger.rs`) turns recorded
/// compute, settlement gas and storage into dollars with these rates; `/api/wallet` and `/health/ready` read the
/// service wallet over `rpc_url`.
pub struct Operations {
    /// The chain's JSON-RPC endpoint (`RPC_URL`); empty when none is configured.
    pub rpc_url: String,
    pub rpc_timeout_ms: u64,
    /// The wallet whose balances are shown and checked (`SERVICE_WALLET`, else `PAY_TO`), lowercase `0x` hex.
    pub service_wallet: String,
    /// The wallet that pays settlement gas (`GAS_WALLET`, else the service wallet): the one readiness checks for
    /// ETH. With our own facilitator it is the facilitator's signer, not `PAY_TO`.
    pub gas_wallet: String,
    /// Converts settlement gas (wei) into dollars (`ETH_PRICE_USD`).
    pub eth_price_usd: f64,
    /// What one CPU-second of a job costs us (`COMPUTE_COST_PER_CPU_SECOND_USD`).
    pub compute_cost_per_cpu_second_usd: f64,
    /// Storage (R2, D1) attributed to each paid job (`STORAGE_COST_PER_JOB_USD`; 0 until storage is billed to us).
    pub storage_cost_per_job_usd: f64,
    /// The gas recorded for a settlement whose receipt the RPC did not give (`GAS_ESTIMATE_WEI`).
    pub gas_estimate_wei: u128,
    /// Below this much ETH the service wallet cannot pay for gas and readiness degrades (`WALLET_MIN_ETH_WEI`).
    pub wallet_min_eth_wei: u128,
    /// Below this much USDC (atomic) the wallet is reported "low"; never degrades readiness (`WALLET_LOW_USDC`).
    pub wallet_low_usdc_atomic: u64,
    /// Deadline of each readiness probe (`HEALTH_TIMEOUT_MS`).
    pub health_timeout_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration {0} is missing")]
    Missing(&'static str),
    #[error("configuration {name} is invalid: {why}")]
    Invalid { name: &'static str, why: String },
}

fn var(env: &Env, name: &'static str) -> Result<String, ConfigError> {
    env.var(name)
        .map(|v| v.to_string())
        .or_else(|_| env.secret(name).map(|v| v.to_string()))
        .map_err(|_| ConfigError::Missing(name))
}

fn var_or(env: &Env, name: &'static str, default: &str) -> String {
    var(env, name).unwrap_or_else(|_| default.to_string())
}

fn parsed<T: std::str::FromStr>(name: &'static str, raw: &str) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    raw.trim().parse().map_err(|e: T::Err| ConfigError::Invalid { name, why: e.to_string() })
}

fn usd(env: &Env, name: &'static str, default: u64) -> Result<u64, ConfigError> {
    match var(env, name) {
        Ok(raw) => parse_usd(&raw).map_err(|e| ConfigError::Invalid { name, why: e.to_string() }),
        Err(_) => Ok(default),
    }
}

impl Config {
    /// Refuses a CPU count the executors cannot give, before any price: charging for 8 CPUs and failing the job
    /// on a 2-core pool would take money for nothing.
    pub fn check_cpus(&self, cpus: u32) -> Result<(), ouro_core::submit::ValidationError> {
        if cpus > self.max_cpus {
            return Err(ouro_core::submit::ValidationError {
                field: "cpus".into(),
                message: format!("this service's executors offer at most {} CPUs per job, got {cpus}", self.max_cpus),
            });
        }
        Ok(())
    }

    pub fn from_env(env: &Env) -> Result<Config, ConfigError> {
        let defaults = PricingConfig::default();
        let chain = ChainProfile {
            network: var(env, "NETWORK")?,
            asset: parsed("ASSET", &var(env, "ASSET")?.to_ascii_lowercase())?,
            asset_name: var(env, "ASSET_NAME")?,
            asset_version: var(env, "ASSET_VERSION")?,
            pay_to: parsed("PAY_TO", &var(env, "PAY_TO")?.to_ascii_lowercase())?,
            max_timeout_seconds: parsed("MAX_TIMEOUT_SECONDS", &var_or(env, "MAX_TIMEOUT_SECONDS", "300"))?,
        };
        chain.chain_id().map_err(|e| ConfigError::Invalid { name: "NETWORK", why: e.to_string() })?;
        let pricing = PricingConfig {
            gas_upper_bound: usd(env, "PRICE_GAS_UPPER_BOUND", defaults.gas_upper_bound)?,
            compute_per_cpu_minute: usd(env, "PRICE_PER_CPU_MINUTE", defaults.compute_per_cpu_minute)?,
            min_price: usd(env, "PRICE_MIN", defaults.min_price)?,
            ..defaults
        };
        let executor_urls: Vec<String> = var(env, "EXECUTOR_URLS")?
            .split(',')
            .map(|u| u.trim().trim_end_matches('/').to_string())
            .filter(|u| !u.is_empty())
            .collect();
        if executor_urls.is_empty() {
            return Err(ConfigError::Invalid { name: "EXECUTOR_URLS", why: "no executor listed".into() });
        }
        let secret = |name| {
            let s = var(env, name)?;
            if s.len() < 16 {
                return Err(ConfigError::Invalid { name, why: "must be at least 16 characters".into() });
            }
            Ok(s.into_bytes())
        };
        Ok(Config {
            pricing,
            facilitator_url: var(env, "FACILITATOR_URL")?.trim_end_matches('/').to_string(),
            executor_urls,
            executor_secret: secret("EXECUTOR_SECRET")?,
            quote_secret: secret("QUOTE_SECRET")?,
            output_cap_bytes: parsed("OUTPUT_CAP_BYTES", &var_or(env, "OUTPUT_CAP_BYTES", "262144"))?,
            max_cpus: parsed::<u32>("MAX_CPUS", &var_or(env, "MAX_CPUS", "8"))?.clamp(1, ouro_core::submit::MAX_CPUS),
            facilitator_timeout_ms: parsed("FACILITATOR_TIMEOUT_MS", &var_or(env, "FACILITATOR_TIMEOUT_MS", "10000"))?,
            settle_timeout_ms: parsed("SETTLE_TIMEOUT_MS", &var_or(env, "SETTLE_TIMEOUT_MS", "30000"))?,
            ops: Operations::from_env(env, &chain)?,
            chain,
        })
    }
}

fn non_negative(name: &'static str, raw: &str) -> Result<f64, ConfigError> {
    let v: f64 = parsed(name, raw)?;
    if !v.is_finite() || v < 0.0 {
        return Err(ConfigError::Invalid { name, why: format!("{raw:?} is not a non-negative number") });
    }
    Ok(v)
}

impl Operations {
    fn from_env(env: &Env, chain: &ChainProfile) -> Result<Operations, ConfigError> {
        let service_wallet = match var(env, "SERVICE_WALLET") {
            Ok(raw) => ouro_core::x402::parse_address(raw.trim())
                .ok_or_else(|| ConfigError::Invalid { name: "SERVICE_WALLET", why: format!("{raw:?} is not an address") })?,
            Err(_) => chain.pay_to,
        };
        let gas_wallet = match var(env, "GAS_WALLET") {
            Ok(raw) => ouro_core::x402::parse_address(raw.trim())
                .ok_or_else(|| ConfigError::Invalid { name: "GAS_WALLET", why: format!("{raw:?} is not an address") })?,
            Err(_) => service_wallet,
        };
        Ok(Operations {
            gas_wallet: format!("{gas_wallet:#x}"),
            // Optional: without it the wallet reads as degraded and settlement gas is the estimate.
            rpc_url: var_or(env, "RPC_URL", "").trim().to_string(),
            rpc_timeout_ms: parsed("RPC_TIMEOUT_MS", &var_or(env, "RPC_TIMEOUT_MS", "3000"))?,
            service_wallet: format!("{service_wallet:#x}"),
            eth_price_usd: non_negative("ETH_PRICE_USD", &var_or(env, "ETH_PRICE_USD", "3000"))?,
            compute_cost_per_cpu_second_usd: non_negative(
                "COMPUTE_COST_PER_CPU_SECOND_USD",
                &var_or(env, "COMPUTE_COST_PER_CPU_SECOND_USD", "0.000002"),
            )?,
            storage_cost_per_job_usd: non_negative(
                "STORAGE_COST_PER_JOB_USD",
                &var_or(env, "STORAGE_COST_PER_JOB_USD", "0"),
            )?,
            gas_estimate_wei: parsed("GAS_ESTIMATE_WEI", &var_or(env, "GAS_ESTIMATE_WEI", "700000000000"))?,
            wallet_min_eth_wei: parsed("WALLET_MIN_ETH_WEI", &var_or(env, "WALLET_MIN_ETH_WEI", "1000000000000000"))?,
            wallet_low_usdc_atomic: usd(env, "WALLET_LOW_USDC", 0)?,
            health_timeout_ms: parsed("HEALTH_TIMEOUT_MS", &var_or(env, "HEALTH_TIMEOUT_MS", "2000"))?,
        })
    }
}
