//! Requests signed by a wallet (EIP-191 `personal_sign`): reading a job, its events, a wallet's job list and
//! storage, cancelling a job. The wallet is the identity, so the only credential is a fresh signature over a
//! message that names the action, its object, the wallet and the time:
//!
//! `ouro-job-view:{job_id}:{wallet}:{ts}` · `ouro-job-events:{job_id}:{wallet}:{ts}` · `ouro-job-list:{wallet}:{ts}`
//! · `ouro-job-cancel:{job_id}:{wallet}:{ts}` · `ouro-storage-list:{wallet}:{ts}` ·
//! `ouro-storage-get:{wallet}:{path}:{ts}` · `ouro-storage-delete:{wallet}:{path}:{ts}`
//!
//! `{wallet}` is the address in lowercase hex (the form the public API documents for job views); the address
//! exactly as sent in the `wallet` parameter is accepted too, since other messages' docs leave the case open.
//! `{ts}` is unix seconds, accepted within [`MAX_SKEW_S`] of the server's clock.
//!
//! Errors split the way HTTP needs them: [`AuthError::status`] is 401 for a credential that proves nothing
//! (missing, malformed, stale, signed by someone else) — the caller decides 403 when a *valid* wallet asks for
//! what is not its own.

use alloy_primitives::{eip191_hash_message, Address};

use crate::eip712::recover_signer;
use crate::x402::parse_address;

/// How far `timestamp` may be from now, either way.
pub const MAX_SKEW_S: u64 = 300;

/// What a signature authorises. The message text is the contract with clients: never change it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    JobView { job_id: &'a str },
    JobEvents { job_id: &'a str },
    JobList,
    JobCancel { job_id: &'a str },
    StorageList,
    StorageGet { path: &'a str },
    StorageDelete { path: &'a str },
    /// The wallet's credit balance and its credit history (`GET /api/credits`).
    CreditBalance,
}

impl Action<'_> {
    /// The exact text to sign for `wallet` (as it will be written in the message) at `ts`.
    pub fn message(&self, wallet: &str, ts: u64) -> String {
        match self {
            Action::JobView { job_id } => format!("ouro-job-view:{job_id}:{wallet}:{ts}"),
            Action::JobEvents { job_id } => format!("ouro-job-events:{job_id}:{wallet}:{ts}"),
            Action::JobList => format!("ouro-job-list:{wallet}:{ts}"),
            Action::JobCancel { job_id } => format!("ouro-job-cancel:{job_id}:{wallet}:{ts}"),
            Action::StorageList => format!("ouro-storage-list:{wallet}:{ts}"),
            Action::StorageGet { path } => format!("ouro-storage-get:{wallet}:{path}:{ts}"),
            Action::StorageDelete { path } => format!("ouro-storage-delete:{wallet}:{path}:{ts}"),
            Action::CreditBalance => format!("ouro-credit-balance:{wallet}:{ts}"),
        }
    }
}

/// The three query parameters of a signed request, as received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignedParams {
    pub wallet: Option<String>,
    pub signature: Option<String>,
    pub timestamp: Option<String>,
}

impl SignedParams {
    /// Reads `wallet`, `signature` and `timestamp` from `(name, value)` query pairs.
    pub fn from_query<'q>(pairs: impl IntoIterator<Item = (&'q str, &'q str)>) -> Self {
        let mut out = SignedParams::default();
        for (name, value) in pairs {
            match name {
                "wallet" => out.wallet = Some(value.to_string()),
                "signature" => out.signature = Some(value.to_string()),
                "timestamp" => out.timestamp = Some(value.to_string()),
                _ => {}
            }
        }
        out
    }

    /// True when none of the three is present: an unsigned request.
    pub fn is_empty(&self) -> bool {
        self.wallet.is_none() && self.signature.is_none() && self.timestamp.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing query parameter {0} (signed requests carry wallet, signature and timestamp)")]
    Missing(&'static str),
    #[error("wallet is not a 0x-prefixed 20-byte hex address")]
    BadWallet,
    #[error("timestamp is not a unix time in seconds")]
    BadTimestamp,
    #[error("timestamp is {skew_s} s from the server's clock (at most {MAX_SKEW_S} s allowed); sign again")]
    Stale { skew_s: u64 },
    #[error("signature is not 65 hex-encoded bytes or cannot be recovered: {0}")]
    BadSignature(String),
    #[error("signature was made by {signer:#x}, not by the wallet {wallet:#x}, for the message {message:?}")]
    WrongSigner { signer: Address, wallet: Address, message: String },
}

impl AuthError {
    /// Every failure to prove the wallet is a 401.
    pub fn status(&self) -> u16 {
        401
    }

    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing(_) => "signature_required",
            AuthError::BadWallet => "invalid_wallet",
            AuthError::BadTimestamp | AuthError::Stale { .. } => "stale_signature",
            AuthError::BadSignature(_) | AuthError::WrongSigner { .. } => "invalid_signature",
        }
    }
}

