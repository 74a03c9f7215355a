//! `GET /api/jobs/{job_id}`: the job as its payer sees it. The id is an unguessable v4 UUID and acts as the
//! capability to read the job.

use ouro_core::pricing::{format_usd, ATOMIC_PER_USD};
use ouro_core::time::rfc3339_from_millis;
use serde_json::{json, Value};
use worker::{Request, Response, Result, RouteContext};

use crate::db::{self, EventRow, JobRow, PaymentRow};
use crate::http;

pub async fn get(_req: Request, ctx: RouteContext<()>) -> Result<Response> {
    let id = ctx.param("id").cloned().unwrap_or_default();
    if uuid::Uuid::parse_str(&id).is_err() {
        return http::error(404, "job_not_found", format!("no job {id:?}"));
    }
    let db = ctx.env.d1("DB")?;
    let Some(job) = db::get_job(&db, &id).await? else {
        return http::error(404, "job_not_found", format!("no job {id}"));
    };
    let events = db::job_events(&db, &id).await?;
    let payment = db::payment_for_job(&db, &id).await?;
    http::json(200, &detail(&job, &events, payment.as_ref()))
}

fn time(ms: Option<u64>) -> Value {
    ms.map(|t| json!(rfc3339_from_millis(t))).unwrap_or(Value::Null)
}

pub fn detail(job: &JobRow, events: &[EventRow], payment: Option<&PaymentRow>) -> Value {
    json!({
        "id": job.id,
        "job_id": job.id,
        "status": job.status,
        "price_usdc": job.price_atomic as f64 / ATOMIC_PER_USD as f64,
        "price": format_usd(job.price_atomic),
        "submitted_at": time(Some(job.submitted_at)),
        "started_at": time(job.started_at),
        "completed_at": time(job.completed_at),
        "script": (!job.script.is_empty()).then_some(&job.script),
        "entrypoint": job.entrypoint,
        "file_count": job.file_count,
        "files": serde_json::from_str::<Value>(&job.files_json).unwrap_or_else(|_| json!([])),
        "image": job.image,
        "cpus": job.cpus,
        "time_limit_min": job.time_limit_min,
        "payer": job.payer,
        "submitter_address": job.submitter_address,
        "failure_reason": job.failure_reason,
        "failure_stage": job.failure_stage,
        "failure_message": job.failure_message,
        "fault": job.fault,
        "credit_applied": 0.0,
        "mount_storage": false,
        "output": job.output,
        "error_output": job.error_output,
        "output_truncated": job.output_truncated != 0,
        "error_output_truncated": job.error_output_truncated != 0,
        "exit_code": job.exit_code,
        "compute_duration_s": job.compute_duration_s,
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
    })
}
