//! What a valid submission is. Every rule is checked here, before any price is given or payment taken, and
//! every violation names the field it is about.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::dockerfile;
use crate::job::{DEFAULT_IMAGE, IMAGE_ALIASES};
use crate::pricing::{PriceRequest, SubmissionMode};
use crate::workspace::{self, Encoding, WorkspaceError, WorkspaceFile, DOCKERFILE, MAX_FILES, SCRIPT_FILE};

pub const MAX_SCRIPT_CHARS: usize = 65_536;
/// Longest `entrypoint` command line (characters).
pub const MAX_ENTRYPOINT_CHARS: usize = 4096;
pub const MIN_CPUS: u32 = 1;
pub const MAX_CPUS: u32 = 8;
pub const MIN_TIME_LIMIT_MIN: u32 = 1;
pub const MAX_TIME_LIMIT_MIN: u32 = 60;
pub const DEFAULT_CPUS: u32 = 1;
pub const DEFAULT_TIME_LIMIT_MIN: u32 = 1;
/// A raw body larger than this is refused before it is parsed. A full workspace (10 MiB) sent as base64 is
/// 13.4 MiB; the rest leaves room for the JSON around it, 100 paths, a script and an entrypoint written with
/// escapes.
pub const MAX_BODY_BYTES: usize = 15 * 1024 * 1024;

const KNOWN: [&str; 9] = [
    "script",
    "files",
    "entrypoint",
    "cpus",
    "time_limit_min",
    "image",
    "submitter_address",
    "mount_storage",
    "webhook_url",
];
const FILE_KEYS: [&str; 3] = ["path", "content", "encoding"];

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
    /// The script; empty when the submission has none (a workspace run by its `entrypoint` or its Dockerfile).
    /// In a workspace it is the file [`SCRIPT_FILE`], which is not repeated in `files`.
    pub script: String,
    pub cpus: u32,
    pub time_limit_min: u32,
    /// The prebuilt alias the job runs on; for a Dockerfile workspace, its FROM alias.
    pub image: String,
    pub submitter_address: Option<String>,
    /// The submitted files, decoded, sorted by path (so the digest is canonical).
    // Left out of the JSON when empty, so a script job's digest is what it was before workspaces existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<WorkspaceFile>,
    /// A shell command line run in the workspace instead of the script or the image's ENTRYPOINT/CMD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<String>,
    /// Mount the payer's persistent storage at `/scratch` (left out of the JSON when false: digests of jobs
    /// without it are unchanged).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mount_storage: bool,
    /// Where the job's end is POSTed (`crate::webhook`); left out of the JSON when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
}

impl JobSpec {
    pub fn has_script(&self) -> bool {
        !self.script.is_empty()
    }

    /// The workspace's Dockerfile, when it has one (the job is then an image build).
    pub fn dockerfile(&self) -> Option<&WorkspaceFile> {
        self.files.iter().find(|f| f.path == DOCKERFILE)
    }

    /// Everything the job's directory holds: the files plus the script as [`SCRIPT_FILE`] (sorted by path).
    pub fn workspace_files(&self) -> Vec<WorkspaceFile> {
        workspace::with_script(&self.files, &self.script)
    }

