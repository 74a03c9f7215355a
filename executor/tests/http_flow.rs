//! The executor's HTTP API end to end: the real app on an ephemeral port, a real engine, and a fake edge (an
//! axum server in this test) that checks the signatures of the status and result calls it receives.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use ouro_core::dispatch::{
    sign_request, verify_request, AssignmentReply, ExecutorHealth, JobAssignment, JobOutcome, StatusReport,
    HEADER_SIGNATURE, HEADER_TIMESTAMP,
};
use ouro_core::job::JobStatus;
use ouro_executor::api::DeadlineFn;
use ouro_executor::config::Config;
use ouro_executor::report::unix_now;
use ouro_executor::server;
use tokio::sync::mpsc;

const SECRET: &[u8] = b"http-flow-test-secret";

/// One call the fake edge received.
#[derive(Debug)]
struct Received {
    kind: &'static str,
    job_id: String,
    body: Vec<u8>,
    signature_ok: bool,
}

#[derive(Clone)]
struct FakeEdge {
    calls: mpsc::UnboundedSender<Received>,
    /// Job ids whose first result POST is answered 503, to exercise the executor's retry.
    flaky_left: Arc<Mutex<Vec<String>>>,
}

fn record(edge: &FakeEdge, kind: &'static str, path: &str, job_id: String, headers: &HeaderMap, body: Bytes) {
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let signature_ok =
        verify_request(SECRET, unix_now(), header(HEADER_TIMESTAMP), header(HEADER_SIGNATURE), "POST", path, &body)
            .is_ok();
    let _ = edge.calls.send(Received { kind, job_id, body: body.to_vec(), signature_ok });
}

async fn fake_status(
    State(edge): State<FakeEdge>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    record(&edge, "status", &format!("/internal/jobs/{id}/status"), id, &headers, body);
    StatusCode::OK
}

async fn fake_output(
    State(edge): State<FakeEdge>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    record(&edge, "output", &format!("/internal/jobs/{id}/output"), id, &headers, body);
    StatusCode::OK
}

