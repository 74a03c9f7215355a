//! Every D1 statement the edge runs, in one place, named for what it does. Rows are plain structs; the job
//! vocabulary (statuses, faults, reasons) is stored as the strings of `ouro_core::job`.

use ouro_core::dispatch::JobOutcome;
use ouro_core::job::JobStatus;
use serde::Deserialize;
use worker::wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement, Result};

fn s(v: &str) -> JsValue {
    JsValue::from_str(v)
}

fn n(v: f64) -> JsValue {
    JsValue::from_f64(v)
}

fn opt(v: Option<&str>) -> JsValue {
    v.map(JsValue::from_str).unwrap_or(JsValue::NULL)
}

fn stmt(db: &D1Database, sql: &str, args: &[JsValue]) -> Result<D1PreparedStatement> {
    db.prepare(sql).bind(args)
}

#[derive(Debug, Clone, Deserialize)]
pub struct JobRow {
    pub id: String,
    pub status: String,
    pub payer: String,
    pub submitter_address: Option<String>,
    pub script: String,
    pub image: String,
    pub cpus: u32,
    pub time_limit_min: u32,
    pub price_atomic: u64,
    pub submitted_at: u64,
    pub started_at: Option<u64>,
    pub completed_at: Option<u64>,
    pub output: Option<String>,
    pub error_output: Option<String>,
    pub output_truncated: u8,
    pub error_output_truncated: u8,
    pub exit_code: Option<i64>,
    pub compute_duration_s: Option<f64>,
    pub failure_reason: Option<String>,
    pub failure_stage: Option<String>,
    pub failure_message: Option<String>,
    pub fault: Option<String>,
    pub entrypoint: Option<String>,
    pub file_count: u32,
    /// JSON array of `{path, size}`.
    pub files_json: String,
    pub workspace_key: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PaymentRow {
    pub payer: String,
    pub nonce: String,
    pub state: String,
    pub amount_atomic: u64,
    pub network: String,
    pub spec_digest: String,
    pub job_id: Option<String>,
    pub tx_hash: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EventRow {
    pub id: u64,
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
    pub created_at: u64,
}

/// A paid job about to be recorded.
pub struct NewJob<'a> {
    pub id: &'a str,
    pub payer: &'a str,
    pub spec: &'a ouro_core::submit::JobSpec,
    pub spec_digest: &'a str,
    pub price_atomic: u64,
    /// Where the workspace's files are in R2 (multi-file jobs only).
    pub workspace_key: Option<&'a str>,
    pub now_ms: u64,
}

pub struct NewPayment<'a> {
    pub payer: &'a str,
    pub nonce: &'a str,
    pub amount_atomic: u64,
    pub network: &'a str,
    pub asset: &'a str,
    pub pay_to: &'a str,
    pub valid_before: u64,
    pub spec_digest: &'a str,
    pub now_ms: u64,
}

pub async fn jobs_since(db: &D1Database, since_ms: u64) -> Result<u64> {
    #[derive(Deserialize)]
    struct Count {
        n: u64,
    }
    let row: Option<Count> = stmt(db, "SELECT COUNT(*) AS n FROM jobs WHERE submitted_at >= ?1", &[n(since_ms as f64)])?
        .first(None)
        .await?;
    Ok(row.map(|c| c.n).unwrap_or(0))
}

pub async fn find_payment(db: &D1Database, payer: &str, nonce: &str) -> Result<Option<PaymentRow>> {
    stmt(
        db,
        "SELECT payer, nonce, state, amount_atomic, network, spec_digest, job_id, tx_hash \
         FROM payments WHERE payer = ?1 AND nonce = ?2",
        &[s(payer), s(nonce)],
    )?
    .first(None)
    .await
}

pub async fn payment_for_job(db: &D1Database, job_id: &str) -> Result<Option<PaymentRow>> {
    stmt(
        db,
        "SELECT payer, nonce, state, amount_atomic, network, spec_digest, job_id, tx_hash \
         FROM payments WHERE job_id = ?1",
        &[s(job_id)],
    )?
    .first(None)
    .await
}

