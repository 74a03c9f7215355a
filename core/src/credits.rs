//! Credits instead of on-chain refunds: what an ended job gives back to its payer, and how a wallet's credit
//! pays for its next job. Integer atomic units only; every division rounds in the service's favour by at most
//! one unit, so the credits a job earns never exceed what was put into it.
//!
//! **What was put into a job** (its *base*) is the cash its payment settled plus the credit it spent, never more
//! than its price (a waived remainder was not put in, so it is never given back).
//!
//! **Which part of a price is time.** A price is the cost floor (`gas + llm + setup + cpus × minutes × rate`)
//! scaled by margins, demand and the minimum price. Every scaling multiplies the whole floor, so each component
//! keeps its share of the price: the *time part* is `base × compute / floor`. Gas and setup are spent whatever
//! happens and are not time. The unused fraction of the time part is `(limit − used) / limit` with `used`
//! rounded up to whole seconds.
//!
//! | how the job ended | credit |
//! |---|---|
//! | completed, non-zero exit, out of memory, cancelled, build failed, any other user error | the unused time |
//! | time limit exceeded | nothing (all the time was used) |
//! | any `platform_error` (our fault) | the whole base |
//!
//! A failed build is the user's recipe failing, so it is a user error: the build's seconds are the time used
//! (they count towards the time limit), the rest is credited.

use crate::job::{FailureReason, Fault, JobStatus};
use crate::pricing::{PriceRequest, PricingConfig, SubmissionMode};

/// A remainder under $0.001 is not worth a payment: the job is free and the remainder is waived.
pub const WAIVE_BELOW: u64 = 1_000;

/// How a job ended, as far as money is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Completed, or failed by the user's doing (its time may have been partly unused).
    UsedSome,
    /// Killed at its time limit: all its time was used.
    UsedAll,
    /// Our fault: everything put in comes back.
    PlatformError,
}

impl Ending {
    /// From the stored strings of a terminal job (`status`, `failure_reason`, `fault`); `None` while it runs.
    /// Unknown reasons are judged by their fault, so a new failure reason cannot make a credit disappear.
    pub fn of(status: &str, failure_reason: Option<&str>, fault: Option<&str>) -> Option<Ending> {
        match JobStatus::parse(status)? {
            JobStatus::Completed => Some(Ending::UsedSome),
            JobStatus::Failed if fault == Some(Fault::PlatformError.as_str()) => Some(Ending::PlatformError),
            JobStatus::Failed if failure_reason == Some(FailureReason::TimeLimitExceeded.as_str()) => {
                Some(Ending::UsedAll)
            }
            JobStatus::Failed => Some(Ending::UsedSome),
            _ => None,
        }
    }

    /// The wire name of the rule, recorded with the credit.
    pub fn as_str(self) -> &'static str {
        match self {
            Ending::UsedSome => "unused_time",
            Ending::UsedAll => "time_used_up",
            Ending::PlatformError => "platform_error",
        }
    }
}

/// An ended job, as the credit rule needs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EndedJob {
    /// The job's price (atomic).
    pub price: u64,
    /// The time part of the price (atomic, [`time_part`] of the price when it was bought).
    pub time_part: u64,
    /// Cash settled for it (atomic; 0 when credit paid all of it).
    pub paid: u64,
    /// Credit spent on it (atomic).
    pub credit_spent: u64,
    pub time_limit_min: u32,
    /// Seconds the job's time limit was running (container or build), if it ever started.
    pub used_s: Option<f64>,
    pub ending: Ending,
}

impl EndedJob {
    /// What was put into the job: cash plus credit, capped at the price.
    pub fn base(&self) -> u64 {
        self.paid.saturating_add(self.credit_spent).min(self.price)
    }

    /// The time part of the base: the price's time part, scaled down when less than the price was put in.
    fn base_time_part(&self) -> u64 {
        if self.price == 0 {
            return 0;
        }
        let scaled = u128::from(self.time_part.min(self.price)) * u128::from(self.base()) / u128::from(self.price);
        u64::try_from(scaled).unwrap_or(0)
    }
}

