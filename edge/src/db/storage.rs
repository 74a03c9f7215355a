//! D1 statements of per-wallet storage (migration 0007). Wallets are lowercase `0x` hex.

use ouro_core::storage::{Quota, StagedPut};
use serde::Deserialize;
use worker::{D1Database, D1PreparedStatement, Result};

use super::{n, s, stmt};

#[derive(Debug, Clone, Deserialize)]
pub struct FileRow {
    pub path: String,
    pub size: u64,
    pub sha256: String,
    pub object_key: String,
    pub modified_at: u64,
    pub accessed_at: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AccountRow {
    pub created_at: u64,
    pub last_accessed_at: u64,
    pub quota_bytes: Option<u64>,
    pub max_files: Option<u64>,
}

/// Marks a just-recorded job as mounting its payer's storage (part of `record_paid_job`'s batch).
pub fn mount_storage_stmt(db: &D1Database, job_id: &str) -> Result<D1PreparedStatement> {
    stmt(db, "UPDATE jobs SET mount_storage = 1 WHERE id = ?1", &[s(job_id)])
}

const FILE_COLUMNS: &str = "SELECT path, size, sha256, object_key, modified_at, accessed_at FROM storage_files";

pub async fn files(db: &D1Database, wallet: &str) -> Result<Vec<FileRow>> {
    stmt(db, &format!("{FILE_COLUMNS} WHERE wallet = ?1 ORDER BY path"), &[s(wallet)])?.all().await?.results()
}

pub async fn file(db: &D1Database, wallet: &str, path: &str) -> Result<Option<FileRow>> {
    stmt(db, &format!("{FILE_COLUMNS} WHERE wallet = ?1 AND path = ?2"), &[s(wallet), s(path)])?.first(None).await
}

pub async fn account(db: &D1Database, wallet: &str) -> Result<Option<AccountRow>> {
    stmt(
        db,
        "SELECT created_at, last_accessed_at, quota_bytes, max_files FROM storage_accounts WHERE wallet = ?1",
        &[s(wallet)],
    )?
    .first(None)
    .await
}

/// The wallet's quota: its own when an operator set one, else `default`.
pub fn quota_of(account: Option<&AccountRow>, default: Quota) -> Quota {
    Quota {
        quota_bytes: account.and_then(|a| a.quota_bytes).unwrap_or(default.quota_bytes),
        max_files: account.and_then(|a| a.max_files).unwrap_or(default.max_files),
    }
}

/// The wallet's account was accessed (with the files of the same batch).
fn touch_account_stmt(db: &D1Database, wallet: &str, now_ms: u64) -> Result<D1PreparedStatement> {
    stmt(db, "UPDATE storage_accounts SET last_accessed_at = ?2 WHERE wallet = ?1", &[s(wallet), n(now_ms as f64)])
}

/// A job mounted the storage: every file of the wallet was accessed.
pub async fn touch_all(db: &D1Database, wallet: &str, now_ms: u64) -> Result<()> {
    db.batch(vec![
        stmt(db, "UPDATE storage_files SET accessed_at = ?2 WHERE wallet = ?1", &[s(wallet), n(now_ms as f64)])?,
        touch_account_stmt(db, wallet, now_ms)?,
    ])
    .await?;
    Ok(())
}

pub async fn touch_file(db: &D1Database, wallet: &str, path: &str, now_ms: u64) -> Result<()> {
    db.batch(vec![
        stmt(
            db,
            "UPDATE storage_files SET accessed_at = ?3 WHERE wallet = ?1 AND path = ?2",
            &[s(wallet), s(path), n(now_ms as f64)],
        )?,
        touch_account_stmt(db, wallet, now_ms)?,
    ])
    .await?;
    Ok(())
}

pub async fn record_upload(db: &D1Database, key: &str, wallet: &str, job_id: &str, now_ms: u64) -> Result<()> {
    stmt(
        db,
        "INSERT INTO storage_uploads (object_key, wallet, job_id, created_at) VALUES (?1, ?2, ?3, ?4)",
        &[s(key), s(wallet), s(job_id), n(now_ms as f64)],
    )?
    .run()
    .await?;
    Ok(())
}

#[derive(Debug, Clone, Deserialize)]
struct KeyRow {
    object_key: String,
}

/// The staged uploads of `job_id` for `wallet`.
pub async fn uploads_of(db: &D1Database, wallet: &str, job_id: &str) -> Result<Vec<String>> {
    let rows: Vec<KeyRow> =
        stmt(db, "SELECT object_key FROM storage_uploads WHERE wallet = ?1 AND job_id = ?2", &[s(wallet), s(job_id)])?
            .all()
            .await?
            .results()?;
    Ok(rows.into_iter().map(|r| r.object_key).collect())
}

/// Moves staged uploads to the trash (a refused commit).
pub async fn discard_uploads(db: &D1Database, keys: &[String], now_ms: u64) -> Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
    let mut batch = Vec::new();
    for key in keys {
        batch.push(trash_key_stmt(db, key, now_ms)?);
        batch.push(stmt(db, "DELETE FROM storage_uploads WHERE object_key = ?1", &[s(key)])?);
    }
    db.batch(batch).await?;
    Ok(())
}

