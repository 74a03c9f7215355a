//! Credits instead of on-chain refunds: what an ended job earns (the rule is `ouro_core::credits`), and the
//! balance a wallet's next job can use. Every credit is a row of the ledger in D1 (`db::credits`).

use ouro_core::credits::{apply, earned, Ending, EndedJob};
use ouro_core::pricing::{PriceRequest, PricingConfig, Quote, SubmissionMode};
use ouro_core::submit::JobSpec;
use ouro_core::x402::{quote as bound_quote, PaymentRequirements};
use worker::{D1Database, Result};

use crate::config::Config;
use crate::db::credits as ledger;

/// Records the credit a just-ended job earned, once: a second call for the same job changes nothing (the
/// ledger's key is unique). `Ok(Some(amount))` when this call recorded a credit, `Ok(None)` when the job is
/// not terminal, earned nothing, or was credited already. Call it wherever a job becomes terminal.
pub async fn on_job_end(db: &D1Database, job_id: &str, now_ms: u64) -> Result<Option<u64>> {
    let Some(row) = ledger::ended_job(db, job_id).await? else { return Ok(None) };
    let Some(ending) = Ending::of(&row.status, row.failure_reason.as_deref(), row.fault.as_deref()) else {
        return Ok(None);
    };
    let mode = if row.file_count > 0 { SubmissionMode::MultiFile } else { SubmissionMode::Script };
    let request = PriceRequest { cpus: row.cpus, time_limit_min: row.time_limit_min, mode };
    // Jobs bought before the time part was recorded get it from the default pricing.
    let time_part = row
        .time_part_atomic
        .unwrap_or_else(|| ouro_core::credits::time_part(&PricingConfig::default(), request, row.price_atomic));
    let job = EndedJob {
        price: row.price_atomic,
        time_part,
        paid: row.paid_atomic,
        credit_spent: row.spent_atomic,
        time_limit_min: row.time_limit_min,
        used_s: row.compute_duration_s,
        ending,
    };
    let amount = earned(&job);
    if amount == 0 {
        return Ok(None);
    }
    let recorded = ledger::record_earned(db, job_id, &row.payer, amount, ending.as_str(), now_ms).await?;
    if recorded {
        worker::console_log!("job {job_id} ended ({}): {amount} atomic credited to {}", ending.as_str(), row.payer);
    }
    Ok(recorded.then_some(amount))
}

/// Calls [`on_job_end`] where a failure to credit must not fail the caller's answer (the job's end is already
/// recorded); the sweep credits what was missed.
pub async fn on_job_end_logged(db: &D1Database, job_id: &str, now_ms: u64) {
    if let Err(e) = on_job_end(db, job_id, now_ms).await {
        worker::console_error!("job {job_id}: recording its credit failed (the sweep retries): {e}");
    }
}

/// The wallet's credit balance (atomic). `wallet` is a lowercase 0x address.
pub async fn balance(db: &D1Database, wallet: &str) -> Result<u64> {
    ledger::balance(db, &wallet.to_ascii_lowercase()).await
}

// ---------------------------------------------------------------------------------------------------------------
// Paying with credit. The 402 is answered before the payer is known, and an EIP-3009 amount is fixed by its
// signature, so the client names its wallet up front (`submitter_address`): the 402 then quotes the price minus
// that wallet's credit, in requirements carrying `extra.credit` and a quote token bound to the wallet and the
// credit. On the paid retry those requirements are honoured only when the payment is signed by that wallet; the
// credit is held in D1 together with the payment's reservation (one conditional statement, so concurrent jobs
// cannot spend it twice) and spent when the job is recorded. A price the credit covers to within $0.001 is
// quoted as amount 0: the client signs an authorization of 0 (proof of the wallet; it is checked locally and
// never settled) and the job is free. A client that does not name its wallet pays the full price as before.
// ---------------------------------------------------------------------------------------------------------------

/// The `extra` key of requirements that apply a credit: the credit in atomic units, as a decimal string.
pub const EXTRA_CREDIT: &str = "credit";

/// What the bound quote of a credited price is bound to: the priced terms, the wallet and the credit.
fn credited_fingerprint(priced: &PriceRequest, wallet: &str, credit: u64) -> String {
    format!("{};wallet={wallet};credit={credit}", priced.fingerprint())
}

fn credited_requirements(config: &Config, due: u64, credit: u64, token: String) -> PaymentRequirements {
    let mut requirements = config.chain.requirements(due, Some(token));
    requirements.extra.other.insert(EXTRA_CREDIT.into(), serde_json::Value::String(credit.to_string()));
    requirements
}

