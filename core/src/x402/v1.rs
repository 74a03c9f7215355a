//! x402 version 1, for legacy clients: requirements in the 402 body (`maxAmountRequired`, plain network names,
//! the resource inside each requirement), the payment in `X-PAYMENT`, the answer in `X-PAYMENT-RESPONSE`.
//!
//! The signed part (`payload`: signature and EIP-3009 authorization) is the same in both versions, so a v1
//! payment is turned into the v2 payment it stands for ([`PaymentPayloadV1::upgrade`]) and from there on goes
//! through the one pipeline: the same local checks, the same facilitator call, the same ledger.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{
    ExactEvmPayload, PaymentPayload, PaymentRejection, PaymentRequirements, Resource, SettlementResponse, SCHEME_EXACT,
};

pub const X402_VERSION_V1: u8 = 1;
/// The request header of a v1 payment.
pub const PAYMENT_HEADER_V1: &str = "x-payment";
/// The response header of a v1 settlement.
pub const RESPONSE_HEADER_V1: &str = "X-PAYMENT-RESPONSE";

/// CAIP-2 networks and their v1 names.
const NETWORK_NAMES: [(&str, &str); 2] = [("eip155:8453", "base"), ("eip155:84532", "base-sepolia")];

/// The v1 name of a CAIP-2 network (`eip155:84532` → `base-sepolia`); `None` for a chain v1 has no name for.
pub fn network_name(caip2: &str) -> Option<&'static str> {
    NETWORK_NAMES.iter().find(|(id, _)| *id == caip2).map(|(_, name)| *name)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequirementsV1 {
    pub scheme: String,
    pub network: String,
    /// Atomic units as a decimal string; for `exact` the amount itself.
    pub max_amount_required: String,
    pub resource: String,
    pub description: String,
    pub mime_type: String,
    pub pay_to: String,
    pub max_timeout_seconds: u64,
    pub asset: String,
    pub extra: Value,
}

impl PaymentRequirementsV1 {
    /// The v1 form of the v2 requirements `req` for `resource`; `None` when the network has no v1 name.
    pub fn from_v2(req: &PaymentRequirements, resource: &Resource) -> Option<Self> {
        Some(PaymentRequirementsV1 {
            scheme: req.scheme.clone(),
            network: network_name(&req.network)?.to_string(),
            max_amount_required: req.amount.clone(),
            resource: resource.url.clone(),
            description: resource.description.clone().unwrap_or_default(),
            mime_type: resource.mime_type.clone().unwrap_or_else(|| "application/json".into()),
            pay_to: req.pay_to.clone(),
            max_timeout_seconds: req.max_timeout_seconds,
            asset: req.asset.clone(),
            extra: json!({ "name": req.extra.name, "version": req.extra.version }),
        })
    }
}

/// A decoded `X-PAYMENT`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentPayloadV1 {
    pub x402_version: u8,
    pub scheme: String,
    pub network: String,
    pub payload: ExactEvmPayload,
}

impl PaymentPayloadV1 {
    /// The v2 payment this v1 payment stands for, against the requirements `expected` this request gets now. A
    /// v1 payment does not echo the requirements it saw, so it pays today's price: `accepted` is `expected`,
    /// and the authorization's value is then checked against its amount like any other payment's.
    pub fn upgrade(self, expected: &PaymentRequirements) -> Result<PaymentPayload, PaymentRejection> {
        if self.x402_version != X402_VERSION_V1 {
            return Err(PaymentRejection::UnsupportedVersion(self.x402_version));
        }
        if self.scheme != SCHEME_EXACT {
            return Err(PaymentRejection::UnsupportedScheme(self.scheme));
        }
        if network_name(&expected.network) != Some(self.network.as_str()) {
            return Err(PaymentRejection::WrongNetwork(self.network));
        }
        Ok(PaymentPayload {
            x402_version: super::X402_VERSION,
            resource: None,
            accepted: expected.clone(),
            payload: self.payload,
            extensions: None,
        })
    }
}

/// The v1 form of a settlement answer: the network by its v1 name.
pub fn settlement_v1(settlement: &SettlementResponse) -> SettlementResponse {
    let mut v1 = settlement.clone();
    if let Some(name) = network_name(&settlement.network) {
        v1.network = name.to_string();
    }
    v1
}

/// The two ways a client can pay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IncomingPayment {
    V2(Box<PaymentPayload>),
    V1(Box<PaymentPayloadV1>),
}

impl IncomingPayment {
    pub fn version(&self) -> u8 {
        match self {
            IncomingPayment::V2(_) => super::X402_VERSION,
            IncomingPayment::V1(_) => X402_VERSION_V1,
        }
    }

