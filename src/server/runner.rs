//! Delivery passes for `serve`: the daemon runs the same code as `postling flush`, in a
//! child process (`flush --due`), so a slow destination or a crash in delivery never
//! touches the SMTP loop.
//!
//! Invariants: at most one pass runs at a time (a pass already works on every due
//! message in parallel workers; two would only fight over locks). A request while one
//! runs (new mail) is remembered and served by a new pass as soon as it ends, so mail
//! accepted during a pass is tried at once, not after `queue_interval`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use log::{debug, warn};

pub struct PassRunner {
    config_path: PathBuf,
    interval: Duration,
    child: Option<Child>,
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
            child: None,
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

    /// Reap a finished pass, start one when due. Call on every loop turn.
    pub fn poll(&mut self, now: Instant) {
        if let Some(child) = self.child.as_mut() {
            match child.try_wait() {
                Ok(Some(status)) => {
                    if !status.success() {
                        warn!("delivery pass exited with {status}");
                    }
                    self.child = None;
                }
                Ok(None) => return,
                Err(e) => {
                    warn!("delivery pass: {e}");
                    self.child = None;
                }
            }
        }
        if now >= self.next_periodic {
            self.again = true;
        }
        if self.again {
            self.start(now);
        }
    }

    /// When `poll` next needs to run for a periodic pass (SIGCHLD wakes the loop for
    /// a finished one).
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.child.is_some() {
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
                self.child = Some(child);
            }
            Err(e) => warn!("cannot start a delivery pass: {e}"),
        }
    }
}
