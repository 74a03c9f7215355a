//! The x402 facilitator client: `/verify` and `/settle`. A transport failure is kept apart from a refusal,
//! because they mean opposite things to the payer: a refusal is final, an unreachable facilitator means
//! "nothing happened, try again".

use ouro_core::x402::{FacilitatorRequest, PaymentPayload, PaymentRequirements, SettlementResponse, VerifyResponse};
use serde::de::DeserializeOwned;

use crate::outbound::{post_json, OutboundError};

#[derive(Debug, thiserror::Error)]
pub enum FacilitatorError {
    #[error("facilitator {path}: {0}", path = .1)]
    Transport(OutboundError, &'static str),
    #[error("facilitator answered {path} with HTTP {status}: {body}")]
    BadStatus { path: &'static str, status: u16, body: String },
}

pub struct Facilitator<'a> {
    pub base_url: &'a str,
}

impl Facilitator<'_> {
    async fn call<T: DeserializeOwned>(
        &self,
        path: &'static str,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
        timeout_ms: u64,
    ) -> Result<T, FacilitatorError> {
        let body = FacilitatorRequest {
            x402_version: payload.x402_version,
            payment_payload: payload.clone(),
            payment_requirements: requirements.clone(),
        };
        let body = serde_json::to_string(&body).unwrap_or_default();
        let url = format!("{}{path}", self.base_url);
        let (status, text) =
            post_json(&url, &body, &[], timeout_ms).await.map_err(|e| FacilitatorError::Transport(e, path))?;
        // A refusal may come with a 4xx status and a well-formed answer: the answer decides, not the status.
        match serde_json::from_str::<T>(&text) {
            Ok(answer) if status < 500 => Ok(answer),
            _ => Err(FacilitatorError::BadStatus { path, status, body: text.chars().take(300).collect() }),
        }
    }

    pub async fn verify(
        &self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
        timeout_ms: u64,
    ) -> Result<VerifyResponse, FacilitatorError> {
        self.call("/verify", payload, requirements, timeout_ms).await
    }

    pub async fn settle(
        &self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
        timeout_ms: u64,
    ) -> Result<SettlementResponse, FacilitatorError> {
        self.call("/settle", payload, requirements, timeout_ms).await
    }
}
