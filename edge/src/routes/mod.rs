//! One module per public or internal endpoint group.

pub mod attribution;
pub mod discovery;
pub mod health;
pub mod internal;
pub mod jobs;
pub mod price;
pub mod stats;
pub mod submit;
pub mod wallet;

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    worker::Date::now().as_millis()
}
