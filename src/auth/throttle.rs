//! What to do after a failed AUTH: a growing delay before the `535 5.7.8`, and after a
//! few failures `421 4.7.0` and disconnect. Password guessing then costs an attacker
//! time per guess and a new connection every few guesses; a user who mistyped once
//! sees no delay at all.
//!
//! Two pieces, both pure (time is passed in as Unix seconds, like `Session`'s `now`):
//! - [`SessionThrottle`], owned by one session: counts its failures and answers each
//!   with an [`Action`]. The schedule depends only on the count, so it needs no clock.
//! - [`AddressMemory`], owned by the server: remembers recent failures per client
//!   address across sessions, so reconnecting does not reset the delay. A new session
//!   starts its `SessionThrottle` with [`AddressMemory::prior_failures`], and each
//!   failure is also recorded with [`AddressMemory::record_failure`].
//!
//! Invariants:
//! - The n-th failure (prior ones from the address included) waits
//!   `0, 1, 2, 4, … seconds`, at most [`Policy::max_delay`]; the
//!   [`Policy::max_failures_per_session`]-th failure of a session disconnects (after its
//!   delay, so the disconnect is not a faster answer than a 535).
//! - `AddressMemory` holds at most [`Policy::memory_capacity`] entries (the oldest is
//!   forgotten first) and forgets an address [`Policy::memory_window`] after its last
//!   failure. IPv6 clients are counted per /64, the block one subscriber usually gets
//!   (RFC 6177), so hopping addresses inside it does not help.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

/// The failure policy. [`Policy::DEFAULT`] is what postling uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Failures in one session after which it is closed with `421 4.7.0`.
    pub max_failures_per_session: u32,
    /// Longest delay before a failure reply.
    pub max_delay: Duration,
    /// How long an address's failures are remembered after its last one.
    pub memory_window: Duration,
    /// Most addresses remembered at once.
    pub memory_capacity: usize,
}

impl Policy {
    /// 3 failures per session (room for a typo or two, then a new connection per three
    /// guesses); delays up to 30 s, inside the 5-minute idle timeout and RFC 5321
    /// §4.5.3.2's client timeouts; 15 minutes and 1024 addresses of memory (a few
    /// tens of KiB at most).
    pub const DEFAULT: Policy = Policy {
        max_failures_per_session: 3,
        max_delay: Duration::from_secs(30),
        memory_window: Duration::from_secs(15 * 60),
        memory_capacity: 1024,
    };

    /// Delay before answering the `n`-th failure (1-based): 0, then 1 s doubling.
    pub fn delay(&self, n: u32) -> Duration {
        if n <= 1 {
            return Duration::ZERO;
        }
        let secs = 1u64.checked_shl(n - 2).unwrap_or(u64::MAX);
        Duration::from_secs(secs).min(self.max_delay)
    }
}

impl Default for Policy {
    fn default() -> Policy {
        Policy::DEFAULT
    }
}

/// What the session does about one failed authentication.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send `535 5.7.8 Authentication credentials invalid` after this delay, reading no
    /// further commands meanwhile; the session goes on.
    ReplyAfter(Duration),
    /// Send `421 4.7.0 Too many failed authentication attempts` after this delay, then
    /// close the connection.
    DisconnectAfter(Duration),
}

/// Failed AUTH attempts of one session.
#[derive(Clone, Debug)]
pub struct SessionThrottle {
    policy: Policy,
    /// Recent failures from the same address before this session began.
    prior: u32,
    failures: u32,
}

impl SessionThrottle {
    /// `prior`: [`AddressMemory::prior_failures`] for the client (0 for local
    /// submission or without address memory).
    pub fn new(policy: Policy, prior: u32) -> SessionThrottle {
        SessionThrottle {
            policy,
            prior,
            failures: 0,
        }
    }

    /// Record one failure and say what to do.
    pub fn on_failure(&mut self) -> Action {
        self.failures = self.failures.saturating_add(1);
        let delay = self.policy.delay(self.prior.saturating_add(self.failures));
        if self.failures >= self.policy.max_failures_per_session {
            Action::DisconnectAfter(delay)
        } else {
            Action::ReplyAfter(delay)
        }
    }

