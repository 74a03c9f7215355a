//! Workspace jobs against a real Docker engine: files with an entrypoint, and Dockerfiles built with the legacy
//! builder (no network), cached, and run in the same sandbox as scripts. Skipped (with a message) when no engine
//! answers.

#[macro_use]
mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use ouro_core::dispatch::JobAssignment;
use ouro_core::job::{FailureReason, FailureStage, Fault};
use ouro_executor::build::LABEL_BUILD_KEY;
use ouro_executor::run::{RunReport, Runner};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

const DEADLINE: Duration = Duration::from_secs(180);

/// A run, with the progress messages it reported and whether its container started.
struct Observed {
    report: RunReport,
    messages: Vec<String>,
    started: bool,
    elapsed: Duration,
}

async fn observe(runner: &Runner, job: &JobAssignment, deadline: Duration) -> Observed {
    let (_abort_tx, abort_rx) = watch::channel(false);
    let messages = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&messages);
    let started = Arc::new(Mutex::new(false));
    let started_flag = Arc::clone(&started);
    let t = Instant::now();
    let report = runner
        .run_with_progress(
            job,
            deadline,
            abort_rx,
            move |m| sink.lock().unwrap_or_else(|p| p.into_inner()).push(m),
            move || *started_flag.lock().unwrap_or_else(|p| p.into_inner()) = true,
        )
        .await;
    let elapsed = t.elapsed();
    let messages = messages.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let started = *started.lock().unwrap_or_else(|p| p.into_inner());
    Observed { report, messages, started, elapsed }
}

/// Unique per test run, so a build is a real build the first time (earlier runs' images do not match).
fn nonce() -> String {
    common::job_id("n")
}

#[tokio::test]
async fn dockerfile_image_is_built_cached_and_run_in_the_sandbox() {
    let docker = engine!("dockerfile_build");
    let runner = common::runner(docker.clone(), common::API_TIMEOUT);
    // The nonce makes every step new to the engine's layer cache too: this is a cold build.
    let nonce = nonce();
    let dockerfile = format!(
        "FROM ouro-python\n\
         RUN python3 -c \"open('/built','w').write('ok')\" # {nonce}\n\
         RUN ls /sys/class/net > /net\n\
         COPY main.py /app/main.py\n\
         WORKDIR /app\n\
         ENTRYPOINT [\"python3\", \"main.py\"]\n"
    );
    let main_py = "import os\nprint(open('/built').read(), os.getcwd(), os.getuid(), open('/net').read().split())\n\
                   try:\n    open('/app/x', 'w')\nexcept OSError:\n    print('root read-only')\n";
    let files = vec![common::file("Dockerfile", dockerfile), common::file("main.py", main_py)];
    let expected = "ok /app 65534 ['lo']\nroot read-only\n";

    let first = observe(&runner, &common::workspace_job("build1", "ouro-python", files.clone(), None), DEADLINE).await;
    let o = &first.report.outcome;
    assert_eq!(o.failure, None, "{o:?}");
    assert_eq!(o.output, expected, "{o:?}");
    let build = first.report.build.clone().expect("build info");
    assert!(!build.cache_hit);
    assert!(build.tag.starts_with("ouro-build:") && build.tag.len() == "ouro-build:".len() + 24, "{}", build.tag);
    assert_eq!(first.messages.len(), 2, "{:?}", first.messages);
    assert_eq!(first.messages[0], format!("building image {}", build.tag));
    assert!(first.messages[1].starts_with(&format!("built image {} in ", build.tag)), "{:?}", first.messages);
    let image = docker.inspect_image(&build.tag).await.expect("the built image exists");
    let labels = image.config.and_then(|c| c.labels).unwrap_or_default();
    assert!(labels.contains_key(LABEL_BUILD_KEY), "{labels:?}");

    let second = observe(&runner, &common::workspace_job("build2", "ouro-python", files.clone(), None), DEADLINE).await;
    let o = &second.report.outcome;
    assert_eq!((o.failure.as_ref(), o.output.as_str()), (None, expected), "{o:?}");
    let cached = second.report.build.clone().expect("build info");
    assert!(cached.cache_hit);
    assert_eq!(cached.tag, build.tag);
    assert_eq!(second.messages, vec![format!("build cache hit {}", build.tag)]);

    // An entrypoint replaces the image's, and runs in the (empty, writable) workspace.
    let job = common::workspace_job("build3", "ouro-python", files, Some("pwd; cat /built; echo; ls -A; id -u"));
    let third = observe(&runner, &job, DEADLINE).await;
    let o = &third.report.outcome;
    assert_eq!(o.output, "/workspace\nok\n65534\n", "{o:?}");
    assert!(third.report.build.as_ref().is_some_and(|b| b.cache_hit));

    eprintln!(
        "dockerfile job: built in {:.1} s (job {:.1} s end to end); cache hit job {:.2} s end to end (build stage {:.3} s)",
        build.seconds,
        first.elapsed.as_secs_f64(),
        second.elapsed.as_secs_f64(),
        cached.seconds
    );
    common::remove_image(&docker, &build.tag).await;
}

