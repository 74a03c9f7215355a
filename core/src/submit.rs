//! What a valid submission is. Every rule is checked here, before any price is given or payment taken, and
//! every violation names the field it is about.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::job::{DEFAULT_IMAGE, IMAGE_ALIASES};
use crate::pricing::{PriceRequest, SubmissionMode};

pub const MAX_SCRIPT_CHARS: usize = 65_536;
pub const MIN_CPUS: u32 = 1;
pub const MAX_CPUS: u32 = 8;
pub const MIN_TIME_LIMIT_MIN: u32 = 1;
pub const MAX_TIME_LIMIT_MIN: u32 = 60;
pub const DEFAULT_CPUS: u32 = 1;
pub const DEFAULT_TIME_LIMIT_MIN: u32 = 1;
/// A raw body larger than this is refused before it is parsed.
pub const MAX_BODY_BYTES: usize = 11 * 1024 * 1024;

/// Fields the public contract defines but this server does not serve yet: refused by name, not ignored,
/// so nobody believes a webhook or a mount was set up when it was not.
const NOT_YET_SUPPORTED: [&str; 4] = ["files", "entrypoint", "webhook_url", "mount_storage"];
const KNOWN: [&str; 5] = ["script", "cpus", "time_limit_min", "image", "submitter_address"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: String,
    pub message: String,
}

fn invalid(field: &str, message: impl Into<String>) -> ValidationError {
    ValidationError { field: field.to_string(), message: message.into() }
}

/// A submission that passed every rule, with defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    pub script: String,
    pub cpus: u32,
    pub time_limit_min: u32,
    pub image: String,
    pub submitter_address: Option<String>,
}

impl JobSpec {
    pub fn price_request(&self) -> PriceRequest {
        PriceRequest { cpus: self.cpus, time_limit_min: self.time_limit_min, mode: SubmissionMode::Script }
    }

    /// A digest of the canonical spec: the same payment sent with a different body is told apart by it.
    pub fn digest(&self) -> String {
        // Field order is fixed by the struct, so the JSON is canonical.
        let json = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(Sha256::digest(json))
    }
}

fn integer(body: &Map<String, Value>, field: &str, default: u32, min: u32, max: u32) -> Result<u32, ValidationError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Number(n)) => {
            let v = n
                .as_u64()
                .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0).map(|f| f as u64))
                .ok_or_else(|| invalid(field, format!("must be a whole number from {min} to {max}")))?;
            in_bounds(field, v, min, max)
        }
        Some(_) => Err(invalid(field, format!("must be a whole number from {min} to {max}"))),
    }
}

fn in_bounds(field: &str, v: u64, min: u32, max: u32) -> Result<u32, ValidationError> {
    if v < u64::from(min) || v > u64::from(max) {
        return Err(invalid(field, format!("must be from {min} to {max}, got {v}")));
    }
    Ok(v as u32)
}

fn query_integer(field: &str, raw: Option<&str>, default: u32, min: u32, max: u32) -> Result<u32, ValidationError> {
    match raw.map(str::trim) {
        None | Some("") => Ok(default),
        Some(raw) => {
            let v = raw.parse().map_err(|_| invalid(field, format!("must be a whole number from {min} to {max}")))?;
            in_bounds(field, v, min, max)
        }
    }
}

/// Validates the query of `GET /api/price` with the same bounds and defaults as a submission.
pub fn validate_price_query(
    cpus: Option<&str>,
    time_limit_min: Option<&str>,
    submission_mode: Option<&str>,
) -> Result<PriceRequest, ValidationError> {
    let cpus = query_integer("cpus", cpus, DEFAULT_CPUS, MIN_CPUS, MAX_CPUS)?;
    let time_limit_min =
        query_integer("time_limit_min", time_limit_min, DEFAULT_TIME_LIMIT_MIN, MIN_TIME_LIMIT_MIN, MAX_TIME_LIMIT_MIN)?;
    let mode = match submission_mode.map(str::trim) {
        None | Some("") => SubmissionMode::Script,
        Some(m) => SubmissionMode::parse(m)
            .ok_or_else(|| invalid("submission_mode", "must be \"script\" or \"multi_file\""))?,
    };
    Ok(PriceRequest { cpus, time_limit_min, mode })
}

fn optional_string<'a>(body: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>, ValidationError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(field, "must be a string")),
    }
}

/// `0x` + 40 hex digits, returned lower-case.
pub fn parse_wallet(s: &str) -> Option<String> {
    let hex = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"))?;
    (hex.len() == 40 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| format!("0x{}", hex.to_ascii_lowercase()))
}

