//! Maildir delivery (<https://cr.yp.to/proto/maildir.html>).
//!
//! Invariants:
//! - A message appears in `new/` whole or not at all: it is written to `tmp/<unique>`,
//!   fsynced, renamed into `new/`, and `new/` is fsynced before [`deliver`] returns `Ok`
//!   (the same discipline as the spool, design.md "Durability").
//! - Nothing user-controlled is followed: the Maildir is opened with
//!   `O_DIRECTORY|O_NOFOLLOW`, and `tmp/`, `new/`, `cur/` and the message file are opened,
//!   created and renamed *relative to those directory descriptors* (`openat`, `mkdirat`,
//!   `renameat`), so swapping a directory for a symlink between a check and a use cannot
//!   redirect the write (design.md, security habits). The message file is created with
//!   `O_CREAT|O_EXCL|O_NOFOLLOW`, mode 0600; created directories are 0700. Path
//!   components above the Maildir (`mail_dir` itself) are the administrator's and trusted.
//! - Line ends: the spool holds the message with CRLF line ends (SMTP's canonical form).
//!   Maildir files conventionally use the local convention, LF, which is what Postfix's
//!   local/virtual delivery writes and what Dovecot and mutt expect, so CRLF is
//!   converted to LF while copying. A bare CR (which the DATA reader never lets through as
//!   a line end) is kept as is.
//! - Every delivered file starts with `Return-Path: <sender>` (RFC 5321 §4.4: the final
//!   delivery adds it; `<>` for the null sender) and `Delivered-To: <address>` (the
//!   Postfix/qmail habit, used to spot forwarding loops).
//! - Ownership: when running as root, the message file and any directory created here are
//!   `fchown`ed, before a byte is written, to the owner of the Maildir directory, so the
//!   user can read and expunge their mail. (Simplest correct choice for a root daemon; a
//!   later design may deliver in a child that has `setuid` to the user instead.) A
//!   Maildir that does not exist yet is created by [`ensure_maildir`]; as root, call it
//!   first with the user's uid/gid, or the new Maildir is root's.
//! - Errors are [`DeliveryError`]: permanent (5.x.x) when the mailbox itself is wrong (a
//!   symlink, not a directory), transient (4.x.x) for everything an administrator or
//!   time can fix (disk full, I/O errors, permissions).

use std::ffi::CString;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// Mode of directories created here: the mailbox is the user's alone.
const DIR_MODE: libc::mode_t = 0o700;
/// Mode of delivered messages.
const FILE_MODE: libc::mode_t = 0o600;
/// Copy buffer for the spool file.
const COPY_CHUNK: usize = 64 * 1024;
/// Attempts at a fresh unique name before giving up (another deliverer with our pid
/// and counter could only exist after a pid wrap within one microsecond).
const NAME_ATTEMPTS: u32 = 8;

/// Why a delivery did not happen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeliveryError {
    /// Try again later (disk full, I/O error, permissions): the message stays queued.
    Transient {
        status: &'static str,
        reason: String,
    },
    /// The mailbox is unusable as it stands (symlink, not a directory): bounce.
    Permanent {
        status: &'static str,
        reason: String,
    },
}

impl DeliveryError {
    pub fn is_permanent(&self) -> bool {
        matches!(self, DeliveryError::Permanent { .. })
    }

    /// RFC 3463 enhanced status code, e.g. `4.3.0`.
    pub fn status(&self) -> &'static str {
        match self {
            DeliveryError::Transient { status, .. } | DeliveryError::Permanent { status, .. } => {
                status
            }
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            DeliveryError::Transient { reason, .. } | DeliveryError::Permanent { reason, .. } => {
                reason
            }
        }
    }

    /// One reply line for `last_reply` and bounces: `452 4.2.2 …`, `550 5.2.0 …`.
    pub fn reply(&self) -> String {
        let code = match self.status() {
            s if s.starts_with('5') => 550,
            // RFC 5321 §4.2.2: 452 is "insufficient system storage".
            "4.2.2" | "4.3.1" => 452,
            _ => 451,
        };
        format!("{code} {} {}", self.status(), self.reason())
    }
}

impl fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status(), self.reason())
    }
}

