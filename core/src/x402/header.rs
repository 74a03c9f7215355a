//! The base64 JSON headers (`PAYMENT-REQUIRED`, `PAYMENT-SIGNATURE`, `PAYMENT-RESPONSE`): strict when we
//! write (standard alphabet, padded — the TypeScript client rejects anything else), liberal when we read.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use serde::{de::DeserializeOwned, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("header is not base64")]
    NotBase64,
    #[error("header is not the expected JSON: {0}")]
    BadJson(#[from] serde_json::Error),
}

pub fn encode<T: Serialize>(value: &T) -> String {
    // Serialising our own wire types cannot fail: they hold only strings, numbers and JSON values.
    let json = serde_json::to_vec(value).unwrap_or_default();
    STANDARD.encode(json)
}

pub fn decode<T: DeserializeOwned>(header: &str) -> Result<T, HeaderError> {
    let header = header.trim();
    let bytes = [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(header).ok())
        .ok_or(HeaderError::NotBase64)?;
    Ok(serde_json::from_slice(&bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn encodes_standard_padded() {
        let required = crate::x402::PaymentRequired {
            x402_version: 2,
            error: None,
            resource: crate::x402::Resource { url: "u".into(), description: None, mime_type: None },
            accepts: vec![],
            extensions: None,
        };
        let s = encode(&required);
        assert!(s.starts_with("eyJ4NDAyVmVyc2lvbiI6Mi"), "{s}");
        assert!(s.ends_with('='));
    }

    #[test]
    fn decodes_every_alphabet() {
        let v = json!({"a": "??>>", "x402Version": 2});
        let json = serde_json::to_vec(&v).unwrap();
        for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
            let back: Value = decode(&engine.encode(&json)).unwrap();
            assert_eq!(back, v);
        }
        assert!(matches!(decode::<Value>("not base64!"), Err(HeaderError::NotBase64)));
        assert!(matches!(decode::<Value>(&STANDARD.encode("{")), Err(HeaderError::BadJson(_))));
    }
}
