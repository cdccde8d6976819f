//! Shared harness for the integration tests: a temporary directory with a config,
//! spool and Maildirs, the real `postling` binary started on a free loopback port, and
//! small raw-socket SMTP helpers.
//!
//! Nothing here talks to anything but 127.0.0.1: every config sets `dns` to a closed
//! loopback port.
#![allow(dead_code)] // each test file uses a different part of the harness

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_postling");

/// The binary under test: `$POSTLING_BIN` when set (`make test-static` points it at
/// the static musl build), else the one cargo built for this test run. Prefer this
/// to [`BIN`], which is always cargo's.
pub fn bin() -> String {
    std::env::var("POSTLING_BIN").unwrap_or_else(|_| BIN.to_string())
}

/// A scratch directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "postling-test-{}-{}-{}",
            tag,
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    l.local_addr().expect("local addr").port()
}

/// The base configuration every test starts from; `extra` lines are appended (a key
/// given twice is an error, so tests only add keys not set here).
pub fn base_config(dir: &Path, port: u16) -> String {
    format!(
        "hostname = mx.test\n\
         listen = 127.0.0.1:{port} smtp\n\
         local_domains = mx.test\n\
         spool = {dir}/spool\n\
         mail_dir = {dir}/mail\n\
         aliases = {dir}/aliases\n\
         dns = 127.0.0.1:1\n\
         smtp_port = 1\n",
        dir = dir.display()
    )
}

/// The real daemon, killed when dropped.
pub struct Daemon {
    pub dir: TempDir,
    pub port: u16,
    pub config: PathBuf,
    pub child: Option<Child>,
}

impl Daemon {
    /// A daemon with the base config plus `extra` (whole `key = value` lines).
    pub fn start(extra: &str) -> Daemon {
        let dir = TempDir::new("d");
        let port = free_port();
        let mut text = base_config(dir.path(), port);
        let has = |key: &str| extra.lines().any(|l| l.trim_start().starts_with(key));
        // Generous limits unless the test sets its own: tests open many connections.
        if !has("max_connections_per_ip") {
            text.push_str("max_connections_per_ip = 64\n");
        }
        text.push_str(extra);
        let config = dir.path().join("postling.conf");
        fs::write(&config, text).expect("write config");
        for user in ["alice", "bob"] {
            for sub in ["tmp", "new", "cur"] {
                fs::create_dir_all(dir.path().join("mail").join(user).join(sub))
                    .expect("create maildir");
            }
        }
        fs::write(
            dir.path().join("aliases"),
            "# test aliases\nsales: alice, bob\npostmaster: alice\n",
        )
        .expect("write aliases");
        let mut d = Daemon {
            dir,
            port,
            config,
            child: None,
        };
        d.spawn();
        d
    }

    /// Starts (or restarts) the binary on the same directory and waits for its banner.
    pub fn spawn(&mut self) {
        self.spawn_env(&[]);
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("postling.log")
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon running").id()
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args(["-s", sig, &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {sig} failed");
    }

    /// Waits for the daemon to exit and returns its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return status.code();
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// `postling ARGS -c CONFIG`, e.g. `queue --json`.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .arg("-c")
            .arg(&self.config)
            .output()
            .expect("run postling")
    }

    /// The `queue --json` lines.
    pub fn queue(&self) -> Vec<String> {
        let out = self.run(&["queue", "--json"]);
        assert!(
            out.status.success(),
            "queue --json failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The message files in the spool (msg/).
    pub fn spooled_messages(&self) -> Vec<String> {
        let mut v = Vec::new();
        if let Ok(rd) = fs::read_dir(self.dir.path().join("spool").join("msg")) {
            for e in rd.flatten() {
                v.push(fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
        v
    }

    /// The messages delivered to `user`'s Maildir (new/), as text.
    pub fn maildir(&self, user: &str) -> Vec<String> {
        let mut v = Vec::new();
        if let Ok(rd) = fs::read_dir(self.dir.path().join("mail").join(user).join("new")) {
            for e in rd.flatten() {
                v.push(fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
        v
    }

    pub fn connect(&self) -> Client {
        Client::connect(self.port)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A raw SMTP client: bytes out exactly as given, replies read line by line.
pub struct Client {
    pub reader: BufReader<TcpStream>,
}

impl Client {
    pub fn connect(port: u16) -> Client {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
        Client {
            reader: BufReader::new(s),
        }
    }

    /// Connects and reads the greeting.
    pub fn greeted(port: u16) -> Client {
        let mut c = Client::connect(port);
        let banner = c.reply();
        assert!(banner.starts_with("220 "), "banner: {banner:?}");
        c
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.reader.get_mut().write_all(bytes).expect("write");
    }

    /// One whole reply (all lines of a multiline reply), "" on EOF.
    pub fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) | Err(_) => return all,
                Ok(_) => {}
            }
            all.push_str(&line);
            // "250-" continues, "250 " ends.
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return all;
            }
        }
    }

    /// Sends one command line and returns the reply.
    pub fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// True when the server has closed the connection (EOF or reset).
    pub fn closed(&mut self) -> bool {
        let mut buf = [0u8; 256];
        loop {
            match self.reader.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) => {
                    return !matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    )
                }
            }
        }
    }

    pub fn shutdown(&mut self) {
        let _ = self.reader.get_mut().shutdown(Shutdown::Both);
    }
}

/// Runs a command with `stdin` fed to it, returning its output.
pub fn run_with_stdin(cmd: &mut Command, stdin: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e} (make test installs the test tools)"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

/// Waits until `cond` holds, up to `within`.
pub fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A self-signed certificate for `mx.test` and 127.0.0.1, made by `openssl req -x509`
/// in `dir`. Returns (certificate, key) paths.
pub fn make_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=mx.test"])
        .args(["-addext", "subjectAltName=DNS:mx.test,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl not found (make test installs it)");
    assert!(
        out.status.success(),
        "openssl req: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// Config lines for a daemon with TLS, its certificate made in a fresh directory that
/// lives as long as the returned guard.
pub fn tls_config() -> (TempDir, String) {
    let dir = TempDir::new("cert");
    let (cert, key) = make_cert(dir.path());
    let lines = format!(
        "tls_cert = {}\ntls_key = {}\n",
        cert.display(),
        key.display()
    );
    (dir, lines)
}

// ---------------------------------------------------------------------------------------
// Added for tests/hardening.rs and tests/soak.rs

impl Daemon {
    /// `spawn` with `env` set for `serve` (and so for the delivery passes it starts,
    /// e.g. `POSTLING_TIMEOUT_DIVISOR`): restarts on the same directory after a kill.
    pub fn spawn_env(&mut self, env: &[(&str, &str)]) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open log");
        let child = Command::new(BIN)
            .args(["serve", "-c"])
            .arg(&self.config)
            .env("RUST_LOG", "debug")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn postling serve");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                s.set_read_timeout(Some(Duration::from_secs(5))).ok();
                let mut buf = [0u8; 512];
                if let Ok(n) = s.read(&mut buf) {
                    if buf[..n].starts_with(b"220 ") {
                        let _ = s.write_all(b"QUIT\r\n");
                        return;
                    }
                }
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "postling serve exited early ({status}); log:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "postling serve did not answer; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// True when the tests run as root (mounts, chattr, ownership).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The resident set size of process `pid` in KiB (`VmRSS` in /proc/PID/status).
pub fn vm_rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The names of the entries in `dir` (empty when it cannot be read), sorted.
pub fn dir_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}
