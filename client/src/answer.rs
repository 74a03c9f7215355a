//! A submit answer as the server sent it, with the x402 headers decoded, and the reading of it: which answers
//! mean "pay this", "paid, here is your job", or one of the typed failures.

use ouro_core::pricing::format_usd;
use ouro_core::x402::{header, PaymentRequired, SettlementResponse};
use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::error::{ClientError, Result};

pub const PAYMENT_REQUIRED: &str = "payment-required";
pub const PAYMENT_RESPONSE: &str = "payment-response";
pub const PAYMENT_SIGNATURE: &str = "payment-signature";

/// One answer of `POST /api/compute/submit`, kept whole so that tests can look at any part of it.
#[derive(Debug, Clone)]
pub struct SubmitAnswer {
    pub status: u16,
    /// The JSON body; a body that is not JSON is kept as a JSON string, an empty one as `null`.
    pub body: Value,
    /// The decoded `PAYMENT-REQUIRED` header, when present.
    pub payment_required: Option<PaymentRequired>,
    /// The decoded `PAYMENT-RESPONSE` header, when present.
    pub payment_response: Option<SettlementResponse>,
    /// Every response header, raw (`Cache-Control`, `Retry-After`, CORS, ...).
    pub headers: HeaderMap,
}

impl SubmitAnswer {
    /// Decodes the x402 headers. A header that is present but undecodable is an error, not an absence: it is a
    /// server bug nobody should pay through.
    pub fn new(status: u16, headers: HeaderMap, body: &[u8]) -> Result<Self> {
        let what = || format!("POST /api/compute/submit (HTTP {status})");
        let decoded = |name: &'static str| -> Result<Option<String>> {
            match headers.get(name) {
                None => Ok(None),
                Some(v) => v.to_str().map(|s| Some(s.to_string())).map_err(|_| ClientError::BadBody {
                    what: what(),
                    detail: format!("header {name} is not ASCII"),
                }),
            }
        };
        let payment_required = decoded(PAYMENT_REQUIRED)?
            .map(|h| header::decode(&h))
            .transpose()
            .map_err(|source| ClientError::BadHeader { what: what(), header: "PAYMENT-REQUIRED", source })?;
        let payment_response = decoded(PAYMENT_RESPONSE)?
            .map(|h| header::decode(&h))
            .transpose()
            .map_err(|source| ClientError::BadHeader { what: what(), header: "PAYMENT-RESPONSE", source })?;
        Ok(SubmitAnswer { status, body: body_value(body), payment_required, payment_response, headers })
    }

    /// A body field as text.
    pub fn text(&self, field: &str) -> Option<&str> {
        self.body.get(field).and_then(Value::as_str)
    }

    /// The server's human-readable explanation (`message`, else `error`), or the raw body.
    pub fn message(&self) -> String {
        self.text("message")
            .or_else(|| self.text("error"))
            .map(str::to_string)
            .unwrap_or_else(|| match &self.body {
                Value::Null => "(empty body)".into(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
    }

    pub fn retry_after(&self) -> Option<String> {
        self.headers.get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_string)
    }

    /// The price the 402 names: the body's `price` string, else the atomic amount of the `exact` entry.
    pub fn price(&self) -> Option<String> {
        self.text("price").map(str::to_string).or_else(|| {
            let required = self.payment_required.as_ref()?;
            let amount = crate::sign::exact_requirements(required).ok()?.amount.parse().ok()?;
            Some(format_usd(amount))
        })
    }

    /// The requirements an unpaid submission must be answered with; anything else is a typed error.
    pub fn into_payment_required(self) -> Result<PaymentRequired> {
        match self.status {
            402 => self.payment_required.ok_or(ClientError::MissingPaymentRequired),
            _ => Err(self.failure(|status, message| ClientError::NotPaymentRequired { status, message })),
        }
    }

    /// The error a non-success answer stands for; `otherwise` covers statuses with no meaning of their own.
    pub fn failure(&self, otherwise: impl FnOnce(u16, String) -> ClientError) -> ClientError {
        match self.status {
            422 => ClientError::Invalid {
                field: self.text("field").unwrap_or("body").to_string(),
                message: self.message(),
            },
            429 | 503 => ClientError::Busy { status: self.status, retry_after: self.retry_after(), message: self.message() },
            _ => otherwise(self.status, self.message()),
        }
    }

    /// The error a refused paid submission stands for (402 after paying, 400 malformed, 409 conflict, ...).
    pub fn payment_refusal(&self) -> ClientError {
        let reason = self
            .text("reason")
            .or_else(|| self.text("code"))
            .or_else(|| self.payment_required.as_ref().and_then(|r| r.error.as_deref()))
            .or_else(|| self.payment_response.as_ref().and_then(|s| s.error_reason.as_deref()))
            .unwrap_or("unknown")
            .to_string();
        let settlement = self.payment_response.clone().map(Box::new);
        self.failure(|status, message| ClientError::PaymentRefused { status, reason, message, settlement })
    }
}

fn body_value(body: &[u8]) -> Value {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Value::Null;
    }
    serde_json::from_slice(body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ouro_core::x402::{PaymentRequirements, RequirementsExtra, Resource};
    use reqwest::header::HeaderValue;
    use serde_json::json;

    fn required() -> PaymentRequired {
        PaymentRequired {
            x402_version: 2,
            error: Some("invalid_exact_evm_payload_signature".into()),
            resource: Resource { url: "u".into(), description: None, mime_type: None },
            accepts: vec![PaymentRequirements {
                scheme: "exact".into(),
                network: "eip155:84532".into(),
                amount: "84100".into(),
                asset: "0x036CbD53842c5426634e7929541eC2318f3dCF7e".into(),
                pay_to: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8".into(),
                max_timeout_seconds: 300,
                extra: RequirementsExtra { name: "USDC".into(), version: "2".into(), ..Default::default() },
            }],
            extensions: None,
        }
    }

    fn answer(status: u16, headers: &[(&'static str, String)], body: Value) -> Result<SubmitAnswer> {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        SubmitAnswer::new(status, map, &serde_json::to_vec(&body).unwrap())
    }

    #[test]
    fn decodes_the_x402_headers_case_insensitively() {
        let a = answer(402, &[("payment-required", header::encode(&required()))], json!({"error": "x"})).unwrap();
        assert_eq!(a.payment_required, Some(required()));
        assert_eq!(a.price().as_deref(), Some("$0.0841"), "price falls back to the amount");
        assert_eq!(a.into_payment_required().unwrap(), required());
    }

    #[test]
    fn a_broken_header_is_an_error() {
        let err = answer(402, &[("payment-required", "%%%".into())], json!({})).unwrap_err();
        assert!(matches!(err, ClientError::BadHeader { header: "PAYMENT-REQUIRED", .. }), "{err}");
    }

    #[test]
    fn statuses_map_to_typed_errors() {
        let a = answer(422, &[], json!({"error": "cpus: must be from 1 to 8, got 9", "field": "cpus"})).unwrap();
        let err = a.into_payment_required().unwrap_err();
        assert_eq!(err.to_string(), "the service refused the submission: cpus: must be from 1 to 8, got 9");
        assert!(matches!(err, ClientError::Invalid { ref field, .. } if field == "cpus"));

        let mut a = answer(503, &[("retry-after", "10".into())], json!({"error": "no capacity"})).unwrap();
        assert!(matches!(a.payment_refusal(), ClientError::Busy { retry_after: Some(ref s), .. } if s == "10"));
        a.status = 200;
        assert!(matches!(a.into_payment_required(), Err(ClientError::NotPaymentRequired { status: 200, .. })));

        let a = answer(402, &[], json!({})).unwrap();
        assert!(matches!(a.into_payment_required(), Err(ClientError::MissingPaymentRequired)));
    }

    #[test]
    fn a_refused_payment_names_the_servers_reason() {
        let body = json!({"error": "Payment rejected", "reason": "invalid_exact_evm_payload_authorization_value",
                          "message": "authorization value 1 differs from the price 84100"});
        let a = answer(402, &[("payment-required", header::encode(&required()))], body).unwrap();
        match a.payment_refusal() {
            ClientError::PaymentRefused { status: 402, reason, message, settlement: None } => {
                assert_eq!(reason, "invalid_exact_evm_payload_authorization_value");
                assert_eq!(message, "authorization value 1 differs from the price 84100");
            }
            other => panic!("{other:?}"),
        }
        // Without a body reason, the header's `error` is the reason.
        let a = answer(402, &[("payment-required", header::encode(&required()))], json!({"error": "x"})).unwrap();
        assert!(matches!(a.payment_refusal(),
            ClientError::PaymentRefused { ref reason, .. } if reason == "invalid_exact_evm_payload_signature"));
        let a = answer(409, &[], json!({"error": "payment reused with another body", "code": "payment_conflict"})).unwrap();
        assert!(matches!(a.payment_refusal(),
            ClientError::PaymentRefused { status: 409, ref reason, .. } if reason == "payment_conflict"));
    }

    #[test]
    fn bodies_that_are_not_json_are_kept() {
        assert_eq!(body_value(b""), Value::Null);
        assert_eq!(body_value(b"oops"), json!("oops"));
        assert_eq!(body_value(br#"{"a":1}"#), json!({"a": 1}));
    }
}
