//! Webhooks on the real stack: the Worker's Queue consumer POSTs to a receiver run by the test on loopback,
//! which answers from a script; signatures are checked with an HMAC computed here, independently.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use ouro_e2e::{client, finished, str_of, wallet, Account};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const SHORT: Duration = Duration::from_secs(180);

#[derive(Debug, Clone)]
struct Delivery {
    headers: Vec<(String, String)>,
    body: String,
}

impl Delivery {
    fn header(&self, name: &str) -> &str {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).unwrap_or_default()
    }
}

/// A webhook receiver on 127.0.0.1 answering the statuses of `script` in turn (the last one thereafter).
async fn receiver(script: Vec<u16>) -> (String, Arc<Mutex<Vec<Delivery>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://127.0.0.1:{}/hook", listener.local_addr().unwrap().port());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 65536];
            let (head_end, length) = loop {
                let n = sock.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break (None, 0);
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..pos]).to_string();
                    let length = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string())
                        })
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0usize);
                    break (Some(pos + 4), length);
                }
            };
            let Some(start) = head_end else { continue };
            while buf.len() < start + length {
                let n = sock.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let head = String::from_utf8_lossy(&buf[..start]).to_string();
            let headers = head
                .lines()
                .skip(1)
                .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_string(), v.trim().to_string())))
                .collect();
            let body = String::from_utf8(buf[start..].to_vec()).expect("a UTF-8 body");
            let n = {
                let mut seen = record.lock().unwrap();
                seen.push(Delivery { headers, body });
                seen.len()
            };
            let status = script.get(n - 1).or(script.last()).copied().unwrap_or(200);
            let reply = format!("HTTP/1.1 {status} Scripted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = sock.write_all(reply.as_bytes()).await;
            let _ = sock.shutdown().await;
        }
    });
    (url, seen)
}

fn signature(key: &str, ts: &str, body: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(format!("{ts}.{body}").as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn wait_for(seen: &Arc<Mutex<Vec<Delivery>>>, n: usize, limit: Duration) -> Vec<Delivery> {
    let until = Instant::now() + limit;
    loop {
        let got = seen.lock().unwrap().clone();
        if got.len() >= n || Instant::now() > until {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn retried_on_5xx_with_one_delivery_id_and_valid_signatures_and_the_job_view() {
    let client = client().await;
    let payer = wallet(Account::Webhooks);
    let (url, seen) = receiver(vec![500, 500, 200]).await;
    let body = json!({ "script": "printf '\\343\\201\\202\\377\\n'", "webhook_url": url });
    let paid = client.pay_and_submit(&payer.key, &body).await.unwrap();
    assert_eq!(paid.answer.body["webhook_configured"], true);
    let key = str_of(&paid.answer.body, "webhook_secret").to_string();
    let job = finished(&client, &paid.job_id, SHORT).await;
    assert_eq!(job["status"], "completed", "{job}");

    let got = wait_for(&seen, 3, Duration::from_secs(60)).await;
    assert_eq!(got.len(), 3, "500, 500, then 200");
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(seen.lock().unwrap().len(), 3, "nothing after the 200");

    let delivery = got[0].header("X-Ouro-Delivery").to_string();
    assert_eq!(delivery.len(), 36, "a uuid: {delivery}");
    for d in &got {
        assert_eq!(d.header("X-Ouro-Delivery"), delivery, "the same delivery id on every attempt");
        assert_eq!(d.header("User-Agent"), "Ouro-Webhook/1.0");
        let ts = d.header("X-Ouro-Timestamp");
        assert_eq!(d.header("X-Ouro-Signature-256"), signature(&key, ts, &d.body), "a valid signature");
    }
    let payload: Value = serde_json::from_str(&got[2].body).unwrap();
    assert_eq!(payload["webhook_event"], "job.completed");
    assert_eq!(payload["output"], "あ\u{FFFD}\n", "the same replacement as GET and SSE");
    let job = client.job(&paid.job_id).await.unwrap();
    for (field, value) in payload.as_object().unwrap() {
        if field != "webhook_event" {
            assert_eq!(&job[field], value, "{field} equals GET /api/jobs/{{id}}'s");
        }
    }
    assert_eq!(job["webhook"]["state"], "delivered", "{}", job["webhook"]);
    assert_eq!(job["webhook"]["attempts"], 3);
    assert_eq!(job["webhook"]["last_status"], 200);
    assert_eq!(job["webhook"]["delivery_id"], delivery.as_str());
}

#[tokio::test]
async fn a_4xx_is_not_retried_and_failures_carry_their_reason() {
    let client = client().await;
    let payer = wallet(Account::Webhooks);
    let (url, seen) = receiver(vec![400]).await;
    let paid = client.pay_and_submit(&payer.key, &json!({ "script": "exit 4", "webhook_url": url })).await.unwrap();
    let job = finished(&client, &paid.job_id, SHORT).await;
    assert_eq!(job["status"], "failed");
    let got = wait_for(&seen, 1, Duration::from_secs(60)).await;
    assert_eq!(got.len(), 1);
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(seen.lock().unwrap().len(), 1, "a 400 is final");
    let payload: Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(payload["webhook_event"], "job.failed");
    assert_eq!(payload["failure_reason"], "non_zero_exit");
    assert_eq!(payload["fault"], "user_error");
    let job = client.job(&paid.job_id).await.unwrap();
    assert_eq!((job["webhook"]["state"].as_str(), job["webhook"]["attempts"].as_u64()), (Some("failed"), Some(1)));
    assert_eq!(job["webhook"]["last_status"], 400);
}

#[tokio::test]
async fn webhook_urls_must_be_https_or_local_http() {
    let client = client().await;
    for bad in ["http://example.com/hook", "ftp://127.0.0.1/x", "http://localhost@example.com/", "nope"] {
        let answer = client.submit_unpaid(&json!({ "script": "true", "webhook_url": bad })).await.unwrap();
        assert_eq!(answer.status, 422, "{bad}: {}", answer.body);
        assert_eq!(answer.body["field"], "webhook_url");
    }
    let ok = client.submit_unpaid(&json!({ "script": "true", "webhook_url": "https://example.com/h" })).await.unwrap();
    assert_eq!(ok.status, 402, "{}", ok.body);
}
