//! `sendmail` / `postling send`: mail from local programs and cron.
//!
//! The message goes through the maildrop (`spool::maildrop`), so any user can submit
//! without a setuid helper; `sendmail` exits 0 only once the drop file is fsynced. Then
//! it wakes the daemon through the maildrop FIFO, or, with no daemon running and the
//! spool ours to open (root), starts a delivery pass in the background. A user without
//! a daemon waits for the next `flush` (cron).
//!
//! `-bs` runs the same SMTP [`Session`] as the daemon, on stdin/stdout.

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use crate::config::{self, Config, Role};
use crate::exit;
use crate::local::aliases::Aliases;
use crate::local::directory::{self, Directory};
use crate::sendmail::message::{self, PrepareOptions};
use crate::sendmail::options::{self, Invocation, Mode};
use crate::smtp::session::{Backend, Peer, Session};
use crate::spool::maildrop::{self, Drop};
use crate::spool::{Envelope, QueueId, Spool, SpoolError};

/// `sendmail ARGS` (`postling send [-c FILE] ARGS`).
pub fn main(args: &[String]) -> i32 {
    // `postling send -c FILE …`: postling's own option first; sendmail has no -c.
    let (config_arg, args) = match options::split_postling_config(args) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("sendmail: {e}");
            return exit::USAGE;
        }
    };
    let inv = match options::parse(args) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("sendmail: {e}");
            // A malformed address is bad data (as dma says), not a misused command.
            return if e.0.starts_with("bad recipient") {
                exit::DATAERR
            } else {
                exit::USAGE
            };
        }
    };
    let path = config::config_path(config_arg.as_deref());
    let config = match config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sendmail: {e}");
            return exit::CONFIG;
        }
    };
    let with_config = |rest: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
        v.push("-c".into());
        v.push(path.display().to_string());
        v
    };
    match inv.mode {
        Mode::ListQueue => crate::cli::run(&with_config(&["queue"])),
        Mode::Flush => crate::cli::run(&with_config(&["flush"])),
        Mode::NewAliases => crate::cli::run_newaliases(&with_config(&[])),
        Mode::Smtp => smtp_on_stdio(&config, &path),
        Mode::Deliver => deliver(&config, &path, &inv),
    }
}

/// Who runs us: (user name, full name from GECOS).
fn invoking_user() -> (String, Option<String>) {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    let name = directory::user_name(uid).unwrap_or_else(|| format!("uid{uid}"));
    let gecos = directory::full_name(&name);
    (name, gecos)
}

/// A bare name (`root`, as cron writes) is a user of this host.
fn qualify(address: &str, hostname: &str) -> String {
    if address.contains('@') {
        address.to_string()
    } else {
        format!("{address}@{hostname}")
    }
}

fn deliver(config: &Config, config_path: &Path, inv: &Invocation) -> i32 {
    let (user, gecos) = invoking_user();
    let sender = match inv.sender.as_deref() {
        Some(s) => s.trim_start_matches('<').trim_end_matches('>').to_string(),
        None => format!("{user}@{}", config.hostname),
    };
    let sender = if sender.is_empty() {
        sender
    } else {
        qualify(&sender, &config.hostname)
    };
    // Read at most one byte more than allowed, to tell "too big" from "just fits".
    let mut input = Vec::new();
    let limit = config.max_message_size.saturating_add(1);
    if let Err(e) = io::stdin().lock().take(limit).read_to_end(&mut input) {
        eprintln!("sendmail: reading the message: {e}");
        return exit::IOERR;
    }
    let micros = crate::time::unix_micros();
    let opts = PrepareOptions {
        ignore_dots: inv.ignore_dots,
        read_recipients: inv.read_recipients_from_headers,
        sender: sender.clone(),
        from_header_name: inv.full_name.clone().or(gecos),
        hostname: config.hostname.clone(),
        now: crate::time::unix_now(),
        message_id_local: format!("{micros}.{}", std::process::id()),
        max_size: config.max_message_size,
    };
    let mut prepared = match message::prepare(&input, &opts) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("sendmail: {e}");
            return e.exit_code();
        }
    };
    // RFC 5322 §2.1.1: at most 998 octets per line; the next hop may refuse more.
    prepared.data = wrap_long_lines(&prepared.data);
    let mut recipients: Vec<String> = inv
        .recipients
        .iter()
        .chain(prepared.header_recipients.iter())
        .map(|r| qualify(r, &config.hostname))
        .collect();
    recipients.sort();
    recipients.dedup();
    for r in &recipients {
        if crate::smtp::address::Mailbox::parse(r, true).is_err() {
            eprintln!("sendmail: bad recipient address '{}'", r.escape_debug());
            return exit::DATAERR;
        }
    }
    if recipients.len() > config.max_recipients {
        eprintln!(
            "sendmail: too many recipients ({} > max_recipients {})",
            recipients.len(),
            config.max_recipients
        );
        return exit::USAGE;
    }
    if recipients.is_empty() {
        eprintln!("sendmail: no recipients (give addresses as arguments, or -t)");
        return exit::USAGE;
    }
    let drop = Drop {
        sender: sender.clone(),
        recipients,
        eight_bit: prepared.eight_bit,
    };
    // Root (the spool's owner) creates the spool on first use; for anyone else this
    // fails quietly and the maildrop must already exist.
    let _ = Spool::open(&config.spool);
    if let Err(e) = maildrop::submit(&config.spool, &drop, &prepared.data) {
        eprintln!(
            "sendmail: {}: {}",
            config.spool.join(maildrop::DIR).display(),
            crate::time::io_reason(&e)
        );
        // Disk full, an unwritable or missing spool: the caller should try again later.
        return exit::TEMPFAIL;
    }
    if inv.verbose {
        eprintln!(
            "sendmail: queued from <{sender}> for {} recipient(s)",
            drop.recipients.len()
        );
    }
    start_delivery(config, config_path, inv.verbose);
    exit::OK
}

