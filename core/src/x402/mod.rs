//! x402 version 2, scheme `exact` on EVM: the wire types, the header codec, the requirements a request gets,
//! the bound quote carried in them, and the local checks a payment must pass before the facilitator sees it;
//! version 1 for legacy clients (`v1`) and the `payment-identifier` extension.

pub mod checks;
pub mod header;
pub mod payment_identifier;
pub mod quote;
pub mod types;
pub mod v1;

pub use checks::{check_payment, PaymentRejection, VerifiedPayment};
pub use types::*;

use alloy_primitives::Address;

use crate::eip712::TokenDomain;

/// Where and in what a service is paid: configuration, never code (a deployment picks Base or Base Sepolia).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainProfile {
    /// CAIP-2, e.g. `eip155:84532`.
    pub network: String,
    pub asset: Address,
    /// The token's EIP-712 domain name and version (`extra.name`, `extra.version`).
    pub asset_name: String,
    pub asset_version: String,
    pub pay_to: Address,
    pub max_timeout_seconds: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("network {0:?} is not a CAIP-2 eip155 chain (expected eip155:<chain id>)")]
pub struct BadNetwork(pub String);

/// The chain id inside a CAIP-2 `eip155:<id>` network.
pub fn chain_id_of(network: &str) -> Result<u64, BadNetwork> {
    network
        .strip_prefix("eip155:")
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| BadNetwork(network.to_string()))
}

impl ChainProfile {
    pub fn chain_id(&self) -> Result<u64, BadNetwork> {
        chain_id_of(&self.network)
    }

    pub fn token_domain(&self) -> Result<TokenDomain, BadNetwork> {
        Ok(TokenDomain {
            name: self.asset_name.clone(),
            version: self.asset_version.clone(),
            chain_id: self.chain_id()?,
            verifying_contract: self.asset,
        })
    }

    /// The one `accepts` entry a request priced at `amount` atomic units gets, bound to `quote`.
    pub fn requirements(&self, amount: u64, quote: Option<String>) -> PaymentRequirements {
        PaymentRequirements {
            scheme: SCHEME_EXACT.to_string(),
            network: self.network.clone(),
            amount: amount.to_string(),
            asset: self.asset.to_checksum(None),
            pay_to: self.pay_to.to_checksum(None),
            max_timeout_seconds: self.max_timeout_seconds,
            extra: RequirementsExtra {
                name: self.asset_name.clone(),
                version: self.asset_version.clone(),
                quote,
                other: Default::default(),
            },
        }
    }
}

/// The Base Sepolia profile the unit tests of this module's checks share.
#[cfg(test)]
pub(crate) fn test_profile() -> ChainProfile {
    ChainProfile {
        network: "eip155:84532".into(),
        asset: "0x036CbD53842c5426634e7929541eC2318f3dCF7e".parse().unwrap(),
        asset_name: "USDC".into(),
        asset_version: "2".into(),
        pay_to: "0x209693Bc6afc0C5328bA36FaF03C514EF312287C".parse().unwrap(),
        max_timeout_seconds: 300,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_parse() {
        assert_eq!(chain_id_of("eip155:84532"), Ok(84532));
        assert_eq!(chain_id_of("eip155:8453"), Ok(8453));
        assert!(chain_id_of("base-sepolia").is_err());
        assert!(chain_id_of("eip155:").is_err());
    }
}
