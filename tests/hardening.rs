//! Hardening (issue 7): what a user checks when things go wrong around the daemon: a
//! full or read-only spool, hostile clients next to an honest one, hostile MX hosts,
//! relay tricks, a damaged spool, symlinks in a Maildir.
//!
//! Everything is loopback. The disk tests mount a tmpfs and so need root; without it
//! they print "skipped: needs root" and pass. The hostile-client test prints a table of
//! the daemon's memory and an honest client's latency under each attack
//! (`cargo test --test hardening -- --nocapture` shows it).

mod common;
mod delivery_support;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::{dir_names, eventually, is_root, vm_rss_kib, Client, Daemon, TempDir, BIN};
use delivery_support::{
    daemon, flush, message, queue, settle, submit, Dns, Json, Sink, ALIASES,
};

/// Makes the SMTP client's 5-minute timeouts 1 s (RFC 5321 §4.5.3.2 values / 300).
const FAST_TIMEOUTS: &[(&str, &str)] = &[("POSTLING_TIMEOUT_DIVISOR", "300")];

// ---------------------------------------------------------------------------------------
// Small helpers

/// A tmpfs of `size` (e.g. `512k`) mounted on a fresh directory; unmounted when dropped.
struct Tmpfs {
    dir: TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = TempDir::new("tmpfs");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0755"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mount tmpfs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn remount(&self, mode: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(self.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "remount {mode}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Bytes free for an unprivileged writer (statvfs f_bavail).
    fn free(&self) -> u64 {
        let c = std::ffi::CString::new(self.path().as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a zeroed statvfs is a valid out-parameter; `c` is NUL-terminated.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
        assert_eq!(rc, 0, "statvfs {}", self.path().display());
        st.f_bavail as u64 * st.f_frsize as u64
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a process that still has a file open there must not make this fail.
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

/// A deterministic xorshift stream.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// A message body of about `size` bytes: 76-character lines.
fn body_of(size: usize, subject: &str) -> String {
    let mut s = format!("Subject: {subject}\r\n\r\n");
    let line = format!("{}\r\n", "0123456789abcdef".repeat(5).split_at(76).0);
    while s.len() < size {
        s.push_str(&line);
    }
    s
}

/// One transaction on a new connection, from `MAIL` to the reply to the end of data (or
/// the first refusal on the way); the session is then asked for a NOOP, whose reply is
/// returned as the second value ("" when the session was closed).
fn transaction(port: u16, rcpt: &str, data: &str) -> (String, String) {
    let mut c = Client::greeted(port);
    assert!(c.cmd("EHLO t.example").starts_with("250"));
    let r = c.cmd("MAIL FROM:<s@example.org>");
    assert!(r.starts_with("250"), "MAIL: {r}");
    let r = c.cmd(&format!("RCPT TO:<{rcpt}>"));
    assert!(r.starts_with("250"), "RCPT: {r}");
    let r = c.cmd("DATA");
    if !r.starts_with("354") {
        let noop = c.cmd("NOOP");
        return (r, noop);
    }
    c.send(data.as_bytes());
    let r = c.cmd(".");
    let noop = c.cmd("NOOP");
    let _ = c.cmd("QUIT");
    (r, noop)
}

/// `sendmail RCPT` through a `sendmail` symlink to the binary (argv[0] picks the mode),
/// with `POSTLING_CONFIG`, the message on stdin.
fn sendmail(d: &Daemon, args: &[&str], stdin: &[u8]) -> Output {
    let link = d.dir.path().join("sendmail");
    if fs::symlink_metadata(&link).is_err() {
        symlink(BIN, &link).expect("sendmail symlink");
    }
    let mut child = Command::new(&link)
        .args(args)
        .env("POSTLING_CONFIG", &d.config)
        .env("RUST_LOG", "info")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sendmail");
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    let writer = thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait sendmail");
    let _ = writer.join();
    out
}

/// Files (not the FIFO) in the spool's maildrop.
fn maildrop_files(spool: &Path) -> Vec<String> {
    dir_names(&spool.join("maildrop"))
        .into_iter()
        .filter(|n| n != ".pickup")
        .collect()
}

// ---------------------------------------------------------------------------------------
// 1. Disk full, read-only spool

#[test]
fn full_spool_gives_452_leaves_nothing_partial_and_recovers() {
    if !is_root() {
        println!("skipped: needs root (mounts a 512k tmpfs for the spool)");
        return;
    }
    let fs_ = Tmpfs::mount("512k");
    let spool = fs_.path().join("spool");
    let d = daemon(
        &format!("spool = {}\n", spool.display()),
        ALIASES,
        &[],
    );
    // Fill the file system to ~48 KiB of free space with a file of our own.
    let filler = fs_.path().join("filler");
    let free = fs_.free();
    fs::write(&filler, vec![b'f'; (free - 48 * 1024) as usize]).expect("filler");
    assert!(fs_.free() < 64 * 1024, "free: {}", fs_.free());

    // A message over twice the free space: 452 4.3.1, and the session goes on. (Small
    // enough that, once the filler is gone, the spool holds it from SMTP plus the
    // sendmail copy twice: in the maildrop and in the queue while it is picked up.)
    let big = body_of(120 * 1024, "too big for the disk");
    let (r, noop) = transaction(d.port, "friend@remote.example", &big);
    assert!(r.starts_with("452 4.3.1"), "end of data on a full disk: {r:?}");
    assert!(noop.starts_with("250"), "NOOP after the 452: {noop:?}");
    assert!(d.log().contains("reject: DATA"), "{}", d.log());

    // Nothing partial anywhere a user or delivery would look.
    assert!(d.queue().is_empty(), "{:?}", d.queue());
    assert_eq!(dir_names(&spool.join("msg")), Vec::<String>::new());
    assert_eq!(dir_names(&spool.join("env")), Vec::<String>::new());
    assert!(
        eventually(Duration::from_secs(5), || dir_names(&spool.join("tmp")).is_empty()),
        "tmp/ keeps {:?}",
        dir_names(&spool.join("tmp"))
    );

    // sendmail with the same message: 75 (EX_TEMPFAIL), nothing left in the maildrop.
    let out = sendmail(&d, &["-i", "friend@remote.example"], big.as_bytes());
    assert_eq!(
        out.status.code(),
        Some(75),
        "sendmail on a full disk: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(maildrop_files(&spool), Vec::<String>::new());
    assert!(d.queue().is_empty(), "{:?}", d.queue());

    // Space freed: the same message is accepted, over SMTP and by sendmail.
    fs::remove_file(&filler).expect("remove filler");
    let (r, noop) = transaction(d.port, "friend@remote.example", &big);
    assert!(r.starts_with("250 2.0.0"), "after freeing space: {r:?}");
    assert!(noop.starts_with("250"));
    let out = sendmail(&d, &["-i", "friend@remote.example"], big.as_bytes());
    assert_eq!(
        out.status.code(),
        Some(0),
        "sendmail after freeing space: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        eventually(Duration::from_secs(10), || d.queue().len() == 2),
        "queue: {:?}\nlog:\n{}",
        d.queue(),
        d.log()
    );
    // The queued copies are whole.
    let msgs: Vec<String> = dir_names(&spool.join("msg"))
        .iter()
        .map(|n| fs::read_to_string(spool.join("msg").join(n)).expect("msg file"))
        .collect();
    assert_eq!(msgs.len(), 2);
    for m in &msgs {
        assert!(m.contains("Subject: too big for the disk"), "{}", &m[..200]);
        assert!(m.len() > big.len(), "cut short: {} < {}", m.len(), big.len());
    }
    let mut d = d;
    assert!(d.is_running(), "log:\n{}", d.log());
}

#[test]
fn read_only_spool_gives_4xx_and_the_session_goes_on() {
    if !is_root() {
        println!("skipped: needs root (mounts a tmpfs for the spool and remounts it read-only)");
        return;
    }
    let fs_ = Tmpfs::mount("4m");
    let spool = fs_.path().join("spool");
    let mut d = daemon(
        &format!("spool = {}\n", spool.display()),
        ALIASES,
        &[],
    );
    // Root ignores a 0500 tmp/, so make the whole file system read-only instead.
    fs_.remount("ro");
    let small = body_of(2000, "read-only spool");
    let mut c = Client::greeted(d.port);
    assert!(c.cmd("EHLO t.example").starts_with("250"));
    for round in 0..2 {
        assert!(c.cmd("MAIL FROM:<s@example.org>").starts_with("250"));
        assert!(c.cmd("RCPT TO:<friend@remote.example>").starts_with("250"));
        let mut r = c.cmd("DATA");
        if r.starts_with("354") {
            c.send(small.as_bytes());
            r = c.cmd(".");
        }
        assert!(
            r.starts_with("451 4.3.") || r.starts_with("452 4.3."),
            "round {round}: DATA on a read-only spool: {r:?}"
        );
        // The session goes on.
        let r = c.cmd("RSET");
        assert!(r.starts_with("250"), "RSET: {r:?}");
    }
    let out = sendmail(&d, &["-i", "friend@remote.example"], small.as_bytes());
    assert_eq!(
        out.status.code(),
        Some(75),
        "sendmail on a read-only spool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(d.queue().is_empty(), "{:?}", d.queue());
    // Writable again: the same session queues the message.
    fs_.remount("rw");
    assert!(c.cmd("MAIL FROM:<s@example.org>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<friend@remote.example>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(small.as_bytes());
    let r = c.cmd(".");
    assert!(r.starts_with("250 2.0.0"), "after remount rw: {r:?}");
    assert_eq!(d.queue().len(), 1);
    assert!(d.is_running(), "log:\n{}", d.log());
}

// ---------------------------------------------------------------------------------------
// 4. Relay vectors from outside relay_from, without AUTH

#[test]
fn relay_tricks_from_a_stranger_are_refused_at_rcpt() {
    // 127.0.0.1 is not in relay_from: the client is a stranger on the smtp listener.
    let d = Daemon::start("relay_from = 10.255.255.1/32\n");
    const VECTORS: &[&str] = &[
        "user%other.example@mx.test",
        "\"user@other.example\"@mx.test",
        "user@other.example@mx.test",
        "@mx.test:user@other.example",
        "user@[127.0.0.1]",
        "user@[IPv6:::1]",
        "USER@OTHER.EXAMPLE",
        "user@other.example.",
        "user@mx.test.other.example",
        "user!other.example@mx.test",
        // The same with a local part that exists here.
        "alice%other.example@mx.test",
        "\"alice@other.example\"@mx.test",
        "alice@other.example@mx.test",
        "@mx.test:alice@other.example",
        "@mx.test,@mx.test:alice@other.example",
        "alice@[127.0.0.1]",
        "alice@[IPv6:::1]",
        "alice@mx.test.",
        "alice@mx.test.other.example",
        "alice!other.example@mx.test",
        "other.example!alice@mx.test",
        "alice%other.example%mx.test@mx.test",
        "\"alice%other.example\"@mx.test",
    ];
    let mut accepted = Vec::new();
    for v in VECTORS {
        // A fresh session each: refusals count towards the error limit.
        let mut c = Client::greeted(d.port);
        assert!(c.cmd("EHLO stranger.example").starts_with("250"));
        assert!(c.cmd("MAIL FROM:<s@example.org>").starts_with("250"));
        let r = c.cmd(&format!("RCPT TO:<{v}>"));
        println!("RCPT TO:<{v}> -> {}", r.trim_end());
        if !r.starts_with('5') {
            accepted.push(format!("<{v}>: {}", r.trim_end()));
        }
        let r = c.cmd("DATA");
        if !r.starts_with('5') {
            accepted.push(format!("<{v}>: DATA got {}", r.trim_end()));
            c.send(b"Subject: relay test\r\n\r\nrelayed?\r\n.\r\n");
            let _ = c.reply();
        }
        let _ = c.cmd("QUIT");
    }
    // The legitimate local address is accepted (domains are case-insensitive).
    let mut c = Client::greeted(d.port);
    assert!(c.cmd("EHLO stranger.example").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<s@example.org>").starts_with("250"));
    let r = c.cmd("RCPT TO:<alice@MX.TEST>");
    assert!(r.starts_with("250"), "alice@MX.TEST: {r:?}");
    assert!(
        accepted.is_empty(),
        "relay vectors not refused at RCPT:\n{}",
        accepted.join("\n")
    );
    assert!(d.queue().is_empty(), "{:?}", d.queue());
}

// ---------------------------------------------------------------------------------------
// 5. A damaged spool

/// Config lines pointing delivery at `dns` and `port`, without TLS.
fn mx_config(dns: &Dns, port: u16) -> String {
    format!("{}smtp_port = {port}\noutbound_tls = none\n", dns.config())
}

/// Plants `env/ID` with `env` (None: no envelope) and `msg/ID` with `msg` (None: none).
fn plant(spool: &Path, id: &str, env: Option<&[u8]>, msg: Option<&[u8]>) {
    if let Some(e) = env {
        fs::write(spool.join("env").join(id), e).expect("plant env");
    }
    if let Some(m) = msg {
        fs::write(spool.join("msg").join(id), m).expect("plant msg");
    }
}

#[test]
fn corrupt_spool_files_go_to_corrupt_and_the_good_message_is_delivered() {
    let port = delivery_support::sink_port();
    let dns = Dns::start(&[
        "--mx-host=remote.test,mx.remote.test,10",
        "--host-record=mx.remote.test,127.0.0.2",
    ]);
    let mut d = daemon(&mx_config(&dns, port), ALIASES, FAST_TIMEOUTS);
    let spool = d.dir.path().join("spool");
    // A good message, deferred (nothing listens on 127.0.0.2 yet).
    let good = submit(&d, "alice@mx.test", &["user@remote.test"], &message("good-one"));
    settle(&d, Duration::from_secs(15), |q| {
        q.len() == 1 && q[0]["recipients"][0]["status"].str() == "deferred"
    });
    d.signal("KILL");
    d.wait_exit(Duration::from_secs(5));
    let env = fs::read_to_string(spool.join("env").join(&good)).expect("good envelope");
    let msg = fs::read(spool.join("msg").join(&good)).expect("good message");
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);

    // Set A: planted, then `queue` lists only the good message.
    let truncated = env.replace(&good, "0000000000000BAD01");
    let truncated = &truncated.as_bytes()[..truncated.len() / 2];
    plant(&spool, "0000000000000BAD01", Some(truncated), Some(&msg));
    plant(&spool, "0000000000000BAD02", Some(&rng.bytes(300)), Some(&msg));
    let out = d.run(&["queue", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert!(listed.contains(&good), "{listed}");
    let out = d.run(&["queue"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains(&good) && !text.contains("BAD0"), "{text}");

    // Set B: planted, then `flush` moves them away, says so, delivers the good one.
    let renamed = env.replace(&good, "0000000000000BAD03");
    plant(&spool, "0000000000000BAD03", Some(b""), Some(&msg)); // empty envelope
    plant(&spool, "0000000000000BAD04", Some(renamed.as_bytes()), None); // no msg/
    // A whole envelope whose id line names another message.
    plant(&spool, "0000000000000BAD05", Some(env.as_bytes()), Some(&msg));
    let mut noise = b"postling-envelope 1\nid 0000000000000BAD06\n".to_vec();
    noise.extend(rng.bytes(2000));
    plant(&spool, "0000000000000BAD06", Some(&noise), Some(&msg));
    // A drop file that is not one.
    fs::write(spool.join("maildrop").join("1796402152025808.1.0"), rng.bytes(500))
        .expect("plant drop");

    let sink = Sink::start("127.0.0.2", port, &[]);
    let out = flush(&d, FAST_TIMEOUTS);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "flush:\n{log}");
    assert!(
        sink.wait_for(1, Duration::from_secs(10)),
        "good message not delivered:\n{log}"
    );
    let got = sink.messages();
    assert_eq!(got.len(), 1, "exactly the good message arrives");
    assert_eq!(got[0].header("Subject").as_deref(), Some("good-one"));
    for n in 1..=6 {
        let id = format!("0000000000000BAD0{n}");
        assert!(
            !spool.join("env").join(&id).exists(),
            "{id} still in env/:\n{log}"
        );
        assert!(
            spool.join("corrupt").join(format!("{id}.env")).exists(),
            "{id} not in corrupt/: {:?}\n{log}",
            dir_names(&spool.join("corrupt"))
        );
        if n != 4 {
            assert!(
                spool.join("corrupt").join(format!("{id}.msg")).exists(),
                "{id}'s message not in corrupt/: {:?}",
                dir_names(&spool.join("corrupt"))
            );
        }
        // Set A may have been moved by `queue` already; set B is flush's to report.
        if n >= 3 {
            assert!(
                log.lines()
                    .any(|l| l.contains(&id) && l.contains("corrupt")),
                "the log does not say {id} went to corrupt/:\n{log}"
            );
        }
    }
    assert!(
        maildrop_files(&spool).is_empty(),
        "garbage drop file left in maildrop/: {:?}\n{log}",
        maildrop_files(&spool)
    );
    assert!(
        dir_names(&spool.join("corrupt"))
            .iter()
            .any(|n| n.contains("1796402152025808")),
        "garbage drop file not in corrupt/: {:?}\n{log}",
        dir_names(&spool.join("corrupt"))
    );
    assert!(d.queue().is_empty(), "{:?}", d.queue());
    // Nothing was bounced: alice (the good message's sender, and the copies') got nothing.
    assert!(d.maildir("alice").is_empty(), "{:?}", d.maildir("alice"));

    // A daemon started over a spool with garbage in it serves, and moves it away too.
    plant(&spool, "0000000000000BAD07", Some(&rng.bytes(100)), Some(&msg));
    d.spawn();
    let mut c = Client::greeted(d.port);
    assert!(c.cmd("EHLO t.example").starts_with("250"));
    assert!(
        eventually(Duration::from_secs(10), || spool
            .join("corrupt/0000000000000BAD07.env")
            .exists()),
        "log:\n{}",
        d.log()
    );
    assert!(d.is_running());
    assert!(d.maildir("alice").is_empty(), "{:?}", d.maildir("alice"));
    assert_eq!(sink.count(), 1);
}

// ---------------------------------------------------------------------------------------
// 6. Symlinks in and around a Maildir

/// Every file (not directory) under `dir`, recursively, without following symlinks.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => out.extend(files_under(&p)),
            Ok(_) => out.push(p),
            Err(_) => {}
        }
    }
    out
}

/// The log line about the delivery to `rcpt` (`to=<rcpt>, … status=…`), once there is one.
fn delivery_line(d: &Daemon, rcpt: &str, within: Duration) -> Option<String> {
    let needle = format!("to=<{rcpt}>");
    let mut found = None;
    eventually(within, || {
        found = d
            .log()
            .lines()
            .find(|l| l.contains(&needle) && l.contains("status="))
            .map(str::to_owned);
        found.is_some()
    });
    found
}

/// Sends bob → alice after `plant` rearranged alice's Maildir (given alice's Maildir and
/// an outside directory); asserts the delivery was refused (deferred or bounced) and that
/// nothing was written outside. Returns the log line.
fn symlink_case(name: &str, plant: impl FnOnce(&Path, &Path)) -> String {
    let d = Daemon::start("");
    let outside = TempDir::new("outside");
    for sub in ["tmp", "new", "cur"] {
        fs::create_dir_all(outside.path().join(sub)).expect("outside maildir");
    }
    let alice = d.dir.path().join("mail/alice");
    plant(&alice, outside.path());
    let mut c = Client::greeted(d.port);
    assert!(c.cmd("EHLO t.example").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<bob@mx.test>").starts_with("250"));
    let r = c.cmd("RCPT TO:<alice@mx.test>");
    let line = if r.starts_with('5') {
        format!("refused at RCPT: {r}")
    } else {
        assert!(r.starts_with("250"), "{name}: RCPT: {r}");
        assert!(c.cmd("DATA").starts_with("354"));
        let r = c.cmd(&format!("Subject: {name}\r\n\r\nwhere does this go?\r\n."));
        assert!(r.starts_with("250"), "{name}: {r}");
        let line = delivery_line(&d, "alice@mx.test", Duration::from_secs(10))
            .unwrap_or_else(|| panic!("{name}: no delivery line; log:\n{}", d.log()));
        assert!(
            line.contains("status=deferred") || line.contains("status=bounced"),
            "{name}: delivered through a symlink: {line}"
        );
        line
    };
    let _ = c.cmd("QUIT");
    // Let any pass finish before looking.
    thread::sleep(Duration::from_millis(300));
    let written = files_under(outside.path());
    assert!(
        written.is_empty(),
        "{name}: written through the symlink: {written:?}\nlog:\n{}",
        d.log()
    );
    assert!(
        !d.log().lines().any(|l| l.contains("to=<alice@mx.test>") && l.contains("status=sent")),
        "{name}: log:\n{}",
        d.log()
    );
    line
}

fn replace_with_symlink(path: &Path, target: &Path) {
    fs::remove_dir_all(path).expect("remove");
    symlink(target, path).expect("symlink");
}

#[test]
fn maildir_symlinks_are_never_written_through() {
    let mut lines = Vec::new();
    lines.push(symlink_case("tmp is a symlink", |alice, outside| {
        replace_with_symlink(&alice.join("tmp"), &outside.join("tmp"))
    }));
    lines.push(symlink_case("new is a symlink", |alice, outside| {
        replace_with_symlink(&alice.join("new"), &outside.join("new"))
    }));
    lines.push(symlink_case("cur is a symlink", |alice, outside| {
        replace_with_symlink(&alice.join("cur"), &outside.join("cur"))
    }));
    lines.push(symlink_case("the Maildir is a symlink", |alice, outside| {
        replace_with_symlink(alice, outside)
    }));
    lines.push(symlink_case("tmp is a dangling symlink", |alice, outside| {
        // Were it followed, a directory (and a file in it) would appear outside.
        replace_with_symlink(&alice.join("tmp"), &outside.join("tmp/made-by-postling"))
    }));
    for l in &lines {
        println!("{l}");
    }
}

#[test]
fn symlinks_planted_inside_tmp_and_new_are_left_alone() {
    let d = Daemon::start("");
    let victim_dir = TempDir::new("victim");
    let victim = victim_dir.path().join("victim");
    fs::write(&victim, "untouched\n").expect("victim");
    let alice = d.dir.path().join("mail/alice");
    for sub in ["tmp", "new", "cur"] {
        for n in 0..50 {
            symlink(&victim, alice.join(sub).join(format!("planted-{n}"))).expect("plant");
        }
    }
    for i in 0..5 {
        submit(&d, "bob@mx.test", &["alice@mx.test"], &message(&format!("planted {i}")));
    }
    let delivered = || {
        dir_names(&alice.join("new"))
            .iter()
            .filter(|n| !n.starts_with("planted-"))
            .count()
    };
    assert!(
        eventually(Duration::from_secs(10), || delivered() == 5),
        "log:\n{}",
        d.log()
    );
    assert_eq!(fs::read_to_string(&victim).unwrap(), "untouched\n");
    for sub in ["tmp", "new", "cur"] {
        for n in 0..50 {
            let p = alice.join(sub).join(format!("planted-{n}"));
            assert!(fs::symlink_metadata(&p).unwrap().file_type().is_symlink());
        }
    }
    // The delivered files are regular files, not links.
    for n in dir_names(&alice.join("new")) {
        if !n.starts_with("planted-") {
            assert!(fs::symlink_metadata(alice.join("new").join(&n)).unwrap().is_file());
        }
    }
}
