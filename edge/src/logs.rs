//! Jobs' full raw logs in R2 (`FILES`, under `logs/{job_id}/{stdout|stderr}`): the bytes exactly as the job wrote
//! them (invalid UTF-8 included), up to the executor's log cap, which is larger than the capped text kept in D1.
//! The executor delivers them before the job's result; `GET /api/jobs/{id}/logs?stream=` serves them.

use std::collections::HashMap;

use ouro_core::dispatch::{LogHeader, OutputStream};
use worker::{Bucket, Result};

pub use crate::workspaces::BINDING;

fn key(job_id: &str, stream: OutputStream) -> String {
    format!("logs/{job_id}/{}", stream.as_str())
}

pub fn parse_stream(raw: &str) -> Option<OutputStream> {
    match raw {
        "stdout" => Some(OutputStream::Stdout),
        "stderr" => Some(OutputStream::Stderr),
        _ => None,
    }
}

/// Stores (or replaces: a repeated delivery is the same log) one stream's log.
pub async fn put(
    bucket: &Bucket,
    job_id: &str,
    stream: OutputStream,
    header: &LogHeader,
    bytes: Vec<u8>,
) -> Result<()> {
    let meta = HashMap::from([
        ("truncated".to_string(), header.truncated.to_string()),
        ("bytes_seen".to_string(), header.bytes_seen.to_string()),
    ]);
    bucket.put(key(job_id, stream), bytes).custom_metadata(meta).execute().await?;
    Ok(())
}

/// One stream's log: its bytes and header; `None` when there is none (the job has not ended, or the executor
/// keeps no logs).
pub async fn get(bucket: &Bucket, job_id: &str, stream: OutputStream) -> Result<Option<(Vec<u8>, LogHeader)>> {
    let Some(object) = bucket.get(key(job_id, stream)).execute().await? else {
        return Ok(None);
    };
    let meta = object.custom_metadata()?;
    let header = LogHeader {
        truncated: meta.get("truncated").is_some_and(|v| v == "true"),
        bytes_seen: meta.get("bytes_seen").and_then(|v| v.parse().ok()).unwrap_or(object.size()),
    };
    let Some(body) = object.body() else {
        return Ok(Some((Vec::new(), header)));
    };
    Ok(Some((body.bytes().await?, header)))
}
