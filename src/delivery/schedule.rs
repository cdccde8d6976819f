//! What one delivery attempt does to a recipient's queue state: the retry schedule and
//! queue expiry, as a pure function of the outcome and the time.
//!
//! Invariants: every attempt counts (connection failures included, as `queue --json`
//! promises); a transient failure is retried after `retry[attempts - 1]`, the last delay
//! repeating; once the message is older than `max_queue_time`, a transient failure is
//! final and the reply says so (the expiry bounce quotes it).

use std::time::Duration;

use crate::spool::{Recipient, Status};

/// How an attempt ended for one recipient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// 4xx, a timeout, a refused connection, a DNS failure that may pass.
    Transient,
    /// 5xx, NXDOMAIN for the recipient domain, a null MX.
    Permanent,
}

/// The queue's retry settings (from the config).
#[derive(Clone, Debug)]
pub struct Schedule<'a> {
    pub retry: &'a [Duration],
    pub max_queue_time: Duration,
}

impl Schedule<'_> {
    /// The delay after the `attempts`-th failed attempt (1-based).
    pub fn delay_after(&self, attempts: u32) -> Duration {
        let i = (attempts.max(1) - 1) as usize;
        self.retry
            .get(i)
            .or(self.retry.last())
            .copied()
            // An empty list cannot come from the config parser; be safe anyway.
            .unwrap_or(Duration::from_secs(300))
    }

    /// Record one attempt on `rcpt`: its new status, attempts, last reply and next
    /// attempt time. `arrival` is the message's arrival (Unix seconds).
    pub fn record(
        &self,
        rcpt: &mut Recipient,
        verdict: Verdict,
        reply: &str,
        now: u64,
        arrival: u64,
    ) {
        rcpt.attempts = rcpt.attempts.saturating_add(1);
        rcpt.last_reply = Some(one_line(reply));
        match verdict {
            Verdict::Delivered => {
                rcpt.status = Status::Delivered;
                rcpt.next_attempt = None;
            }
            Verdict::Permanent => {
                rcpt.status = Status::Failed;
                rcpt.next_attempt = None;
            }
            Verdict::Transient => {
                let next = now.saturating_add(self.delay_after(rcpt.attempts).as_secs());
                let expires = arrival.saturating_add(self.max_queue_time.as_secs());
                if now >= expires {
                    rcpt.status = Status::Failed;
                    rcpt.next_attempt = None;
                    rcpt.last_reply = Some(format!(
                        "message expired after {} in the queue; last reply: {}",
                        crate::config::render_duration(self.max_queue_time),
                        one_line(reply)
                    ));
                } else {
                    rcpt.status = Status::Deferred;
                    rcpt.next_attempt = Some(next);
                }
            }
        }
    }

    /// Is `rcpt` due for an attempt? `force` (flush) ignores the retry time.
    pub fn is_due(rcpt: &Recipient, now: u64, force: bool) -> bool {
        match rcpt.status {
            Status::Pending => true,
            Status::Deferred => force || rcpt.next_attempt.is_none_or(|t| t <= now),
            Status::Failed | Status::Delivered => false,
        }
    }
}

/// Replies are stored on one line: CR, LF and other controls become spaces.
fn one_line(reply: &str) -> String {
    let s: String = reply
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;

    fn schedule(retry: &[Duration]) -> Schedule<'_> {
        Schedule {
            retry,
            max_queue_time: Duration::from_secs(5 * DAY),
        }
    }

    #[test]
    fn transient_failures_follow_the_retry_list_and_the_last_repeats() {
        let retry = [
            Duration::from_secs(60),
            Duration::from_secs(300),
            Duration::from_secs(3600),
        ];
        let s = schedule(&retry);
        let mut r = Recipient::new("a@b.example".into());
        let arrival = 1_000_000;
        // (now, expected next_attempt)
        const STEPS: &[(u64, u64)] = &[(0, 60), (60, 360), (400, 4000), (5000, 8600)];
        for (i, (dt, next)) in STEPS.iter().enumerate() {
            let now = arrival + dt;
            s.record(
                &mut r,
                Verdict::Transient,
                "451 4.3.0 try later",
                now,
                arrival,
            );
            assert_eq!(r.status, Status::Deferred, "step {i}");
            assert_eq!(r.attempts, i as u32 + 1);
            assert_eq!(r.next_attempt, Some(arrival + next), "step {i}");
            assert_eq!(r.last_reply.as_deref(), Some("451 4.3.0 try later"));
        }
    }

    #[test]
    fn verdicts() {
        let retry = [Duration::from_secs(60)];
        let s = schedule(&retry);
        let arrival = 1_000_000;
        let mut r = Recipient::new("a@b.example".into());
        s.record(
            &mut r,
            Verdict::Permanent,
            "550 5.1.1 no\r\nsuch user",
            arrival,
            arrival,
        );
        assert_eq!((r.status, r.next_attempt), (Status::Failed, None));
        assert_eq!(r.last_reply.as_deref(), Some("550 5.1.1 no such user"));
        let mut r = Recipient::new("a@b.example".into());
        s.record(&mut r, Verdict::Delivered, "250 ok", arrival, arrival);
        assert_eq!((r.status, r.attempts), (Status::Delivered, 1));
    }

    #[test]
    fn a_transient_failure_after_max_queue_time_is_final() {
        let retry = [Duration::from_secs(60)];
        let s = schedule(&retry);
        let arrival = 1_000_000;
        let mut r = Recipient::new("a@b.example".into());
        s.record(
            &mut r,
            Verdict::Transient,
            "421 busy",
            arrival + 5 * DAY,
            arrival,
        );
        assert_eq!(r.status, Status::Failed);
        let reply = r.last_reply.unwrap_or_default();
        assert!(
            reply.contains("expired") && reply.ends_with("421 busy"),
            "{reply}"
        );
        // Just before expiry it is still deferred.
        let mut r = Recipient::new("a@b.example".into());
        s.record(
            &mut r,
            Verdict::Transient,
            "421 busy",
            arrival + 5 * DAY - 1,
            arrival,
        );
        assert_eq!(r.status, Status::Deferred);
    }

    #[test]
    fn due() {
        let mut r = Recipient::new("a@b.example".into());
        assert!(Schedule::is_due(&r, 0, false));
        r.status = Status::Deferred;
        r.next_attempt = Some(100);
        assert!(!Schedule::is_due(&r, 99, false));
        assert!(Schedule::is_due(&r, 99, true));
        assert!(Schedule::is_due(&r, 100, false));
        r.status = Status::Failed;
        assert!(!Schedule::is_due(&r, 1000, true));
    }
}
