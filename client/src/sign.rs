//! Paying a 402: the EIP-3009 authorization for the `exact` requirements, signed locally under the token's
//! EIP-712 domain. The key never leaves this process; only the signature does.

use std::time::{SystemTime, UNIX_EPOCH};

use k256::ecdsa::SigningKey;
use ouro_core::eip712::{address_of, authorization_digest, sign_digest, TokenDomain, TransferWithAuthorization};
use ouro_core::x402::{
    Authorization, ExactEvmPayload, MalformedField, PaymentPayload, PaymentRequired, PaymentRequirements, SCHEME_EXACT,
    X402_VERSION,
};
use rand::RngCore;

use crate::error::{ClientError, Result};

/// The `exact` entry of a 402's `accepts` (the only scheme Ouro speaks).
pub fn exact_requirements(required: &PaymentRequired) -> Result<&PaymentRequirements> {
    required.accepts.iter().find(|r| r.scheme == SCHEME_EXACT).ok_or_else(|| {
        let offered: Vec<&str> = required.accepts.iter().map(|r| r.scheme.as_str()).collect();
        ClientError::NoExactScheme(if offered.is_empty() { "none".into() } else { offered.join(", ") })
    })
}

/// Signs a payment for `required` now; see [`sign_payment_at`].
pub fn sign_payment(
    key: &SigningKey,
    required: &PaymentRequired,
    tweak: impl FnOnce(&mut Authorization),
) -> Result<PaymentPayload> {
    sign_payment_at(key, required, unix_now(), tweak)
}

/// Signs a payment for `required` as of unix time `now`: the authorization a correct client sends, passed
/// through `tweak` before it is signed (so a tampered field is still correctly signed, and only the server's
/// own checks can catch it).
pub fn sign_payment_at(
    key: &SigningKey,
    required: &PaymentRequired,
    now: u64,
    tweak: impl FnOnce(&mut Authorization),
) -> Result<PaymentPayload> {
    let accepted = exact_requirements(required)?;
    let mut authorization = Authorization {
        from: address_of(key).to_checksum(None),
        to: accepted.pay_to.clone(),
        value: accepted.amount.clone(),
        // What current SDK clients send: valid from the epoch, until the server's timeout has passed.
        valid_after: "0".into(),
        valid_before: now.saturating_add(accepted.max_timeout_seconds).to_string(),
        nonce: random_nonce(),
    };
    tweak(&mut authorization);
    let digest = authorization_digest(&token_domain(accepted)?, &message_of(&authorization)?);
    let signature = sign_digest(key, &digest)?;
    Ok(PaymentPayload {
        x402_version: X402_VERSION,
        resource: serde_json::to_value(&required.resource).ok(),
        // Servers compare `accepted` with what they issued field for field: copy it, never rebuild it.
        accepted: accepted.clone(),
        payload: ExactEvmPayload { signature: format!("0x{}", hex::encode(signature)), authorization },
        extensions: None,
    })
}

fn token_domain(accepted: &PaymentRequirements) -> Result<TokenDomain> {
    accepted.token_domain().map_err(|MalformedField(field)| ClientError::BadRequirements {
        field,
        value: if field == "asset" { accepted.asset.clone() } else { accepted.network.clone() },
    })
}

fn message_of(auth: &Authorization) -> Result<TransferWithAuthorization> {
    auth.message().map_err(|MalformedField(field)| {
        let value = match field {
            "from" => &auth.from,
            "to" => &auth.to,
            "value" => &auth.value,
            "validAfter" => &auth.valid_after,
            "validBefore" => &auth.valid_before,
            _ => &auth.nonce,
        };
        ClientError::BadAuthorization { field, value: value.clone() }
    })
}

/// 32 random bytes: EIP-3009 nonces are not sequential, only never reused per payer.
fn random_nonce() -> String {
    let mut nonce = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut nonce);
    format!("0x{}", hex::encode(nonce))
}

