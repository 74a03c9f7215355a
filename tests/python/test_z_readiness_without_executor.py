"""Readiness names what is missing: with the executor stopped, /health/ready is 503 and says it is the executor;
started again, the service is ready. Runs last (it stops a service) and restores the stack with `cargo xtask up`."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import httpx

from conftest import ROOT

EXECUTOR_URL = os.environ.get("OURO_EXECUTOR_URL", "http://127.0.0.1:8788")


def _executor_answers() -> bool:
    try:
        return httpx.get(f"{EXECUTOR_URL}/v1/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _ready(ouro_url: str) -> httpx.Response:
    return httpx.get(f"{ouro_url}/health/ready", timeout=30)


def test_stopped_executor_degrades_readiness_by_name(ouro_url):
    assert _ready(ouro_url).status_code == 200, _ready(ouro_url).text
    pid_file = ROOT / ".ouro/run/executor.pid"
    pid = int(pid_file.read_text().strip())
    try:
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while _executor_answers() and time.monotonic() < deadline:
            time.sleep(0.25)
        assert not _executor_answers(), "the executor did not stop"
        resp = _ready(ouro_url)
        assert resp.status_code == 503, resp.text
        body = resp.json()
        assert body["status"] == "degraded"
        executor = body["checks"]["executor"]
        assert executor["status"] != "ok"
        assert "8788" in str(executor), f"the check names the executor it could not reach: {executor}"
        for name, check in body["checks"].items():
            if name != "executor":
                assert check["status"] == "ok", f"only the executor is down: {body}"
    finally:
        subprocess.run(["cargo", "xtask", "up"], cwd=ROOT, check=True, stdin=subprocess.DEVNULL, timeout=600)
    assert _ready(ouro_url).status_code == 200