/// The time part of `price` for a job priced with `config`: `price × compute / floor`, rounded down. Recorded
/// with the job when it is bought, so a later change of the pricing configuration cannot change its credit.
pub fn time_part(config: &PricingConfig, req: PriceRequest, price: u64) -> u64 {
    let compute = u128::from(config.compute_per_cpu_minute) * u128::from(req.cpus) * u128::from(req.time_limit_min);
    let setup = match req.mode {
        SubmissionMode::Script => 0,
        SubmissionMode::MultiFile => u128::from(config.multi_file_setup),
    };
    let floor = u128::from(config.gas_upper_bound) + u128::from(config.llm_upper_bound) + compute + setup;
    if floor == 0 {
        return 0;
    }
    u64::try_from(u128::from(price) * compute / floor).unwrap_or(price).min(price)
}

/// The credit an ended job earns (atomic), by the table in the module documentation.
pub fn earned(job: &EndedJob) -> u64 {
    let base = job.base();
    match job.ending {
        Ending::PlatformError => base,
        Ending::UsedAll => 0,
        Ending::UsedSome => {
            let limit_s = u64::from(job.time_limit_min) * 60;
            if limit_s == 0 {
                return 0;
            }
            let used_s = job.used_s.filter(|s| s.is_finite() && *s > 0.0).map(|s| s.ceil() as u64).unwrap_or(0);
            let unused_s = limit_s.saturating_sub(used_s);
            let time = job.base_time_part();
            u64::try_from(u128::from(time) * u128::from(unused_s) / u128::from(limit_s)).unwrap_or(0)
        }
    }
}

/// How a wallet's credit pays for a job of `price`: the credit applied and what is left to pay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Application {
    /// Credit taken from the wallet (atomic).
    pub credit: u64,
    /// Cash still due (atomic); 0 makes the job free.
    pub due: u64,
}

impl Application {
    pub fn is_free(&self) -> bool {
        self.due == 0
    }
}

