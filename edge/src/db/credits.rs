//! The credits ledger's statements (migration 0008). A wallet's balance is the sum of its *live* rows: every
//! earned credit, and every spend that bought a job or whose payment reservation still exists. A spend is
//! inserted only if the balance covers it, in one statement, so two requests can never spend the same credit.

use serde::Deserialize;
use worker::{D1Database, D1PreparedStatement, Result};

use super::{changed_rows, n, s, stmt};

/// The live-row condition over `credits c`: earned, or spent on a job, or held for an existing reservation.
const LIVE: &str = "(c.kind = 'earn' OR c.job_id IS NOT NULL OR EXISTS \
    (SELECT 1 FROM payments p WHERE p.payer = c.wallet AND p.nonce = c.nonce))";

fn balance_sql(wallet_param: &str) -> String {
    format!(
        "SELECT COALESCE(SUM(CASE c.kind WHEN 'earn' THEN c.amount_atomic ELSE -c.amount_atomic END), 0) \
         FROM credits c WHERE c.wallet = {wallet_param} AND {LIVE}"
    )
}

/// Key of the one credit a job can earn.
pub fn earn_key(job_id: &str) -> String {
    format!("earn:{job_id}")
}

/// Key of the credit held for (and spent by) the authorization `(payer, nonce)`.
pub fn spend_key(payer: &str, nonce: &str) -> String {
    format!("spend:{payer}:{nonce}")
}

pub async fn balance(db: &D1Database, wallet: &str) -> Result<u64> {
    #[derive(Deserialize)]
    struct Balance {
        balance: i64,
    }
    let sql = format!("SELECT ({}) AS balance", balance_sql("?1"));
    let row: Option<Balance> = stmt(db, &sql, &[s(wallet)])?.first(None).await?;
    Ok(row.map(|r| u64::try_from(r.balance).unwrap_or(0)).unwrap_or(0))
}

/// What the credit rule needs of an ended job, in one read.
#[derive(Debug, Clone, Deserialize)]
pub struct EndedJobRow {
    pub status: String,
    pub payer: String,
    pub price_atomic: u64,
    pub time_part_atomic: Option<u64>,
    pub cpus: u32,
    pub time_limit_min: u32,
    pub file_count: u32,
    pub compute_duration_s: Option<f64>,
    pub failure_reason: Option<String>,
    pub fault: Option<String>,
    /// Cash settled for the job.
    pub paid_atomic: u64,
    /// Credit spent on it.
    pub spent_atomic: u64,
}

pub async fn ended_job(db: &D1Database, job_id: &str) -> Result<Option<EndedJobRow>> {
    stmt(
        db,
        "SELECT j.status, j.payer, j.price_atomic, j.time_part_atomic, j.cpus, j.time_limit_min, j.file_count, \
         j.compute_duration_s, j.failure_reason, j.fault, \
         COALESCE((SELECT SUM(p.amount_atomic) FROM payments p WHERE p.job_id = j.id AND p.state = 'settled'), 0) \
           AS paid_atomic, \
         COALESCE((SELECT SUM(c.amount_atomic) FROM credits c WHERE c.kind = 'spend' AND (c.job_id = j.id OR \
           c.key IN (SELECT 'spend:' || p.payer || ':' || p.nonce FROM payments p WHERE p.job_id = j.id))), 0) \
           AS spent_atomic \
         FROM jobs j WHERE j.id = ?1",
        &[s(job_id)],
    )?
    .first(None)
    .await
}

/// Records the credit a job earned; `Ok(false)` when it already has one (the key is unique).
pub async fn record_earned(db: &D1Database, job_id: &str, wallet: &str, amount: u64, rule: &str, now_ms: u64) -> Result<bool> {
    let changed = changed_rows(stmt(
        db,
        "INSERT INTO credits (key, wallet, kind, amount_atomic, job_id, rule, created_at) \
         VALUES (?1, ?2, 'earn', ?3, ?4, ?5, ?6) ON CONFLICT (key) DO NOTHING",
        &[s(&earn_key(job_id)), s(wallet), n(amount as f64), s(job_id), s(rule), n(now_ms as f64)],
    )?)
    .await?;
    Ok(changed == 1)
}

/// A spend about to be inserted.
pub struct NewSpend<'a> {
    pub wallet: &'a str,
    pub nonce: &'a str,
    pub amount: u64,
    pub rule: &'a str,
    pub now_ms: u64,
}

