//! A flood of output against a real Docker engine: capped, drained, and memory that does not grow with it.
//! A test binary of its own, because it measures this process's RSS: the other engine tests running beside it in
//! one process would count. Skipped (with a message) when no engine answers.

#[macro_use]
mod common;

use std::time::Duration;

use ouro_core::dispatch::JobAssignment;
use ouro_core::job::FailureReason;

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

#[tokio::test]
async fn output_flood_is_capped_and_memory_stays_bounded() {
    let runner = common::runner(engine!("flood"), common::API_TIMEOUT);
    let cap = 64 * 1024;
    let job = JobAssignment { output_cap_bytes: cap, ..common::job("flood", "ouro-ubuntu", "yes") };
    let rss_before = rss_bytes();
    let report = common::run_with(&runner, &job, Duration::from_secs(3)).await;
    let rss_growth = rss_bytes().saturating_sub(rss_before);
    let o = &report.outcome;
    assert_eq!(o.failure.as_ref().map(|f| f.reason), Some(FailureReason::TimeLimitExceeded));
    assert_eq!(o.output.len() as u64, cap);
    assert!(o.output.starts_with("y\ny\n"));
    assert!(o.output_truncated);
    assert!(!o.error_output_truncated);
    eprintln!("flood: {} MB seen, RSS grew {} MB", report.stdout_bytes_seen >> 20, rss_growth >> 20);
    assert!(report.stdout_bytes_seen > 20 * cap, "the flood was drained: {}", report.stdout_bytes_seen);
    assert!(rss_growth < 64 << 20, "memory grew {rss_growth} bytes while {} were drained", report.stdout_bytes_seen);
}
