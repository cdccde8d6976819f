//! Delivery status notifications (RFC 3464) for failed and delayed recipients.
//!
//! [`build`] returns one complete RFC 5322 message, ready to be queued from the null
//! sender `<>` (RFC 5321 §4.5.5) to the original envelope sender. The caller never builds
//! one for a message whose sender was `<>` (spec: a failing bounce is logged and dropped).
//!
//! Invariants of the output:
//! - Every line ends in CRLF; no bare CR or LF appears anywhere (the original headers
//!   are re-terminated line by line).
//! - It is a `multipart/report; report-type=delivery-status` (RFC 6522) with three
//!   parts: a human-readable `text/plain` explanation, the `message/delivery-status`
//!   report (RFC 3464 §2), and the original header section as `text/rfc822-headers`
//!   (RFC 6522 §4; headers only, so a bounce never echoes a large or hostile body).
//! - The MIME boundary occurs in none of the parts (checked, not hoped for).
//! - The `message/delivery-status` part is 7-bit: remote reply text is made one line of
//!   printable ASCII, and a non-ASCII address is written as an RFC 6533 `utf-8` address
//!   with `\x{HEX}` escapes. The explanation is `us-ascii` unless an address or reply is
//!   UTF-8 (then `utf-8`, 8bit); the headers part is 8bit only if the original headers
//!   were. So the result needs `BODY=8BITMIME` exactly when it has a byte ≥ 0x80.
//! - `Auto-Submitted: auto-replied` (RFC 3834 §5) tells vacation programs and other
//!   responders not to answer it.

use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};

/// Cap on the original header section quoted in part 3 (Postfix quotes headers only,
/// too; 64 KiB holds any honest header section).
pub const MAX_HEADER_SECTION: usize = 64 * 1024;

/// RFC 5322 §2.1.1 recommends lines of at most 78 characters; folded fields keep to it.
const FOLD_AT: usize = 78;
/// A remote reply is one line of at most 512 octets (RFC 5321 §4.5.3.1.5); anything
/// longer in a bounce is cut, so no field can approach the 998-octet hard limit.
const MAX_REPLY: usize = 512;

/// What the report says happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BounceKind {
    /// The listed recipients will not get the message (`Action: failed`).
    Failure,
    /// Still being retried; a warning only (`Action: delayed`).
    Delay,
}

/// One recipient the report is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailedRecipient {
    /// The address delivery was attempted to (`Final-Recipient`).
    pub address: String,
    /// The envelope recipient before alias expansion, when that differs.
    pub original: Option<String>,
    /// One reply line, e.g. `550 5.1.1 user unknown` (remote) or a local reason.
    pub reply: String,
    /// Enhanced status code (`5.1.1`) when known; else taken from `reply`.
    pub status: Option<String>,
    /// The remote host that gave `reply`, when there was one.
    pub remote_mta: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BounceParams {
    /// This host (`hostname` in the config): From, Message-ID, Reporting-MTA.
    pub hostname: String,
    /// Queue ID of the original message.
    pub queue_id: String,
    /// Unix seconds the original message arrived.
    pub arrival: u64,
    /// Unix seconds now (Date, Last-Attempt-Date).
    pub now: u64,
    /// The envelope sender of the original message; never `""`.
    pub original_sender: String,
    pub recipients: Vec<FailedRecipient>,
    pub kind: BounceKind,
    /// For [`BounceKind::Delay`]: Unix seconds until which delivery is retried
    /// (`Will-Retry-Until`, RFC 3464 §2.3.8).
    pub retry_until: Option<u64>,
    /// The original header section (see [`header_section`]).
    pub original_headers: Vec<u8>,
}

/// The header section of a spooled message: everything before the first empty line,
/// without that line, cut at a line boundary so that it is at most `limit` bytes. A
/// message without a body gives all of it (up to `limit`).
pub fn header_section(message: &mut dyn Read, limit: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    // Two bytes past the limit are enough to see whether a line ends exactly there.
    let cap = limit.saturating_add(2) as u64;
    message.take(cap).read_to_end(&mut buf)?;
    let mut start = 0;
    let mut end = buf.len();
    while start < buf.len() {
        let line_end = match buf[start..].iter().position(|&b| b == b'\n') {
            Some(i) => start + i + 1,
            None => buf.len(),
        };
        let line = &buf[start..line_end];
        if line == b"\r\n" || line == b"\n" {
            end = start;
            break;
        }
        start = line_end;
    }
    if end > limit {
        // Cut after the last complete line that fits.
        end = buf[..limit]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
    }
    buf.truncate(end);
    Ok(buf)
}

