//! x402 v2 wire types (camelCase JSON). Unknown fields inside `extra` are kept so that the requirements a
//! client echoes back in `accepted` compare equal to what we issued, field for field.

use alloy_primitives::{Address, B256, U256};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::eip712::{TokenDomain, TransferWithAuthorization};

pub const X402_VERSION: u8 = 2;
pub const SCHEME_EXACT: &str = "exact";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequired {
    pub x402_version: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub resource: Resource,
    pub accepts: Vec<PaymentRequirements>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resource {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequirements {
    pub scheme: String,
    pub network: String,
    /// Atomic units as a decimal string.
    pub amount: String,
    pub asset: String,
    pub pay_to: String,
    pub max_timeout_seconds: u64,
    pub extra: RequirementsExtra,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RequirementsExtra {
    /// EIP-712 domain name of the token.
    pub name: String,
    /// EIP-712 domain version of the token.
    pub version: String,
    /// Ouro's bound quote: lets the paid retry keep the price the client saw (see `x402::quote`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quote: Option<String>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentPayload {
    pub x402_version: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<Value>,
    pub accepted: PaymentRequirements,
    pub payload: ExactEvmPayload,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExactEvmPayload {
    /// `0x` + 65 bytes `r ‖ s ‖ v`.
    pub signature: String,
    pub authorization: Authorization,
}

/// The EIP-3009 authorization; numbers are decimal strings, `nonce` is 32 bytes hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Authorization {
    pub from: String,
    pub to: String,
    pub value: String,
    pub valid_after: String,
    pub valid_before: String,
    pub nonce: String,
}

/// The facilitator's `/verify` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyResponse {
    pub is_valid: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer: Option<String>,
}

/// The facilitator's `/settle` answer, and what we send back in `PAYMENT-RESPONSE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SettlementResponse {
    pub success: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer: Option<String>,
    #[serde(default)]
    pub transaction: String,
    pub network: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<String>,
}

/// The body of `/verify` and `/settle`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FacilitatorRequest {
    pub x402_version: u8,
    pub payment_payload: PaymentPayload,
    pub payment_requirements: PaymentRequirements,
}

/// An address in any letter case: checksums are a display aid, and clients lower-case addresses freely.
pub fn parse_address(s: &str) -> Option<Address> {
    s.to_ascii_lowercase().parse().ok()
}

/// The authorization field that is not a well-formed address, number or nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("authorization field {0} is malformed")]
pub struct MalformedField(pub &'static str);

impl Authorization {
    /// The EIP-3009 message this authorization stands for (what is signed, and what the signature is checked on).
    pub fn message(&self) -> Result<TransferWithAuthorization, MalformedField> {
        let address = |field, v: &str| parse_address(v).ok_or(MalformedField(field));
        let number = |field, v: &str| v.parse::<U256>().map_err(|_| MalformedField(field));
        Ok(TransferWithAuthorization {
            from: address("from", &self.from)?,
            to: address("to", &self.to)?,
            value: number("value", &self.value)?,
            validAfter: number("validAfter", &self.valid_after)?,
            validBefore: number("validBefore", &self.valid_before)?,
            nonce: self.nonce.parse::<B256>().map_err(|_| MalformedField("nonce"))?,
        })
    }
}

impl PaymentRequirements {
    /// The token's EIP-712 domain as these requirements describe it (`extra`, the CAIP-2 chain, the asset).
    pub fn token_domain(&self) -> Result<TokenDomain, MalformedField> {
        Ok(TokenDomain {
            name: self.extra.name.clone(),
            version: self.extra.version.clone(),
            chain_id: super::chain_id_of(&self.network).map_err(|_| MalformedField("network"))?,
            verifying_contract: parse_address(&self.asset).ok_or(MalformedField("asset"))?,
        })
    }
}
