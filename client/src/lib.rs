//! The Ouro client: quote, pay (x402 v2 `exact`, signed locally with the payer's key) and follow jobs over the
//! service's HTTP API. The `ouro` command and the end-to-end tests are both built on it; all x402 and EIP-712
//! rules come from `ouro-core`, so client and server cannot drift apart.

pub mod answer;
pub mod client;
pub mod error;
pub mod keys;
pub mod poll;
pub mod report;
pub mod sign;

pub use answer::SubmitAnswer;
pub use client::{Client, PaidJob, Progress, Quote};
pub use error::{ClientError, Result};
pub use keys::key_from_hex;
pub use sign::{sign_payment, sign_payment_at};
