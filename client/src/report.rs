//! Reading a finished job for a person: the one-line summary and the exit code the `ouro` command returns.

use ouro_core::job::JobStatus;
use serde_json::Value;

/// Exit code for errors on the client's side (refused payment, bad key, unreachable service).
pub const CLIENT_ERROR_EXIT: i32 = 2;

pub fn is_terminal(status: &str) -> bool {
    JobStatus::parse(status).is_some_and(JobStatus::is_terminal)
}

fn text<'a>(job: &'a Value, field: &str) -> Option<&'a str> {
    job.get(field).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// `completed · exit 0 · 1.42 s`, or for a failure `failed · exit 137 · 60.00 s · timeout: time limit exceeded`.
pub fn summary(job: &Value) -> String {
    let mut parts = vec![text(job, "status").unwrap_or("unknown").to_string()];
    if let Some(code) = job.get("exit_code").and_then(Value::as_i64) {
        parts.push(format!("exit {code}"));
    }
    if let Some(seconds) = job.get("compute_duration_s").and_then(Value::as_f64) {
        parts.push(format!("{seconds:.2} s"));
    }
    if text(job, "status") == Some(JobStatus::Failed.as_str()) {
        match (text(job, "failure_reason"), text(job, "failure_message")) {
            (Some(reason), Some(message)) => parts.push(format!("{reason}: {message}")),
            (Some(one), None) | (None, Some(one)) => parts.push(one.to_string()),
            (None, None) => {}
        }
    }
    parts.join(" · ")
}

/// The job's own exit code; 1 for a failure without one (it never ran, or was killed); 0 when it completed.
pub fn exit_code(job: &Value) -> i32 {
    let code = job.get("exit_code").and_then(Value::as_i64);
    let failed = text(job, "status") != Some(JobStatus::Completed.as_str());
    match code {
        // Exit statuses are one byte; anything else would be truncated by the OS into a misleading number.
        Some(c @ 0..=255) if !(failed && c == 0) => c as i32,
        _ if failed => 1,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn summaries() {
        let ok = json!({"status": "completed", "exit_code": 0, "compute_duration_s": 1.4159});
        assert_eq!(summary(&ok), "completed · exit 0 · 1.42 s");
        let failed = json!({"status": "failed", "exit_code": 3, "compute_duration_s": 0.5,
                            "failure_reason": "nonzero_exit", "failure_message": "the script exited with 3"});
        assert_eq!(summary(&failed), "failed · exit 3 · 0.50 s · nonzero_exit: the script exited with 3");
        let lost = json!({"status": "failed", "exit_code": null, "failure_reason": "executor_lost", "failure_message": null});
        assert_eq!(summary(&lost), "failed · executor_lost");
    }

    #[test]
    fn exit_codes() {
        assert_eq!(exit_code(&json!({"status": "completed", "exit_code": 0})), 0);
        assert_eq!(exit_code(&json!({"status": "completed"})), 0);
        assert_eq!(exit_code(&json!({"status": "failed", "exit_code": 3})), 3);
        assert_eq!(exit_code(&json!({"status": "failed", "exit_code": 137})), 137);
        assert_eq!(exit_code(&json!({"status": "failed", "exit_code": null})), 1);
        assert_eq!(exit_code(&json!({"status": "failed", "exit_code": 0})), 1, "a failure never exits 0");
        assert_eq!(exit_code(&json!({"status": "failed", "exit_code": -9})), 1);
        assert_eq!(exit_code(&json!({"status": "failed", "exit_code": 300})), 1);
    }

    #[test]
    fn terminal_statuses() {
        assert!(is_terminal("completed") && is_terminal("failed"));
        assert!(!is_terminal("running") && !is_terminal("pending") && !is_terminal("bogus"));
    }
}
