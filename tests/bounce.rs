//! Bounce messages as a real MIME parser sees them: each report built by
//! `postling::bounce::build` is parsed by Python's `email` package
//! (`policy=email.policy.default`), which must find a defect-free
//! `multipart/report; report-type=delivery-status` with the three RFC 3464 parts and the
//! fields we wrote. Nothing here touches the network.

use std::io::Write;
use std::process::{Command, Stdio};

use postling::bounce::{build, header_section, BounceKind, BounceParams, FailedRecipient};

/// Parses the message on stdin and checks it against the JSON expectations in argv[1];
/// prints "ok" or raises.
const CHECK: &str = r#"
import email, email.policy, json, sys
want = json.loads(sys.argv[1])
msg = email.message_from_bytes(sys.stdin.buffer.read(), policy=email.policy.default)

def no_defects(m, where):
    assert not m.defects, (where, m.defects)

no_defects(msg, "top")
assert msg.get_content_type() == "multipart/report", msg.get_content_type()
assert msg.get_param("report-type") == "delivery-status", msg.get_param("report-type")
assert msg["Subject"] == want["subject"], msg["Subject"]
assert msg["Auto-Submitted"] == "auto-replied"
assert msg["From"].addresses[0].addr_spec == "MAILER-DAEMON@mx.test", msg["From"]
def utf8(s):
    # The parser keeps raw 8-bit header bytes as surrogate escapes (RFC 6532 headers).
    return str(s).encode("utf-8", "surrogateescape").decode("utf-8")
assert want["to"] in utf8(msg["To"]), msg["To"]
assert msg["Message-ID"].endswith("@mx.test>"), msg["Message-ID"]
assert msg["Date"].datetime is not None

parts = list(msg.iter_parts())
assert len(parts) == 3, [p.get_content_type() for p in parts]
for i, p in enumerate(parts):
    no_defects(p, i)
text, report, headers = parts
assert text.get_content_type() == "text/plain"
# Compare text with line ends and folding white space collapsed.
def flat(s):
    return " ".join(s.split())
body = flat(text.get_content())
for needle in want["text_contains"]:
    assert needle in body, (needle, body)

assert report.get_content_type() == "message/delivery-status"
blocks = report.get_payload()
assert len(blocks) == 1 + len(want["recipients"]), len(blocks)
assert blocks[0]["Reporting-MTA"] == "dns; mx.test", blocks[0]["Reporting-MTA"]
assert blocks[0]["X-Postling-Queue-ID"] == "661D0382059C100001"
assert blocks[0]["Arrival-Date"] == "Fri, 04 Dec 2026 15:06:23 +0000"
for block, fields in zip(blocks[1:], want["recipients"]):
    for name, value in fields.items():
        got = block[name]
        got = None if got is None else str(got)
        assert got == value, (name, got, value)

assert headers.get_content_type() == "text/rfc822-headers"
got = headers.get_content().replace("\r\n", "\n")
assert got == want["headers"], repr(got)
print("ok")
"#;

