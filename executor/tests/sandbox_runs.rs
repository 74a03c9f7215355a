//! The container lifecycle against a real Docker engine, with the images from `stack/images/build.sh`.
//! Skipped (with a message) when no engine answers.

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use ouro_core::dispatch::JobAssignment;
use ouro_core::job::{FailureReason, Fault};
use ouro_executor::run::Runner;
use ouro_executor::sandbox::container_name;
use ouro_executor::workspace::jobs_root;
use tokio::sync::watch;

const DEADLINE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn echo_hello_completes_and_leaves_nothing_behind() {
    let docker = engine!("echo_hello");
    let runner = common::runner(docker.clone(), common::API_TIMEOUT);
    let job = common::job("echo", "ouro-ubuntu", "echo hello");
    let started = Instant::now();
    let report = common::run_with(&runner, &job, DEADLINE).await;
    let latency = started.elapsed();
    eprintln!(
        "echo hello through the runner: {} ms end to end (setup {} ms, run {} ms, teardown {} ms)",
        latency.as_millis(),
        (report.setup_s * 1000.0) as u64,
        (report.outcome.compute_duration_s * 1000.0) as u64,
        (report.teardown_s * 1000.0) as u64
    );
    let o = report.outcome;
    assert_eq!(o.failure, None, "{o:?}");
    assert_eq!(o.exit_code, Some(0));
    assert_eq!(o.output, "hello\n");
    assert_eq!(o.error_output, "");
    assert!(!o.output_truncated && !o.error_output_truncated);
    assert!(o.compute_duration_s > 0.0 && o.compute_duration_s < 10.0);

    let name = container_name(&job.job_id);
    let gone = docker.inspect_container(&name, None).await;
    assert!(gone.is_err(), "container {name} must be removed");
    assert!(!jobs_root(&common::work_dir("run")).join(&job.job_id).exists(), "job dir must be removed");
}

#[tokio::test]
async fn non_zero_exit_is_the_users_failure() {
    let runner = common::runner(engine!("exit_3"), common::API_TIMEOUT);
    let o = common::run_with(&runner, &common::job("exit3", "ouro-ubuntu", "echo partial; exit 3"), DEADLINE).await.outcome;
    assert_eq!(o.exit_code, Some(3));
    assert_eq!(o.output, "partial\n");
    let failure = o.failure.expect("a failure");
    assert_eq!(failure.reason, FailureReason::NonZeroExit);
    assert_eq!(failure.fault(), Fault::UserError);
    assert!(failure.message.contains('3'), "{}", failure.message);
}

#[tokio::test]
async fn deadline_kills_and_keeps_earlier_output() {
    let runner = common::runner(engine!("deadline"), common::API_TIMEOUT);
    // The script would run 30 s: ending well before that is the kill at the deadline, whatever the teardown
    // costs on a loaded machine.
    let job = common::job("deadline", "ouro-ubuntu", "echo before; echo oops >&2; sleep 30; echo after");
    let started = Instant::now();
    let o = common::run_with(&runner, &job, Duration::from_secs(1)).await.outcome;
    assert!(started.elapsed() < Duration::from_secs(15), "killed at the deadline, not at exit");
    assert_eq!(o.failure.as_ref().map(|f| f.reason), Some(FailureReason::TimeLimitExceeded), "{o:?}");
    assert_eq!(o.exit_code, None, "killed, so no exit code of its own");
    assert_eq!(o.output, "before\n");
    assert_eq!(o.error_output, "oops\n");
    assert!(o.compute_duration_s >= 0.9 && o.compute_duration_s < 10.0, "{}", o.compute_duration_s);
}

#[tokio::test]
async fn stdout_and_stderr_stay_apart() {
    let runner = common::runner(engine!("streams"), common::API_TIMEOUT);
    let script = "for i in 1 2 3; do echo out$i; echo err$i >&2; done";
    let o = common::run_with(&runner, &common::job("streams", "ouro-ubuntu", script), DEADLINE).await.outcome;
    assert_eq!(o.output, "out1\nout2\nout3\n");
    assert_eq!(o.error_output, "err1\nerr2\nerr3\n");
}

#[tokio::test]
async fn runs_as_nobody() {
    let runner = common::runner(engine!("identity"), common::API_TIMEOUT);
    let o = common::run_with(&runner, &common::job("id", "ouro-ubuntu", "cat /etc/hostname; id -u; id -g; pwd"), DEADLINE)
        .await
        .outcome;
    assert_eq!(o.output, "sandbox\n65534\n65534\n/workspace\n", "{o:?}");
}

