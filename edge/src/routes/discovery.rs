//! How the service describes itself to machines: `GET /api/capabilities`, `GET /.well-known/agent-card.json`
//! (A2A), `GET /.well-known/x402` (the paid resources) and `GET /openapi.json`.
//!
//! Every value comes from the live configuration (`Config`) or from the rules in `ouro_core` that enforce it,
//! never from a copy: the OpenAPI document (`openapi.json`) is the hand-written shape of the API, and its limits
//! (CPUs, minutes, script length, files, images) are overwritten here with the values actually enforced.

use ouro_core::builder_codes;
use ouro_core::job::{DEFAULT_IMAGE, IMAGE_ALIASES};
use ouro_core::pricing::{format_usd, PriceRequest, SubmissionMode, ATOMIC_PER_USD};
use ouro_core::submit::{
    DEFAULT_CPUS, DEFAULT_TIME_LIMIT_MIN, MAX_BODY_BYTES, MAX_SCRIPT_CHARS, MAX_TIME_LIMIT_MIN, MIN_CPUS,
    MIN_TIME_LIMIT_MIN,
};
use ouro_core::workspace::{MAX_FILES, MAX_WORKSPACE_BYTES};
use ouro_core::x402::{SCHEME_EXACT, X402_VERSION};
use serde_json::{json, Value};
use worker::{Request, Response, Result, RouteContext};

use super::now_ms;
use crate::config::Config;
use crate::{http, ledger, market};

const NAME: &str = "Ouro";
const DESCRIPTION: &str = "Pay-per-job compute over HTTP: run a script or a workspace in an isolated container \
    (no network, read-only root, capped CPU, memory and time), paid per job with x402 v2 USDC.";
const VERSION: &str = env!("CARGO_PKG_VERSION");
const SUBMIT_PATH: &str = "/api/compute/submit";

/// The hand-written document; `document` fills in the live values.
const OPENAPI: &str = include_str!("../openapi.json");

fn origin(req: &Request) -> Result<String> {
    Ok(req.url()?.origin().ascii_serialization())
}

fn config(ctx: &RouteContext<()>) -> std::result::Result<Config, Result<Response>> {
    Config::from_env(&ctx.env).map_err(|e| http::error(500, "misconfigured", e))
}

fn usd(atomic: u64) -> f64 {
    atomic as f64 / ATOMIC_PER_USD as f64
}

