//! The pure heart of Ouro: everything the edge, the executor and the client agree on, with no I/O.
//!
//! It builds for `wasm32-unknown-unknown` (the edge Worker) and natively (executor, client, tests), and it is
//! where the rules live: what a valid submission is, what a job costs, what a valid x402 payment is, and the
//! messages the edge and the executors exchange.

pub mod builder_codes;
pub mod credits;
pub mod dispatch;
pub mod dockerfile;
pub mod eip712;
pub mod erc8021;
pub mod job;
pub mod pricing;
pub mod sse;
pub mod storage;
pub mod submit;
pub mod submit_limits;
pub mod time;
pub mod webhook;
pub mod wallet_auth;
pub mod workspace;
pub mod x402;
