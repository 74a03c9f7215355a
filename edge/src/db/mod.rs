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

pub mod credits;
pub mod events;
pub mod payments;
pub mod sweep;
pub mod storage;

fn stmt(db: &D1Database, sql: &str, args: &[JsValue]) -> Result<D1PreparedStatement> {
    db.prepare(sql).bind(args)
}

/// Runs a write and answers how many rows it changed (the guards in WHERE clauses report through this).
async fn changed_rows(statement: D1PreparedStatement) -> Result<usize> {
    Ok(statement.run().await?.meta()?.and_then(|m| m.changes).unwrap_or(0))
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
    /// Credit spent on the job (atomic; migration 0008).
    #[serde(default)]
    pub credit_applied_atomic: u64,
    /// Storage and output files (migration 0007).
    #[serde(default)]
    pub mount_storage: u8,
    /// JSON `storage::Artifacts` of the job's end: output files, skipped files, the storage sync summary.
    #[serde(default)]
    pub artifacts_json: Option<String>,
    /// The executor that took the job (set when it moves to `processing`).
    #[serde(default)]
    pub executor_url: Option<String>,
    #[serde(default)]
    pub webhook_url: Option<String>,
    #[serde(default)]
    pub webhook_state: Option<String>,
    #[serde(default)]
    pub webhook_attempts: Option<u32>,
    #[serde(default)]
    pub webhook_last_status: Option<u16>,
    #[serde(default)]
    pub webhook_delivery_id: Option<String>,
    #[serde(default)]
    pub cancel_requested_at: Option<u64>,
}

/// The columns of a [`PaymentRow`].
const PAYMENT_COLUMNS: &str = "SELECT nonce, amount_atomic, network, tx_hash FROM payments";

/// What a job's detail shows of the payment that bought it (the pipeline's own view is `payments::PaymentState`).
#[derive(Debug, Clone, Deserialize)]
pub struct PaymentRow {
    pub nonce: String,
    pub amount_atomic: u64,
    pub network: String,
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
    /// The builder codes it was submitted with (`X-BUILDER-CODE`), recorded with the job.
    pub builder_codes: &'a [String],
    pub now_ms: u64,
}

pub async fn payment_for_job(db: &D1Database, job_id: &str) -> Result<Option<PaymentRow>> {
    stmt(
        db,
        &format!("{PAYMENT_COLUMNS} WHERE job_id = ?1"),
        &[s(job_id)],
    )?
    .first(None)
    .await
}

/// The job row, the settled payment, the first event and the job's builder codes, in one batch: a settled
/// payment always has its job. Idempotent per payment: when `(payer, nonce)` is already settled (a concurrent
/// twin or a reconciliation got there first) nothing is written and the answer is `false`; the winner's job is
/// the payment row's `job_id`. `tx_hash` is `None` when the chain says the transfer happened but the
/// transaction is not known.
pub async fn record_paid_job(db: &D1Database, job: &NewJob<'_>, nonce: &str, tx_hash: Option<&str>) -> Result<bool> {
    let spec = job.spec;
    let now = n(job.now_ms as f64);
    let mut batch = vec![
        stmt(
            db,
            "INSERT INTO jobs (id, status, payer, submitter_address, script, image, cpus, time_limit_min, \
             price_atomic, spec_digest, submitted_at, entrypoint, file_count, files_json, workspace_key) \
             SELECT ?1, 'pending', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14 \
             WHERE NOT EXISTS (SELECT 1 FROM payments WHERE payer = ?2 AND nonce = ?15 AND state = 'settled')",
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
                s(nonce),
            ],
        )?,
        stmt(
            db,
            "UPDATE payments SET state = 'settled', job_id = ?3, tx_hash = COALESCE(?4, tx_hash), settled_at = ?5, \
             lease_until = 0 WHERE payer = ?1 AND nonce = ?2 AND state != 'settled' \
             AND EXISTS (SELECT 1 FROM jobs WHERE id = ?3)",
            &[s(job.payer), s(nonce), s(job.id), opt(tx_hash), now.clone()],
        )?,
        stmt(
            db,
            "INSERT INTO job_events (job_id, type, message, created_at, status) SELECT ?1, 'status', ?2, ?3, 'pending' \
             WHERE EXISTS (SELECT 1 FROM jobs WHERE id = ?1)",
            &[s(job.id), s(&format!("paid ({}); queued", tx_hash.unwrap_or("transaction not known"))), now.clone()],
        )?,
    ];
    if let Some(url) = &spec.webhook_url {
        batch.push(events::webhook_url_stmt(db, job.id, url)?);
    }
    if spec.mount_storage {
        batch.push(storage::mount_storage_stmt(db, job.id)?);
    }
    batch.extend(builder_code_stmts(db, job.id, job.builder_codes, job.now_ms)?);
    let results = db.batch(batch).await?;
    let created = results.first().and_then(|r| r.meta().ok().flatten()).and_then(|m| m.changes).unwrap_or(0) == 1;
    Ok(created)
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

