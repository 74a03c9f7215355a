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
    /// Job reads must be signed by the payer's wallet (`REQUIRE_SIGNED_READS`); else the bare id suffices.
    pub require_signed_reads: bool,
    /// The bounds of `GET /api/jobs/{id}/events` and the webhooks' deadline.
    pub events: EventLimits,
    /// The most CPUs one job may ask for: what the executors can actually give (never above the API's 8).
    pub max_cpus: u32,
    pub facilitator_timeout_ms: u64,
    pub settle_timeout_ms: u64,
    /// The ledger's cost rates and the chain reads behind stats, the wallet and readiness.
    pub ops: Operations,
    /// Per-wallet storage and job output files.
    pub storage: StorageConfig,
    /// The payment pipeline's guards: submit rate limits, the capacity pre-flight, the operators' ledger.
    pub admission: Admission,
}

/// What a submission must get past before any money moves (`payment.rs`, `capacity.rs`), and who may read
/// the ledger.
pub struct Admission {
    /// Submits per minute per wallet, per IP, in total; active jobs per wallet (`SUBMIT_LIMIT_PER_WALLET`,
    /// `SUBMIT_LIMIT_PER_IP`, `SUBMIT_LIMIT_TOTAL`, `ACTIVE_JOBS_PER_WALLET`).
    pub limits: ouro_core::submit_limits::SubmitLimits,
    /// Jobs waiting for an executor beyond the free slots before submits are refused with 503 (`MAX_QUEUE_DEPTH`).
    pub max_queue_depth: u32,
    /// Deadline of the executors' health probe in the pre-flight (`CAPACITY_TIMEOUT_MS`).
    pub capacity_timeout_ms: u64,
    /// Bearer token of `GET /api/ledger` (`OPERATOR_TOKEN`, a secret); without it the ledger is not served.
    pub operator_token: Option<String>,
}

impl Admission {
    fn from_env(env: &Env) -> Result<Admission, ConfigError> {
        let d = ouro_core::submit_limits::SubmitLimits::default();
        let num = |name: &'static str, default: u32| -> Result<u32, ConfigError> {
            parsed(name, &var_or(env, name, &default.to_string()))
        };
        Ok(Admission {
            limits: ouro_core::submit_limits::SubmitLimits {
                per_wallet: num("SUBMIT_LIMIT_PER_WALLET", d.per_wallet)?,
                per_ip: num("SUBMIT_LIMIT_PER_IP", d.per_ip)?,
                total: num("SUBMIT_LIMIT_TOTAL", d.total)?,
                active_per_wallet: num("ACTIVE_JOBS_PER_WALLET", d.active_per_wallet)?,
            },
            max_queue_depth: num("MAX_QUEUE_DEPTH", 20)?,
            capacity_timeout_ms: parsed("CAPACITY_TIMEOUT_MS", &var_or(env, "CAPACITY_TIMEOUT_MS", "800"))?,
            operator_token: var(env, "OPERATOR_TOKEN").ok().map(|t| t.trim().to_string()).filter(|t| t.len() >= 16),
        })
    }
}

/// Per-wallet storage (`/scratch`) and job output files (`/outputs`).
pub struct StorageConfig {
    /// The default quota of a wallet (`STORAGE_QUOTA_BYTES`, `STORAGE_MAX_FILES`); an operator may set another
    /// per wallet (`storage_accounts.quota_bytes`).
    pub quota: ouro_core::storage::Quota,
    /// Files not accessed for this many days are deleted (`STORAGE_TTL_DAYS`).
    pub ttl_days: u64,
    /// `/api/storage*` requests per wallet and in total, per minute (`STORAGE_RATE_PER_WALLET`, `STORAGE_RATE_GLOBAL`).
    pub rate_per_wallet: u32,
    pub rate_global: u32,
    /// Bounds on the files a job returns (`OUTPUT_MAX_FILES`, `OUTPUT_MAX_BYTES`).
    pub output_limits: ouro_core::storage::OutputLimits,
}

