//! Submission with AUTH against the real daemon: the users file made with
//! `openssl passwd -6`/`-5`, logins from smtplib, swaks and curl over STARTTLS (port
//! 587 role) and implicit TLS (465 role).

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{free_port, run_with_stdin, tls_config, Client, Daemon, TempDir};

struct Submission {
    d: Daemon,
    submission: u16,
    submissions: u16,
    cafile: String,
    _certs: TempDir,
}

/// A daemon with TLS, a `submission` and a `submissions` listener, and users alice
/// (SHA-512-crypt, password "correct horse") and bob (SHA-256-crypt, "battery staple").
fn submission_daemon(extra: &str) -> Submission {
    let (certs, tls) = tls_config();
    let users = certs.path().join("users");
    let hash = |flag: &str, pw: &str| {
        let out = Command::new("openssl")
            .args(["passwd", flag, pw])
            .output()
            .expect("openssl");
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    fs::write(
        &users,
        format!(
            "# made by openssl passwd\nalice:{}\nbob:{}\n",
            hash("-6", "correct horse"),
            hash("-5", "battery staple")
        ),
    )
    .expect("users");
    // Hashes are secrets too: postling refuses a world-readable users file.
    fs::set_permissions(&users, fs::Permissions::from_mode(0o600)).expect("chmod");
    let submission = free_port();
    let submissions = free_port();
    let d = Daemon::start(&format!(
        "{tls}users = {}\nlisten = 127.0.0.1:{submission} submission\n\
         listen = 127.0.0.1:{submissions} submissions\nrelay_from = 10.255.255.1/32\n{extra}",
        users.display()
    ));
    Submission {
        d,
        submission,
        submissions,
        cafile: certs.path().join("cert.pem").display().to_string(),
        _certs: certs,
    }
}

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
fn smtplib_login_over_starttls_and_smtp_ssl_relays_anywhere() {
    let s = submission_daemon("");
    let script = format!(
        r#"
import smtplib, ssl
ctx = ssl.create_default_context(cafile={cafile:?})
msg = b"From: alice@mx.test\r\nTo: friend@elsewhere.example\r\nSubject: submitted\r\n\r\nhi\r\n"

c = smtplib.SMTP("127.0.0.1", {submission}, timeout=10)
c.ehlo("laptop.example")
assert not c.has_extn("auth"), "AUTH offered before TLS"
c.starttls(context=ctx)
c.ehlo("laptop.example")
assert "PLAIN" in c.esmtp_features["auth"] and "LOGIN" in c.esmtp_features["auth"]
code, _ = c.login("alice", "correct horse")
assert code == 235, code
assert c.sendmail("alice@mx.test", ["friend@elsewhere.example"], msg) == {{}}
c.quit()

# Implicit TLS, AUTH LOGIN forced, SHA-256-crypt user.
c = smtplib.SMTP_SSL("127.0.0.1", {submissions}, timeout=10, context=ctx)
c.ehlo("laptop.example")
c.user, c.password = "bob", "battery staple"
code, _ = c.auth("LOGIN", c.auth_login, initial_response_ok=False)
assert code == 235, code
assert c.sendmail("bob@mx.test", ["friend@elsewhere.example"], msg) == {{}}
c.quit()
print("ok")
"#,
        cafile = s.cafile,
        submission = s.submission,
        submissions = s.submissions,
    );
    let (ok, text) = python(&script);
    assert!(ok, "{text}\nlog:\n{}", s.d.log());
    let queue = s.d.queue();
    assert_eq!(queue.len(), 2, "{queue:?}");
    assert!(queue.iter().all(|l| l.contains("friend@elsewhere.example")));
    for msg in s.d.spooled_messages() {
        assert!(msg.contains("with ESMTPSA id"), "{msg}");
        // RFC 6409 §8: the missing Date: and Message-ID: were added.
        assert!(msg.contains("\r\nDate: "), "{msg}");
        assert!(msg.contains("\r\nMessage-ID: <"), "{msg}");
    }
    let log = s.d.log();
    assert!(log.contains("sasl_username=alice"), "{log}");
    assert!(log.contains("sasl_username=bob"), "{log}");
}

#[test]
fn swaks_auth_plain_and_login_over_starttls() {
    let s = submission_daemon("");
    for (mech, user, pass) in [
        ("PLAIN", "alice", "correct horse"),
        ("LOGIN", "bob", "battery staple"),
    ] {
        let out = Command::new("swaks")
            .args(["--server", &format!("127.0.0.1:{}", s.submission)])
            .args([
                "--to",
                "friend@elsewhere.example",
                "--from",
                "alice@mx.test",
            ])
            .args([
                "--tls",
                "--auth",
                mech,
                "--auth-user",
                user,
                "--auth-password",
                pass,
            ])
            .args(["--timeout", "10"])
            .output()
            .expect("swaks");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{mech}: {text}\nlog:\n{}", s.d.log());
        assert!(text.contains("235 2.7.0"), "{text}");
        assert!(text.contains("250 2.0.0 Ok: queued as"), "{text}");
    }
    assert_eq!(s.d.queue().len(), 2);
}

#[test]
fn curl_ssl_reqd_with_user_submits() {
    let s = submission_daemon("");
    let out = run_with_stdin(
        Command::new("curl")
            .args(["--silent", "--show-error", "--max-time", "10", "--ssl-reqd"])
            .args(["--cacert", &s.cafile])
            .args(["--user", "alice:correct horse"])
            .args([
                &format!("smtp://127.0.0.1:{}/laptop.example", s.submission),
                "--mail-from",
                "alice@mx.test",
                "--mail-rcpt",
                "friend@elsewhere.example",
                "--upload-file",
                "-",
            ]),
        b"Subject: curl\r\n\r\nhi\r\n",
    );
    assert!(
        out.status.success(),
        "{}\nlog:\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.d.log()
    );
    assert_eq!(s.d.queue().len(), 1);
}

#[test]
fn wrong_password_gets_535_and_repeated_failures_are_delayed() {
    let s = submission_daemon("");
    let out = Command::new("swaks")
        .args(["--server", &format!("127.0.0.1:{}", s.submission)])
        .args([
            "--to",
            "friend@elsewhere.example",
            "--from",
            "alice@mx.test",
        ])
        .args(["--tls", "--auth", "PLAIN", "--auth-user", "alice"])
        .args(["--auth-password", "wrong", "--timeout", "10"])
        .output()
        .expect("swaks");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(text.contains("535 5.7.8"), "{text}");
    // A second failure from the same address, in a new connection, waits (1 s): the
    // server remembers failures across sessions. An unknown user looks the same.
    let started = Instant::now();
    let out = Command::new("swaks")
        .args(["--server", &format!("127.0.0.1:{}", s.submission)])
        .args([
            "--to",
            "friend@elsewhere.example",
            "--from",
            "mallory@mx.test",
        ])
        .args(["--tls", "--auth", "LOGIN", "--auth-user", "mallory"])
        .args(["--auth-password", "guess", "--timeout", "10"])
        .output()
        .expect("swaks");
    assert!(String::from_utf8_lossy(&out.stdout).contains("535 5.7.8"));
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "no delay before the second 535"
    );
    assert!(s.d.queue().is_empty());
    assert!(s.d.log().contains("authentication failed"), "{}", s.d.log());
}