/// Why a request may not read or act on a job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// 401: no valid proof of a wallet (missing when one is required, malformed, stale, someone else's).
    #[error(transparent)]
    Unauthenticated(#[from] AuthError),
    /// 403: a proven wallet that did not pay for the job.
    #[error("wallet {wallet:#x} did not pay for this job")]
    NotOwner { wallet: Address },
}

impl Denied {
    pub fn status(&self) -> u16 {
        match self {
            Denied::Unauthenticated(e) => e.status(),
            Denied::NotOwner { .. } => 403,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Denied::Unauthenticated(e) => e.code(),
            Denied::NotOwner { .. } => "not_job_owner",
        }
    }
}

/// The rule of a job's reads and actions. The job id is a capability, so an unsigned request passes unless
/// `require_signature` (the operator's choice for reads) or the action changes the job (a cancel is always
/// signed). A signed request must prove its wallet, and that wallet must be `payer`.
pub fn authorize_job(
    action: Action<'_>,
    params: &SignedParams,
    now_s: u64,
    payer: &str,
    require_signature: bool,
) -> Result<(), Denied> {
    let must_sign = require_signature || matches!(action, Action::JobCancel { .. });
    if params.is_empty() && !must_sign {
        return Ok(());
    }
    let wallet = verify(action, params, now_s)?;
    if parse_address(payer.trim()) != Some(wallet) {
        return Err(Denied::NotOwner { wallet });
    }
    Ok(())
}

