//! `GET /api/jobs/{job_id}`: the job as its payer sees it. The id is an unguessable v4 UUID and acts as the
//! capability to read the job.

use ouro_core::pricing::{format_usd, ATOMIC_PER_USD};
use ouro_core::time::rfc3339_from_millis;
use serde_json::{json, Value};
use worker::{D1Database, Request, Response, Result, RouteContext};

use crate::db::{self, events, EventRow, JobRow, PaymentRow};
use crate::{access, http};
use ouro_core::job::JobStatus;
use ouro_core::wallet_auth::Action;

pub async fn get(req: Request, ctx: RouteContext<()>) -> Result<Response> {
    let access::JobAccess { db, job, .. } =
        match access::job_for(&req, &ctx, |job_id| Action::JobView { job_id }).await? {
            Ok(access) => access,
            Err(resp) => return Ok(resp),
        };
    http::json(200, &full_detail(&db, &job).await?)
}

/// [`detail`] with everything read: the one view of a job, shared by `GET /api/jobs/{id}` and the webhook.
pub async fn full_detail(db: &D1Database, job: &JobRow) -> Result<Value> {
    let events = db::job_events(db, &job.id).await?;
    let payment = db::payment_for_job(db, &job.id).await?;
    let (output, error_output) = events::job_outputs(db, &job.id).await?;
    let job = JobRow {
        output: output.or_else(|| job.output.clone()),
        error_output: error_output.or_else(|| job.error_output.clone()),
        ..job.clone()
    };
    Ok(detail(&job, &events, payment.as_ref()))
}

/// Jobs per page of `GET /api/jobs`, by default and at most.
const LIST_DEFAULT: u32 = 20;
const LIST_MAX: u32 = 100;

/// `GET /api/jobs?wallet=&signature=&timestamp=[&limit=&cursor=]`: the wallet's jobs, newest first, signed
/// `ouro-job-list:{wallet}:{ts}`. `next_cursor` (opaque) continues after the page's last job.
pub async fn list(req: Request, ctx: RouteContext<()>) -> Result<Response> {
    let params = access::signed_params(&req)?;
    let wallet = match access::verify_signed(&params, Action::JobList)? {
        Ok(w) => w,
        Err(resp) => return Ok(resp),
    };
    let url = req.url()?;
    let query = |name: &str| url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
    let limit = match query("limit").map(|l| l.parse::<u32>()) {
        None => LIST_DEFAULT,
        Some(Ok(l)) if (1..=LIST_MAX).contains(&l) => l,
        Some(_) => return http::field_error("limit", &format!("must be an integer 1-{LIST_MAX}")),
    };
    let cursor = match query("cursor").as_deref().map(parse_cursor) {
        None => None,
        Some(Some(c)) => Some(c),
        Some(None) => return http::field_error("cursor", "is not a cursor this API returned"),
    };
    let db = ctx.env.d1("DB")?;
    let jobs = events::jobs_of(&db, &wallet, cursor.as_ref().map(|(at, id)| (*at, id.as_str())), limit + 1).await?;
    let more = jobs.len() > limit as usize;
    let page = &jobs[..jobs.len().min(limit as usize)];
    let next_cursor = if more { page.last().map(|j| format!("{}_{}", j.submitted_at, j.id)) } else { None };
    http::json(
        200,
        &json!({
            "wallet": wallet,
            "jobs": page.iter().map(summary).collect::<Vec<_>>(),
            "next_cursor": next_cursor,
        }),
    )
}

/// `{submitted_at}_{id}` → its parts.
fn parse_cursor(raw: &str) -> Option<(u64, String)> {
    let (at, id) = raw.split_once('_')?;
    uuid::Uuid::parse_str(id).ok()?;
    Some((at.parse().ok()?, id.to_string()))
}

/// A job in a list: what it is and how it went, without its output or script.
fn summary(job: &JobRow) -> Value {
    json!({
        "id": job.id,
        "job_id": job.id,
        "status": job.status,
        "price_usdc": job.price_atomic as f64 / ATOMIC_PER_USD as f64,
        "price": format_usd(job.price_atomic),
        "submitted_at": time(Some(job.submitted_at)),
        "started_at": time(job.started_at),
        "completed_at": time(job.completed_at),
        "image": job.image,
        "cpus": job.cpus,
        "time_limit_min": job.time_limit_min,
        "file_count": job.file_count,
        "failure_reason": job.failure_reason,
        "fault": job.fault,
        "exit_code": job.exit_code,
        "compute_duration_s": job.compute_duration_s,
    })
}

fn time(ms: Option<u64>) -> Value {
    ms.map(|t| json!(rfc3339_from_millis(t))).unwrap_or(Value::Null)
}

