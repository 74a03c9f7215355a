//! The submit rate limits: which counters a submission is charged against, and the active-jobs rule.
//!
//! A paid submission is counted against the wallet that signed it (recovered from the signature, never the
//! unproven `submitter_address`, so nobody can exhaust another wallet's allowance); an unpaid one, whose wallet
//! is not known yet, against its client IP. Every submission also counts towards the service-wide total.

/// Submissions per minute and active jobs, as configured (`SUBMIT_LIMIT_*`, `ACTIVE_JOBS_PER_WALLET`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubmitLimits {
    pub per_wallet: u32,
    pub per_ip: u32,
    pub total: u32,
    pub active_per_wallet: u32,
}

impl Default for SubmitLimits {
    /// The documented values.
    fn default() -> Self {
        SubmitLimits { per_wallet: 10, per_ip: 10, total: 100, active_per_wallet: 20 }
    }
}

/// Who a submission is counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitter<'a> {
    /// The payer recovered from the payment's signature (lowercase `0x` hex).
    Wallet(&'a str),
    /// The client IP of a request that carries no payment yet.
    Ip(&'a str),
}

impl SubmitLimits {
    /// The counters `(key, per minute)` one submission is charged against, the narrowest first.
    pub fn counters(&self, who: Submitter<'_>) -> Vec<(String, u32)> {
        let own = match who {
            Submitter::Wallet(wallet) => (format!("submit:wallet:{}", wallet.to_ascii_lowercase()), self.per_wallet),
            Submitter::Ip(ip) => (format!("submit:ip:{ip}"), self.per_ip),
        };
        vec![own, ("submit:all".to_string(), self.total)]
    }

    /// Whether a wallet with `active` unfinished jobs may buy one more.
    pub fn may_add_job(&self, active: u32) -> bool {
        active < self.active_per_wallet
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paid_submissions_count_per_wallet_and_unpaid_per_ip_and_all_count_in_total() {
        let limits = SubmitLimits::default();
        assert_eq!(
            limits.counters(Submitter::Wallet("0xAbC")),
            vec![("submit:wallet:0xabc".to_string(), 10), ("submit:all".to_string(), 100)]
        );
        assert_eq!(
            limits.counters(Submitter::Ip("203.0.113.7")),
            vec![("submit:ip:203.0.113.7".to_string(), 10), ("submit:all".to_string(), 100)]
        );
    }

    #[test]
    fn the_twenty_first_active_job_is_refused() {
        let limits = SubmitLimits::default();
        assert!(limits.may_add_job(19));
        assert!(!limits.may_add_job(20));
    }
}
