//! Multi-file jobs: workspaces with and without a Dockerfile, image builds without network, the build cache,
//! and every rule a workspace or a Dockerfile can break (422 before any price).

use std::time::Duration;

use ouro_e2e::{client, finished, str_of, wallet, Account};
use serde_json::{json, Value};

const BUILD_JOB: Duration = Duration::from_secs(300);

fn file(path: &str, content: &str) -> Value {
    json!({ "path": path, "content": content })
}

/// The suite pays from a pool of wallets in turn: its many paid jobs would pass one wallet's rate limit.
fn next_payer() -> ouro_e2e::Wallet {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let pool = [Account::WorkspacesA, Account::WorkspacesB, Account::WorkspacesC];
    wallet(pool[NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % pool.len()])
}

async fn run(body: Value) -> Value {
    let client = client().await;
    let payer = next_payer();
    let paid = client.pay_and_submit(&payer.key, &body).await.unwrap_or_else(|e| panic!("paying for {body}: {e}"));
    finished(&client, &paid.job_id, BUILD_JOB).await
}

fn events(job: &Value) -> Vec<String> {
    job["event_log"].as_array().unwrap().iter().map(|e| str_of(e, "message").to_string()).collect()
}

#[tokio::test]
async fn the_public_multi_file_example_runs_offline() {
    let nonce = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let dockerfile = format!(
        "FROM ouro-python\n# a build step that needs no network\nRUN python -c \"open('/opt/built', 'w').write('{nonce}')\"\n\
         WORKDIR /app\nCOPY main.py /app/main.py\nENTRYPOINT [\"python\", \"main.py\"]\n"
    );
    let main_py = "print('built:', open('/opt/built').read())\nprint(sum(range(10)))\n";
    let job = run(json!({"files": [file("Dockerfile", &dockerfile), file("main.py", main_py)]})).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["output"], format!("built: {nonce}\n45\n"));
    assert_eq!(job["file_count"], 2);
    let paths: Vec<&str> = job["files"].as_array().unwrap().iter().map(|f| str_of(f, "path")).collect();
    assert_eq!(paths, ["Dockerfile", "main.py"]);
    assert!(events(&job).iter().any(|e| e.contains("building image")), "{:?}", events(&job));
}

#[tokio::test]
async fn an_identical_resubmission_hits_the_build_cache() {
    let nonce = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let body = json!({"files": [
        file("Dockerfile", &format!("FROM ouro-python\nLABEL run=\"{nonce}\"\nCOPY app.py /app.py\nCMD [\"python3\", \"/app.py\"]\n")),
        file("app.py", "print('cached?')\n"),
    ]});
    let first = run(body.clone()).await;
    assert_eq!(first["status"], "completed", "{first}");
    assert!(!events(&first).iter().any(|e| e.contains("cache hit")), "a new recipe is built: {:?}", events(&first));
    let second = run(body).await;
    assert_eq!(second["status"], "completed", "{second}");
    assert_eq!(second["output"], "cached?\n");
    assert!(events(&second).iter().any(|e| e.contains("build cache hit")), "{:?}", events(&second));
}

#[tokio::test]
async fn pip_without_build_network_fails_fast_with_pips_error() {
    let started = std::time::Instant::now();
    let job = run(json!({"files": [
        file("Dockerfile", "FROM ouro-python\nRUN pip install requests\nCMD [\"python3\", \"-c\", \"print(1)\"]\n"),
    ]}))
    .await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["failure_stage"], "build");
    assert_eq!(job["failure_reason"], "build_failed");
    assert_eq!(job["fault"], "user_error");
    let log = str_of(&job, "error_output");
    assert!(log.contains("requests"), "pip's own error is in error_output: {log}");
    assert!(started.elapsed() < Duration::from_secs(120), "failed quickly: {:?}", started.elapsed());
}

