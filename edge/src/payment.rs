//! Taking an x402 payment for a job, in the only safe order:
//! decode → recover the payer → a known payment is answered with its job → rate limits and active jobs →
//! capacity pre-flight → local checks → `(payer, nonce)` reserved in D1 → workspace stored in R2 → facilitator
//! verify → settle → job recorded → queued (by the caller, [`enqueue`]).
//!
//! Nothing runs unpaid: the job row is written only once the money moved, in the batch that marks the payment
//! settled. No payment buys twice: the reservation's primary key admits one request per authorization, its lease
//! lets one request at a time work on it, and a replay is answered with the job it already bought. Nobody is
//! charged for nothing: every refusal (limits, capacity, local checks) comes before any money can move, and a
//! reservation that reached `/settle` is never dropped on the facilitator's word alone. When the outcome of a
//! settlement is unknown (timeout, `settlement_pending`, a refusal that may still land), the row stays reserved
//! and the chain decides — `authorizationState(payer, nonce)` — on the payer's retry of the same payment or in the
//! scheduled [`reconcile`]: spent → the job is recorded and queued; unspent and expired → the reservation is
//! released; unspent and still valid → the retry settles it again.

use ouro_core::pricing::{PriceRequest, Quote};
use ouro_core::submit::JobSpec;
use ouro_core::submit_limits::Submitter;
use ouro_core::x402::v1::IncomingPayment;
use ouro_core::x402::{
    check_payment, checks::PaymentRejection, payment_identifier, quote as bound_quote, PaymentPayload,
    PaymentRequirements, SettlementResponse,
};
use worker::{Bucket, D1Database, Env, Result};

use crate::capacity;
use crate::config::Config;
use crate::db::{self, payments, payments::PaymentState, NewJob};
use crate::facilitator::{Facilitator, FacilitatorError};
use crate::limits::{self, Exceeded, Limit};
use crate::rpc::Rpc;
use crate::workspaces;

/// How long a twin request waits for the request holding a reservation before answering 409.
const TWIN_WAIT_MS: u64 = 20_000;
const TWIN_POLL_MS: u64 = 400;
/// A reservation that never reached `/settle` and is older than this was left by a request that died.
const STALE_RESERVATION_MS: u64 = 120_000;
/// How long a `settlement_pending` answer is followed on chain before the client is told to come back.
const PENDING_FOLLOW_MS: u64 = 8_000;

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
    Unverified { reason: String, message: Option<String> },
    /// Settlement failed → 402 with `PAYMENT-RESPONSE` (`success: false`).
    NotSettled(SettlementResponse),
    /// The same authorization with another body, or a payment identifier used for another payment → 409.
    Conflict(String),
    /// The same authorization is being worked on by another request that did not finish in time → 409 with
    /// `Retry-After`.
    Busy,
    /// A submit rate limit → 429 with `Retry-After`; nothing was taken.
    RateLimited(Exceeded),
    /// The wallet has too many unfinished jobs → 429 with `Retry-After`; nothing was taken.
    TooManyActive { active: u32, limit: u32 },
    /// No executor could take the job → 503 with `Retry-After`; nothing was taken.
    NoCapacity(capacity::Full),
    /// The facilitator cannot be reached before settlement → 503 with `Retry-After`; nothing was taken.
    FacilitatorDown(FacilitatorError),
    /// The settlement's outcome is not known yet (timeout, pending on chain, chain unreadable) → 503 with
    /// `Retry-After`: the same payment sent again gets its job if the money moved, and is settled otherwise.
    Unconfirmed(String),
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

/// Counts a submission against the rate limits of `who`; `Ok(Err(..))` when one is over.
pub async fn rate_limit(db: &D1Database, config: &Config, who: Submitter<'_>, now_ms: u64) -> Result<std::result::Result<(), Exceeded>> {
    let counters: Vec<Limit> =
        config.admission.limits.counters(who).into_iter().map(|(key, per_minute)| Limit::new(key, per_minute)).collect();
    limits::charge(db, &counters, now_ms).await
}

fn settlement(config: &Config, payer: &str, amount: u64, tx_hash: Option<&str>) -> SettlementResponse {
    SettlementResponse {
        success: true,
        error_reason: None,
        error_message: None,
        payer: Some(payer.to_string()),
        transaction: tx_hash.unwrap_or_default().to_string(),
        network: config.chain.network.clone(),
        amount: Some(amount.to_string()),
    }
}

