//! `POST /api/compute/submit`: validate → price → (rate limit by IP, capacity) → 402, or take the payment
//! (see `payment`) → queue the job. Speaks x402 v2 (`PAYMENT-SIGNATURE` / `PAYMENT-RESPONSE`) and, for legacy
//! clients, v1 (`X-PAYMENT` / `X-PAYMENT-RESPONSE`, requirements in the 402 body).

use ouro_core::builder_codes;
use ouro_core::pricing::{format_usd, Quote};
use ouro_core::submit::{validate, JobSpec};
use ouro_core::submit_limits::Submitter;
use ouro_core::x402::v1::{self, PaymentRequirementsV1};
use ouro_core::x402::{header, payment_identifier, PaymentRequired, PaymentRequirements, Resource, SettlementResponse, X402_VERSION};
use serde_json::json;
use worker::{Request, Response, Result, RouteContext};

use super::now_ms;
use crate::config::Config;
use crate::market::current_quote;
use crate::payment::{rate_limit, Paid, Refused, Submission};
use crate::{capacity, http, limits};

const PAYMENT_HEADER: &str = "payment-signature";
/// Set by Cloudflare (and by `wrangler dev`) to the client's address.
const CLIENT_IP_HEADER: &str = "cf-connecting-ip";

pub async fn handle(mut req: Request, ctx: RouteContext<()>) -> Result<Response> {
    let config = match Config::from_env(&ctx.env) {
        Ok(c) => c,
        Err(e) => return http::error(500, "misconfigured", e),
    };
    let body = req.bytes().await?;
    let spec = match validate(&body).and_then(|spec| config.check_cpus(spec.cpus).map(|()| spec)) {
        Ok(spec) => spec,
        Err(e) => return http::field_error(&e.field, &e.message),
    };
    // Builder codes are checked with the body, before any price: a bad header is a 422 naming it.
    let builder_codes = match req.headers().get(builder_codes::HEADER)? {
        None => Vec::new(),
        Some(value) => match builder_codes::parse_header(&value) {
            Ok(codes) => codes,
            Err(e) => return http::field_error(builder_codes::HEADER, &e.to_string()),
        },
    };
    let db = ctx.env.d1("DB")?;
    let now_ms = now_ms();
    let current = current_quote(&db, &config, spec.price_request(), now_ms).await?;
    let resource = Resource {
        url: req.url()?.to_string(),
        description: Some("Run a script or a workspace in an isolated container".into()),
        mime_type: Some("application/json".into()),
    };

    // A payment in either version's header; without one, the wallet is not known yet.
    let header_value = match req.headers().get(PAYMENT_HEADER)? {
        Some(v) => Some(v),
        None => req.headers().get(v1::PAYMENT_HEADER_V1)?,
    };
    let Some(payment) = header_value else {
        let ip = req.headers().get(CLIENT_IP_HEADER)?.unwrap_or_else(|| "unknown".into());
        if let Err(exceeded) = rate_limit(&db, &config, Submitter::Ip(&ip), now_ms).await? {
            return limits::too_many(&exceeded, "submits");
        }
        if let Err(full) = capacity::preflight(&db, &config).await? {
            return no_capacity(&full);
        }
        // Credits (A2): the price minus the credit of the wallet the body names (`submitter_address`).
        let requirements = crate::credits::offer(&db, &config, &spec, &current, now_ms / 1000).await?;
        return payment_required(&resource, requirements, &current, None, "Payment required");
    };
    let incoming = match v1::decode_payment(&payment) {
        Ok(p) => p,
        Err(e) => return http::error(400, "invalid_payment_header", format!("payment header: {e}")),
    };
    let version = incoming.version();

    let bucket = ctx.env.bucket(crate::workspaces::BINDING)?;
    let submission = Submission {
        config: &config,
        db: &db,
        bucket: &bucket,
        spec: &spec,
        current: &current,
        builder_codes: &builder_codes,
        now_ms,
    };
    match submission.pay(incoming).await? {
        Ok(Paid::New { job_id, amount, settlement }) => {
            crate::payment::enqueue(&ctx.env, &db, &job_id, now_ms).await;
            let credit = crate::credits::applied_to(&db, &job_id).await?;
            accepted(&config, &job_id, "pending", amount, credit, &spec, &settlement, version)
        }
        Ok(Paid::Replayed { job_id, amount, settlement }) => {
            let status = crate::db::get_job(&db, &job_id).await?.map(|j| j.status).unwrap_or_else(|| "pending".into());
            let credit = crate::credits::applied_to(&db, &job_id).await?;
            accepted(&config, &job_id, &status, amount, credit, &spec, &settlement, version)
        }
        Err(refused) => {
            let fresh = crate::credits::offer(&db, &config, &spec, &current, now_ms / 1000).await?;
            refusal(refused, &resource, fresh, &current, version)
        }
    }
}

/// The header a settlement goes back in: the one of the version the client paid with.
fn set_payment_response(resp: &mut Response, settlement: &SettlementResponse, version: u8) -> Result<()> {
    if version == v1::X402_VERSION_V1 {
        resp.headers_mut().set(v1::RESPONSE_HEADER_V1, &header::encode(&v1::settlement_v1(settlement)))
    } else {
        resp.headers_mut().set("PAYMENT-RESPONSE", &header::encode(settlement))
    }
}

fn no_capacity(full: &capacity::Full) -> Result<Response> {
    let resp = http::error(503, full.code, &full.message)?;
    http::with_retry_after(resp, full.retry_after_s)
}

