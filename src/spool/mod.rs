//! The queue: a maildir-style spool directory.
//!
//! Layout under `spool`:
//! - `tmp/`     files being written; never read by delivery; stale ones are removed.
//! - `msg/ID`   the message (Received header + data, CRLF lines); immutable once renamed.
//! - `env/ID`   the envelope (sender, recipients and their delivery state); replaced
//!   atomically (write tmp → fsync → rename → fsync dir) on every state change.
//! - `corrupt/` envelopes that could not be parsed, kept for the administrator.
//!
//! Invariants: a message is visible to delivery exactly when `env/ID` exists, and
//! `env/ID` is only renamed into place after `msg/ID` is durable, so a crash at any
//! moment leaves either a complete message or nothing visible. `250` is only sent after
//! [`Incoming::commit`] returns, which is after every fsync (file and directory).
//! Directories are 0700, files 0600.

pub mod envelope;
pub mod id;
pub mod listing;

pub use envelope::{Envelope, Recipient, Status};
pub use id::QueueId;

use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// A spool failure, mapped to a reply at one edge: `NoSpace` → `452 4.3.1`,
/// anything else → `451 4.3.0`.
#[derive(Debug)]
pub enum SpoolError {
    /// ENOSPC or EDQUOT.
    NoSpace,
    Io(io::Error),
}

impl From<io::Error> for SpoolError {
    fn from(e: io::Error) -> Self {
        match e.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => SpoolError::NoSpace,
            _ => SpoolError::Io(e),
        }
    }
}

impl fmt::Display for SpoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpoolError::NoSpace => f.write_str("no space left on spool device"),
            SpoolError::Io(e) => f.write_str(&crate::time::io_reason(e)),
        }
    }
}

/// An open spool directory.
#[derive(Debug, Clone)]
pub struct Spool {
    root: PathBuf,
}

impl Spool {
    /// Open the spool, creating it and its subdirectories (0700) when missing.
    pub fn open(root: &Path) -> io::Result<Spool> {
        let _ = root;
        todo!()
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Start a new message: a fresh unique queue ID and a file in `tmp/`
    /// (`O_CREAT|O_EXCL|O_NOFOLLOW`, 0600).
    pub fn begin(&self, arrival_unix: u64) -> Result<Incoming, SpoolError> {
        let _ = arrival_unix;
        todo!()
    }

    /// Every queued envelope, oldest first. Envelopes that cannot be read or parsed are
    /// moved to `corrupt/` and logged, never returned and never fatal.
    pub fn list(&self) -> io::Result<Vec<Envelope>> {
        todo!()
    }

    /// Read one envelope.
    pub fn read(&self, id: &QueueId) -> io::Result<Envelope> {
        let _ = id;
        todo!()
    }

    /// Remove stale files from `tmp/` (stub until the spool lands).
    pub fn clean_tmp(&self, older_than_secs: u64) {
        let _ = older_than_secs;
    }

    /// Remove a message (envelope first, so it stops being visible, then the data).
    /// `Ok(false)` when no such message exists.
    pub fn remove(&self, id: &QueueId) -> io::Result<bool> {
        let _ = id;
        todo!()
    }
}

/// A message being received. Dropping it without `commit` removes the temporary file.
#[derive(Debug)]
pub struct Incoming {
    id: QueueId,
    file: Option<File>,
    tmp_path: PathBuf,
}

impl Incoming {
    pub fn id(&self) -> &QueueId {
        &self.id
    }

    /// Append message bytes.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), SpoolError> {
        let _ = bytes;
        todo!()
    }

    /// Make the message durable and visible: fsync the data, write and fsync the
    /// envelope, rename both into place, fsync the directories. Only after `Ok` may the
    /// server answer `250`. On error nothing is left visible in the queue.
    pub fn commit(self, envelope: &Envelope) -> Result<QueueId, SpoolError> {
        let _ = envelope;
        todo!()
    }
}