/// Queues a recorded job. A failed send leaves the job `pending` in D1, visible and picked up by the recovery
/// sweep; it is logged and written to the job's events. Answers whether the job is on the queue.
pub async fn enqueue(env: &Env, db: &D1Database, job_id: &str, now_ms: u64) -> bool {
    let sent = match env.queue("JOBS") {
        Ok(queue) => queue.send(crate::dispatch::DispatchMessage { job_id: job_id.to_string() }).await,
        Err(e) => Err(e),
    };
    match sent {
        Ok(()) => true,
        Err(e) => {
            worker::console_error!("job {job_id} is paid and recorded but could not be queued: {e}");
            let note = format!("paid, but the dispatch queue refused it ({e}); it waits for the recovery sweep");
            if let Err(e) = db::add_progress_event(db, job_id, &note, now_ms).await {
                worker::console_error!("job {job_id}: recording the queue failure failed too: {e}");
            }
            false
        }
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

/// The payment being worked on, once its payer is known.
struct Payment {
    payload: PaymentPayload,
    payer: String,
    nonce: String,
    version: u8,
}

impl Submission<'_> {
    fn rpc(&self) -> Rpc<'_> {
        Rpc { url: &self.config.ops.rpc_url, timeout_ms: self.config.ops.rpc_timeout_ms }
    }

    fn lease_ms(&self) -> u64 {
        self.config.facilitator_timeout_ms + self.config.settle_timeout_ms + 20_000
    }

    pub async fn pay(&self, incoming: IncomingPayment) -> Result<std::result::Result<Paid, Refused>> {
        let config = self.config;
        let now_s = self.now_ms / 1000;
        let version = incoming.version();
        // A v1 payment does not echo the requirements it paid: it stands for today's price.
        let fresh = requirements_for(config, &self.spec.price_request(), self.current, None, now_s);
        let payload = match incoming.into_v2(&fresh) {
            Ok(p) => p,
            Err(rejection) => return Ok(Err(Refused::Rejected(rejection))),
        };
        // A replay must be recognised even after the quote or the authorization window ran out, but only for
        // the payer's own signature: the job id is a capability and is never handed to a forger.
        let (payer, nonce) = match ouro_core::x402::checks::signer_and_nonce(&payload, &config.chain) {
            Ok((payer, nonce)) => (format!("{payer:#x}"), format!("{nonce:#x}")),
            Err(rejection) => return Ok(Err(Refused::Rejected(rejection))),
        };
        let identifier = match payment_identifier::extract(payload.extensions.as_ref()) {
            Ok(id) => id,
            Err(e) => return Ok(Err(Refused::Malformed(e.to_string()))),
        };
        let fingerprint = payment_identifier::fingerprint(&payload.payload);
        if let Some(id) = identifier.as_deref() {
            if let Some(row) = payments::find_by_identifier(self.db, id).await? {
                if row.payload_fingerprint.as_deref() != Some(fingerprint.as_str()) {
                    return Ok(Err(Refused::Conflict(format!(
                        "payment identifier {id} was already used for a different payment"
                    ))));
                }
            }
        }
        let payment = Payment { payload, payer, nonce, version };
        if let Some(row) = payments::find(self.db, &payment.payer, &payment.nonce).await? {
            return self.known(row, &payment).await;
        }

        // Everything that can refuse without money moving comes now, before the reservation.
        if let Err(exceeded) = rate_limit(self.db, config, Submitter::Wallet(&payment.payer), self.now_ms).await? {
            return Ok(Err(Refused::RateLimited(exceeded)));
        }
        let active = payments::active_jobs(self.db, &payment.payer).await?;
        if !config.admission.limits.may_add_job(active) {
            return Ok(Err(Refused::TooManyActive { active, limit: config.admission.limits.active_per_wallet }));
        }
        if let Err(full) = capacity::preflight(self.db, config).await? {
            return Ok(Err(Refused::NoCapacity(full)));
        }
        let priced = self.spec.price_request();
        // Credits (A2, `crate::credits`): requirements quoted with this payer's credit are honoured for it alone,
        // and `credit` is what the reservation must hold.
        let (expected, credit) =
            crate::credits::expected(
            config,
            &priced,
            self.current,
            &payment.payload.accepted,
            &payment.payer,
            self.spec.submitter_address.as_deref(),
            now_s,
        );
        let verified = match check_payment(&payment.payload, &expected, &config.chain, now_s) {
            Ok(v) => v,
            Err(rejection) => return Ok(Err(Refused::Rejected(rejection))),
        };

        let digest = self.spec.digest();
        let workspace_key = (!self.spec.files.is_empty()).then(|| workspaces::key_for(&digest));
        // The spec without file contents: those go to R2 below, before any money moves.
        let spec_json = serde_json::to_string(&JobSpec { files: Vec::new(), ..self.spec.clone() })?;
        let builder_codes_json = serde_json::to_string(self.builder_codes)?;
        let reservation = payments::Reservation {
            payer: &payment.payer,
            nonce: &payment.nonce,
            amount_atomic: verified.amount,
            network: &config.chain.network,
            asset: &expected.asset,
            pay_to: &expected.pay_to,
            valid_before: verified.valid_before,
            spec_digest: &digest,
            spec_json: &spec_json,
            workspace_key: workspace_key.as_deref(),
            builder_codes_json: &builder_codes_json,
            x402_version: payment.version,
            payment_identifier: identifier.as_deref(),
            payload_fingerprint: &fingerprint,
            now_ms: self.now_ms,
            lease_ms: self.lease_ms(),
        };
        if !payments::reserve(self.db, &reservation).await? {
            // A concurrent twin got the reservation first (or took this payment identifier a moment ago).
            return match payments::find(self.db, &payment.payer, &payment.nonce).await? {
                Some(row) => self.known(row, &payment).await,
                None => Ok(Err(Refused::Conflict("this payment identifier is being used by another payment".into()))),
            };
        }
        // Credits (A2): the quoted credit is held with the reservation (spent once the job is recorded, given
        // back if the reservation is released), or nothing goes on.
        if !crate::credits::hold(self.db, &payment.payer, &payment.nonce, credit, self.now_ms).await? {
            payments::release(self.db, &payment.payer, &payment.nonce, false).await?;
            return Ok(Err(Refused::Conflict(
                "the credit quoted in these requirements was spent by another job meanwhile; request a new quote".into(),
            )));
        }

        if let Some(key) = workspace_key.as_deref() {
            if let Err(e) = workspaces::put(self.bucket, key, &self.spec.files).await {
                payments::release(self.db, &payment.payer, &payment.nonce, false).await?;
                return Ok(Err(Refused::StorageDown(e.to_string())));
            }
        }

        // Credits (A2): a job the credit pays in full was quoted at 0; its authorization of 0 proved the wallet,
        // passed the local checks and is never settled: no money moves, so no facilitator.
        if verified.amount == 0 {
            let (payer, nonce) = (&payment.payer, &payment.nonce);
            return Ok(Ok(record_job(self.db, config, payer, nonce, self.spec, self.builder_codes, 0, None, self.now_ms).await?));
        }
        let facilitator = Facilitator { base_url: &config.facilitator_url };
        match facilitator.verify(&payment.payload, &expected, config.facilitator_timeout_ms).await {
            Ok(v) if v.is_valid => {}
            Ok(v) => {
                payments::release(self.db, &payment.payer, &payment.nonce, false).await?;
                let reason = v.invalid_reason.unwrap_or_else(|| "invalid_payment".into());
                return Ok(Err(Refused::Unverified { reason, message: v.invalid_message }));
            }
            Err(e) => {
                payments::release(self.db, &payment.payer, &payment.nonce, false).await?;
                return Ok(Err(Refused::FacilitatorDown(e)));
            }
        }
        let held = Held { amount: verified.amount, valid_before: verified.valid_before };
        self.settle(&payment, &expected, &held).await
    }

    /// A payment D1 already knows: its job, a wait for the twin working on it, or the reconciliation of an
    /// unknown outcome.
    async fn known(&self, mut row: PaymentState, payment: &Payment) -> Result<std::result::Result<Paid, Refused>> {
        if row.spec_digest != self.spec.digest() {
            return Ok(Err(Refused::Conflict(
                "this payment already paid for a different job request; sign a new payment for a new request".into(),
            )));
        }
        let mut waited = 0;
        loop {
            if let (true, Some(job_id)) = (row.state == "settled", row.job_id.clone()) {
                let settlement = settlement(self.config, &row.payer, row.amount_atomic, row.tx_hash.as_deref());
                return Ok(Ok(Paid::Replayed { job_id, amount: row.amount_atomic, settlement }));
            }
            let now = crate::routes::now_ms();
            if row.lease_until < now && payments::claim(self.db, &row.payer, &row.nonce, now, self.lease_ms()).await? {
                return self.resume(&row, payment).await;
            }
            if waited >= TWIN_WAIT_MS {
                return Ok(Err(Refused::Busy));
            }
            worker::Delay::from(std::time::Duration::from_millis(TWIN_POLL_MS)).await;
            waited += TWIN_POLL_MS;
            match payments::find(self.db, &row.payer, &row.nonce).await? {
                Some(next) => row = next,
                // The twin's attempt was refused before settlement and released: this request may try afresh.
                None => return Ok(Err(Refused::Busy)),
            }
        }
    }

    /// Finishes a reservation this request now holds, whose previous holder let go or died.
    async fn resume(&self, row: &PaymentState, payment: &Payment) -> Result<std::result::Result<Paid, Refused>> {
        let (payer, nonce) = (&row.payer, &row.nonce);
        if row.settle_attempted_at.is_none() {
            // No money can have moved: start over as the payment it is.
            payments::release(self.db, payer, nonce, false).await?;
            return Ok(Err(Refused::Busy));
        }
        let used = match self.rpc().authorization_used(&self.config.chain.asset.to_checksum(None), payer, nonce).await {
            Ok(used) => used,
            Err(e) => return self.unconfirmed(payer, nonce, &format!("the chain could not be read: {e}"), None).await,
        };
        if used {
            return self.record_spent(row, self.spec, self.builder_codes, row.tx_hash.clone()).await;
        }
        if self.now_ms / 1000 >= row.valid_before {
            payments::release(self.db, payer, nonce, true).await?;
            return Ok(Err(Refused::Rejected(PaymentRejection::Expired(row.valid_before))));
        }
        // Unspent and still valid: settle it now, for the amount it was reserved at.
        let expected = self.config.chain.requirements(row.amount_atomic, payment.payload.accepted.extra.quote.clone());
        let held = Held { amount: row.amount_atomic, valid_before: row.valid_before };
        self.settle(payment, &expected, &held).await
    }

    /// `/settle` on a reservation this request holds, and what its answer means.
    async fn settle(
        &self,
        payment: &Payment,
        expected: &PaymentRequirements,
        held: &Held,
    ) -> Result<std::result::Result<Paid, Refused>> {
        let (payer, nonce) = (&payment.payer, &payment.nonce);
        payments::settle_attempted(self.db, payer, nonce, self.now_ms).await?;
        let facilitator = Facilitator { base_url: &self.config.facilitator_url };
        let answer = facilitator.settle(&payment.payload, expected, self.config.settle_timeout_ms).await;
        match answer {
            Ok(s) if s.success && !s.transaction.is_empty() => {
                self.record(payer, nonce, held.amount, Some(s.transaction.clone()), Some(s)).await
            }
            Ok(s) if s.error_reason.as_deref() == Some("settlement_pending") || s.success => {
                // Sent but not confirmed: follow it on chain for a few seconds, then leave it to the retry.
                let tx = Some(s.transaction.clone()).filter(|t| !t.is_empty());
                let mut followed = 0;
                while followed < PENDING_FOLLOW_MS {
                    worker::Delay::from(std::time::Duration::from_millis(1000)).await;
                    followed += 1000;
                    if self.spent(payer, nonce).await == Some(true) {
                        return self.record(payer, nonce, held.amount, tx, None).await;
                    }
                }
                self.unconfirmed(payer, nonce, "settlement pending on chain", tx.as_deref()).await
            }
            Ok(s) => {
                // The facilitator says it failed; the chain has the last word before the payer is told so.
                if self.spent(payer, nonce).await == Some(true) {
                    return self.record(payer, nonce, held.amount, None, None).await;
                }
                let note = format!("settle refused: {}", s.error_reason.as_deref().unwrap_or("unknown reason"));
                if self.now_ms / 1000 >= held.valid_before {
                    payments::release(self.db, payer, nonce, true).await?;
                } else {
                    payments::leave_unsettled(self.db, payer, nonce, &note, None).await?;
                }
                Ok(Err(Refused::NotSettled(s)))
            }
            Err(e) => {
                worker::console_error!("settle outcome unknown for {payer}/{nonce}: {e}");
                if self.spent(payer, nonce).await == Some(true) {
                    return self.record(payer, nonce, held.amount, None, None).await;
                }
                self.unconfirmed(payer, nonce, &format!("settle: {e}"), None).await
            }
        }
    }

    /// Whether the chain says the authorization was spent; `None` when it cannot be read.
    async fn spent(&self, payer: &str, nonce: &str) -> Option<bool> {
        self.rpc().authorization_used(&self.config.chain.asset.to_checksum(None), payer, nonce).await.ok()
    }

    async fn unconfirmed(
        &self,
        payer: &str,
        nonce: &str,
        note: &str,
        tx: Option<&str>,
    ) -> Result<std::result::Result<Paid, Refused>> {
        payments::leave_unsettled(self.db, payer, nonce, note, tx).await?;
        Ok(Err(Refused::Unconfirmed(note.to_string())))
    }

    /// Records the job of a reservation the chain says was spent (the transaction found in the logs if not known).
    async fn record_spent(
        &self,
        row: &PaymentState,
        spec: &JobSpec,
        builder_codes: &[String],
        tx: Option<String>,
    ) -> Result<std::result::Result<Paid, Refused>> {
        let tx = match tx {
            Some(tx) => Some(tx),
            None => self.rpc().authorization_tx(&self.config.chain.asset.to_checksum(None), &row.payer, &row.nonce).await.ok().flatten(),
        };
        let recorded =
            record_job(self.db, self.config, &row.payer, &row.nonce, spec, builder_codes, row.amount_atomic, tx, self.now_ms).await?;
        Ok(Ok(recorded))
    }

    async fn record(
        &self,
        payer: &str,
        nonce: &str,
        amount: u64,
        tx: Option<String>,
        answer: Option<SettlementResponse>,
    ) -> Result<std::result::Result<Paid, Refused>> {
        let tx = match tx {
            Some(tx) => Some(tx),
            None => self.rpc().authorization_tx(&self.config.chain.asset.to_checksum(None), payer, nonce).await.ok().flatten(),
        };
        let mut paid =
            record_job(self.db, self.config, payer, nonce, self.spec, self.builder_codes, amount, tx, self.now_ms).await?;
        if let (Paid::New { settlement, .. }, Some(answer)) = (&mut paid, answer) {
            *settlement = answer;
        }
        Ok(Ok(paid))
    }
}