/// Inserts the `(payer, nonce)` guard. `Ok(false)` when a row for it already exists (a replay or a
/// concurrent twin): the primary key is the lock, so two requests can never both go on to settle.
pub async fn reserve_payment(db: &D1Database, p: &NewPayment<'_>) -> Result<bool> {
    let result = stmt(
        db,
        "INSERT INTO payments (payer, nonce, state, amount_atomic, network, asset, pay_to, valid_before, \
         spec_digest, created_at) VALUES (?1, ?2, 'reserved', ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
         ON CONFLICT (payer, nonce) DO NOTHING",
        &[
            s(p.payer),
            s(p.nonce),
            n(p.amount_atomic as f64),
            s(p.network),
            s(p.asset),
            s(p.pay_to),
            n(p.valid_before as f64),
            s(p.spec_digest),
            n(p.now_ms as f64),
        ],
    )?
    .run()
    .await?;
    let changed = result.meta()?.and_then(|m| m.changes).unwrap_or(0);
    Ok(changed == 1)
}

/// Drops a reservation that bought nothing (verify or settle refused, facilitator unreachable before settle),
/// so that the same authorization can be tried again.
pub async fn release_payment(db: &D1Database, payer: &str, nonce: &str) -> Result<()> {
    stmt(db, "DELETE FROM payments WHERE payer = ?1 AND nonce = ?2 AND state = 'reserved'", &[s(payer), s(nonce)])?
        .run()
        .await?;
    Ok(())
}

/// The job row, the settled payment and the first event, in one batch: a settled payment always has its job.
pub async fn record_paid_job(db: &D1Database, job: &NewJob<'_>, nonce: &str, tx_hash: &str) -> Result<()> {
    let spec = job.spec;
    let now = n(job.now_ms as f64);
    db.batch(vec![
        stmt(
            db,
            "INSERT INTO jobs (id, status, payer, submitter_address, script, image, cpus, time_limit_min, \
             price_atomic, spec_digest, submitted_at, entrypoint, file_count, files_json, workspace_key) \
             VALUES (?1, 'pending', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            &[
                s(job.id),
                s(job.payer),
                opt(spec.submitter_address.as_deref()),
                s(&spec.script),
                s(&spec.image),
                n(f64::from(spec.cpus)),
                n(f64::from(spec.time_limit_min)),
                n(job.price_atomic as f64),
                s(job.spec_digest),
                now.clone(),
                opt(spec.entrypoint.as_deref()),
                n(spec.files.len() as f64),
                s(&files_listing(&spec.files)),
                opt(job.workspace_key),
            ],
        )?,
        stmt(
            db,
            "UPDATE payments SET state = 'settled', job_id = ?3, tx_hash = ?4, settled_at = ?5 \
             WHERE payer = ?1 AND nonce = ?2",
            &[s(job.payer), s(nonce), s(job.id), s(tx_hash), now.clone()],
        )?,
        event_stmt(db, job.id, "status", &format!("paid ({tx_hash}); queued"), job.now_ms)?,
    ])
    .await?;
    Ok(())
}

/// `[{path, size}]` of a workspace, as the API lists it.
fn files_listing(files: &[ouro_core::workspace::WorkspaceFile]) -> String {
    let listing: Vec<serde_json::Value> =
        files.iter().map(|f| serde_json::json!({ "path": f.path, "size": f.content.len() })).collect();
    serde_json::Value::Array(listing).to_string()
}

fn event_stmt(db: &D1Database, job_id: &str, kind: &str, message: &str, now_ms: u64) -> Result<D1PreparedStatement> {
    stmt(
        db,
        "INSERT INTO job_events (job_id, type, message, created_at) VALUES (?1, ?2, ?3, ?4)",
        &[s(job_id), s(kind), s(message), n(now_ms as f64)],
    )
}

pub async fn get_job(db: &D1Database, id: &str) -> Result<Option<JobRow>> {
    stmt(db, "SELECT * FROM jobs WHERE id = ?1", &[s(id)])?.first(None).await
}

pub async fn job_events(db: &D1Database, id: &str) -> Result<Vec<EventRow>> {
    stmt(db, "SELECT id, type, message, created_at FROM job_events WHERE job_id = ?1 ORDER BY id", &[s(id)])?
        .all()
        .await?
        .results()
}