#[tokio::test]
async fn identical_jobs_at_once_build_once() {
    let docker = engine!("concurrent_builds");
    let runner = common::runner(docker.clone(), common::API_TIMEOUT);
    let dockerfile = format!("FROM ouro-ubuntu\nRUN echo {} > /n && sleep 1\nCMD [\"cat\", \"/n\"]\n", nonce());
    let job =
        |name: &str| common::workspace_job(name, "ouro-ubuntu", vec![common::file("Dockerfile", &dockerfile)], None);
    let (a, b) = (job("same-a"), job("same-b"));
    let (a, b) = tokio::join!(observe(&runner, &a, DEADLINE), observe(&runner, &b, DEADLINE));
    assert_eq!(a.report.outcome.output, b.report.outcome.output);
    assert_eq!(a.report.outcome.failure, None, "{:?}", a.report.outcome);
    let hits: Vec<bool> = [&a, &b].iter().filter_map(|o| o.report.build.as_ref().map(|b| b.cache_hit)).collect();
    assert_eq!(hits.iter().filter(|h| **h).count(), 1, "one built, the other waited and hit the cache: {hits:?}");
    if let Some(build) = a.report.build {
        common::remove_image(&docker, &build.tag).await;
    }
}

#[tokio::test]
async fn pip_install_without_network_fails_fast_as_a_build_failure() {
    let runner = common::runner(engine!("pip_offline"), common::API_TIMEOUT);
    let dockerfile = format!("FROM ouro-python\n# {}\nRUN pip install requests\nCMD [\"true\"]\n", nonce());
    let job = common::workspace_job("pip", "ouro-python", vec![common::file("Dockerfile", dockerfile)], None);
    let seen = observe(&runner, &job, DEADLINE).await;
    eprintln!("offline pip install failed after {:.1} s", seen.elapsed.as_secs_f64());
    assert!(seen.elapsed < Duration::from_secs(60), "{:?}", seen.elapsed);
    let o = &seen.report.outcome;
    let failure = o.failure.as_ref().expect("a failure");
    assert_eq!((failure.reason, failure.stage), (FailureReason::BuildFailed, FailureStage::Build), "{o:?}");
    assert_eq!(failure.fault(), Fault::UserError);
    eprintln!("offline pip install: {}\n--- error_output ---\n{}", failure.message, o.error_output);
    assert!(failure.message.contains("returned a non-zero code"), "{}", failure.message);
    assert!(o.error_output.contains("No matching distribution found for requests"), "{}", o.error_output);
    assert!(!o.error_output.contains("Retrying"), "no retries without a network: {}", o.error_output);
    assert!(!seen.started, "the run never happens");
    assert_eq!(o.exit_code, None);
    assert_eq!(o.output, "");
    assert!(seen.report.build.is_none());
    assert_eq!(seen.messages.len(), 1, "{:?}", seen.messages);
}

#[tokio::test]
async fn npm_install_without_network_fails_fast_as_a_build_failure() {
    let docker = engine!("npm_offline");
    if docker.inspect_image("ouro-nodejs:latest").await.is_err() {
        eprintln!("SKIPPED npm_install_without_network_fails_fast: run `bash stack/images/build.sh ouro-nodejs` first");
        return;
    }
    let runner = common::runner(docker, common::API_TIMEOUT);
    let dockerfile =
        format!("FROM ouro-nodejs\n# {}\nWORKDIR /app\nRUN npm install left-pad\nCMD [\"true\"]\n", nonce());
    let job = common::workspace_job("npm", "ouro-nodejs", vec![common::file("Dockerfile", dockerfile)], None);
    let seen = observe(&runner, &job, DEADLINE).await;
    eprintln!("offline npm install failed after {:.1} s", seen.elapsed.as_secs_f64());
    assert!(seen.elapsed < Duration::from_secs(60), "{:?}", seen.elapsed);
    let o = &seen.report.outcome;
    assert_eq!(o.failure.as_ref().map(|f| f.reason), Some(FailureReason::BuildFailed), "{o:?}");
    assert!(o.error_output.contains("EAI_AGAIN"), "{}", o.error_output);
    assert!(!o.error_output.contains('\u{1b}'), "no terminal colours: {:?}", o.error_output);
}