#[tokio::test]
async fn network_is_only_loopback() {
    let runner = common::runner(engine!("network"), common::API_TIMEOUT);
    // Listing interfaces sends nothing anywhere; with network "none" only `lo` exists.
    let o = common::run_with(&runner, &common::job("net", "ouro-ubuntu", "ls /sys/class/net"), DEADLINE).await.outcome;
    assert_eq!(o.output, "lo\n", "{o:?}");
}

#[tokio::test]
async fn loopback_works_inside_the_sandbox() {
    let runner = common::runner(engine!("loopback"), common::API_TIMEOUT);
    // Jobs may run local servers for their own tests; this connects to itself on 127.0.0.1 only.
    let script = "#!/usr/bin/env python3\nimport socket\ns = socket.socket()\ns.bind(('127.0.0.1', 0))\n\
                  s.listen()\nc = socket.create_connection(s.getsockname(), timeout=2)\nprint('loopback-ok')\n";
    let o = common::run_with(&runner, &common::job("lo", "ouro-python", script), DEADLINE).await.outcome;
    assert_eq!(o.output, "loopback-ok\n", "{o:?}");
}

#[tokio::test]
async fn root_is_read_only_and_tmp_and_workspace_are_writable() {
    let runner = common::runner(engine!("filesystem"), common::API_TIMEOUT);
    let script = r#"
if touch /rootfile 2>/dev/null; then echo root-writable; else echo root-readonly; fi
echo tmp > /tmp/t && cat /tmp/t
echo ws > /workspace/f && cat f
printf '#!/bin/sh\necho exec-ok\n' > /tmp/x && chmod +x /tmp/x && /tmp/x
"#;
    let o = common::run_with(&runner, &common::job("fs", "ouro-ubuntu", script), DEADLINE).await.outcome;
    assert_eq!(o.output, "root-readonly\ntmp\nws\nexec-ok\n", "{o:?}");
}

#[tokio::test]
async fn limits_are_applied() {
    let runner = common::runner(engine!("limits"), common::API_TIMEOUT);
    // cgroup files differ between v1 and v2; print whichever exists.
    let script = "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max; \
                  cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max; \
                  grep CapEff /proc/self/status; grep NoNewPrivs /proc/self/status";
    let job = JobAssignment { cpus: 2, ..common::job("limits", "ouro-ubuntu", script) };
    let o = common::run_with(&runner, &job, DEADLINE).await.outcome;
    let lines: Vec<&str> = o.output.lines().collect();
    assert_eq!(lines.len(), 4, "{o:?}");
    assert_eq!(lines[0], "256");
    // The kernel rounds the limit down to whole pages.
    let memory: i64 = lines[1].trim().parse().unwrap_or(0);
    assert!((3_199_000_000..=3_200_000_000).contains(&memory), "{memory}");
    assert!(lines[2].ends_with("0000000000000000"), "no capabilities: {}", lines[2]);
    assert!(lines[3].ends_with('1'), "{}", lines[3]);
}

#[tokio::test]
async fn shebang_scripts_run_with_their_interpreter() {
    let runner = common::runner(engine!("shebang"), common::API_TIMEOUT);
    let script = "#!/usr/bin/env python3\nimport os\nprint('py', 6 * 7, os.getuid())\n";
    let o = common::run_with(&runner, &common::job("py", "ouro-python", script), DEADLINE).await.outcome;
    assert_eq!(o.failure, None, "{o:?}");
    assert_eq!(o.output, "py 42 65534\n");

    // A missing interpreter is the script's problem, reported like any failed command.
    let o =
        common::run_with(&runner, &common::job("nointerp", "ouro-ubuntu", "#!/usr/bin/nonexistent\n"), DEADLINE).await.outcome;
    assert_eq!(o.exit_code, Some(127), "{o:?}");
    assert_eq!(o.failure.map(|f| f.reason), Some(FailureReason::NonZeroExit));
}

#[tokio::test]
async fn pip_and_bash_work_for_nobody_in_python_image() {
    let runner = common::runner(engine!("python_image"), common::API_TIMEOUT);
    let script = "python3 -c 'print(1+1)'; pip --version >/dev/null && echo pip-ok; bash -c 'echo bash-ok'";
    let o = common::run_with(&runner, &common::job("pyimg", "ouro-python", script), DEADLINE).await.outcome;
    assert_eq!(o.output, "2\npip-ok\nbash-ok\n", "{o:?}");
}