/// The requirements of the 402 for `spec`: the price minus the credit of the wallet it names, bound to it; the
/// plain price (A1's `requirements_for`) when it names none or the wallet has no credit to apply.
pub async fn offer(db: &D1Database, config: &Config, spec: &JobSpec, current: &Quote, now_s: u64) -> Result<PaymentRequirements> {
    let priced = spec.price_request();
    if let Some(wallet) = spec.submitter_address.as_deref() {
        let application = apply(balance(db, wallet).await?, current.amount);
        if application.credit > 0 {
            let expires = now_s + config.chain.max_timeout_seconds;
            let fingerprint = credited_fingerprint(&priced, wallet, application.credit);
            let token = bound_quote::issue(&config.quote_secret, &fingerprint, application.due, expires);
            return Ok(credited_requirements(config, application.due, application.credit, token));
        }
    }
    Ok(crate::payment::requirements_for(config, &priced, current, None, now_s))
}

/// The requirements a payment signed by `payer` is checked against, and the credit it must hold: the credited
/// requirements it accepted if they were quoted to this payer and are still live; otherwise the plain ones.
pub fn expected(
    config: &Config,
    priced: &PriceRequest,
    current: &Quote,
    accepted: &PaymentRequirements,
    payer: &str,
    named_wallet: Option<&str>,
    now_s: u64,
) -> (PaymentRequirements, u64) {
    // Credit is applied only to a body that names the paying wallet: what a job says it paid and who it names
    // stay one story (a credited quote paid with a body that names nobody gets today's full price: 402).
    let credit = accepted.extra.other.get(EXTRA_CREDIT).and_then(|v| v.as_str()).and_then(|v| v.parse::<u64>().ok());
    let credit = credit.filter(|_| named_wallet == Some(payer));
    if let (Some(credit), Some(token), Ok(due)) =
        (credit.filter(|c| *c > 0), accepted.extra.quote.as_deref(), accepted.amount.parse::<u64>())
    {
        let fingerprint = credited_fingerprint(priced, payer, credit);
        if bound_quote::honours(&config.quote_secret, token, &fingerprint, due, now_s) {
            return (credited_requirements(config, due, credit, token.to_string()), credit);
        }
    }
    (crate::payment::requirements_for(config, priced, current, Some(accepted), now_s), 0)
}

/// Holds `credit` of `payer`'s balance for its reservation `(payer, nonce)`, right after the reservation is
/// made. `Ok(false)`: the credit is no longer there (another job spent it) and nothing may move. The hold
/// counts as spent while the reservation exists; a released reservation gives it back by itself.
pub async fn hold(db: &D1Database, payer: &str, nonce: &str, credit: u64, now_ms: u64) -> Result<bool> {
    if credit == 0 {
        return Ok(true);
    }
    let spend = ledger::NewSpend { wallet: payer, nonce, amount: credit, rule: "applied", now_ms };
    ledger::hold(db, &spend).await
}

/// Right after a job bought by `(payer, nonce)` was recorded with `paid` cash: its credit spend points at it,
/// and the job carries its full price, the credit applied and the time part of the price. Never fails the
/// paid answer: without these the credit rule still finds the spend through the payment.
pub async fn on_job_bought(db: &D1Database, config: &Config, job_id: &str, payer: &str, nonce: &str, spec: &JobSpec, paid: u64) {
    let result = async {
        let credit = ledger::find_spend(db, payer, nonce).await?.map(|s| s.amount_atomic).unwrap_or(0);
        let price = paid + credit;
        let time_part = ouro_core::credits::time_part(&config.pricing, spec.price_request(), price);
        db.batch(ledger::job_recorded_stmts(db, job_id, payer, nonce, credit, price, time_part)?).await?;
        Ok::<_, worker::Error>(())
    }
    .await;
    if let Err(e) = result {
        worker::console_error!("job {job_id}: recording its credit terms failed: {e}");
    }
}

/// `paid_with_credit` / `credit_applied` of a submit answer: `(true, c)` when credit paid the whole job.
pub async fn applied_to(db: &D1Database, job_id: &str) -> Result<(bool, u64)> {
    let job = crate::db::get_job(db, job_id).await?;
    let paid = crate::db::payment_for_job(db, job_id).await?.map(|p| p.amount_atomic).unwrap_or(0);
    Ok(job.map(|j| (j.credit_applied_atomic > 0 && paid == 0, j.credit_applied_atomic)).unwrap_or((false, 0)))
}