/// Applies `balance` to `price`. A remainder under [`WAIVE_BELOW`] is waived (the job is free, the wallet gives
/// what it has); a remainder to pay is never off the price grid a client sees (`$0.0001`), so the credit taken
/// is rounded down to it.
pub fn apply(balance: u64, price: u64) -> Application {
    let covered = balance.min(price);
    let rest = price - covered;
    if rest < WAIVE_BELOW {
        return Application { credit: covered, due: 0 };
    }
    let credit = covered - covered % crate::pricing::PRICE_STEP;
    Application { credit, due: price - credit }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(ending: Ending, used_s: Option<f64>) -> EndedJob {
        EndedJob { price: 10_000, time_part: 1_666, paid: 10_000, credit_spent: 0, time_limit_min: 1, used_s, ending }
    }

    #[test]
    fn unused_time_is_credited_pro_rata_of_the_time_part() {
        let config = PricingConfig::default();
        // floor = 1000 gas + 200 compute: the time part of $0.01 is 10_000 × 200 / 1200 = 1666.
        let req = PriceRequest { cpus: 1, time_limit_min: 1, mode: SubmissionMode::Script };
        assert_eq!(time_part(&config, req, 10_000), 1_666);
        // 5 s used of 60: 55/60 of 1666 = 1527.
        assert_eq!(earned(&job(Ending::UsedSome, Some(4.2))), 1_527);
        assert_eq!(earned(&job(Ending::UsedSome, None)), 1_666, "never started: all time unused");
        assert_eq!(earned(&job(Ending::UsedSome, Some(60.0))), 0);
        assert_eq!(earned(&job(Ending::UsedSome, Some(999.0))), 0, "overrun clamps to zero");
        assert_eq!(earned(&job(Ending::UsedSome, Some(f64::NAN))), 1_666);
    }

    #[test]
    fn endings_earn_by_the_table() {
        assert_eq!(earned(&job(Ending::UsedAll, Some(60.0))), 0);
        assert_eq!(earned(&job(Ending::PlatformError, Some(30.0))), 10_000);
        assert_eq!(Ending::of("completed", None, None), Some(Ending::UsedSome));
        assert_eq!(Ending::of("failed", Some("time_limit_exceeded"), Some("user_error")), Some(Ending::UsedAll));
        assert_eq!(Ending::of("failed", Some("non_zero_exit"), Some("user_error")), Some(Ending::UsedSome));
        assert_eq!(Ending::of("failed", Some("build_failed"), Some("user_error")), Some(Ending::UsedSome));
        assert_eq!(Ending::of("failed", Some("cancelled"), Some("user_error")), Some(Ending::UsedSome));
        assert_eq!(Ending::of("failed", Some("some_new_reason"), Some("platform_error")), Some(Ending::PlatformError));
        assert_eq!(Ending::of("failed", Some("executor_unavailable"), Some("platform_error")), Some(Ending::PlatformError));
        assert_eq!(Ending::of("running", None, None), None);
        assert_eq!(Ending::of("nonsense", None, None), None);
    }

    #[test]
    fn credits_never_exceed_what_was_put_in() {
        let config = PricingConfig::default();
        // Partly paid with credit: the base is cash + credit.
        let mixed = EndedJob { paid: 8_500, credit_spent: 1_500, ..job(Ending::PlatformError, None) };
        assert_eq!(earned(&EndedJob { ending: Ending::UsedSome, ..mixed }), 1_666);
        assert_eq!(earned(&mixed), 10_000);
        // A waived remainder was never put in and never comes back.
        let waived = EndedJob { paid: 0, credit_spent: 9_400, ..job(Ending::PlatformError, None) };
        assert_eq!(earned(&waived), 9_400);
        // Whatever the shape of the job, the credit is at most its base.
        for cpus in [1, 2, 8] {
            for minutes in [1, 7, 60] {
                for mode in [SubmissionMode::Script, SubmissionMode::MultiFile] {
                    for used in [None, Some(0.1), Some(59.9), Some(3600.0)] {
                        for ending in [Ending::UsedSome, Ending::UsedAll, Ending::PlatformError] {
                            let req = PriceRequest { cpus, time_limit_min: minutes, mode };
                            let price = crate::pricing::quote(&config, req, Default::default()).amount;
                            let time_part = time_part(&config, req, price);
                            assert!(time_part < price, "gas is never time: {req:?}");
                            let j = EndedJob {
                                price,
                                time_part,
                                paid: price,
                                credit_spent: 0,
                                time_limit_min: minutes,
                                used_s: used,
                                ending,
                            };
                            assert!(earned(&j) <= price, "{j:?}");
                        }
                    }
                }
            }
        }
        // A degenerate configuration (nothing costs anything) has no time part rather than dividing by zero.
        let free = PricingConfig { gas_upper_bound: 0, compute_per_cpu_minute: 0, ..config };
        let req = PriceRequest { cpus: 1, time_limit_min: 1, mode: SubmissionMode::Script };
        assert_eq!(time_part(&free, req, 10_000), 0);
        // Half the price put in (a waived remainder): half the time part comes back for unused time.
        let half = EndedJob { paid: 0, credit_spent: 5_000, ..job(Ending::UsedSome, None) };
        assert_eq!(earned(&half), 833);
    }

    #[test]
    fn credit_applies_to_the_next_price() {
        assert_eq!(apply(0, 10_000), Application { credit: 0, due: 10_000 });
        // 1527 of credit: 1500 taken (the due stays on the $0.0001 grid), 8500 to pay.
        assert_eq!(apply(1_527, 10_000), Application { credit: 1_500, due: 8_500 });
        // A remainder under $0.001 is waived: free.
        assert!(apply(9_001, 10_000).is_free());
        assert_eq!(apply(9_001, 10_000).credit, 9_001);
        assert_eq!(apply(9_000, 10_000), Application { credit: 9_000, due: 1_000 });
        // More credit than the price: the price is taken, the rest stays.
        assert_eq!(apply(25_000, 10_000), Application { credit: 10_000, due: 0 });
        assert_eq!(apply(50, 10_000), Application { credit: 0, due: 10_000 });
    }
}
