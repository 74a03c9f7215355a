//! A job's events as a stream (output chunks, status changes, the terminal event), the open event streams, a
//! wallet's job list, the outputs of ended jobs, webhook deliveries and cancellation (migration 0006).

use ouro_core::dispatch::OutputChunk;
use ouro_core::job::JobStatus;
use serde::Deserialize;
use worker::wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement, D1Result, Result};

use super::{changed_rows, n, opt, s, stmt, JobRow};

/// How many rows the first statement of a batch changed (the guarded UPDATE that decides the rest).
pub(super) fn first_changed(results: Vec<D1Result>) -> Result<usize> {
    match results.first() {
        Some(r) => Ok(r.meta()?.and_then(|m| m.changes).unwrap_or(0)),
        None => Ok(0),
    }
}

/// A status event (`status` set); `exit_code` only on the terminal one.
pub(super) fn status_event_stmt(
    db: &D1Database,
    job_id: &str,
    status: JobStatus,
    message: &str,
    exit_code: Option<i64>,
    now_ms: u64,
) -> Result<D1PreparedStatement> {
    stmt(
        db,
        "INSERT INTO job_events (job_id, type, message, created_at, status, exit_code) \
         VALUES (?1, 'status', ?2, ?3, ?4, ?5)",
        &[s(job_id), s(message), n(now_ms as f64), s(status.as_str()), exit(exit_code)],
    )
}

fn exit(code: Option<i64>) -> JsValue {
    code.map(|c| n(c as f64)).unwrap_or(JsValue::NULL)
}

/// The terminal event, written only if the batch's UPDATE (which set `end_token = token`) ended the job.
pub(super) fn terminal_event_stmt(
    db: &D1Database,
    job_id: &str,
    token: &str,
    status: JobStatus,
    message: &str,
    exit_code: Option<i64>,
    now_ms: u64,
) -> Result<D1PreparedStatement> {
    stmt(
        db,
        "INSERT INTO job_events (job_id, type, message, created_at, status, exit_code) \
         SELECT ?1, 'status', ?2, ?3, ?4, ?5 WHERE EXISTS (SELECT 1 FROM jobs WHERE id = ?1 AND end_token = ?6)",
        &[s(job_id), s(message), n(now_ms as f64), s(status.as_str()), exit(exit_code), s(token)],
    )
}

/// One stream's capped text of an ended job, written only by the batch that ended it.
pub(super) fn output_stmt(
    db: &D1Database,
    job_id: &str,
    token: &str,
    stream: &str,
    text: &str,
) -> Result<D1PreparedStatement> {
    stmt(
        db,
        "INSERT OR REPLACE INTO job_outputs (job_id, stream, text) \
         SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM jobs WHERE id = ?1 AND end_token = ?4)",
        &[s(job_id), s(stream), s(text), s(token)],
    )
}

/// Stores output chunks of a job that has not ended; a chunk whose `seq` is stored already is skipped, so a
/// repeated delivery changes nothing. Answers how many were new.
pub async fn record_output(db: &D1Database, job_id: &str, chunks: &[OutputChunk], now_ms: u64) -> Result<usize> {
    if chunks.is_empty() {
        return Ok(0);
    }
    let batch = chunks
        .iter()
        .map(|c| {
            stmt(
                db,
                "INSERT OR IGNORE INTO job_events (job_id, type, message, created_at, seq, stream, data) \
                 SELECT ?1, 'output', '', ?2, ?3, ?4, ?5 WHERE EXISTS \
                 (SELECT 1 FROM jobs WHERE id = ?1 AND status NOT IN ('completed', 'failed'))",
                &[s(job_id), n(now_ms as f64), n(c.seq as f64), s(c.stream.as_str()), s(&c.data)],
            )
        })
        .collect::<Result<Vec<_>>>()?;
    let mut added = 0;
    for r in db.batch(batch).await? {
        added += r.meta()?.and_then(|m| m.changes).unwrap_or(0);
    }
    Ok(added)
}

/// One event as the stream sends it.
#[derive(Debug, Clone, Deserialize)]
pub struct StreamEventRow {
    pub id: u64,
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
    pub created_at: u64,
    pub stream: Option<String>,
    pub data: Option<String>,
    pub status: Option<String>,
    pub exit_code: Option<i64>,
}

