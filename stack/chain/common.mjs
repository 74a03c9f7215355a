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
 * The well-known anvil dev keys (mnemonic "test test test test test test test test test test test junk",
 * m/44'/60'/0'/0/i). Throwaway keys: never use them anywhere but a local chain.
 */
export const ANVIL_KEYS = [
  "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
  "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
  "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
  "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
  "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
  "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
  "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
  "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
  "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
  "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
];
export const ANVIL_ADDRESSES = [
  "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
  "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
  "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
  "0x90F79bf6EB2c4f870365E785982E1f101E93b906",
  "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65",
  "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc",
  "0x976EA74026E726554dB657fA54763abd0C3a0aa9",
  "0x14dC79964da2C08b23698B3D3cc7Ca32193d9955",
  "0x23618e81E3f5cdF7f54C3d65f7FBc0aBf5B21E8f",
  "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720",
];

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
