//! Taking an x402 payment for a job, in the only safe order:
//! local checks → `(payer, nonce)` reserved in D1 → workspace stored in R2 → facilitator verify → settle →
//! job recorded → queued.
//!
//! Nothing runs unpaid (the job row is written only after a successful settle, in the same batch that marks the
//! payment settled); no payment buys twice (the reservation's primary key admits one request per authorization,
//! and a replay is answered with the job it already bought); a refusal or an unreachable facilitator before
//! settlement releases the reservation, so nothing is recorded as paid and the payer may try again.

use ouro_core::pricing::{PriceRequest, Quote};
use ouro_core::submit::JobSpec;
use ouro_core::x402::{
    check_payment, checks::PaymentRejection, quote as bound_quote, ChainProfile, PaymentPayload, PaymentRequirements,
    SettlementResponse,
};
use worker::{Bucket, D1Database, Result};

use crate::config::Config;
use crate::db::{self, NewJob, NewPayment, PaymentRow};
use crate::facilitator::{Facilitator, FacilitatorError};
use crate::workspaces;

/// Where a paid submission ended up.
pub enum Paid {
    /// A new job, bought by this payment just now.
    New { job_id: String, amount: u64, settlement: SettlementResponse },
    /// This payment had already bought a job: the same answer again.
    Replayed { job_id: String, amount: u64, settlement: SettlementResponse },
}

pub enum Refused {
    /// The header is not a payment at all → 400.
    Malformed(String),
    /// A local check failed → 402 with fresh requirements.
    Rejected(PaymentRejection),
    /// The facilitator said no at verify → 402.
    VerifyRefused { reason: String, message: Option<String> },
    /// Settlement failed → 402 with `PAYMENT-RESPONSE` (`success: false`).
    SettleRefused(SettlementResponse),
    /// The same authorization with another body, or one still being processed → 409.
    Conflict(String),
    /// The facilitator cannot be reached → 503 with `Retry-After`; nothing was taken.
    FacilitatorDown(FacilitatorError),
    /// The workspace could not be stored before payment → 503 with `Retry-After`; nothing was taken.
    StorageDown(String),
}

/// The requirements this request gets: the quote the client was given, if it is ours, live and for these terms;
/// otherwise today's price with a fresh quote.
pub fn requirements_for(
    config: &Config,
    priced: &PriceRequest,
    current: &Quote,
    accepted: Option<&PaymentRequirements>,
    now_s: u64,
) -> PaymentRequirements {
    let fingerprint = priced.fingerprint();
    if let Some(accepted) = accepted {
        if let (Some(token), Ok(amount)) = (accepted.extra.quote.as_deref(), accepted.amount.parse::<u64>()) {
            if bound_quote::honours(&config.quote_secret, token, &fingerprint, amount, now_s) {
                return config.chain.requirements(amount, Some(token.to_string()));
            }
        }
    }
    let expires = now_s + config.chain.max_timeout_seconds;
    let token = bound_quote::issue(&config.quote_secret, &fingerprint, current.amount, expires);
    config.chain.requirements(current.amount, Some(token))
}

fn settlement_of(row: &PaymentRow, profile: &ChainProfile) -> SettlementResponse {
    SettlementResponse {
        success: true,
        error_reason: None,
        error_message: None,
        payer: Some(row.payer.clone()),
        transaction: row.tx_hash.clone().unwrap_or_default(),
        network: profile.network.clone(),
        amount: Some(row.amount_atomic.to_string()),
    }
}

/// What an existing row for this authorization means for this request.
fn replay(row: PaymentRow, spec_digest: &str, profile: &ChainProfile) -> std::result::Result<Paid, Refused> {
    if row.spec_digest != spec_digest {
        return Err(Refused::Conflict(
            "this payment already paid for a different job request; sign a new payment for a new request".into(),
        ));
    }
    match (row.state.as_str(), row.job_id.clone()) {
        ("settled", Some(job_id)) => {
            Ok(Paid::Replayed { job_id, amount: row.amount_atomic, settlement: settlement_of(&row, profile) })
        }
        _ => Err(Refused::Conflict("this payment is being processed by another request; retry in a few seconds".into())),
    }
}

pub struct Submission<'a> {
    pub config: &'a Config,
    pub db: &'a D1Database,
    pub bucket: &'a Bucket,
    pub spec: &'a JobSpec,
    pub current: &'a Quote,
    /// Validated `X-BUILDER-CODE` codes, recorded with the job if this payment buys one.
    pub builder_codes: &'a [String],
    pub now_ms: u64,
}