impl StreamEventRow {
    pub fn is_terminal(&self) -> bool {
        self.status.as_deref().and_then(JobStatus::parse).is_some_and(JobStatus::is_terminal)
    }
}

/// The job's events after `after_id`, oldest first, at most `limit`.
pub async fn events_after(db: &D1Database, job_id: &str, after_id: u64, limit: u32) -> Result<Vec<StreamEventRow>> {
    stmt(
        db,
        "SELECT id, type, message, created_at, stream, data, status, exit_code FROM job_events \
         WHERE job_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
        &[s(job_id), n(after_id as f64), n(f64::from(limit))],
    )?
    .all()
    .await?
    .results()
}

/// Why a stream could not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamRefusal {
    PerJob,
    Total,
}

/// Takes a lease for an event stream if fewer than `per_job` streams of this job and `total` streams in all are
/// open (one statement: two requests cannot both take the last place).
pub async fn open_stream(
    db: &D1Database,
    stream_id: &str,
    job_id: &str,
    now_ms: u64,
    expires_at: u64,
    per_job: u32,
    total: u32,
) -> Result<std::result::Result<(), StreamRefusal>> {
    let changed = changed_rows(stmt(
        db,
        "INSERT INTO event_streams (id, job_id, expires_at) SELECT ?1, ?2, ?4 \
         WHERE (SELECT COUNT(*) FROM event_streams WHERE job_id = ?2 AND expires_at > ?3) < ?5 \
         AND (SELECT COUNT(*) FROM event_streams WHERE expires_at > ?3) < ?6",
        &[s(stream_id), s(job_id), n(now_ms as f64), n(expires_at as f64), n(f64::from(per_job)), n(f64::from(total))],
    )?)
    .await?;
    if changed == 1 {
        return Ok(Ok(()));
    }
    #[derive(Deserialize)]
    struct Count {
        c: u32,
    }
    let of_job: Option<Count> = stmt(
        db,
        "SELECT COUNT(*) AS c FROM event_streams WHERE job_id = ?1 AND expires_at > ?2",
        &[s(job_id), n(now_ms as f64)],
    )?
    .first(None)
    .await?;
    Ok(Err(if of_job.map_or(0, |c| c.c) >= per_job { StreamRefusal::PerJob } else { StreamRefusal::Total }))
}

/// Extends a live stream's lease.
pub async fn renew_stream(db: &D1Database, stream_id: &str, expires_at: u64) -> Result<()> {
    stmt(db, "UPDATE event_streams SET expires_at = ?2 WHERE id = ?1", &[s(stream_id), n(expires_at as f64)])?
        .run()
        .await?;
    Ok(())
}

/// Gives a stream's lease back (and forgets expired ones).
pub async fn close_stream(db: &D1Database, stream_id: &str, now_ms: u64) -> Result<()> {
    stmt(db, "DELETE FROM event_streams WHERE id = ?1 OR expires_at <= ?2", &[s(stream_id), n(now_ms as f64)])?
        .run()
        .await?;
    Ok(())
}

/// The capped outputs of an ended job: `(stdout, stderr)`; `None` for a job ended before `job_outputs` existed
/// (its text is in the `jobs` row) or not ended yet.
pub async fn job_outputs(db: &D1Database, job_id: &str) -> Result<(Option<String>, Option<String>)> {
    #[derive(Deserialize)]
    struct Row {
        stream: String,
        text: String,
    }
    let rows: Vec<Row> =
        stmt(db, "SELECT stream, text FROM job_outputs WHERE job_id = ?1", &[s(job_id)])?.all().await?.results()?;
    let mut out = (None, None);
    for r in rows {
        match r.stream.as_str() {
            "stdout" => out.0 = Some(r.text),
            _ => out.1 = Some(r.text),
        }
    }
    Ok(out)
}

/// A wallet's jobs, newest first, after the cursor `(submitted_at, id)` of the last job of the previous page.
pub async fn jobs_of(db: &D1Database, payer: &str, before: Option<(u64, &str)>, limit: u32) -> Result<Vec<JobRow>> {
    let (at, id) = before.unwrap_or((u64::MAX / 2, ""));
    stmt(
        db,
        "SELECT * FROM jobs WHERE payer = ?1 AND (submitted_at < ?2 OR (submitted_at = ?2 AND id < ?3)) \
         ORDER BY submitted_at DESC, id DESC LIMIT ?4",
        &[s(payer), n(at as f64), s(if before.is_some() { id } else { "\u{10FFFF}" }), n(f64::from(limit))],
    )?
    .all()
    .await?
    .results()
}

