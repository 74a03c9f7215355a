//! Cancellation on the real stack: a running container is killed (checked with the Docker engine), the job
//! ends failed/cancelled as the user's doing with its output kept and unused time credited; a finished job
//! cannot be cancelled; only the payer can cancel; a cancel racing the dispatch ends the job exactly once.

use std::time::{Duration, Instant};

use ouro_core::wallet_auth::Action;
use ouro_e2e::sse::{self, Stream};
use ouro_e2e::{client, credit_balance, finished, signed_query, wallet, Account};
use serde_json::{json, Value};

const SHORT: Duration = Duration::from_secs(180);

async fn cancel(job_id: &str, query: &[(&str, String)]) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}/api/jobs/{job_id}/cancel", ouro_e2e::edge_url()))
        .query(query)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("the edge answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("JSON"))
}

/// The job's containers the Docker engine knows (running or not).
fn containers_of(job_id: &str) -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label=ouro.job_id={job_id}")])
        .output()
        .expect("the docker CLI runs");
    assert!(out.status.success(), "docker ps: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_string).collect()
}

#[tokio::test]
async fn a_running_job_is_killed_fast_ends_cancelled_and_its_unused_time_is_credited() {
    let client = client().await;
    let payer = wallet(Account::Cancel);
    let credit_before = credit_balance(&payer).await;
    let body = json!({ "script": "echo started; sleep 300", "time_limit_min": 10 });
    let paid = client.pay_and_submit(&payer.key, &body).await.unwrap();
    let id = paid.job_id.as_str();

    // Running, with its first line out and its container on the engine.
    let mut stream = Stream::new(sse::open(id, None, &[]).await);
    loop {
        let e = stream.next(Duration::from_secs(120)).await.expect("events until the output");
        if e.kind == "output" {
            assert_eq!(e.data["data"], "started\n");
            break;
        }
    }
    assert_eq!(containers_of(id).len(), 1, "the job's container is on the engine");

    // Only the payer, signing this very action.
    let other = wallet(Account::Events);
    assert_eq!(cancel(id, &signed_query(&other.key, Action::JobCancel { job_id: id }, 0)).await.0, 403);
    assert_eq!(cancel(id, &[]).await.0, 401, "a cancel is always signed");
    assert_eq!(cancel(id, &signed_query(&payer.key, Action::JobView { job_id: id }, 0)).await.0, 401);

    let asked = Instant::now();
    let (status, answer) = cancel(id, &signed_query(&payer.key, Action::JobCancel { job_id: id }, 0)).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["cancel"], "requested");
    while !containers_of(id).is_empty() {
        let waited = asked.elapsed();
        assert!(waited < Duration::from_secs(5), "container still there {waited:?} after the cancel");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("container gone {:?} after the cancel", asked.elapsed());

    let job = finished(&client, id, SHORT).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["failure_reason"], "cancelled");
    assert_eq!(job["fault"], "user_error");
    assert_eq!(job["output"], "started\n", "what it printed before the cancel is kept");
    assert!(job["compute_duration_s"].as_f64().unwrap() < 120.0);
    let last = stream.all(Duration::from_secs(60)).await.pop().expect("the terminal event");
    assert!(last.is_terminal() && last.data["failure_reason"] == "cancelled", "{:?}", last.data);

    // Unused time credited, by the money rules (A2's), once.
    let until = Instant::now() + Duration::from_secs(30);
    while credit_balance(&payer).await <= credit_before {
        assert!(Instant::now() < until, "no credit recorded for the cancelled job");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let (status, answer) = cancel(id, &signed_query(&payer.key, Action::JobCancel { job_id: id }, 0)).await;
    assert_eq!((status, answer["code"].as_str()), (409, Some("job_finished")), "{answer}");
}

#[tokio::test]
async fn a_cancel_racing_the_dispatch_ends_the_job_exactly_once() {
    let client = client().await;
    let payer = wallet(Account::Cancel);
    let paid = client.pay_and_submit(&payer.key, &json!({ "script": "sleep 300" })).await.unwrap();
    let id = paid.job_id.as_str();
    // At once: usually still pending (ended at the edge, 200), else already handed over (killed there, 202).
    let (status, answer) = cancel(id, &signed_query(&payer.key, Action::JobCancel { job_id: id }, 0)).await;
    assert!(status == 200 || status == 202, "{status} {answer}");
    let job = finished(&client, id, SHORT).await;
    assert_eq!((job["status"].as_str(), job["failure_reason"].as_str()), (Some("failed"), Some("cancelled")), "{job}");
    let events = Stream::new(sse::open(id, None, &[]).await).all(Duration::from_secs(60)).await;
    let ends = events.iter().filter(|e| e.is_terminal()).count();
    assert_eq!(ends, 1, "exactly one end: {:?}", events.iter().map(|e| &e.data).collect::<Vec<_>>());
    let until = Instant::now() + Duration::from_secs(10);
    while !containers_of(id).is_empty() {
        assert!(Instant::now() < until, "a container of the cancelled job is left");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