#[test]
fn auth_over_plaintext_is_refused_and_mail_needs_auth() {
    let s = submission_daemon("");
    let mut c = Client::greeted(s.submission);
    let ehlo = c.cmd("EHLO laptop.example");
    assert!(ehlo.contains("250-STARTTLS"), "{ehlo}");
    assert!(!ehlo.contains("AUTH"), "{ehlo}");
    // "\0alice\0correct horse"
    let r = c.cmd("AUTH PLAIN AGFsaWNlAGNvcnJlY3QgaG9yc2U=");
    assert!(r.starts_with("538 5.7.11"), "{r:?}");
    let r = c.cmd("MAIL FROM:<alice@mx.test>");
    assert!(r.starts_with("530 5.7.0"), "{r:?}");
    // The MX port (smtp role) keeps working without AUTH for local recipients, and a
    // stranger still cannot relay through it.
    let mut mx = Client::greeted(s.d.port);
    assert!(mx.cmd("EHLO other.example").starts_with("250"));
    assert!(mx.cmd("MAIL FROM:<x@example.org>").starts_with("250"));
    assert!(mx.cmd("RCPT TO:<alice@mx.test>").starts_with("250"));
    assert!(mx
        .cmd("RCPT TO:<friend@elsewhere.example>")
        .starts_with("554 5.7.1"));
}

#[test]
fn auth_without_tls_yes_allows_plaintext_login() {
    let s = submission_daemon("auth_without_tls = yes\n");
    let mut c = Client::greeted(s.submission);
    let ehlo = c.cmd("EHLO laptop.example");
    assert!(ehlo.contains("250-AUTH PLAIN LOGIN"), "{ehlo}");
    let r = c.cmd("AUTH PLAIN AGFsaWNlAGNvcnJlY3QgaG9yc2U=");
    assert!(r.starts_with("235 2.7.0"), "{r:?}");
    assert!(c.cmd("MAIL FROM:<alice@mx.test>").starts_with("250"));
}

#[test]
fn bad_users_file_exits_78_with_file_and_line() {
    let (certs, tls) = tls_config();
    let users = certs.path().join("users");
    fs::write(&users, "alice:$6$salt$hash\nbob:plaintext\n").expect("users");
    fs::set_permissions(&users, fs::Permissions::from_mode(0o600)).expect("chmod");
    let dir = TempDir::new("badusers");
    let conf = dir.path().join("c.conf");
    fs::write(
        &conf,
        format!(
            "hostname = mx.test\nlisten = 127.0.0.1:{} submission\nspool = {}/spool\n\
             aliases = /dev/null\nusers = {}\n{tls}",
            free_port(),
            dir.path().display(),
            users.display()
        ),
    )
    .expect("conf");
    for cmd in ["serve", "check"] {
        let out = Command::new(common::BIN)
            .args([cmd, "-c"])
            .arg(&conf)
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{cmd}: {err}");
        assert!(
            err.contains(&format!("{}:", users.display())),
            "{cmd}: {err}"
        );
    }
}

#[test]
fn a_world_readable_users_file_is_refused() {
    let s = TempDir::new("wr-users");
    let users = s.path().join("users");
    fs::write(
        &users,
        "alice:$5$saltsalt$6E0Q0Vb0yVWw8y5Bf2c9K0jjg3Z7Z4M0vJq7u7C0Xb4\n",
    )
    .expect("users");
    fs::set_permissions(&users, fs::Permissions::from_mode(0o644)).expect("chmod");
    let conf = s.path().join("c.conf");
    fs::write(
        &conf,
        format!(
            "hostname = mx.test\nspool = {}/spool\naliases = /dev/null\nusers = {}\n",
            s.path().display(),
            users.display()
        ),
    )
    .expect("conf");
    let out = Command::new(common::BIN)
        .args(["check", "-c"])
        .arg(&conf)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains("world-readable"), "{err}");
}