/// Marks a running job's cancellation as asked for; `Ok(false)` when it has ended already.
pub async fn request_cancel(db: &D1Database, job_id: &str, now_ms: u64) -> Result<bool> {
    let changed = changed_rows(stmt(
        db,
        "UPDATE jobs SET cancel_requested_at = COALESCE(cancel_requested_at, ?2) \
         WHERE id = ?1 AND status NOT IN ('completed', 'failed')",
        &[s(job_id), n(now_ms as f64)],
    )?)
    .await?;
    if changed == 1 {
        super::event_stmt(db, job_id, "progress", "cancellation requested by the payer", now_ms)?.run().await?;
    }
    Ok(changed == 1)
}

/// Ends a job that is still `pending` as cancelled, in one batch with its terminal event; `Ok(false)` when it is
/// no longer pending (an executor took it meanwhile, or it ended).
pub async fn cancel_pending(db: &D1Database, job_id: &str, message: &str, now_ms: u64) -> Result<bool> {
    let reason = ouro_core::job::FailureReason::Cancelled;
    let token = uuid::Uuid::new_v4().to_string();
    let update = stmt(
        db,
        "UPDATE jobs SET status = 'failed', completed_at = ?2, failure_reason = ?4, failure_stage = 'dispatch', \
         failure_message = ?3, fault = ?5, end_token = ?6, cancel_requested_at = COALESCE(cancel_requested_at, ?2), \
         compute_duration_s = 0 WHERE id = ?1 AND status = 'pending'",
        &[s(job_id), n(now_ms as f64), s(message), s(reason.as_str()), s(reason.fault().as_str()), s(&token)],
    )?;
    let event = format!("failed: {} ({message})", reason.as_str());
    let terminal = terminal_event_stmt(db, job_id, &token, JobStatus::Failed, &event, None, now_ms)?;
    Ok(first_changed(db.batch(vec![update, terminal]).await?)? == 1)
}

/// What the webhook consumer needs of a job.
#[derive(Debug, Clone, Deserialize)]
pub struct WebhookRow {
    pub webhook_url: Option<String>,
    pub webhook_delivery_id: Option<String>,
    pub webhook_state: Option<String>,
    pub webhook_attempts: u32,
}

pub async fn webhook_of(db: &D1Database, job_id: &str) -> Result<Option<WebhookRow>> {
    stmt(
        db,
        "SELECT webhook_url, webhook_delivery_id, webhook_state, webhook_attempts FROM jobs WHERE id = ?1",
        &[s(job_id)],
    )?
    .first(None)
    .await
}

/// Records the job's webhook, in the batch that records the paid job.
pub(super) fn webhook_url_stmt(db: &D1Database, job_id: &str, url: &str) -> Result<D1PreparedStatement> {
    stmt(db, "UPDATE jobs SET webhook_url = ?2 WHERE id = ?1", &[s(job_id), s(url)])
}

/// Claims the job's one delivery (with its id): `Ok(true)` the first time an ended job with a webhook asks.
pub async fn queue_webhook(db: &D1Database, job_id: &str, delivery_id: &str) -> Result<bool> {
    let changed = changed_rows(stmt(
        db,
        "UPDATE jobs SET webhook_state = 'queued', webhook_delivery_id = ?2 WHERE id = ?1 \
         AND webhook_url IS NOT NULL AND webhook_state IS NULL AND status IN ('completed', 'failed')",
        &[s(job_id), s(delivery_id)],
    )?)
    .await?;
    Ok(changed == 1)
}

/// Records one delivery attempt: its HTTP status (or error) and, when no more will follow, the final state.
pub async fn record_webhook_attempt(
    db: &D1Database,
    job_id: &str,
    status: Option<u16>,
    error: Option<&str>,
    final_state: Option<&str>,
) -> Result<()> {
    stmt(
        db,
        "UPDATE jobs SET webhook_attempts = webhook_attempts + 1, webhook_last_status = ?2, webhook_last_error = ?3, \
         webhook_state = COALESCE(?4, webhook_state) WHERE id = ?1",
        &[s(job_id), status.map(|v| n(f64::from(v))).unwrap_or(JsValue::NULL), opt(error), opt(final_state)],
    )?
    .run()
    .await?;
    Ok(())
}
