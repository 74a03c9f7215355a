//! The statements of the payment pipeline (`payment.rs`): the `(payer, nonce)` reservation and its lease, the
//! settlement bookkeeping that lets an unknown outcome be reconciled against the chain, the admission counts
//! (active jobs of a wallet, jobs waiting for an executor) and the operators' ledger (migration 0005).

use serde::Deserialize;
use worker::wasm_bindgen::JsValue;
use worker::{D1Database, Result};

use super::{changed_rows, n, opt, s, stmt};

/// A reservation about to be made: everything needed to finish the job later without the client.
pub struct Reservation<'a> {
    pub payer: &'a str,
    pub nonce: &'a str,
    pub amount_atomic: u64,
    pub network: &'a str,
    pub asset: &'a str,
    pub pay_to: &'a str,
    pub valid_before: u64,
    pub spec_digest: &'a str,
    /// The job spec as JSON, without file contents (those are in R2 under `workspace_key`).
    pub spec_json: &'a str,
    pub workspace_key: Option<&'a str>,
    pub builder_codes_json: &'a str,
    pub x402_version: u8,
    pub payment_identifier: Option<&'a str>,
    pub payload_fingerprint: &'a str,
    pub now_ms: u64,
    /// The reserving request holds the row until `now_ms + lease_ms`.
    pub lease_ms: u64,
}

/// A payment row as the pipeline reads it.
#[derive(Debug, Clone, Deserialize)]
pub struct PaymentState {
    pub payer: String,
    pub nonce: String,
    /// `reserved` or `settled`.
    pub state: String,
    pub amount_atomic: u64,
    pub spec_digest: String,
    pub job_id: Option<String>,
    pub tx_hash: Option<String>,
    pub valid_before: u64,
    pub settle_attempted_at: Option<u64>,
    pub lease_until: u64,
    pub payload_fingerprint: Option<String>,
    pub spec_json: Option<String>,
    pub workspace_key: Option<String>,
    pub builder_codes_json: String,
}

const COLUMNS: &str = "SELECT payer, nonce, state, amount_atomic, spec_digest, job_id, tx_hash, valid_before, \
     settle_attempted_at, lease_until, payload_fingerprint, spec_json, workspace_key, builder_codes_json FROM payments";

pub async fn find(db: &D1Database, payer: &str, nonce: &str) -> Result<Option<PaymentState>> {
    stmt(db, &format!("{COLUMNS} WHERE payer = ?1 AND nonce = ?2"), &[s(payer), s(nonce)])?.first(None).await
}

pub async fn find_by_identifier(db: &D1Database, id: &str) -> Result<Option<PaymentState>> {
    stmt(db, &format!("{COLUMNS} WHERE payment_identifier = ?1"), &[s(id)])?.first(None).await
}

/// Inserts the `(payer, nonce)` reservation, held by the caller. `Ok(false)` when a row for this authorization
/// (or for this payment identifier) already exists: the keys are the lock, so two requests can never both go
/// on to settle one authorization.
pub async fn reserve(db: &D1Database, r: &Reservation<'_>) -> Result<bool> {
    let changed = changed_rows(stmt(
        db,
        "INSERT OR IGNORE INTO payments (payer, nonce, state, amount_atomic, network, asset, pay_to, valid_before, \
         spec_digest, created_at, lease_until, x402_version, payment_identifier, payload_fingerprint, spec_json, \
         workspace_key, builder_codes_json) \
         VALUES (?1, ?2, 'reserved', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
        &[
            s(r.payer),
            s(r.nonce),
            n(r.amount_atomic as f64),
            s(r.network),
            s(r.asset),
            s(r.pay_to),
            n(r.valid_before as f64),
            s(r.spec_digest),
            n(r.now_ms as f64),
            n((r.now_ms + r.lease_ms) as f64),
            n(f64::from(r.x402_version)),
            opt(r.payment_identifier),
            s(r.payload_fingerprint),
            s(r.spec_json),
            opt(r.workspace_key),
            s(r.builder_codes_json),
        ],
    )?)
    .await?;
    Ok(changed == 1)
}

/// Takes over an unsettled reservation whose holder let go (or died): `Ok(true)` when this caller now holds it.
pub async fn claim(db: &D1Database, payer: &str, nonce: &str, now_ms: u64, lease_ms: u64) -> Result<bool> {
    let changed = changed_rows(stmt(
        db,
        "UPDATE payments SET lease_until = ?4 WHERE payer = ?1 AND nonce = ?2 AND state = 'reserved' AND lease_until < ?3",
        &[s(payer), s(nonce), n(now_ms as f64), n((now_ms + lease_ms) as f64)],
    )?)
    .await?;
    Ok(changed == 1)
}

/// Marks that `/settle` is about to be sent: from now on the transfer may happen, whatever we hear back.
pub async fn settle_attempted(db: &D1Database, payer: &str, nonce: &str, now_ms: u64) -> Result<()> {
    stmt(
        db,
        "UPDATE payments SET settle_attempted_at = COALESCE(settle_attempted_at, ?3) WHERE payer = ?1 AND nonce = ?2",
        &[s(payer), s(nonce), n(now_ms as f64)],
    )?
    .run()
    .await?;
    Ok(())
}