fn trash_key_stmt(db: &D1Database, key: &str, now_ms: u64) -> Result<D1PreparedStatement> {
    stmt(
        db,
        "INSERT INTO storage_trash (object_key, trashed_at) VALUES (?1, ?2) ON CONFLICT (object_key) DO NOTHING",
        &[s(key), n(now_ms as f64)],
    )
}

/// Trashes the object the record of `path` points at (before the record is replaced or deleted).
fn trash_current_stmt(db: &D1Database, wallet: &str, path: &str, now_ms: u64) -> Result<D1PreparedStatement> {
    stmt(
        db,
        "INSERT INTO storage_trash (object_key, trashed_at) SELECT object_key, ?3 FROM storage_files \
         WHERE wallet = ?1 AND path = ?2 ON CONFLICT (object_key) DO NOTHING",
        &[s(wallet), s(path), n(now_ms as f64)],
    )
}

/// The statements of one commit, ending with the quota guard (its CHECK aborts the whole batch when the wallet
/// would be over `quota` after it).
pub fn commit_stmts(
    db: &D1Database,
    wallet: &str,
    job_id: &str,
    puts: &[StagedPut],
    deletes: &[String],
    quota: Quota,
    now_ms: u64,
) -> Result<Vec<D1PreparedStatement>> {
    let now = n(now_ms as f64);
    let mut batch = vec![stmt(
        db,
        "INSERT INTO storage_accounts (wallet, created_at, last_accessed_at) VALUES (?1, ?2, ?2) \
         ON CONFLICT (wallet) DO UPDATE SET last_accessed_at = ?2",
        &[s(wallet), now.clone()],
    )?];
    for d in deletes {
        batch.push(trash_current_stmt(db, wallet, d, now_ms)?);
        batch.push(stmt(db, "DELETE FROM storage_files WHERE wallet = ?1 AND path = ?2", &[s(wallet), s(d)])?);
    }
    for p in puts {
        batch.push(trash_current_stmt(db, wallet, &p.path, now_ms)?);
        batch.push(stmt(
            db,
            "INSERT INTO storage_files (wallet, path, size, sha256, object_key, modified_at, accessed_at, job_id) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7) ON CONFLICT (wallet, path) DO UPDATE SET size = ?3, \
             sha256 = ?4, object_key = ?5, modified_at = ?6, accessed_at = ?6, job_id = ?7",
            &[s(wallet), s(&p.path), n(p.size as f64), s(&p.sha256), s(&p.upload_key), now.clone(), s(job_id)],
        )?);
        batch.push(stmt(db, "DELETE FROM storage_uploads WHERE object_key = ?1", &[s(&p.upload_key)])?);
    }
    batch.push(stmt(
        db,
        "INSERT INTO storage_usage_check (wallet, used_bytes, file_count, quota_bytes, max_files) \
         SELECT ?1, COALESCE(SUM(size), 0), COUNT(*), ?2, ?3 FROM storage_files WHERE wallet = ?1",
        &[s(wallet), n(quota.quota_bytes as f64), n(quota.max_files as f64)],
    )?);
    batch.push(stmt(db, "DELETE FROM storage_usage_check WHERE wallet = ?1", &[s(wallet)])?);
    Ok(batch)
}

