//! One module per public or internal endpoint group.

pub mod internal;
pub mod jobs;
pub mod price;
pub mod submit;

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    worker::Date::now().as_millis()
}