/// The job's history for `event_log`: status and progress events (output chunks are in `output` already).
pub async fn job_events(db: &D1Database, id: &str) -> Result<Vec<EventRow>> {
    stmt(
        db,
        "SELECT id, type, message, created_at FROM job_events WHERE job_id = ?1 AND type <> 'output' ORDER BY id",
        &[s(id)],
    )?
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
    let changed = changed_rows(stmt(db, &sql, &args)?).await?;
    if changed == 1 {
        events::status_event_stmt(db, id, to, message, None, now_ms)?.run().await?;
    }
    Ok(changed == 1)
}

/// Writes a job's end. `Ok(false)` when the job was already terminal (a repeated result).
/// The row, its outputs (`job_outputs`: 1 MiB of each stream does not fit one D1 row) and the terminal event
/// are one batch, so an events stream never shows the end before `GET /api/jobs/{id}` does.
pub async fn record_outcome(db: &D1Database, id: &str, outcome: &JobOutcome, now_ms: u64) -> Result<bool> {
    let failure = outcome.failure.as_ref();
    let token = uuid::Uuid::new_v4().to_string();
    let update = stmt(
        db,
        "UPDATE jobs SET status = ?2, completed_at = ?3, output = NULL, error_output = NULL, output_truncated = ?5, \
         error_output_truncated = ?6, exit_code = ?7, compute_duration_s = ?8, failure_reason = ?9, \
         failure_stage = ?10, failure_message = ?11, fault = ?12, started_at = COALESCE(started_at, ?3), \
         end_token = ?4, artifacts_json = ?13 WHERE id = ?1 AND status NOT IN ('completed', 'failed')",
        &[
            s(id),
            s(outcome.status().as_str()),
            n(now_ms as f64),
            s(&token),
            n(f64::from(u8::from(outcome.output_truncated))),
            n(f64::from(u8::from(outcome.error_output_truncated))),
            outcome.exit_code.map(|c| n(c as f64)).unwrap_or(JsValue::NULL),
            n(outcome.compute_duration_s),
            opt(failure.map(|f| f.reason.as_str())),
            opt(failure.map(|f| f.stage.as_str())),
            opt(failure.map(|f| f.message.as_str())),
            opt(failure.map(|f| f.fault().as_str())),
            s(&serde_json::to_string(&outcome.artifacts).unwrap_or_else(|_| "{}".into())),
        ],
    )?;
    let message = match failure {
        None => format!("completed (exit code {})", outcome.exit_code.unwrap_or(0)),
        Some(f) => format!("failed: {} ({})", f.reason.as_str(), f.message),
    };
    let batch = vec![
        update,
        events::output_stmt(db, id, &token, "stdout", &outcome.output)?,
        events::output_stmt(db, id, &token, "stderr", &outcome.error_output)?,
        events::terminal_event_stmt(db, id, &token, outcome.status(), &message, outcome.exit_code, now_ms)?,
    ];
    Ok(events::first_changed(db.batch(batch).await?)? == 1)
}

/// Ends a job that never reached an executor (the dispatch queue gave up on it, or its files are gone).
pub async fn fail_undispatched(
    db: &D1Database,
    id: &str,
    reason: ouro_core::job::FailureReason,
    message: &str,
    now_ms: u64,
) -> Result<bool> {
    let token = uuid::Uuid::new_v4().to_string();
    let update = stmt(
        db,
        "UPDATE jobs SET status = 'failed', completed_at = ?2, failure_reason = ?4, \
         failure_stage = 'dispatch', failure_message = ?3, fault = ?5, end_token = ?6 \
         WHERE id = ?1 AND status NOT IN ('completed', 'failed')",
        &[s(id), n(now_ms as f64), s(message), s(reason.as_str()), s(reason.fault().as_str()), s(&token)],
    )?;
    let event = format!("failed: {} ({message})", reason.as_str());
    let terminal = events::terminal_event_stmt(db, id, &token, JobStatus::Failed, &event, None, now_ms)?;
    Ok(events::first_changed(db.batch(vec![update, terminal]).await?)? == 1)
}