/// `mail_dir/<user>`, or `None` for a name that is not a plain user name: only the
/// characters `Directory` accepts (ASCII letters, digits, `.`, `_`, `-`, `+`), not
/// empty, not starting with `.`, so `/`, `..`, NUL and hidden names can never escape
/// or shadow anything in `mail_dir`.
pub fn mailbox_path(mail_dir: &Path, user: &str) -> Option<PathBuf> {
    let ok = !user.is_empty()
        && user.len() <= 255
        && !user.starts_with('.')
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+'));
    ok.then(|| mail_dir.join(user))
}

/// Deliver the spool message `message` into the Maildir `maildir`; returns the path of
/// the new file in `new/`. `return_path` is the envelope sender (`""` for `<>`),
/// `delivered_to` the recipient address; `now_micros` (µs since the epoch) names the file.
pub fn deliver(
    maildir: &Path,
    message: &mut dyn Read,
    return_path: &str,
    delivered_to: &str,
    now_micros: u64,
) -> Result<PathBuf, DeliveryError> {
    ensure_maildir(maildir, None)?;
    let top = open_maildir(maildir)?;
    let meta = top.metadata().map_err(|e| classify(&e, "stat", maildir))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let owner = (unsafe { libc::geteuid() } == 0).then(|| (meta.uid(), meta.gid()));

    let mut dirs = Vec::with_capacity(3);
    for sub in ["tmp", "new", "cur"] {
        dirs.push(open_subdir(&top, maildir, sub, owner)?);
    }
    let (tmp, new) = (&dirs[0], &dirs[1]);

    let (name, file) = create_unique(tmp, &maildir.join("tmp"), now_micros)?;
    let written = write_message(file, owner, message, return_path, delivered_to)
        .and_then(|()| rename_at(tmp, &name, new, &name).map_err(|e| ("rename", e)));
    if let Err((what, e)) = written {
        // Leave no half-written file behind; a failure to unlink is harmless (readers
        // ignore tmp/, and the Maildir spec has tmp/ files older than 36 h swept).
        let _ = unlink_at(tmp, &name);
        return Err(classify(&e, what, maildir));
    }
    let new_path = maildir.join("new");
    new.sync_all()
        .map_err(|e| classify(&e, "fsync", &new_path))?;
    Ok(new_path.join(name.to_string_lossy().as_ref()))
}

/// Create the Maildir directory itself if missing (mode 0700, the parent must exist),
/// owned by `owner` (uid, gid) when given; an existing one is left as it is. Refuses a
/// symlink or a non-directory in its place.
pub fn ensure_maildir(maildir: &Path, owner: Option<(u32, u32)>) -> Result<(), DeliveryError> {
    let c = cstring(maildir.as_os_str().as_bytes(), maildir)?;
    // SAFETY: `c` is a valid NUL-terminated path.
    if unsafe { libc::mkdir(c.as_ptr(), DIR_MODE) } != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EEXIST) {
            // Something is there: `open_maildir` tells a directory from the rest.
            return open_maildir(maildir).map(drop);
        }
        return Err(classify(&e, "mkdir", maildir));
    }
    let dir = open_maildir(maildir)?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::fchown(&dir, Some(uid), Some(gid))
            .map_err(|e| classify(&e, "chown", maildir))?;
    }
    if let Some(parent) = maildir.parent() {
        // The new directory entry is durable before mail goes into it.
        let _ = File::open(parent).and_then(|p| p.sync_all());
    }
    Ok(())
}

fn open_maildir(maildir: &Path) -> Result<File, DeliveryError> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(maildir)
        .map_err(|e| classify(&e, "open", maildir))
}