impl Submission<'_> {
    pub async fn pay(&self, header: &str) -> Result<std::result::Result<Paid, Refused>> {
        let payment: PaymentPayload = match ouro_core::x402::header::decode(header) {
            Ok(p) => p,
            Err(e) => return Ok(Err(Refused::Malformed(format!("payment-signature: {e}")))),
        };
        let config = self.config;
        let now_s = self.now_ms / 1000;
        let digest = self.spec.digest();

        // A replay must be recognised even after the quote or the authorization window ran out, but only for
        // the payer's own signature: the job id is a capability and is never handed to a forger.
        let (payer, nonce) = match ouro_core::x402::checks::signer_and_nonce(&payment, &config.chain) {
            Ok(found) => found,
            Err(rejection) => return Ok(Err(Refused::Rejected(rejection))),
        };
        let payer = format!("{payer:#x}");
        let nonce = format!("{nonce:#x}");
        if let Some(row) = db::find_payment(self.db, &payer, &nonce).await? {
            return Ok(replay(row, &digest, &config.chain));
        }

        let priced = self.spec.price_request();
        let expected = requirements_for(config, &priced, self.current, Some(&payment.accepted), now_s);
        let verified = match check_payment(&payment, &expected, &config.chain, now_s) {
            Ok(v) => v,
            Err(rejection) => return Ok(Err(Refused::Rejected(rejection))),
        };

        let reservation = NewPayment {
            payer: &payer,
            nonce: &nonce,
            amount_atomic: verified.amount,
            network: &config.chain.network,
            asset: &expected.asset,
            pay_to: &expected.pay_to,
            valid_before: verified.valid_before,
            spec_digest: &digest,
            now_ms: self.now_ms,
        };
        if !db::reserve_payment(self.db, &reservation).await? {
            // A concurrent twin got the reservation first.
            return match db::find_payment(self.db, &payer, &nonce).await? {
                Some(row) => Ok(replay(row, &digest, &config.chain)),
                None => Ok(Err(Refused::Conflict("payment is being processed; retry in a few seconds".into()))),
            };
        }

        // The files go to storage before any money moves: a settled job must always find its workspace.
        let workspace_key = if self.spec.files.is_empty() {
            None
        } else {
            let key = workspaces::key_for(&digest);
            if let Err(e) = workspaces::put(self.bucket, &key, &self.spec.files).await {
                db::release_payment(self.db, &payer, &nonce).await?;
                return Ok(Err(Refused::StorageDown(e.to_string())));
            }
            Some(key)
        };

        let facilitator = Facilitator { base_url: &config.facilitator_url };
        match facilitator.verify(&payment, &expected, config.facilitator_timeout_ms).await {
            Ok(v) if v.is_valid => {}
            Ok(v) => {
                db::release_payment(self.db, &payer, &nonce).await?;
                let reason = v.invalid_reason.unwrap_or_else(|| "invalid_payment".into());
                return Ok(Err(Refused::VerifyRefused { reason, message: v.invalid_message }));
            }
            Err(e) => {
                db::release_payment(self.db, &payer, &nonce).await?;
                return Ok(Err(Refused::FacilitatorDown(e)));
            }
        }

        let settlement = match facilitator.settle(&payment, &expected, config.settle_timeout_ms).await {
            Ok(s) if s.success && !s.transaction.is_empty() => s,
            Ok(s) => {
                db::release_payment(self.db, &payer, &nonce).await?;
                return Ok(Err(Refused::SettleRefused(s)));
            }
            Err(e) => {
                // The transfer may or may not have happened. The reservation stays, so this authorization
                // cannot be spent on a second job; reconciling it against the chain is the ledger's work.
                worker::console_error!("settle outcome unknown for {payer}/{nonce}: {e}");
                return Ok(Err(Refused::FacilitatorDown(e)));
            }
        };

        let job_id = uuid::Uuid::new_v4().to_string();
        let job = NewJob {
            id: &job_id,
            payer: &payer,
            spec: self.spec,
            spec_digest: &digest,
            price_atomic: verified.amount,
            workspace_key: workspace_key.as_deref(),
            builder_codes: self.builder_codes,
            now_ms: self.now_ms,
        };
        db::record_paid_job(self.db, &job, &nonce, &settlement.transaction).await?;
        // The ledger's cost of this settlement (its receipt's gas); never fails the paid answer.
        crate::ledger::record_settlement_gas(self.db, &config.ops, &job_id, &settlement.transaction, self.now_ms).await;
        Ok(Ok(Paid::New { job_id, amount: verified.amount, settlement }))
    }
}
