//! Webhook delivery: when a job with a `webhook_url` ends, one delivery (one `X-Ouro-Delivery` id) is queued on
//! `ouro-webhooks`; the consumer POSTs the job's view, signed with the job's key (`ouro_core::webhook`), and
//! tries again with exponential backoff on network errors, timeouts, 5xx, 408 and 429, at most
//! `MAX_ATTEMPTS` times in all. Each attempt's status is recorded on the job.
//!
//! The queue message only names the job: the body is built at delivery time from D1 (a 2 MiB output does not fit
//! a queue message), from the same view as `GET /api/jobs/{id}`, so the values are the same.

use ouro_core::webhook::{self, HEADER_DELIVERY, HEADER_SIGNATURE, HEADER_TIMESTAMP, MAX_ATTEMPTS, USER_AGENT};
use worker::{D1Database, Env, MessageBatch, MessageExt, QueueRetryOptionsBuilder, Result};

use crate::config::Config;
use crate::db::{self, events};
use crate::dispatch::DispatchMessage;
use crate::outbound::post_json;
use crate::routes::{jobs, now_ms};

pub const BINDING: &str = "WEBHOOKS";
/// The queue's name in wrangler.toml (the Worker's one queue handler tells the queues apart by it).
pub const QUEUE: &str = "ouro-webhooks";
/// The wait before the second attempt; it doubles after.
const BACKOFF_BASE_S: u32 = 2;

/// The job's webhook key, shown to the submitter once (in the submit answer) and used to sign every delivery.
pub fn key_for(config: &Config, job_id: &str) -> String {
    webhook::job_key(&config.quote_secret, job_id)
}

/// Queues the webhook of a job that just ended, if it has one and it was not queued yet. Never fails its
/// caller: a job's end is recorded already, a lost webhook is logged.
pub async fn on_job_end(env: &Env, db: &D1Database, job_id: &str) {
    if let Err(e) = queue(env, db, job_id).await {
        worker::console_error!("job {job_id}: its webhook could not be queued: {e}");
    }
}

async fn queue(env: &Env, db: &D1Database, job_id: &str) -> Result<()> {
    let delivery = uuid::Uuid::new_v4().to_string();
    if events::queue_webhook(db, job_id, &delivery).await? {
        env.queue(BINDING)?.send(DispatchMessage { job_id: job_id.to_string() }).await?;
    }
    Ok(())
}

pub async fn consume(batch: MessageBatch<DispatchMessage>, env: Env) -> Result<()> {
    let config = Config::from_env(&env).map_err(|e| worker::Error::RustError(e.to_string()))?;
    let db = env.d1("DB")?;
    for message in batch.messages()? {
        let job_id = message.body().job_id.clone();
        match deliver(&config, &db, &job_id).await? {
            Next::Done => message.ack(),
            Next::RetryIn(s) => {
                message.retry_with_options(&QueueRetryOptionsBuilder::new().with_delay_seconds(s).build())
            }
        }
    }
    Ok(())
}

enum Next {
    Done,
    RetryIn(u32),
}

/// One attempt at the job's webhook.
async fn deliver(config: &Config, db: &D1Database, job_id: &str) -> Result<Next> {
    let Some(hook) = events::webhook_of(db, job_id).await? else { return Ok(Next::Done) };
    let (Some(url), Some(delivery)) = (hook.webhook_url, hook.webhook_delivery_id) else { return Ok(Next::Done) };
    if hook.webhook_state.as_deref() != Some("queued") || hook.webhook_attempts >= MAX_ATTEMPTS {
        return Ok(Next::Done);
    }
    let Some(job) = db::get_job(db, job_id).await? else { return Ok(Next::Done) };
    let body = webhook::payload(&jobs::full_detail(db, &job).await?).to_string();
    let ts = now_ms() / 1000;
    let signature = webhook::signature(key_for(config, job_id).as_bytes(), ts, &body);
    let ts_text = ts.to_string();
    let headers = [
        ("User-Agent", USER_AGENT),
        (HEADER_DELIVERY, delivery.as_str()),
        (HEADER_TIMESTAMP, ts_text.as_str()),
        (HEADER_SIGNATURE, signature.as_str()),
    ];
    let (status, error) = match post_json(&url, &body, &headers, config.events.webhook_timeout_ms).await {
        Ok((status, _)) => (Some(status), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let attempt = hook.webhook_attempts + 1;
    let delivered = status.is_some_and(|s| (200..300).contains(&s));
    let again = !delivered && webhook::retryable(status) && attempt < MAX_ATTEMPTS;
    let final_state = if delivered {
        Some("delivered")
    } else if again {
        None
    } else {
        Some("failed")
    };
    events::record_webhook_attempt(db, job_id, status, error.as_deref(), final_state).await?;
    if again {
        return Ok(Next::RetryIn(webhook::backoff_s(attempt + 1, BACKOFF_BASE_S)));
    }
    Ok(Next::Done)
}
