//! Live job events over SSE and output handling, on the real stack: output arrives while the container runs,
//! in order and whole; a reconnect with `Last-Event-ID` neither loses nor repeats; invalid UTF-8 is the same
//! U+FFFD everywhere; a flood is capped with its flag while the executor's memory stays flat; streams are
//! bounded.

use std::time::{Duration, Instant};

use ouro_e2e::sse::{self, text_of, Stream};
use ouro_e2e::{client, finished, signed_query, wallet, Account};
use serde_json::json;

const SHORT: Duration = Duration::from_secs(180);
const EVENT_WAIT: Duration = Duration::from_secs(120);

fn expected_lines() -> String {
    (1..=15).map(|i| format!("line {i}\n")).collect()
}

#[tokio::test]
async fn output_streams_live_in_order_and_a_reconnect_resumes_exactly() {
    let client = client().await;
    let payer = wallet(Account::Events);
    let script = "for i in $(seq 1 15); do echo \"line $i\"; sleep 0.2; done";
    let paid = client.pay_and_submit(&payer.key, &json!({ "script": script })).await.unwrap();
    let mut stream = Stream::new(sse::open(&paid.job_id, None, &[]).await);
    let events = stream.all(EVENT_WAIT).await;
    assert!(stream.comments.iter().any(|c| c.contains("ouro job events")), "{:?}", stream.comments);

    let ids: Vec<u64> = events.iter().map(|e| e.id.expect("every stored event has an id")).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids grow: {ids:?}");
    let last = events.last().expect("events");
    assert!(last.is_terminal(), "the stream ends with the terminal event: {:?}", last.data);
    assert_eq!(last.data["status"], "completed");
    assert_eq!(last.data["exit_code"], 0);
    for e in &events {
        for field in ["type", "message", "timestamp", "job_id"] {
            assert!(e.data.get(field).is_some(), "{field} in {}", e.data);
        }
        assert_eq!(e.data["job_id"], paid.job_id.as_str());
    }

    // Complete and in order, equal to the stored output.
    assert_eq!(text_of(&events, "stdout"), expected_lines());
    let job = finished(&client, &paid.job_id, SHORT).await;
    assert_eq!(job["output"], expected_lines().as_str());
    assert_eq!(job["status"], "completed", "the terminal event never comes before GET agrees");

    // Live: the first line came well before the end (the script takes 3 s).
    let outputs: Vec<_> = events.iter().filter(|e| e.kind == "output").collect();
    assert!(outputs.len() >= 3, "several batches while it ran, got {}", outputs.len());
    let lead = last.at.duration_since(outputs[0].at);
    assert!(lead >= Duration::from_millis(1500), "first output only {lead:?} before the end");

    // Resume in the middle: exactly the rest, nothing twice.
    let middle = outputs[outputs.len() / 2].id.unwrap();
    let mut again = Stream::new(sse::open(&paid.job_id, Some(middle), &[]).await);
    let rest = again.all(EVENT_WAIT).await;
    let expected: Vec<u64> = ids.iter().copied().filter(|id| *id > middle).collect();
    assert_eq!(rest.iter().map(|e| e.id.unwrap()).collect::<Vec<_>>(), expected);
    let before: String = events
        .iter()
        .filter(|e| e.kind == "output" && e.id.unwrap() <= middle)
        .map(|e| e.data["data"].as_str().unwrap())
        .collect();
    assert_eq!(before + &text_of(&rest, "stdout"), expected_lines(), "no gap, no duplicate");

    // The query-parameter form of Last-Event-ID, for clients that cannot set headers.
    let params = [("last_event_id", middle.to_string())];
    let mut by_query = Stream::new(sse::open(&paid.job_id, None, &params).await);
    assert_eq!(by_query.all(EVENT_WAIT).await.len(), rest.len());
}

#[tokio::test]
async fn invalid_utf8_is_the_same_replacement_in_get_and_sse() {
    let client = client().await;
    let payer = wallet(Account::Output);
    let paid = client
        .pay_and_submit(&payer.key, &json!({ "script": "printf '\\343\\201\\202\\377\\n'; printf 'e\\377' >&2" }))
        .await
        .unwrap();
    let job = finished(&client, &paid.job_id, SHORT).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["output"], "あ\u{FFFD}\n");
    assert_eq!(job["error_output"], "e\u{FFFD}");
    let mut stream = Stream::new(sse::open(&paid.job_id, None, &[]).await);
    let events = stream.all(EVENT_WAIT).await;
    assert_eq!(text_of(&events, "stdout"), "あ\u{FFFD}\n");
    assert_eq!(text_of(&events, "stderr"), "e\u{FFFD}");
    assert_eq!(job["output_truncated"], false);

    // The full logs keep the raw bytes.
    let (stdout, truncated, _) = raw_log(&paid.job_id, "stdout").await;
    assert_eq!((stdout.as_slice(), truncated), (&b"\xe3\x81\x82\xff\n"[..], false));
    assert_eq!(raw_log(&paid.job_id, "stderr").await.0, b"e\xff");
    let stdin = format!("{}/api/jobs/{}/logs?stream=stdin", ouro_e2e::edge_url(), paid.job_id);
    let bad = reqwest::get(stdin).await.unwrap();
    assert_eq!(bad.status(), 422);
}

