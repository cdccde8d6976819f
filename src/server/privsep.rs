//! Privilege separation for `serve` started as root with `user = NAME`.
//!
//! After the listeners are bound, the process forks. The child drops to `user` (groups
//! cleared, then gid, then uid; checked) and runs the SMTP loop; it can write new
//! messages into the spool, which is handed to `user`, and nothing else. The parent
//! stays root and does only what needs root: it starts the delivery passes (local
//! delivery writes into each user's Maildir as that user's files) when the child says
//! new mail arrived (one byte on a pipe), when a local `sendmail` pokes the maildrop
//! FIFO, and every `queue_interval`. It forwards SIGTERM/SIGINT/SIGHUP to the child and
//! exits with the child's status. No network input ever reaches the root process.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Instant;

use log::{error, warn};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use super::runner::PassRunner;
use super::signals::SignalPipe;
use crate::config::Config;

const SIGNALS: Token = Token(0);
const NOTIFY: Token = Token(1);
const FIFO: Token = Token(2);

/// uid and gid of `name` from /etc/passwd.
pub fn lookup_user(name: &str) -> Result<(u32, u32), String> {
    crate::local::directory::system_user_ids(Path::new("/etc/passwd"), name)
        .ok_or_else(|| format!("user = {name}: no such user in /etc/passwd"))
}

/// Give the spool's directories to the unprivileged SMTP process (it creates files in
/// `tmp/` and renames them into `msg/` and `env/`). `maildrop/` stays root's (1733).
pub fn hand_over_spool(root: &Path, uid: u32, gid: u32) -> io::Result<()> {
    for dir in ["", "tmp", "msg", "env", "corrupt"] {
        let path = root.join(dir);
        std::os::unix::fs::chown(&path, Some(uid), Some(gid))?;
    }
    // The spool root stays traversable for local users reaching maildrop/.
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o711))?;
    Ok(())
}

/// Drop every privilege for good: supplementary groups, gid, uid, in that order (after
/// setuid we could no longer change groups). Verified: regaining root must fail.
pub fn drop_to(uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: plain syscalls with valid arguments; each result is checked.
    unsafe {
        if libc::setgroups(0, std::ptr::null()) != 0
            || libc::setgid(gid) != 0
            || libc::setuid(uid) != 0
        {
            return Err(io::Error::last_os_error());
        }
        if libc::getuid() != uid || libc::geteuid() != uid || libc::getegid() != gid {
            return Err(io::Error::other("privileges not dropped"));
        }
        if uid != 0 && libc::setuid(0) == 0 {
            return Err(io::Error::other("could regain root after dropping it"));
        }
    }
    Ok(())
}

/// A pipe (read end, write end), both close-on-exec; the write end non-blocking.
pub fn notify_pipe() -> io::Result<(File, File)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds is a valid 2-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds were just created and are owned by nobody else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((File::from(r), File::from(w)))
}

/// The root parent's loop. Returns the exit code.
pub fn supervise(config: &Config, child: libc::pid_t, notify: File) -> i32 {
    match supervise_inner(config, child, notify) {
        Ok(code) => code,
        Err(e) => {
            error!("supervisor: {e}");
            // SAFETY: signalling our own child.
            unsafe { libc::kill(child, libc::SIGTERM) };
            crate::exit::SOFTWARE
        }
    }
}

fn supervise_inner(config: &Config, child: libc::pid_t, mut notify: File) -> io::Result<i32> {
    let signals = SignalPipe::install()?;
    let mut poll = Poll::new()?;
    let sig_fd = signals.fd();
    poll.registry()
        .register(&mut SourceFd(&sig_fd), SIGNALS, Interest::READABLE)?;
    let notify_fd = notify.as_raw_fd();
    poll.registry()
        .register(&mut SourceFd(&notify_fd), NOTIFY, Interest::READABLE)?;
    let fifo = match crate::spool::maildrop::open_fifo(&config.spool) {
        Ok(f) => {
            let fd = f.as_raw_fd();
            poll.registry()
                .register(&mut SourceFd(&fd), FIFO, Interest::READABLE)?;
            Some(f)
        }
        Err(e) => {
            warn!("maildrop FIFO: {}", crate::time::io_reason(&e));
            None
        }
    };
    let mut runner = PassRunner::new(config.path.clone(), config.queue_interval);
    let mut events = Events::with_capacity(16);
    let mut stopping = false;
    let mut buf = [0u8; 256];
    loop {
        let timeout = runner
            .next_deadline()
            .map(|t| t.saturating_duration_since(Instant::now()));
        match poll.poll(
            &mut events,
            if stopping {
                Some(std::time::Duration::from_millis(200))
            } else {
                timeout
            },
        ) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        for event in events.iter() {
            match event.token() {
                SIGNALS => {
                    let got = signals.drain();
                    if got.stop && !stopping {
                        stopping = true;
                        // SAFETY: signalling our own child.
                        unsafe { libc::kill(child, libc::SIGTERM) };
                    }
                    if got.reload {
                        // SAFETY: signalling our own child.
                        unsafe { libc::kill(child, libc::SIGHUP) };
                        if let Ok(c) = crate::config::load(&config.path) {
                            runner.set_interval(c.queue_interval);
                        }
                    }
                }
                NOTIFY => {
                    while matches!(notify.read(&mut buf), Ok(n) if n > 0) {}
                    runner.request();
                }
                FIFO => {
                    if let Some(mut f) = fifo.as_ref() {
                        while matches!(f.read(&mut buf), Ok(n) if n > 0) {}
                    }
                    runner.request();
                }
                _ => {}
            }
        }
        // Has the SMTP process ended?
        let mut status = 0;
        // SAFETY: waiting for our own child, non-blocking.
        let r = unsafe { libc::waitpid(child, &mut status, libc::WNOHANG) };
        if r == child {
            let code = if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                crate::exit::SOFTWARE
            };
            if !stopping {
                error!("the SMTP process ended unexpectedly (status {status})");
            } else {
                log::debug!("supervisor: the SMTP process has stopped");
            }
            return Ok(code);
        }
        if !stopping {
            runner.poll(Instant::now());
        }
    }
}

/// The unprivileged side's way to ask for a pass.
pub fn request_pass(w: &mut File) {
    // A full pipe already holds a request.
    let _ = w.write(b"!");
}
