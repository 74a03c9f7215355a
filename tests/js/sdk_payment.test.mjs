// The official npm x402 client (`@x402/fetch` + `@x402/evm`, pinned in stack/package.json) paying the running
// stack end to end, unmodified: it reads the 402's PAYMENT-REQUIRED, signs the EIP-3009 authorization with a
// viem account, retries with PAYMENT-SIGNATURE and hands back the paid answer. Nothing here signs by hand.
//
// Run by `cargo xtask test` (node --test tests/js/) with OURO_URL, OURO_RPC_URL, OURO_ACCOUNTS_FILE set.
// Pays from anvil account 14 (money safety's, see tests/src/lib.rs).

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..", "..");
// The packages live with the rest of the local tooling in stack/node_modules.
const stackRequire = createRequire(join(root, "stack", "package.json"));
const load = (name) => import(pathToFileURL(stackRequire.resolve(name)).href);

const { wrapFetchWithPayment, decodePaymentResponseHeader, x402Client } = await load("@x402/fetch");
const { ExactEvmScheme } = await load("@x402/evm/exact/client");
const { privateKeyToAccount } = await load("viem/accounts");

const OURO_URL = (process.env.OURO_URL ?? "http://127.0.0.1:8787").replace(/\/$/, "");
const RPC_URL = process.env.OURO_RPC_URL ?? "http://127.0.0.1:8545";
const ACCOUNTS_FILE = process.env.OURO_ACCOUNTS_FILE ?? join(root, "stack", "chain", "accounts.json");
const TOKEN = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";
const NETWORK = "eip155:84532";
const ACCOUNT_INDEX = 14;

const deadline = (ms) => AbortSignal.timeout(ms);

async function rpc(method, params) {
  const resp = await fetch(RPC_URL, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params }),
    signal: deadline(10_000),
  });
  const body = await resp.json();
  assert.equal(body.error, undefined, `${method}: ${JSON.stringify(body.error)}`);
  return body.result;
}

async function usdcBalance(address) {
  const data = "0x70a08231" + address.toLowerCase().replace(/^0x/, "").padStart(64, "0");
  return BigInt(await rpc("eth_call", [{ to: TOKEN, data }, "latest"]));
}

async function waitForJob(jobId) {
  const until = Date.now() + 120_000;
  for (;;) {
    const resp = await fetch(`${OURO_URL}/api/jobs/${jobId}`, { signal: deadline(10_000) });
    assert.equal(resp.status, 200);
    const job = await resp.json();
    if (job.status === "completed" || job.status === "failed") return job;
    assert.ok(Date.now() < until, `job ${jobId} still ${job.status}`);
    await new Promise((r) => setTimeout(r, 1000));
  }
}

test("@x402/fetch pays a job unmodified and the job runs", async () => {
  const accounts = JSON.parse(readFileSync(ACCOUNTS_FILE, "utf8")).accounts;
  const entry = accounts.find((a) => a.index === ACCOUNT_INDEX);
  const account = privateKeyToAccount(entry.private_key);
  assert.equal(account.address.toLowerCase(), entry.address.toLowerCase());

  // What the SDK did on the wire: every exchange through a recording fetch.
  const exchanges = [];
  const recording = async (input, init) => {
    const request = new Request(input, init);
    const response = await fetch(request.clone(), { signal: deadline(60_000) });
    exchanges.push({ request, response: response.clone() });
    return response;
  };
  const client = new x402Client().register(NETWORK, new ExactEvmScheme(account));
  const paidFetch = wrapFetchWithPayment(recording, client);

  const before = await usdcBalance(account.address);
  const response = await paidFetch(`${OURO_URL}/api/compute/submit`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ script: "echo hello from npm" }),
  });
  const body = await response.json();
  assert.equal(response.status, 200, JSON.stringify(body));

  assert.equal(exchanges.length, 2, "one 402, then one paid retry");
  const [first, paid] = exchanges;
  assert.equal(first.response.status, 402);
  assert.equal(first.request.headers.get("payment-signature"), null);
  const required = JSON.parse(Buffer.from(first.response.headers.get("payment-required"), "base64").toString());
  assert.equal(required.x402Version, 2);
  const quoted = required.accepts[0];
  const signature = JSON.parse(Buffer.from(paid.request.headers.get("payment-signature"), "base64").toString());
  assert.deepEqual(signature.accepted, quoted, "the SDK echoes the requirements it was given");
  assert.equal(signature.payload.authorization.from.toLowerCase(), account.address.toLowerCase());

  const settlement = decodePaymentResponseHeader(response.headers.get("payment-response"));
  assert.equal(settlement.success, true);
  assert.match(settlement.transaction, /^0x[0-9a-f]{64}$/);
  assert.equal(body.transaction, settlement.transaction);
  const receipt = await rpc("eth_getTransactionReceipt", [settlement.transaction]);
  assert.equal(Number(receipt.status), 1);

  const job = await waitForJob(body.job_id);
  assert.equal(job.status, "completed", JSON.stringify(job));
  assert.equal(job.output, "hello from npm\n");
  assert.equal(before - (await usdcBalance(account.address)), BigInt(quoted.amount), "charged the quoted amount once");
});
