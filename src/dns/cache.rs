//! A small answer cache for one delivery pass, keyed by question.
//!
//! Invariants:
//! - An entry is never served at or after its expiry; time is passed in.
//! - Lifetimes follow the data: the smallest TTL of the records (RFC 2181 §5.2 says an
//!   RRset shares one TTL; we take the minimum over every record used, additional
//!   section included); negative answers live as long as the SOA says (RFC 2308 §5) and
//!   are not cached without one; a TTL of 0 is not cached (RFC 1035 §3.2.1); failures
//!   are remembered briefly (RFC 2308 §7.1 allows up to five minutes) so one dead server
//!   does not cost a full timeout per message in a pass. Every lifetime is capped at
//!   [`MAX_CACHE_TTL`].
//! - The cache holds at most [`MAX_ENTRIES`]; when full, expired entries go, then all.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::query::{Outcome, Question, Rcode};

/// A pass is minutes long; nothing needs to live longer than this.
pub const MAX_CACHE_TTL: Duration = Duration::from_secs(3600);
/// How long a failed question is not asked again.
pub const FAILURE_TTL: Duration = Duration::from_secs(30);
/// Bounded memory whatever the queue holds.
pub const MAX_ENTRIES: usize = 1024;

#[derive(Debug, Default)]
pub struct Cache {
    entries: HashMap<Question, (Outcome, Instant)>,
}

impl Cache {
    pub fn get(&self, q: &Question, now: Instant) -> Option<Outcome> {
        match self.entries.get(q) {
            Some((o, expires)) if now < *expires => Some(o.clone()),
            _ => None,
        }
    }

    pub fn put(&mut self, q: &Question, outcome: &Outcome, now: Instant) {
        let Some(ttl) = lifetime(outcome).filter(|t| !t.is_zero()) else {
            return;
        };
        if self.entries.len() >= MAX_ENTRIES {
            self.entries.retain(|_, (_, expires)| now < *expires);
            if self.entries.len() >= MAX_ENTRIES {
                self.entries.clear();
            }
        }
        self.entries.insert(q.clone(), (outcome.clone(), now + ttl));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// How long `outcome` may be reused; `None` means not at all.
pub fn lifetime(outcome: &Outcome) -> Option<Duration> {
    let secs = match outcome {
        Outcome::Failed(_) => return Some(FAILURE_TTL),
        Outcome::Answer(r) if r.rcode == Rcode::NoError && !r.answers.is_empty() => r
            .answers
            .iter()
            .chain(&r.additional)
            .map(|rr| rr.ttl)
            .min()?,
        Outcome::Answer(r) => r.negative_ttl?,
    };
    Some(Duration::from_secs(u64::from(secs)).min(MAX_CACHE_TTL))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::query::{Data, RType, Record, Response};
    use std::net::Ipv4Addr;

    fn resp(rcode: Rcode, ttls: &[u32], additional: &[u32], negative: Option<u32>) -> Outcome {
        let rec = |ttl: &u32| Record {
            name: "x.test".into(),
            ttl: *ttl,
            data: Data::A(Ipv4Addr::LOCALHOST),
        };
        Outcome::Answer(Response {
            rcode,
            answers: ttls.iter().map(rec).collect(),
            additional: additional.iter().map(rec).collect(),
            negative_ttl: negative,
        })
    }

    #[test]
    fn lifetimes() {
        // (outcome, seconds or None)
        let cases: Vec<(Outcome, Option<u64>)> = vec![
            (resp(Rcode::NoError, &[300, 60], &[], None), Some(60)),
            (resp(Rcode::NoError, &[300], &[20], None), Some(20)),
            (resp(Rcode::NoError, &[0], &[], None), Some(0)),
            (resp(Rcode::NoError, &[86400 * 7], &[], None), Some(3600)),
            (resp(Rcode::NoError, &[], &[], Some(45)), Some(45)),
            (resp(Rcode::NoError, &[], &[], None), None),
            (resp(Rcode::NxDomain, &[], &[], Some(900)), Some(900)),
            (resp(Rcode::NxDomain, &[], &[], None), None),
            (Outcome::Failed("timed out".into()), Some(30)),
        ];
        for (i, (o, want)) in cases.iter().enumerate() {
            assert_eq!(lifetime(o), want.map(Duration::from_secs), "case {i}");
        }
    }

    #[test]
    fn entries_expire_with_their_ttl() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let q = Question::new("x.test", RType::A);
        let q0 = Question::new("zero.test", RType::A);
        let mut c = Cache::default();
        let o = resp(Rcode::NoError, &[60], &[], None);
        c.put(&q, &o, t0);
        c.put(&q0, &resp(Rcode::NoError, &[0], &[], None), t0);
        assert_eq!(c.get(&q, t0), Some(o.clone()));
        assert_eq!(c.get(&q, t0 + s(59)), Some(o));
        assert_eq!(c.get(&q, t0 + s(60)), None);
        assert_eq!(c.get(&q0, t0), None, "TTL 0 is not cached");
        assert_eq!(c.get(&Question::new("x.test", RType::Aaaa), t0), None);
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn size_is_bounded() {
        let t0 = Instant::now();
        let mut c = Cache::default();
        let o = resp(Rcode::NoError, &[60], &[], None);
        for i in 0..MAX_ENTRIES * 2 + 1 {
            c.put(&Question::new(&format!("h{i}.test"), RType::A), &o, t0);
            assert!(c.len() <= MAX_ENTRIES);
        }
    }
}