    pub fn price_request(&self) -> PriceRequest {
        let mode = if self.files.is_empty() { SubmissionMode::Script } else { SubmissionMode::MultiFile };
        PriceRequest { cpus: self.cpus, time_limit_min: self.time_limit_min, mode }
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
    let time_limit_min = query_integer(
        "time_limit_min",
        time_limit_min,
        DEFAULT_TIME_LIMIT_MIN,
        MIN_TIME_LIMIT_MIN,
        MAX_TIME_LIMIT_MIN,
    )?;
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

fn workspace_error(e: WorkspaceError) -> ValidationError {
    ValidationError { field: e.field(), message: e.to_string() }
}

/// The `files` array, decoded, in submitted order (indices in errors are positions in it).
fn files(body: &Map<String, Value>) -> Result<Option<Vec<WorkspaceFile>>, ValidationError> {
    let items = match body.get("files") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(invalid("files", "must be an array of {path, content, encoding?} objects")),
    };
    // Counted before anything is decoded: an oversized array costs nothing more.
    if items.len() > MAX_FILES {
        return Err(workspace_error(WorkspaceError::TooManyFiles { count: items.len() }));
    }
    let mut files = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Value::Object(file) = item else {
            return Err(invalid(&format!("files[{i}]"), "must be an object {path, content, encoding?}"));
        };
        if let Some(key) = file.keys().find(|k| !FILE_KEYS.contains(&k.as_str())) {
            return Err(invalid(
                &format!("files[{i}].{key}"),
                format!("is not a known field of a file (known: {})", FILE_KEYS.join(", ")),
            ));
        }
        let Some(Value::String(path)) = file.get("path") else {
            return Err(invalid(&format!("files[{i}].path"), "is required and must be a string"));
        };
        let Some(Value::String(content)) = file.get("content") else {
            return Err(invalid(
                &format!("files[{i}].content"),
                format!("is required and must be a string (file {})", workspace::shown(path)),
            ));
        };
        let encoding = match file.get("encoding") {
            None | Some(Value::Null) => Encoding::Utf8,
            Some(Value::String(e)) => Encoding::parse(e).ok_or_else(|| {
                invalid(
                    &format!("files[{i}].encoding"),
                    format!(
                        "must be \"utf-8\" or \"base64\", got {} (file {})",
                        workspace::shown(e),
                        workspace::shown(path)
                    ),
                )
            })?,
            Some(_) => {
                return Err(invalid(&format!("files[{i}].encoding"), "must be \"utf-8\" or \"base64\""));
            }
        };
        let content = encoding.decode(content).map_err(|e| {
            invalid(
                &format!("files[{i}].content"),
                format!("is not valid standard base64 ({e}) (file {})", workspace::shown(path)),
            )
        })?;
        files.push(WorkspaceFile { path: path.clone(), content });
    }
    Ok(Some(files))
}

fn entrypoint(body: &Map<String, Value>) -> Result<Option<String>, ValidationError> {
    let Some(entrypoint) = optional_string(body, "entrypoint")? else { return Ok(None) };
    let chars = entrypoint.chars().count();
    if entrypoint.trim().is_empty() {
        return Err(invalid("entrypoint", "must not be empty"));
    }
    if chars > MAX_ENTRYPOINT_CHARS {
        return Err(invalid(
            "entrypoint",
            format!("is {chars} characters; at most {MAX_ENTRYPOINT_CHARS} are allowed"),
        ));
    }
    if entrypoint.contains('\0') {
        return Err(invalid("entrypoint", "must not contain NUL characters"));
    }
    Ok(Some(entrypoint.to_string()))
}

fn script(body: &Map<String, Value>) -> Result<Option<&str>, ValidationError> {
    let Some(script) = optional_string(body, "script")? else { return Ok(None) };
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
    Ok(Some(script))
}

/// The image a workspace with a Dockerfile runs on: its FROM alias, once the Dockerfile passed every rule.
/// Dockerfile errors land on `files[i].content` (`i`: the Dockerfile's position), message `line N: reason`.
fn dockerfile_image(
    files: &[WorkspaceFile],
    index: usize,
    has_script: bool,
    entrypoint_given: bool,
    image: Option<&str>,
) -> Result<String, ValidationError> {
    let field = format!("files[{index}].content");
    let text = std::str::from_utf8(&files[index].content)
        .map_err(|_| invalid(&field, format!("the {DOCKERFILE} is not UTF-8 text")))?;
    let mut paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    if has_script {
        paths.push(SCRIPT_FILE);
    }
    let parsed = dockerfile::validate(text, &paths, entrypoint_given).map_err(|e| invalid(&field, e.to_string()))?;
    match image {
        Some(image) if image != parsed.from_alias => Err(invalid(
            "image",
            format!(
                "is {image:?} but the {DOCKERFILE}'s FROM is {:?}; leave `image` out or make them match",
                parsed.from_alias
            ),
        )),
        _ => Ok(parsed.from_alias),
    }
}

