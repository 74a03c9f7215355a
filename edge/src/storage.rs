//! Per-wallet storage and job output files in R2 (`FILES`). Bytes are streamed in and out (never a whole file,
//! let alone a whole storage, in the Worker's memory); D1 (`db::storage`) holds the records pointing at them.
//!
//! A stored file's object key is unique per write (`storage/{wallet}/{uuid}`), so a job's write-back stages every
//! new version first and then swaps the records in one D1 batch ([`commit`]): the storage is either as before
//! the job or as the job left it. Objects no record points at any more go to a trash that the cron empties after
//! [`TRASH_GRACE_MS`], so a job still streaming an old version is not cut off.

use std::cell::RefCell;
use std::rc::Rc;

use futures_util::StreamExt;
use ouro_core::storage::{
    check_file_path, check_quota, conflicts, expiry_cutoff_ms, usage_after, Commit, CommitReply, StoredFile,
};
use sha2::{Digest, Sha256};
use worker::{Bucket, ByteStream, D1Database, FixedLengthStream, Result};

use crate::config::StorageConfig;
use crate::db::storage as records;

pub use crate::workspaces::BINDING;

/// How long a replaced or deleted object stays in R2 before the cron deletes it.
pub const TRASH_GRACE_MS: u64 = 10 * 60 * 1000;
/// A staged upload not committed for this long belongs to a job that died: the cron deletes it.
pub const STALE_UPLOAD_MS: u64 = 24 * 60 * 60 * 1000;
/// Most files (and objects) one housekeeping run removes: the cron runs every 10 minutes.
const HOUSEKEEPING_BATCH: u32 = 200;

pub fn new_object_key(wallet: &str) -> String {
    format!("storage/{wallet}/{}", uuid::Uuid::new_v4())
}

pub fn output_key(job_id: &str, path: &str) -> String {
    format!("outputs/{job_id}/{path}")
}

/// Streams `body` into R2 at `key`, refusing it (and removing the object) unless it is exactly `size` bytes with
/// the SHA-256 `sha256`. `Ok(Err(why))` is a refused body.
pub async fn put_verified(
    bucket: &Bucket,
    key: &str,
    body: Option<ByteStream>,
    size: u64,
    sha256: &str,
) -> Result<std::result::Result<(), String>> {
    let hasher = Rc::new(RefCell::new(Sha256::new()));
    let stored = match body {
        Some(stream) if size > 0 => {
            let h = Rc::clone(&hasher);
            let hashed = stream.map(move |chunk| {
                if let Ok(bytes) = &chunk {
                    h.borrow_mut().update(bytes);
                }
                chunk
            });
            bucket.put(key, FixedLengthStream::wrap(hashed, size)).execute().await
        }
        _ if size == 0 => bucket.put(key, Vec::<u8>::new()).execute().await,
        _ => return Ok(Err(format!("a body of {size} bytes was announced but none was sent"))),
    };
    if let Err(e) = stored {
        let _ = bucket.delete(key).await;
        return Ok(Err(format!("the body was not {size} bytes as announced: {e}")));
    }
    let digest = hex::encode(hasher.borrow_mut().finalize_reset());
    if digest != sha256 {
        bucket.delete(key).await?;
        return Ok(Err(format!("the body's sha256 is {digest}, not {sha256} as announced")));
    }
    Ok(Ok(()))
}

/// Applies a job's write-back for `wallet`: every staged put and every delete in one D1 batch, or nothing (the
/// quota would be exceeded, now or because a concurrent commit of the same wallet took the room first). Last
/// writer wins per file; paths changed underneath the job are answered as `conflicts`.
pub async fn commit(
    db: &D1Database,
    config: &StorageConfig,
    wallet: &str,
    job_id: &str,
    c: &Commit,
    now_ms: u64,
) -> Result<std::result::Result<CommitReply, String>> {
    let staged = records::uploads_of(db, wallet, job_id).await?;
    for p in &c.puts {
        if !staged.contains(&p.upload_key) {
            return Ok(Err(format!("upload {} is not a staged upload of this job", p.upload_key)));
        }
    }
    if let Some(bad) = c.puts.iter().map(|p| &p.path).chain(&c.deletes).find(|p| check_file_path(p).is_err()) {
        return Ok(Err(format!("path {bad:?} is not a valid storage path")));
    }
    let account = records::account(db, wallet).await?;
    let quota = records::quota_of(account.as_ref(), config.quota);
    let current = stored(&records::files(db, wallet).await?);
    let puts: Vec<StoredFile> =
        c.puts.iter().map(|p| StoredFile { path: p.path.clone(), size: p.size, sha256: p.sha256.clone() }).collect();
    let (bytes, files) = usage_after(&current, &puts, &c.deletes);
    if let Err(exceeded) = check_quota(bytes, files, quota) {
        records::discard_uploads(db, &staged, now_ms).await?;
        return Ok(Ok(CommitReply::QuotaExceeded(exceeded)));
    }
    let found = conflicts(&c.base, &current, &puts, &c.deletes);
    let batch = records::commit_stmts(db, wallet, job_id, &c.puts, &c.deletes, quota, now_ms)?;
    if let Err(e) = db.batch(batch).await {
        // The quota guard's CHECK rolled the batch back when a concurrent commit used the room in the meantime.
        let current = stored(&records::files(db, wallet).await?);
        let (bytes, files) = usage_after(&current, &puts, &c.deletes);
        return match check_quota(bytes, files, quota) {
            Err(exceeded) => {
                records::discard_uploads(db, &staged, now_ms).await?;
                Ok(Ok(CommitReply::QuotaExceeded(exceeded)))
            }
            Ok(()) => Err(e),
        };
    }
    Ok(Ok(CommitReply::Committed { conflicts: found, used_bytes: bytes, file_count: files }))
}

pub fn stored(rows: &[records::FileRow]) -> Vec<StoredFile> {
    rows.iter().map(|r| StoredFile { path: r.path.clone(), size: r.size, sha256: r.sha256.clone() }).collect()
}

/// What one housekeeping run removed.
#[derive(Debug, Default, serde::Serialize)]
pub struct Housekeeping {
    pub expired_files: usize,
    pub deleted_objects: usize,
}

/// Expires files not accessed for `ttl_days` before `now_ms` (of `wallet` only, when given), then deletes from R2
/// the objects trashed more than [`TRASH_GRACE_MS`] ago and uploads staged more than [`STALE_UPLOAD_MS`] ago.
/// The cron runs it with the real clock; the test hook with an advanced one.
pub async fn housekeeping(
    db: &D1Database,
    bucket: &Bucket,
    ttl_days: u64,
    now_ms: u64,
    wallet: Option<&str>,
) -> Result<Housekeeping> {
    let cutoff = expiry_cutoff_ms(now_ms, ttl_days);
    let expired = records::expired(db, cutoff, wallet, HOUSEKEEPING_BATCH).await?;
    records::remove_expired(db, &expired, cutoff).await?;
    let garbage = records::garbage(
        db,
        now_ms.saturating_sub(TRASH_GRACE_MS),
        now_ms.saturating_sub(STALE_UPLOAD_MS),
        HOUSEKEEPING_BATCH,
    )
    .await?;
    for key in &garbage {
        bucket.delete(key).await?;
    }
    records::forget_objects(db, &garbage).await?;
    Ok(Housekeeping { expired_files: expired.len(), deleted_objects: garbage.len() })
}
