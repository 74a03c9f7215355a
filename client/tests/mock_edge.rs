//! The client against a tiny in-process stand-in for the edge on 127.0.0.1, which answers with the same
//! shapes as the real routes and judges payments with `ouro_core::x402::check_payment`. It proves the HTTP
//! plumbing (header names, codecs, status mapping, polling) without the live stack.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ouro_client::{key_from_hex, sign_payment, Client, ClientError, Progress};
use ouro_core::eip712::address_of;
use ouro_core::x402::{
    check_payment, header, ChainProfile, PaymentPayload, PaymentRequired, Resource, SettlementResponse,
};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const ANVIL_0: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const JOB_ID: &str = "5f0c7a51-3d7e-4a57-9a53-1a4f5b2c9e10";
const TX: &str = "0x1111111111111111111111111111111111111111111111111111111111111111";

struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

struct Response {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Value,
}

fn respond(status: u16, body: Value) -> Response {
    Response { status, headers: vec![], body }
}

type Handler = Arc<dyn Fn(Request) -> Response + Send + Sync>;

/// Serves `handler` on an ephemeral 127.0.0.1 port, one request per connection; returns the base URL.
async fn serve(handler: Handler) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let handler = handler.clone();
            tokio::spawn(async move {
                let Some(request) = read_request(&mut stream).await else { return };
                let r = handler(request);
                let body = serde_json::to_vec(&r.body).unwrap();
                let mut head = format!(
                    "HTTP/1.1 {} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
                    r.status,
                    body.len()
                );
                for (k, v) in &r.headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str("\r\n");
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(&body).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    format!("http://{addr}/")
}

async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, path) = (first.next()?.to_string(), first.next()?.to_string());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(Request { method, path, headers, body: buf[head_end..head_end + length].to_vec() })
}

fn profile() -> ChainProfile {
    ChainProfile {
        network: "eip155:31337".into(),
        asset: "0x5FbDB2315678afecb367f032d93F642f64180aa3".parse().unwrap(),
        asset_name: "USD Coin".into(),
        asset_version: "2".into(),
        pay_to: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8".parse().unwrap(),
        max_timeout_seconds: 300,
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// What the fake edge saw, for assertions.
#[derive(Default)]
struct Seen {
    payments: Vec<PaymentPayload>,
    job_polls: AtomicUsize,
}

/// A fake edge: price, submit (422 / 402 / judged payment / 400), and a job that runs then completes.
/// `issued` is what the 402 advertises, `expected` what a payment is judged against (they differ to simulate
/// a server that changed its mind).
fn edge(issued: ChainProfile, expected: ChainProfile, seen: Arc<Mutex<Seen>>) -> Handler {
    Arc::new(move |req: Request| {
        let price = json!({"compute_cost": 0.0002, "phase": "OPTIMAL"});
        match (req.method.as_str(), req.path.split('?').next().unwrap_or("")) {
            ("GET", "/api/price") => {
                assert!(req.path.contains("cpus=2") && req.path.contains("time_limit_min=5"), "{}", req.path);
                respond(200, json!({"price": "$0.0841", "amount": "84100", "breakdown": price}))
            }
            ("POST", "/api/compute/submit") => {
                let spec = match ouro_core::submit::validate(&req.body) {
                    Ok(s) => s,
                    Err(e) => {
                        return respond(422, json!({"error": e.to_string(), "code": "invalid_request", "field": e.field}))
                    }
                };
                let resource = Resource { url: "http://127.0.0.1/api/compute/submit".into(), description: None, mime_type: None };
                let required = |error: &str| PaymentRequired {
                    x402_version: 2,
                    error: Some(error.into()),
                    resource: resource.clone(),
                    accepts: vec![issued.requirements(84_100, Some("q1".into()))],
                    extensions: None,
                };
                let Some(sig) = req.header("payment-signature") else {
                    return Response {
                        status: 402,
                        headers: vec![("PAYMENT-REQUIRED", header::encode(&required("Payment required"))), ("Cache-Control", "no-store".into())],
                        body: json!({"error": "Payment required", "price": "$0.0841", "breakdown": price}),
                    };
                };
                let Ok(payment) = header::decode::<PaymentPayload>(sig) else {
                    return respond(400, json!({"error": "not a payment", "code": "invalid_payment_header"}));
                };
                seen.lock().unwrap().payments.push(payment.clone());
                let wanted = expected.requirements(84_100, Some("q1".into()));
                match check_payment(&payment, &wanted, &expected, now()) {
                    Ok(v) => {
                        let settlement = SettlementResponse {
                            success: true,
                            error_reason: None,
                            error_message: None,
                            payer: Some(v.payer.to_checksum(None)),
                            transaction: TX.into(),
                            network: expected.network.clone(),
                            amount: Some("84100".into()),
                        };
                        Response {
                            status: 200,
                            headers: vec![("PAYMENT-RESPONSE", header::encode(&settlement))],
                            body: json!({"job_id": JOB_ID, "status": "pending", "price": "$0.0841",
                                         "cpus": spec.cpus, "transaction": TX}),
                        }
                    }
                    Err(r) => Response {
                        status: 402,
                        headers: vec![("PAYMENT-REQUIRED", header::encode(&required(r.code())))],
                        body: json!({"error": "Payment rejected", "price": "$0.0841", "reason": r.code(), "message": r.to_string()}),
                    },
                }
            }
            ("GET", path) if path == format!("/api/jobs/{JOB_ID}") => {
                let polls = seen.lock().unwrap().job_polls.fetch_add(1, Ordering::SeqCst);
                if polls < 2 {
                    respond(200, json!({"id": JOB_ID, "status": if polls == 0 { "pending" } else { "running" }}))
                } else {
                    respond(200, json!({"id": JOB_ID, "status": "completed", "exit_code": 0, "output": "hello\n",
                                        "error_output": "", "compute_duration_s": 0.31}))
                }
            }
            _ => respond(404, json!({"error": "no such thing", "code": "job_not_found"})),
        }
    })
}

async fn fake_edge() -> (Client, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let url = serve(edge(profile(), profile(), seen.clone())).await;
    (Client::new(url).unwrap(), seen)
}

#[tokio::test]
async fn quote_reads_price_amount_and_breakdown() {
    let (client, _) = fake_edge().await;
    let q = client.quote(2, 5).await.unwrap();
    assert_eq!((q.price.as_str(), q.amount), ("$0.0841", 84_100));
    assert_eq!(q.breakdown["phase"], "OPTIMAL");
}

#[tokio::test]
async fn pays_submits_and_waits() {
    let (client, seen) = fake_edge().await;
    let key = key_from_hex(ANVIL_0).unwrap();
    let mut priced = None;
    let paid = client
        .pay_and_submit_with(&key, &json!({"script": "echo hello", "cpus": 2}), |p| match p {
            Progress::Priced { price, amount, payer, .. } => priced = Some((price.to_string(), amount.to_string(), payer)),
        })
        .await
        .unwrap();
    assert_eq!(priced, Some(("$0.0841".into(), "84100".into(), address_of(&key))));
    assert_eq!((paid.job_id.as_str(), paid.price.as_str(), paid.transaction.as_str()), (JOB_ID, "$0.0841", TX));
    assert_eq!(paid.answer.status, 200);
    assert_eq!(paid.answer.payment_response.as_ref().unwrap().payer, Some(address_of(&key).to_checksum(None)));
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.payments.len(), 1);
        assert_eq!(seen.payments[0].accepted, profile().requirements(84_100, Some("q1".into())));
    }

    let mut statuses = Vec::new();
    let job = client
        .wait_with(JOB_ID, Duration::from_secs(10), |j| statuses.push(j["status"].as_str().unwrap().to_string()))
        .await
        .unwrap();
    assert_eq!(statuses, ["pending", "running", "completed"]);
    assert_eq!(job["output"], "hello\n");
    assert_eq!(ouro_client::report::exit_code(&job), 0);
}

