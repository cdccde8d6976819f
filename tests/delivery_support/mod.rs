//! Peers and helpers for tests/delivery.rs: aiosmtpd sinks on 127.0.0.2, 127.0.0.3 … (one
//! port number for all of them, as postling uses one `smtp_port`), dnsmasq with the test
//! zone, a throw-away PKI, a daemon started with extra environment, a JSON reader for
//! `queue --json`, and the Python check of a delivery status notification.
//!
//! Copied from tests/dns.rs and tests/client.rs where noted, so those stay untouched.
#![allow(dead_code)] // not every test uses every helper

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{base_config, eventually, free_port, Client, Daemon, TempDir, BIN};
use postling::dns::{HostResult, Hosts, ResolvConf, Resolver};

pub const SINK: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/delivery_support/sink.py"
);
pub const CHECK_DSN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/delivery_support/check_dsn.py"
);

// ---------------------------------------------------------------------------------------
// Ports and sinks

/// A TCP port free right now on 127.0.0.1 through 127.0.0.5 (the sinks' addresses).
pub fn sink_port() -> u16 {
    'next: for _ in 0..100 {
        let first = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
        let port = first.local_addr().expect("addr").port();
        let mut held = vec![first];
        for last in 2..=5 {
            match TcpListener::bind(("127.0.0.".to_string() + &last.to_string(), port)) {
                Ok(l) => held.push(l),
                Err(_) => continue 'next,
            }
        }
        return port;
    }
    panic!("no port free on all of 127.0.0.1-5");
}

/// A running aiosmtpd sink (tests/delivery_support/sink.py), killed when dropped.
pub struct Sink {
    child: Child,
    pub host: String,
    pub port: u16,
    pub dir: TempDir,
}

/// One message the sink accepted.
#[derive(Debug)]
pub struct Received {
    pub env: Json,
    pub data: Vec<u8>,
}

impl Received {
    pub fn rcpts(&self) -> Vec<String> {
        self.env["rcpts"]
            .items()
            .iter()
            .map(|r| r.str().to_string())
            .collect()
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
    /// The value of the first `name:` header (unfolded), if any.
    pub fn header(&self, name: &str) -> Option<String> {
        header(&self.text(), name)
    }
}

/// The first `name:` header of a message (unfolded, trimmed).
pub fn header(text: &str, name: &str) -> Option<String> {
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    let head = head.split("\n\n").next().unwrap_or("");
    let mut lines = head.lines().peekable();
    while let Some(line) = lines.next() {
        let Some((n, v)) = line.split_once(':') else {
            continue;
        };
        if n.eq_ignore_ascii_case(name) {
            let mut value = v.trim().to_string();
            while let Some(next) = lines.peek() {
                if next.starts_with([' ', '\t']) {
                    value.push(' ');
                    value.push_str(next.trim());
                    lines.next();
                } else {
                    break;
                }
            }
            return Some(value);
        }
    }
    None
}

impl Sink {
    /// A sink on `host:port` with sink.py's `args`.
    pub fn start(host: &str, port: u16, args: &[&str]) -> Sink {
        let dir = TempDir::new("sink");
        let mut child = Command::new("python3")
            .arg(SINK)
            .args(["--host", host, "--port", &port.to_string()])
            .arg("--dir")
            .arg(dir.path())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 not found");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        let _ = BufReader::new(stdout).read_line(&mut line);
        if line.trim() != "READY" {
            let _ = child.kill();
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!(
                "sink did not start on {host}:{port} (pip install aiosmtpd; make test does): {err}"
            );
        }
        Sink {
            child,
            host: host.to_string(),
            port,
            dir,
        }
    }

    /// Accepted messages in order.
    pub fn messages(&self) -> Vec<Received> {
        let mut out = Vec::new();
        for n in 1.. {
            let json = self.dir.path().join(format!("msg-{n}.json"));
            let Ok(env) = fs::read_to_string(&json) else {
                break;
            };
            let data = fs::read(self.dir.path().join(format!("msg-{n}.eml"))).expect("eml");
            out.push(Received {
                env: Json::parse(&env).expect("sink json"),
                data,
            });
        }
        out
    }

    pub fn count(&self) -> usize {
        self.messages().len()
    }

