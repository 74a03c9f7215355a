//! The x402 `payment-identifier` extension: a client-chosen idempotency key carried in the payment's
//! `extensions`. The same id with the same payment is answered with what that payment got; the same id with a
//! different payment is a conflict (409). Declared in every 402 so that SDK clients with the extension use it.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::ExactEvmPayload;

pub const PAYMENT_IDENTIFIER: &str = "payment-identifier";
pub const MIN_LEN: usize = 16;
pub const MAX_LEN: usize = 128;

/// The extension as a server declares it in `PaymentRequired.extensions` (optional for clients).
pub fn declaration() -> Value {
    json!({
        "info": { "required": false },
        "schema": {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {
                "required": { "type": "boolean" },
                "id": { "type": "string", "minLength": MIN_LEN, "maxLength": MAX_LEN, "pattern": "^[a-zA-Z0-9_-]+$" }
            },
            "required": ["required"]
        }
    })
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("extensions.payment-identifier.info.id must be {MIN_LEN}-{MAX_LEN} characters of a-z, A-Z, 0-9, _ and -")]
pub struct InvalidPaymentId;

/// The client's payment id in a payment's `extensions`, if it sent one.
pub fn extract(extensions: Option<&Value>) -> Result<Option<String>, InvalidPaymentId> {
    let Some(id) =
        extensions.and_then(|e| e.get(PAYMENT_IDENTIFIER)).and_then(|e| e.get("info")).and_then(|i| i.get("id"))
    else {
        return Ok(None);
    };
    let id = id.as_str().ok_or(InvalidPaymentId)?;
    let well_formed = (MIN_LEN..=MAX_LEN).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !well_formed {
        return Err(InvalidPaymentId);
    }
    Ok(Some(id.to_string()))
}

/// What "the same payment" means for an id: the same signed authorization (hex SHA-256 of its JSON).
pub fn fingerprint(signed: &ExactEvmPayload) -> String {
    hex::encode(Sha256::digest(serde_json::to_vec(signed).unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_read_and_checked() {
        let ext = |id: Value| json!({ PAYMENT_IDENTIFIER: { "info": { "required": false, "id": id } } });
        assert_eq!(extract(None), Ok(None));
        assert_eq!(extract(Some(&json!({ PAYMENT_IDENTIFIER: declaration() }))), Ok(None), "a declaration echoed back");
        assert_eq!(extract(Some(&ext(json!("pay_7d5d747be160e280")))), Ok(Some("pay_7d5d747be160e280".into())));
        assert_eq!(extract(Some(&ext(json!("short")))), Err(InvalidPaymentId));
        assert_eq!(extract(Some(&ext(json!("pay_7d5d747be160e28!")))), Err(InvalidPaymentId));
        assert_eq!(extract(Some(&ext(json!("x".repeat(129))))), Err(InvalidPaymentId));
        assert_eq!(extract(Some(&ext(json!(12345678901234567u64)))), Err(InvalidPaymentId));
    }
}
