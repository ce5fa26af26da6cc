//! Denied flows, remembered for a while so that the repeated attempts of one (retransmitted SYNs,
//! a UDP query sent again) are one flow, logged once a minute (D6).
//!
//! A denied flow has no record (nothing is forwarded), so without this memory every attempt
//! would look like a new flow. Memory is bounded twice: an attempt is remembered until the idle
//! timeout passes without another one, and at most [`DENIED_FLOWS_REMEMBERED`] are remembered
//! per NIC; beyond that the flow attempted least recently is forgotten (its next attempt counts
//! as a new flow), so a flood of distinct denied 5-tuples cannot grow the table.

use crate::packet::Time;
use hashlink::LruCache;
use std::hash::{BuildHasherDefault, Hash};

/// How many denied flows one NIC remembers at most.
pub const DENIED_FLOWS_REMEMBERED: usize = 65_536;

/// The latest attempt of a denied flow.
#[derive(Clone, Copy, Debug)]
struct Attempt {
    last_seen: Time,
    /// The minute (seconds since the epoch / 60) in which the flow was last logged.
    logged_minute: u64,
}

/// What an attempt of a denied flow is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Denial {
    /// No attempt of this flow within the idle timeout before: a new denied flow.
    pub first_attempt: bool,
    /// The flow has not been logged in this minute yet.
    pub log: bool,
}

/// Denied flows by key, least recently attempted first.
pub(super) struct DeniedFlows<K> {
    recent: LruCache<K, Attempt, BuildHasherDefault<rustc_hash::FxHasher>>,
}

impl<K: Hash + Eq> DeniedFlows<K> {
    pub fn with_capacity(capacity: usize) -> DeniedFlows<K> {
        DeniedFlows {
            recent: LruCache::with_hasher(capacity, BuildHasherDefault::default()),
        }
    }

    pub fn len(&self) -> usize {
        self.recent.len()
    }

    /// Notes an attempt of the denied flow `key` at `now`; `timeout` is the NIC's idle timeout
    /// in seconds.
    pub fn attempt(&mut self, key: K, now: Time, timeout: u64) -> Denial {
        let minute = now.secs() / 60;
        let denial = match self.recent.get_mut(&key) {
            Some(attempt) if now.secs_since(attempt.last_seen) < timeout => {
                let log = attempt.logged_minute != minute;
                attempt.last_seen = now;
                attempt.logged_minute = minute;
                return Denial {
                    first_attempt: false,
                    log,
                };
            }
            _ => Denial {
                first_attempt: true,
                log: true,
            },
        };
        // Inserting beyond the capacity forgets the least recently attempted flow.
        self.recent.insert(
            key,
            Attempt {
                last_seen: now,
                logged_minute: minute,
            },
        );
        denial
    }

    /// Forgets the flows not attempted within `timeout` seconds before `now`. Attempts are
    /// ordered by when they happened (captures out of order by a little excepted), so this
    /// stops at the first flow still current.
    pub fn expire(&mut self, now: Time, timeout: u64) {
        while let Some((_, attempt)) = self.recent.iter().next() {
            if now.secs_since(attempt.last_seen) < timeout {
                break;
            }
            self.recent.remove_lru();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The start of a minute.
    const T0: u64 = 1_700_000_040;

    #[test]
    fn attempts_within_the_timeout_are_one_flow_logged_once_a_minute() {
        let mut denied = DeniedFlows::with_capacity(8);
        let first = denied.attempt(1u32, Time::from_secs(T0), 240);
        assert_eq!(
            first,
            Denial {
                first_attempt: true,
                log: true
            }
        );
        let again = denied.attempt(1, Time::from_secs(T0 + 3), 240);
        assert_eq!(
            again,
            Denial {
                first_attempt: false,
                log: false
            }
        );
        let next_minute = denied.attempt(1, Time::from_secs(T0 + 61), 240);
        assert_eq!(
            next_minute,
            Denial {
                first_attempt: false,
                log: true
            }
        );
        // A pause of the timeout: a new flow.
        assert!(
            denied
                .attempt(1, Time::from_secs(T0 + 61 + 240), 240)
                .first_attempt
        );
    }

    #[test]
    fn memory_is_bounded_by_capacity_and_by_time() {
        let mut denied = DeniedFlows::with_capacity(4);
        for key in 0u32..100 {
            denied.attempt(key, Time::from_secs(T0), 240);
            assert!(denied.len() <= 4);
        }
        // The four most recent are remembered; the first was forgotten.
        assert!(
            !denied
                .attempt(99, Time::from_secs(T0 + 1), 240)
                .first_attempt
        );
        assert!(
            denied
                .attempt(0, Time::from_secs(T0 + 1), 240)
                .first_attempt
        );
        denied.expire(Time::from_secs(T0 + 240), 240);
        assert_eq!(denied.len(), 2, "the two attempted at T0 + 1 remain");
        denied.expire(Time::from_secs(T0 + 241), 240);
        assert_eq!(denied.len(), 0);
    }
}
