//! How often to ask whether a job is done: quickly at first (most jobs finish in a second or two), then once a
//! second so a long job does not hammer the edge.

use std::time::Duration;

const FIRST: Duration = Duration::from_millis(100);
const MAX: Duration = Duration::from_secs(1);

/// Delays growing by half from 100 ms, capped at 1 s: a sub-second job is seen within ~100 ms of its end.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    pub fn new() -> Self {
        Backoff { next: FIRST }
    }

    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 3 / 2).min(MAX);
        delay
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_fast_and_settles_at_one_second() {
        let mut b = Backoff::new();
        let ms: Vec<u128> = (0..6).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(ms, [100, 150, 225, 337, 506, 759]);
        assert_eq!(b.next_delay(), MAX);
    }
}