#[allow(clippy::too_many_arguments)]
fn accepted(
    config: &Config,
    job_id: &str,
    status: &str,
    amount: u64,
    // Credits (A2): (paid in full by credit, credit applied), from `crate::credits::applied_to`.
    (paid_with_credit, credit_applied): (bool, u64),
    spec: &JobSpec,
    settlement: &SettlementResponse,
    version: u8,
) -> Result<Response> {
    let mut resp = http::json(
        200,
        &json!({
            "job_id": job_id,
            "status": status,
            "price": format_usd(amount + credit_applied),
            "amount_paid": amount.to_string(),
            "paid_with_credit": paid_with_credit,
            "credit_applied": format_usd(credit_applied),
            "webhook_configured": spec.webhook_url.is_some(),
            // Webhooks (B): the key the deliveries are signed with (`crate::webhooks`), derived from the job id.
            "webhook_secret": spec.webhook_url.as_ref().map(|_| crate::webhooks::key_for(config, job_id)),
            "mount_storage": spec.mount_storage,
            "image": spec.image,
            "file_count": spec.files.len(),
            "submission_mode": spec.price_request().mode,
            "cpus": spec.cpus,
            "time_limit_min": spec.time_limit_min,
            "transaction": settlement.transaction,
        }),
    )?;
    set_payment_response(&mut resp, settlement, version)?;
    Ok(resp)
}

fn payment_required(
    resource: &Resource,
    requirements: PaymentRequirements,
    current: &Quote,
    reason: Option<(&str, String)>,
    error: &str,
) -> Result<Response> {
    let required = PaymentRequired {
        x402_version: X402_VERSION,
        error: Some(reason.as_ref().map(|(code, _)| code.to_string()).unwrap_or_else(|| error.to_string())),
        resource: resource.clone(),
        accepts: vec![requirements.clone()],
        extensions: Some(json!({ payment_identifier::PAYMENT_IDENTIFIER: payment_identifier::declaration() })),
    };
    // The v1 requirements travel in the body, beside our own fields (v2 clients read only the header).
    let v1_accepts: Vec<PaymentRequirementsV1> = PaymentRequirementsV1::from_v2(&requirements, resource).into_iter().collect();
    let mut body = json!({
        "x402Version": v1::X402_VERSION_V1,
        "error": error,
        "accepts": v1_accepts,
        "price": current.price(),
        "breakdown": current.breakdown,
    });
    if let Some((code, message)) = reason {
        body["reason"] = json!(code);
        body["message"] = json!(message);
    }
    let mut resp = http::json(402, &body)?;
    let headers = resp.headers_mut();
    headers.set("PAYMENT-REQUIRED", &header::encode(&required))?;
    headers.set("Cache-Control", "no-store")?;
    Ok(resp)
}

fn refusal(
    refused: Refused,
    resource: &Resource,
    fresh: PaymentRequirements,
    current: &Quote,
    version: u8,
) -> Result<Response> {
    match refused {
        Refused::Malformed(message) => http::error(400, "invalid_payment_header", message),
        Refused::Rejected(r) => {
            payment_required(resource, fresh, current, Some((r.code(), r.to_string())), "Payment rejected")
        }
        Refused::Unverified { reason, message } => {
            let message = message.map(|m| brief(&m)).unwrap_or_else(|| "the facilitator refused this payment".into());
            payment_required(resource, fresh, current, Some((&reason, message)), "Payment verification failed")
        }
        Refused::NotSettled(settlement) => {
            let reason = settlement.error_reason.clone().unwrap_or_else(|| "settlement_failed".into());
            let message =
                settlement.error_message.as_deref().map(brief).unwrap_or_else(|| "the transfer did not settle".into());
            let mut resp =
                payment_required(resource, fresh, current, Some((&reason, message)), "Payment settlement failed")?;
            set_payment_response(&mut resp, &settlement, version)?;
            Ok(resp)
        }
        Refused::Conflict(message) => http::error(409, "payment_conflict", message),
        Refused::Busy => {
            let resp = http::error(
                409,
                "payment_in_progress",
                "this payment is being processed by another request; retry the same request in a few seconds",
            )?;
            http::with_retry_after(resp, 3)
        }
        Refused::RateLimited(exceeded) => limits::too_many(&exceeded, "submits"),
        Refused::TooManyActive { active, limit } => {
            let resp = http::error(
                429,
                "too_many_active_jobs",
                format!("this wallet has {active} unfinished jobs (at most {limit}); nothing was charged, retry when one ends"),
            )?;
            http::with_retry_after(resp, 30)
        }
        Refused::NoCapacity(full) => no_capacity(&full),
        Refused::StorageDown(why) => {
            worker::console_error!("workspace storage unavailable: {why}");
            let resp = http::error(503, "storage_unavailable", "could not store the workspace; nothing was charged, retry later")?;
            http::with_retry_after(resp, 10)
        }
        Refused::FacilitatorDown(e) => {
            worker::console_error!("facilitator unavailable: {e}");
            let resp = http::error(
                503,
                "facilitator_unavailable",
                "the payment facilitator is unavailable; nothing was charged, retry the same request later",
            )?;
            http::with_retry_after(resp, 10)
        }
        Refused::Unconfirmed(why) => {
            worker::console_error!("settlement not confirmed: {why}");
            let resp = http::error(
                503,
                "settlement_unconfirmed",
                "the payment's settlement could not be confirmed yet; retry the same request (same payment) later: \
                 it is then either completed or answered with its job, never charged twice",
            )?;
            http::with_retry_after(resp, 10)
        }
    }
}

/// The first line of a facilitator's message, bounded: some pass a whole chain-client error dump (with the
/// signature in it) as the message; the reason code carries the meaning.
fn brief(message: &str) -> String {
    let first = message.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or_default();
    let mut out: String = first.chars().take(200).collect();
    if out.len() < first.len() {
        out.push('…');
    }
    out
}