/// What a held reservation was made for.
struct Held {
    amount: u64,
    valid_before: u64,
}

/// Writes the job of a spent authorization (once: a twin or the reconciliation may have done it already, and then
/// its job is the answer) and the settlement's gas.
#[allow(clippy::too_many_arguments)]
async fn record_job(
    db: &D1Database,
    config: &Config,
    payer: &str,
    nonce: &str,
    spec: &JobSpec,
    builder_codes: &[String],
    amount: u64,
    tx: Option<String>,
    now_ms: u64,
) -> Result<Paid> {
    let job_id = uuid::Uuid::new_v4().to_string();
    let digest = spec.digest();
    let workspace_key = (!spec.files.is_empty()).then(|| workspaces::key_for(&digest));
    let job = NewJob {
        id: &job_id,
        payer,
        spec,
        spec_digest: &digest,
        price_atomic: amount,
        workspace_key: workspace_key.as_deref(),
        builder_codes,
        now_ms,
    };
    if db::record_paid_job(db, &job, nonce, tx.as_deref()).await? {
        // Credits (A2): the credit this payment held is spent on the job; the job gets its price and time part.
        crate::credits::on_job_bought(db, config, &job_id, payer, nonce, spec, amount).await;
        if let Some(tx) = tx.as_deref() {
            // The ledger's cost of this settlement (its receipt's gas); never fails the paid answer.
            crate::ledger::record_settlement_gas(db, &config.ops, &job_id, tx, now_ms).await;
        }
        return Ok(Paid::New { job_id, amount, settlement: settlement(config, payer, amount, tx.as_deref()) });
    }
    match payments::find(db, payer, nonce).await? {
        Some(PaymentState { job_id: Some(winner), tx_hash, amount_atomic, .. }) => Ok(Paid::Replayed {
            job_id: winner,
            amount: amount_atomic,
            settlement: settlement(config, payer, amount_atomic, tx_hash.as_deref()),
        }),
        _ => Err(worker::Error::RustError(format!("payment {payer}/{nonce} is settled but has no job"))),
    }
}