#[tokio::test]
async fn nodejs_image_runs_node_when_built() {
    let docker = engine!("nodejs");
    // build.sh does not build this image by default; say so rather than fail.
    if docker.inspect_image("ouro-nodejs:latest").await.is_err() {
        eprintln!("SKIPPED nodejs_image_runs_node_when_built: run `stack/images/build.sh ouro-nodejs` first");
        return;
    }
    let runner = common::runner(docker, common::API_TIMEOUT);
    let script = "#!/usr/bin/env node\nconsole.log('node', 6 * 7, process.getuid())\n";
    let o = common::run_with(&runner, &common::job("node", "ouro-nodejs", script), DEADLINE).await.outcome;
    assert_eq!(o.output, "node 42 65534\n", "{o:?}");
}

#[tokio::test]
async fn memory_limit_is_an_oom_failure() {
    let runner = common::runner(engine!("oom"), common::API_TIMEOUT);
    // 3 GB of zeroed (so touched) memory against a 1.6 GB limit.
    let script = "python3 -c 'b = bytearray(3_000_000_000); print(len(b))'";
    let o = common::run_with(&runner, &common::job("oom", "ouro-python", script), DEADLINE).await.outcome;
    let failure = o.failure.expect("a failure");
    assert_eq!(failure.reason, FailureReason::OutOfMemory, "{failure:?}");
    assert_eq!(failure.fault(), Fault::UserError);
    assert_eq!(o.output, "");
}

#[tokio::test]
async fn missing_image_is_an_internal_error() {
    let docker = engine!("missing_image");
    let images = [("ouro-nodejs".to_string(), "ouro-does-not-exist:latest".to_string())].into_iter().collect();
    let runner = Runner::new(docker, images, common::work_dir("run"), common::API_TIMEOUT);
    let o = common::run_with(&runner, &common::job("noimg", "ouro-nodejs", "echo hi"), DEADLINE).await.outcome;
    let failure = o.failure.expect("a failure");
    assert_eq!(failure.reason, FailureReason::InternalError);
    assert_eq!(failure.fault(), Fault::PlatformError);
    assert!(failure.message.contains("ouro-does-not-exist:latest"), "{}", failure.message);
    assert_eq!(o.exit_code, None);
}

#[tokio::test]
async fn a_job_may_outlive_the_engine_call_timeout() {
    // bollard's request timeout covers the wait call's response headers only; a 3 s job under a 2 s per-call
    // timeout must still finish normally.
    let runner = common::runner(engine!("long_wait"), Duration::from_secs(2));
    let o = common::run_with(&runner, &common::job("longwait", "ouro-ubuntu", "sleep 3; echo done"), DEADLINE).await.outcome;
    assert_eq!(o.failure, None, "{o:?}");
    assert_eq!(o.output, "done\n");
}

#[tokio::test]
async fn abort_kills_the_job_as_a_platform_error() {
    let runner = common::runner(engine!("abort"), common::API_TIMEOUT);
    let job = common::job("abort", "ouro-ubuntu", "echo started; sleep 30");
    let (abort_tx, abort_rx) = watch::channel(false);
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let run = runner.run(&job, DEADLINE, abort_rx, move || {
        let _ = started_tx.send(());
    });
    let abort = async {
        let _ = started_rx.await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _ = abort_tx.send(true);
    };
    let (report, ()) = tokio::join!(run, abort);
    let o = report.outcome;
    assert_eq!(o.failure.as_ref().map(|f| f.fault()), Some(Fault::PlatformError), "{o:?}");
    assert_eq!(o.output, "started\n");
}


/// `cargo test -p ouro-executor --test sandbox_runs -- --ignored --nocapture echo_latency`
#[tokio::test]
#[ignore = "a measurement, not a check"]
async fn echo_latency() {
    let runner = common::runner(engine!("echo_latency"), common::API_TIMEOUT);
    let mut totals = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        let report = common::run_with(&runner, &common::job("lat", "ouro-ubuntu", "echo hello"), DEADLINE).await;
        assert_eq!(report.outcome.output, "hello\n");
        totals.push(started.elapsed().as_millis());
    }
    totals.sort_unstable();
    eprintln!("echo hello via bollard, 20 runs: min {} ms, median {} ms, max {} ms", totals[0], totals[10], totals[19]);
}