/// Leaves a reservation whose settlement outcome is unknown for the next retry or the scheduled check: notes
/// why (and the transaction, when one is known) and lets go of the lease.
pub async fn leave_unsettled(
    db: &D1Database,
    payer: &str,
    nonce: &str,
    note: &str,
    tx_hash: Option<&str>,
) -> Result<()> {
    stmt(
        db,
        "UPDATE payments SET settle_note = ?3, tx_hash = COALESCE(?4, tx_hash), lease_until = 0 \
         WHERE payer = ?1 AND nonce = ?2 AND state = 'reserved'",
        &[s(payer), s(nonce), s(note), opt(tx_hash)],
    )?
    .run()
    .await?;
    Ok(())
}

/// Drops a reservation that bought nothing, so that the same authorization can be tried again. Only one that
/// never reached `/settle` — unless `chain_says_unused`: the chain was asked and the authorization is unused
/// and can no longer be used.
pub async fn release(db: &D1Database, payer: &str, nonce: &str, chain_says_unused: bool) -> Result<()> {
    let guard = if chain_says_unused { "" } else { " AND settle_attempted_at IS NULL" };
    stmt(
        db,
        &format!("DELETE FROM payments WHERE payer = ?1 AND nonce = ?2 AND state = 'reserved'{guard}"),
        &[s(payer), s(nonce)],
    )?
    .run()
    .await?;
    Ok(())
}

/// Reservations nobody holds whose outcome is open: a settle was attempted, or the request died before it
/// (created more than `stale_ms` ago). Oldest first.
pub async fn unsettled(db: &D1Database, now_ms: u64, stale_ms: u64, limit: u32) -> Result<Vec<PaymentState>> {
    stmt(
        db,
        &format!(
            "{COLUMNS} WHERE state = 'reserved' AND lease_until < ?1 \
             AND (settle_attempted_at IS NOT NULL OR created_at < ?2) ORDER BY created_at LIMIT ?3"
        ),
        &[n(now_ms as f64), n(now_ms.saturating_sub(stale_ms) as f64), n(f64::from(limit))],
    )?
    .all()
    .await?
    .results()
}

#[derive(Deserialize)]
struct Count {
    count: u32,
}

async fn count(db: &D1Database, sql: &str, args: &[JsValue]) -> Result<u32> {
    let row: Option<Count> = stmt(db, sql, args)?.first(None).await?;
    Ok(row.map(|c| c.count).unwrap_or(0))
}

/// Jobs of `payer` that have not ended.
pub async fn active_jobs(db: &D1Database, payer: &str) -> Result<u32> {
    count(
        db,
        "SELECT COUNT(*) AS count FROM jobs WHERE payer = ?1 AND status IN ('pending', 'processing', 'running')",
        &[s(payer)],
    )
    .await
}

/// Jobs waiting for an executor.
pub async fn pending_jobs(db: &D1Database) -> Result<u32> {
    count(db, "SELECT COUNT(*) AS count FROM jobs WHERE status = 'pending'", &[]).await
}

/// The ledger's sums, by payment state.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
pub struct LedgerSums {
    pub settled_count: u64,
    pub settled_atomic: u64,
    /// Settled payments whose job could not be recorded (should be 0: each settled payment has its job).
    pub settled_without_job: u64,
    pub reserved_count: u64,
    /// Reservations whose settlement was attempted and whose outcome is not known yet.
    pub unconfirmed_count: u64,
    pub unconfirmed_atomic: u64,
}

pub async fn ledger_sums(db: &D1Database) -> Result<LedgerSums> {
    let row: Option<LedgerSums> = stmt(
        db,
        "SELECT \
         COALESCE(SUM(state = 'settled'), 0) AS settled_count, \
         COALESCE(SUM(CASE WHEN state = 'settled' THEN amount_atomic ELSE 0 END), 0) AS settled_atomic, \
         COALESCE(SUM(state = 'settled' AND job_id IS NULL), 0) AS settled_without_job, \
         COALESCE(SUM(state = 'reserved'), 0) AS reserved_count, \
         COALESCE(SUM(state = 'reserved' AND settle_attempted_at IS NOT NULL), 0) AS unconfirmed_count, \
         COALESCE(SUM(CASE WHEN state = 'reserved' AND settle_attempted_at IS NOT NULL THEN amount_atomic ELSE 0 END), 0) \
           AS unconfirmed_atomic \
         FROM ledger_payments",
        &[],
    )?
    .first(None)
    .await?;
    Ok(row.unwrap_or_default())
}

/// One line of the ledger.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct LedgerEntry {
    pub wallet: String,
    pub nonce: String,
    pub state: String,
    pub amount_atomic: u64,
    pub network: String,
    pub pay_to: String,
    pub tx_hash: Option<String>,
    pub job_id: Option<String>,
    pub x402_version: u8,
    pub created_at: u64,
    pub settle_attempted_at: Option<u64>,
    pub settled_at: Option<u64>,
    pub settle_note: Option<String>,
}

/// The newest ledger lines, created before `before_ms`.
pub async fn ledger_entries(db: &D1Database, before_ms: u64, limit: u32) -> Result<Vec<LedgerEntry>> {
    stmt(
        db,
        "SELECT wallet, nonce, state, amount_atomic, network, pay_to, tx_hash, job_id, x402_version, created_at, \
         settle_attempted_at, settled_at, settle_note FROM ledger_payments WHERE created_at < ?1 \
         ORDER BY created_at DESC LIMIT ?2",
        &[n(before_ms as f64), n(f64::from(limit))],
    )?
    .all()
    .await?
    .results()
}