fn check(message: &[u8], want: &str) {
    let mut child = Command::new("python3")
        .args(["-c", CHECK, want])
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
fn js(s: &str) -> String {
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

fn recipient(address: &str, reply: &str, remote: Option<&str>) -> FailedRecipient {
    FailedRecipient {
        address: address.to_string(),
        original: None,
        reply: reply.to_string(),
        status: None,
        remote_mta: remote.map(str::to_string),
    }
}

fn base(kind: BounceKind, recipients: Vec<FailedRecipient>, spool: &[u8]) -> BounceParams {
    BounceParams {
        hostname: "mx.test".to_string(),
        queue_id: "661D0382059C100001".to_string(),
        arrival: 1_796_396_783,
        now: 1_796_400_000,
        original_sender: "alice@example.org".to_string(),
        recipients,
        kind,
        retry_until: None,
        original_headers: header_section(&mut &spool[..], 64 * 1024).expect("headers"),
    }
}

const SPOOLED: &[u8] =
    b"Received: from client.example.org\r\n\tby mx.test; Fri, 04 Dec 2026 15:06:23 +0000\r\n\
From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nSubject: quarterly report\r\n\
\r\nThe body is never quoted in a bounce.\r\n";

const HEADERS: &str =
    "Received: from client.example.org\n\tby mx.test; Fri, 04 Dec 2026 15:06:23 +0000\n\
From: Alice <alice@example.org>\nTo: bob@example.net\nSubject: quarterly report\n";

#[test]
fn failure_report_parses_as_multipart_report() {
    let long = format!("550 5.7.1 {}end", "rejected by local policy, ".repeat(8));
    let mut loop_rcpt = recipient("carol@mx.test", "550 5.4.6 alias loop at team", None);
    loop_rcpt.original = Some("team@mx.test".to_string());
    let p = base(
        BounceKind::Failure,
        vec![
            recipient(
                "bob@example.net",
                "550 5.1.1 <bob@example.net>: Recipient address rejected",
                Some("mx1.example.net"),
            ),
            recipient("dave@example.com", &long, Some("mx.example.com")),
            loop_rcpt,
            recipient("erin@example.com", "554 transaction failed", None),
        ],
        SPOOLED,
    );
    let message = build(&p);
    assert!(!String::from_utf8_lossy(&message).contains("never quoted"));
    let want = format!(
        r#"{{"subject": "Undelivered Mail Returned to Sender", "to": "alice@example.org",
        "text_contains": ["<bob@example.net>", "Recipient address rejected", "alias loop"],
        "headers": {headers},
        "recipients": [
          {{"Final-Recipient": "rfc822; bob@example.net", "Action": "failed", "Status": "5.1.1",
            "Remote-MTA": "dns; mx1.example.net", "Original-Recipient": null,
            "Diagnostic-Code": "smtp; 550 5.1.1 <bob@example.net>: Recipient address rejected",
            "Last-Attempt-Date": "Fri, 04 Dec 2026 16:00:00 +0000"}},
          {{"Final-Recipient": "rfc822; dave@example.com", "Status": "5.7.1",
            "Diagnostic-Code": {long}}},
          {{"Final-Recipient": "rfc822; carol@mx.test", "Original-Recipient": "rfc822; team@mx.test",
            "Status": "5.4.6", "Remote-MTA": null}},
          {{"Final-Recipient": "rfc822; erin@example.com", "Status": "5.0.0"}}
        ]}}"#,
        headers = js(HEADERS),
        long = js(&format!("smtp; {long}")),
    );
    check(&message, &want);
}

#[test]
fn delay_warning_parses() {
    let mut p = base(
        BounceKind::Delay,
        vec![recipient(
            "bob@example.net",
            "451 4.7.1 greylisted, try again later",
            Some("mx1.example.net"),
        )],
        SPOOLED,
    );
    p.retry_until = Some(1_796_828_783);
    let want = format!(
        r#"{{"subject": "Delayed Mail (still being retried)", "to": "alice@example.org",
        "text_contains": ["WARNING ONLY", "greylisted"],
        "headers": {headers},
        "recipients": [
          {{"Final-Recipient": "rfc822; bob@example.net", "Action": "delayed", "Status": "4.7.1",
            "Will-Retry-Until": "Wed, 09 Dec 2026 15:06:23 +0000"}}
        ]}}"#,
        headers = js(HEADERS),
    );
    check(&build(&p), &want);
}

#[test]
fn utf8_addresses_and_hostile_replies_parse() {
    let mut p = base(
        BounceKind::Failure,
        vec![recipient(
            "jörg@bücher.example",
            "550 5.1.1 unknown\r\nX-Injected: yes",
            Some("mx.bücher.example"),
        )],
        b"Subject: caf\xc3\xa9\r\nX-Bare: lf\nX-Last: no line end",
    );
    p.original_sender = "zoë@example.org".to_string();
    let want = r#"{"subject": "Undelivered Mail Returned to Sender", "to": "zoë@example.org",
        "text_contains": ["jörg@bücher.example", "unknown X-Injected: yes"],
        "headers": "Subject: café\nX-Bare: lf\nX-Last: no line end\n",
        "recipients": [
          {"Final-Recipient": "utf-8; j\\x{F6}rg@b\\x{FC}cher.example", "Status": "5.1.1",
           "Remote-MTA": "dns; mx.b?cher.example",
           "Diagnostic-Code": "smtp; 550 5.1.1 unknown X-Injected: yes", "X-Injected": null}
        ]}"#;
    check(&build(&p), want);
}

#[test]
fn empty_header_section_still_parses() {
    let p = base(
        BounceKind::Failure,
        vec![recipient("bob@example.net", "550 5.1.1 no", None)],
        b"\r\nbody only\r\n",
    );
    assert!(p.original_headers.is_empty());
    let want = r#"{"subject": "Undelivered Mail Returned to Sender", "to": "alice@example.org",
        "text_contains": ["<bob@example.net>"], "headers": "",
        "recipients": [{"Final-Recipient": "rfc822; bob@example.net", "Status": "5.1.1"}]}"#;
    check(&build(&p), want);
}