/// What one scheduled reconciliation did.
#[derive(Debug, Default)]
pub struct Reconciled {
    /// Jobs recorded for authorizations found spent on chain (to be queued).
    pub recorded: Vec<String>,
    /// Reservations released: never settled, or unspent and expired.
    pub released: u32,
    /// Still open: unspent but valid (the payer may retry), or the chain could not be read.
    pub open: u32,
}

/// The scheduled check of reservations whose outcome is open (see the module's comment). It never moves money:
/// it records what the chain says happened and drops what can no longer happen.
pub async fn reconcile(db: &D1Database, bucket: &Bucket, config: &Config, now_ms: u64, limit: u32) -> Result<Reconciled> {
    let rpc = Rpc { url: &config.ops.rpc_url, timeout_ms: config.ops.rpc_timeout_ms };
    let token = config.chain.asset.to_checksum(None);
    let mut done = Reconciled::default();
    for row in payments::unsettled(db, now_ms, STALE_RESERVATION_MS, limit).await? {
        if !payments::claim(db, &row.payer, &row.nonce, now_ms, 60_000).await? {
            continue;
        }
        if row.settle_attempted_at.is_none() {
            payments::release(db, &row.payer, &row.nonce, false).await?;
            done.released += 1;
            continue;
        }
        let used = match rpc.authorization_used(&token, &row.payer, &row.nonce).await {
            Ok(used) => used,
            Err(e) => {
                note_open(db, &row, &format!("reconcile: the chain could not be read: {e}")).await?;
                done.open += 1;
                continue;
            }
        };
        if !used {
            if now_ms / 1000 >= row.valid_before {
                payments::release(db, &row.payer, &row.nonce, true).await?;
                done.released += 1;
            } else {
                note_open(db, &row, "reconcile: not spent yet; the payer may retry").await?;
                done.open += 1;
            }
            continue;
        }
        match rebuild_spec(bucket, &row).await {
            Ok(spec) => {
                let codes: Vec<String> = serde_json::from_str(&row.builder_codes_json).unwrap_or_default();
                let tx = match row.tx_hash.clone() {
                    Some(tx) => Some(tx),
                    None => rpc.authorization_tx(&token, &row.payer, &row.nonce).await.unwrap_or(None),
                };
                if let Paid::New { job_id, .. } =
                    record_job(db, config, &row.payer, &row.nonce, &spec, &codes, row.amount_atomic, tx, now_ms).await?
                {
                    done.recorded.push(job_id);
                }
            }
            Err(why) => {
                worker::console_error!("payment {}/{} is spent on chain but its job cannot be rebuilt: {why}", row.payer, row.nonce);
                note_open(db, &row, &format!("spent on chain; job not rebuildable ({why}); refund due")).await?;
                done.open += 1;
            }
        }
    }
    Ok(done)
}

