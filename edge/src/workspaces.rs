//! Workspaces in R2. A multi-file job's files (up to 10 MB) are too big for a D1 row and for a Queue message, so
//! they are stored once under a key derived from the job spec's digest, and the dispatcher reads them back when
//! it hands the job to an executor. Content addressing makes the write idempotent: a retried or replayed
//! submission writes the same object again.

use ouro_core::workspace::WorkspaceFile;
use worker::{Bucket, Result};

pub const BINDING: &str = "FILES";

pub fn key_for(spec_digest: &str) -> String {
    format!("workspaces/{spec_digest}.json")
}

pub async fn put(bucket: &Bucket, key: &str, files: &[WorkspaceFile]) -> Result<()> {
    let body = serde_json::to_vec(files)?;
    bucket.put(key, body).execute().await?;
    Ok(())
}

/// The files stored under `key`; `None` if the object is missing.
pub async fn get(bucket: &Bucket, key: &str) -> Result<Option<Vec<WorkspaceFile>>> {
    let Some(object) = bucket.get(key).execute().await? else {
        return Ok(None);
    };
    let Some(body) = object.body() else {
        return Ok(None);
    };
    Ok(Some(serde_json::from_slice(&body.bytes().await?)?))
}