/// Open (creating if missing) `parent/name` as a directory without following a symlink.
fn open_subdir(
    parent: &File,
    parent_path: &Path,
    name: &str,
    owner: Option<(u32, u32)>,
) -> Result<File, DeliveryError> {
    let path = parent_path.join(name);
    let c = cstring(name.as_bytes(), &path)?;
    // SAFETY: valid directory fd and NUL-terminated name.
    let made = unsafe { libc::mkdirat(parent.as_raw_fd(), c.as_ptr(), DIR_MODE) } == 0;
    if !made {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(classify(&e, "mkdir", &path));
        }
    }
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: valid directory fd and NUL-terminated name.
    let fd = unsafe { libc::openat(parent.as_raw_fd(), c.as_ptr(), flags) };
    if fd < 0 {
        return Err(classify(&io::Error::last_os_error(), "open", &path));
    }
    // SAFETY: `fd` was just returned by openat and is owned by nobody else.
    let dir = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    if made {
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&dir, Some(uid), Some(gid))
                .map_err(|e| classify(&e, "chown", &path))?;
        }
        parent
            .sync_all()
            .map_err(|e| classify(&e, "fsync", parent_path))?;
    }
    Ok(dir)
}

/// Create `tmp/<unique>` with `O_CREAT|O_EXCL|O_NOFOLLOW`, mode 0600.
fn create_unique(
    tmp: &File,
    tmp_path: &Path,
    now_micros: u64,
) -> Result<(CString, File), DeliveryError> {
    let mut last = io::Error::from_raw_os_error(libc::EEXIST);
    for _ in 0..NAME_ATTEMPTS {
        let name = unique_name(now_micros);
        let c = cstring(name.as_bytes(), tmp_path)?;
        let flags =
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: valid directory fd and NUL-terminated name; the mode is the variadic
        // argument open(2) reads with O_CREAT.
        let fd = unsafe {
            libc::openat(
                tmp.as_raw_fd(),
                c.as_ptr(),
                flags,
                FILE_MODE as libc::c_uint,
            )
        };
        if fd >= 0 {
            // SAFETY: `fd` was just returned by openat and is owned by nobody else.
            return Ok((c, File::from(unsafe { OwnedFd::from_raw_fd(fd) })));
        }
        last = io::Error::last_os_error();
        if last.raw_os_error() != Some(libc::EEXIST) {
            break;
        }
    }
    Err(classify(&last, "create", tmp_path))
}

/// `SECONDS.M<micros>P<pid>Q<counter>.<hostname>` (the Maildir spec's modern form); the
/// counter makes names unique within one process and microsecond.
fn unique_name(now_micros: u64) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let q = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{}.M{}P{}Q{}.{}",
        now_micros / 1_000_000,
        now_micros % 1_000_000,
        std::process::id(),
        q,
        hostname()
    )
}

/// The host name for unique names, `/` as `\057` and `:` as `\072` as the Maildir spec
/// says (`:` separates the info part, `/` would be a path).
fn hostname() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        let mut buf = [0u8; 256];
        // SAFETY: the buffer and its length match; gethostname NUL-terminates on success
        // (and we stop at the first NUL or the end either way).
        let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
        let raw = if rc == 0 {
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            String::from_utf8_lossy(&buf[..end]).into_owned()
        } else {
            String::new()
        };
        let name = encode_hostname(&raw);
        if name.is_empty() {
            "localhost".to_string()
        } else {
            name
        }
    })
}

fn encode_hostname(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '/' => out.push_str("\\057"),
            ':' => out.push_str("\\072"),
            // Nothing that could be a path or a control character in a file name.
            c if c.is_ascii_graphic() => out.push(c),
            _ => {}
        }
    }
    out
}

/// Write the headers and the converted message, then fsync. Errors carry what failed.
fn write_message(
    file: File,
    owner: Option<(u32, u32)>,
    message: &mut dyn Read,
    return_path: &str,
    delivered_to: &str,
) -> Result<(), (&'static str, io::Error)> {
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::fchown(&file, Some(uid), Some(gid)).map_err(|e| ("chown", e))?;
    }
    let mut out = BufWriter::with_capacity(COPY_CHUNK, file);
    let head = format!(
        "Return-Path: <{}>\nDelivered-To: {}\n",
        header_safe(return_path),
        header_safe(delivered_to)
    );
    out.write_all(head.as_bytes()).map_err(|e| ("write", e))?;
    copy_crlf_to_lf(message, &mut out)?;
    let file = out.into_inner().map_err(|e| ("write", e.into_error()))?;
    file.sync_all().map_err(|e| ("fsync", e))
}