/// Checks that `params` prove control of their `wallet` for `action` at `now_s`; answers the wallet.
pub fn verify(action: Action<'_>, params: &SignedParams, now_s: u64) -> Result<Address, AuthError> {
    let wallet_text = params.wallet.as_deref().ok_or(AuthError::Missing("wallet"))?.trim();
    let signature = params.signature.as_deref().ok_or(AuthError::Missing("signature"))?.trim();
    let ts_text = params.timestamp.as_deref().ok_or(AuthError::Missing("timestamp"))?.trim();
    let wallet = parse_address(wallet_text).ok_or(AuthError::BadWallet)?;
    let ts: u64 = ts_text.parse().map_err(|_| AuthError::BadTimestamp)?;
    let skew_s = now_s.abs_diff(ts);
    if skew_s > MAX_SKEW_S {
        return Err(AuthError::Stale { skew_s });
    }
    let mut bytes = hex::decode(signature.strip_prefix("0x").unwrap_or(signature))
        .map_err(|e| AuthError::BadSignature(e.to_string()))?;
    // Some wallets write the recovery id as 0/1 rather than 27/28; both mean the same signature.
    if let Some(v) = bytes.get_mut(64) {
        if *v < 27 {
            *v += 27;
        }
    }
    let lowercase = format!("{wallet:#x}");
    let mut forms = vec![lowercase.as_str()];
    if wallet_text != lowercase {
        forms.push(wallet_text);
    }
    let mut last = None;
    for form in forms {
        let message = action.message(form, ts);
        let signer = recover_signer(&eip191_hash_message(message.as_bytes()), &bytes)
            .map_err(|e| AuthError::BadSignature(e.to_string()))?;
        if signer == wallet {
            return Ok(wallet);
        }
        last = Some(AuthError::WrongSigner { signer, wallet, message });
    }
    Err(last.unwrap_or(AuthError::Missing("wallet")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eip712::{address_of, sign_digest};
    use k256::ecdsa::SigningKey;

    // Anvil account 1 (a well-known public test key).
    const KEY: &str = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

    fn key() -> SigningKey {
        SigningKey::from_slice(&hex::decode(KEY).unwrap()).unwrap()
    }

    fn signed(action: Action<'_>, wallet_form: &str, ts: u64) -> String {
        let digest = eip191_hash_message(action.message(wallet_form, ts).as_bytes());
        format!("0x{}", hex::encode(sign_digest(&key(), &digest).unwrap()))
    }

    fn params(wallet: &str, signature: &str, ts: u64) -> SignedParams {
        SignedParams {
            wallet: Some(wallet.into()),
            signature: Some(signature.into()),
            timestamp: Some(ts.to_string()),
        }
    }

    #[test]
    fn messages_are_the_documented_strings() {
        let w = "0xabc";
        assert_eq!(Action::JobView { job_id: "j" }.message(w, 5), "ouro-job-view:j:0xabc:5");
        assert_eq!(Action::JobEvents { job_id: "j" }.message(w, 5), "ouro-job-events:j:0xabc:5");
        assert_eq!(Action::JobList.message(w, 5), "ouro-job-list:0xabc:5");
        assert_eq!(Action::JobCancel { job_id: "j" }.message(w, 5), "ouro-job-cancel:j:0xabc:5");
        assert_eq!(Action::StorageList.message(w, 5), "ouro-storage-list:0xabc:5");
        assert_eq!(Action::StorageGet { path: "a/b" }.message(w, 5), "ouro-storage-get:0xabc:a/b:5");
        assert_eq!(Action::StorageDelete { path: "a" }.message(w, 5), "ouro-storage-delete:0xabc:a:5");
        assert_eq!(Action::CreditBalance.message(w, 5), "ouro-credit-balance:0xabc:5");
    }

    #[test]
    fn a_fresh_signature_by_the_wallet_verifies() {
        let wallet = address_of(&key());
        let lower = format!("{wallet:#x}");
        let action = Action::JobView { job_id: "job-1" };
        let sig = signed(action, &lower, 1000);
        assert_eq!(verify(action, &params(&lower, &sig, 1000), 1200), Ok(wallet));
        // The checksummed form in the query still means the lowercase message.
        assert_eq!(verify(action, &params(&wallet.to_checksum(None), &sig, 1000), 1000), Ok(wallet));
        // A message signed with the checksummed address as written is accepted too.
        let checksummed = wallet.to_checksum(None);
        let sig2 = signed(action, &checksummed, 1000);
        assert_eq!(verify(action, &params(&checksummed, &sig2, 1000), 1000), Ok(wallet));
    }

    #[test]
    fn the_job_rule() {
        let payer = format!("{:#x}", address_of(&key()));
        let view = Action::JobView { job_id: "j" };
        let cancel = Action::JobCancel { job_id: "j" };
        let none = SignedParams::default();
        assert_eq!(authorize_job(view, &none, 1000, &payer, false), Ok(()), "the bare id reads");
        let required = authorize_job(view, &none, 1000, &payer, true).unwrap_err();
        assert_eq!((required.status(), required.code()), (401, "signature_required"));
        assert_eq!(authorize_job(cancel, &none, 1000, &payer, false).unwrap_err().status(), 401, "cancels are signed");
        let signed_view = params(&payer, &signed(view, &payer, 1000), 1000);
        assert_eq!(authorize_job(view, &signed_view, 1000, &payer, true), Ok(()));
        assert_eq!(authorize_job(view, &signed_view, 1000, &payer.to_uppercase().replace("0X", "0x"), false), Ok(()));
        let other = authorize_job(view, &signed_view, 1000, "0x0000000000000000000000000000000000000001", false);
        assert_eq!(other.as_ref().map_err(Denied::status), Err(403));
        assert_eq!(other.unwrap_err().code(), "not_job_owner");
        let stale = authorize_job(view, &signed_view, 1400, &payer, false).unwrap_err();
        assert_eq!((stale.status(), stale.code()), (401, "stale_signature"));
        // A signature for the view does not cancel.
        let wrong_action = params(&payer, &signed(view, &payer, 1000), 1000);
        assert_eq!(authorize_job(cancel, &wrong_action, 1000, &payer, false).unwrap_err().status(), 401);
    }

    #[test]
    fn v_as_zero_or_one_is_accepted() {
        let wallet = format!("{:#x}", address_of(&key()));
        let action = Action::StorageList;
        let sig = signed(action, &wallet, 10);
        let mut bytes = hex::decode(&sig[2..]).unwrap();
        bytes[64] -= 27;
        assert!(verify(action, &params(&wallet, &hex::encode(bytes), 10), 10).is_ok());
    }

    #[test]
    fn stale_other_action_other_wallet_and_garbage_are_refused() {
        let wallet = format!("{:#x}", address_of(&key()));
        let action = Action::JobView { job_id: "job-1" };
        let sig = signed(action, &wallet, 1000);
        assert_eq!(verify(action, &params(&wallet, &sig, 1000), 1301), Err(AuthError::Stale { skew_s: 301 }));
        assert_eq!(verify(action, &params(&wallet, &sig, 1000), 699), Err(AuthError::Stale { skew_s: 301 }));
        let other_job = Action::JobView { job_id: "job-2" };
        assert!(matches!(verify(other_job, &params(&wallet, &sig, 1000), 1000), Err(AuthError::WrongSigner { .. })));
        let cancel = Action::JobCancel { job_id: "job-1" };
        assert!(matches!(verify(cancel, &params(&wallet, &sig, 1000), 1000), Err(AuthError::WrongSigner { .. })));
        let someone = "0x0000000000000000000000000000000000000001";
        assert!(matches!(verify(action, &params(someone, &sig, 1000), 1000), Err(AuthError::WrongSigner { .. })));
        assert!(matches!(verify(action, &params(&wallet, "0x1234", 1000), 1000), Err(AuthError::BadSignature(_))));
        assert_eq!(verify(action, &params("nope", &sig, 1000), 1000), Err(AuthError::BadWallet));
        let mut p = params(&wallet, &sig, 1000);
        p.timestamp = Some("yesterday".into());
        assert_eq!(verify(action, &p, 1000), Err(AuthError::BadTimestamp));
        p.signature = None;
        assert_eq!(verify(action, &p, 1000), Err(AuthError::Missing("signature")));
        assert!(SignedParams::default().is_empty());
    }
}