/// Validates a submit body (raw bytes, as received).
pub fn validate(body: &[u8]) -> Result<JobSpec, ValidationError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(invalid("body", format!("is {} bytes; at most {MAX_BODY_BYTES} are accepted", body.len())));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| invalid("body", format!("is not valid JSON: {e}")))?;
    let Value::Object(body) = value else {
        return Err(invalid("body", "must be a JSON object"));
    };
    for key in body.keys() {
        if !KNOWN.contains(&key.as_str()) {
            return Err(invalid(key, format!("is not a known field (known: {})", KNOWN.join(", "))));
        }
    }
    let script = script(&body)?;
    let mut files = match (files(&body)?, script) {
        (None, None) => return Err(invalid("script", "is required (or `files`)")),
        (Some(files), None) if files.is_empty() => {
            return Err(invalid("files", "must hold at least one file when there is no `script`"))
        }
        (files, _) => files.unwrap_or_default(),
    };
    let has_script = script.is_some();
    workspace::check_files(&files, has_script).map_err(workspace_error)?;
    let entrypoint = entrypoint(&body)?;
    let cpus = integer(&body, "cpus", DEFAULT_CPUS, MIN_CPUS, MAX_CPUS)?;
    let time_limit_min =
        integer(&body, "time_limit_min", DEFAULT_TIME_LIMIT_MIN, MIN_TIME_LIMIT_MIN, MAX_TIME_LIMIT_MIN)?;
    let requested_image = optional_string(&body, "image")?;
    let image = match files.iter().position(|f| f.path == DOCKERFILE) {
        Some(index) => dockerfile_image(&files, index, has_script, entrypoint.is_some(), requested_image)?,
        None => {
            let image = requested_image.unwrap_or(DEFAULT_IMAGE);
            if !IMAGE_ALIASES.contains(&image) {
                return Err(invalid(
                    "image",
                    format!("{image:?} is not a prebuilt image (allowed: {})", IMAGE_ALIASES.join(", ")),
                ));
            }
            // Without a Dockerfile the script is what runs: an entrypoint beside it would be shown but ignored.
            if has_script && entrypoint.is_some() {
                return Err(invalid(
                    "entrypoint",
                    "cannot be combined with `script` unless a Dockerfile is among the files: send the script as a \
                     file and name it in `entrypoint`, or leave `entrypoint` out",
                ));
            }
            if !has_script && entrypoint.is_none() {
                return Err(invalid(
                    "entrypoint",
                    format!(
                        "is required for files without a {DOCKERFILE} (a shell command line, e.g. \"python3 main.py\")"
                    ),
                ));
            }
            image.to_string()
        }
    };
    let submitter_address = optional_string(&body, "submitter_address")?
        .map(|s| parse_wallet(s).ok_or_else(|| invalid("submitter_address", "must be 0x followed by 40 hex digits")))
        .transpose()?;
    let mount_storage = match body.get("mount_storage") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(invalid("mount_storage", "must be true or false")),
    };
    let webhook_url = optional_string(&body, "webhook_url")?
        .map(|url| crate::webhook::check_url(url).map(|()| url.to_string()).map_err(|e| invalid("webhook_url", e)))
        .transpose()?;
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(JobSpec {
        script: script.unwrap_or_default().to_string(),
        cpus,
        time_limit_min,
        image,
        submitter_address,
        files,
        entrypoint,
        mount_storage,
        webhook_url,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::MAX_WORKSPACE_BYTES;
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
        assert_eq!(field_of(json!({"script": "x", "webhook_url": "http://example.com/hook"})), "webhook_url");
        assert_eq!(field_of(json!({"script": "x", "webhook_url": 5})), "webhook_url");
        let hooked = v(json!({"script": "x", "webhook_url": "http://127.0.0.1:9/h"})).unwrap();
        assert_eq!(hooked.webhook_url.as_deref(), Some("http://127.0.0.1:9/h"));
        assert_ne!(hooked.digest(), v(json!({"script": "x"})).unwrap().digest());
        assert_eq!(field_of(json!({"script": "x", "image": "alpine"})), "image");
        assert!(v(json!({"script": "x", "image": "ouro-python"})).is_ok());
    }

    #[test]
    fn submitter_address_is_normalised() {
        let spec =
            v(json!({"script": "x", "submitter_address": "0xF39Fd6e51aad88F6F4ce6aB8827279cffFb92266"})).unwrap();
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

    fn file(path: &str, content: &str) -> Value {
        json!({"path": path, "content": content})
    }

    fn refusal(body: Value) -> (String, String) {
        let e = v(body).unwrap_err();
        (e.field, e.message)
    }

    #[test]
    fn files_entrypoint_and_mounts_are_served() {
        assert!(v(json!({"script": "x", "mount_storage": true})).is_ok_and(|s| s.mount_storage));
        assert_eq!(field_of(json!({"script": "x", "mount_storage": "yes"})), "mount_storage");
        let spec = v(json!({"files": [file("a.sh", "echo a")], "entrypoint": "sh a.sh"})).unwrap();
        assert_eq!(spec.entrypoint.as_deref(), Some("sh a.sh"));
        assert_eq!((spec.image.as_str(), spec.has_script(), spec.dockerfile()), ("ouro-ubuntu", false, None));
        assert_eq!(spec.price_request().mode, SubmissionMode::MultiFile);
        assert_eq!(spec.files, [WorkspaceFile { path: "a.sh".into(), content: b"echo a".to_vec() }]);
    }

    #[test]
    fn files_without_a_dockerfile_need_an_entrypoint_or_a_script() {
        assert_eq!(
            refusal(json!({"files": [file("main.py", "print(1)")]})),
            (
                "entrypoint".to_string(),
                "is required for files without a Dockerfile (a shell command line, e.g. \"python3 main.py\")"
                    .to_string()
            )
        );
        assert!(v(
            json!({"files": [file("main.py", "print(1)")], "entrypoint": "python3 main.py", "image": "ouro-python"})
        )
        .is_ok());
        assert_eq!(field_of(json!({"files": [file("m", "")], "entrypoint": "x", "image": "alpine"})), "image");
        assert_eq!(field_of(json!({"files": []})), "files");
        assert_eq!(field_of(json!({"entrypoint": "true"})), "script");
        assert_eq!(field_of(json!({"script": "echo a", "entrypoint": "echo b"})), "entrypoint");
        assert_eq!(field_of(json!({"script": "echo a", "files": [file("m", "")], "entrypoint": "sh m"})), "entrypoint");
        let spec = v(json!({"script": "echo", "files": []})).unwrap();
        assert_eq!(spec.price_request().mode, SubmissionMode::Script, "no files is a script job");
    }

    #[test]
    fn a_script_with_files_becomes_the_job_file() {
        let spec =
            v(json!({"script": "cat data/in.txt", "files": [file("z.txt", "z"), file("data/in.txt", "shout\n")]}))
                .unwrap();
        assert!(spec.has_script());
        let paths: Vec<&str> = spec.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["data/in.txt", "z.txt"], "sorted, and the script is not repeated in files");
        let all: Vec<String> = spec.workspace_files().into_iter().map(|f| f.path).collect();
        assert_eq!(all, ["data/in.txt", "job", "z.txt"]);
        assert_eq!(spec.price_request().mode, SubmissionMode::MultiFile);
        let (field, message) = refusal(json!({"script": "x", "files": [file("a", ""), file("job", "")]}));
        assert_eq!(field, "files[1].path");
        assert!(message.contains("\"job\"") && message.contains("`script`"), "{message}");
        assert!(
            v(json!({"files": [file("job", "")], "entrypoint": "sh job"})).is_ok(),
            "without a script, job is free"
        );
    }

    #[test]
    fn file_entries_are_checked_one_by_one() {
        let e = |files: Value| refusal(json!({"files": files, "entrypoint": "true"}));
        assert_eq!(e(json!("a.txt")).0, "files");
        assert_eq!(e(json!([file("a", ""), "b"])).0, "files[1]");
        assert_eq!(e(json!([{"content": "x"}])).0, "files[0].path");
        assert_eq!(e(json!([{"path": 1, "content": "x"}])).0, "files[0].path");
        assert_eq!(e(json!([{"path": "a"}])).0, "files[0].content");
        assert_eq!(e(json!([{"path": "a", "content": "x", "mode": 755}])).0, "files[0].mode");
        let (field, message) = e(json!([{"path": "a.bin", "content": "x", "encoding": "hex"}]));
        assert_eq!(field, "files[0].encoding");
        assert!(message.contains("\"hex\"") && message.contains("a.bin"), "{message}");
        let (field, message) = e(json!([file("ok", ""), {"path": "w.whl", "content": "%%%", "encoding": "base64"}]));
        assert_eq!(field, "files[1].content");
        assert!(message.contains("base64") && message.contains("w.whl"), "{message}");
    }

    #[test]
    fn path_rules_name_the_file_and_the_path() {
        let one = |path: &str| refusal(json!({"files": [file("ok.txt", ""), file(path, "x")], "entrypoint": "true"}));
        for (path, rule) in [
            ("/etc/passwd", "absolute"),
            ("../escape.txt", "`..`"),
            ("a/b/c/d/e/f.txt", "depth of 6"),
            ("bad|name.txt", "'|'"),
            ("a\u{0}b", "NUL"),
            ("a//b", "empty component"),
            ("./a", "`.` component"),
            ("dir/", "ends with `/`"),
            ("", "is empty"),
        ] {
            let (field, message) = one(path);
            assert_eq!(field, "files[1].path", "{path:?}");
            assert!(message.contains(rule), "{path:?}: {message}");
            assert!(message.contains(&format!("{path:?}")), "{path:?}: {message}");
        }
        let (field, message) =
            refusal(json!({"files": [file("a.txt", "1"), file("a.txt", "2")], "entrypoint": "true"}));
        assert_eq!(field, "files[1].path");
        assert!(message.contains("a.txt"));
        assert_eq!(field_of(json!({"files": [file("a", ""), file("a/b", "")], "entrypoint": "true"})), "files[1].path");
    }

    #[test]
    fn base64_files_decode_to_their_bytes() {
        let spec = v(json!({"files": [{"path": "w.whl", "content": "UEsDBAA=", "encoding": "base64"},
                                      {"path": "t.txt", "content": "hé", "encoding": "utf-8"}], "entrypoint": "true"}))
        .unwrap();
        assert_eq!(spec.files[0].content, "hé".as_bytes());
        assert_eq!(spec.files[1].content, [0x50, 0x4b, 0x03, 0x04, 0x00]);
    }

    #[test]
    fn the_file_count_limit_holds_at_the_boundary() {
        let files = |n: usize| -> Vec<Value> { (0..n).map(|i| file(&format!("f{i}.txt"), "x")).collect() };
        assert_eq!(v(json!({"files": files(100), "entrypoint": "true"})).unwrap().files.len(), 100);
        let (field, message) = refusal(json!({"files": files(101), "entrypoint": "true"}));
        assert_eq!((field.as_str(), message.as_str()), ("files", "has 101 files; at most 100 are allowed"));
        assert!(v(json!({"script": "x", "files": files(100)})).is_ok(), "the script is not counted as a file");
    }

    #[test]
    fn the_size_limit_holds_at_the_boundary_and_a_full_base64_workspace_fits_the_body() {
        use base64::Engine;
        let b64 = |n: usize| base64::engine::general_purpose::STANDARD.encode(vec![0xa5u8; n]);
        let per = MAX_WORKSPACE_BYTES / 4;
        let body = |last: usize| {
            let mut files: Vec<Value> = (0..3)
                .map(|i| json!({"path": format!("w{i}.whl"), "content": b64(per), "encoding": "base64"}))
                .collect();
            files.push(json!({"path": "last.bin", "content": b64(last), "encoding": "base64"}));
            // A Dockerfile is what lets a script and an entrypoint come together: the largest valid body.
            files.push(json!({"path": DOCKERFILE, "content": DOCKERFILE_TEXT}));
            serde_json::to_vec(&json!({"files": files, "entrypoint": "true", "script": "é".repeat(MAX_SCRIPT_CHARS)}))
                .unwrap()
        };
        const DOCKERFILE_TEXT: &str = "FROM ouro-ubuntu\n";
        let room = MAX_WORKSPACE_BYTES - 3 * per - DOCKERFILE_TEXT.len();
        let full = body(room);
        assert!(full.len() <= MAX_BODY_BYTES, "{} bytes", full.len());
        let spec = validate(&full).unwrap();
        assert_eq!(spec.files.iter().map(|f| f.content.len()).sum::<usize>(), MAX_WORKSPACE_BYTES);
        let e = validate(&body(room + 1)).unwrap_err();
        assert_eq!(e.field, "files");
        assert!(e.message.contains(&(MAX_WORKSPACE_BYTES + 1).to_string()), "{}", e.message);
        let text = "x".repeat(MAX_WORKSPACE_BYTES + 1);
        assert_eq!(field_of(json!({"files": [file("big.txt", &text)], "entrypoint": "true"})), "files");
    }

    #[test]
    fn entrypoint_rules() {
        let with = |entrypoint: Value| json!({"files": [file("a", "")], "entrypoint": entrypoint});
        assert!(v(with(json!("x".repeat(MAX_ENTRYPOINT_CHARS)))).is_ok());
        assert_eq!(field_of(with(json!("x".repeat(MAX_ENTRYPOINT_CHARS + 1)))), "entrypoint");
        assert_eq!(field_of(with(json!(""))), "entrypoint");
        assert_eq!(field_of(with(json!("  "))), "entrypoint");
        assert_eq!(field_of(with(json!("a\u{0}b"))), "entrypoint");
        assert_eq!(field_of(with(json!(["sh", "-c"]))), "entrypoint");
    }

    const DOCKERFILE_OK: &str = "FROM ouro-python\nCOPY main.py /app/main.py\nCMD [\"python3\", \"/app/main.py\"]\n";

    #[test]
    fn a_dockerfile_decides_the_image() {
        let files = json!([file("main.py", "print(1)"), file("Dockerfile", DOCKERFILE_OK)]);
        let spec = v(json!({"files": files})).unwrap();
        assert_eq!(spec.image, "ouro-python");
        assert_eq!(spec.dockerfile().map(|f| f.path.as_str()), Some("Dockerfile"));
        assert!(v(json!({"files": files, "image": "ouro-python"})).is_ok());
        let (field, message) = refusal(json!({"files": files, "image": "ouro-nodejs"}));
        assert_eq!(field, "image");
        assert!(message.contains("\"ouro-python\""), "{message}");
    }

    #[test]
    fn dockerfile_errors_land_on_its_content_with_the_line() {
        let with =
            |dockerfile: &str| refusal(json!({"files": [file("main.py", "print(1)"), file("Dockerfile", dockerfile)]}));
        assert_eq!(
            with("FROM ouro-python\nRUN true\nUSER root\nCMD x\n"),
            (
                "files[1].content".to_string(),
                "line 3: USER is not allowed: jobs always run as the executor's unprivileged user".to_string()
            )
        );
        let (field, message) = with("FROM ouro-python\nCOPY missing.py /app/\nCMD x\n");
        assert_eq!(field, "files[1].content");
        assert_eq!(
            message,
            "line 2: COPY source is not in the submission: \"missing.py\"; submitted paths: \"Dockerfile\", \"main.py\""
        );
        assert!(with("FROM ubuntu:22.04\nCMD x\n").1.contains("ouro-python"));
        assert!(with("FROM ouro-python\nADD https://example.com/x.tar.gz /x\nCMD x\n").1.contains("URL"));
        assert!(with("FROM ouro-python\nCOPY main.py /app/main.py\n").1.contains("ENTRYPOINT"));
        // The submission's own entrypoint stands in for CMD; a script is part of the context as `job`.
        assert!(v(json!({"files": [file("Dockerfile", "FROM ouro-ubuntu\n")], "entrypoint": "true"})).is_ok());
        let copies_the_script = "FROM ouro-ubuntu\nCOPY job /job\nCMD [\"sh\", \"/job\"]\n";
        assert!(v(json!({"script": "echo hi", "files": [file("Dockerfile", copies_the_script)]})).is_ok());
        let (field, message) = refusal(
            json!({"files": [{"path": "Dockerfile", "content": "/w==", "encoding": "base64"}], "entrypoint": "x"}),
        );
        assert_eq!((field.as_str(), message.as_str()), ("files[0].content", "the Dockerfile is not UTF-8 text"));
        // Only the root `Dockerfile` is one.
        assert!(v(json!({"files": [file("sub/Dockerfile", "USER root")], "entrypoint": "true"})).is_ok());
    }

    #[test]
    fn script_job_digests_are_what_they_were_before_workspaces() {
        let spec = v(json!({"script": "echo a"})).unwrap();
        let before =
            r#"{"script":"echo a","cpus":1,"time_limit_min":1,"image":"ouro-ubuntu","submitter_address":null}"#;
        assert_eq!(spec.digest(), hex::encode(Sha256::digest(before.as_bytes())));
    }

    #[test]
    fn digests_cover_files_and_entrypoint_but_not_their_order() {
        let a = v(json!({"files": [file("a", "1"), file("b", "2")], "entrypoint": "true"})).unwrap();
        let reordered = v(json!({"files": [file("b", "2"), file("a", "1")], "entrypoint": "true"})).unwrap();
        assert_eq!(a.digest(), reordered.digest());
        assert_ne!(
            a.digest(),
            v(json!({"files": [file("a", "1"), file("b", "3")], "entrypoint": "true"})).unwrap().digest()
        );
        assert_ne!(
            a.digest(),
            v(json!({"files": [file("a", "1"), file("b", "2")], "entrypoint": "false"})).unwrap().digest()
        );
        let round: JobSpec = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        assert_eq!(round, a);
    }
}