pub(crate) fn unix_now() -> u64 {
    // A clock before 1970 is a broken machine; 0 then yields an already-expired authorization the server refuses.
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ouro_core::x402::header;
    use ouro_core::x402::{check_payment, ChainProfile, PaymentRejection, Resource};

    const ANVIL_0: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
    const NOW: u64 = 1_800_000_000;

    fn key() -> SigningKey {
        crate::key_from_hex(ANVIL_0).unwrap()
    }

    fn profile() -> ChainProfile {
        ChainProfile {
            network: "eip155:84532".into(),
            asset: "0x036CbD53842c5426634e7929541eC2318f3dCF7e".parse().unwrap(),
            asset_name: "USDC".into(),
            asset_version: "2".into(),
            pay_to: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8".parse().unwrap(),
            max_timeout_seconds: 300,
        }
    }

    fn required(requirements: PaymentRequirements) -> PaymentRequired {
        PaymentRequired {
            x402_version: 2,
            error: Some("Payment required".into()),
            resource: Resource {
                url: "http://127.0.0.1:8787/api/compute/submit".into(),
                description: Some("Run a script".into()),
                mime_type: Some("application/json".into()),
            },
            accepts: vec![requirements],
            extensions: None,
        }
    }

    #[test]
    fn a_signed_payment_passes_the_servers_checks() {
        let expected = profile().requirements(84_100, Some("1800000300.abcdef".into()));
        let p = sign_payment_at(&key(), &required(expected.clone()), NOW, |_| {}).unwrap();
        let verified = check_payment(&p, &expected, &profile(), NOW).unwrap();
        assert_eq!(verified.payer, address_of(&key()));
        assert_eq!(verified.amount, 84_100);
        assert_eq!(verified.valid_before, NOW + 300);
        assert_eq!(p.accepted, expected, "accepted is copied verbatim");
        assert_eq!(p.x402_version, 2);
        assert_eq!(p.resource.as_ref().unwrap()["url"], "http://127.0.0.1:8787/api/compute/submit");
        assert_eq!(p.payload.authorization.valid_after, "0");
        assert_eq!(p.payload.signature.len(), 2 + 130);
        assert_eq!(p.payload.authorization.nonce.len(), 2 + 64);
    }

    #[test]
    fn the_current_clock_is_used_by_default() {
        let expected = profile().requirements(10_000, None);
        let p = sign_payment(&key(), &required(expected.clone()), |_| {}).unwrap();
        assert!(check_payment(&p, &expected, &profile(), unix_now()).is_ok());
    }

    #[test]
    fn nonces_are_fresh_per_payment() {
        let r = required(profile().requirements(10_000, None));
        let a = sign_payment_at(&key(), &r, NOW, |_| {}).unwrap();
        let b = sign_payment_at(&key(), &r, NOW, |_| {}).unwrap();
        assert_ne!(a.payload.authorization.nonce, b.payload.authorization.nonce);
    }

    #[test]
    fn tweaks_are_signed_so_only_the_server_rules_catch_them() {
        let expected = profile().requirements(10_000, None);
        let r = required(expected.clone());
        let check = |p: &PaymentPayload| check_payment(p, &expected, &profile(), NOW);

        let p = sign_payment_at(&key(), &r, NOW, |a| a.value = "9999".into()).unwrap();
        assert_eq!(p.payload.authorization.value, "9999");
        assert!(matches!(check(&p), Err(PaymentRejection::WrongAmount { .. })));

        let thief = "0x0000000000000000000000000000000000000bad";
        let p = sign_payment_at(&key(), &r, NOW, |a| a.to = thief.into()).unwrap();
        assert_eq!(check(&p), Err(PaymentRejection::WrongRecipient(thief.into())));

        let p = sign_payment_at(&key(), &r, NOW, |a| a.valid_before = (NOW - 1).to_string()).unwrap();
        assert_eq!(check(&p), Err(PaymentRejection::Expired(NOW - 1)));

        // The signature covers the tweaked message: checking signer and nonce alone still passes, which proves
        // the tweak happened before signing, not after.
        let p = sign_payment_at(&key(), &r, NOW, |a| a.value = "1".into()).unwrap();
        let (payer, _) = ouro_core::x402::checks::signer_and_nonce(&p, &profile()).unwrap();
        assert_eq!(payer, address_of(&key()));
    }

    #[test]
    fn a_tweak_that_breaks_the_message_is_a_typed_error() {
        let r = required(profile().requirements(10_000, None));
        let err = sign_payment_at(&key(), &r, NOW, |a| a.nonce = "0x12".into()).unwrap_err();
        assert!(matches!(err, ClientError::BadAuthorization { field: "nonce", .. }), "{err}");
        let err = sign_payment_at(&key(), &r, NOW, |a| a.to = "nobody".into()).unwrap_err();
        assert!(matches!(err, ClientError::BadAuthorization { field: "to", .. }), "{err}");
    }

    #[test]
    fn picks_exact_and_refuses_requirements_it_cannot_sign() {
        let mut other = profile().requirements(10_000, None);
        other.scheme = "upto".into();
        let exact = profile().requirements(10_000, None);
        let mut r = required(other.clone());
        r.accepts.push(exact.clone());
        assert_eq!(sign_payment_at(&key(), &r, NOW, |_| {}).unwrap().accepted, exact);

        let err = sign_payment_at(&key(), &required(other), NOW, |_| {}).unwrap_err();
        assert_eq!(err.to_string(), "the 402 offers no `exact` payment (schemes offered: upto)");

        let mut bad = profile().requirements(10_000, None);
        bad.network = "base-sepolia".into();
        assert!(matches!(sign_payment_at(&key(), &required(bad), NOW, |_| {}), Err(ClientError::BadRequirements { field: "network", .. })));
    }

    #[test]
    fn the_payment_header_round_trips() {
        let r = required(profile().requirements(10_000, Some("q".into())));
        let p = sign_payment_at(&key(), &r, NOW, |_| {}).unwrap();
        let encoded = header::encode(&p);
        assert!(encoded.starts_with("eyJ4NDAyVmVyc2lvbiI6Mi"), "{encoded}");
        assert_eq!(header::decode::<PaymentPayload>(&encoded).unwrap(), p);
        let required_back: PaymentRequired = header::decode(&header::encode(&r)).unwrap();
        assert_eq!(required_back, r);
    }
}