    /// Failures in this session so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    failures: u32,
    /// Unix seconds of the last failure.
    last: u64,
}

/// Recent AUTH failures per client address (IPv6 per /64), bounded in size.
#[derive(Clone, Debug)]
pub struct AddressMemory {
    policy: Policy,
    entries: HashMap<IpAddr, Entry>,
}

/// The key an address is counted under: IPv4 as is (IPv4-mapped IPv6 too), IPv6 by /64.
fn key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
    }
}

impl AddressMemory {
    pub fn new(policy: Policy) -> AddressMemory {
        AddressMemory {
            policy,
            entries: HashMap::new(),
        }
    }

    fn expired(&self, e: &Entry, now: u64) -> bool {
        now.saturating_sub(e.last) >= self.policy.memory_window.as_secs()
    }

    /// Failures from `ip` within the window: what a new session from it starts with.
    pub fn prior_failures(&mut self, ip: IpAddr, now: u64) -> u32 {
        let k = key(ip);
        match self.entries.get(&k) {
            Some(e) if self.expired(e, now) => {
                self.entries.remove(&k);
                0
            }
            Some(e) => e.failures,
            None => 0,
        }
    }

    /// Remember one failure from `ip` at `now`.
    pub fn record_failure(&mut self, ip: IpAddr, now: u64) {
        let k = key(ip);
        let window_failures = self.prior_failures(ip, now);
        if window_failures == 0 && self.entries.len() >= self.policy.memory_capacity {
            self.make_room(now);
        }
        if self.policy.memory_capacity == 0 {
            return;
        }
        let e = self.entries.entry(k).or_insert(Entry {
            failures: 0,
            last: now,
        });
        e.failures = e.failures.saturating_add(1);
        e.last = now;
    }

