//! `POST /api/compute/submit`: validate → price → 402, or take the payment (see `payment`) → queue the job.

use ouro_core::builder_codes;
use ouro_core::pricing::{format_usd, Quote};
use ouro_core::submit::{validate, JobSpec};
use ouro_core::x402::{header, PaymentRequired, PaymentRequirements, Resource, SettlementResponse, X402_VERSION};
use serde_json::json;
use worker::{Request, Response, Result, RouteContext};

use super::now_ms;
use crate::config::Config;
use crate::dispatch::DispatchMessage;
use crate::http;
use crate::market::current_quote;
use crate::payment::{requirements_for, Paid, Refused, Submission};

const PAYMENT_HEADER: &str = "payment-signature";

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

    let Some(payment) = req.headers().get(PAYMENT_HEADER)? else {
        let requirements = requirements_for(&config, &spec.price_request(), &current, None, now_ms / 1000);
        return payment_required(&resource, requirements, &current, None, "Payment required");
    };

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
    match submission.pay(&payment).await? {
        Ok(Paid::New { job_id, amount, settlement }) => {
            enqueue(&ctx, &job_id).await;
            accepted(&job_id, "pending", amount, &spec, &settlement)
        }
        Ok(Paid::Replayed { job_id, amount, settlement }) => {
            let status = crate::db::get_job(&db, &job_id).await?.map(|j| j.status).unwrap_or_else(|| "pending".into());
            accepted(&job_id, &status, amount, &spec, &settlement)
        }
        Err(refused) => {
            let fresh = requirements_for(&config, &spec.price_request(), &current, None, now_ms / 1000);
            refusal(refused, &resource, fresh, &current)
        }
    }
}

/// Queues a recorded job. A failed send leaves the job `pending` in D1, where it is visible, not lost.
async fn enqueue(ctx: &RouteContext<()>, job_id: &str) {
    let sent = match ctx.env.queue("JOBS") {
        Ok(queue) => queue.send(DispatchMessage { job_id: job_id.to_string() }).await,
        Err(e) => Err(e),
    };
    if let Err(e) = sent {
        worker::console_error!("job {job_id} is paid and recorded but could not be queued: {e}");
    }
}

fn accepted(job_id: &str, status: &str, amount: u64, spec: &JobSpec, settlement: &SettlementResponse) -> Result<Response> {
    let mut resp = http::json(
        200,
        &json!({
            "job_id": job_id,
            "status": status,
            "price": format_usd(amount),
            "paid_with_credit": false,
            "credit_applied": "$0.0000",
            "webhook_configured": false,
            "mount_storage": false,
            "image": spec.image,
            "file_count": spec.files.len(),
            "submission_mode": spec.price_request().mode,
            "cpus": spec.cpus,
            "time_limit_min": spec.time_limit_min,
            "transaction": settlement.transaction,
        }),
    )?;
    resp.headers_mut().set("PAYMENT-RESPONSE", &header::encode(settlement))?;
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
        accepts: vec![requirements],
        extensions: None,
    };
    let mut body = json!({
        "error": error,
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

fn refusal(refused: Refused, resource: &Resource, fresh: PaymentRequirements, current: &Quote) -> Result<Response> {
    match refused {
        Refused::Malformed(message) => http::error(400, "invalid_payment_header", message),
        Refused::Rejected(r) => {
            payment_required(resource, fresh, current, Some((r.code(), r.to_string())), "Payment rejected")
        }
        Refused::VerifyRefused { reason, message } => {
            let message = message.map(|m| brief(&m)).unwrap_or_else(|| "the facilitator refused this payment".into());
            payment_required(resource, fresh, current, Some((&reason, message)), "Payment verification failed")
        }
        Refused::SettleRefused(settlement) => {
            let reason = settlement.error_reason.clone().unwrap_or_else(|| "settlement_failed".into());
            let message =
                settlement.error_message.as_deref().map(brief).unwrap_or_else(|| "the transfer did not settle".into());
            let mut resp =
                payment_required(resource, fresh, current, Some((&reason, message)), "Payment settlement failed")?;
            resp.headers_mut().set("PAYMENT-RESPONSE", &header::encode(&settlement))?;
            Ok(resp)
        }
        Refused::Conflict(message) => http::error(409, "payment_conflict", message),
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
