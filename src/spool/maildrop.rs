//! The maildrop: how any local user submits mail without a setuid helper (as Postfix's
//! `maildrop/` and `pickup`). `spool/maildrop/` is sticky and world-writable but not
//! listable (mode 1733); `sendmail` writes one file there per message and renames it
//! into place; the next delivery pass (run by root: `serve`'s child or cron's `flush`)
//! moves it into the queue proper.
//!
//! A drop file is a short header, then the message (CRLF lines):
//! ```text
//! postling-drop 1
//! sender alice@host.example      (percent-encoded; empty for <>)
//! rcpt bob@example.org           (one line per recipient)
//! eightbit 0|1
//! data
//! <message>
//! ```
//!
//! Invariants:
//! - A file is only visible under its final name (no `tmp.` prefix) once it is complete
//!   and fsynced, and the directory is fsynced before `sendmail` exits 0.
//! - Pickup trusts nothing in the file but its syntax: it opens with `O_NOFOLLOW`, takes
//!   only regular files, and the submitting user is the file's owner (from `fstat`), not
//!   anything the file says. A file it cannot parse goes to `corrupt/`, never bounced.
//! - A file is removed only after its message is committed to the queue; a crash in
//!   between can at worst queue it twice, never lose it.
//! - `.pickup` is a FIFO (0622) the daemon reads: a byte written there wakes it to pick
//!   up at once. Opening it for writing fails (`ENXIO`) when no daemon runs.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use super::envelope::{percent_decode, percent_encode};
use super::{Envelope, Recipient, Spool};

/// The directory under the spool.
pub const DIR: &str = "maildrop";
/// The daemon's wake-up FIFO inside it.
pub const FIFO: &str = ".pickup";
const VERSION_LINE: &str = "postling-drop 1";
/// Temporary names start with this; pickup leaves them alone until they are stale.
const TMP_PREFIX: &str = "tmp.";
/// A temporary drop file older than this was abandoned by a killed `sendmail`.
const STALE_TMP_SECS: u64 = 24 * 3600;
/// Longest header line in a drop file (an address is at most 256 octets, encoded ×3).
const MAX_HEADER_LINE: usize = 1024;
/// Most recipients in one drop file (the same bound as a message from SMTP could
/// reach with a generous `max_recipients`).
const MAX_RECIPIENTS: usize = 10_000;

static SEQ: AtomicU32 = AtomicU32::new(0);

/// What a submission puts in the drop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drop {
    /// `""` for `<>`.
    pub sender: String,
    pub recipients: Vec<String>,
    pub eight_bit: bool,
}

/// Create `spool/maildrop` (1733) and its FIFO (0622); the spool root must let others
/// through (0711). Called by root (the owner of the spool) when the spool is opened.
pub fn prepare(spool_root: &Path) -> io::Result<()> {
    let meta = fs::metadata(spool_root)?;
    if meta.permissions().mode() & 0o011 != 0o011 {
        // Traversable, not listable: users reach maildrop/ by name only.
        fs::set_permissions(spool_root, fs::Permissions::from_mode(0o711))?;
    }
    let dir = spool_root.join(DIR);
    match fs::DirBuilder::new().mode(0o1733).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let m = fs::symlink_metadata(&dir)?;
    if !m.is_dir() {
        return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
    }
    if m.permissions().mode() & 0o7777 != 0o1733 {
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o1733))?;
    }
    let fifo = dir.join(FIFO);
    if fs::symlink_metadata(&fifo).is_err() {
        let c = std::ffi::CString::new(fifo.as_os_str().as_bytes())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: a valid NUL-terminated path.
        if unsafe { libc::mkfifo(c.as_ptr(), 0o622) } != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(e);
            }
        }
        fs::set_permissions(&fifo, fs::Permissions::from_mode(0o622))?;
    }
    Ok(())
}

