//! Signals as events: the handler writes the signal number into a pipe that the mio
//! loop polls (the self-pipe trick), so no work happens in signal context.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, Ordering};

static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    let fd = PIPE_WRITE.load(Ordering::Relaxed);
    if fd >= 0 {
        let b = sig as u8;
        // Async-signal-safe; a full pipe just drops the byte (a signal is pending anyway).
        unsafe {
            libc::write(fd, (&b as *const u8).cast(), 1);
        }
    }
}

/// What the loop should do about the signals received since the last call.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Received {
    pub stop: bool,
    pub reload: bool,
    /// A child (a delivery pass) exited.
    pub child: bool,
}

pub struct SignalPipe {
    read_fd: RawFd,
}

impl SignalPipe {
    /// Install handlers for SIGTERM, SIGINT, SIGHUP and SIGCHLD.
    pub fn install() -> io::Result<SignalPipe> {
        let mut fds = [0 as libc::c_int; 2];
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        PIPE_WRITE.store(fds[1], Ordering::Relaxed);
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGCHLD] {
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_signal as *const () as usize;
                sa.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut sa.sa_mask);
                if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        Ok(SignalPipe { read_fd: fds[0] })
    }

    pub fn fd(&self) -> RawFd {
        self.read_fd
    }

    /// Drain the pipe.
    pub fn drain(&self) -> Received {
        let mut got = Received::default();
        let mut buf = [0u8; 64];
        loop {
            let n = unsafe { libc::read(self.read_fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
            for &sig in &buf[..n as usize] {
                match i32::from(sig) {
                    libc::SIGTERM | libc::SIGINT => got.stop = true,
                    libc::SIGHUP => got.reload = true,
                    libc::SIGCHLD => got.child = true,
                    _ => {}
                }
            }
        }
        got
    }
}