    /// The signed part, identical in both versions.
    pub fn signed(&self) -> &ExactEvmPayload {
        match self {
            IncomingPayment::V2(p) => &p.payload,
            IncomingPayment::V1(p) => &p.payload,
        }
    }

    /// The v2 payment, with `expected` standing in for the requirements a v1 client does not echo.
    pub fn into_v2(self, expected: &PaymentRequirements) -> Result<PaymentPayload, PaymentRejection> {
        match self {
            IncomingPayment::V2(p) => Ok(*p),
            IncomingPayment::V1(p) => p.upgrade(expected),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PaymentHeaderError {
    #[error("{0}")]
    Header(#[from] super::header::HeaderError),
    #[error("x402Version {0} is not supported (this server speaks 1 and 2)")]
    Version(u64),
}

/// Decodes a payment header of either version (the version field inside decides, not the header's name).
pub fn decode_payment(header: &str) -> Result<IncomingPayment, PaymentHeaderError> {
    let value: Value = super::header::decode(header)?;
    let version = value.get("x402Version").and_then(Value::as_u64).unwrap_or(0);
    let parsed = match version {
        1 => IncomingPayment::V1(Box::new(serde_json::from_value(value).map_err(super::header::HeaderError::from)?)),
        2 => IncomingPayment::V2(Box::new(serde_json::from_value(value).map_err(super::header::HeaderError::from)?)),
        other => return Err(PaymentHeaderError::Version(other)),
    };
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::x402::{header, Authorization, ChainProfile};

    fn profile() -> ChainProfile {
        crate::x402::test_profile()
    }

    fn signed() -> ExactEvmPayload {
        ExactEvmPayload {
            signature: format!("0x{}", "11".repeat(65)),
            authorization: Authorization {
                from: "0x0000000000000000000000000000000000000001".into(),
                to: "0x209693Bc6afc0C5328bA36FaF03C514EF312287C".into(),
                value: "1000".into(),
                valid_after: "0".into(),
                valid_before: "1".into(),
                nonce: format!("0x{}", "ab".repeat(32)),
            },
        }
    }

    #[test]
    fn requirements_have_the_v1_shape() {
        let req = profile().requirements(84_100, Some("q".into()));
        let resource = Resource { url: "http://x/api/compute/submit".into(), description: None, mime_type: None };
        let v1 = serde_json::to_value(PaymentRequirementsV1::from_v2(&req, &resource).unwrap()).unwrap();
        assert_eq!(v1["network"], "base-sepolia");
        assert_eq!(v1["maxAmountRequired"], "84100");
        assert_eq!(v1["resource"], "http://x/api/compute/submit");
        assert_eq!(v1["extra"], json!({"name": "USDC", "version": "2"}));
        assert!(v1.get("amount").is_none());
        let mut other = req.clone();
        other.network = "eip155:1".into();
        assert!(PaymentRequirementsV1::from_v2(&other, &resource).is_none());
    }

    #[test]
    fn a_v1_payment_becomes_the_v2_payment_it_stands_for() {
        let expected = profile().requirements(1000, Some("q".into()));
        let v1 = PaymentPayloadV1 {
            x402_version: 1,
            scheme: "exact".into(),
            network: "base-sepolia".into(),
            payload: signed(),
        };
        let decoded = decode_payment(&header::encode(&v1)).unwrap();
        assert_eq!(decoded.version(), 1);
        let v2 = decoded.into_v2(&expected).unwrap();
        assert_eq!((v2.x402_version, &v2.accepted, &v2.payload), (2, &expected, &signed()));
        let wrong = PaymentPayloadV1 { network: "base".into(), ..v1.clone() };
        assert_eq!(wrong.upgrade(&expected), Err(PaymentRejection::WrongNetwork("base".into())));
        let upto = PaymentPayloadV1 { scheme: "upto".into(), ..v1 };
        assert_eq!(upto.upgrade(&expected), Err(PaymentRejection::UnsupportedScheme("upto".into())));
    }

    #[test]
    fn versions_are_told_apart_by_their_field() {
        assert!(matches!(
            decode_payment(&header::encode(&json!({"x402Version": 3}))),
            Err(PaymentHeaderError::Version(3))
        ));
        assert!(matches!(decode_payment("???"), Err(PaymentHeaderError::Header(_))));
    }

    #[test]
    fn v1_settlements_name_the_network() {
        let s = SettlementResponse {
            success: true,
            error_reason: None,
            error_message: None,
            payer: None,
            transaction: "0x1".into(),
            network: "eip155:84532".into(),
            amount: None,
        };
        assert_eq!(settlement_v1(&s).network, "base-sepolia");
    }
}
