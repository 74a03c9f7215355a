"""Shared fixtures for the Python x402 SDK tests against the running local stack.

Env (set by `cargo xtask test`, defaulting to the local stack): OURO_URL, OURO_RPC_URL, OURO_ACCOUNTS_FILE.
Account 9 is this suite's (test_v1_*.py pays from 14, money safety's): the others belong to concurrent tests.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]

USDC = "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
NETWORK = "eip155:84532"
ACCOUNT_INDEX = 9
TIMEOUT = httpx.Timeout(30.0, connect=5.0)


@pytest.fixture(scope="session")
def ouro_url() -> str:
    return os.environ.get("OURO_URL", "http://127.0.0.1:8787").rstrip("/")


@pytest.fixture(scope="session")
def rpc_url() -> str:
    return os.environ.get("OURO_RPC_URL", "http://127.0.0.1:8545")


def account(index: int) -> dict:
    """One funded anvil account of accounts.json: {"index", "address", "private_key"}."""
    path = Path(os.environ.get("OURO_ACCOUNTS_FILE", ROOT / "stack/chain/accounts.json"))
    return next(a for a in json.loads(path.read_text())["accounts"] if a["index"] == index)


@pytest.fixture(scope="session")
def payer() -> dict:
    """Account 9 from accounts.json: {"index", "address", "private_key"}."""
    account_ = account(ACCOUNT_INDEX)
    assert account_["address"].lower() == "0xa0ee7a142d267c1f36714e4a8f75612f20a79720"
    return account_


def _rpc(rpc_url: str, method: str, params: list):
    resp = httpx.post(
        rpc_url,
        json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params},
        timeout=TIMEOUT,
    )
    resp.raise_for_status()
    body = resp.json()
    assert "error" not in body, f"{method} failed: {body['error']}"
    return body["result"]


@pytest.fixture(scope="session")
def rpc(rpc_url):
    """rpc(method, params) -> result, over plain JSON-RPC."""
    return lambda method, params: _rpc(rpc_url, method, params)


@pytest.fixture(scope="session")
def usdc_balance(rpc):
    """usdc_balance(address) -> int atomic units, via eth_call balanceOf(address)."""

    def balance(address: str) -> int:
        data = "0x70a08231" + address.lower().removeprefix("0x").rjust(64, "0")
        return int(rpc("eth_call", [{"to": USDC, "data": data}, "latest"]), 16)

    return balance


@pytest.fixture()
def submit_unpaid(ouro_url):
    """POST a job spec without payment; returns the raw httpx response (expected 402)."""

    def submit(spec: dict) -> httpx.Response:
        return httpx.post(f"{ouro_url}/api/compute/submit", json=spec, timeout=TIMEOUT)

    return submit