/// A pure-Python wheel made on the spot with the host's Python (zipfile), so no index is ever needed.
fn tiny_wheel() -> Vec<u8> {
    let script = r#"
import base64, hashlib, io, sys, zipfile
def rec(name, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"
files = {
    "ouro_hello/__init__.py": b"def greet():\n    return 'hello from a wheel'\n",
    "ouro_hello-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: ouro-hello\nVersion: 1.0\n",
    "ouro_hello-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: ouro-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = "\n".join(rec(n, d) for n, d in files.items()) + "\nouro_hello-1.0.dist-info/RECORD,,\n"
out = io.BytesIO()
with zipfile.ZipFile(out, "w") as z:
    for n, d in files.items():
        z.writestr(n, d)
    z.writestr("ouro_hello-1.0.dist-info/RECORD", record)
sys.stdout.write(base64.b64encode(out.getvalue()).decode())
"#;
    let out = std::process::Command::new("python3").args(["-c", script]).output().expect("python3 on the host");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(out.stdout).expect("base64 wheel")
}

#[tokio::test]
async fn wheels_in_the_workspace_install_offline() {
    use base64::Engine;
    let wheel = base64::engine::general_purpose::STANDARD.encode(tiny_wheel());
    let job = run(json!({"files": [
        file("Dockerfile", "FROM ouro-python\nCOPY wheels /wheels\nRUN pip install --no-index --find-links /wheels ouro-hello\nCMD [\"python3\", \"-c\", \"import ouro_hello; print(ouro_hello.greet())\"]\n"),
        {"path": "wheels/ouro_hello-1.0-py3-none-any.whl", "content": wheel, "encoding": "base64"},
    ]}))
    .await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["output"], "hello from a wheel\n");
}

#[tokio::test]
async fn files_with_an_entrypoint_and_script_with_files_run_in_the_workspace() {
    let job = run(json!({
        "files": [file("main.py", "import helper\nprint(helper.VALUE)\n"), file("helper.py", "VALUE = 'from helper'\n")],
        "entrypoint": "python3 main.py",
        "image": "ouro-python",
    }))
    .await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["output"], "from helper\n");
    assert_eq!(job["entrypoint"], "python3 main.py");

    let job = run(json!({"script": "cat data/in.txt | tr a-z A-Z", "files": [file("data/in.txt", "shout\n")]})).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["output"], "SHOUT\n");
}

#[tokio::test]
async fn nodejs_image_runs_node() {
    let job = run(json!({
        "files": [file("main.js", "console.log([1, 2, 3].map((x) => x * 2).join(','))\n")],
        "entrypoint": "node main.js",
        "image": "ouro-nodejs",
    }))
    .await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["output"], "2,4,6\n");
}

#[tokio::test]
async fn multi_file_pricing_carries_the_setup_cost() {
    let client = client().await;
    let answer = client
        .submit_unpaid(&json!({"files": [file("a.sh", "echo a")], "entrypoint": "sh a.sh"}))
        .await
        .unwrap();
    assert_eq!(answer.status, 402);
    assert_eq!(answer.body["breakdown"]["submission_mode"], "multi_file");
    assert_eq!(answer.body["breakdown"]["setup_cost"], 0.001);
    let quote: Value = reqwest::get(format!("{}/api/price?submission_mode=multi_file", ouro_e2e::edge_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(quote["breakdown"]["setup_cost"], 0.001);
}

/// Submits unpaid and expects a 422 whose field and message say why.
async fn refused(body: Value, field_contains: &str, message_contains: &str) {
    let client = client().await;
    let answer = client.submit_unpaid(&body).await.unwrap();
    assert_eq!(answer.status, 422, "{body} → {}", answer.body);
    assert!(answer.payment_required.is_none());
    let field = answer.body["field"].as_str().unwrap_or_default();
    let message = answer.body["error"].as_str().unwrap_or_default();
    assert!(field.contains(field_contains), "field {field:?} for {body}");
    assert!(message.contains(message_contains), "message {message:?} lacks {message_contains:?}");
}

#[tokio::test]
async fn dockerfile_rules_are_422_with_the_exact_reason() {
    let with = |dockerfile: &str| json!({"files": [file("Dockerfile", dockerfile), file("main.py", "print(1)")]});
    refused(with("FROM ouro-python\nUSER root\nCMD [\"python3\", \"main.py\"]\n"), "", "USER").await;
    refused(with("FROM ouro-python\nVOLUME /data\nCMD [\"python3\", \"main.py\"]\n"), "", "VOLUME").await;
    refused(with("FROM ubuntu:22.04\nCMD [\"python3\", \"main.py\"]\n"), "", "ouro-python").await;
    refused(with("FROM ouro-python\nCOPY missing.py /app/\nCMD [\"python3\", \"main.py\"]\n"), "", "missing.py").await;
    refused(with("FROM ouro-python\nADD https://example.com/x.tar.gz /x\nCMD [\"python3\", \"main.py\"]\n"), "", "URL")
        .await;
    refused(with("FROM ouro-python\nCOPY main.py /app/main.py\n"), "", "ENTRYPOINT").await;
}

#[tokio::test]
async fn path_rules_are_422_naming_the_file() {
    let one = |path: &str| json!({"files": [file(path, "x")], "entrypoint": "true"});
    refused(one("/etc/passwd"), "files[0]", "/etc/passwd").await;
    refused(one("../escape.txt"), "files[0]", "..").await;
    refused(one("a/b/c/d/e/f.txt"), "files[0]", "depth").await;
    refused(one("bad|name.txt"), "files[0]", "bad|name.txt").await;
    refused(json!({"files": [file("a.txt", "1"), file("a.txt", "2")], "entrypoint": "true"}), "files[1]", "a.txt").await;
    let many: Vec<Value> = (0..101).map(|i| file(&format!("f{i}.txt"), "x")).collect();
    refused(json!({"files": many, "entrypoint": "true"}), "files", "100").await;
    refused(json!({"files": [file("main.py", "print(1)")]}), "entrypoint", "").await;
    refused(json!({"script": "echo a", "entrypoint": "echo b"}), "entrypoint", "cannot be combined with `script`").await;
}