/// Records a progress event (e.g. an image build step) on a job that has not ended yet.
pub async fn add_progress_event(db: &D1Database, id: &str, message: &str, now_ms: u64) -> Result<bool> {
    let changed = changed_rows(stmt(
        db,
        "INSERT INTO job_events (job_id, type, message, created_at) \
         SELECT ?1, 'progress', ?2, ?3 WHERE EXISTS \
         (SELECT 1 FROM jobs WHERE id = ?1 AND status NOT IN ('completed', 'failed'))",
        &[s(id), s(message), n(now_ms as f64)],
    )?)
    .await?;
    Ok(changed == 1)
}

// ---------------------------------------------------------------------------------------------------------------
// The ledger, builder-code attribution and the service wallet (migration 0003)
// ---------------------------------------------------------------------------------------------------------------

/// The ledger's raw aggregates, in one read so that every figure comes from the same moment.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct LedgerTotals {
    /// Sum of settled payments, atomic USDC.
    pub revenue_atomic: u64,
    /// Settled payments, i.e. paid jobs.
    pub paid_jobs: u64,
    pub completed_jobs: u64,
    pub failed_jobs: u64,
    pub active_jobs: u64,
    /// Σ cpus × compute_duration_s over ended jobs.
    pub cpu_seconds: f64,
    pub avg_duration_s: Option<f64>,
    /// Σ settlement gas in wei (as a float: it only ever becomes dollars).
    pub gas_wei: f64,
    pub gas_txs: u64,
    pub gas_estimated_txs: u64,
    pub jobs_last_hour: u64,
}

pub async fn ledger_totals(db: &D1Database, since_ms: u64) -> Result<LedgerTotals> {
    let row: Option<LedgerTotals> = stmt(
        db,
        "SELECT \
         (SELECT COALESCE(SUM(amount_atomic), 0) FROM payments WHERE state = 'settled') AS revenue_atomic, \
         (SELECT COUNT(*) FROM payments WHERE state = 'settled') AS paid_jobs, \
         (SELECT COUNT(*) FROM jobs WHERE status = 'completed') AS completed_jobs, \
         (SELECT COUNT(*) FROM jobs WHERE status = 'failed') AS failed_jobs, \
         (SELECT COUNT(*) FROM jobs WHERE status IN ('pending', 'processing', 'running')) AS active_jobs, \
         (SELECT COALESCE(SUM(cpus * compute_duration_s), 0.0) FROM jobs \
            WHERE status IN ('completed', 'failed') AND compute_duration_s IS NOT NULL) AS cpu_seconds, \
         (SELECT AVG(compute_duration_s) FROM jobs \
            WHERE status IN ('completed', 'failed') AND compute_duration_s IS NOT NULL) AS avg_duration_s, \
         (SELECT COALESCE(SUM(CAST(gas_cost_wei AS REAL)), 0.0) FROM settlement_gas) AS gas_wei, \
         (SELECT COUNT(*) FROM settlement_gas) AS gas_txs, \
         (SELECT COUNT(*) FROM settlement_gas WHERE source = 'estimate') AS gas_estimated_txs, \
         (SELECT COUNT(*) FROM jobs WHERE submitted_at >= ?1) AS jobs_last_hour",
        &[n(since_ms as f64)],
    )?
    .first(None)
    .await?;
    Ok(row.unwrap_or_default())
}

#[derive(Debug, Clone, Deserialize)]
pub struct RecentJobRow {
    pub status: String,
    pub image: String,
    pub cpus: u32,
    pub time_limit_min: u32,
    pub price_atomic: u64,
    pub file_count: u32,
    pub submitted_at: u64,
    pub completed_at: Option<u64>,
    pub compute_duration_s: Option<f64>,
}

/// The newest jobs, without their ids (an id is the capability to read a job and is never listed).
pub async fn recent_jobs(db: &D1Database, limit: u32) -> Result<Vec<RecentJobRow>> {
    stmt(
        db,
        "SELECT status, image, cpus, time_limit_min, price_atomic, file_count, submitted_at, completed_at, \
         compute_duration_s FROM jobs ORDER BY submitted_at DESC LIMIT ?1",
        &[n(f64::from(limit))],
    )?
    .all()
    .await?
    .results()
}

/// A settlement's gas, from its receipt or the configured estimate.
pub struct NewGas<'a> {
    pub tx_hash: &'a str,
    pub job_id: &'a str,
    pub gas_used: Option<u64>,
    pub effective_gas_price_wei: Option<u128>,
    pub gas_cost_wei: u128,
    /// `receipt` or `estimate`.
    pub source: &'a str,
    pub now_ms: u64,
}