/// Write one submission into the drop, durably. Works for any user.
pub fn submit(spool_root: &Path, drop: &Drop, message: &[u8]) -> io::Result<PathBuf> {
    let dir = spool_root.join(DIR);
    let micros = crate::time::unix_micros();
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let name = format!("{micros:016}.{}.{n}", std::process::id());
    let tmp = dir.join(format!("{TMP_PREFIX}{name}"));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    let result = (|| {
        let mut head = format!("{VERSION_LINE}\nsender {}\n", percent_encode(&drop.sender));
        for r in &drop.recipients {
            head.push_str(&format!("rcpt {}\n", percent_encode(r)));
        }
        head.push_str(&format!("eightbit {}\ndata\n", u8::from(drop.eight_bit)));
        file.write_all(head.as_bytes())?;
        file.write_all(message)?;
        file.sync_all()?;
        let done = dir.join(&name);
        fs::rename(&tmp, &done)?;
        File::open(&dir)
            .or_else(|_| OpenOptions::new().read(true).open(&dir))
            .and_then(|d| d.sync_all())
            // A 1733 directory cannot be opened for reading by others; fsync of the
            // file and the rename's own ordering are then what we have.
            .or_else(|e| {
                if e.kind() == io::ErrorKind::PermissionDenied {
                    Ok(())
                } else {
                    Err(e)
                }
            })?;
        Ok(done)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Wake a running daemon. `false` when none is listening.
pub fn poke(spool_root: &Path) -> bool {
    let fifo = spool_root.join(DIR).join(FIFO);
    match OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(fifo)
    {
        Ok(mut f) => {
            // A full FIFO already holds a wake-up: fine either way.
            let _ = f.write(b"!");
            true
        }
        Err(_) => false,
    }
}

/// Open the FIFO for the daemon: read-write, so it never sees end-of-file when the last
/// `sendmail` closes it.
pub fn open_fifo(spool_root: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(spool_root.join(DIR).join(FIFO))
}

/// Move every complete drop file into the queue. Returns how many were queued.
/// What pickup enforces whatever wrote the drop file.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_size: u64,
    pub max_recipients: usize,
}

/// Room for the drop file's own header lines on top of the message.
const MAX_DROP_HEADER: u64 = 1024 * 1024;

pub fn pickup(spool: &Spool, hostname: &str, limits: &Limits) -> io::Result<usize> {
    let dir = spool.root().join(DIR);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let now = crate::time::unix_now();
    let mut queued = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        if name.starts_with(TMP_PREFIX) {
            let stale = entry
                .metadata()
                .map(|m| now.saturating_sub(u64::try_from(m.mtime()).unwrap_or(0)) > STALE_TMP_SECS)
                .unwrap_or(false);
            if stale {
                let _ = fs::remove_file(&path);
            }
            continue;
        }
        match pickup_one(spool, &path, hostname, limits, now) {
            Ok(_) => queued += 1,
            Err(Bad::Busy) => {}
            Err(Bad::Transient(e)) => {
                log::warn!("maildrop/{name}: {}", crate::time::io_reason(&e));
            }
            Err(Bad::Corrupt(reason)) => {
                log::error!("maildrop/{name}: {reason}; moved to corrupt/");
                let _ = fs::rename(
                    &path,
                    spool.root().join("corrupt").join(format!("drop.{name}")),
                );
            }
        }
    }
    if queued > 0 {
        let _ = File::open(&dir).and_then(|d| d.sync_all());
    }
    Ok(queued)
}

enum Bad {
    /// Another pass is picking it up.
    Busy,
    Transient(io::Error),
    Corrupt(String),
}

fn pickup_one(
    spool: &Spool,
    path: &Path,
    hostname: &str,
    limits: &Limits,
    now: u64,
) -> Result<String, Bad> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                Bad::Corrupt("a symbolic link".into())
            } else {
                Bad::Transient(e)
            }
        })?;
    let meta = file.metadata().map_err(Bad::Transient)?;
    if !meta.is_file() {
        return Err(Bad::Corrupt("not a regular file".into()));
    }
    // Two passes may pick up at the same time: the one holding the lock takes the file;
    // the other skips it, and so does a pass that locks it after it was taken.
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Err(Bad::Busy),
        Err(std::fs::TryLockError::Error(e)) => return Err(Bad::Transient(e)),
    }
    // Taken (and unlinked) by another pass between our open and our lock.
    match file.metadata() {
        Ok(m) if m.nlink() > 0 => {}
        _ => return Err(Bad::Busy),
    }
    // Whatever wrote this file (sendmail, or a user by hand), the limits hold.
    if meta.len() > limits.max_size.saturating_add(MAX_DROP_HEADER) {
        return Err(Bad::Corrupt(format!(
            "larger than max_message_size ({} bytes)",
            meta.len()
        )));
    }
    let uid = meta.uid();
    let mut reader = BufReader::new(file);
    let drop = read_header(&mut reader)?;
    if drop.recipients.len() > limits.max_recipients {
        return Err(Bad::Corrupt(format!(
            "{} recipients, more than max_recipients",
            drop.recipients.len()
        )));
    }
    let user = crate::local::directory::user_name(uid).unwrap_or_else(|| uid.to_string());
    let mut incoming = spool
        .begin(now)
        .map_err(|e| Bad::Transient(io::Error::other(e.to_string())))?;
    let id = incoming.id().clone();
    // RFC 5321 §4.4 asks a trace header of every hop; this one says who submitted it.
    let received = format!(
        "Received: by {hostname} (postling, from userid {uid})\r\n\tid {id}; {}\r\n",
        crate::time::rfc5322(now)
    );
    let mut size = received.len() as u64;
    incoming
        .write(received.as_bytes())
        .map_err(|e| Bad::Transient(io::Error::other(e.to_string())))?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Bad::Transient(e)),
        };
        size += n as u64;
        incoming
            .write(&buf[..n])
            .map_err(|e| Bad::Transient(io::Error::other(e.to_string())))?;
    }
    let env = Envelope {
        id: id.clone(),
        arrival: now,
        sender: drop.sender.clone(),
        recipients: drop
            .recipients
            .iter()
            .cloned()
            .map(Recipient::new)
            .collect(),
        size,
        eight_bit: drop.eight_bit,
        client_ip: None,
        helo: String::new(),
        auth_user: None,
    };
    incoming
        .commit(&env)
        .map_err(|e| Bad::Transient(io::Error::other(e.to_string())))?;
    // Remove the drop file while still holding its lock, so that no other pass can
    // lock it, find it linked, and queue it a second time.
    if let Err(e) = fs::remove_file(path) {
        log::error!(
            "{id}: {} queued but not removed: {}",
            path.display(),
            crate::time::io_reason(&e)
        );
    }
    log::info!(
        "{id}: uid={uid} ({user}), from=<{}>, size={size}, nrcpt={}",
        drop.sender,
        drop.recipients.len()
    );
    Ok(id.to_string())
}

