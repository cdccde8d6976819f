//! TLS against the real daemon with real clients: openssl s_client, swaks --tls,
//! Python smtplib (starttls, SMTP_SSL) and curl --ssl-reqd, with a certificate made by
//! `openssl req -x509` for the test.

mod common;

use std::fs;
use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{free_port, make_cert, run_with_stdin, tls_config, Client, Daemon, TempDir, BIN};

fn python(script: &str) -> (bool, String) {
    let out = Command::new("python3")
        .args(["-c", script])
        .output()
        .expect("python3");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn openssl_s_client_gets_the_certificate_over_starttls() {
    let (_certs, tls) = tls_config();
    let d = Daemon::start(&tls);
    let out = run_with_stdin(
        Command::new("openssl").args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{}", d.port),
            "-starttls",
            "smtp",
            "-servername",
            "mx.test",
            "-ign_eof",
        ]),
        b"EHLO s-client.example\r\nQUIT\r\n",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("CN = mx.test") || text.contains("CN=mx.test"),
        "{text}"
    );
    assert!(text.contains("TLSv1.3"), "{text}");
    // After the handshake, EHLO no longer offers STARTTLS.
    assert!(text.contains("250-mx.test"), "{text}");
    assert!(!text.contains("250-STARTTLS"), "{text}");
}

#[test]
fn tls12_is_accepted_too() {
    let (_certs, tls) = tls_config();
    let d = Daemon::start(&tls);
    let out = run_with_stdin(
        Command::new("openssl").args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{}", d.port),
            "-starttls",
            "smtp",
            "-tls1_2",
        ]),
        b"QUIT\r\n",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Protocol  : TLSv1.2") || text.contains("TLSv1.2"),
        "{text}"
    );
}

#[test]
fn swaks_starttls_message_is_queued_with_esmtps() {
    let (_certs, tls) = tls_config();
    let d = Daemon::start(&tls);
    let out = Command::new("swaks")
        .args(["--server", &format!("127.0.0.1:{}", d.port)])
        .args([
            "--to",
            "friend@remote.example",
            "--from",
            "s@example.org",
            "--tls",
        ])
        .args(["--timeout", "10"])
        .output()
        .expect("swaks");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", d.log());
    assert!(text.contains("220 2.0.0 Ready to start TLS"), "{text}");
    let msgs = d.spooled_messages();
    assert_eq!(msgs.len(), 1);
    assert!(msgs[0].contains("with ESMTPS id"), "{}", msgs[0]);
    assert!(d.log().contains("TLS established"), "{}", d.log());
}

#[test]
fn python_starttls_and_smtp_ssl() {
    let (_certs, tls) = tls_config();
    let submissions = free_port();
    let d = Daemon::start(&format!(
        "{tls}listen = 127.0.0.1:{submissions} submissions\n"
    ));
    let script = format!(
        r#"
import smtplib, ssl
ctx = ssl.create_default_context(cafile={cafile:?})
s = smtplib.SMTP("127.0.0.1", {port}, timeout=10)
s.ehlo("py.example")
assert s.has_extn("starttls")
code, _ = s.starttls(context=ctx)
assert code == 220, code
s.ehlo("py.example")
assert not s.has_extn("starttls")
s.sendmail("s@example.org", ["other@remote.example"], b"Subject: py tls\r\n\r\nhi\r\n")
s.quit()

# Implicit TLS on the submissions port: the greeting arrives inside TLS, and MAIL
# needs AUTH there.
s = smtplib.SMTP_SSL("127.0.0.1", {submissions}, timeout=10, context=ctx)
code, _ = s.ehlo("py.example")
assert code == 250
assert not s.has_extn("starttls")
code, msg = s.mail("s@example.org")
print("MAIL", code, msg)
assert code == 530, (code, msg)
s.quit()
"#,
        cafile = _certs.path().join("cert.pem").display().to_string(),
        port = d.port,
    );
    let (ok, text) = python(&script);
    assert!(ok, "{text}\nlog:\n{}", d.log());
    assert_eq!(d.queue().len(), 1);
}

#[test]
fn curl_ssl_reqd_sends_over_starttls() {
    let (certs, tls) = tls_config();
    let d = Daemon::start(&tls);
    let out = run_with_stdin(
        Command::new("curl")
            .args(["--silent", "--show-error", "--max-time", "10", "--ssl-reqd"])
            .arg("--cacert")
            .arg(certs.path().join("cert.pem"))
            .args([
                &format!("smtp://127.0.0.1:{}/curl.example", d.port),
                "--mail-from",
                "s@example.org",
                "--mail-rcpt",
                "friend@remote.example",
                "--upload-file",
                "-",
            ]),
        b"Subject: curl tls\r\n\r\nhi\r\n",
    );
    assert!(
        out.status.success(),
        "curl: {}\nlog:\n{}",
        String::from_utf8_lossy(&out.stderr),
        d.log()
    );
    assert_eq!(d.queue().len(), 1);
    assert!(d.spooled_messages()[0].contains("with ESMTPS"));
}

#[test]
fn curl_ssl_reqd_fails_without_a_certificate_configured() {
    let d = Daemon::start("");
    let out = run_with_stdin(
        Command::new("curl")
            .args(["--silent", "--max-time", "10", "--ssl-reqd"])
            .args([
                &format!("smtp://127.0.0.1:{}", d.port),
                "--mail-from",
                "s@example.org",
                "--mail-rcpt",
                "friend@remote.example",
                "--upload-file",
                "-",
            ]),
        b"Subject: x\r\n\r\nhi\r\n",
    );
    assert!(!out.status.success());
    assert!(d.queue().is_empty());
}