pub async fn record_gas(db: &D1Database, g: &NewGas<'_>) -> Result<()> {
    stmt(
        db,
        "INSERT INTO settlement_gas (tx_hash, job_id, gas_used, effective_gas_price_wei, gas_cost_wei, source, \
         recorded_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (tx_hash) DO NOTHING",
        &[
            s(g.tx_hash),
            s(g.job_id),
            g.gas_used.map(|v| n(v as f64)).unwrap_or(JsValue::NULL),
            opt(g.effective_gas_price_wei.map(|v| v.to_string()).as_deref()),
            s(&g.gas_cost_wei.to_string()),
            s(g.source),
            n(g.now_ms as f64),
        ],
    )?
    .run()
    .await?;
    Ok(())
}

#[derive(Debug, Clone, Deserialize)]
pub struct EstimatedGasRow {
    pub tx_hash: String,
}

/// Settlements recorded since `since_ms` whose gas is still the estimate, oldest first.
pub async fn estimated_gas(db: &D1Database, since_ms: u64, limit: u32) -> Result<Vec<EstimatedGasRow>> {
    stmt(
        db,
        "SELECT tx_hash FROM settlement_gas WHERE source = 'estimate' AND recorded_at >= ?1 \
         ORDER BY recorded_at LIMIT ?2",
        &[n(since_ms as f64), n(f64::from(limit))],
    )?
    .all()
    .await?
    .results()
}

#[derive(Debug, Clone, Deserialize)]
pub struct UnrecordedGasRow {
    pub tx_hash: String,
    pub job_id: String,
}

/// Settled payments whose settlement has no gas row (settled before the ledger existed, or its write failed).
pub async fn settlements_without_gas(db: &D1Database, limit: u32) -> Result<Vec<UnrecordedGasRow>> {
    stmt(
        db,
        "SELECT p.tx_hash AS tx_hash, p.job_id AS job_id FROM payments p \
         LEFT JOIN settlement_gas g ON g.tx_hash = p.tx_hash \
         WHERE p.state = 'settled' AND p.tx_hash IS NOT NULL AND p.job_id IS NOT NULL AND g.tx_hash IS NULL \
         ORDER BY p.settled_at LIMIT ?1",
        &[n(f64::from(limit))],
    )?
    .all()
    .await?
    .results()
}

/// Replaces an estimate with the receipt's figures.
pub async fn gas_from_receipt(db: &D1Database, tx_hash: &str, gas_used: u64, price_wei: u128, cost_wei: u128) -> Result<()> {
    stmt(
        db,
        "UPDATE settlement_gas SET gas_used = ?2, effective_gas_price_wei = ?3, gas_cost_wei = ?4, source = 'receipt' \
         WHERE tx_hash = ?1 AND source = 'estimate'",
        &[s(tx_hash), n(gas_used as f64), s(&price_wei.to_string()), s(&cost_wei.to_string())],
    )?
    .run()
    .await?;
    Ok(())
}