/// Holds `amount` of the wallet's credit for the authorization `(wallet, nonce)`, only if its live balance
/// covers it. `Ok(false)`: not enough credit (another job spent it). Called right after this request made the
/// payment's reservation, so a row already under this key can only be an earlier attempt of the same
/// authorization that bought nothing (its reservation was released; a payment that bought a job is answered as a
/// replay before this point): it is replaced, in the same transaction.
pub async fn hold(db: &D1Database, spend: &NewSpend<'_>) -> Result<bool> {
    let key = spend_key(spend.wallet, spend.nonce);
    let clear_earlier = stmt(db, "DELETE FROM credits WHERE key = ?1 AND kind = 'spend'", &[s(&key)])?;
    let insert = stmt(
        db,
        &format!(
            "INSERT INTO credits (key, wallet, kind, amount_atomic, nonce, rule, created_at) \
             SELECT ?1, ?2, 'spend', ?3, ?4, ?5, ?6 WHERE ({}) >= ?3 ON CONFLICT (key) DO NOTHING",
            balance_sql("?2")
        ),
        &[
            s(&key),
            s(spend.wallet),
            n(spend.amount as f64),
            s(spend.nonce),
            s(spend.rule),
            n(spend.now_ms as f64),
        ],
    )?;
    let results = db.batch(vec![clear_earlier, insert]).await?;
    let inserted = results.get(1).and_then(|r| r.meta().ok().flatten()).and_then(|m| m.changes).unwrap_or(0);
    Ok(inserted == 1)
}

#[derive(Debug, Clone, Deserialize)]
pub struct SpendRow {
    pub amount_atomic: u64,
}

/// The spend held under `(wallet, nonce)`, if any.
pub async fn find_spend(db: &D1Database, wallet: &str, nonce: &str) -> Result<Option<SpendRow>> {
    stmt(
        db,
        "SELECT amount_atomic FROM credits WHERE key = ?1 AND kind = 'spend'",
        &[s(&spend_key(wallet, nonce))],
    )?
    .first(None)
    .await
}

/// After a job is recorded: its spend points at it, and the job carries its credit, its full price (cash +
/// credit) and the time part of that price.
pub fn job_recorded_stmts(
    db: &D1Database,
    job_id: &str,
    wallet: &str,
    nonce: &str,
    credit: u64,
    price: u64,
    time_part: u64,
) -> Result<Vec<D1PreparedStatement>> {
    Ok(vec![
        stmt(
            db,
            "UPDATE credits SET job_id = ?2 WHERE key = ?1 AND kind = 'spend' AND job_id IS NULL",
            &[s(&spend_key(wallet, nonce)), s(job_id)],
        )?,
        stmt(
            db,
            "UPDATE jobs SET credit_applied_atomic = ?2, price_atomic = ?3, time_part_atomic = ?4 WHERE id = ?1",
            &[s(job_id), n(credit as f64), n(price as f64), n(time_part as f64)],
        )?,
    ])
}

/// One row of the operators' credits ledger.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct LedgerRow {
    pub id: u64,
    pub wallet: String,
    pub kind: String,
    pub amount_atomic: u64,
    pub job_id: Option<String>,
    pub rule: String,
    pub created_at: u64,
    /// 0 for a spend whose payment bought nothing (it no longer counts).
    pub live: u8,
}

/// The newest `limit` ledger rows created before `before_ms` (paging, like the payments of the ledger view),
/// newest first. `live` is 0 for a hold whose payment bought nothing (it no longer counts).
pub async fn ledger(db: &D1Database, before_ms: u64, limit: u32) -> Result<Vec<LedgerRow>> {
    stmt(
        db,
        &format!(
            "SELECT c.id, c.wallet, c.kind, c.amount_atomic, c.job_id, c.rule, c.created_at, \
             CASE WHEN {LIVE} THEN 1 ELSE 0 END AS live FROM credits c \
             WHERE c.created_at < ?1 ORDER BY c.created_at DESC, c.id DESC LIMIT ?2"
        ),
        &[n(before_ms as f64), n(f64::from(limit))],
    )?
    .all()
    .await?
    .results()
}

/// The ledger's totals over live rows: credit earned, credit spent, and the wallets concerned; earned − spent
/// is what the service owes in credit.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
pub struct CreditTotals {
    pub earned_atomic: u64,
    pub spent_atomic: u64,
    pub wallets: u64,
}

pub async fn totals(db: &D1Database) -> Result<CreditTotals> {
    let row: Option<CreditTotals> = stmt(
        db,
        &format!(
            "SELECT COALESCE(SUM(CASE WHEN c.kind = 'earn' THEN c.amount_atomic ELSE 0 END), 0) AS earned_atomic, \
             COALESCE(SUM(CASE WHEN c.kind = 'spend' THEN c.amount_atomic ELSE 0 END), 0) AS spent_atomic, \
             COUNT(DISTINCT c.wallet) AS wallets FROM credits c WHERE {LIVE}"
        ),
        &[],
    )?
    .first(None)
    .await?;
    Ok(row.unwrap_or_default())
}

/// The newest `limit` live rows of one wallet, newest first.
pub async fn wallet_history(db: &D1Database, wallet: &str, limit: u32) -> Result<Vec<LedgerRow>> {
    stmt(
        db,
        &format!(
            "SELECT c.id, c.wallet, c.kind, c.amount_atomic, c.job_id, c.rule, c.created_at, 1 AS live FROM credits c \
             WHERE c.wallet = ?1 AND {LIVE} ORDER BY c.id DESC LIMIT ?2"
        ),
        &[s(wallet), n(f64::from(limit))],
    )?
    .all()
    .await?
    .results()
}