pub async fn capabilities(req: Request, ctx: RouteContext<()>) -> Result<Response> {
    let config = match config(&ctx) {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let origin = origin(&req)?;
    let p = &config.pricing;
    http::json(
        200,
        &json!({
            "name": NAME,
            "description": DESCRIPTION,
            "version": VERSION,
            "url": origin,
            "payment": {
                "protocol": "x402",
                "x402_version": X402_VERSION,
                "scheme": SCHEME_EXACT,
                "network": config.chain.network,
                "currency": config.chain.asset_name,
                "asset": config.chain.asset.to_checksum(None),
                "pay_to": config.chain.pay_to.to_checksum(None),
                "endpoint": format!("{origin}{SUBMIT_PATH}"),
                "price_endpoint": format!("{origin}/api/price"),
                "max_timeout_seconds": config.chain.max_timeout_seconds,
            },
            "compute": {
                "max_cpus": config.max_cpus,
                "min_cpus": MIN_CPUS,
                "default_cpus": DEFAULT_CPUS,
                "max_time_min": MAX_TIME_LIMIT_MIN,
                "min_time_min": MIN_TIME_LIMIT_MIN,
                "default_time_min": DEFAULT_TIME_LIMIT_MIN,
                "max_script_bytes": MAX_SCRIPT_CHARS,
                "max_workspace_bytes": MAX_WORKSPACE_BYTES,
                "max_files": MAX_FILES,
                "max_body_bytes": MAX_BODY_BYTES,
                "submission_modes": [SubmissionMode::Script.as_str(), SubmissionMode::MultiFile.as_str()],
                "allowed_images": IMAGE_ALIASES,
                "default_image": DEFAULT_IMAGE,
                "output_cap_bytes": config.output_cap_bytes,
                "network_access": false,
                "executors": config.executor_urls.len(),
            },
            "pricing": {
                "gas_upper_bound_usd": usd(p.gas_upper_bound),
                "llm_upper_bound_usd": usd(p.llm_upper_bound),
                "compute_per_cpu_minute_usd": usd(p.compute_per_cpu_minute),
                "multi_file_setup_usd": usd(p.multi_file_setup),
                "margin_base": p.margin_base_bp as f64 / 10_000.0,
                "min_profit_multiplier": p.min_profit_bp as f64 / 10_000.0,
                "min_price": format_usd(p.min_price),
                "max_demand_multiplier": p.max_demand_bp as f64 / 10_000.0,
                "quote_valid_seconds": config.chain.max_timeout_seconds,
            },
            // Per-wallet storage (`mount_storage`) and returned output files (routes/storage.rs).
            "storage": {
                "available": true,
                "mount_point": ouro_core::storage::SCRATCH_MOUNT,
                "free_tier_bytes": config.storage.quota.quota_bytes,
                "max_files": config.storage.quota.max_files,
                "ttl_days": config.storage.ttl_days,
                "rate_limit_per_wallet": format!("{}/min", config.storage.rate_per_wallet),
                "rate_limit_global": format!("{}/min", config.storage.rate_global),
                "outputs_mount_point": ouro_core::storage::OUTPUTS_MOUNT,
                "output_max_files": config.storage.output_limits.max_files,
                "output_max_bytes": config.storage.output_limits.max_bytes,
            },
            // No per-wallet or global request limits are enforced yet; capacity is bounded by the executors.
            "limits": {
                "max_active_jobs_per_wallet": null,
                "rate_limit_per_wallet": null,
                "rate_limit_global": null,
            },
            "builder_codes": {
                "header": builder_codes::HEADER,
                "max_codes": builder_codes::MAX_CODES,
                "max_code_length": builder_codes::MAX_CODE_LEN,
                "alphabet": "a-z 0-9 _",
                "erc8021_decode": format!("{origin}/api/attribution/decode"),
            },
            "endpoints": {
                "submit": format!("{origin}{SUBMIT_PATH}"),
                "price": format!("{origin}/api/price"),
                "job": format!("{origin}/api/jobs/{{job_id}}"),
                "stats": format!("{origin}/api/stats"),
                "wallet": format!("{origin}/api/wallet"),
                "attribution": format!("{origin}/api/attribution"),
                "openapi": format!("{origin}/openapi.json"),
                "agent_card": format!("{origin}/.well-known/agent-card.json"),
                "x402": format!("{origin}/.well-known/x402"),
                "health": format!("{origin}/health"),
                "ready": format!("{origin}/health/ready"),
            },
        }),
    )
}

pub async fn agent_card(req: Request, ctx: RouteContext<()>) -> Result<Response> {
    let config = match config(&ctx) {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let origin = origin(&req)?;
    let images = IMAGE_ALIASES.join(", ");
    http::json(
        200,
        &json!({
            "protocolVersion": "0.3.0",
            "name": NAME,
            "description": DESCRIPTION,
            "url": origin,
            "preferredTransport": "HTTP+JSON",
            "version": VERSION,
            "provider": { "organization": NAME, "url": origin },
            "documentationUrl": format!("{origin}/openapi.json"),
            "capabilities": { "streaming": false, "pushNotifications": false, "stateTransitionHistory": true },
            "defaultInputModes": ["application/json"],
            "defaultOutputModes": ["application/json"],
            "securitySchemes": {
                "x402": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "payment-signature",
                    "description": format!(
                        "x402 v{X402_VERSION} `{SCHEME_EXACT}` payment in USDC on {}: POST without it to get the 402 \
                         requirements, sign the EIP-3009 authorization, POST again with it",
                        config.chain.network
                    ),
                }
            },
            "security": [{ "x402": [] }],
            "authentication": { "schemes": ["x402"] },
            "skills": [
                {
                    "id": "run_job",
                    "name": "Run a job",
                    "description": format!(
                        "Run a script or a workspace (≤{MAX_FILES} files, optional Dockerfile) on {} CPUs at most for \
                         up to {MAX_TIME_LIMIT_MIN} minutes, in an isolated container without network. Paid per job \
                         (POST {SUBMIT_PATH}).",
                        config.max_cpus
                    ),
                    "tags": ["compute", "sandbox", "x402", "pay-per-job"],
                    "examples": ["{\"script\": \"echo hello\"}", "{\"script\": \"print(6 * 7)\", \"image\": \"ouro-python\"}"],
                    "inputModes": ["application/json"],
                    "outputModes": ["application/json"],
                },
                {
                    "id": "get_job_status",
                    "name": "Read a job",
                    "description": "Status, output, error output and events of a job (GET /api/jobs/{job_id}).",
                    "tags": ["compute", "status"],
                },
                {
                    "id": "get_price_quote",
                    "name": "Quote a job",
                    "description": "The price of a job with given CPUs, minutes and submission mode (GET /api/price).",
                    "tags": ["pricing"],
                },
                {
                    "id": "get_allowed_images",
                    "name": "List the images",
                    "description": format!("The prebuilt images a job may run on: {images} (GET /api/capabilities)."),
                    "tags": ["compute", "images"],
                },
            ],
            "x402": {
                "network": config.chain.network,
                "asset": config.chain.asset.to_checksum(None),
                "payTo": config.chain.pay_to.to_checksum(None),
                "resources": format!("{origin}/.well-known/x402"),
            },
        }),
    )
}

pub async fn x402_manifest(req: Request, ctx: RouteContext<()>) -> Result<Response> {
    let config = match config(&ctx) {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let origin = origin(&req)?;
    // The cheapest and the dearest job, priced now in one market (one ledger read).
    let figures = ledger::figures(&ctx.env.d1("DB")?, &config.ops, now_ms()).await?;
    let least = PriceRequest { cpus: MIN_CPUS, time_limit_min: MIN_TIME_LIMIT_MIN, mode: SubmissionMode::Script };
    let most = PriceRequest { cpus: config.max_cpus, time_limit_min: MAX_TIME_LIMIT_MIN, mode: SubmissionMode::MultiFile };
    let (low, high) = (market::quote_in(&config, least, &figures), market::quote_in(&config, most, &figures));
    let doc = document(&config, &origin);
    let schemas = &doc["components"]["schemas"];
    // A complete PaymentRequirements for the cheapest job; the amount depends on the job (the range is below),
    // and the exact, payable requirements always come with the 402.
    let requirements = serde_json::to_value(config.chain.requirements(low.amount, None))?;
    let params = |r: &PriceRequest| json!({ "cpus": r.cpus, "time_limit_min": r.time_limit_min, "submission_mode": r.mode });
    http::json(
        200,
        &json!({
            "x402Version": X402_VERSION,
            "name": NAME,
            "description": DESCRIPTION,
            "resources": [{
                "resource": format!("{origin}{SUBMIT_PATH}"),
                "method": "POST",
                "type": "http",
                "description": "Run a script or a workspace in an isolated container",
                "mimeType": "application/json",
                "accepts": [requirements],
                "price": {
                    "currency": config.chain.asset_name,
                    "min": low.price(),
                    "max": high.price(),
                    "min_amount": low.amount.to_string(),
                    "max_amount": high.amount.to_string(),
                    "min_parameters": params(&least),
                    "max_parameters": params(&most),
                    "phase": low.breakdown.phase,
                    "demand_multiplier": low.breakdown.demand_multiplier,
                    "quote": format!("{origin}/api/price"),
                },
                "headers": {
                    "X-BUILDER-CODE": "optional builder codes to attribute the job to (comma-separated, [a-z0-9_]{1,32}, at most 5)"
                },
                "inputSchema": resolve(&schemas["SubmitRequest"], schemas),
                "outputSchema": resolve(&schemas["SubmitAccepted"], schemas),
            }],
        }),
    )
}

pub async fn openapi(req: Request, ctx: RouteContext<()>) -> Result<Response> {
    let config = match config(&ctx) {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    http::json(200, &document(&config, &origin(&req)?))
}

/// The OpenAPI document with this deployment's server and the limits it enforces.
pub fn document(config: &Config, origin: &str) -> Value {
    let mut doc: Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON (checked by the e2e suite)");
    doc["info"]["version"] = json!(VERSION);
    doc["servers"] = json!([{ "url": origin, "description": "this deployment" }]);
    let submit = &mut doc["components"]["schemas"]["SubmitRequest"]["properties"];
    submit["cpus"]["maximum"] = json!(config.max_cpus);
    submit["time_limit_min"]["maximum"] = json!(MAX_TIME_LIMIT_MIN);
    submit["script"]["maxLength"] = json!(MAX_SCRIPT_CHARS);
    submit["files"]["maxItems"] = json!(MAX_FILES);
    submit["image"]["enum"] = json!(IMAGE_ALIASES);
    submit["image"]["default"] = json!(DEFAULT_IMAGE);
    if let Some(params) = doc["paths"]["/api/price"]["get"]["parameters"].as_array_mut() {
        for p in params {
            match p["name"].as_str() {
                Some("cpus") => p["schema"]["maximum"] = json!(config.max_cpus),
                Some("time_limit_min") => p["schema"]["maximum"] = json!(MAX_TIME_LIMIT_MIN),
                _ => {}
            }
        }
    }
    doc
}

/// `schema` with its `#/components/schemas/...` references replaced by their definitions (for documents that
/// carry a schema alone, like the x402 manifest). The schemas have no cycles.
fn resolve(schema: &Value, schemas: &Value) -> Value {
    match schema {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                if let Some(name) = r.strip_prefix("#/components/schemas/") {
                    return resolve(&schemas[name], schemas);
                }
            }
            Value::Object(map.iter().map(|(k, v)| (k.clone(), resolve(v, schemas))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| resolve(v, schemas)).collect()),
        other => other.clone(),
    }
}
