//! Delivery passes for `serve`: the daemon runs the same code as `postling flush`, in a
//! child process (`flush --due`), so a slow destination or a crash in delivery never
//! touches the SMTP loop.
//!
//! Invariants: new mail starts a pass at once when none runs. While passes run, a
//! request is remembered and served when one ends, which coalesces a burst of mail
//! into few passes; but if the youngest running pass is older than [`STUCK_AFTER`]
//! (it may be waiting on a hanging MX), a new one starts at once, up to [`MAX_PASSES`]:
//! a stalled destination never holds up mail for anyone else. Passes lock each message,
//! so concurrent ones never deliver one twice. The periodic pass only starts when none
//! is running.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use log::{debug, warn};

/// Passes running at once (each a process with up to 4 delivery workers).
pub const MAX_PASSES: usize = 4;

/// A pass running longer than this may be stuck on a slow destination.
pub const STUCK_AFTER: Duration = Duration::from_secs(2);

pub struct PassRunner {
    config_path: PathBuf,
    interval: Duration,
    /// Running passes and when each started.
    children: Vec<(Child, Instant)>,
    /// A pass was asked for while one ran.
    again: bool,
    /// When the next periodic pass is due.
    next_periodic: Instant,
}

impl PassRunner {
    /// The first pass runs at once: mail queued before a restart goes out.
    pub fn new(config_path: PathBuf, interval: Duration) -> PassRunner {
        PassRunner {
            config_path,
            interval,
            children: Vec::new(),
            again: true,
            next_periodic: Instant::now(),
        }
    }

    pub fn set_interval(&mut self, interval: Duration) {
        self.interval = interval;
    }

    /// New mail arrived: run a pass as soon as possible.
    pub fn request(&mut self) {
        self.again = true;
    }

    /// Reap finished passes, start one when due. Call on every loop turn.
    pub fn poll(&mut self, now: Instant) {
        self.children
            .retain_mut(|(child, _)| match child.try_wait() {
                Ok(Some(status)) => {
                    if !status.success() {
                        warn!("delivery pass exited with {status}");
                    }
                    false
                }
                Ok(None) => true,
                Err(e) => {
                    warn!("delivery pass: {e}");
                    false
                }
            });
        if now >= self.next_periodic && self.children.is_empty() {
            self.again = true;
        }
        let youngest = self.children.iter().map(|(_, t)| *t).max();
        let may_start = match youngest {
            None => true,
            Some(t) => {
                self.children.len() < MAX_PASSES && now.saturating_duration_since(t) >= STUCK_AFTER
            }
        };
        if self.again && may_start {
            self.start(now);
        }
    }

    /// When `poll` next needs to run for a periodic pass (SIGCHLD wakes the loop for
    /// a finished one).
    pub fn next_deadline(&self) -> Option<Instant> {
        if !self.children.is_empty() {
            // Also a safety net should a SIGCHLD be missed.
            return Some(Instant::now() + Duration::from_secs(1));
        }
        Some(self.next_periodic)
    }

    fn start(&mut self, now: Instant) {
        self.again = false;
        self.next_periodic = now + self.interval;
        let exe = match std::env::current_exe() {
            Ok(p) => p,
            Err(e) => {
                warn!("cannot start a delivery pass: {e}");
                return;
            }
        };
        let spawned = Command::new(exe)
            .arg("flush")
            .arg("--due")
            .arg("-c")
            .arg(&self.config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn();
        match spawned {
            Ok(child) => {
                debug!("delivery pass started (pid {})", child.id());
                self.children.push((child, now));
            }
            Err(e) => warn!("cannot start a delivery pass: {e}"),
        }
    }
}
