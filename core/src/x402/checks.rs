//! The checks a payment must pass locally, without chain state, before the facilitator is asked: each a named
//! precondition with its own typed reason, mapped to a wire string in one place ([`PaymentRejection::code`]).
//! Balance, on-chain nonce state and smart-wallet signatures are left to the facilitator.

use alloy_primitives::{Address, B256};

use super::{parse_address, ChainProfile, MalformedField, PaymentPayload, PaymentRequirements, SCHEME_EXACT, X402_VERSION};
use crate::eip712::{authorization_digest, recover_signer, SignatureError};

/// Seconds `validBefore` must lie beyond now, so that the authorization is still valid when the settlement
/// transaction lands in a block.
pub const VALID_BEFORE_BUFFER_S: u64 = 6;
/// How far past `maxTimeoutSeconds` a `validBefore` may reach (clock skew between client and server).
pub const VALID_BEFORE_SLACK_S: u64 = 60;

/// A payment that passed every local check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedPayment {
    pub payer: Address,
    pub nonce: B256,
    pub amount: u64,
    pub valid_before: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentRejection {
    #[error("x402Version {0} is not supported (this server speaks 2)")]
    UnsupportedVersion(u8),
    #[error("scheme {0:?} is not supported (only \"exact\")")]
    UnsupportedScheme(String),
    #[error("network {0:?} is not the one this server is paid on")]
    WrongNetwork(String),
    #[error("asset {0} is not the token this server is paid in")]
    WrongAsset(String),
    #[error("the accepted requirements differ from the ones this request gets (field {0}); fetch a new quote")]
    RequirementsMismatch(&'static str),
    #[error("authorization pays {0}, not this server's payTo")]
    WrongRecipient(String),
    #[error("authorization value {given} differs from the price {expected}")]
    WrongAmount { given: String, expected: String },
    #[error("authorization field {0} is malformed")]
    Malformed(&'static str),
    #[error("authorization is not valid before {0}")]
    NotYetValid(u64),
    #[error("authorization expired or expires too soon (validBefore {0})")]
    Expired(u64),
    #[error("authorization validBefore {0} lies further ahead than maxTimeoutSeconds allows")]
    ValidTooLong(u64),
    #[error("signature is invalid: {0}")]
    BadSignature(SignatureError),
    #[error("signature recovers to {recovered}, not the payer {from}")]
    SignerMismatch { from: String, recovered: String },
}

impl PaymentRejection {
    /// The reason string sent to clients (`error` of the 402).
    pub fn code(&self) -> &'static str {
        use PaymentRejection::*;
        match self {
            UnsupportedVersion(_) => "invalid_x402_version",
            UnsupportedScheme(_) => "unsupported_scheme",
            WrongNetwork(_) => "invalid_network",
            WrongAsset(_) => "invalid_asset",
            RequirementsMismatch(_) => "requirements_mismatch",
            WrongRecipient(_) => "invalid_exact_evm_payload_recipient_mismatch",
            WrongAmount { .. } => "invalid_exact_evm_payload_authorization_value",
            Malformed(_) => "invalid_payload",
            NotYetValid(_) => "invalid_exact_evm_payload_authorization_valid_after",
            Expired(_) => "invalid_exact_evm_payload_authorization_valid_before",
            ValidTooLong(_) => "invalid_exact_evm_payload_authorization_valid_before",
            BadSignature(_) | SignerMismatch { .. } => "invalid_exact_evm_payload_signature",
        }
    }
}

fn assert_version(p: &PaymentPayload) -> Result<(), PaymentRejection> {
    if p.x402_version != X402_VERSION {
        return Err(PaymentRejection::UnsupportedVersion(p.x402_version));
    }
    Ok(())
}

fn assert_scheme_and_domain(accepted: &PaymentRequirements, profile: &ChainProfile) -> Result<(), PaymentRejection> {
    if accepted.scheme != SCHEME_EXACT {
        return Err(PaymentRejection::UnsupportedScheme(accepted.scheme.clone()));
    }
    if accepted.network != profile.network {
        return Err(PaymentRejection::WrongNetwork(accepted.network.clone()));
    }
    if parse_address(&accepted.asset) != Some(profile.asset) {
        return Err(PaymentRejection::WrongAsset(accepted.asset.clone()));
    }
    Ok(())
}

/// `accepted` must be exactly what we would issue for this request; the field named is the first that differs.
fn assert_requirements(accepted: &PaymentRequirements, expected: &PaymentRequirements) -> Result<(), PaymentRejection> {
    let field = if accepted.amount != expected.amount {
        "amount"
    } else if !same_address(&accepted.pay_to, &expected.pay_to) {
        "payTo"
    } else if !same_address(&accepted.asset, &expected.asset) {
        "asset"
    } else if accepted.max_timeout_seconds != expected.max_timeout_seconds {
        "maxTimeoutSeconds"
    } else if accepted.extra != expected.extra {
        "extra"
    } else {
        return Ok(());
    };
    Err(PaymentRejection::RequirementsMismatch(field))
}

fn assert_recipient_and_value(
    p: &PaymentPayload,
    expected: &PaymentRequirements,
) -> Result<u64, PaymentRejection> {
    let auth = &p.payload.authorization;
    if !same_address(&auth.to, &expected.pay_to) {
        return Err(PaymentRejection::WrongRecipient(auth.to.clone()));
    }
    let value: u64 = auth.value.parse().map_err(|_| PaymentRejection::Malformed("value"))?;
    if auth.value != expected.amount {
        return Err(PaymentRejection::WrongAmount { given: auth.value.clone(), expected: expected.amount.clone() });
    }
    Ok(value)
}

fn assert_time(p: &PaymentPayload, expected: &PaymentRequirements, now: u64) -> Result<u64, PaymentRejection> {
    let auth = &p.payload.authorization;
    let valid_after: u64 = auth.valid_after.parse().map_err(|_| PaymentRejection::Malformed("validAfter"))?;
    let valid_before: u64 = auth.valid_before.parse().map_err(|_| PaymentRejection::Malformed("validBefore"))?;
    if valid_after > now {
        return Err(PaymentRejection::NotYetValid(valid_after));
    }
    if valid_before < now + VALID_BEFORE_BUFFER_S {
        return Err(PaymentRejection::Expired(valid_before));
    }
    if valid_before > now + expected.max_timeout_seconds + VALID_BEFORE_SLACK_S {
        return Err(PaymentRejection::ValidTooLong(valid_before));
    }
    Ok(valid_before)
}

/// The payer and nonce of an authorization whose signature is the payer's own (checked against the token's
/// domain of `profile`, not against anything the client claims).
pub fn signer_and_nonce(p: &PaymentPayload, profile: &ChainProfile) -> Result<(Address, B256), PaymentRejection> {
    let auth = &p.payload.authorization;
    let message = auth.message().map_err(|MalformedField(field)| PaymentRejection::Malformed(field))?;
    let (from, nonce) = (message.from, message.nonce);
    let domain = profile.token_domain().map_err(|_| PaymentRejection::WrongNetwork(profile.network.clone()))?;
    let signature = hex::decode(p.payload.signature.trim_start_matches("0x"))
        .map_err(|_| PaymentRejection::Malformed("signature"))?;
    let recovered = recover_signer(&authorization_digest(&domain, &message), &signature)
        .map_err(PaymentRejection::BadSignature)?;
    if recovered != from {
        return Err(PaymentRejection::SignerMismatch {
            from: auth.from.clone(),
            recovered: recovered.to_checksum(None),
        });
    }
    Ok((from, nonce))
}

/// Runs every local check of a payment against the requirements `expected` that this request gets now.
pub fn check_payment(
    payment: &PaymentPayload,
    expected: &PaymentRequirements,
    profile: &ChainProfile,
    now: u64,
) -> Result<VerifiedPayment, PaymentRejection> {
    assert_version(payment)?;
    assert_scheme_and_domain(&payment.accepted, profile)?;
    assert_requirements(&payment.accepted, expected)?;
    let amount = assert_recipient_and_value(payment, expected)?;
    let valid_before = assert_time(payment, expected, now)?;
    let (payer, nonce) = signer_and_nonce(payment, profile)?;
    Ok(VerifiedPayment { payer, nonce, amount, valid_before })
}

fn same_address(a: &str, b: &str) -> bool {
    matches!((parse_address(a), parse_address(b)), (Some(x), Some(y)) if x == y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eip712::{address_of, sign_digest};
    use crate::x402::{Authorization, ExactEvmPayload};
    use k256::ecdsa::SigningKey;

    const NOW: u64 = 1_800_000_000;

    fn profile() -> ChainProfile {
        crate::x402::test_profile()
    }

    fn key() -> SigningKey {
        SigningKey::from_slice(&[0x11; 32]).unwrap()
    }

    /// A payment signed exactly as a correct client would, then passed through `tweak` before signing.
    fn pay(expected: &PaymentRequirements, tweak: impl FnOnce(&mut Authorization)) -> PaymentPayload {
        let mut auth = Authorization {
            from: address_of(&key()).to_checksum(None),
            to: expected.pay_to.clone(),
            value: expected.amount.clone(),
            valid_after: "0".into(),
            valid_before: (NOW + 300).to_string(),
            nonce: format!("0x{}", "ab".repeat(32)),
        };
        tweak(&mut auth);
        let message = auth.message().unwrap();
        let digest = authorization_digest(&profile().token_domain().unwrap(), &message);
        let sig = sign_digest(&key(), &digest).unwrap();
        PaymentPayload {
            x402_version: 2,
            resource: None,
            accepted: expected.clone(),
            payload: ExactEvmPayload { signature: format!("0x{}", hex::encode(sig)), authorization: auth },
            extensions: None,
        }
    }

    fn check(p: &PaymentPayload, expected: &PaymentRequirements) -> Result<VerifiedPayment, PaymentRejection> {
        check_payment(p, expected, &profile(), NOW)
    }

    #[test]
    fn a_correct_payment_passes() {
        let expected = profile().requirements(10_000, Some("q".into()));
        let v = check(&pay(&expected, |_| {}), &expected).unwrap();
        assert_eq!(v.payer, address_of(&key()));
        assert_eq!(v.amount, 10_000);
        assert_eq!(v.valid_before, NOW + 300);
    }

    #[test]
    fn addresses_compare_case_insensitively() {
        let expected = profile().requirements(10_000, None);
        let p = pay(&expected, |a| a.to = a.to.to_lowercase());
        assert!(check(&p, &expected).is_ok());
    }

    #[test]
    fn wrong_amount_is_refused() {
        let expected = profile().requirements(10_000, None);
        let p = pay(&expected, |a| a.value = "9999".into());
        assert_eq!(check(&p, &expected).unwrap_err().code(), "invalid_exact_evm_payload_authorization_value");
        // A client that lowered the amount in `accepted` too is caught by the requirements check.
        let mut p = pay(&expected, |a| a.value = "1".into());
        p.accepted.amount = "1".into();
        assert_eq!(check(&p, &expected), Err(PaymentRejection::RequirementsMismatch("amount")));
    }

    #[test]
    fn wrong_pay_to_is_refused() {
        let expected = profile().requirements(10_000, None);
        let thief = "0x0000000000000000000000000000000000000bad";
        let p = pay(&expected, |a| a.to = thief.into());
        assert_eq!(check(&p, &expected), Err(PaymentRejection::WrongRecipient(thief.into())));
    }

    #[test]
    fn time_window_is_enforced() {
        let expected = profile().requirements(10_000, None);
        let p = pay(&expected, |a| a.valid_before = (NOW - 1).to_string());
        assert_eq!(check(&p, &expected), Err(PaymentRejection::Expired(NOW - 1)));
        let p = pay(&expected, |a| a.valid_before = (NOW + 3).to_string());
        assert_eq!(check(&p, &expected), Err(PaymentRejection::Expired(NOW + 3)));
        let p = pay(&expected, |a| a.valid_after = (NOW + 10).to_string());
        assert_eq!(check(&p, &expected), Err(PaymentRejection::NotYetValid(NOW + 10)));
        let far = NOW + 300 + VALID_BEFORE_SLACK_S + 1;
        let p = pay(&expected, |a| a.valid_before = far.to_string());
        assert_eq!(check(&p, &expected), Err(PaymentRejection::ValidTooLong(far)));
    }

    #[test]
    fn tampered_signature_is_refused() {
        let expected = profile().requirements(10_000, None);
        let mut p = pay(&expected, |_| {});
        // Change the signed message after signing: the signature now recovers to a stranger.
        p.payload.authorization.nonce = format!("0x{}", "cd".repeat(32));
        assert!(matches!(check(&p, &expected), Err(PaymentRejection::SignerMismatch { .. })));
        let mut p = pay(&expected, |_| {});
        p.payload.signature.truncate(p.payload.signature.len() - 2);
        assert_eq!(check(&p, &expected), Err(PaymentRejection::BadSignature(SignatureError::BadLength(64))));
    }

    #[test]
    fn foreign_network_asset_scheme_and_version_are_refused() {
        let expected = profile().requirements(10_000, None);
        let mut p = pay(&expected, |_| {});
        p.x402_version = 1;
        assert_eq!(check(&p, &expected), Err(PaymentRejection::UnsupportedVersion(1)));
        let mut p = pay(&expected, |_| {});
        p.accepted.network = "eip155:8453".into();
        assert_eq!(check(&p, &expected), Err(PaymentRejection::WrongNetwork("eip155:8453".into())));
        let mut p = pay(&expected, |_| {});
        p.accepted.asset = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913".into();
        assert!(matches!(check(&p, &expected), Err(PaymentRejection::WrongAsset(_))));
        let mut p = pay(&expected, |_| {});
        p.accepted.scheme = "upto".into();
        assert_eq!(check(&p, &expected), Err(PaymentRejection::UnsupportedScheme("upto".into())));
    }

    #[test]
    fn a_changed_quote_is_a_requirements_mismatch() {
        let expected = profile().requirements(10_000, Some("1.aa".into()));
        let mut p = pay(&expected, |_| {});
        p.accepted.extra.quote = Some("1.bb".into());
        assert_eq!(check(&p, &expected), Err(PaymentRejection::RequirementsMismatch("extra")));
    }
}