/// Validates a submit body (raw bytes, as received).
pub fn validate(body: &[u8]) -> Result<JobSpec, ValidationError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(invalid("body", format!("is {} bytes; at most {MAX_BODY_BYTES} are accepted", body.len())));
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| invalid("body", format!("is not valid JSON: {e}")))?;
    let Value::Object(body) = value else {
        return Err(invalid("body", "must be a JSON object"));
    };
    for key in body.keys() {
        if NOT_YET_SUPPORTED.contains(&key.as_str()) {
            return Err(invalid(key, "is not supported by this server yet; send a single `script`"));
        }
        if !KNOWN.contains(&key.as_str()) {
            return Err(invalid(key, format!("is not a known field (known: {})", KNOWN.join(", "))));
        }
    }
    let script = optional_string(&body, "script")?.ok_or_else(|| invalid("script", "is required"))?;
    let chars = script.chars().count();
    if chars == 0 || script.trim().is_empty() {
        return Err(invalid("script", "must not be empty"));
    }
    if chars > MAX_SCRIPT_CHARS {
        return Err(invalid("script", format!("is {chars} characters; at most {MAX_SCRIPT_CHARS} are allowed")));
    }
    if script.contains('\0') {
        return Err(invalid("script", "must not contain NUL characters"));
    }
    let cpus = integer(&body, "cpus", DEFAULT_CPUS, MIN_CPUS, MAX_CPUS)?;
    let time_limit_min =
        integer(&body, "time_limit_min", DEFAULT_TIME_LIMIT_MIN, MIN_TIME_LIMIT_MIN, MAX_TIME_LIMIT_MIN)?;
    let image = optional_string(&body, "image")?.unwrap_or(DEFAULT_IMAGE);
    if !IMAGE_ALIASES.contains(&image) {
        return Err(invalid("image", format!("{image:?} is not a prebuilt image (allowed: {})", IMAGE_ALIASES.join(", "))));
    }
    let submitter_address = optional_string(&body, "submitter_address")?
        .map(|s| parse_wallet(s).ok_or_else(|| invalid("submitter_address", "must be 0x followed by 40 hex digits")))
        .transpose()?;
    Ok(JobSpec { script: script.to_string(), cpus, time_limit_min, image: image.to_string(), submitter_address })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn v(body: Value) -> Result<JobSpec, ValidationError> {
        validate(&serde_json::to_vec(&body).unwrap())
    }

    fn field_of(body: Value) -> String {
        v(body).unwrap_err().field
    }

    #[test]
    fn defaults_fill_in() {
        let spec = v(json!({"script": "echo hello"})).unwrap();
        assert_eq!((spec.cpus, spec.time_limit_min, spec.image.as_str()), (1, 1, "ouro-ubuntu"));
        assert_eq!(spec.submitter_address, None);
    }

    #[test]
    fn bounds_are_inclusive() {
        assert!(v(json!({"script": "x", "cpus": 1, "time_limit_min": 1})).is_ok());
        assert!(v(json!({"script": "x", "cpus": 8, "time_limit_min": 60})).is_ok());
        assert!(v(json!({"script": "x", "cpus": 2.0})).is_ok());
        assert_eq!(field_of(json!({"script": "x", "cpus": 0})), "cpus");
        assert_eq!(field_of(json!({"script": "x", "cpus": 9})), "cpus");
        assert_eq!(field_of(json!({"script": "x", "cpus": 1.5})), "cpus");
        assert_eq!(field_of(json!({"script": "x", "cpus": -1})), "cpus");
        assert_eq!(field_of(json!({"script": "x", "cpus": "2"})), "cpus");
        assert_eq!(field_of(json!({"script": "x", "time_limit_min": 0})), "time_limit_min");
        assert_eq!(field_of(json!({"script": "x", "time_limit_min": 61})), "time_limit_min");
    }

    #[test]
    fn script_rules() {
        assert_eq!(field_of(json!({})), "script");
        assert_eq!(field_of(json!({"script": ""})), "script");
        assert_eq!(field_of(json!({"script": "  \n"})), "script");
        assert_eq!(field_of(json!({"script": 5})), "script");
        assert_eq!(field_of(json!({"script": "a\u{0}b"})), "script");
        assert!(v(json!({"script": "é".repeat(MAX_SCRIPT_CHARS)})).is_ok(), "the limit counts characters");
        assert_eq!(field_of(json!({"script": "a".repeat(MAX_SCRIPT_CHARS + 1)})), "script");
    }

    #[test]
    fn body_shape_and_unknown_fields() {
        assert_eq!(validate(b"not json").unwrap_err().field, "body");
        assert_eq!(validate(b"[1]").unwrap_err().field, "body");
        assert_eq!(field_of(json!({"script": "x", "time_limit": 3})), "time_limit");
        assert_eq!(field_of(json!({"script": "x", "webhook_url": "https://a"})), "webhook_url");
        assert_eq!(field_of(json!({"script": "x", "image": "alpine"})), "image");
        assert!(v(json!({"script": "x", "image": "ouro-python"})).is_ok());
    }

    #[test]
    fn submitter_address_is_normalised() {
        let spec = v(json!({"script": "x", "submitter_address": "0xF39Fd6e51aad88F6F4ce6aB8827279cffFb92266"})).unwrap();
        assert_eq!(spec.submitter_address.as_deref(), Some("0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"));
        assert_eq!(field_of(json!({"script": "x", "submitter_address": "0x123"})), "submitter_address");
    }

    #[test]
    fn price_query_uses_the_same_bounds() {
        let r = validate_price_query(Some("2"), Some("10"), Some("multi_file")).unwrap();
        assert_eq!((r.cpus, r.time_limit_min, r.mode), (2, 10, SubmissionMode::MultiFile));
        assert_eq!(validate_price_query(None, None, None).unwrap(), v(json!({"script": "x"})).unwrap().price_request());
        assert_eq!(validate_price_query(Some("9"), None, None).unwrap_err().field, "cpus");
        assert_eq!(validate_price_query(Some("x"), None, None).unwrap_err().field, "cpus");
        assert_eq!(validate_price_query(None, Some("61"), None).unwrap_err().field, "time_limit_min");
        assert_eq!(validate_price_query(None, None, Some("batch")).unwrap_err().field, "submission_mode");
    }

    #[test]
    fn digest_tells_bodies_apart() {
        let a = v(json!({"script": "echo a"})).unwrap();
        let b = v(json!({"script": "echo b"})).unwrap();
        assert_ne!(a.digest(), b.digest());
        assert_eq!(a.digest(), v(json!({"script": "echo a", "cpus": 1})).unwrap().digest());
    }
}
