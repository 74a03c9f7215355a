#!/usr/bin/env node
// A local x402 facilitator: the reference TypeScript implementation (@x402/core x402Facilitator +
// @x402/evm ExactEvmScheme) behind node:http, settling for real on the local anvil chain.
//
//   GET  /health     200 {ok:true,...} once the RPC answers with chain id 84532 and the token has code, else 503
//   GET  /supported  {kinds:[{x402Version,scheme,network}], extensions, signers}
//   POST /verify     {x402Version, paymentPayload, paymentRequirements} -> VerifyResponse
//   POST /settle     {x402Version, paymentPayload, paymentRequirements} -> SettleResponse (waits for the receipt)
//
// Env: RPC_URL (default http://127.0.0.1:8545), FACILITATOR_PORT (default 4022),
//      FACILITATOR_PRIVATE_KEY (gas wallet; default anvil account 0). Listens on 127.0.0.1 only.
// Logs one line per request to stdout.
import { createServer } from "node:http";
import { x402Facilitator } from "@x402/core/facilitator";
import { toFacilitatorEvmSigner } from "@x402/evm";
import { ExactEvmScheme } from "@x402/evm/exact/facilitator";
import { ExactEvmSchemeV1 } from "@x402/evm/exact/v1/facilitator";
import { createWalletClient, defineChain, http, publicActions } from "viem";
import { privateKeyToAccount } from "viem/accounts";

const CHAIN_ID = 84532;
const NETWORK = "eip155:84532";
const NETWORK_V1 = "base-sepolia";
const TOKEN_ADDRESS = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";
const MULTICALL3_ADDRESS = "0xcA11bde05977b3631167028862bE2a173976CA11";
const ANVIL_KEY_0 = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const MAX_BODY = 1 << 20;

const RPC_URL = process.env.RPC_URL || "http://127.0.0.1:8545";
const HOST = "127.0.0.1";
const PORT = Number(process.env.FACILITATOR_PORT || 4022);
const KEY = process.env.FACILITATOR_PRIVATE_KEY || ANVIL_KEY_0;
const CONFIRMATION_TIMEOUT_MS = Number(process.env.FACILITATOR_CONFIRMATION_TIMEOUT_MS || 30_000);

if (!Number.isInteger(PORT) || PORT <= 0 || PORT > 65535) {
  console.error(`facilitator: bad FACILITATOR_PORT ${process.env.FACILITATOR_PORT}`);
  process.exit(1);
}

const chain = defineChain({
  id: CHAIN_ID,
  name: "anvil (Base Sepolia id)",
  nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
  rpcUrls: { default: { http: [RPC_URL] } },
  contracts: { multicall3: { address: MULTICALL3_ADDRESS } },
});

let account;
try {
  account = privateKeyToAccount(KEY);
} catch (e) {
  console.error(`facilitator: FACILITATOR_PRIVATE_KEY is not a valid private key (${e.shortMessage ?? e.message})`);
  process.exit(1);
}

// One viem client that can both read and write, as the FacilitatorEvmSigner wants.
const client = createWalletClient({
  account,
  chain,
  transport: http(RPC_URL, { retryCount: 1, timeout: 20_000 }),
}).extend(publicActions);

// Broadcasts are serialised so concurrent settles never pick the same account nonce (each send reads the
// pending nonce afresh once the previous one is in anvil's pool). Receipt waits stay concurrent.
let sendQueue = Promise.resolve();
function serialised(fn) {
  const run = sendQueue.then(fn, fn);
  sendQueue = run.catch(() => {});
  return run;
}

const signer = toFacilitatorEvmSigner(
  {
    address: account.address,
    readContract: (args) => client.readContract({ ...args, args: args.args ?? [] }),
    verifyTypedData: (args) => client.verifyTypedData(args),
    writeContract: (args) => serialised(() => client.writeContract({ ...args, args: args.args ?? [] })),
    sendTransaction: (args) => serialised(() => client.sendTransaction(args)),
    waitForTransactionReceipt: (args) => client.waitForTransactionReceipt(args),
    getCode: (args) => client.getCode(args),
  },
  { confirmationTimeoutMs: CONFIRMATION_TIMEOUT_MS },
);

const facilitator = new x402Facilitator()
  .register(NETWORK, new ExactEvmScheme(signer))
  .registerV1(NETWORK_V1, new ExactEvmSchemeV1(signer));

// ---------------------------------------------------------------- http plumbing

