//! `postling passwd [NAME]`: read a password and print a `NAME:$6$SALT$HASH` line for
//! the users file.
//!
//! - On a terminal the password is read twice with echo off (termios on stdin); a
//!   signal that ends the program meanwhile restores the echo first.
//! - Otherwise one line is read from stdin (its `\n` or `\r\n` dropped), so scripts and
//!   tests can pipe it: `printf '%s\n' "$pw" | postling passwd alice >> users`.
//! - NAME defaults to `$USER`; with neither, a terminal is asked for it.
//! - The salt is 16 characters from `getrandom(2)`; the scheme is SHA-512-crypt with the
//!   default 5000 rounds, exactly what `openssl passwd -6` writes.
//!
//! Exit codes: 0, 64 (usage, bad NAME), 65 (empty, too long or mismatched password),
//! 70 (no randomness), 74 (stdin unreadable).

use std::io::{self, Read, Write};
use std::os::fd::FromRawFd;
use std::sync::OnceLock;

use getopts::Options;

use super::secret::{wipe, Secret};
use super::sha_crypt::{self, Scheme, MAX_SALT_LEN};
use super::users::{check_name, MAX_NAME_LEN, MAX_PASSWORD_LEN};
use crate::exit;

const USAGE: &str = "postling passwd [NAME]";

/// Entry point from the command line; returns the exit code.
pub fn main(args: &[String]) -> i32 {
    let mut opts = Options::new();
    opts.optflag("h", "help", "print this help");
    let m = match opts.parse(args) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("postling: {e}\nusage: {USAGE}");
            return exit::USAGE;
        }
    };
    if m.opt_present("h") {
        println!("usage: {USAGE}\n\nReads a password (twice on a terminal, else one line from stdin)\nand prints a 'NAME:$6$...' line for the users file.");
        return exit::OK;
    }
    if m.free.len() > 1 {
        eprintln!("postling: passwd takes at most one NAME\nusage: {USAGE}");
        return exit::USAGE;
    }
    match run(m.free.first().cloned()) {
        Ok(line) => {
            println!("{line}");
            exit::OK
        }
        Err((code, message)) => {
            eprintln!("postling: passwd: {message}");
            code
        }
    }
}

type Failure = (i32, String);

fn run(name: Option<String>) -> Result<String, Failure> {
    let tty = is_tty(0);
    let name = match name {
        Some(n) => n,
        None => match std::env::var("USER") {
            Ok(u) if !u.is_empty() => u,
            _ if tty => prompt_name()?,
            _ => {
                return Err((
                    exit::USAGE,
                    "no NAME given and $USER is not set".to_string(),
                ))
            }
        },
    };
    check_name(&name).map_err(|e| (exit::USAGE, e))?;

    let password = if tty {
        let first = read_hidden("Password: ")?;
        let second = read_hidden("Retype password: ")?;
        if first != second {
            return Err((exit::DATAERR, "passwords do not match".into()));
        }
        first
    } else {
        read_password()?
    };
    check_password(password.expose()).map_err(|e| (exit::DATAERR, e))?;

    let salt = random_salt()?;
    let hash = sha_crypt::hash(password.expose(), &salt, Scheme::Sha512, None)
        .map_err(|e| (exit::SOFTWARE, e.to_string()))?;
    Ok(format!("{name}:{}", hash.as_str()))
}

/// What a password must be to be usable over AUTH (see `users.rs` and `sasl.rs`).
fn check_password(pw: &[u8]) -> Result<(), String> {
    if pw.is_empty() {
        return Err("empty password".into());
    }
    if pw.len() > MAX_PASSWORD_LEN {
        return Err(format!("password longer than {MAX_PASSWORD_LEN} bytes"));
    }
    // RFC 4616 §2: PLAIN separates fields with NUL, so a password cannot contain one.
    if pw.contains(&0) {
        return Err("password contains a NUL byte".into());
    }
    Ok(())
}

fn is_tty(fd: libc::c_int) -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(fd) == 1 }
}

fn prompt_name() -> Result<String, Failure> {
    eprint!("Name: ");
    let _ = io::stderr().flush();
    let line = read_line(MAX_NAME_LEN + 2).map_err(|e| {
        (
            exit::IOERR,
            format!("stdin: {}", crate::time::io_reason(&e)),
        )
    })?;
    Ok(String::from_utf8_lossy(&line).trim().to_string())
}

/// Read from fd 0 up to and including a `\n`, at most `limit` bytes, one byte per
/// read(2): std's `Stdin` would keep a copy of the password in its unwiped buffer,
/// and reading no further than the line end leaves the rest of stdin alone. The
/// buffer is sized once so it never reallocates (which would leave a stale copy).
fn read_line(limit: usize) -> io::Result<Vec<u8>> {
    // SAFETY: fd 0 stays open for the whole process; ManuallyDrop keeps the File from
    // closing it.
    let mut stdin = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(0) });
    let mut buf = Vec::with_capacity(limit);
    let mut byte = [0u8; 1];
    while buf.len() < limit {
        match stdin.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => {
                buf.push(byte[0]);
                if byte[0] == b'\n' {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                wipe(&mut buf);
                return Err(e);
            }
        }
    }
    wipe(&mut byte);
    Ok(buf)
}

