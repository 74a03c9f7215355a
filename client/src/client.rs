//! The HTTP side: one method per endpoint the `ouro` command needs, plus the full pay-and-submit round trip.

use std::time::Duration;

use alloy_primitives::Address;
use k256::ecdsa::SigningKey;
use ouro_core::eip712::address_of;
use ouro_core::pricing::parse_usd;
use ouro_core::x402::{header, PaymentPayload};
use reqwest::{RequestBuilder, Response};
use serde_json::Value;

use crate::answer::{SubmitAnswer, PAYMENT_SIGNATURE};
use crate::error::{ClientError, Result};
use crate::poll::Backoff;
use crate::sign::{exact_requirements, sign_payment};

/// A paid submit waits for the on-chain settlement, which can take a few blocks.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What `GET /api/price` answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Quote {
    /// `"$0.0841"`.
    pub price: String,
    /// Atomic USDC units (6 decimals).
    pub amount: u64,
    pub breakdown: Value,
}

/// A submission that was paid for and accepted.
#[derive(Debug, Clone)]
pub struct PaidJob {
    pub job_id: String,
    pub price: String,
    /// The settlement transaction hash.
    pub transaction: String,
    pub answer: SubmitAnswer,
}

/// What [`Client::pay_and_submit_with`] reports as it goes, before the call returns.
#[derive(Debug, Clone, Copy)]
pub enum Progress<'a> {
    /// The 402 arrived; about to sign `amount` atomic units from `payer`.
    Priced { price: &'a str, amount: &'a str, network: &'a str, payer: Address },
}