async fn fake_result(
    State(edge): State<FakeEdge>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let flaky = {
        let mut left = edge.flaky_left.lock().unwrap_or_else(|p| p.into_inner());
        let before = left.len();
        left.retain(|j| j != &id);
        left.len() != before
    };
    if flaky {
        record(&edge, "result-refused", &format!("/internal/jobs/{id}/result"), id, &headers, body);
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    record(&edge, "result", &format!("/internal/jobs/{id}/result"), id, &headers, body);
    StatusCode::OK
}

async fn start_fake_edge(flaky: Vec<String>) -> (String, mpsc::UnboundedReceiver<Received>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let state = FakeEdge { calls: tx, flaky_left: Arc::new(Mutex::new(flaky)) };
    let app = Router::new()
        .route("/internal/jobs/{id}/status", post(fake_status))
        .route("/internal/jobs/{id}/result", post(fake_result))
        .route("/internal/jobs/{id}/output", post(fake_output))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind fake edge");
    let addr = listener.local_addr().expect("fake edge address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), rx)
}

/// Waits for the next call of `kind` for `job_id`, collecting everything received meanwhile.
async fn next_call(
    rx: &mut mpsc::UnboundedReceiver<Received>,
    kind: &str,
    job_id: &str,
    seen: &mut Vec<Received>,
) -> Received {
    let wait = async {
        loop {
            let call = rx.recv().await.expect("fake edge channel open");
            if call.kind == kind && call.job_id == job_id {
                return call;
            }
            seen.push(call);
        }
    };
    tokio::time::timeout(Duration::from_secs(60), wait).await.expect("the call arrived at the fake edge")
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn assign(&self, job: &JobAssignment, secret: Option<&[u8]>) -> (StatusCode, HeaderMap, String) {
        let body = serde_json::to_vec(job).expect("encode job");
        let mut req = self.http.post(format!("{}/v1/jobs", self.base)).body(body.clone());
        if let Some(secret) = secret {
            let ts = unix_now();
            req = req
                .header(HEADER_TIMESTAMP, ts.to_string())
                .header(HEADER_SIGNATURE, sign_request(secret, ts, "POST", "/v1/jobs", &body));
        }
        let resp = req.send().await.expect("executor answers");
        let status = StatusCode::from_u16(resp.status().as_u16()).expect("status code");
        let headers = resp.headers().clone();
        (status, headers, resp.text().await.unwrap_or_default())
    }

    async fn health(&self) -> ExecutorHealth {
        let resp = self.http.get(format!("{}/v1/health", self.base)).send().await.expect("health answers");
        assert_eq!(resp.status().as_u16(), 200);
        resp.json().await.expect("health JSON")
    }
}

#[tokio::test]
async fn assignments_are_authenticated_run_and_reported() {
    if common::engine_or_skip("http_flow").await.is_none() {
        return;
    }
    let flaky_job = common::job("flaky", "ouro-ubuntu", "echo retried");
    let (edge_url, mut calls) = start_fake_edge(vec![flaky_job.job_id.clone()]).await;
    let work_dir = std::env::temp_dir().join(format!("ouro-executor-test-http-{}", std::process::id()));
    let config = Config {
        listen: "127.0.0.1:0".parse().expect("address"),
        edge_url,
        secret: SECRET.to_vec(),
        slots: 1,
        images: common::default_images(),
        work_dir: work_dir.clone(),
        docker_timeout: common::API_TIMEOUT,
        docker_socket: common::SOCKET.into(),
        result_retry: Duration::from_secs(20),
        drain: Duration::from_secs(5),
        build: Default::default(),
        log_cap_bytes: 1024 * 1024,
    };
    let deadline: DeadlineFn = Arc::new(|job: &JobAssignment| Duration::from_secs(u64::from(job.time_limit_min) * 60));
    let executor = server::start(&config, deadline).await.expect("executor starts");
    let http = reqwest::Client::builder().no_proxy().build().expect("HTTP client");
    let client = Client { http, base: format!("http://{}", executor.local_addr()) };
    let mut seen = Vec::new();

    let health = client.health().await;
    assert_eq!((health.status.as_str(), health.slots_total, health.slots_free), ("ok", 1, 1));

    // Unsigned, or signed with another secret: 401 with a JSON error, and nothing runs.
    let hello = common::job("hello", "ouro-ubuntu", "echo hello");
    let (status, _, body) = client.assign(&hello, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let error: serde_json::Value = serde_json::from_str(&body).expect("JSON error body");
    assert!(error["error"].as_str().is_some_and(|e| e.contains("missing")), "{body}");
    let (status, _, _) = client.assign(&hello, Some(b"wrong secret")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Unknown alias: 422.
    let (status, _, body) = client.assign(&common::job("alias", "ouro-rust", "true"), Some(SECRET)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    // A signed assignment is accepted, and a second copy of it refused as a duplicate.
    let (status, _, body) = client.assign(&hello, Some(SECRET)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(serde_json::from_str::<AssignmentReply>(&body).ok(), Some(AssignmentReply::Accepted));
    let (status, _, body) = client.assign(&hello, Some(SECRET)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(serde_json::from_str::<AssignmentReply>(&body).ok(), Some(AssignmentReply::AlreadyAssigned));

    // "running" then the result, both signed.
    let running = next_call(&mut calls, "status", &hello.job_id, &mut seen).await;
    assert!(running.signature_ok, "status call is signed");
    let report: StatusReport = serde_json::from_slice(&running.body).expect("status report");
    assert_eq!(report.status, JobStatus::Running);
    let result = next_call(&mut calls, "result", &hello.job_id, &mut seen).await;
    assert!(result.signature_ok, "result call is signed");
    let outcome: JobOutcome = serde_json::from_slice(&result.body).expect("job outcome");
    assert_eq!(outcome.failure, None, "{outcome:?}");
    assert_eq!((outcome.exit_code, outcome.output.as_str()), (Some(0), "hello\n"));

    // Finished here recently: still a duplicate.
    let (status, _, _) = client.assign(&hello, Some(SECRET)).await;
    assert_eq!(status, StatusCode::CONFLICT);

    // The only slot taken by a sleeper: the next job hears 503 Busy with a retry hint.
    wait_for_free_slot(&client).await;
    let sleeper = common::job("sleeper", "ouro-ubuntu", "sleep 2; echo woke");
    let (status, _, body) = client.assign(&sleeper, Some(SECRET)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(client.health().await.slots_free, 0);
    let (status, headers, body) = client.assign(&common::job("extra", "ouro-ubuntu", "true"), Some(SECRET)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(matches!(serde_json::from_str(&body), Ok(AssignmentReply::Busy { retry_after_s }) if retry_after_s > 0));
    assert!(headers.get("retry-after").is_some());
    let result = next_call(&mut calls, "result", &sleeper.job_id, &mut seen).await;
    let outcome: JobOutcome = serde_json::from_slice(&result.body).expect("job outcome");
    assert_eq!(outcome.output, "woke\n");

    // The edge refuses the first result with a 503: the executor retries and the result still lands.
    wait_for_free_slot(&client).await;
    let (status, _, body) = client.assign(&flaky_job, Some(SECRET)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let refused = next_call(&mut calls, "result-refused", &flaky_job.job_id, &mut seen).await;
    assert!(refused.signature_ok);
    let result = next_call(&mut calls, "result", &flaky_job.job_id, &mut seen).await;
    assert!(result.signature_ok, "the retry is signed afresh");
    let outcome: JobOutcome = serde_json::from_slice(&result.body).expect("job outcome");
    assert_eq!(outcome.output, "retried\n");

    // Output streams to the edge while the job runs; a cancel (signed) kills it, and the result says so.
    wait_for_free_slot(&client).await;
    let long = common::job("cancelled", "ouro-ubuntu", "echo before; sleep 60; echo after");
    let (status, _, body) = client.assign(&long, Some(SECRET)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let live = next_call(&mut calls, "output", &long.job_id, &mut seen).await;
    assert!(live.signature_ok, "output call is signed");
    let batch: ouro_core::dispatch::OutputBatch = serde_json::from_slice(&live.body).expect("an output batch");
    assert_eq!((batch.chunks[0].seq, batch.chunks[0].data.as_str()), (0, "before\n"));
    let cancel_path = ouro_core::dispatch::executor_cancel_path(&long.job_id);
    let cancel = |secret: &'static [u8]| {
        let ts = unix_now();
        client
            .http
            .post(format!("{}{cancel_path}", client.base))
            .header(HEADER_TIMESTAMP, ts.to_string())
            .header(HEADER_SIGNATURE, sign_request(secret, ts, "POST", &cancel_path, b""))
            .send()
    };
    assert_eq!(cancel(b"wrong secret").await.expect("answers").status(), StatusCode::UNAUTHORIZED);
    let asked = std::time::Instant::now();
    assert_eq!(cancel(SECRET).await.expect("answers").status(), StatusCode::ACCEPTED);
    let result = next_call(&mut calls, "result", &long.job_id, &mut seen).await;
    assert!(asked.elapsed() < Duration::from_secs(10), "killed in {:?}", asked.elapsed());
    let outcome: JobOutcome = serde_json::from_slice(&result.body).expect("job outcome");
    let failure = outcome.failure.expect("a cancelled job failed");
    assert_eq!(failure.reason, ouro_core::job::FailureReason::Cancelled);
    assert_eq!(outcome.output, "before\n", "the output before the cancel is kept");
    assert_eq!(cancel(SECRET).await.expect("answers").status(), StatusCode::NOT_FOUND, "not running any more");

    executor.shutdown().await;
    let _ = std::fs::remove_dir_all(&work_dir);
}

/// Every status report of `job_id` (in order), up to and including its result.
async fn statuses_until_result(
    rx: &mut mpsc::UnboundedReceiver<Received>,
    job_id: &str,
) -> (Vec<StatusReport>, JobOutcome) {
    let mut reports = Vec::new();
    let wait = async {
        loop {
            let call = rx.recv().await.expect("fake edge channel open");
            if call.job_id != job_id {
                continue;
            }
            assert!(call.signature_ok, "{} call is signed", call.kind);
            match call.kind {
                "status" => reports.push(serde_json::from_slice(&call.body).expect("status report")),
                "result" => return serde_json::from_slice(&call.body).expect("job outcome"),
                _ => {}
            }
        }
    };
    let outcome = tokio::time::timeout(Duration::from_secs(120), wait).await.expect("the result arrived");
    (reports, outcome)
}

#[tokio::test]
async fn workspace_jobs_are_accepted_and_report_their_build() {
    let Some(docker) = common::engine_or_skip("http_workspaces").await else { return };
    let (edge_url, mut calls) = start_fake_edge(vec![]).await;
    let work_dir = std::env::temp_dir().join(format!("ouro-executor-test-httpws-{}", std::process::id()));
    let config = Config {
        listen: "127.0.0.1:0".parse().expect("address"),
        edge_url,
        secret: SECRET.to_vec(),
        slots: 2,
        images: common::default_images(),
        work_dir: work_dir.clone(),
        docker_timeout: common::API_TIMEOUT,
        docker_socket: common::SOCKET.into(),
        result_retry: Duration::from_secs(20),
        drain: Duration::from_secs(5),
        build: Default::default(),
        log_cap_bytes: 1024 * 1024,
    };
    let deadline: DeadlineFn = Arc::new(|job: &JobAssignment| Duration::from_secs(u64::from(job.time_limit_min) * 60));
    let executor = server::start(&config, deadline).await.expect("executor starts");
    let http = reqwest::Client::builder().no_proxy().build().expect("HTTP client");
    let client = Client { http, base: format!("http://{}", executor.local_addr()) };

    // A Dockerfile job: "processing" reports tell the edge what the build does, then "running", then the result.
    let nonce = common::job_id("nonce");
    let dockerfile = format!("FROM ouro-ubuntu\nRUN echo {nonce} > /n\nCMD [\"cat\", \"/n\"]\n");
    let files = vec![common::file("Dockerfile", &dockerfile)];
    let build = common::workspace_job("http-build", "ouro-ubuntu", files.clone(), None);
    let (status, _, body) = client.assign(&build, Some(SECRET)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (reports, outcome) = statuses_until_result(&mut calls, &build.job_id).await;
    assert_eq!(outcome.failure, None, "{outcome:?}");
    assert_eq!(outcome.output, format!("{nonce}\n"));
    let shown: Vec<(JobStatus, &str)> = reports.iter().map(|r| (r.status, r.message.as_str())).collect();
    eprintln!("the edge saw: {shown:?}");
    assert_eq!(shown.len(), 3, "{shown:?}");
    assert!(shown[0].0 == JobStatus::Processing && shown[0].1.starts_with("building image ouro-build:"), "{shown:?}");
    assert!(shown[1].0 == JobStatus::Processing && shown[1].1.starts_with("built image ouro-build:"), "{shown:?}");
    assert_eq!(shown[2], (JobStatus::Running, "container started"));

    let again = common::workspace_job("http-build2", "ouro-ubuntu", files, None);
    let (status, _, body) = client.assign(&again, Some(SECRET)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (reports, outcome) = statuses_until_result(&mut calls, &again.job_id).await;
    assert_eq!(outcome.output, format!("{nonce}\n"));
    assert_eq!(reports[0].status, JobStatus::Processing);
    assert!(reports[0].message.starts_with("build cache hit ouro-build:"), "{reports:?}");
    assert_eq!(reports.len(), 2, "{reports:?}");
    if let Some(tag) = reports[0].message.strip_prefix("build cache hit ") {
        common::remove_image(&docker, tag).await;
    }

    // A full 10 MiB workspace fits the body limit (13.3 MiB of base64).
    let blob: Vec<u8> = (0..ouro_core::workspace::MAX_WORKSPACE_BYTES).map(|i| (i * 7 % 251) as u8).collect();
    let big = common::workspace_job("http-big", "ouro-ubuntu", vec![common::file("blob", blob)], Some("wc -c < blob"));
    let (status, _, body) = client.assign(&big, Some(SECRET)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (_, outcome) = statuses_until_result(&mut calls, &big.job_id).await;
    assert_eq!(outcome.output, "10485760\n", "{outcome:?}");

    // Nonsense is refused before anything runs: an escaping path, a Dockerfile on a base that is not an alias.
    let escaping = common::workspace_job("http-bad", "ouro-ubuntu", vec![common::file("../x", "")], Some("true"));
    let (status, _, body) = client.assign(&escaping, Some(SECRET)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let foreign =
        common::workspace_job("http-from", "ouro-ubuntu", vec![common::file("Dockerfile", "FROM debian\n")], None);
    let (status, _, body) = client.assign(&foreign, Some(SECRET)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    executor.shutdown().await;
    let _ = std::fs::remove_dir_all(&work_dir);
}

/// The slot is held until the result is delivered, which the fake edge sees a moment before the executor does.
async fn wait_for_free_slot(client: &Client) {
    for _ in 0..100 {
        if client.health().await.slots_free > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the slot was never freed");
}