#[tokio::test]
async fn a_copy_of_a_missing_file_is_a_build_failure() {
    let runner = common::runner(engine!("copy_missing"), common::API_TIMEOUT);
    let dockerfile = format!("FROM ouro-ubuntu\n# {}\nCOPY nothere.txt /x\n", nonce());
    let job = common::workspace_job("copy", "ouro-ubuntu", vec![common::file("Dockerfile", dockerfile)], None);
    let o = observe(&runner, &job, DEADLINE).await.report.outcome;
    let failure = o.failure.as_ref().expect("a failure");
    assert_eq!(failure.reason, FailureReason::BuildFailed, "{o:?}");
    assert!(o.error_output.contains("nothere.txt"), "{}", o.error_output);
}

#[tokio::test]
async fn wheels_in_the_workspace_install_offline() {
    let docker = engine!("wheels");
    let runner = common::runner(docker.clone(), common::API_TIMEOUT);
    let greeting = format!("hello from a wheel {}", nonce());
    let (wheel_name, wheel) = hello_wheel(&greeting);
    let dockerfile = "FROM ouro-python\n\
                      COPY wheels /wheels\n\
                      RUN pip install --no-index --find-links /wheels hello_pkg\n\
                      CMD [\"python3\", \"-c\", \"import hello_pkg; print(hello_pkg.hello())\"]\n";
    let files = vec![common::file("Dockerfile", dockerfile), common::file(&format!("wheels/{wheel_name}"), wheel)];
    let seen = observe(&runner, &common::workspace_job("wheel", "ouro-python", files, None), DEADLINE).await;
    let o = &seen.report.outcome;
    assert_eq!(o.failure, None, "{o:?}");
    assert_eq!(o.output, format!("{greeting}\n"));
    let build = seen.report.build.expect("built");
    eprintln!("wheel build: {:.1} s", build.seconds);
    common::remove_image(&docker, &build.tag).await;
}