async fn note_open(db: &D1Database, row: &PaymentState, note: &str) -> Result<()> {
    payments::leave_unsettled(db, &row.payer, &row.nonce, note, None).await
}

/// The job spec a reservation was made for: its JSON, and its files from R2.
async fn rebuild_spec(bucket: &Bucket, row: &PaymentState) -> std::result::Result<JobSpec, String> {
    let json = row.spec_json.as_deref().ok_or("the reservation predates stored specs")?;
    let mut spec: JobSpec = serde_json::from_str(json).map_err(|e| e.to_string())?;
    if let Some(key) = row.workspace_key.as_deref() {
        spec.files = workspaces::get(bucket, key).await.map_err(|e| e.to_string())?.ok_or("the workspace is gone from R2")?;
    }
    if spec.digest() != row.spec_digest {
        return Err("the rebuilt spec does not match its digest".into());
    }
    Ok(spec)
}

/// The scheduled handler's part: [`reconcile`] over the configured bindings, and the recorded jobs queued.
pub async fn reconcile_scheduled(env: &Env, now_ms: u64) -> Result<Reconciled> {
    let config = Config::from_env(env).map_err(|e| worker::Error::RustError(e.to_string()))?;
    let db = env.d1("DB")?;
    let bucket = env.bucket(workspaces::BINDING)?;
    let done = reconcile(&db, &bucket, &config, now_ms, 50).await?;
    for job_id in &done.recorded {
        enqueue(env, &db, job_id, now_ms).await;
    }
    Ok(done)
}
