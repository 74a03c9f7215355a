//! Rate limits: fixed one-minute windows counted in D1 (`rate_limits`, migration 0004), one counter per key
//! (`submit:wallet:0x…`, `submit:ip:…`, `submit:all`, `storage:wallet:0x…`, …).
//!
//! A request is counted against every key it falls under in one batch, and refused when any of them is over its
//! limit; the answer carries the seconds until the window turns, for `Retry-After`. The counters are exact even
//! under concurrency (each `INSERT … ON CONFLICT DO UPDATE … RETURNING` is atomic in D1), and a refused request
//! still counts, so hammering does not help.

use serde::Deserialize;
use worker::wasm_bindgen::JsValue;
use worker::{D1Database, Result};

pub const WINDOW_MS: u64 = 60_000;

/// One counter to charge: its key and the most requests it admits per window.
#[derive(Debug, Clone)]
pub struct Limit {
    pub key: String,
    pub per_window: u32,
}

impl Limit {
    pub fn new(key: impl Into<String>, per_window: u32) -> Self {
        Limit { key: key.into(), per_window }
    }
}

/// Refused: the key that is over and how long until its window turns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exceeded {
    pub key: String,
    pub limit: u32,
    pub retry_after_s: u32,
}

#[derive(Deserialize)]
struct Count {
    count: u32,
}

/// Counts one request against every limit; `Ok(Err(..))` names the first one that is over.
pub async fn charge(db: &D1Database, limits: &[Limit], now_ms: u64) -> Result<std::result::Result<(), Exceeded>> {
    if limits.is_empty() {
        return Ok(Ok(()));
    }
    let window_start = now_ms - now_ms % WINDOW_MS;
    let statements = limits
        .iter()
        .map(|l| {
            db.prepare(
                "INSERT INTO rate_limits (key, window_start, count) VALUES (?1, ?2, 1) \
                 ON CONFLICT (key, window_start) DO UPDATE SET count = count + 1 RETURNING count",
            )
            .bind(&[JsValue::from_str(&l.key), JsValue::from_f64(window_start as f64)])
        })
        .collect::<Result<Vec<_>>>()?;
    let results = db.batch(statements).await?;
    let retry_after_s = ((window_start + WINDOW_MS - now_ms).div_ceil(1000)).max(1) as u32;
    for (limit, result) in limits.iter().zip(results) {
        let count = result.results::<Count>()?.first().map(|c| c.count).unwrap_or(0);
        if count > limit.per_window {
            return Ok(Err(Exceeded { key: limit.key.clone(), limit: limit.per_window, retry_after_s }));
        }
    }
    Ok(Ok(()))
}

/// Deletes the counters of windows that ended before `now_ms` (the scheduled handler's housekeeping).
pub async fn forget_old_windows(db: &D1Database, now_ms: u64) -> Result<()> {
    let current = now_ms - now_ms % WINDOW_MS;
    db.prepare("DELETE FROM rate_limits WHERE window_start < ?1")
        .bind(&[JsValue::from_f64(current as f64)])?
        .run()
        .await?;
    Ok(())
}

/// The 429 answer for `exceeded`: JSON naming the limit, with `Retry-After`.
pub fn too_many(exceeded: &Exceeded, what: &str) -> Result<worker::Response> {
    let resp = crate::http::error(
        429,
        "rate_limited",
        format!(
            "{what}: more than {} requests per minute for {}; retry in {} s",
            exceeded.limit, exceeded.key, exceeded.retry_after_s
        ),
    )?;
    crate::http::with_retry_after(resp, exceeded.retry_after_s)
}