/// CVE-2011-0411: commands sent in the same packet as STARTTLS must not be executed
/// inside the TLS session.
#[test]
fn plaintext_pipelined_after_starttls_is_not_executed() {
    let (certs, tls) = tls_config();
    let d = Daemon::start(&tls);
    let script = format!(
        r#"
import socket, ssl
s = socket.create_connection(("127.0.0.1", {port}), timeout=10)
f = s.makefile("rb")
assert f.readline().startswith(b"220 ")
s.sendall(b"EHLO inject.example\r\n")
while True:
    line = f.readline()
    if line[3:4] == b" ":
        break
s.sendall(b"STARTTLS\r\nRSET\r\nMAIL FROM:<evil@example.org>\r\n")
line = f.readline()
assert line.startswith(b"220 2.0.0"), line
ctx = ssl.create_default_context(cafile={cafile:?})
t = ctx.wrap_socket(s, server_hostname="mx.test")
t.settimeout(1.5)
try:
    early = t.recv(4096)
except (socket.timeout, TimeoutError):
    early = b""
assert early == b"", "server answered plaintext commands inside TLS: %r" % early
t.settimeout(10)
t.sendall(b"MAIL FROM:<a@example.org>\r\n")
r = t.recv(4096)
assert r.startswith(b"503 5.5.1"), r
t.sendall(b"EHLO inject.example\r\n")
r = b""
while not r.endswith(b"250 HELP\r\n"):
    r += t.recv(4096)
assert r.startswith(b"250-mx.test"), r
print("ok")
"#,
        port = d.port,
        cafile = certs.path().join("cert.pem").display().to_string()
    );
    let (ok, text) = python(&script);
    assert!(ok, "{text}\nlog:\n{}", d.log());
    assert!(d.log().contains("pipelined after STARTTLS"), "{}", d.log());
}

#[test]
fn a_client_stalling_in_the_handshake_is_timed_out_without_stalling_others() {
    let (certs, tls) = tls_config();
    let submissions = free_port();
    let d = Daemon::start(&format!(
        "{tls}listen = 127.0.0.1:{submissions} submissions\nidle_timeout = 2s\n"
    ));
    // Half a TLS record header, then silence.
    let mut stalled = TcpStream::connect(("127.0.0.1", submissions)).expect("connect");
    stalled.write_all(&[0x16, 0x03]).expect("write");
    let started = Instant::now();
    // Meanwhile a full STARTTLS transaction on the other port goes through.
    let out = Command::new("swaks")
        .args(["--server", &format!("127.0.0.1:{}", d.port)])
        .args([
            "--to",
            "friend@remote.example",
            "--from",
            "s@example.org",
            "--tls",
        ])
        .args(["--timeout", "10"])
        .output()
        .expect("swaks");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "served only after the stall"
    );
    // The stalled client is cut off by the idle timeout.
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut rest = Vec::new();
    let r = std::io::Read::read_to_end(&mut stalled, &mut rest);
    assert!(r.is_ok() || rest.is_empty(), "{r:?}");
    assert!(rest.is_empty(), "expected a plain close, got {rest:?}");
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(6), "closed after {waited:?}");
    drop(certs);
}

#[test]
fn bad_certificate_settings_exit_78_naming_the_file() {
    let dir = TempDir::new("badcert");
    let (cert_a, _key_a) = make_cert(&dir.path().join("a").tap_mkdir());
    let (_cert_b, key_b) = make_cert(&dir.path().join("b").tap_mkdir());
    let missing = dir.path().join("missing.pem");
    let cases = [
        (
            format!(
                "tls_cert = {}\ntls_key = {}\n",
                missing.display(),
                key_b.display()
            ),
            "missing.pem",
        ),
        (
            format!(
                "tls_cert = {}\ntls_key = {}\n",
                cert_a.display(),
                key_b.display()
            ),
            "do not match",
        ),
        (
            format!(
                "tls_cert = {}\ntls_key = {}\n",
                cert_a.display(),
                cert_a.display()
            ),
            "a/cert.pem",
        ),
    ];
    for (lines, expect) in cases {
        let conf = dir.path().join("c.conf");
        fs::write(
            &conf,
            format!(
                "hostname = mx.test\nlisten = 127.0.0.1:{} smtp\nspool = {}/spool\naliases = /dev/null\n{lines}",
                free_port(),
                dir.path().display()
            ),
        )
        .expect("write");
        let out = Command::new(BIN)
            .args(["serve", "-c"])
            .arg(&conf)
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{lines}: {err}");
        assert!(err.contains(expect), "{lines}: {err}");
    }
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}
impl TapMkdir for std::path::PathBuf {
    fn tap_mkdir(self) -> Self {
        fs::create_dir_all(&self).expect("mkdir");
        self
    }
}

#[test]
fn starttls_not_offered_without_certificate() {
    let d = Daemon::start("");
    let mut c = Client::greeted(d.port);
    let ehlo = c.cmd("EHLO t.example");
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    assert!(c.cmd("STARTTLS").starts_with("502"));
}
