//! Real third-party SMTP clients against the real daemon: Python's smtplib, swaks
//! (with --pipeline) and curl. Each checks what a user would: the reply, the queue
//! listing and the spool file.

mod common;

use std::process::Command;

use std::time::Duration;

use common::{eventually, run_with_stdin, Daemon};

const MESSAGE: &str = "From: Sender <sender@example.org>\r\n\
                       To: Alice <alice@mx.test>\r\n\
                       Subject: integration test\r\n\
                       \r\n\
                       Hello from the test.\r\n\
                       .leading dot line\r\n";

#[test]
fn python_smtplib_delivers_into_the_queue() {
    let d = Daemon::start("");
    let script = format!(
        r#"
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", {port}, timeout=10)
code, _ = s.ehlo("client.example.org")
assert code == 250, code
assert s.has_extn("pipelining") and s.has_extn("8bitmime") and s.has_extn("enhancedstatuscodes")
assert int(s.esmtp_features["size"]) > 0
refused = s.sendmail("sender@example.org", ["friend@remote.example", "other@remote.example"], sys.stdin.buffer.read())
assert refused == {{}}, refused
print("reply", s.noop()[0])
s.quit()
"#,
        port = d.port
    );
    let out = run_with_stdin(
        Command::new("python3").args(["-c", &script]),
        MESSAGE.as_bytes(),
    );
    assert!(
        out.status.success(),
        "smtplib failed: {}\nlog:\n{}",
        String::from_utf8_lossy(&out.stderr),
        d.log()
    );
    let queue = d.queue();
    assert_eq!(queue.len(), 1, "{queue:?}");
    assert!(
        queue[0].contains(r#""sender": "sender@example.org""#),
        "{}",
        queue[0]
    );
    assert!(
        queue[0].contains(r#""address": "friend@remote.example""#),
        "{}",
        queue[0]
    );
    assert!(
        queue[0].contains(r#""address": "other@remote.example""#),
        "{}",
        queue[0]
    );
    // Not tried yet, or tried and deferred (this test has no DNS).
    assert!(
        queue[0].contains(r#""status": "pending""#) || queue[0].contains(r#""status": "deferred""#),
        "{}",
        queue[0]
    );

    let msgs = d.spooled_messages();
    assert_eq!(msgs.len(), 1);
    let msg = &msgs[0];
    assert!(
        msg.starts_with("Received: from client.example.org ([127.0.0.1])"),
        "{msg}"
    );
    assert!(
        msg.contains("by mx.test (postling) with ESMTP id "),
        "{msg}"
    );
    // Dot-unstuffing: smtplib doubled the leading dot, the spool holds one.
    assert!(msg.contains("\r\n.leading dot line\r\n"), "{msg}");
    assert!(!msg.contains("..leading"), "{msg}");
    assert!(d.log().contains("from=<sender@example.org>"), "{}", d.log());
}

#[test]
fn swaks_pipelined_transaction_is_queued() {
    let d = Daemon::start("");
    let out = Command::new("swaks")
        .args(["--server", &format!("127.0.0.1:{}", d.port)])
        .args([
            "--to",
            "friend@remote.example",
            "--from",
            "sender@example.org",
        ])
        .args([
            "--helo",
            "swaks.example.org",
            "--pipeline",
            "--timeout",
            "10",
        ])
        .output()
        .expect("swaks not found (make test installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "swaks failed:\n{text}\nlog:\n{}",
        d.log()
    );
    assert!(text.contains("250 2.0.0 Ok: queued as "), "{text}");
    let id = text
        .split("queued as ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .expect("queue id in reply");

    let queue = d.queue();
    assert_eq!(queue.len(), 1, "{queue:?}");
    assert!(
        queue[0].contains(&format!(r#""id": "{id}""#)),
        "{}",
        queue[0]
    );

    // The Postfix-style listing (`mailq`) shows it too.
    let listing = d.run(&["queue"]);
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(
        listing.contains(id) && listing.contains("friend@remote.example"),
        "{listing}"
    );

    let msgs = d.spooled_messages();
    assert!(
        msgs[0].starts_with("Received: from swaks.example.org"),
        "{}",
        msgs[0]
    );
    assert!(msgs[0].contains(&format!("id {id}")), "{}", msgs[0]);
}

#[test]
fn swaks_to_an_alias_and_to_postmaster() {
    let d = Daemon::start("");
    for rcpt in ["sales@mx.test", "postmaster@mx.test", "Alice@MX.TEST"] {
        let out = Command::new("swaks")
            .args(["--server", &format!("127.0.0.1:{}", d.port)])
            .args(["--to", rcpt, "--from", "s@example.org", "--timeout", "10"])
            .output()
            .expect("swaks");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{rcpt}: {text}");
    }
    // sales → alice and bob; postmaster → alice; Alice → alice.
    assert!(
        eventually(Duration::from_secs(10), || d.maildir("alice").len() == 3
            && d.maildir("bob").len() == 1),
        "alice {} bob {}\nlog:\n{}",
        d.maildir("alice").len(),
        d.maildir("bob").len(),
        d.log()
    );
    assert!(eventually(Duration::from_secs(5), || d.queue().is_empty()));
}

#[test]
fn curl_smtp_upload_is_queued() {
    let d = Daemon::start("");
    let out = run_with_stdin(
        Command::new("curl").args([
            "--silent",
            "--show-error",
            "--max-time",
            "10",
            &format!("smtp://127.0.0.1:{}/curl.example.org", d.port),
            "--mail-from",
            "sender@example.org",
            "--mail-rcpt",
            "other@remote.example",
            "--upload-file",
            "-",
        ]),
        MESSAGE.as_bytes(),
    );
    assert!(
        out.status.success(),
        "curl failed: {}\nlog:\n{}",
        String::from_utf8_lossy(&out.stderr),
        d.log()
    );
    let queue = d.queue();
    assert_eq!(queue.len(), 1, "{queue:?}");
    assert!(queue[0].contains(r#""address": "other@remote.example""#));
    let msgs = d.spooled_messages();
    assert!(msgs[0].contains("Subject: integration test"), "{}", msgs[0]);
}

#[test]
fn curl_rejected_recipient_fails_and_nothing_is_queued() {
    let d = Daemon::start("");
    let out = run_with_stdin(
        Command::new("curl").args([
            "--silent",
            "--show-error",
            "--max-time",
            "10",
            &format!("smtp://127.0.0.1:{}", d.port),
            "--mail-from",
            "sender@example.org",
            "--mail-rcpt",
            "no.such.user@mx.test",
            "--upload-file",
            "-",
        ]),
        MESSAGE.as_bytes(),
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("550"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(d.queue().is_empty());
}