/// The complete report message, CRLF line ends.
pub fn build(params: &BounceParams) -> Vec<u8> {
    let host = header_text(&params.hostname);
    let text = explanation(params);
    let report = delivery_status(params);
    let headers = normalise_lines(&params.original_headers);

    let boundary = boundary(params, &[text.as_bytes(), report.as_bytes(), &headers]);
    let eight_bit_text = !text.is_ascii();
    let eight_bit_headers = !headers.is_ascii();

    let subject = match params.kind {
        BounceKind::Failure => "Undelivered Mail Returned to Sender",
        BounceKind::Delay => "Delayed Mail (still being retried)",
    };
    let mut out = String::with_capacity(2048 + text.len() + report.len());
    let mut h = |name: &str, value: &str| {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push_str("\r\n");
    };
    h(
        "From",
        &format!("Mail Delivery System <MAILER-DAEMON@{host}>"),
    );
    h("To", &format!("<{}>", header_text(&params.original_sender)));
    h("Subject", subject);
    h("Date", &crate::time::rfc5322(params.now));
    h("Message-ID", &message_id(params, &host));
    h("Auto-Submitted", "auto-replied");
    h("MIME-Version", "1.0");
    h(
        "Content-Type",
        &format!("multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\""),
    );
    out.push_str("\r\nThis is a MIME-encapsulated message.\r\n");

    let mut out = out.into_bytes();
    let mut part = |content_type: &str, description: &str, eight_bit: bool, body: &[u8]| {
        out.extend_from_slice(format!("\r\n--{boundary}\r\n").as_bytes());
        out.extend_from_slice(format!("Content-Description: {description}\r\n").as_bytes());
        out.extend_from_slice(format!("Content-Type: {content_type}\r\n").as_bytes());
        if eight_bit {
            out.extend_from_slice(b"Content-Transfer-Encoding: 8bit\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
    };
    let charset = if eight_bit_text { "utf-8" } else { "us-ascii" };
    part(
        &format!("text/plain; charset={charset}"),
        "Notification",
        eight_bit_text,
        text.as_bytes(),
    );
    part(
        "message/delivery-status",
        "Delivery report",
        false,
        report.as_bytes(),
    );
    // RFC 6532 header fields are UTF-8; say so when they are, so a reader decodes them.
    let headers_type = if eight_bit_headers && std::str::from_utf8(&headers).is_ok() {
        "text/rfc822-headers; charset=utf-8"
    } else {
        "text/rfc822-headers"
    };
    part(
        headers_type,
        "Undelivered Message Headers",
        eight_bit_headers,
        &headers,
    );
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

/// Part 1: what happened, in words, one paragraph per recipient.
fn explanation(p: &BounceParams) -> String {
    let host = header_text(&p.hostname);
    let mut t = format!("This is the mail system at host {host}.\r\n\r\n");
    match p.kind {
        BounceKind::Failure => t.push_str(
            "I'm sorry to have to inform you that your message could not\r\n\
             be delivered to one or more recipients. The headers of your\r\n\
             message are attached below.\r\n\r\n\
             For further assistance, please send mail to postmaster.\r\n",
        ),
        BounceKind::Delay => {
            t.push_str(
                "####################################################################\r\n\
                 # THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\r\n\
                 ####################################################################\r\n\r\n",
            );
            t.push_str(&format!(
                "Your message, received {}, could not be delivered\r\n\
                 yet to one or more recipients. The mail system will keep trying",
                crate::time::rfc5322(p.arrival)
            ));
            match p.retry_until {
                Some(until) => t.push_str(&format!(
                    "\r\nuntil {}; only then will it give up and tell you.\r\n",
                    crate::time::rfc5322(until)
                )),
                None => t.push_str(" and will tell you if it gives up.\r\n"),
            }
        }
    }
    t.push_str("\r\nThe mail system\r\n");
    for r in &p.recipients {
        t.push_str(&format!("\r\n<{}>", header_text(&r.address)));
        if let Some(orig) = original(r) {
            t.push_str(&format!(" (expanded from <{}>)", header_text(orig)));
        }
        t.push(':');
        let reply = one_line(&r.reply);
        let said = match &r.remote_mta {
            Some(mta) => format!("host {} said: {reply}", header_text(mta)),
            None => reply,
        };
        for line in fold(&said, FOLD_AT - 4) {
            t.push_str("\r\n    ");
            t.push_str(&line);
        }
        t.push_str("\r\n");
    }
    t
}

/// Part 2: the machine-readable report, RFC 3464 §2.2 and §2.3.
fn delivery_status(p: &BounceParams) -> String {
    let mut s = String::new();
    let field = |s: &mut String, name: &str, value: &str| {
        let line = format!("{name}: {value}");
        // RFC 5322 §2.2.3 folding: a CRLF goes in front of a space that was already
        // there, so unfolding (removing the CRLF) gives back the text (with runs of
        // spaces collapsed by `fold`). One column is kept for that space.
        s.push_str(&fold(&line, FOLD_AT - 1).join("\r\n "));
        s.push_str("\r\n");
    };
    field(
        &mut s,
        "Reporting-MTA",
        &format!("dns; {}", ascii_text(&p.hostname)),
    );
    field(&mut s, "X-Postling-Queue-ID", &ascii_text(&p.queue_id));
    field(&mut s, "Arrival-Date", &crate::time::rfc5322(p.arrival));
    for r in &p.recipients {
        s.push_str("\r\n");
        if let Some(orig) = original(r) {
            field(&mut s, "Original-Recipient", &typed_address(orig));
        }
        field(&mut s, "Final-Recipient", &typed_address(&r.address));
        let action = match p.kind {
            BounceKind::Failure => "failed",
            BounceKind::Delay => "delayed",
        };
        field(&mut s, "Action", action);
        field(&mut s, "Status", &status_of(r, p.kind));
        if let Some(mta) = &r.remote_mta {
            field(&mut s, "Remote-MTA", &format!("dns; {}", ascii_text(mta)));
        }
        let reply = ascii_text(&r.reply);
        // RFC 3464 §2.3.6: the diagnostic type names where the text comes from; a text
        // that is not an SMTP reply is our own ("X-" types are private, §2.1.2).
        let kind = if smtp_code(&reply).is_some() {
            "smtp"
        } else {
            "X-Postling"
        };
        field(&mut s, "Diagnostic-Code", &format!("{kind}; {reply}"));
        field(&mut s, "Last-Attempt-Date", &crate::time::rfc5322(p.now));
        if let (BounceKind::Delay, Some(until)) = (p.kind, p.retry_until) {
            field(&mut s, "Will-Retry-Until", &crate::time::rfc5322(until));
        }
    }
    s
}

fn original(r: &FailedRecipient) -> Option<&str> {
    r.original
        .as_deref()
        .filter(|o| !o.eq_ignore_ascii_case(&r.address))
}

/// `rfc822; addr` for an ASCII address; RFC 6533 §3 `utf-8; addr` with every non-ASCII
/// character (and `\`) as `\x{HEX}` otherwise, so the report stays 7-bit.
fn typed_address(addr: &str) -> String {
    let addr = one_line(addr);
    if addr.is_ascii() {
        return format!("rfc822; {addr}");
    }
    let mut out = String::from("utf-8; ");
    for c in addr.chars() {
        if c.is_ascii() && c != '\\' {
            out.push(c);
        } else {
            out.push_str(&format!("\\x{{{:X}}}", c as u32));
        }
    }
    out
}

/// RFC 3464 §2.3.4 `Status`: the given code when well formed, else the enhanced code in
/// the reply, else the basic code's class (RFC 3463 §3.1 `X.0.0`), else the kind's.
fn status_of(r: &FailedRecipient, kind: BounceKind) -> String {
    if let Some(s) = r.status.as_deref().filter(|s| is_enhanced(s)) {
        return s.to_string();
    }
    let reply = r.reply.trim_start();
    if let Some(code) = smtp_code(reply) {
        let second = reply[3..].trim_start_matches([' ', '-']);
        let token = second.split(' ').next().unwrap_or("");
        // An enhanced code must agree with the basic code's class (RFC 2034 §4).
        if is_enhanced(token) && token.as_bytes()[0] == code.as_bytes()[0] {
            return token.to_string();
        }
        return format!("{}.0.0", &code[..1]);
    }
    match kind {
        BounceKind::Failure => "5.0.0".to_string(),
        BounceKind::Delay => "4.0.0".to_string(),
    }
}

/// A basic reply code at the start of `reply` (`4yz` or `5yz`, the only ones a failure
/// can carry), followed by the end, a space or a hyphen.
fn smtp_code(reply: &str) -> Option<&str> {
    let b = reply.as_bytes();
    let ok = b.len() >= 3
        && matches!(b[0], b'4' | b'5')
        && b[1].is_ascii_digit()
        && b[2].is_ascii_digit()
        && matches!(b.get(3), None | Some(b' ') | Some(b'-'));
    ok.then(|| &reply[..3])
}

/// RFC 3463 §2: `class "." subject "." detail`, class 2, 4 or 5, subject up to 3 digits,
/// detail up to 3 digits.
fn is_enhanced(s: &str) -> bool {
    let mut parts = s.split('.');
    let digits = |p: Option<&str>| {
        p.is_some_and(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
    };
    matches!(parts.next(), Some("2" | "4" | "5"))
        && digits(parts.next())
        && digits(parts.next())
        && parts.next().is_none()
}

/// One line, no control characters, at most [`MAX_REPLY`] characters.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_REPLY)
        .collect::<String>()
        .trim()
        .to_string()
}

/// [`one_line`], and printable ASCII only (non-ASCII becomes `?`): for the 7-bit report.
fn ascii_text(s: &str) -> String {
    one_line(s)
        .chars()
        .map(|c| if c.is_ascii() { c } else { '?' })
        .collect()
}

/// A header value we write: one line (UTF-8 kept; the caller knows the part's charset).
fn header_text(s: &str) -> String {
    one_line(s)
}

/// Split `text` at spaces into pieces of at most `width` characters where possible (a
/// single longer word stays whole); the caller joins them with a folding line break.
fn fold(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut cur = String::new();
    // Runs of spaces collapse to one, so no folded line is white space only.
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        if !cur.is_empty() && cur.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut cur));
        } else if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(word);
    }
    lines.push(cur);
    lines
}

