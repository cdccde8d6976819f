//! The outbound SMTP client (`delivery::connection` around `smtp::client`) against a real
//! server: Python's aiosmtpd as a recording sink (tests/client_support/sink.py), with
//! STARTTLS, implicit TLS and AUTH, a certificate from a throw-away test CA, and a few
//! scripted raw-socket servers for what aiosmtpd cannot do (hang at the greeting, break
//! the TLS handshake). Everything listens on 127.0.0.1.
//!
//! Needs `python3` with `aiosmtpd` (`pip install aiosmtpd`) and `openssl`.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{free_port, TempDir};
use postling::auth::secret::Secret;
use postling::delivery::connection::{
    client_tls, open, Connection, ConnectionSettings, Timeouts, Verify,
};
use postling::smtp::client::{dsn, Credentials, MessageStart, Outcome, TlsPolicy};

const SINK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/client_support/sink.py");

/// A running aiosmtpd sink, killed when dropped.
struct Sink {
    child: Child,
    port: u16,
    dir: TempDir,
}

impl Sink {
    fn start(args: &[&str]) -> Sink {
        let dir = TempDir::new("sink");
        let port = free_port();
        let mut child = Command::new("python3")
            .arg(SINK)
            .args(["--port", &port.to_string()])
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
            panic!("sink did not start (pip install aiosmtpd; make test does): {err}");
        }
        Sink { child, port, dir }
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Accepted messages in order: (envelope JSON, data).
    fn messages(&self) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        for n in 1.. {
            let json = self.dir.path().join(format!("msg-{n}.json"));
            let Ok(env) = fs::read_to_string(&json) else {
                break;
            };
            let data = fs::read(self.dir.path().join(format!("msg-{n}.eml"))).expect("eml");
            out.push((env, data));
        }
        out
    }

    /// Every MAIL command the sink received, one per line.
    fn mail_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("mail.log")).unwrap_or_default()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test CA, a certificate it signed for `localhost` and 127.0.0.1 (CA:FALSE, as
/// webpki wants of a server certificate), and a second CA that signed nothing.
struct Pki {
    dir: TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = TempDir::new("pki");
        let d = dir.path();
        let ca = |name: &str, cn: &str| {
            openssl(
                d,
                &[
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-nodes",
                    "-days",
                    "2",
                    "-subj",
                    cn,
                    "-keyout",
                    &format!("{name}.key"),
                    "-out",
                    &format!("{name}.pem"),
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                ],
            )
        };
        ca("ca", "/CN=postling test CA");
        ca("other-ca", "/CN=some other CA");
        openssl(
            d,
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-subj",
                "/CN=localhost",
                "-keyout",
                "leaf.key",
                "-out",
                "leaf.csr",
            ],
        );
        fs::write(
            d.join("leaf.ext"),
            "basicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth\n\
             subjectAltName=DNS:localhost,IP:127.0.0.1\n",
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

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Sink arguments for TLS with the leaf certificate.
    fn sink_args(&self) -> Vec<String> {
        vec![
            "--cert".into(),
            self.path("leaf.pem").display().to_string(),
            "--key".into(),
            self.path("leaf.key").display().to_string(),
        ]
    }
}

fn openssl(dir: &Path, args: &[&str]) {
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

fn settings(tls: TlsPolicy, verify: Option<(Verify, Option<&Path>)>) -> ConnectionSettings {
    ConnectionSettings {
        helo_name: "client.test".into(),
        tls,
        implicit_tls: false,
        tls_config: verify.map(|(v, ca)| client_tls(v, ca).expect("tls config")),
        auth: None,
        // The 5-minute timeouts become 5 s: generous for loopback, short if it hangs.
        timeouts: Timeouts::scaled_down(60),
    }
}

fn credentials(user: &str, password: &str) -> Option<Credentials> {
    Some(Credentials {
        username: user.into(),
        password: Secret::copy_from(password.as_bytes()),
    })
}

/// Writes `data` as a spooled message file; returns its envelope and path.
fn message(dir: &Path, name: &str, to: &[&str], data: &[u8]) -> (MessageStart, PathBuf) {
    let path = dir.join(name);
    fs::write(&path, data).expect("message file");
    let msg = MessageStart {
        from: "sender@client.test".into(),
        recipients: to.iter().map(|s| s.to_string()).collect(),
        size: data.len() as u64,
        eight_bit: data.iter().any(|&b| b >= 0x80),
    };
    (msg, path)
}

/// `D250`, `T450`, `P550`.
fn tags(outcomes: &[Outcome]) -> Vec<String> {
    outcomes
        .iter()
        .map(|o| {
            let k = match o {
                Outcome::Delivered(_) => 'D',
                Outcome::Transient(_) => 'T',
                Outcome::Permanent(_) => 'P',
            };
            format!("{k}{}", o.reply().code)
        })
        .collect()
}

/// A small message with 8-bit text and lines that start with dots, including a lone
/// dot line (which must not end the data).
const SMALL: &[u8] = b"From: sender@client.test\r\nTo: x@mx.test\r\nSubject: dots\r\n\r\n\
    .leading dot\r\n..two dots\r\n.\r\ncaf\xc3\xa9 \xff\xfe 8-bit\r\n. \r\nlast line\r\n";

/// Over 64 KiB (several file reads), with dot lines falling across read boundaries.
fn large() -> Vec<u8> {
    let mut v = b"Subject: large\r\n\r\n".to_vec();
    let mut i = 0;
    while v.len() < 300_000 {
        v.extend_from_slice(format!(".line {i} {}\r\n", "x".repeat(i % 97)).as_bytes());
        if i % 7 == 0 {
            v.extend_from_slice(b".\r\n");
        }
        i += 1;
    }
    v
}

fn connect(sink: &Sink, host: &str, s: &ConnectionSettings) -> Connection {
    match open(sink.addr(), host, s) {
        Ok(c) => c,
        Err(o) => panic!("open: {}", o.reply()),
    }
}

#[test]
fn plain_delivery_arrives_intact_with_per_recipient_outcomes() {
    let sink = Sink::start(&[]);
    let tmp = TempDir::new("msg");
    let mut conn = connect(&sink, "localhost", &settings(TlsPolicy::None, None));
    assert!(!conn.capabilities().pipelining);
    let (m1, p1) = message(
        tmp.path(),
        "m1",
        &["x@mx.test", "perm1@mx.test", "temp1@mx.test", "y@mx.test"],
        SMALL,
    );
    let outcomes = conn.deliver(&m1, &p1);
    assert_eq!(tags(&outcomes), ["D250", "P550", "T450", "D250"]);
    assert_eq!(dsn(outcomes[1].reply()), "5.1.1");
    assert_eq!(outcomes[0].reply().text(), "2.0.0 Ok: queued as 1");
    let big = large();
    let (m2, p2) = message(tmp.path(), "m2", &["z@mx.test"], &big);
    assert_eq!(tags(&conn.deliver(&m2, &p2)), ["D250"]);
    assert!(conn.is_usable());
    conn.quit();

    let got = sink.messages();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].1, SMALL, "the data arrives byte for byte");
    assert_eq!(got[1].1, big);
    let (env1, env2) = (&got[0].0, &got[1].0);
    assert!(
        env1.contains(r#""rcpts": ["x@mx.test", "y@mx.test"]"#),
        "{env1}"
    );
    assert!(
        env1.contains(&format!(
            r#""mail_options": ["SIZE={}", "BODY=8BITMIME"]"#,
            SMALL.len()
        )),
        "{env1}"
    );
    assert!(env1.contains(r#""helo": "client.test""#), "{env1}");
    assert!(
        env2.contains(&format!(r#""mail_options": ["SIZE={}"]"#, big.len())),
        "{env2}"
    );
    // One connection carried both.
    let port = |e: &str| e.split("\"peer_port\": ").nth(1).map(|s| s.to_string());
    assert_eq!(port(env1), port(env2));
}

#[test]
fn pipelined_delivery_with_refusals_and_a_message_without_valid_recipients() {
    let sink = Sink::start(&["--pipelining"]);
    let tmp = TempDir::new("msg");
    let mut conn = connect(
        &sink,
        "localhost",
        &settings(TlsPolicy::Opportunistic, None),
    );
    assert!(conn.capabilities().pipelining);
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["a@mx.test", "perm@mx.test", "b@mx.test"],
            &["D250", "P550", "D250"],
        ),
        // Nobody accepted: DATA is refused, RSET comes before the next message.
        (&["perm1@mx.test", "temp1@mx.test"], &["P550", "T450"]),
        (&["datatemp@mx.test", "perm@mx.test"], &["T451", "P550"]),
        (&["dataperm@mx.test"], &["P554"]),
        (&["c@mx.test"], &["D250"]),
    ];
    for (i, &(to, expected)) in cases.iter().enumerate() {
        let (m, p) = message(tmp.path(), &format!("m{i}"), to, SMALL);
        assert_eq!(tags(&conn.deliver(&m, &p)), expected, "{to:?}");
    }
    conn.quit();
    let got = sink.messages();
    assert_eq!(got.len(), 2);
    assert!(
        got[1].0.contains(r#""rcpts": ["c@mx.test"]"#),
        "{}",
        got[1].0
    );
    assert_eq!(got[1].1, SMALL);
}

#[test]
fn required_starttls_to_a_server_without_it_defers_and_sends_no_envelope() {
    let sink = Sink::start(&[]);
    let s = settings(TlsPolicy::Required, Some((Verify::No, None)));
    let Err(Outcome::Transient(r)) = open(sink.addr(), "localhost", &s) else {
        panic!("must defer");
    };
    assert_eq!(dsn(&r), "4.7.4");
    assert!(
        r.text()
            .starts_with("TLS is required, but was not offered by host localhost[127.0.0.1]:"),
        "{r}"
    );
    assert_eq!(sink.mail_log(), "", "no MAIL command in clear text");
}

#[test]
fn starttls_and_auth_plain_with_a_verified_certificate() {
    let pki = Pki::new();
    let mut args = pki.sink_args();
    args.extend(
        [
            "--starttls",
            "--require-starttls",
            "--auth",
            "alice:s3cret pass",
        ]
        .map(String::from),
    );
    let sink = Sink::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let tmp = TempDir::new("msg");
    let ca = pki.path("ca.pem");
    let mut s = settings(TlsPolicy::Required, Some((Verify::Yes, Some(&ca))));
    s.auth = credentials("alice", "s3cret pass");
    let mut conn = connect(&sink, "localhost", &s);
    let tls = conn.tls().expect("encrypted");
    assert!(tls.contains("TLS"), "{tls}");
    let (m, p) = message(tmp.path(), "m", &["x@mx.test"], SMALL);
    assert_eq!(tags(&conn.deliver(&m, &p)), ["D250"]);
    conn.quit();
    let got = sink.messages();
    assert!(got[0].0.contains(r#""tls": true"#), "{}", got[0].0);
    assert!(got[0].0.contains(r#""auth": true"#), "{}", got[0].0);
    assert_eq!(got[0].1, SMALL);
    assert!(
        sink.mail_log().ends_with("tls=True\n"),
        "{}",
        sink.mail_log()
    );
}

#[test]
fn auth_login_when_plain_is_not_offered() {
    let pki = Pki::new();
    let mut args = pki.sink_args();
    args.extend(
        [
            "--starttls",
            "--auth",
            "bob:hunter2",
            "--auth-exclude",
            "PLAIN",
        ]
        .map(String::from),
    );
    let sink = Sink::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let tmp = TempDir::new("msg");
    let ca = pki.path("ca.pem");
    let mut s = settings(TlsPolicy::Required, Some((Verify::Yes, Some(&ca))));
    s.auth = credentials("bob", "hunter2");
    let mut conn = connect(&sink, "127.0.0.1", &s);
    assert!(!conn.capabilities().auth_plain && conn.capabilities().auth_login);
    let (m, p) = message(tmp.path(), "m", &["x@mx.test"], SMALL);
    assert_eq!(tags(&conn.deliver(&m, &p)), ["D250"]);
    conn.quit();
    assert!(sink.messages()[0].0.contains(r#""auth": true"#));
}

#[test]
fn a_wrong_password_defers() {
    let pki = Pki::new();
    let mut args = pki.sink_args();
    args.extend(["--starttls", "--auth", "alice:right"].map(String::from));
    let sink = Sink::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let ca = pki.path("ca.pem");
    let mut s = settings(TlsPolicy::Required, Some((Verify::Yes, Some(&ca))));
    s.auth = credentials("alice", "wrong");
    let Err(Outcome::Transient(r)) = open(sink.addr(), "localhost", &s) else {
        panic!("must defer");
    };
    assert!(
        r.text()
            .starts_with("SASL authentication failed; server localhost[127.0.0.1]:"),
        "{r}"
    );
    assert!(r.text().contains(" said: 535 "), "{r}");
    assert_eq!(sink.mail_log(), "");
}

#[test]
fn certificate_verification_failures_defer() {
    let pki = Pki::new();
    let mut args = pki.sink_args();
    args.push("--starttls".into());
    let sink = Sink::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let other = pki.path("other-ca.pem");
    let ca = pki.path("ca.pem");
    let cases: &[(&Path, &str, &str)] = &[
        (&other, "localhost", "UnknownIssuer"),
        (&ca, "mx.elsewhere.test", "not valid for name"),
    ];
    for &(roots, host, why) in cases {
        let s = settings(TlsPolicy::Required, Some((Verify::Yes, Some(roots))));
        let Err(Outcome::Transient(r)) = open(sink.addr(), host, &s) else {
            panic!("{host}: must defer");
        };
        assert_eq!(dsn(&r), "4.7.5", "{r}");
        assert!(r.text().contains(why), "{r}");
    }
    assert_eq!(sink.mail_log(), "");
}

#[test]
fn opportunistic_tls_accepts_any_certificate() {
    let pki = Pki::new();
    let mut args = pki.sink_args();
    args.push("--starttls".into());
    let sink = Sink::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let tmp = TempDir::new("msg");
    // The name does not match and the CA is unknown: fine for opportunistic MX TLS.
    let s = settings(TlsPolicy::Opportunistic, Some((Verify::No, None)));
    let mut conn = connect(&sink, "mx.elsewhere.test", &s);
    assert!(conn.tls().is_some());
    let (m, p) = message(tmp.path(), "m", &["x@mx.test"], SMALL);
    assert_eq!(tags(&conn.deliver(&m, &p)), ["D250"]);
    conn.quit();
    assert!(sink.messages()[0].0.contains(r#""tls": true"#));
}

#[test]
fn implicit_tls_smarthost() {
    let pki = Pki::new();
    let mut args = pki.sink_args();
    args.extend(["--implicit", "--auth", "alice:pw"].map(String::from));
    let sink = Sink::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let tmp = TempDir::new("msg");
    let ca = pki.path("ca.pem");
    let mut s = settings(TlsPolicy::Required, Some((Verify::Yes, Some(&ca))));
    s.implicit_tls = true;
    s.auth = credentials("alice", "pw");
    let mut conn = connect(&sink, "localhost", &s);
    assert!(conn.tls().is_some());
    let big = large();
    let (m, p) = message(tmp.path(), "m", &["x@mx.test"], &big);
    assert_eq!(tags(&conn.deliver(&m, &p)), ["D250"]);
    conn.quit();
    assert_eq!(sink.messages()[0].1, big);
    // Implicit TLS to a server that speaks plaintext: the handshake fails, transient.
    let plain = Sink::start(&[]);
    let mut s = settings(TlsPolicy::Required, Some((Verify::Yes, Some(&ca))));
    s.implicit_tls = true;
    let Err(Outcome::Transient(r)) = open(plain.addr(), "localhost", &s) else {
        panic!("must defer");
    };
    assert_eq!(dsn(&r), "4.7.5", "{r}");
}

/// A server that accepts connections and never says anything.
fn silent_server() -> (SocketAddr, thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let h = thread::spawn(move || {
        if let Ok((s, _)) = l.accept() {
            thread::sleep(Duration::from_secs(5));
            drop(s);
        }
    });
    (addr, h)
}

#[test]
fn a_silent_server_times_out_at_the_greeting() {
    let (addr, _h) = silent_server();
    let mut s = settings(TlsPolicy::None, None);
    s.timeouts = Timeouts::scaled_down(300);
    let t = Instant::now();
    let Err(Outcome::Transient(r)) = open(addr, "mx.test", &s) else {
        panic!("must defer");
    };
    let took = t.elapsed();
    assert!(
        r.text()
            .ends_with("timed out while receiving the initial server greeting"),
        "{r}"
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "{took:?}"
    );
}

/// (recipients, expected outcomes, phase in the reason, least and most milliseconds)
type HangCase = (
    &'static [&'static str],
    &'static [&'static str],
    &'static str,
    u64,
    u64,
);

#[test]
fn a_hanging_server_times_out_at_rcpt_and_at_end_of_data() {
    let sink = Sink::start(&[]);
    let tmp = TempDir::new("msg");
    let mut s = settings(TlsPolicy::None, None);
    s.timeouts = Timeouts::scaled_down(300); // RCPT 1 s, end of data 2 s
    let cases: &[HangCase] = &[
        (
            &["ok@mx.test", "hang@mx.test"],
            &["T451", "T451"],
            "while sending RCPT TO",
            900,
            4000,
        ),
        (
            &["stall@mx.test"],
            &["T451"],
            "while sending end of data -- message may be sent more than once",
            1900,
            5000,
        ),
    ];
    for &(to, expected, phase, least, most) in cases {
        let mut conn = connect(&sink, "localhost", &s);
        let (m, p) = message(tmp.path(), "m", to, SMALL);
        let t = Instant::now();
        let outcomes = conn.deliver(&m, &p);
        let took = t.elapsed();
        assert_eq!(tags(&outcomes), expected);
        let r = outcomes[0].reply();
        assert_eq!(dsn(r), "4.4.2");
        assert!(r.text().ends_with(phase), "{r}");
        assert!(
            took >= Duration::from_millis(least) && took < Duration::from_millis(most),
            "{took:?}"
        );
        // The connection is done for: further messages get the same outcome at once.
        assert!(!conn.is_usable());
        assert_eq!(conn.deliver(&m, &p)[0], outcomes[0]);
        conn.quit();
    }
    assert!(sink.messages().is_empty());
}

#[test]
fn a_hanging_server_times_out_inside_tls() {
    let pki = Pki::new();
    let mut args = pki.sink_args();
    args.extend(["--starttls", "--pipelining"].map(String::from));
    let sink = Sink::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let tmp = TempDir::new("msg");
    let mut s = settings(TlsPolicy::Opportunistic, Some((Verify::No, None)));
    s.timeouts = Timeouts::scaled_down(300);
    let mut conn = connect(&sink, "localhost", &s);
    assert!(conn.tls().is_some());
    let (m, p) = message(tmp.path(), "m", &["ok@mx.test", "hang@mx.test"], SMALL);
    let t = Instant::now();
    let outcomes = conn.deliver(&m, &p);
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    assert_eq!(tags(&outcomes), ["T451", "T451"]);
    let r = outcomes[1].reply();
    assert!(r.text().ends_with("timed out while sending RCPT TO"), "{r}");
    conn.quit();
}

#[test]
fn an_unreadable_message_file_defers_and_keeps_the_connection() {
    let sink = Sink::start(&[]);
    let tmp = TempDir::new("msg");
    let mut conn = connect(&sink, "localhost", &settings(TlsPolicy::None, None));
    let (m, p) = message(tmp.path(), "m", &["x@mx.test"], SMALL);
    let missing = tmp.path().join("missing");
    let outcomes = conn.deliver(&m, &missing);
    assert_eq!(tags(&outcomes), ["T451"]);
    assert_eq!(dsn(outcomes[0].reply()), "4.3.0");
    assert!(conn.is_usable());
    assert_eq!(tags(&conn.deliver(&m, &p)), ["D250"]);
    conn.quit();
    assert_eq!(sink.mail_log().lines().count(), 1);
}

/// Reads one CRLF line from `r`.
fn line(r: &mut BufReader<TcpStream>) -> String {
    let mut s = String::new();
    r.read_line(&mut s).expect("read line");
    s
}

#[test]
fn opportunistic_starttls_with_a_broken_handshake_is_retried_in_plaintext() {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let server = thread::spawn(move || {
        // First connection: offers STARTTLS, then answers the ClientHello with junk.
        let (s, _) = l.accept().expect("accept");
        let mut r = BufReader::new(s.try_clone().expect("clone"));
        let mut w = s;
        w.write_all(b"220 broken.test ESMTP\r\n").expect("w");
        assert!(line(&mut r).starts_with("EHLO "));
        w.write_all(b"250-broken.test\r\n250 STARTTLS\r\n")
            .expect("w");
        assert_eq!(line(&mut r), "STARTTLS\r\n");
        w.write_all(b"220 go ahead\r\n").expect("w");
        let mut hello = [0u8; 5];
        r.read_exact(&mut hello).expect("client hello");
        assert_eq!(hello[0], 0x16, "a TLS handshake record");
        w.write_all(b"this is not TLS\r\n").expect("w");
        drop((r, w));
        // Second connection: plaintext, no STARTTLS attempted.
        let (s, _) = l.accept().expect("accept");
        let mut r = BufReader::new(s.try_clone().expect("clone"));
        let mut w = s;
        w.write_all(b"220 broken.test ESMTP\r\n").expect("w");
        let mut seen = vec![line(&mut r)];
        w.write_all(b"250-broken.test\r\n250 STARTTLS\r\n")
            .expect("w");
        for reply in ["250 ok\r\n", "250 ok\r\n", "354 go\r\n"] {
            seen.push(line(&mut r));
            w.write_all(reply.as_bytes()).expect("w");
        }
        loop {
            let l = line(&mut r);
            if l == ".\r\n" || l.is_empty() {
                break;
            }
        }
        w.write_all(b"250 2.0.0 queued\r\n").expect("w");
        seen.push(line(&mut r));
        w.write_all(b"221 bye\r\n").expect("w");
        seen
    });
    let tmp = TempDir::new("msg");
    let s = settings(TlsPolicy::Opportunistic, Some((Verify::No, None)));
    let mut conn = open(addr, "broken.test", &s).unwrap_or_else(|o| panic!("{}", o.reply()));
    assert!(conn.tls().is_none());
    let (m, p) = message(tmp.path(), "m", &["x@mx.test"], b"hi\r\n");
    assert_eq!(tags(&conn.deliver(&m, &p)), ["D250"]);
    conn.quit();
    let seen = server.join().expect("server");
    assert_eq!(
        seen,
        [
            "EHLO client.test\r\n",
            "MAIL FROM:<sender@client.test>\r\n",
            "RCPT TO:<x@mx.test>\r\n",
            "DATA\r\n",
            "QUIT\r\n"
        ]
    );
}