    /// Every MAIL command the sink received, one per line.
    pub fn mail_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("mail.log")).unwrap_or_default()
    }

    /// One line (the client's port) per TCP connection the sink accepted.
    pub fn connections(&self) -> Vec<String> {
        fs::read_to_string(self.dir.path().join("connections.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Waits until the sink holds `n` messages (or more).
    pub fn wait_for(&self, n: usize, within: Duration) -> bool {
        eventually(within, || self.count() >= n)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// dnsmasq (after tests/dns.rs)

/// A port free for both UDP and TCP on 127.0.0.1 right now.
fn free_dns_port() -> u16 {
    for _ in 0..50 {
        let Ok(u) = UdpSocket::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(addr) = u.local_addr() else { continue };
        if TcpListener::bind(addr).is_ok() {
            return addr.port();
        }
    }
    panic!("no free port on 127.0.0.1");
}

/// dnsmasq on a free 127.0.0.1 port serving `records` (plus `--local=/test/`, so unknown
/// names under .test are NXDOMAIN), killed on drop.
pub struct Dns {
    child: Child,
    pub addr: SocketAddr,
}

impl Dns {
    pub fn start(records: &[&str]) -> Dns {
        let found = Command::new("dnsmasq")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        assert!(
            found,
            "dnsmasq is not installed (Debian: apt-get install dnsmasq-base; `make test` does this)"
        );
        for _ in 0..5 {
            let port = free_dns_port();
            let mut child = Command::new("dnsmasq")
                .arg("--no-daemon")
                .arg("--conf-file=/dev/null")
                .arg("--no-resolv")
                .arg("--no-hosts")
                .arg(format!("--port={port}"))
                .arg("--listen-address=127.0.0.1")
                .arg("--bind-interfaces")
                .arg("--local=/test/")
                .arg("--host-record=ready.test,127.0.0.9")
                .args(records)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn dnsmasq");
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // port taken meanwhile: try another
                }
                let mut r = Resolver::with_conf(
                    ResolvConf {
                        servers: vec![addr],
                        timeout: Duration::from_millis(200),
                        attempts: 1,
                        rotate: false,
                    },
                    Hosts::default(),
                );
                if matches!(r.host("ready.test"), HostResult::Found(_)) {
                    return Dns { child, addr };
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("dnsmasq did not start answering on 127.0.0.1");
    }

    /// The `dns = …` config line.
    pub fn config(&self) -> String {
        format!("dns = {}\n", self.addr)
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// A test CA and a server certificate (after tests/client.rs)

pub struct Pki {
    pub dir: TempDir,
}

pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl not found (make test installs it)");
    assert!(
        out.status.success(),
        "openssl {}: {}",
        args[0],
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pki {
    /// A CA, and a leaf it signed with `san` (e.g. `IP:127.0.0.2`), CA:FALSE as webpki
    /// wants of a server certificate.
    pub fn new(san: &str) -> Pki {
        let dir = TempDir::new("pki");
        let d = dir.path();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let mut ca = vec!["req", "-x509"];
        ca.extend(ec);
        ca.extend([
            "-days",
            "2",
            "-subj",
            "/CN=postling delivery test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl(d, &ca);
        let mut req = vec!["req", "-new"];
        req.extend(ec);
        req.extend([
            "-subj",
            "/CN=smarthost.test",
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
        ]);
        openssl(d, &req);
        fs::write(
            d.join("leaf.ext"),
            format!(
                "basicConstraints=critical,CA:FALSE\n\
                 keyUsage=critical,digitalSignature\n\
                 extendedKeyUsage=serverAuth\n\
                 subjectAltName={san}\n"
            ),
        )
        .expect("ext");
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "leaf.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                "leaf.pem",
                "-extfile",
                "leaf.ext",
            ],
        );
        Pki { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

// ---------------------------------------------------------------------------------------
// The daemon

/// The real daemon as `common::Daemon::start` makes it (base config, Maildirs `alice` and
/// `bob`), but with `aliases` as the aliases file and `env` set for `serve` and so for the
/// delivery passes it starts (e.g. `POSTLING_TIMEOUT_DIVISOR`).
pub fn daemon(extra: &str, aliases: &str, env: &[(&str, &str)]) -> Daemon {
    daemon_bin(Path::new(BIN), extra, aliases, env)
}

/// `daemon` with another postling binary (e.g. a release build, for measurements).
pub fn daemon_bin(bin: &Path, extra: &str, aliases: &str, env: &[(&str, &str)]) -> Daemon {
    let dir = TempDir::new("dlv");
    let port = free_port();
    // The base config's keys that `extra` sets (dns, smtp_port…) give way to it.
    let key = |l: &str| l.split('=').next().unwrap_or("").trim().to_string();
    let overridden: Vec<String> = extra.lines().map(key).filter(|k| !k.is_empty()).collect();
    let mut text: String = base_config(dir.path(), port)
        .lines()
        .filter(|l| !overridden.contains(&key(l)))
        .map(|l| format!("{l}\n"))
        .collect();
    text.push_str("max_connections_per_ip = 64\n");
    text.push_str(extra);
    let config = dir.path().join("postling.conf");
    fs::write(&config, text).expect("write config");
    for user in ["alice", "bob"] {
        for sub in ["tmp", "new", "cur"] {
            fs::create_dir_all(dir.path().join("mail").join(user).join(sub))
                .expect("create maildir");
        }
    }
    fs::write(dir.path().join("aliases"), aliases).expect("write aliases");
    let mut d = Daemon {
        dir,
        port,
        config,
        child: None,
    };
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(d.log_path())
        .expect("open log");
    let child = Command::new(bin)
        .args(["serve", "-c"])
        .arg(&d.config)
        .env("RUST_LOG", "debug")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn postling serve");
    d.child = Some(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", d.port)) {
            s.set_read_timeout(Some(Duration::from_secs(5))).ok();
            let mut buf = [0u8; 512];
            if let Ok(n) = s.read(&mut buf) {
                if buf[..n].starts_with(b"220 ") {
                    let _ = s.write_all(b"QUIT\r\n");
                    return d;
                }
            }
        }
        assert!(d.is_running(), "postling serve exited; log:\n{}", d.log());
        assert!(
            Instant::now() < deadline,
            "postling serve did not answer; log:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The aliases every `common::Daemon` has.
pub const ALIASES: &str = "# test aliases\nsales: alice, bob\npostmaster: alice\n";

/// Submits one message over SMTP (dot-stuffing `data`); returns the queue ID.
pub fn submit(d: &Daemon, from: &str, rcpts: &[&str], data: &[u8]) -> String {
    let mut c = Client::greeted(d.port);
    let r = c.cmd("EHLO client.test");
    assert!(r.starts_with("250"), "EHLO: {r}");
    let body = if data.iter().any(|&b| b >= 0x80) {
        " BODY=8BITMIME"
    } else {
        ""
    };
    let r = c.cmd(&format!("MAIL FROM:<{from}>{body}"));
    assert!(r.starts_with("250"), "MAIL: {r}");
    for rcpt in rcpts {
        let r = c.cmd(&format!("RCPT TO:<{rcpt}>"));
        assert!(r.starts_with("250"), "RCPT {rcpt}: {r}");
    }
    let r = c.cmd("DATA");
    assert!(r.starts_with("354"), "DATA: {r}");
    let mut stuffed = Vec::new();
    for line in data.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b".") {
            stuffed.push(b'.');
        }
        stuffed.extend_from_slice(line);
    }
    if !stuffed.ends_with(b"\r\n") {
        stuffed.extend_from_slice(b"\r\n");
    }
    stuffed.extend_from_slice(b".\r\n");
    c.send(&stuffed);
    let r = c.reply();
    assert!(r.starts_with("250"), "end of data: {r}");
    let _ = c.cmd("QUIT");
    r.trim_end()
        .rsplit(' ')
        .next()
        .expect("queue id")
        .to_string()
}

/// A small message with a subject.
pub fn message(subject: &str) -> Vec<u8> {
    format!(
        "From: Alice <alice@mx.test>\r\nTo: someone@remote.test\r\nSubject: {subject}\r\n\
         Message-ID: <{subject}@client.test>\r\n\r\nHello, this is {subject}.\r\n"
    )
    .into_bytes()
}

/// `postling flush -c CONFIG` with `env`; the output (stderr has the log).
pub fn flush(d: &Daemon, env: &[(&str, &str)]) -> Output {
    let out = flush_command(d, env).output().expect("run postling flush");
    // Keep the pass's log with the daemon's, for failure messages.
    if let Ok(mut f) = fs::OpenOptions::new().append(true).open(d.log_path()) {
        let _ = f.write_all(b"--- postling flush (run by the test) ---\n");
        let _ = f.write_all(&out.stderr);
    }
    out
}

pub fn flush_command(d: &Daemon, env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(BIN);
    c.args(["flush", "-c"])
        .arg(&d.config)
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    c
}

/// The parsed `queue --json` lines.
pub fn queue(d: &Daemon) -> Vec<Json> {
    d.queue()
        .iter()
        .map(|l| Json::parse(l).unwrap_or_else(|e| panic!("queue --json line {l:?}: {e}")))
        .collect()
}

/// The queue entry of recipient `address` (in any message), if queued.
pub fn queued_rcpt(d: &Daemon, address: &str) -> Option<Json> {
    queue(d).into_iter().find_map(|m| {
        m["recipients"]
            .items()
            .iter()
            .find(|r| r["address"].str() == address)
            .cloned()
    })
}

/// The processes whose parent is `pid` (the delivery passes `serve` started).
pub fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Ok(child) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid …": comm may hold anything, so split after the last ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let ppid = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}

/// Waits until `cond` holds for the queue and no delivery pass of `serve` is running,
/// so that the queue stays as it is until the test acts.
pub fn settle(d: &Daemon, within: Duration, mut cond: impl FnMut(&[Json]) -> bool) {
    let ok = eventually(within, || {
        cond(&queue(d)) && children_of(d.pid()).is_empty() && cond(&queue(d))
    });
    assert!(
        ok,
        "the queue did not settle:\n{}\nlog:\n{}",
        d.queue().join("\n"),
        d.log()
    );
}

/// The files in `user`'s Maildir new/, as bytes, in name order.
pub fn maildir_files(d: &Daemon, user: &str) -> Vec<Vec<u8>> {
    let mut names: Vec<PathBuf> = fs::read_dir(d.dir.path().join("mail").join(user).join("new"))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    names.sort();
    names
        .iter()
        .map(|p| fs::read(p).expect("maildir file"))
        .collect()
}

/// Checks a delivery status notification with Python's `email` package
/// (tests/delivery_support/check_dsn.py) against `want` (JSON; see the script).
pub fn check_dsn(message: &[u8], want: &str) {
    let mut child = Command::new("python3")
        .args([CHECK_DSN, want])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(message)
        .expect("write to python");
    let out = child.wait_with_output().expect("python3 runs");
    assert!(
        out.status.success() && out.stdout == b"ok\n",
        "python: {}{}\nmessage:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(message)
    );
}

/// A JSON string literal.
pub fn js(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

// ---------------------------------------------------------------------------------------
// A small JSON reader (the tests have no serde)

#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(BTreeMap<String, Json>),
}

static NULL: Json = Json::Null;

impl std::ops::Index<&str> for Json {
    type Output = Json;
    fn index(&self, key: &str) -> &Json {
        match self {
            Json::Obj(m) => m.get(key).unwrap_or(&NULL),
            _ => &NULL,
        }
    }
}

impl std::ops::Index<usize> for Json {
    type Output = Json;
    fn index(&self, i: usize) -> &Json {
        match self {
            Json::Arr(v) => v.get(i).unwrap_or(&NULL),
            _ => &NULL,
        }
    }
}

impl Json {
    pub fn str(&self) -> &str {
        match self {
            Json::Str(s) => s,
            _ => "",
        }
    }
    pub fn num(&self) -> Option<f64> {
        match self {
            Json::Num(n) => Some(*n),
            _ => None,
        }
    }
    pub fn u64(&self) -> Option<u64> {
        self.num().map(|n| n as u64)
    }
    pub fn bool(&self) -> Option<bool> {
        match self {
            Json::Bool(b) => Some(*b),
            _ => None,
        }
    }
    pub fn items(&self) -> &[Json] {
        match self {
            Json::Arr(v) => v,
            _ => &[],
        }
    }
    pub fn is_null(&self) -> bool {
        matches!(self, Json::Null)
    }

    pub fn parse(text: &str) -> Result<Json, String> {
        let b = text.as_bytes();
        let mut i = 0;
        let v = value(b, &mut i)?;
        skip_ws(b, &mut i);
        if i != b.len() {
            return Err(format!("trailing data at {i}"));
        }
        Ok(v)
    }
}

fn skip_ws(b: &[u8], i: &mut usize) {
    while *i < b.len() && b[*i].is_ascii_whitespace() {
        *i += 1;
    }
}

fn expect(b: &[u8], i: &mut usize, lit: &str) -> Result<(), String> {
    if b[*i..].starts_with(lit.as_bytes()) {
        *i += lit.len();
        Ok(())
    } else {
        Err(format!("expected {lit} at {i}"))
    }
}

fn value(b: &[u8], i: &mut usize) -> Result<Json, String> {
    skip_ws(b, i);
    match b.get(*i) {
        None => Err("unexpected end".into()),
        Some(b'n') => expect(b, i, "null").map(|_| Json::Null),
        Some(b't') => expect(b, i, "true").map(|_| Json::Bool(true)),
        Some(b'f') => expect(b, i, "false").map(|_| Json::Bool(false)),
        Some(b'"') => string(b, i).map(Json::Str),
        Some(b'[') => {
            *i += 1;
            let mut v = Vec::new();
            skip_ws(b, i);
            if b.get(*i) == Some(&b']') {
                *i += 1;
                return Ok(Json::Arr(v));
            }
            loop {
                v.push(value(b, i)?);
                skip_ws(b, i);
                match b.get(*i) {
                    Some(b',') => *i += 1,
                    Some(b']') => {
                        *i += 1;
                        return Ok(Json::Arr(v));
                    }
                    _ => return Err(format!("expected , or ] at {i}")),
                }
            }
        }
        Some(b'{') => {
            *i += 1;
            let mut m = BTreeMap::new();
            skip_ws(b, i);
            if b.get(*i) == Some(&b'}') {
                *i += 1;
                return Ok(Json::Obj(m));
            }
            loop {
                skip_ws(b, i);
                let k = string(b, i)?;
                skip_ws(b, i);
                expect(b, i, ":")?;
                m.insert(k, value(b, i)?);
                skip_ws(b, i);
                match b.get(*i) {
                    Some(b',') => *i += 1,
                    Some(b'}') => {
                        *i += 1;
                        return Ok(Json::Obj(m));
                    }
                    _ => return Err(format!("expected , or }} at {i}")),
                }
            }
        }
        Some(_) => {
            let start = *i;
            while *i < b.len() && matches!(b[*i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') {
                *i += 1;
            }
            std::str::from_utf8(&b[start..*i])
                .ok()
                .and_then(|s| s.parse().ok())
                .map(Json::Num)
                .ok_or_else(|| format!("bad value at {start}"))
        }
    }
}

fn string(b: &[u8], i: &mut usize) -> Result<String, String> {
    expect(b, i, "\"")?;
    let mut out = Vec::new();
    loop {
        match b.get(*i) {
            None => return Err("unterminated string".into()),
            Some(b'"') => {
                *i += 1;
                return String::from_utf8(out).map_err(|e| e.to_string());
            }
            Some(b'\\') => {
                let c = b.get(*i + 1).ok_or("bad escape")?;
                *i += 2;
                match c {
                    b'"' => out.push(b'"'),
                    b'\\' => out.push(b'\\'),
                    b'/' => out.push(b'/'),
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'b' => out.push(8),
                    b'f' => out.push(12),
                    b'u' => {
                        let hex = std::str::from_utf8(b.get(*i..*i + 4).ok_or("bad \\u")?)
                            .map_err(|e| e.to_string())?;
                        let mut code = u32::from_str_radix(hex, 16).map_err(|e| e.to_string())?;
                        *i += 4;
                        if (0xD800..0xDC00).contains(&code) && b[*i..].starts_with(b"\\u") {
                            let hex2 = std::str::from_utf8(&b[*i + 2..*i + 6])
                                .map_err(|e| e.to_string())?;
                            let low = u32::from_str_radix(hex2, 16).map_err(|e| e.to_string())?;
                            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
                            *i += 6;
                        }
                        let ch = char::from_u32(code).unwrap_or('\u{fffd}');
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                    }
                    _ => return Err(format!("bad escape at {i}")),
                }
            }
            Some(&c) => {
                out.push(c);
                *i += 1;
            }
        }
    }
}