/// Re-terminate every line with CRLF: a bare CR becomes a space, a bare LF a line end,
/// and a last line without a line end gets one. The result ends in CRLF unless empty.
fn normalise_lines(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + 2);
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'\r' if raw.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 2;
                continue;
            }
            b'\r' | 0 => out.push(b' '),
            b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A per-process counter so two reports built in the same second differ.
fn next_serial() -> u64 {
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    SERIAL.fetch_add(1, Ordering::Relaxed)
}

fn message_id(p: &BounceParams, host: &str) -> String {
    format!(
        "<{}.{}.{}.{}@{}>",
        p.now,
        ascii_text(&p.queue_id),
        std::process::id(),
        next_serial(),
        host
    )
}

/// `QUEUEID.NOW/HOSTNAME` (Postfix's shape), with `.N` appended until it occurs in none
/// of the parts (RFC 2046 §5.1.1: the boundary must not appear in the encapsulated
/// content). Only boundary-safe characters are kept (RFC 2046 `bchars`).
fn boundary(p: &BounceParams, parts: &[&[u8]]) -> String {
    let base: String = format!("{}.{}/{}", p.queue_id, p.now, p.hostname)
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "'()+_,-./:=?".contains(*c))
        .take(60)
        .collect();
    let mut candidate = base.clone();
    let mut n = next_serial();
    while parts
        .iter()
        .any(|part| contains(part, candidate.as_bytes()))
    {
        candidate = format!("{base}.{n}");
        n += 1;
    }
    candidate
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(kind: BounceKind) -> BounceParams {
        BounceParams {
            hostname: "mx.test".to_string(),
            queue_id: "661D0382059C100001".to_string(),
            arrival: 1_796_396_783,
            now: 1_796_400_000,
            original_sender: "alice@example.org".to_string(),
            recipients: vec![
                FailedRecipient {
                    address: "bob@example.net".to_string(),
                    original: None,
                    reply: "550 5.1.1 <bob@example.net>: user unknown".to_string(),
                    status: None,
                    remote_mta: Some("mx.example.net".to_string()),
                },
                FailedRecipient {
                    address: "carol@mx.test".to_string(),
                    original: Some("team@mx.test".to_string()),
                    reply: "550 5.4.6 alias loop at team".to_string(),
                    status: None,
                    remote_mta: None,
                },
            ],
            kind,
            retry_until: None,
            original_headers: b"From: alice@example.org\r\nSubject: hello\r\n".to_vec(),
        }
    }

    fn text(p: &BounceParams) -> String {
        String::from_utf8(build(p)).expect("UTF-8")
    }

    #[test]
    fn header_sections() {
        const CASES: &[(&[u8], usize, &[u8])] = &[
            (b"A: 1\r\nB: 2\r\n\r\nbody\r\n", 100, b"A: 1\r\nB: 2\r\n"),
            (b"A: 1\nB: 2\n\nbody\n", 100, b"A: 1\nB: 2\n"),
            (b"\r\nbody only\r\n", 100, b""),
            (b"A: 1\r\nB: 2\r\n", 100, b"A: 1\r\nB: 2\r\n"),
            (
                b"A: 1\r\n continued\r\n\r\nX",
                100,
                b"A: 1\r\n continued\r\n",
            ),
            // Cut at the last whole line within the limit.
            (b"A: 1\r\nB: 2\r\n\r\nbody", 8, b"A: 1\r\n"),
            (b"A: 1\r\nB: 2\r\n\r\nbody", 12, b"A: 1\r\nB: 2\r\n"),
            (b"A: 1\r\nB: 2\r\nC: 3\r\n", 12, b"A: 1\r\nB: 2\r\n"),
            (b"AAAAAAAAAAAAAAAAAAAA\r\n\r\n", 8, b""),
            (b"", 100, b""),
        ];
        for &(msg, limit, want) in CASES {
            let got = header_section(&mut &msg[..], limit).expect("read");
            assert_eq!(
                got,
                want,
                "{:?} limit {limit}",
                String::from_utf8_lossy(msg)
            );
        }
    }

    #[test]
    fn statuses() {
        use BounceKind::*;
        const CASES: &[(&str, Option<&str>, BounceKind, &str)] = &[
            ("550 5.1.1 user unknown", None, Failure, "5.1.1"),
            ("550-5.7.1 policy", None, Failure, "5.7.1"),
            ("554 no enhanced code", None, Failure, "5.0.0"),
            ("452 4.2.2 mailbox full", None, Failure, "4.2.2"),
            ("421 try later", None, Delay, "4.0.0"),
            ("550 4.1.1 mismatched class", None, Failure, "5.0.0"),
            ("550 5.1.1 x", Some("5.1.10"), Failure, "5.1.10"),
            ("550 5.1.1 x", Some("bogus"), Failure, "5.1.1"),
            ("connect to h[1.2.3.4]:25: refused", None, Delay, "4.0.0"),
            ("local reason", None, Failure, "5.0.0"),
            ("5501 5.1.1 not a code", None, Failure, "5.0.0"),
        ];
        for &(reply, status, kind, want) in CASES {
            let r = FailedRecipient {
                address: "x@y".into(),
                original: None,
                reply: reply.into(),
                status: status.map(str::to_string),
                remote_mta: None,
            };
            assert_eq!(status_of(&r, kind), want, "{reply}");
        }
    }

    #[test]
    fn failure_report_text() {
        let t = text(&params(BounceKind::Failure));
        assert!(t.ends_with("--\r\n"));
        assert!(!t.replace("\r\n", "").contains(['\r', '\n']), "bare CR/LF");
        for want in [
            "From: Mail Delivery System <MAILER-DAEMON@mx.test>\r\n",
            "To: <alice@example.org>\r\n",
            "Subject: Undelivered Mail Returned to Sender\r\n",
            "Date: Fri, 04 Dec 2026 16:00:00 +0000\r\n",
            "Auto-Submitted: auto-replied\r\n",
            "MIME-Version: 1.0\r\n",
            "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"661D0382059C100001.1796400000/mx.test\"\r\n",
            "\r\n<bob@example.net>:\r\n    host mx.example.net said: 550 5.1.1 <bob@example.net>: user unknown\r\n",
            "\r\n<carol@mx.test> (expanded from <team@mx.test>):\r\n    550 5.4.6 alias loop at team\r\n",
            "Content-Type: message/delivery-status\r\n\r\n\
             Reporting-MTA: dns; mx.test\r\n\
             X-Postling-Queue-ID: 661D0382059C100001\r\n\
             Arrival-Date: Fri, 04 Dec 2026 15:06:23 +0000\r\n\
             \r\n\
             Final-Recipient: rfc822; bob@example.net\r\n\
             Action: failed\r\n\
             Status: 5.1.1\r\n\
             Remote-MTA: dns; mx.example.net\r\n\
             Diagnostic-Code: smtp; 550 5.1.1 <bob@example.net>: user unknown\r\n\
             Last-Attempt-Date: Fri, 04 Dec 2026 16:00:00 +0000\r\n\
             \r\n\
             Original-Recipient: rfc822; team@mx.test\r\n\
             Final-Recipient: rfc822; carol@mx.test\r\n\
             Action: failed\r\n\
             Status: 5.4.6\r\n\
             Diagnostic-Code: smtp; 550 5.4.6 alias loop at team\r\n",
            "Content-Type: text/rfc822-headers\r\n\r\nFrom: alice@example.org\r\nSubject: hello\r\n\r\n--",
        ] {
            assert!(t.contains(want), "missing {want:?} in\n{t}");
        }
        assert!(!t.contains("Will-Retry-Until"));
        assert!(!t.contains("WARNING"));
        assert!(t.is_ascii());
    }

    #[test]
    fn delay_report_text() {
        let mut p = params(BounceKind::Delay);
        p.retry_until = Some(1_796_828_783);
        let t = text(&p);
        for want in [
            "Subject: Delayed Mail (still being retried)\r\n",
            "THIS IS A WARNING ONLY",
            "until Wed, 09 Dec 2026 15:06:23 +0000",
            "Action: delayed\r\n",
            "Will-Retry-Until: Wed, 09 Dec 2026 15:06:23 +0000\r\n",
        ] {
            assert!(t.contains(want), "missing {want:?} in\n{t}");
        }
        assert!(!t.contains("Action: failed"));
    }

    #[test]
    fn hostile_and_long_replies_are_tamed() {
        let mut p = params(BounceKind::Failure);
        let long = format!("550 5.7.1 {}", "blocked-because-of-policy ".repeat(20));
        p.recipients = vec![
            FailedRecipient {
                address: "jörg@bücher.example".to_string(),
                original: None,
                reply: "550 5.1.1 nö\r\nX-Injected: yes\u{0}".to_string(),
                status: None,
                remote_mta: Some("mx\r\nEvil: 1".to_string()),
            },
            FailedRecipient {
                address: "x@example.net".to_string(),
                original: Some("X@example.net".to_string()),
                reply: long,
                status: None,
                remote_mta: None,
            },
        ];
        p.original_headers = b"Subject: bare\nlf\rcr\0nul".to_vec();
        let t = text(&p);
        assert!(!t.replace("\r\n", "").contains(['\r', '\n', '\0']), "{t}");
        assert!(!t.contains("\r\nX-Injected"), "{t}");
        assert!(!t.contains("\r\nEvil"), "{t}");
        let report = t
            .split("message/delivery-status\r\n\r\n")
            .nth(1)
            .and_then(|r| r.split("\r\n--").next())
            .expect("report part");
        assert!(report.is_ascii(), "{report}");
        assert!(
            report.contains("Final-Recipient: utf-8; j\\x{F6}rg@b\\x{FC}cher.example\r\n"),
            "{report}"
        );
        assert!(report.contains("Diagnostic-Code: smtp; 550 5.1.1 n? X-Injected: yes\r\n"));
        // Folded: no line over 78, continuation lines start with white space.
        for line in report.split("\r\n") {
            assert!(line.len() <= FOLD_AT, "{line:?}");
        }
        assert!(report.contains("Diagnostic-Code: smtp; 550 5.7.1 blocked-because-of-policy"));
        assert!(report.contains("\r\n blocked-because-of-policy"));
        // A case-only difference is not an expansion.
        assert!(!report.contains("Original-Recipient"));
        // UTF-8 in the explanation makes it utf-8 8bit; the headers part is re-terminated.
        assert!(t.contains(
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
        ));
        assert!(t.contains("\r\n\r\nSubject: bare\r\nlf cr nul\r\n\r\n--"));
    }

    #[test]
    fn boundary_avoids_the_content() {
        let mut p = params(BounceKind::Failure);
        let naive = "661D0382059C100001.1796400000/mx.test";
        p.original_headers = format!("X-Trap: --{naive}\r\n").into_bytes();
        let t = text(&p);
        let line = t
            .lines()
            .find(|l| l.contains("boundary="))
            .expect("boundary line");
        let b = line
            .split("boundary=\"")
            .nth(1)
            .and_then(|r| r.strip_suffix('"'))
            .expect("quoted boundary");
        assert_ne!(b, naive);
        assert!(b.starts_with(naive));
        assert_eq!(t.matches(&format!("--{b}")).count(), 4, "3 parts + close");
    }

    #[test]
    fn folding() {
        const CASES: &[(&str, usize, &[&str])] = &[
            ("short", 10, &["short"]),
            ("aaa bbb ccc", 7, &["aaa bbb", "ccc"]),
            ("aaaaaaaaaaaa b", 5, &["aaaaaaaaaaaa", "b"]),
            ("", 5, &[""]),
            ("a  b   c", 3, &["a b", "c"]),
        ];
        for &(input, width, want) in CASES {
            assert_eq!(fold(input, width), want, "{input:?}");
        }
    }
}