/// The whole job: its [`summary`] and everything else there is to know about it.
pub fn detail(job: &JobRow, events: &[EventRow], payment: Option<&PaymentRow>) -> Value {
    let artifacts = crate::routes::storage::artifacts_of(job);
    let mut view = summary(job);
    let rest = json!({
        "script": (!job.script.is_empty()).then_some(&job.script),
        "entrypoint": job.entrypoint,
        "files": serde_json::from_str::<Value>(&job.files_json).unwrap_or_else(|_| json!([])),
        "payer": job.payer,
        "submitter_address": job.submitter_address,
        "failure_stage": job.failure_stage,
        "failure_message": job.failure_message,
        "credit_applied": job.credit_applied_atomic as f64 / ATOMIC_PER_USD as f64,
        "mount_storage": job.mount_storage != 0,
        // Files the job left in /outputs ([{path, size, sha256}], at GET /api/jobs/{id}/files/{path}), those it
        // could not return, and what its /scratch sync did (routes/storage.rs).
        "output_files": artifacts.output_files,
        "output_files_skipped": artifacts.output_files_skipped,
        "storage_sync": artifacts.storage,
        "webhook": job.webhook_url.as_ref().map(|url| json!({
            "url": url,
            "state": job.webhook_state,
            "attempts": job.webhook_attempts.unwrap_or(0),
            "last_status": job.webhook_last_status,
            "delivery_id": job.webhook_delivery_id,
        })),
        "cancel_requested_at": time(job.cancel_requested_at),
        "output": job.output,
        "error_output": job.error_output,
        "output_truncated": job.output_truncated != 0,
        "error_output_truncated": job.error_output_truncated != 0,
        "payment": payment.map(|p| json!({
            "transaction": p.tx_hash,
            "network": p.network,
            "amount": p.amount_atomic.to_string(),
            "nonce": p.nonce,
        })),
        "event_log": events.iter().map(|e| json!({
            "id": e.id,
            "type": e.kind,
            "message": e.message,
            "timestamp": rfc3339_from_millis(e.created_at),
        })).collect::<Vec<_>>(),
    });
    if let (Value::Object(view), Value::Object(rest)) = (&mut view, rest) {
        view.extend(rest);
    }
    view
}

/// Deadline of the edge's call asking an executor to kill a job.
const EXECUTOR_CANCEL_TIMEOUT_MS: u64 = 5_000;

/// `POST /api/jobs/{id}/cancel?wallet=&signature=&timestamp=`, signed by the payer
/// (`ouro-job-cancel:{job_id}:{wallet}:{ts}`). A pending job ends here and then (`failed`, `cancelled`, credited);
/// a job an executor has is killed there, and its result — `failed`/`cancelled`, with the output printed until
/// then — ends it (202). Whatever races (the job ending by itself, the dispatch handing it over), the guarded
/// writes let exactly one end be recorded. A job that has ended → 409.
pub async fn cancel(req: Request, ctx: RouteContext<()>) -> Result<Response> {
    let access::JobAccess { config, db, job } =
        match access::job_for(&req, &ctx, |job_id| Action::JobCancel { job_id }).await? {
            Ok(access) => access,
            Err(resp) => return Ok(resp),
        };
    let id = job.id.clone();
    let now = super::now_ms();
    if job.status == JobStatus::Pending.as_str()
        && events::cancel_pending(&db, &id, "cancelled by the payer before it started", now).await?
    {
        crate::credits::on_job_end_logged(&db, &id, now).await;
        crate::webhooks::on_job_end(&ctx.env, &db, &id).await;
        return answer(&db, &id, 200).await;
    }
    // Not pending (any more): an executor has it, or it has ended.
    if !events::request_cancel(&db, &id, now).await? {
        let status = db::get_job(&db, &id).await?.map(|j| j.status).unwrap_or_default();
        return http::error(409, "job_finished", format!("job {id} has ended ({status}); there is nothing to cancel"));
    }
    let job = db::get_job(&db, &id).await?.unwrap_or(job);
    match &job.executor_url {
        Some(url) => {
            if let Err(why) = crate::dispatch::cancel_on(&config, url, &id, EXECUTOR_CANCEL_TIMEOUT_MS).await {
                // The result decides anyway: a job that finished meanwhile reports its own end.
                worker::console_log!("job {id}: cancel not confirmed by {url}: {why}");
            }
        }
        None => worker::console_error!("job {id} is {} without an executor recorded; cannot kill it", job.status),
    }
    answer(&db, &id, 202).await
}

/// The job as it stands after a cancel.
async fn answer(db: &D1Database, id: &str, status: u16) -> Result<Response> {
    let Some(job) = db::get_job(db, id).await? else {
        return http::error(404, "job_not_found", format!("no job {id}"));
    };
    let mut view = full_detail(db, &job).await?;
    view["cancel"] = json!(if status == 200 { "cancelled" } else { "requested" });
    http::json(status, &view)
}

/// `GET /api/jobs/{id}/logs?stream=stdout|stderr` (default stdout; signed like the job view): the stream's full
/// raw log, as the job wrote it, up to the executor's log cap (`X-Ouro-Log-Truncated` says when it was cut,
/// `X-Ouro-Bytes-Seen` how much the job wrote).
pub async fn logs(req: Request, ctx: RouteContext<()>) -> Result<Response> {
    let url = req.url()?;
    let raw = url.query_pairs().find(|(k, _)| k == "stream").map(|(_, v)| v.into_owned());
    let Some(stream) = crate::logs::parse_stream(raw.as_deref().unwrap_or("stdout")) else {
        return http::field_error("stream", "must be stdout or stderr");
    };
    let job = match access::job_for(&req, &ctx, |job_id| Action::JobView { job_id }).await? {
        Ok(access) => access.job,
        Err(resp) => return Ok(resp),
    };
    let id = job.id.clone();
    let Some((bytes, header)) = crate::logs::get(&ctx.env.bucket(crate::logs::BINDING)?, &id, stream).await? else {
        let why = if JobStatus::parse(&job.status).is_some_and(JobStatus::is_terminal) {
            "this job has no log of that stream"
        } else {
            "the log is stored when the job ends"
        };
        return http::error(404, "log_not_found", why);
    };
    let mut resp = Response::from_bytes(bytes)?;
    let headers = resp.headers_mut();
    headers.set("Content-Type", "application/octet-stream")?;
    headers.set("X-Ouro-Log-Truncated", &header.truncated.to_string())?;
    headers.set("X-Ouro-Bytes-Seen", &header.bytes_seen.to_string())?;
    Ok(resp)
}