/// Break lines over 998 octets (RFC 5322 §2.1.1), as dma does on input: a header line
/// is folded (CRLF + space, so it stays one field), a body line is split. Input and
/// output have CRLF line ends.
fn wrap_long_lines(data: &[u8]) -> Vec<u8> {
    const MAX: usize = 998;
    if !data.split(|&b| b == b'\n').any(|l| l.len() > MAX + 1) {
        return data.to_vec();
    }
    let mut out = Vec::with_capacity(data.len() + data.len() / MAX * 3);
    let mut in_headers = true;
    for line in data.split_inclusive(|&b| b == b'\n') {
        let body = line.strip_suffix(b"\r\n").unwrap_or(line);
        if in_headers && body.is_empty() {
            in_headers = false;
        }
        let mut rest = body;
        let mut first = true;
        while rest.len() > MAX {
            let take = if first { MAX } else { MAX - 1 };
            out.extend_from_slice(&rest[..take]);
            out.extend_from_slice(if in_headers { b"\r\n " } else { b"\r\n" });
            rest = &rest[take..];
            first = !in_headers;
        }
        out.extend_from_slice(rest);
        if line.len() != body.len() {
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

/// Wake the daemon, or run a pass in the background when there is none and we may.
fn start_delivery(config: &Config, config_path: &Path, verbose: bool) {
    if maildrop::poke(&config.spool) {
        return;
    }
    // Without a daemon: only someone who can write the queue (its owner, root) can
    // run a pass; everyone else's mail waits in maildrop/ for the next cron `flush`.
    if own_spool(&config.spool).is_none() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    // Cron mails whatever a job prints, so the background pass is silent unless -v.
    let stderr = if verbose {
        Stdio::inherit()
    } else {
        Stdio::null()
    };
    let _ = Command::new(exe)
        .arg("flush")
        .arg("--due")
        .arg("-c")
        .arg(config_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn();
}

/// The queue, when this process may write it (root or the spool's owner). Opening
/// alone is not proof: the spool root is traversable by all, `tmp/` is not writable.
fn own_spool(root: &Path) -> Option<Spool> {
    let spool = Spool::open(root).ok()?;
    let tmp = std::ffi::CString::new(root.join("tmp").as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: a valid NUL-terminated path.
    let writable = unsafe { libc::access(tmp.as_ptr(), libc::W_OK | libc::X_OK) } == 0;
    writable.then_some(spool)
}

/// `-bs`: an SMTP session on stdin/stdout. Root (the spool's owner) queues directly;
/// anyone else through the maildrop.
fn smtp_on_stdio(config: &Config, config_path: &Path) -> i32 {
    let aliases = Aliases::load(&config.aliases).unwrap_or_default();
    let directory = Directory::new(aliases, &config.mail_dir);
    let config = Arc::new(config.clone());
    let peer = Peer {
        ip: None,
        role: Role::Smtp,
        starttls: false,
        implicit_tls: false,
        prior_auth_failures: 0,
    };
    let mut session = Session::new(Arc::clone(&config), peer);
    let new_mail = Cell::new(false);
    let spool = own_spool(&config.spool);
    let mut incoming = None;
    let mut drop_backend = MaildropBackend {
        root: &config.spool,
        directory: &directory,
        data: Vec::new(),
        new_mail: &new_mail,
    };
    let mut spool_backend = spool.as_ref().map(|s| crate::server::SpoolBackend {
        spool: s,
        directory: &directory,
        users: None,
        incoming: &mut incoming,
        group: None,
        new_mail: &new_mail,
    });
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut stdin = io::stdin().lock();
    let mut buf = vec![0u8; 64 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    let mut eof = false;
    loop {
        let reply = session.take_output();
        if !reply.is_empty() && (out.write_all(&reply).is_err() || out.flush().is_err()) {
            break;
        }
        if session.is_closed() {
            break;
        }
        if pending.is_empty() {
            if eof {
                break;
            }
            match stdin.read(&mut buf) {
                Ok(0) => eof = true,
                Ok(n) => pending.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => eof = true,
            }
            continue;
        }
        let now = crate::time::unix_now();
        let n = match spool_backend.as_mut() {
            Some(b) => session.handle_input(&pending, now, b),
            None => session.handle_input(&pending, now, &mut drop_backend),
        };
        pending.drain(..n);
        // A delayed reply (failed AUTH) cannot happen here: no AUTH on -bs.
        let _ = session.take_reply_delay();
    }
    match spool_backend.as_mut() {
        Some(b) => session.handle_disconnect(b),
        None => session.handle_disconnect(&mut drop_backend),
    }
    if new_mail.get() {
        start_delivery(&config, config_path, false);
    }
    exit::OK
}

/// The session's storage for a user who cannot write the queue: the message is kept
/// in memory (bounded by `max_message_size`, which the session enforces) and written to
/// the maildrop on commit. The ID in the `250` reply is a submission ID; the queue ID is
/// given at pickup.
struct MaildropBackend<'a> {
    root: &'a Path,
    directory: &'a Directory,
    data: Vec<u8>,
    new_mail: &'a Cell<bool>,
}

impl Backend for MaildropBackend<'_> {
    fn local_user_exists(&self, local_part: &str) -> bool {
        self.directory.exists(local_part)
    }
    fn authenticate(&mut self, _username: &str, _password: &[u8]) -> bool {
        false
    }
    fn begin_message(&mut self, now: u64) -> Result<QueueId, SpoolError> {
        self.data.clear();
        let micros = now
            .saturating_mul(1_000_000)
            .saturating_add(crate::time::unix_micros() % 1_000_000);
        Ok(QueueId::new(micros, std::process::id() & 0xFFFFF))
    }
    fn write_message(&mut self, bytes: &[u8]) -> Result<(), SpoolError> {
        self.data.extend_from_slice(bytes);
        Ok(())
    }
    fn commit_message(&mut self, envelope: &Envelope) -> Result<(), SpoolError> {
        let drop = Drop {
            sender: envelope.sender.clone(),
            recipients: envelope
                .recipients
                .iter()
                .map(|r| r.address.clone())
                .collect(),
            eight_bit: envelope.eight_bit,
        };
        maildrop::submit(self.root, &drop, &self.data)?;
        self.data.clear();
        self.new_mail.set(true);
        Ok(())
    }
    fn abort_message(&mut self) {
        self.data.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_folded_in_headers_and_split_in_the_body() {
        let long = "x".repeat(2500);
        let msg = format!("Subject: {long}\r\n\r\n{long}\r\nshort\r\n");
        let out = wrap_long_lines(msg.as_bytes());
        let text = String::from_utf8(out).expect("utf8");
        for line in text.split("\r\n") {
            assert!(line.len() <= 998, "{}", line.len());
        }
        // Nothing lost: only line breaks (and a folding space in the header) added.
        assert_eq!(
            text.replace("\r\n ", "").replace("\r\n", ""),
            msg.replace("\r\n", "")
        );
        let (head, body) = text.split_once("\r\n\r\n").expect("blank line");
        assert!(
            head.starts_with("Subject: ") && head.contains("\r\n x"),
            "folded"
        );
        assert!(body.ends_with("\r\nshort\r\n"));
        // Short lines pass through untouched.
        assert_eq!(wrap_long_lines(b"a\r\n\r\nb\r\n"), b"a\r\n\r\nb\r\n");
    }
}