    /// Drop expired entries; if none were, the one with the oldest last failure.
    fn make_room(&mut self, now: u64) {
        let window = self.policy.memory_window.as_secs();
        self.entries
            .retain(|_, e| now.saturating_sub(e.last) < window);
        if self.entries.len() >= self.policy.memory_capacity {
            if let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last)
                .map(|(k, _)| *k)
            {
                self.entries.remove(&oldest);
            }
        }
    }

    /// Addresses remembered now (expired ones included until they are next touched).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn delay_schedule() {
        let p = Policy::DEFAULT;
        const CASES: &[(u32, u64)] = &[
            (0, 0),
            (1, 0),
            (2, 1),
            (3, 2),
            (4, 4),
            (5, 8),
            (6, 16),
            (7, 30),
            (8, 30),
            (70, 30),
            (u32::MAX, 30),
        ];
        for &(n, secs) in CASES {
            assert_eq!(p.delay(n), s(secs), "failure {n}");
        }
    }

    #[test]
    fn one_session() {
        let mut t = SessionThrottle::new(Policy::DEFAULT, 0);
        let got: Vec<Action> = (0..3).map(|_| t.on_failure()).collect();
        assert_eq!(
            got,
            [ReplyAfter(s(0)), ReplyAfter(s(1)), DisconnectAfter(s(2))]
        );
        assert_eq!(t.failures(), 3);
        // A session the caller did not close keeps being told to disconnect.
        assert_eq!(t.on_failure(), DisconnectAfter(s(4)));
    }

    #[test]
    fn prior_failures_continue_the_schedule() {
        let mut t = SessionThrottle::new(Policy::DEFAULT, 3);
        let got: Vec<Action> = (0..3).map(|_| t.on_failure()).collect();
        assert_eq!(
            got,
            [ReplyAfter(s(4)), ReplyAfter(s(8)), DisconnectAfter(s(16))]
        );
    }

    #[test]
    fn one_failure_per_session_policy() {
        let p = Policy {
            max_failures_per_session: 1,
            ..Policy::DEFAULT
        };
        assert_eq!(
            SessionThrottle::new(p, 0).on_failure(),
            DisconnectAfter(s(0))
        );
    }

    /// A client that reconnects after each disconnect, with a fake clock.
    #[test]
    fn reconnecting_does_not_reset() {
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let mut mem = AddressMemory::new(Policy::DEFAULT);
        let mut now = 1_000_000;
        let mut delays = Vec::new();
        for _session in 0..3 {
            let mut t = SessionThrottle::new(Policy::DEFAULT, mem.prior_failures(ip, now));
            loop {
                let action = t.on_failure();
                mem.record_failure(ip, now);
                let (d, done) = match action {
                    ReplyAfter(d) => (d, false),
                    DisconnectAfter(d) => (d, true),
                };
                delays.push(d.as_secs());
                now += d.as_secs() + 1;
                if done {
                    break;
                }
            }
        }
        assert_eq!(delays, [0, 1, 2, 4, 8, 16, 30, 30, 30]);
        // Fifteen quiet minutes later the address starts afresh.
        assert_eq!(mem.prior_failures(ip, now), 9);
        now += 15 * 60;
        assert_eq!(mem.prior_failures(ip, now), 0);
        assert!(mem.is_empty());
    }

    #[test]
    fn window_counts_from_the_last_failure() {
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let mut mem = AddressMemory::new(Policy::DEFAULT);
        mem.record_failure(ip, 0);
        mem.record_failure(ip, 899);
        assert_eq!(mem.prior_failures(ip, 899 + 899), 2);
        assert_eq!(mem.prior_failures(ip, 899 + 900), 0);
        // After expiry a new failure counts from one again.
        mem.record_failure(ip, 5000);
        assert_eq!(mem.prior_failures(ip, 5000), 1);
    }

    #[test]
    fn addresses_are_keyed_sensibly() {
        let mut mem = AddressMemory::new(Policy::DEFAULT);
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8:1:2:ffff:1:2:3".parse().unwrap();
        let other_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        mem.record_failure(a, 10);
        mem.record_failure(same_64, 10);
        assert_eq!(mem.prior_failures(a, 10), 2);
        assert_eq!(mem.prior_failures(other_64, 10), 0);

        let v4: IpAddr = "198.51.100.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:198.51.100.1".parse().unwrap();
        let v4_next: IpAddr = "198.51.100.2".parse().unwrap();
        mem.record_failure(mapped, 10);
        assert_eq!(mem.prior_failures(v4, 10), 1);
        assert_eq!(mem.prior_failures(v4_next, 10), 0);
    }

    #[test]
    fn memory_is_bounded() {
        let p = Policy {
            memory_capacity: 3,
            ..Policy::DEFAULT
        };
        let mut mem = AddressMemory::new(p);
        let ip = |n: u8| IpAddr::from([192, 0, 2, n]);
        for n in 1..=3 {
            mem.record_failure(ip(n), u64::from(n));
        }
        // Full: a fourth address evicts the oldest (ip 1), keeps the others.
        mem.record_failure(ip(4), 4);
        assert_eq!(mem.len(), 3);
        assert_eq!(mem.prior_failures(ip(1), 5), 0);
        assert_eq!(mem.prior_failures(ip(2), 5), 1);
        // A known address does not evict anyone.
        mem.record_failure(ip(2), 6);
        assert_eq!(mem.len(), 3);
        assert_eq!(mem.prior_failures(ip(3), 6), 1);
        // Expired entries go first, all of them.
        mem.record_failure(ip(5), 2000);
        assert_eq!(mem.len(), 1);
        // A flood of new addresses never grows the table.
        for n in 0..=255 {
            mem.record_failure(IpAddr::from([203, 0, 113, n]), 3000);
            assert!(mem.len() <= 3);
        }
        // Capacity zero remembers nothing.
        let mut none = AddressMemory::new(Policy {
            memory_capacity: 0,
            ..Policy::DEFAULT
        });
        none.record_failure(ip(1), 1);
        assert!(none.is_empty());
    }
}