function send(res, status, body) {
  const text = JSON.stringify(body, (_, v) => (typeof v === "bigint" ? v.toString() : v));
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
    "cache-control": "no-store",
  });
  res.end(text);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on("data", (c) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(Object.assign(new Error("request body too large"), { status: 413 }));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

class BadRequest extends Error {}

/** Parses and shape-checks a {x402Version, paymentPayload, paymentRequirements} body. */
async function readPaymentBody(req) {
  let body;
  try {
    body = JSON.parse(await readBody(req));
  } catch (e) {
    if (e.status) throw e;
    throw new BadRequest("body is not valid JSON");
  }
  if (!body || typeof body !== "object") throw new BadRequest("body must be a JSON object");
  const { paymentPayload, paymentRequirements } = body;
  if (!paymentPayload || typeof paymentPayload !== "object") throw new BadRequest("missing paymentPayload");
  if (!paymentRequirements || typeof paymentRequirements !== "object") throw new BadRequest("missing paymentRequirements");
  const version = paymentPayload.x402Version ?? body.x402Version;
  if (version !== 1 && version !== 2) throw new BadRequest(`unsupported x402Version ${version}`);
  if (version === 2 && !paymentPayload.accepted) throw new BadRequest("v2 paymentPayload has no accepted requirements");
  if (!paymentPayload.payload || typeof paymentPayload.payload !== "object") throw new BadRequest("paymentPayload.payload missing");
  return { paymentPayload: { ...paymentPayload, x402Version: version }, paymentRequirements };
}

function payerOf(p) {
  return p?.payload?.authorization?.from ?? p?.payload?.permit2Authorization?.from;
}

async function health() {
  const [chainId, blockNumber, code, balance] = await Promise.all([
    client.getChainId(),
    client.getBlockNumber(),
    client.getCode({ address: TOKEN_ADDRESS }),
    client.getBalance({ address: account.address }),
  ]);
  const tokenDeployed = !!code && code !== "0x";
  const ok = chainId === CHAIN_ID && tokenDeployed;
  return {
    status: ok ? 200 : 503,
    body: {
      ok,
      network: NETWORK,
      chainId,
      blockNumber: Number(blockNumber),
      rpc: RPC_URL,
      signer: account.address,
      signerBalanceWei: balance.toString(),
      token: TOKEN_ADDRESS,
      tokenDeployed,
      ...(ok ? {} : { error: chainId !== CHAIN_ID ? `chain id ${chainId} != ${CHAIN_ID}` : "token has no code: run chain/setup.mjs" }),
    },
  };
}

async function handle(req, res) {
  const url = new URL(req.url, "http://localhost");
  const route = `${req.method} ${url.pathname}`;
  let note = "";
  let status;
  try {
    if (route === "GET /health") {
      try {
        const h = await health();
        status = h.status;
        send(res, status, h.body);
        note = h.body.ok ? `block=${h.body.blockNumber}` : h.body.error;
      } catch (e) {
        status = 503;
        note = `rpc unreachable: ${e.shortMessage ?? e.message}`;
        send(res, status, { ok: false, rpc: RPC_URL, error: note });
      }
    } else if (route === "GET /supported") {
      status = 200;
      send(res, status, facilitator.getSupported());
    } else if (route === "POST /verify") {
      const { paymentPayload, paymentRequirements } = await readPaymentBody(req);
      let result;
      try {
        result = await facilitator.verify(paymentPayload, paymentRequirements);
      } catch (e) {
        status = 400;
        result = { isValid: false, invalidReason: "unsupported_scheme", invalidMessage: e.message, payer: payerOf(paymentPayload) };
      }
      status ??= 200;
      send(res, status, result);
      note = result.isValid ? `valid payer=${result.payer}` : `invalid ${result.invalidReason}${result.invalidMessage ? ` (${oneLine(result.invalidMessage)})` : ""}`;
    } else if (route === "POST /settle") {
      const { paymentPayload, paymentRequirements } = await readPaymentBody(req);
      let result;
      try {
        result = await facilitator.settle(paymentPayload, paymentRequirements);
      } catch (e) {
        status = 400;
        result = {
          success: false,
          errorReason: "unsupported_scheme",
          errorMessage: e.message,
          transaction: "",
          network: paymentRequirements.network ?? "",
          payer: payerOf(paymentPayload),
        };
      }
      status ??= 200;
      send(res, status, result);
      note = result.success
        ? `settled tx=${result.transaction} payer=${result.payer} amount=${result.amount ?? paymentRequirements.amount ?? paymentRequirements.maxAmountRequired ?? ""}`
        : `failed ${result.errorReason}${result.errorMessage ? ` (${oneLine(result.errorMessage)})` : ""}`;
    } else if (["/health", "/supported", "/verify", "/settle"].includes(url.pathname)) {
      status = 405;
      send(res, status, { error: `method ${req.method} not allowed on ${url.pathname}` });
    } else {
      status = 404;
      send(res, status, { error: `no route ${url.pathname}` });
    }
  } catch (e) {
    if (e instanceof BadRequest) {
      status = 400;
      note = e.message;
      const bad = url.pathname === "/settle"
        ? { success: false, errorReason: "invalid_payload", errorMessage: e.message, transaction: "", network: "" }
        : { isValid: false, invalidReason: "invalid_payload", invalidMessage: e.message };
      send(res, status, bad);
    } else {
      status = e.status ?? 500;
      note = `error: ${oneLine(e.stack ?? String(e))}`;
      if (!res.headersSent) send(res, status, { error: e.message ?? String(e) });
    }
  } finally {
    return { route, status, note };
  }
}

function oneLine(s) {
  // viem errors are long: keep just the revert reason when there is one.
  const reason = /reverted with the following reason:\s*\n(.+)\n/.exec(String(s));
  const t = (reason ? `reverted: ${reason[1]}` : String(s)).replace(/\s+/g, " ").trim();
  return t.length > 300 ? `${t.slice(0, 300)}…` : t;
}

const server = createServer(async (req, res) => {
  const t0 = performance.now();
  const { route, status, note } = await handle(req, res);
  const ms = (performance.now() - t0).toFixed(0);
  process.stdout.write(`${new Date().toISOString()} ${route} ${status} ${ms}ms${note ? ` ${note}` : ""}\n`);
});
server.keepAliveTimeout = 5_000;

server.on("error", (e) => {
  console.error(`facilitator: cannot listen on ${HOST}:${PORT}: ${e.message}`);
  process.exit(1);
});

server.listen(PORT, HOST, () => {
  process.stdout.write(
    `${new Date().toISOString()} facilitator listening on http://${HOST}:${PORT} network=${NETWORK} rpc=${RPC_URL} signer=${account.address}\n`,
  );
});

for (const sig of ["SIGINT", "SIGTERM"]) {
  process.on(sig, () => {
    server.close();
    server.closeAllConnections?.();
    process.exit(0);
  });
}