impl StorageConfig {
    fn from_env(env: &Env) -> Result<StorageConfig, ConfigError> {
        use ouro_core::storage::{OutputLimits, Quota};
        let (q, o) = (Quota::default(), OutputLimits::default());
        let num = |name: &'static str, default: u64| -> Result<u64, ConfigError> {
            parsed(name, &var_or(env, name, &default.to_string()))
        };
        Ok(StorageConfig {
            quota: Quota { quota_bytes: num("STORAGE_QUOTA_BYTES", q.quota_bytes)?, max_files: num("STORAGE_MAX_FILES", q.max_files)? },
            ttl_days: num("STORAGE_TTL_DAYS", ouro_core::storage::DEFAULT_TTL_DAYS)?,
            rate_per_wallet: parsed("STORAGE_RATE_PER_WALLET", &var_or(env, "STORAGE_RATE_PER_WALLET", "30"))?,
            rate_global: parsed("STORAGE_RATE_GLOBAL", &var_or(env, "STORAGE_RATE_GLOBAL", "200"))?,
            output_limits: OutputLimits {
                max_files: num("OUTPUT_MAX_FILES", o.max_files)?,
                max_bytes: num("OUTPUT_MAX_BYTES", o.max_bytes)?,
            },
        })
    }
}

/// Limits of the live events stream (`SSE_*`) and of webhook deliveries.
pub struct EventLimits {
    /// Open streams of one job (`SSE_MAX_STREAMS_PER_JOB`).
    pub streams_per_job: u32,
    /// Open streams in all (`SSE_MAX_STREAMS`).
    pub streams_total: u32,
    /// After this long a stream closes; the client resumes with `Last-Event-ID` (`SSE_MAX_DURATION_S`).
    pub max_duration_s: u64,
    /// How often an open stream looks for new events (`SSE_POLL_MS`).
    pub poll_ms: u64,
    /// A comment line after this long without an event, so proxies keep the connection (`SSE_KEEPALIVE_S`).
    pub keepalive_s: u64,
    /// Deadline of one webhook POST (`WEBHOOK_TIMEOUT_MS`).
    pub webhook_timeout_ms: u64,
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
            output_cap_bytes: parsed("OUTPUT_CAP_BYTES", &var_or(env, "OUTPUT_CAP_BYTES", "1048576"))?,
            require_signed_reads: parsed("REQUIRE_SIGNED_READS", &var_or(env, "REQUIRE_SIGNED_READS", "false"))?,
            max_cpus: parsed::<u32>("MAX_CPUS", &var_or(env, "MAX_CPUS", "8"))?.clamp(1, ouro_core::submit::MAX_CPUS),
            facilitator_timeout_ms: parsed("FACILITATOR_TIMEOUT_MS", &var_or(env, "FACILITATOR_TIMEOUT_MS", "10000"))?,
            settle_timeout_ms: parsed("SETTLE_TIMEOUT_MS", &var_or(env, "SETTLE_TIMEOUT_MS", "30000"))?,
            events: EventLimits {
                streams_per_job: parsed("SSE_MAX_STREAMS_PER_JOB", &var_or(env, "SSE_MAX_STREAMS_PER_JOB", "5"))?,
                streams_total: parsed("SSE_MAX_STREAMS", &var_or(env, "SSE_MAX_STREAMS", "500"))?,
                max_duration_s: parsed("SSE_MAX_DURATION_S", &var_or(env, "SSE_MAX_DURATION_S", "900"))?,
                poll_ms: parsed::<u64>("SSE_POLL_MS", &var_or(env, "SSE_POLL_MS", "250"))?.max(50),
                keepalive_s: parsed::<u64>("SSE_KEEPALIVE_S", &var_or(env, "SSE_KEEPALIVE_S", "15"))?.max(1),
                webhook_timeout_ms: parsed("WEBHOOK_TIMEOUT_MS", &var_or(env, "WEBHOOK_TIMEOUT_MS", "10000"))?,
            },
            ops: Operations::from_env(env, &chain)?,
            storage: StorageConfig::from_env(env)?,
            admission: Admission::from_env(env)?,
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