fn read_header(reader: &mut impl BufRead) -> Result<Drop, Bad> {
    let mut line = Vec::new();
    let mut next = |reader: &mut dyn BufRead| -> Result<String, Bad> {
        line.clear();
        let n = reader
            .take(MAX_HEADER_LINE as u64)
            .read_until(b'\n', &mut line)
            .map_err(Bad::Transient)?;
        if n == 0 || line.last() != Some(&b'\n') {
            return Err(Bad::Corrupt("truncated header".into()));
        }
        line.pop();
        String::from_utf8(line.clone()).map_err(|_| Bad::Corrupt("header is not UTF-8".into()))
    };
    if next(reader)? != VERSION_LINE {
        return Err(Bad::Corrupt("not a drop file".into()));
    }
    let sender = match next(reader)?.strip_prefix("sender ") {
        Some(s) => percent_decode(s).map_err(Bad::Corrupt)?,
        None => return Err(Bad::Corrupt("no sender line".into())),
    };
    let mut recipients = Vec::new();
    let eight_bit;
    loop {
        let l = next(reader)?;
        if let Some(r) = l.strip_prefix("rcpt ") {
            if recipients.len() >= MAX_RECIPIENTS {
                return Err(Bad::Corrupt("too many recipients".into()));
            }
            recipients.push(percent_decode(r).map_err(Bad::Corrupt)?);
        } else if let Some(v) = l.strip_prefix("eightbit ") {
            eight_bit = v == "1";
            break;
        } else {
            return Err(Bad::Corrupt(format!(
                "unexpected line '{}'",
                l.escape_debug()
            )));
        }
    }
    if next(reader)? != "data" {
        return Err(Bad::Corrupt("no data line".into()));
    }
    if recipients.is_empty() {
        return Err(Bad::Corrupt("no recipients".into()));
    }
    Ok(Drop {
        sender,
        recipients,
        eight_bit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEST_LIMITS: Limits = Limits {
        max_size: 1024 * 1024,
        max_recipients: 10,
    };

    fn temp_spool(tag: &str) -> (PathBuf, Spool) {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "postling-drop-{}-{tag}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        let spool = Spool::open(&dir.join("spool")).expect("spool");
        (dir, spool)
    }

    #[test]
    fn submit_then_pickup_queues_the_message() {
        let (dir, spool) = temp_spool("ok");
        let root = spool.root().to_path_buf();
        let mode = fs::metadata(root.join(DIR))
            .expect("dir")
            .permissions()
            .mode()
            & 0o7777;
        assert_eq!(mode, 0o1733);
        let drop = Drop {
            sender: "alice@host.example".into(),
            recipients: vec!["bob@example.org".into(), "odd user%x@example.org".into()],
            eight_bit: true,
        };
        submit(&root, &drop, b"Subject: hi\r\n\r\nbody\r\n").expect("submit");
        assert_eq!(pickup(&spool, "mx.test", &TEST_LIMITS).expect("pickup"), 1);
        let envs = spool.list().expect("list");
        assert_eq!(envs.len(), 1);
        assert_eq!(envs[0].sender, "alice@host.example");
        let rcpts: Vec<&str> = envs[0]
            .recipients
            .iter()
            .map(|r| r.address.as_str())
            .collect();
        assert_eq!(rcpts, ["bob@example.org", "odd user%x@example.org"]);
        assert!(envs[0].eight_bit);
        let msg = fs::read_to_string(spool.message_path(&envs[0].id)).expect("msg");
        assert!(
            msg.starts_with("Received: by mx.test (postling, from userid "),
            "{msg}"
        );
        assert!(msg.ends_with("Subject: hi\r\n\r\nbody\r\n"), "{msg}");
        // The drop file is gone; nothing is picked up twice.
        assert_eq!(pickup(&spool, "mx.test", &TEST_LIMITS).expect("pickup"), 0);
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn concurrent_pickups_queue_a_drop_file_once() {
        use std::os::fd::AsRawFd;
        let (dir, spool) = temp_spool("race");
        let root = spool.root().to_path_buf();
        let drop = Drop {
            sender: "alice@host.example".into(),
            recipients: vec!["bob@example.org".into()],
            eight_bit: false,
        };
        let path = submit(&root, &drop, b"Subject: once\r\n\r\nbody\r\n").expect("submit");
        // Another pass holds the file: it is left alone.
        let other = File::open(&path).expect("open");
        // SAFETY: flock on a descriptor we own.
        assert_eq!(unsafe { libc::flock(other.as_raw_fd(), libc::LOCK_EX) }, 0);
        assert_eq!(pickup(&spool, "mx.test", &TEST_LIMITS).expect("pickup"), 0);
        assert!(path.exists());
        std::mem::drop(other);
        // Many passes at once: exactly one queues it.
        let queued: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| pickup(&spool, "mx.test", &TEST_LIMITS).expect("pickup")))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
        });
        assert_eq!(queued, 1);
        assert_eq!(spool.list().expect("list").len(), 1);
        assert!(!path.exists());
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn bad_files_go_to_corrupt_and_links_are_not_followed() {
        let (dir, spool) = temp_spool("bad");
        let root = spool.root().to_path_buf();
        fs::write(root.join(DIR).join("0001.1.1"), "garbage\n").expect("write");
        std::os::unix::fs::symlink("/etc/passwd", root.join(DIR).join("0002.1.1")).expect("ln");
        fs::write(root.join(DIR).join("tmp.0003.1.1"), "in progress").expect("write");
        assert_eq!(pickup(&spool, "mx.test", &TEST_LIMITS).expect("pickup"), 0);
        assert!(spool.list().expect("list").is_empty());
        let corrupt: Vec<String> = fs::read_dir(root.join("corrupt"))
            .expect("corrupt")
            .map(|e| e.expect("e").file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            corrupt.contains(&"drop.0001.1.1".to_string()),
            "{corrupt:?}"
        );
        assert!(
            corrupt.contains(&"drop.0002.1.1".to_string()),
            "{corrupt:?}"
        );
        // A file still being written is left alone.
        assert!(root.join(DIR).join("tmp.0003.1.1").exists());
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn poke_needs_a_reader() {
        let (dir, spool) = temp_spool("fifo");
        let root = spool.root().to_path_buf();
        assert!(!poke(&root), "nobody reads the FIFO yet");
        let _reader = open_fifo(&root).expect("open fifo");
        assert!(poke(&root));
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn header_encoding_round_trips() {
        for s in ["", "a@b", "with space@x", "pct%@x", "ünï@x", "\r\n@x"] {
            assert_eq!(percent_decode(&percent_encode(s)).ok().as_deref(), Some(s));
        }
        assert!(percent_decode("%G1").is_err());
        assert!(percent_decode("%4").is_err());
    }
}