#[tokio::test]
async fn unpaid_answer_keeps_status_body_and_headers() {
    let (client, _) = fake_edge().await;
    let a = client.submit_unpaid(&json!({"script": "echo"})).await.unwrap();
    assert_eq!(a.status, 402);
    assert_eq!(a.body["price"], "$0.0841");
    assert_eq!(a.headers.get("cache-control").unwrap(), "no-store");
    let required = a.payment_required.clone().unwrap();
    assert_eq!(required.accepts[0].amount, "84100");

    // A tampered but correctly signed payment is judged by the server and answered with its reason.
    let key = key_from_hex(ANVIL_0).unwrap();
    let cheap = sign_payment(&key, &required, |auth| auth.value = "1".into()).unwrap();
    let refused = client.submit_paid(&json!({"script": "echo"}), &cheap).await.unwrap();
    assert_eq!(refused.status, 402);
    assert_eq!(refused.text("reason"), Some("invalid_exact_evm_payload_authorization_value"));
    assert_eq!(refused.payment_required.unwrap().error.as_deref(), Some("invalid_exact_evm_payload_authorization_value"));

    let garbage = client.submit_with_header(&json!({"script": "echo"}), "not-a-payment").await.unwrap();
    assert_eq!((garbage.status, garbage.text("code")), (400, Some("invalid_payment_header")));
}

#[tokio::test]
async fn invalid_bodies_name_the_field() {
    let (client, seen) = fake_edge().await;
    let key = key_from_hex(ANVIL_0).unwrap();
    let err = client.pay_and_submit(&key, &json!({"script": "echo", "cpus": 9})).await.unwrap_err();
    assert!(matches!(err, ClientError::Invalid { ref field, .. } if field == "cpus"), "{err}");
    assert!(seen.lock().unwrap().payments.is_empty(), "nothing is signed for an invalid body");
}

#[tokio::test]
async fn a_refused_payment_is_a_typed_error_with_the_reason() {
    // The server advertises one payTo but judges against another, so an honest payment is refused.
    let mut moved = profile();
    moved.pay_to = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC".parse().unwrap();
    let url = serve(edge(profile(), moved, Arc::new(Mutex::new(Seen::default())))).await;
    let client = Client::new(url).unwrap();
    let err = client.pay_and_submit(&key_from_hex(ANVIL_0).unwrap(), &json!({"script": "echo"})).await.unwrap_err();
    match err {
        ClientError::PaymentRefused { status: 402, reason, .. } => assert_eq!(reason, "requirements_mismatch"),
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn unknown_jobs_are_not_found() {
    let (client, _) = fake_edge().await;
    let id = "00000000-0000-4000-8000-000000000000";
    assert!(matches!(client.job(id).await, Err(ClientError::NotFound(ref got)) if got == id));
    assert!(matches!(client.wait(id, Duration::from_secs(1)).await, Err(ClientError::NotFound(_))));
}

#[tokio::test]
async fn unreachable_services_and_bad_urls_are_errors() {
    assert!(matches!(Client::new("127.0.0.1:8787"), Err(ClientError::BadUrl(_))));
    // Port 9 on loopback (discard) is closed on any sane test machine: a transport error, not a panic.
    let client = Client::new("http://127.0.0.1:9").unwrap();
    assert!(matches!(client.quote(1, 1).await, Err(ClientError::Transport { .. })));
}