/// `GET /api/jobs/{id}/logs?stream=`: the bytes, the truncated flag, the bytes the job wrote.
async fn raw_log(job_id: &str, stream: &str) -> (Vec<u8>, bool, u64) {
    let url = format!("{}/api/jobs/{job_id}/logs?stream={stream}", ouro_e2e::edge_url());
    let resp = reqwest::get(url).await.expect("the edge answers");
    assert_eq!(resp.status(), 200, "the {stream} log of {job_id}");
    let header = |n: &str| resp.headers().get(n).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let (truncated, seen) = (header("x-ouro-log-truncated") == "true", header("x-ouro-bytes-seen").parse().unwrap());
    (resp.bytes().await.unwrap().to_vec(), truncated, seen)
}

/// The running executor's pid and VmRSS in KiB (`None` while it is being restarted).
fn executor_rss_kib() -> Option<(String, u64)> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../.ouro/run/executor.pid");
    let pid = std::fs::read_to_string(root).ok()?.trim().to_string();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    Some((pid, line.split_whitespace().nth(1)?.parse().ok()?))
}

#[tokio::test]
async fn a_flood_is_capped_with_its_flag_and_executor_memory_stays_bounded() {
    let client = client().await;
    let payer = wallet(Account::Output);
    let (pid, before) = executor_rss_kib().expect("the executor runs");
    let paid = client
        .pay_and_submit(&payer.key, &json!({ "script": "yes", "time_limit_min": 1 }))
        .await
        .unwrap();
    let started = Instant::now();
    let mut peak = before;
    let job = loop {
        if let Some((now_pid, rss)) = executor_rss_kib() {
            assert_eq!(now_pid, pid, "the executor was restarted during the test: the measure is void, run it again");
            peak = peak.max(rss);
        }
        let job = client.job(&paid.job_id).await.unwrap();
        if matches!(job["status"].as_str(), Some("completed" | "failed")) {
            break job;
        }
        assert!(started.elapsed() < SHORT, "the flood job never ended");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!("executor VmRSS: {before} KiB before, {peak} KiB at peak, over {:?}", started.elapsed());
    assert_eq!(job["status"], "failed");
    assert_eq!(job["failure_reason"], "time_limit_exceeded");
    assert_eq!(job["output_truncated"], true, "never a silent cut");
    let output = job["output"].as_str().unwrap();
    assert_eq!(output.len(), 1024 * 1024, "the default cap is 1 MiB");
    assert!(output.bytes().all(|b| b == b'y' || b == b'\n'));
    // A minute of `yes` is gigabytes; the executor holds the cap (twice: kept + unsent), not the flood.
    assert!(peak.saturating_sub(before) < 48 * 1024, "executor grew from {before} to {peak} KiB");

    // The live view carries the same capped text, then stops.
    let mut stream = Stream::new(sse::open(&paid.job_id, None, &[]).await);
    let events = stream.all(EVENT_WAIT).await;
    assert_eq!(text_of(&events, "stdout"), output);
    assert_eq!(events.last().unwrap().data["output_truncated"], true);

    // The full log: more than the stored text, up to the executor's log cap (8 MiB), flagged.
    let (log, truncated, seen) = raw_log(&paid.job_id, "stdout").await;
    assert_eq!(log.len(), 8 * 1024 * 1024);
    assert!(truncated && seen > log.len() as u64, "{seen} bytes written");
    assert!(log.starts_with(output.as_bytes()));
}

#[tokio::test]
async fn streams_are_bounded_per_job_and_signed_streams_are_checked() {
    let client = client().await;
    let payer = wallet(Account::Events);
    let paid = client.pay_and_submit(&payer.key, &json!({ "script": "sleep 40" })).await.unwrap();
    let mut open = Vec::new();
    for _ in 0..5 {
        open.push(Stream::new(sse::open(&paid.job_id, None, &[]).await));
    }
    let refused = sse::open(&paid.job_id, None, &[]).await;
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().get("retry-after").is_some());
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["code"], "too_many_streams", "{body}");
    // Whoever else holds the id cannot use up the payer's own streams: a signed one still opens.
    let action = ouro_core::wallet_auth::Action::JobEvents { job_id: &paid.job_id };
    let own = sse::open(&paid.job_id, None, &signed_query(&payer.key, action, 0)).await;
    assert_eq!(own.status(), 200, "the payer's signed stream beside five bare-id ones");
    drop(own);
    // While nothing happens, keep-alive comments (every 15 s by default).
    assert!(open[0].comment_within("keep-alive", Duration::from_secs(25)).await, "a keep-alive while idle");
    drop(open);

    // A stream signed by another wallet is refused (403), a stale signature by the payer too (401): both before
    // any lease is taken.
    let other = wallet(Account::Cancel);
    let wrong = sse::open(&paid.job_id, None, &signed_query(&other.key, action, 0)).await;
    assert_eq!(wrong.status(), 403);
    let stale = sse::open(&paid.job_id, None, &signed_query(&payer.key, action, -400)).await;
    assert_eq!(stale.status(), 401);

    // Stop the sleeper (and check the cancel answer shape on the way).
    let cancel = reqwest::Client::new()
        .post(format!("{}/api/jobs/{}/cancel", ouro_e2e::edge_url(), paid.job_id))
        .query(&signed_query(&payer.key, ouro_core::wallet_auth::Action::JobCancel { job_id: &paid.job_id }, 0))
        .send()
        .await
        .unwrap();
    assert!(matches!(cancel.status().as_u16(), 200 | 202), "{}", cancel.status());
}
