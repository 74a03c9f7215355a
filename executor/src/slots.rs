//! Capacity (a fixed number of concurrent jobs) and the job ids this executor has seen.
//!
//! The edge's queue can deliver the same assignment twice; running a paid job twice would run the user's code
//! twice and race two results, so an id that is running, or finished here recently, is refused as already
//! assigned.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a finished job id is remembered (longer than any queue redelivery delay).
pub const REMEMBER_FINISHED_FOR: Duration = Duration::from_secs(6 * 3600);
/// Upper bound on remembered ids, so memory stays bounded whatever the traffic.
pub const REMEMBER_AT_MOST: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    AlreadyAssigned,
    Busy,
}

#[derive(Debug)]
pub struct Slots {
    total: u32,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    running: HashSet<String>,
    finished: HashSet<String>,
    /// `finished` in the order the jobs ended, for expiry.
    finished_order: VecDeque<(Instant, String)>,
}

impl State {
    fn expire(&mut self, now: Instant) {
        while let Some((at, _)) = self.finished_order.front() {
            let too_old = now.saturating_duration_since(*at) > REMEMBER_FINISHED_FOR;
            if !too_old && self.finished_order.len() <= REMEMBER_AT_MOST {
                break;
            }
            if let Some((_, id)) = self.finished_order.pop_front() {
                self.finished.remove(&id);
            }
        }
    }
}

/// Holds one slot for one job; dropping it frees the slot and remembers the id as finished.
#[derive(Debug)]
pub struct SlotGuard {
    slots: Arc<Slots>,
    job_id: String,
}

impl Slots {
    pub fn new(total: u32) -> Arc<Self> {
        Arc::new(Slots { total, state: Mutex::new(State::default()) })
    }

    pub fn total(&self) -> u32 {
        self.total
    }

    pub fn free(&self) -> u32 {
        let running = self.lock().running.len();
        self.total.saturating_sub(u32::try_from(running).unwrap_or(u32::MAX))
    }

    pub fn running(&self) -> usize {
        self.lock().running.len()
    }

    /// Whether `job_id` runs here now, ran here (as long as finished ids are remembered), or neither.
    pub fn presence(&self, job_id: &str) -> ouro_core::dispatch::JobPresence {
        use ouro_core::dispatch::JobPresence;
        let state = self.lock();
        if state.running.contains(job_id) {
            JobPresence::Running
        } else if state.finished.contains(job_id) {
            JobPresence::Finished
        } else {
            JobPresence::Unknown
        }
    }

    /// Takes a slot for `job_id`, or says why not. Duplicates are checked before capacity: a redelivered job
    /// must hear "already assigned" even when we are full, or the edge would retry it forever.
    pub fn try_acquire(self: &Arc<Self>, job_id: &str) -> Result<SlotGuard, Refusal> {
        let mut state = self.lock();
        state.expire(Instant::now());
        if state.running.contains(job_id) || state.finished.contains(job_id) {
            return Err(Refusal::AlreadyAssigned);
        }
        if state.running.len() >= self.total as usize {
            return Err(Refusal::Busy);
        }
        state.running.insert(job_id.to_string());
        Ok(SlotGuard { slots: Arc::clone(self), job_id: job_id.to_string() })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the sets half-updated in a harmful way; keep serving.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl SlotGuard {
    pub fn job_id(&self) -> &str {
        &self.job_id
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let mut state = self.slots.lock();
        state.running.remove(&self.job_id);
        state.finished.insert(self.job_id.clone());
        state.finished_order.push_back((Instant::now(), self.job_id.clone()));
        state.expire(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_is_enforced_and_freed() {
        let slots = Slots::new(2);
        let a = slots.try_acquire("a").ok();
        let b = slots.try_acquire("b").ok();
        assert!(a.is_some() && b.is_some());
        assert_eq!(slots.free(), 0);
        assert_eq!(slots.try_acquire("c").err(), Some(Refusal::Busy));
        drop(a);
        assert_eq!(slots.free(), 1);
        assert!(slots.try_acquire("c").is_ok());
    }

    #[test]
    fn same_id_is_refused_while_running_and_after() {
        let slots = Slots::new(2);
        let a = slots.try_acquire("a");
        assert!(a.is_ok());
        assert_eq!(slots.try_acquire("a").err(), Some(Refusal::AlreadyAssigned));
        drop(a);
        assert_eq!(slots.try_acquire("a").err(), Some(Refusal::AlreadyAssigned));
    }

    #[test]
    fn presence_follows_the_slot() {
        use ouro_core::dispatch::JobPresence;
        let slots = Slots::new(1);
        assert_eq!(slots.presence("a"), JobPresence::Unknown);
        let a = slots.try_acquire("a");
        assert_eq!(slots.presence("a"), JobPresence::Running);
        drop(a);
        assert_eq!(slots.presence("a"), JobPresence::Finished);
        assert_eq!(slots.presence("b"), JobPresence::Unknown);
    }

    #[test]
    fn duplicate_wins_over_busy() {
        let slots = Slots::new(1);
        let _a = slots.try_acquire("a");
        assert_eq!(slots.try_acquire("a").err(), Some(Refusal::AlreadyAssigned));
        assert_eq!(slots.try_acquire("b").err(), Some(Refusal::Busy));
    }

    #[test]
    fn old_ids_expire() {
        let mut state = State::default();
        let long_ago = Instant::now().checked_sub(REMEMBER_FINISHED_FOR + Duration::from_secs(1));
        if let Some(t) = long_ago {
            state.finished.insert("old".into());
            state.finished_order.push_back((t, "old".into()));
            state.finished.insert("new".into());
            state.finished_order.push_back((Instant::now(), "new".into()));
            state.expire(Instant::now());
            assert!(!state.finished.contains("old"));
            assert!(state.finished.contains("new"));
        }
    }
}