fn builder_code_stmts(db: &D1Database, job_id: &str, codes: &[String], now_ms: u64) -> Result<Vec<D1PreparedStatement>> {
    codes
        .iter()
        .enumerate()
        .map(|(i, code)| {
            stmt(
                db,
                // Only with its job: a batch whose job insert was skipped (the payment was already settled) writes
                // no codes.
                "INSERT INTO job_builder_codes (job_id, code, position, created_at) SELECT ?1, ?2, ?3, ?4 \
                 WHERE EXISTS (SELECT 1 FROM jobs WHERE id = ?1) ON CONFLICT (job_id, code) DO NOTHING",
                &[s(job_id), s(code), n(i as f64), n(now_ms as f64)],
            )
        })
        .collect()
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct AttributionTotals {
    pub total_attributed_txs: u64,
    pub multi_code_txs: u64,
    pub total_gas_attributed: u64,
    pub distinct_codes: u64,
}

pub async fn attribution_totals(db: &D1Database) -> Result<AttributionTotals> {
    let row: Option<AttributionTotals> = stmt(
        db,
        "SELECT COUNT(*) AS total_attributed_txs, \
         COALESCE(SUM(CASE WHEN t.n > 1 THEN 1 ELSE 0 END), 0) AS multi_code_txs, \
         COALESCE(SUM(g.gas_used), 0) AS total_gas_attributed, \
         (SELECT COUNT(DISTINCT code) FROM job_builder_codes) AS distinct_codes \
         FROM (SELECT job_id, COUNT(*) AS n FROM job_builder_codes GROUP BY job_id) t \
         LEFT JOIN settlement_gas g ON g.job_id = t.job_id",
        &[],
    )?
    .first(None)
    .await?;
    Ok(row.unwrap_or_default())
}

/// One code of one attributed job; rows of a job are adjacent and in header order.
#[derive(Debug, Clone, Deserialize)]
pub struct AttributedCodeRow {
    pub job_id: String,
    pub code: String,
    pub created_at: u64,
    pub tx_hash: Option<String>,
    pub amount_atomic: u64,
    pub gas_used: Option<u64>,
}

/// The codes of the `limit` most recently attributed jobs, newest job first.
pub async fn recent_attributions(db: &D1Database, limit: u32) -> Result<Vec<AttributedCodeRow>> {
    stmt(
        db,
        "SELECT c.job_id AS job_id, c.code AS code, c.created_at AS created_at, p.tx_hash AS tx_hash, \
         p.amount_atomic AS amount_atomic, g.gas_used AS gas_used \
         FROM job_builder_codes c \
         JOIN (SELECT job_id, MAX(created_at) AS at FROM job_builder_codes GROUP BY job_id \
               ORDER BY at DESC, job_id LIMIT ?1) r ON r.job_id = c.job_id \
         JOIN payments p ON p.job_id = c.job_id AND p.state = 'settled' \
         LEFT JOIN settlement_gas g ON g.tx_hash = p.tx_hash \
         ORDER BY r.at DESC, c.job_id, c.position",
        &[n(f64::from(limit))],
    )?
    .all()
    .await?
    .results()
}

#[derive(Debug, Clone, Deserialize)]
pub struct CodeStatsRow {
    pub code: String,
    pub jobs: u64,
    pub revenue_atomic: u64,
    pub first_seen: u64,
    pub last_seen: u64,
}

/// Jobs and revenue per builder code (a job with two codes counts for both), most recently used first;
/// only `code` when one is given.
pub async fn code_stats(db: &D1Database, code: Option<&str>, limit: u32) -> Result<Vec<CodeStatsRow>> {
    stmt(
        db,
        "SELECT c.code AS code, COUNT(*) AS jobs, COALESCE(SUM(p.amount_atomic), 0) AS revenue_atomic, \
         MIN(c.created_at) AS first_seen, MAX(c.created_at) AS last_seen \
         FROM job_builder_codes c JOIN payments p ON p.job_id = c.job_id AND p.state = 'settled' \
         WHERE ?1 IS NULL OR c.code = ?1 \
         GROUP BY c.code ORDER BY last_seen DESC, c.code LIMIT ?2",
        &[opt(code), n(f64::from(limit))],
    )?
    .all()
    .await?
    .results()
}

#[derive(Debug, Clone, Deserialize)]
pub struct WalletSnapshotRow {
    pub eth_balance_wei: String,
    pub usdc_balance_atomic: String,
    pub eth_price_usd: f64,
    pub recorded_at: u64,
}

/// Records a snapshot and keeps the newest `keep` of them.
pub async fn record_wallet_snapshot(
    db: &D1Database,
    address: &str,
    eth_wei: u128,
    usdc_atomic: u128,
    eth_price_usd: f64,
    now_ms: u64,
    keep: u32,
) -> Result<()> {
    db.batch(vec![
        stmt(
            db,
            "INSERT INTO wallet_snapshots (address, eth_balance_wei, usdc_balance_atomic, eth_price_usd, recorded_at) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            &[s(address), s(&eth_wei.to_string()), s(&usdc_atomic.to_string()), n(eth_price_usd), n(now_ms as f64)],
        )?,
        stmt(
            db,
            "DELETE FROM wallet_snapshots WHERE id NOT IN (SELECT id FROM wallet_snapshots ORDER BY id DESC LIMIT ?1)",
            &[n(f64::from(keep))],
        )?,
    ])
    .await?;
    Ok(())
}

/// The newest snapshots of `address`, newest first.
pub async fn wallet_snapshots(db: &D1Database, address: &str, limit: u32) -> Result<Vec<WalletSnapshotRow>> {
    stmt(
        db,
        "SELECT eth_balance_wei, usdc_balance_atomic, eth_price_usd, recorded_at FROM wallet_snapshots \
         WHERE address = ?1 ORDER BY id DESC LIMIT ?2",
        &[s(address), n(f64::from(limit))],
    )?
    .all()
    .await?
    .results()
}

/// `SELECT 1`: the database answers.
pub async fn ping(db: &D1Database) -> Result<()> {
    #[derive(Deserialize)]
    struct One {
        #[allow(dead_code)]
        ok: u64,
    }
    let _: Option<One> = stmt(db, "SELECT 1 AS ok", &[])?.first(None).await?;
    Ok(())
}
