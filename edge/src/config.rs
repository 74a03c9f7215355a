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
            chain,
            pricing,
            facilitator_url: var(env, "FACILITATOR_URL")?.trim_end_matches('/').to_string(),
            executor_urls,
            executor_secret: secret("EXECUTOR_SECRET")?,
            quote_secret: secret("QUOTE_SECRET")?,
            output_cap_bytes: parsed("OUTPUT_CAP_BYTES", &var_or(env, "OUTPUT_CAP_BYTES", "262144"))?,
            max_cpus: parsed::<u32>("MAX_CPUS", &var_or(env, "MAX_CPUS", "8"))?.clamp(1, ouro_core::submit::MAX_CPUS),
            facilitator_timeout_ms: parsed("FACILITATOR_TIMEOUT_MS", &var_or(env, "FACILITATOR_TIMEOUT_MS", "10000"))?,
            settle_timeout_ms: parsed("SETTLE_TIMEOUT_MS", &var_or(env, "SETTLE_TIMEOUT_MS", "30000"))?,
        })
    }
}