/// One line from a pipe, a file or the terminal, without its line end.
fn read_password() -> Result<Secret, Failure> {
    let limit = MAX_PASSWORD_LEN + 2; // room for "\r\n"
    let mut buf = read_line(limit + 1).map_err(|e| {
        (
            exit::IOERR,
            format!("stdin: {}", crate::time::io_reason(&e)),
        )
    })?;
    if buf.is_empty() {
        return Err((exit::DATAERR, "no password on standard input".into()));
    }
    let ended = buf.last() == Some(&b'\n');
    if !ended && buf.len() > MAX_PASSWORD_LEN {
        wipe(&mut buf);
        return Err((
            exit::DATAERR,
            format!("password longer than {MAX_PASSWORD_LEN} bytes"),
        ));
    }
    let mut end = buf.len();
    if ended {
        end -= 1;
        if end > 0 && buf[end - 1] == b'\r' {
            end -= 1;
        }
    }
    let secret = Secret::copy_from(&buf[..end]);
    wipe(&mut buf);
    Ok(secret)
}

/// The terminal state before echo was turned off, for the signal handler.
static SAVED_TERMIOS: OnceLock<libc::termios> = OnceLock::new();

/// Restore the terminal, then die of the signal as if we had no handler.
extern "C" fn restore_and_reraise(sig: libc::c_int) {
    if let Some(t) = SAVED_TERMIOS.get() {
        // SAFETY: tcsetattr, signal and raise are async-signal-safe (POSIX.1-2017
        // §2.4.3); `t` points to initialised, never-mutated static memory.
        unsafe {
            libc::tcsetattr(0, libc::TCSANOW, t);
        }
    }
    // SAFETY: as above.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

/// Turns echo off on stdin for its lifetime.
struct EchoOff {
    saved: libc::termios,
}

impl EchoOff {
    fn new() -> io::Result<EchoOff> {
        // SAFETY: termios is plain data; tcgetattr fills it or fails.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        if unsafe { libc::tcgetattr(0, &mut saved) } != 0 {
            return Err(io::Error::last_os_error());
        }
        if SAVED_TERMIOS.set(saved).is_ok() {
            for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
                // SAFETY: installing a handler that only calls async-signal-safe code.
                unsafe {
                    libc::signal(sig, restore_and_reraise as *const () as libc::sighandler_t);
                }
            }
        }
        let mut quiet = saved;
        // ECHONL: still echo the newline, so the next prompt starts on its own line.
        quiet.c_lflag &= !libc::ECHO;
        quiet.c_lflag |= libc::ECHONL;
        // TCSAFLUSH: discard typeahead, which was typed while echo was on.
        if unsafe { libc::tcsetattr(0, libc::TCSAFLUSH, &quiet) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(EchoOff { saved })
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        // SAFETY: restores the state read in `new`.
        unsafe {
            libc::tcsetattr(0, libc::TCSAFLUSH, &self.saved);
        }
    }
}

fn read_hidden(prompt: &str) -> Result<Secret, Failure> {
    eprint!("{prompt}");
    let _ = io::stderr().flush();
    let echo_off = EchoOff::new().map_err(|e| {
        (
            exit::IOERR,
            format!("terminal: {}", crate::time::io_reason(&e)),
        )
    })?;
    let secret = read_password();
    drop(echo_off);
    secret
}

/// 16 salt characters from the kernel's CSPRNG.
fn random_salt() -> Result<String, Failure> {
    let mut bytes = [0u8; MAX_SALT_LEN];
    let mut filled = 0;
    while filled < bytes.len() {
        let rest = &mut bytes[filled..];
        // SAFETY: the pointer and length describe `rest`, which we own.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err((
                exit::SOFTWARE,
                format!("getrandom: {}", crate::time::io_reason(&e)),
            ));
        }
        filled += n as usize;
    }
    Ok(sha_crypt::salt_from_random(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_rules() {
        let long = vec![b'a'; MAX_PASSWORD_LEN + 1];
        let max = vec![b'a'; MAX_PASSWORD_LEN];
        let cases: &[(&[u8], bool)] = &[
            (b"hunter2", true),
            ("pässwörd".as_bytes(), true),
            (b" spaces inside and out ", true),
            (&max, true),
            (b"", false),
            (b"nul\0byte", false),
            (&long, false),
        ];
        for &(pw, ok) in cases {
            assert_eq!(check_password(pw).is_ok(), ok, "{pw:?}");
        }
    }

    #[test]
    fn salts_are_random_and_valid() {
        let a = random_salt().unwrap();
        let b = random_salt().unwrap();
        assert_eq!(a.len(), MAX_SALT_LEN);
        assert_ne!(a, b);
        assert!(sha_crypt::hash(b"x", &a, Scheme::Sha512, None).is_ok());
    }
}