#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    pub fn new(base_url: impl Into<String>) -> Result<Self> {
        let base = base_url.into().trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::BadUrl(base));
        }
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            // Talk to the service itself, never to whatever proxy the environment names.
            .no_proxy()
            .build()
            .map_err(ClientError::HttpSetup)?;
        Ok(Client { base, http })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET /api/price`: what a script job with these parameters costs now.
    pub async fn quote(&self, cpus: u32, time_limit_min: u32) -> Result<Quote> {
        let what = format!("GET /api/price?cpus={cpus}&time_limit_min={time_limit_min}");
        let request = self.http.get(self.url("/api/price")).query(&[("cpus", cpus), ("time_limit_min", time_limit_min)]);
        let (status, body) = json_of(&what, request).await?;
        if status == 422 {
            return Err(ClientError::Invalid {
                field: body.get("field").and_then(Value::as_str).unwrap_or("query").to_string(),
                message: error_message(&body),
            });
        }
        if status != 200 {
            return Err(ClientError::Status { what, status, message: error_message(&body) });
        }
        let price = body.get("price").and_then(Value::as_str).map(str::to_string);
        let bad = |detail: &str| ClientError::BadBody { what: what.clone(), detail: detail.to_string() };
        let price = price.ok_or_else(|| bad("no `price` string"))?;
        // `amount` is the edge's exact number; the price string is the fallback for servers that omit it.
        let amount = match body.get("amount") {
            Some(Value::String(s)) => s.parse().map_err(|_| bad("`amount` is not a whole number"))?,
            Some(Value::Number(n)) => n.as_u64().ok_or_else(|| bad("`amount` is not a whole number"))?,
            _ => parse_usd(&price).map_err(|_| bad("`price` is not a dollar amount"))?,
        };
        let breakdown = body.get("breakdown").cloned().unwrap_or(Value::Null);
        Ok(Quote { price, amount, breakdown })
    }

    /// `POST /api/compute/submit` without payment (a correct server answers 402 with the price).
    pub async fn submit_unpaid(&self, body: &Value) -> Result<SubmitAnswer> {
        self.submit(self.http.post(self.url("/api/compute/submit")).json(body)).await
    }

    /// `POST /api/compute/submit` paying with `payment`.
    pub async fn submit_paid(&self, body: &Value, payment: &PaymentPayload) -> Result<SubmitAnswer> {
        self.submit_with_header(body, &header::encode(payment)).await
    }

    /// `POST /api/compute/submit` with `payment-signature: header_value` exactly as given (tampered headers).
    pub async fn submit_with_header(&self, body: &Value, header_value: &str) -> Result<SubmitAnswer> {
        let request = self.http.post(self.url("/api/compute/submit")).header(PAYMENT_SIGNATURE, header_value).json(body);
        self.submit(request).await
    }

    async fn submit(&self, request: RequestBuilder) -> Result<SubmitAnswer> {
        let what = "POST /api/compute/submit";
        let response = send(what, request).await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(|source| ClientError::Transport { what: what.into(), source })?;
        SubmitAnswer::new(status, headers, &body)
    }

    /// The whole x402 round trip: unpaid → 402 → sign locally → paid → 200.
    pub async fn pay_and_submit(&self, key: &SigningKey, body: &Value) -> Result<PaidJob> {
        self.pay_and_submit_with(key, body, |_| {}).await
    }

    /// [`Client::pay_and_submit`], reporting progress to `on` (the CLI prints it).
    pub async fn pay_and_submit_with(
        &self,
        key: &SigningKey,
        body: &Value,
        mut on: impl FnMut(Progress<'_>),
    ) -> Result<PaidJob> {
        let unpaid = self.submit_unpaid(body).await?;
        let price = unpaid.price();
        let required = unpaid.into_payment_required()?;
        let accepted = exact_requirements(&required)?;
        let price = price.unwrap_or_else(|| accepted.amount.clone());
        on(Progress::Priced {
            price: &price,
            amount: &accepted.amount,
            network: &accepted.network,
            payer: address_of(key),
        });
        let payment = sign_payment(key, &required, |_| {})?;
        let answer = self.submit_paid(body, &payment).await?;
        if answer.status != 200 {
            return Err(answer.payment_refusal());
        }
        let job_id = answer.text("job_id").map(str::to_string).ok_or_else(|| ClientError::BadBody {
            what: "POST /api/compute/submit (HTTP 200)".into(),
            detail: "no `job_id` in the accepted submission".into(),
        })?;
        let transaction = answer
            .payment_response
            .as_ref()
            .map(|s| s.transaction.clone())
            .filter(|t| !t.is_empty())
            .or_else(|| answer.text("transaction").map(str::to_string))
            .unwrap_or_default();
        let price = answer.text("price").map(str::to_string).unwrap_or(price);
        Ok(PaidJob { job_id, price, transaction, answer })
    }

    /// `GET /api/jobs/{id}`.
    pub async fn job(&self, id: &str) -> Result<Value> {
        let what = format!("GET /api/jobs/{id}");
        let (status, body) = json_of(&what, self.http.get(self.url(&format!("/api/jobs/{id}")))).await?;
        match status {
            200 if body.is_object() => Ok(body),
            200 => Err(ClientError::BadBody { what, detail: "the job is not a JSON object".into() }),
            404 => Err(ClientError::NotFound(id.to_string())),
            _ => Err(ClientError::Status { what, status, message: error_message(&body) }),
        }
    }

    /// Polls the job until it is `completed` or `failed`, or `timeout` has passed.
    pub async fn wait(&self, id: &str, timeout: Duration) -> Result<Value> {
        self.wait_with(id, timeout, |_| {}).await
    }

    /// [`Client::wait`], handing every polled job to `on` (the CLI prints status changes).
    pub async fn wait_with(&self, id: &str, timeout: Duration, mut on: impl FnMut(&Value)) -> Result<Value> {
        let started = tokio::time::Instant::now();
        let mut backoff = Backoff::new();
        loop {
            let job = self.job(id).await?;
            on(&job);
            let status = job.get("status").and_then(Value::as_str).unwrap_or("").to_string();
            if crate::report::is_terminal(&status) {
                return Ok(job);
            }
            let elapsed = started.elapsed();
            if elapsed >= timeout {
                return Err(ClientError::Timeout { id: id.to_string(), waited_s: elapsed.as_secs(), status });
            }
            tokio::time::sleep(backoff.next_delay().min(timeout - elapsed)).await;
        }
    }
}

async fn send(what: &str, request: RequestBuilder) -> Result<Response> {
    request.send().await.map_err(|source| ClientError::Transport { what: what.to_string(), source })
}

/// Status and JSON body of a request whose every answer (errors included) is JSON.
async fn json_of(what: &str, request: RequestBuilder) -> Result<(u16, Value)> {
    let response = send(what, request).await?;
    let status = response.status().as_u16();
    let bytes = response.bytes().await.map_err(|source| ClientError::Transport { what: what.to_string(), source })?;
    let body = serde_json::from_slice(&bytes).map_err(|e| ClientError::BadBody {
        what: format!("{what} (HTTP {status})"),
        detail: format!("{e}: {}", String::from_utf8_lossy(&bytes[..bytes.len().min(200)])),
    })?;
    Ok((status, body))
}

fn error_message(body: &Value) -> String {
    ["message", "error"]
        .iter()
        .find_map(|k| body.get(*k).and_then(Value::as_str))
        .map(str::to_string)
        .unwrap_or_else(|| body.to_string())
}
