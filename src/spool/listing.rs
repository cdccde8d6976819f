//! Queue listings for `postling queue`: one JSON object per message per line (`--json`)
//! and the Postfix `mailq` layout that administrators and their scripts already read.
//!
//! Both are pure functions of envelopes: no file, no clock (the caller passes times).
//! Every string taken from an envelope is escaped (JSON) or has its control characters
//! replaced (`mailq`), so a hostile address or reply cannot break a line or drive the
//! terminal.

use std::fmt::Write;

use super::envelope::{Envelope, Status};
use crate::time::mailq_date;

/// The spec's `queue --json` object for one message, on one line (no trailing newline):
/// `{"id": "…", "size": N, "arrival": S, "sender": "…", "recipients": [{"address": "…",
/// "status": "…", "attempts": N, "last_reply": "…"|null, "next_attempt": S|null}]}`.
///
/// `next_attempt` is the stored retry time for pending and deferred recipients (null =
/// as soon as possible) and always null for failed and delivered ones, which will not be
/// tried again. `now` is the listing time; the stored values are printed as they are (a
/// retry time already past means "at the next pass"), so it is currently not needed.
pub fn json_line(env: &Envelope, now: u64) -> String {
    let _ = now;
    let mut out = String::with_capacity(128 + 128 * env.recipients.len());
    out.push_str("{\"id\": ");
    push_json_string(&mut out, env.id.as_str());
    let _ = write!(
        out,
        ", \"size\": {}, \"arrival\": {}",
        env.size, env.arrival
    );
    out.push_str(", \"sender\": ");
    push_json_string(&mut out, &env.sender);
    out.push_str(", \"recipients\": [");
    for (i, r) in env.recipients.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str("{\"address\": ");
        push_json_string(&mut out, &r.address);
        let _ = write!(
            out,
            ", \"status\": \"{}\", \"attempts\": {}, \"last_reply\": ",
            r.status.as_str(),
            r.attempts
        );
        match &r.last_reply {
            Some(reply) => push_json_string(&mut out, reply),
            None => out.push_str("null"),
        }
        out.push_str(", \"next_attempt\": ");
        match (r.status, r.next_attempt) {
            (Status::Pending | Status::Deferred, Some(t)) => {
                let _ = write!(out, "{t}");
            }
            _ => out.push_str("null"),
        }
        out.push('}');
    }
    out.push_str("]}");
    out
}

/// A JSON string (RFC 8259 §7): quote and backslash escaped, control characters as
/// `\uXXXX` (DEL and the C1 range too, and U+2028/U+2029 for JavaScript readers);
/// everything else, non-ASCII included, passes through as UTF-8.
fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Where recipient lines start in Postfix's `mailq` output.
const RECIPIENT_INDENT: usize = 41;