/// Moves a job forward to `to` if it is in an earlier, non-terminal state; `Ok(false)` when the move does
/// not apply (a late or repeated report). The WHERE clause is the guard, so concurrent reports cannot race.
pub async fn advance_status(
    db: &D1Database,
    id: &str,
    to: JobStatus,
    message: &str,
    now_ms: u64,
    executor_url: Option<&str>,
) -> Result<bool> {
    let earlier: Vec<&str> = [JobStatus::Pending, JobStatus::Processing, JobStatus::Running]
        .into_iter()
        .filter(|from| from.can_become(to))
        .map(JobStatus::as_str)
        .collect();
    let placeholders = (0..earlier.len()).map(|i| format!("?{}", i + 5)).collect::<Vec<_>>().join(", ");
    let mut args = vec![s(id), s(to.as_str()), n(now_ms as f64), opt(executor_url)];
    args.extend(earlier.iter().map(|st| s(st)));
    let started = if to == JobStatus::Running { "started_at = ?3," } else { "" };
    let sql = format!(
        "UPDATE jobs SET {started} status = ?2, executor_url = COALESCE(?4, executor_url) \
         WHERE id = ?1 AND status IN ({placeholders})"
    );
    let changed = stmt(db, &sql, &args)?.run().await?.meta()?.and_then(|m| m.changes).unwrap_or(0);
    if changed == 1 {
        event_stmt(db, id, "status", message, now_ms)?.run().await?;
    }
    Ok(changed == 1)
}

/// Writes a job's end. `Ok(false)` when the job was already terminal (a repeated result).
pub async fn record_outcome(db: &D1Database, id: &str, outcome: &JobOutcome, now_ms: u64) -> Result<bool> {
    let failure = outcome.failure.as_ref();
    let changed = stmt(
        db,
        "UPDATE jobs SET status = ?2, completed_at = ?3, output = ?4, error_output = ?5, output_truncated = ?6, \
         error_output_truncated = ?7, exit_code = ?8, compute_duration_s = ?9, failure_reason = ?10, \
         failure_stage = ?11, failure_message = ?12, fault = ?13, started_at = COALESCE(started_at, ?3) \
         WHERE id = ?1 AND status NOT IN ('completed', 'failed')",
        &[
            s(id),
            s(outcome.status().as_str()),
            n(now_ms as f64),
            s(&outcome.output),
            s(&outcome.error_output),
            n(f64::from(u8::from(outcome.output_truncated))),
            n(f64::from(u8::from(outcome.error_output_truncated))),
            outcome.exit_code.map(|c| n(c as f64)).unwrap_or(JsValue::NULL),
            n(outcome.compute_duration_s),
            opt(failure.map(|f| f.reason.as_str())),
            opt(failure.map(|f| f.stage.as_str())),
            opt(failure.map(|f| f.message.as_str())),
            opt(failure.map(|f| f.fault().as_str())),
        ],
    )?
    .run()
    .await?
    .meta()?
    .and_then(|m| m.changes)
    .unwrap_or(0);
    if changed == 1 {
        let message = match failure {
            None => format!("completed (exit code {})", outcome.exit_code.unwrap_or(0)),
            Some(f) => format!("failed: {} ({})", f.reason.as_str(), f.message),
        };
        event_stmt(db, id, "status", &message, now_ms)?.run().await?;
    }
    Ok(changed == 1)
}

/// Ends a job that never reached an executor (the dispatch queue gave up on it, or its files are gone).
pub async fn fail_undispatched(
    db: &D1Database,
    id: &str,
    reason: ouro_core::job::FailureReason,
    message: &str,
    now_ms: u64,
) -> Result<bool> {
    let changed = stmt(
        db,
        "UPDATE jobs SET status = 'failed', completed_at = ?2, failure_reason = ?4, \
         failure_stage = 'dispatch', failure_message = ?3, fault = ?5 \
         WHERE id = ?1 AND status NOT IN ('completed', 'failed')",
        &[s(id), n(now_ms as f64), s(message), s(reason.as_str()), s(reason.fault().as_str())],
    )?
    .run()
    .await?
    .meta()?
    .and_then(|m| m.changes)
    .unwrap_or(0);
    if changed == 1 {
        event_stmt(db, id, "status", &format!("failed: {} ({message})", reason.as_str()), now_ms)?.run().await?;
    }
    Ok(changed == 1)
}

/// Records a progress event (e.g. an image build step) on a job that has not ended yet.
pub async fn add_progress_event(db: &D1Database, id: &str, message: &str, now_ms: u64) -> Result<bool> {
    let changed = stmt(
        db,
        "INSERT INTO job_events (job_id, type, message, created_at) \
         SELECT ?1, 'progress', ?2, ?3 WHERE EXISTS \
         (SELECT 1 FROM jobs WHERE id = ?1 AND status NOT IN ('completed', 'failed'))",
        &[s(id), s(message), n(now_ms as f64)],
    )?
    .run()
    .await?
    .meta()?
    .and_then(|m| m.changes)
    .unwrap_or(0);
    Ok(changed == 1)
}
