//! One module per public or internal endpoint group.

pub mod attribution;
pub mod credits;
pub mod discovery;
pub mod events;
pub mod health;
pub mod internal;
pub mod jobs;
pub mod ledger;
pub mod price;
pub mod stats;
pub mod storage;
pub mod submit;
pub mod wallet;

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    worker::Date::now().as_millis()
}