#[tokio::test]
async fn a_build_past_the_time_limit_is_stopped() {
    let docker = engine!("build_timeout");
    let runner = common::runner(docker.clone(), common::API_TIMEOUT);
    let dockerfile = format!("FROM ouro-ubuntu\nRUN echo {} && sleep 60\n", nonce());
    let job = common::workspace_job("slowbuild", "ouro-ubuntu", vec![common::file("Dockerfile", dockerfile)], None);
    let seen = observe(&runner, &job, Duration::from_secs(4)).await;
    assert!(seen.elapsed < Duration::from_secs(15), "{:?}", seen.elapsed);
    let o = &seen.report.outcome;
    let failure = o.failure.as_ref().expect("a failure");
    assert_eq!((failure.reason, failure.stage), (FailureReason::TimeLimitExceeded, FailureStage::Build), "{o:?}");
    assert!(!seen.started);
    // The engine stops the build when we hang up, and removes its container.
    let container = o.error_output.lines().find_map(|l| l.strip_prefix(" ---> Running in ")).map(str::trim);
    let container = container.expect("the log names the step's container").to_string();
    let mut gone = false;
    for _ in 0..40 {
        if docker.inspect_container(&container, None).await.is_err() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(gone, "build container {container} still exists");
}

#[tokio::test]
async fn files_run_with_an_entrypoint_in_the_workspace() {
    let runner = common::runner(engine!("files_entrypoint"), common::API_TIMEOUT);
    let main_py = "import os\nprint(open('data/input.txt').read().strip(), os.getcwd(), os.stat('main.py').st_uid)\n\
                   open('out.txt', 'w').write('written')\nprint(open('out.txt').read())\n";
    let files = vec![common::file("main.py", main_py), common::file("data/input.txt", "forty-two\n")];
    let job = common::workspace_job("files", "ouro-python", files, Some("python3 main.py"));
    let seen = observe(&runner, &job, DEADLINE).await;
    let o = &seen.report.outcome;
    assert_eq!(o.failure, None, "{o:?}");
    assert_eq!(o.output, "forty-two /workspace 65534\nwritten\n");
    assert!(seen.report.build.is_none() && seen.messages.is_empty());

    // With a script too, the script runs (next to the files), as a script job would.
    let job = JobAssignment {
        script: "cat data/input.txt; ls".into(),
        ..common::workspace_job("files-script", "ouro-ubuntu", vec![common::file("data/input.txt", "x\n")], None)
    };
    let o = observe(&runner, &job, DEADLINE).await.report.outcome;
    assert_eq!(o.output, "x\ndata\njob\n", "{o:?}");

    // A failing entrypoint is the job's failure.
    let job = common::workspace_job("files-fail", "ouro-ubuntu", vec![common::file("a", "")], Some("exit 4"));
    let o = observe(&runner, &job, DEADLINE).await.report.outcome;
    assert_eq!(o.exit_code, Some(4));
    assert_eq!(o.failure.map(|f| f.reason), Some(FailureReason::NonZeroExit));
}

#[tokio::test]
async fn nodejs_files_run_with_node() {
    let docker = engine!("nodejs_files");
    if docker.inspect_image("ouro-nodejs:latest").await.is_err() {
        eprintln!("SKIPPED nodejs_files_run_with_node: run `bash stack/images/build.sh ouro-nodejs` first");
        return;
    }
    let runner = common::runner(docker, common::API_TIMEOUT);
    let files = vec![
        common::file("main.js", "const { add } = require('./lib/add');\nconsole.log('node', add(40, 2));\n"),
        common::file("lib/add.js", "exports.add = (a, b) => a + b;\n"),
    ];
    let job = common::workspace_job("node", "ouro-nodejs", files, Some("node main.js"));
    let o = observe(&runner, &job, DEADLINE).await.report.outcome;
    assert_eq!(o.failure, None, "{o:?}");
    assert_eq!(o.output, "node 42\n");
}

/// A minimal pure-Python wheel (`hello_pkg` 0.1), written as a stored zip: the name and the bytes.
fn hello_wheel(greeting: &str) -> (String, Vec<u8>) {
    let dist = "hello_pkg-0.1.dist-info";
    let mut entries: Vec<(String, Vec<u8>)> = vec![
        ("hello_pkg/__init__.py".into(), format!("def hello():\n    return {greeting:?}\n").into_bytes()),
        (format!("{dist}/METADATA"), b"Metadata-Version: 2.1\nName: hello_pkg\nVersion: 0.1\n".to_vec()),
        (
            format!("{dist}/WHEEL"),
            b"Wheel-Version: 1.0\nGenerator: ouro-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n".to_vec(),
        ),
    ];
    let mut record = String::new();
    for (name, data) in &entries {
        let hash = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(data));
        record.push_str(&format!("{name},sha256={hash},{}\n", data.len()));
    }
    record.push_str(&format!("{dist}/RECORD,,\n"));
    entries.push((format!("{dist}/RECORD"), record.into_bytes()));
    ("hello_pkg-0.1-py3-none-any.whl".into(), stored_zip(&entries))
}

fn stored_zip(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    const DOS_DATE_1980_01_01: u16 = (1 << 5) | 1;
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in entries {
        let offset = out.len() as u32;
        let crc = crc32(data);
        let common = |b: &mut Vec<u8>| {
            b.extend_from_slice(&20u16.to_le_bytes()); // version needed
            b.extend_from_slice(&0u16.to_le_bytes()); // flags
            b.extend_from_slice(&0u16.to_le_bytes()); // stored
            b.extend_from_slice(&0u16.to_le_bytes()); // time
            b.extend_from_slice(&DOS_DATE_1980_01_01.to_le_bytes());
            b.extend_from_slice(&crc.to_le_bytes());
            b.extend_from_slice(&(data.len() as u32).to_le_bytes());
            b.extend_from_slice(&(data.len() as u32).to_le_bytes());
            b.extend_from_slice(&(name.len() as u16).to_le_bytes());
            b.extend_from_slice(&0u16.to_le_bytes()); // extra length
        };
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        common(&mut out);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);

        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&20u16.to_le_bytes()); // version made by
        common(&mut central);
        central.extend_from_slice(&0u16.to_le_bytes()); // comment length
        central.extend_from_slice(&0u16.to_le_bytes()); // disk
        central.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
        central.extend_from_slice(&0u32.to_le_bytes()); // external attributes
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let central_offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&central_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

#[test]
fn crc32_is_the_zip_one() {
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
}