/// Deletes one file's record (its object goes to the trash); `Ok(false)` when there was none.
pub async fn delete_file(db: &D1Database, wallet: &str, path: &str, now_ms: u64) -> Result<bool> {
    let results = db
        .batch(vec![
            trash_current_stmt(db, wallet, path, now_ms)?,
            stmt(db, "DELETE FROM storage_files WHERE wallet = ?1 AND path = ?2", &[s(wallet), s(path)])?,
            stmt(
                db,
                "UPDATE storage_accounts SET last_accessed_at = ?2 WHERE wallet = ?1",
                &[s(wallet), n(now_ms as f64)],
            )?,
        ])
        .await?;
    let deleted = results.get(1).and_then(|r| r.meta().ok().flatten()).and_then(|m| m.changes).unwrap_or(0);
    Ok(deleted == 1)
}

/// An operator's quota for one wallet (creates its account record).
pub async fn set_quota(db: &D1Database, wallet: &str, quota: Quota, now_ms: u64) -> Result<()> {
    stmt(
        db,
        "INSERT INTO storage_accounts (wallet, created_at, last_accessed_at, quota_bytes, max_files) \
         VALUES (?1, ?2, ?2, ?3, ?4) ON CONFLICT (wallet) DO UPDATE SET quota_bytes = ?3, max_files = ?4",
        &[s(wallet), n(now_ms as f64), n(quota.quota_bytes as f64), n(quota.max_files as f64)],
    )?
    .run()
    .await?;
    Ok(())
}

#[derive(Debug, Clone, Deserialize)]
pub struct ExpiredRow {
    pub wallet: String,
    pub path: String,
}

/// Files last accessed before `cutoff_ms` (of one wallet, when given), at most `limit`.
pub async fn expired(db: &D1Database, cutoff_ms: u64, wallet: Option<&str>, limit: u32) -> Result<Vec<ExpiredRow>> {
    stmt(
        db,
        "SELECT wallet, path FROM storage_files WHERE accessed_at < ?1 AND (?2 IS NULL OR wallet = ?2) \
         ORDER BY accessed_at LIMIT ?3",
        &[n(cutoff_ms as f64), super::opt(wallet), n(f64::from(limit))],
    )?
    .all()
    .await?
    .results()
}

/// Removes the records of `files` (their objects go to the trash), then the accounts left without files that
/// were not accessed since `cutoff_ms` (an account with an operator's quota stays).
pub async fn remove_expired(db: &D1Database, files: &[ExpiredRow], cutoff_ms: u64) -> Result<()> {
    let mut batch = Vec::new();
    for f in files {
        // Trashed as of the epoch: nobody reads an expired file, so the same run deletes its object.
        batch.push(trash_current_stmt(db, &f.wallet, &f.path, 0)?);
        batch.push(stmt(db, "DELETE FROM storage_files WHERE wallet = ?1 AND path = ?2", &[s(&f.wallet), s(&f.path)])?);
    }
    batch.push(stmt(
        db,
        "DELETE FROM storage_accounts WHERE last_accessed_at < ?1 AND quota_bytes IS NULL AND max_files IS NULL \
         AND NOT EXISTS (SELECT 1 FROM storage_files f WHERE f.wallet = storage_accounts.wallet)",
        &[n(cutoff_ms as f64)],
    )?);
    db.batch(batch).await?;
    Ok(())
}

/// Objects to delete from R2: trashed before `before_ms`, and staged uploads never committed since `stale_ms`.
pub async fn garbage(db: &D1Database, before_ms: u64, stale_ms: u64, limit: u32) -> Result<Vec<String>> {
    let rows: Vec<KeyRow> = stmt(
        db,
        "SELECT object_key FROM storage_trash WHERE trashed_at < ?1 \
         UNION SELECT object_key FROM storage_uploads WHERE created_at < ?2 LIMIT ?3",
        &[n(before_ms as f64), n(stale_ms as f64), n(f64::from(limit))],
    )?
    .all()
    .await?
    .results()?;
    Ok(rows.into_iter().map(|r| r.object_key).collect())
}

/// Forgets objects already deleted from R2.
pub async fn forget_objects(db: &D1Database, keys: &[String]) -> Result<()> {
    let mut batch = Vec::new();
    for key in keys {
        batch.push(stmt(db, "DELETE FROM storage_trash WHERE object_key = ?1", &[s(key)])?);
        batch.push(stmt(db, "DELETE FROM storage_uploads WHERE object_key = ?1", &[s(key)])?);
    }
    if !batch.is_empty() {
        db.batch(batch).await?;
    }
    Ok(())
}
