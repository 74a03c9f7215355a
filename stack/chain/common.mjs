// Shared constants and the offline solc-js compile (cached under chain/build/) for the local chain.
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync, renameSync, readdirSync, unlinkSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const CHAIN_DIR = dirname(fileURLToPath(import.meta.url));
export const BUILD_DIR = join(CHAIN_DIR, "build");

export const CHAIN_ID = 84532;
export const NETWORK = "eip155:84532";
export const DEFAULT_RPC = "http://127.0.0.1:8545";

/** Where the token lives on Base Sepolia; we install our TestUSDC runtime code there. */
export const TOKEN_ADDRESS = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";
/** The canonical Multicall3 address (viem and the x402 facilitator call it there). */
export const MULTICALL3_ADDRESS = "0xcA11bde05977b3631167028862bE2a173976CA11";
export const TOKEN_NAME = "USDC";
export const TOKEN_VERSION = "2";
export const TOKEN_DECIMALS = 6;
/** 1,000 USDC in atomic units. */
export const FUND_AMOUNT = 1000_000000n;

/**
 * The well-known anvil dev accounts, from accounts.json (the one list xtask, the tests and these scripts share).
 * Throwaway keys: never use them anywhere but a local chain.
 */
const ACCOUNTS = JSON.parse(readFileSync(new URL("./accounts.json", import.meta.url), "utf8")).accounts;
export const ANVIL_KEYS = ACCOUNTS.map((a) => a.private_key);
export const ANVIL_ADDRESSES = ACCOUNTS.map((a) => a.address);

const SOURCES = ["TestUSDC.sol", "Multicall3.sol"];
const SETTINGS = {
  optimizer: { enabled: true, runs: 200 },
  evmVersion: "cancun",
  outputSelection: { "*": { "*": ["abi", "evm.deployedBytecode.object"] } },
};

/**
 * Compiles both contracts with the solc-js from node_modules (offline), or loads the cached result.
 * @returns {Promise<{solcVersion: string, cacheHit: boolean, contracts: Record<string, {abi: any[], runtime: `0x${string}`}>}>}
 */
export async function compileContracts() {
  const require = createRequire(import.meta.url);
  const solcPkg = require("solc/package.json");
  const sources = Object.fromEntries(SOURCES.map((f) => [f, { content: readFileSync(join(CHAIN_DIR, f), "utf8") }]));
  const key = createHash("sha256")
    .update(JSON.stringify({ solc: solcPkg.version, settings: SETTINGS, sources }))
    .digest("hex")
    .slice(0, 16);
  const cachePath = join(BUILD_DIR, `artifacts-${key}.json`);
  try {
    const cached = JSON.parse(readFileSync(cachePath, "utf8"));
    return { ...cached, cacheHit: true };
  } catch {
    // cache miss: compile below
  }

  const solc = require("solc");
  const input = { language: "Solidity", sources, settings: SETTINGS };
  const output = JSON.parse(solc.compile(JSON.stringify(input)));
  const errors = (output.errors ?? []).filter((e) => e.severity === "error");
  if (errors.length > 0) {
    throw new Error(`solc failed:\n${errors.map((e) => e.formattedMessage).join("\n")}`);
  }
  const pick = (file, name) => {
    const c = output.contracts?.[file]?.[name];
    if (!c?.evm?.deployedBytecode?.object) throw new Error(`solc produced no runtime code for ${name}`);
    return { abi: c.abi, runtime: `0x${c.evm.deployedBytecode.object}` };
  };
  const result = {
    solcVersion: solc.version(),
    contracts: { TestUSDC: pick("TestUSDC.sol", "TestUSDC"), Multicall3: pick("Multicall3.sol", "Multicall3") },
  };

  mkdirSync(BUILD_DIR, { recursive: true });
  for (const f of readdirSync(BUILD_DIR)) {
    if (/^artifacts-[0-9a-f]+\.json$/.test(f)) unlinkSync(join(BUILD_DIR, f)); // drop stale caches
  }
  const tmp = `${cachePath}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(result, null, 1));
  renameSync(tmp, cachePath);
  return { ...result, cacheHit: false };
}