/// The queue in Postfix `mailq` layout: a header, per message a line with the ID, size,
/// arrival and sender (`MAILER-DAEMON` for `<>`), then each recipient not yet delivered,
/// with a `(reason)` line above deferred and failed ones (shared by consecutive
/// recipients with the same reason, as Postfix does; for deferred ones it also gives the
/// attempts and the next retry time). A blank line after each message and a
/// `-- N Kbytes in M Requests.` footer; `Mail queue is empty` when it is.
///
/// Our IDs are longer than Postfix's classic 10 characters, so, as with Postfix's long
/// queue IDs, the columns after the ID shift right while recipient lines stay at column
/// 41; scripts that split on whitespace read it the same way.
pub fn mailq(envs: &[Envelope]) -> String {
    if envs.is_empty() {
        return "Mail queue is empty\n".to_string();
    }
    let mut out =
        String::from("-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------\n");
    let mut total: u64 = 0;
    for env in envs {
        total = total.saturating_add(env.size);
        let sender = if env.sender.is_empty() {
            "MAILER-DAEMON".to_string()
        } else {
            printable(&env.sender)
        };
        // Postfix: ID, a status mark (`*` active, `!` held; we have neither), size, date.
        let _ = writeln!(
            out,
            "{}  {:>7} {:<20} {}",
            env.id,
            env.size,
            mailq_date(env.arrival),
            sender
        );
        let mut last_reason: Option<String> = None;
        for r in &env.recipients {
            let reason = match r.status {
                Status::Delivered => continue,
                Status::Pending => None,
                Status::Failed => Some(printable(r.last_reply.as_deref().unwrap_or("failed"))),
                Status::Deferred => {
                    let mut reason = printable(r.last_reply.as_deref().unwrap_or("deferred"));
                    let _ = write!(
                        reason,
                        "; {} attempt{}",
                        r.attempts,
                        if r.attempts == 1 { "" } else { "s" }
                    );
                    if let Some(t) = r.next_attempt {
                        let _ = write!(reason, ", next {}", mailq_date(t));
                    }
                    Some(reason)
                }
            };
            if let Some(reason) = &reason {
                if last_reason.as_ref() != Some(reason) {
                    let _ = writeln!(out, "({reason})");
                }
            }
            last_reason = reason;
            let _ = writeln!(
                out,
                "{:indent$}{}",
                "",
                printable(&r.address),
                indent = RECIPIENT_INDENT
            );
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "-- {} Kbytes in {} Request{}.",
        // Rounded up, so a queue of small messages never reads "0 Kbytes".
        total.div_ceil(1024),
        envs.len(),
        if envs.len() == 1 { "" } else { "s" }
    );
    out
}

/// Text for a terminal: control characters (which a percent-encoded address can carry)
/// become `?`.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::envelope::Recipient;
    use super::super::QueueId;
    use super::*;

    fn rcpt(
        address: &str,
        status: Status,
        attempts: u32,
        reply: Option<&str>,
        next: Option<u64>,
    ) -> Recipient {
        Recipient {
            address: address.to_string(),
            status,
            attempts,
            last_reply: reply.map(str::to_string),
            next_attempt: next,
        }
    }

    fn env(sender: &str, size: u64, recipients: Vec<Recipient>) -> Envelope {
        Envelope {
            id: QueueId::parse("661D0382059C100001").unwrap(),
            arrival: 1_796_396_783,
            sender: sender.to_string(),
            recipients,
            size,
            eight_bit: false,
            client_ip: None,
            helo: String::new(),
            auth_user: None,
        }
    }

    #[test]
    fn json_lines() {
        let cases: Vec<(Envelope, &str)> = vec![
            (
                env(
                    "alice@example.com",
                    1234,
                    vec![Recipient::new("bob@example.test".into())],
                ),
                r#"{"id": "661D0382059C100001", "size": 1234, "arrival": 1796396783, "sender": "alice@example.com", "recipients": [{"address": "bob@example.test", "status": "pending", "attempts": 0, "last_reply": null, "next_attempt": null}]}"#,
            ),
            (
                env(
                    "",
                    7,
                    vec![
                        rcpt(
                            "c@d",
                            Status::Deferred,
                            2,
                            Some("451 4.7.1 \"later\" \\ \u{1}\t"),
                            Some(1_796_396_900),
                        ),
                        rcpt(
                            "jörg@bücher.example",
                            Status::Failed,
                            1,
                            Some("550 5.1.1 nö"),
                            Some(5),
                        ),
                        rcpt(
                            "e@f",
                            Status::Delivered,
                            1,
                            Some("250 ok\u{7f}\u{2028}"),
                            None,
                        ),
                    ],
                ),
                concat!(
                    r#"{"id": "661D0382059C100001", "size": 7, "arrival": 1796396783, "sender": "", "recipients": ["#,
                    r#"{"address": "c@d", "status": "deferred", "attempts": 2, "last_reply": "451 4.7.1 \"later\" \\ \u0001\u0009", "next_attempt": 1796396900}, "#,
                    r#"{"address": "jörg@bücher.example", "status": "failed", "attempts": 1, "last_reply": "550 5.1.1 nö", "next_attempt": null}, "#,
                    r#"{"address": "e@f", "status": "delivered", "attempts": 1, "last_reply": "250 ok\u007f\u2028", "next_attempt": null}]}"#,
                ),
            ),
        ];
        for (e, want) in cases {
            let got = json_line(&e, 1_796_400_000);
            assert_eq!(got, want);
            assert!(!got.contains('\n'));
            json_check::value(&got).unwrap();
        }
    }

    #[test]
    fn mailq_layout() {
        assert_eq!(mailq(&[]), "Mail queue is empty\n");

        let one = env(
            "alice@example.com",
            380,
            vec![Recipient::new("bob@example.test".into())],
        );
        assert_eq!(
            mailq(&[one]),
            "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------\n\
             661D0382059C100001      380 Fri Dec  4 15:06:23  alice@example.com\n\
             \x20                                        bob@example.test\n\
             \n\
             -- 1 Kbytes in 1 Request.\n"
        );

        let mut bounce = env(
            "",
            5_000,
            vec![
                rcpt(
                    "a@x",
                    Status::Deferred,
                    1,
                    Some("451 4.7.1 later"),
                    Some(1_796_396_843),
                ),
                rcpt(
                    "b@x",
                    Status::Deferred,
                    1,
                    Some("451 4.7.1 later"),
                    Some(1_796_396_843),
                ),
                rcpt(
                    "c@y",
                    Status::Failed,
                    1,
                    Some("550 5.1.1 no\u{1b}[2J"),
                    None,
                ),
                rcpt("d@z", Status::Delivered, 1, Some("250 ok"), None),
                rcpt("e@z", Status::Deferred, 3, None, None),
                rcpt("f@z", Status::Pending, 0, None, None),
            ],
        );
        bounce.id = QueueId::parse("661D0382059C100002").unwrap();
        let pad = " ".repeat(41);
        let want = format!(
            "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------\n\
             661D0382059C100002     5000 Fri Dec  4 15:06:23  MAILER-DAEMON\n\
             (451 4.7.1 later; 1 attempt, next Fri Dec  4 15:07:23)\n\
             {pad}a@x\n\
             {pad}b@x\n\
             (550 5.1.1 no?[2J)\n\
             {pad}c@y\n\
             (deferred; 3 attempts)\n\
             {pad}e@z\n\
             {pad}f@z\n\
             \n\
             661D0382059C100001      380 Fri Dec  4 15:06:23  alice@example.com\n\
             {pad}bob@example.test\n\
             \n\
             -- 6 Kbytes in 2 Requests.\n"
        );
        let two = env(
            "alice@example.com",
            380,
            vec![Recipient::new("bob@example.test".into())],
        );
        assert_eq!(mailq(&[bounce, two]), want);
    }

    /// A minimal JSON syntax check (RFC 8259), enough to prove `json_line` emits valid
    /// JSON without a JSON crate.
    mod json_check {
        pub fn value(s: &str) -> Result<(), String> {
            let b = s.as_bytes();
            let end = parse(b, ws(b, 0))?;
            if ws(b, end) == b.len() {
                Ok(())
            } else {
                Err(format!("trailing data at {end}"))
            }
        }

        fn ws(b: &[u8], mut i: usize) -> usize {
            while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
                i += 1;
            }
            i
        }

        fn parse(b: &[u8], i: usize) -> Result<usize, String> {
            match b.get(i) {
                Some(b'{') => seq(b, i + 1, b'}', true),
                Some(b'[') => seq(b, i + 1, b']', false),
                Some(b'"') => string(b, i + 1),
                Some(b'n') if b[i..].starts_with(b"null") => Ok(i + 4),
                Some(b'0'..=b'9') => {
                    let mut j = i;
                    while j < b.len() && b[j].is_ascii_digit() {
                        j += 1;
                    }
                    Ok(j)
                }
                _ => Err(format!("unexpected byte at {i}")),
            }
        }

        fn seq(b: &[u8], i: usize, close: u8, object: bool) -> Result<usize, String> {
            let mut i = ws(b, i);
            if b.get(i) == Some(&close) {
                return Ok(i + 1);
            }
            loop {
                if object {
                    if b.get(i) != Some(&b'"') {
                        return Err(format!("expected key at {i}"));
                    }
                    i = ws(b, string(b, i + 1)?);
                    if b.get(i) != Some(&b':') {
                        return Err(format!("expected ':' at {i}"));
                    }
                    i = ws(b, i + 1);
                }
                i = ws(b, parse(b, i)?);
                match b.get(i) {
                    Some(b',') => i = ws(b, i + 1),
                    Some(&c) if c == close => return Ok(i + 1),
                    _ => return Err(format!("expected ',' or close at {i}")),
                }
            }
        }

        fn string(b: &[u8], mut i: usize) -> Result<usize, String> {
            while let Some(&c) = b.get(i) {
                match c {
                    b'"' => return Ok(i + 1),
                    b'\\' => match b.get(i + 1) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                        Some(b'u')
                            if b.len() >= i + 6
                                && b[i + 2..i + 6].iter().all(u8::is_ascii_hexdigit) =>
                        {
                            i += 6
                        }
                        _ => return Err(format!("bad escape at {i}")),
                    },
                    0..=0x1f => return Err(format!("raw control byte at {i}")),
                    _ => i += 1,
                }
            }
            Err("unterminated string".to_string())
        }
    }
}