/// Envelope addresses are already valid paths; this only guarantees that no control
/// character can start a forged header line.
fn header_safe(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Copy `src` to `dst` turning each CRLF into LF; a CR not followed by LF is kept. A CR
/// at the end of one read is held back until the next byte is known.
fn copy_crlf_to_lf(
    src: &mut dyn Read,
    dst: &mut dyn Write,
) -> Result<(), (&'static str, io::Error)> {
    let mut buf = vec![0u8; COPY_CHUNK];
    let mut out = Vec::with_capacity(COPY_CHUNK + 1);
    let mut held_cr = false;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(("read queue file", e)),
        };
        out.clear();
        for &b in &buf[..n] {
            if held_cr {
                held_cr = false;
                if b != b'\n' {
                    out.push(b'\r');
                }
            }
            if b == b'\r' {
                held_cr = true;
            } else {
                out.push(b);
            }
        }
        dst.write_all(&out).map_err(|e| ("write", e))?;
    }
    if held_cr {
        dst.write_all(b"\r").map_err(|e| ("write", e))?;
    }
    Ok(())
}

fn rename_at(from_dir: &File, from: &CString, to_dir: &File, to: &CString) -> io::Result<()> {
    // SAFETY: valid directory fds and NUL-terminated names.
    let rc = unsafe {
        libc::renameat(
            from_dir.as_raw_fd(),
            from.as_ptr(),
            to_dir.as_raw_fd(),
            to.as_ptr(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn unlink_at(dir: &File, name: &CString) -> io::Result<()> {
    // SAFETY: valid directory fd and NUL-terminated name.
    if unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn cstring(bytes: &[u8], path: &Path) -> Result<CString, DeliveryError> {
    CString::new(bytes).map_err(|_| DeliveryError::Permanent {
        status: "5.2.0",
        reason: format!("{}: NUL in path", path.display()),
    })
}

fn is_symlink(path: &Path) -> bool {
    path.symlink_metadata()
        .map(|m| m.file_type().is_symlink())
        .unwrap_or(false)
}

/// Map an I/O error to a transient or permanent delivery error.
fn classify(e: &io::Error, what: &str, path: &Path) -> DeliveryError {
    let p = path.display();
    let reason = crate::time::io_reason(e);
    match e.raw_os_error() {
        // O_NOFOLLOW on a symlink gives ELOOP, or ENOTDIR together with O_DIRECTORY:
        // someone put a link where the mailbox is. (The lstat only words the reason.)
        Some(libc::ELOOP) | Some(libc::ENOTDIR) if is_symlink(path) => DeliveryError::Permanent {
            status: "5.2.0",
            reason: format!("{p}: mailbox is a symbolic link"),
        },
        Some(libc::ELOOP) | Some(libc::ENOTDIR) => DeliveryError::Permanent {
            status: "5.2.0",
            reason: format!("{p}: mailbox is not a directory"),
        },
        // RFC 3463 X.2.2 "mailbox full" (the user's quota), X.3.1 "mail system full".
        Some(libc::EDQUOT) => DeliveryError::Transient {
            status: "4.2.2",
            reason: format!("{what} {p}: mailbox full ({reason})"),
        },
        Some(libc::ENOSPC) => DeliveryError::Transient {
            status: "4.3.1",
            reason: format!("{what} {p}: {reason}"),
        },
        // Permissions are a configuration error an administrator fixes: keep the mail.
        Some(libc::EACCES | libc::EPERM) => DeliveryError::Transient {
            status: "4.2.0",
            reason: format!("{what} {p}: {reason}"),
        },
        _ => DeliveryError::Transient {
            status: "4.3.0",
            reason: format!("{what} {p}: {reason}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    /// A scratch directory removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Scratch {
            static N: AtomicU64 = AtomicU64::new(0);
            let dir = std::env::temp_dir().join(format!(
                "postling-maildir-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).expect("create scratch dir");
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    const NOW: u64 = 1_796_396_783_123_456;

    #[test]
    fn delivers_into_new_with_headers_and_lf() {
        let s = Scratch::new("ok");
        let md = s.0.join("alice");
        let msg = b"Subject: hi\r\n\r\nline one\r\nbare\rCR\r\n.\r\n";
        let path = deliver(&md, &mut &msg[..], "bob@example.org", "alice@mx.test", NOW)
            .expect("delivered");
        assert_eq!(path.parent(), Some(md.join("new").as_path()));
        let name = path.file_name().and_then(|n| n.to_str()).expect("name");
        let prefix = format!("1796396783.M123456P{}Q", std::process::id());
        assert!(name.starts_with(&prefix), "{name}");
        assert!(!name.contains('/') && !name.contains(':'), "{name}");
        let body = fs::read(&path).expect("read delivered");
        assert_eq!(
            body,
            b"Return-Path: <bob@example.org>\nDelivered-To: alice@mx.test\n\
              Subject: hi\n\nline one\nbare\rCR\n.\n"
                .to_vec()
        );
        for sub in ["tmp", "new", "cur"] {
            let m = fs::symlink_metadata(md.join(sub)).expect("subdir");
            assert!(m.is_dir(), "{sub}");
            assert_eq!(m.permissions().mode() & 0o777, 0o700, "{sub}");
        }
        let m = fs::metadata(&path).expect("file");
        assert_eq!(m.permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read_dir(md.join("tmp")).expect("tmp").count(), 0);

        // Null sender, and a second delivery gets a different name.
        let again = deliver(&md, &mut &b"x\r\n"[..], "", "alice@mx.test", NOW).expect("again");
        assert_ne!(again, path);
        let body = fs::read(&again).expect("read");
        assert!(body.starts_with(b"Return-Path: <>\n"));
    }

    #[test]
    fn crlf_conversion_across_reads() {
        /// Hands out one byte per read, so every CR sits at a buffer end.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                match (self.0.split_first(), buf.first_mut()) {
                    (Some((&b, rest)), Some(slot)) => {
                        *slot = b;
                        self.0 = rest;
                        Ok(1)
                    }
                    _ => Ok(0),
                }
            }
        }
        const CASES: &[(&[u8], &[u8])] = &[
            (b"", b""),
            (b"a\r\nb\r\n", b"a\nb\n"),
            (b"a\rb", b"a\rb"),
            (b"\r\r\n", b"\r\n"),
            (b"end\r", b"end\r"),
            (b"\n\r\n\r", b"\n\n\r"),
        ];
        for &(input, want) in CASES {
            let mut out = Vec::new();
            copy_crlf_to_lf(&mut Trickle(input), &mut out).expect("copy");
            assert_eq!(out, want, "{input:?}");
            let mut out = Vec::new();
            copy_crlf_to_lf(&mut &input[..], &mut out).expect("copy");
            assert_eq!(out, want, "{input:?} in one read");
        }
    }

    #[test]
    fn refuses_symlinks_and_files() {
        let s = Scratch::new("links");
        let target = s.0.join("elsewhere");
        fs::create_dir_all(&target).expect("mkdir");

        let linked = s.0.join("linked");
        std::os::unix::fs::symlink(&target, &linked).expect("symlink");

        let sub_linked = s.0.join("sublinked");
        fs::create_dir_all(&sub_linked).expect("mkdir");
        std::os::unix::fs::symlink(&target, sub_linked.join("tmp")).expect("symlink");

        let new_linked = s.0.join("newlinked");
        fs::create_dir_all(new_linked.join("tmp")).expect("mkdir");
        std::os::unix::fs::symlink(&target, new_linked.join("new")).expect("symlink");

        let file = s.0.join("file");
        fs::write(&file, b"not a dir").expect("write");

        let sub_file = s.0.join("subfile");
        fs::create_dir_all(&sub_file).expect("mkdir");
        fs::write(sub_file.join("cur"), b"not a dir").expect("write");

        let cases: &[(&Path, &str)] = &[
            (&linked, "symbolic link"),
            (&sub_linked, "symbolic link"),
            (&new_linked, "symbolic link"),
            (&file, "not a directory"),
            (&sub_file, "not a directory"),
        ];
        for &(md, want) in cases {
            let e = deliver(md, &mut &b"x\r\n"[..], "a@b", "c@d", NOW).expect_err("refused");
            assert!(e.is_permanent(), "{}: {e}", md.display());
            assert_eq!(e.status(), "5.2.0");
            assert!(e.reason().contains(want), "{}: {e}", md.display());
            assert!(e.reply().starts_with("550 5.2.0 "), "{}", e.reply());
        }
        // Nothing landed behind any of the links.
        assert_eq!(fs::read_dir(&target).expect("target").count(), 0);
    }

    #[test]
    fn read_error_is_transient_and_leaves_nothing() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::from_raw_os_error(libc::EIO))
            }
        }
        let s = Scratch::new("eio");
        let md = s.0.join("bob");
        let e = deliver(&md, &mut Broken, "a@b", "bob@mx.test", NOW).expect_err("fails");
        assert!(!e.is_permanent());
        assert_eq!(e.status(), "4.3.0");
        assert!(e.reason().starts_with("read queue file "), "{e}");
        for sub in ["tmp", "new"] {
            assert_eq!(fs::read_dir(md.join(sub)).expect(sub).count(), 0, "{sub}");
        }
    }

    #[test]
    fn missing_parent_is_transient() {
        let s = Scratch::new("noparent");
        let e = deliver(&s.0.join("no/such"), &mut &b""[..], "", "x@y", NOW).expect_err("fails");
        assert!(!e.is_permanent(), "{e}");
    }

    #[test]
    fn classifies_errors() {
        const CASES: &[(i32, bool, &str, &str)] = &[
            (libc::EIO, false, "4.3.0", "451 4.3.0 "),
            (libc::ENOSPC, false, "4.3.1", "452 4.3.1 "),
            (libc::EDQUOT, false, "4.2.2", "452 4.2.2 "),
            (libc::EACCES, false, "4.2.0", "451 4.2.0 "),
            (libc::ENOENT, false, "4.3.0", "451 4.3.0 "),
            (libc::ELOOP, true, "5.2.0", "550 5.2.0 "),
            (libc::ENOTDIR, true, "5.2.0", "550 5.2.0 "),
        ];
        for &(errno, permanent, status, reply) in CASES {
            let e = classify(
                &io::Error::from_raw_os_error(errno),
                "write",
                Path::new("/m"),
            );
            assert_eq!(e.is_permanent(), permanent, "{errno}");
            assert_eq!(e.status(), status, "{errno}");
            assert!(e.reply().starts_with(reply), "{errno}: {}", e.reply());
            assert!(!e.reply().contains("os error"), "{}", e.reply());
        }
    }

    #[test]
    fn mailbox_paths() {
        const CASES: &[(&str, Option<&str>)] = &[
            ("alice", Some("/var/mail/alice")),
            ("a.b-c_d+e", Some("/var/mail/a.b-c_d+e")),
            ("", None),
            (".", None),
            ("..", None),
            (".hidden", None),
            ("../etc", None),
            ("a/b", None),
            ("a\0b", None),
            ("a b", None),
            ("\"q\"", None),
        ];
        for &(user, want) in CASES {
            assert_eq!(
                mailbox_path(Path::new("/var/mail"), user),
                want.map(PathBuf::from),
                "{user:?}"
            );
        }
    }

    #[test]
    fn hostname_encoding() {
        const CASES: &[(&str, &str)] = &[
            ("mx.example.org", "mx.example.org"),
            ("a/b:c", "a\\057b\\072c"),
            ("sp ace\n", "space"),
        ];
        for &(raw, want) in CASES {
            assert_eq!(encode_hostname(raw), want, "{raw:?}");
        }
        assert!(!hostname().is_empty());
    }

    #[test]
    fn root_delivery_gives_the_file_to_the_maildir_owner() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return; // only root can give files away
        }
        let s = Scratch::new("owner");
        let md = s.0.join("carol");
        ensure_maildir(&md, Some((4242, 4343))).expect("maildir");
        let path = deliver(&md, &mut &b"x\r\n"[..], "", "carol@mx.test", NOW).expect("ok");
        for p in [md.join("tmp"), md.join("new"), md.join("cur"), path] {
            let m = fs::metadata(&p).expect("stat");
            assert_eq!((m.uid(), m.gid()), (4242, 4343), "{}", p.display());
        }
    }
}
