//! The envelope file: who sent a message, to whom, and each recipient's delivery state.
//! A line-oriented text format (so an administrator can read it), versioned, and parsed
//! strictly: anything unexpected is an error and the file goes to `corrupt/`.
//!
//! ```text
//! postling-envelope 1
//! id 661D0382059C100001
//! arrival 1796396783
//! sender alice@example.com
//! size 1234
//! body 8bitmime
//! client 192.0.2.1
//! helo mail.example.com
//! auth alice
//! rcpt pending 0 - bob@example.test
//! rcpt deferred 2 1796396900 carol@example.test 451 4.7.1 try later
//! end
//! ```
//!
//! - Every line is `KEY SP VALUE LF`. The first line is the version line, the last is
//!   `end`: a file cut short anywhere fails to parse instead of losing recipients.
//! - Between them, each key other than `rcpt` appears at most once and in any order.
//!   Required: `id`, `arrival`, `sender`, `size`, `body` (`8bitmime` or `7bit`), `helo`
//!   and at least one `rcpt`. Optional: `client` (absent for local submission) and `auth`
//!   (absent when the client did not authenticate). Unknown keys are errors.
//! - `sender` and the `rcpt` address are percent-encoded: `%`, space and control
//!   characters become `%XX` (per UTF-8 byte), so a quoted local part with spaces stays one
//!   field and the address round-trips exactly. The null sender `<>` is `sender ` with an
//!   empty value.
//! - `rcpt STATUS ATTEMPTS NEXT ADDRESS[ REPLY]`: STATUS is `pending`, `deferred`,
//!   `failed` or `delivered`; NEXT is Unix seconds or `-` (as soon as possible); REPLY is
//!   everything after the single space that follows the address (the last reply may
//!   contain spaces); no space after the address means no reply recorded.
//! - Free text (`helo`, `auth`, the reply) is made single-line on encode: CR, LF, TAB and
//!   every other control character become a space. So a file holds no control character
//!   but LF, and `decode` rejects any other.
//! - Numbers are plain ASCII decimal (no sign), within `u64` (`u32` for attempts).
//!
//! `decode` never panics, whatever the bytes; the check that the `id` line matches the
//! file name is the spool's (it knows the name).

use std::net::IpAddr;

use super::id::QueueId;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Not tried yet.
    Pending,
    /// Tried, will be retried at `next_attempt`.
    Deferred,
    /// Permanently failed (bounced or to be bounced).
    Failed,
    Delivered,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Deferred => "deferred",
            Status::Failed => "failed",
            Status::Delivered => "delivered",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipient {
    /// `local@domain` as accepted (no brackets).
    pub address: String,
    pub status: Status,
    /// Every try, connection failures included.
    pub attempts: u32,
    /// The remote reply or a local reason; one line.
    pub last_reply: Option<String>,
    /// Unix seconds; `None` = as soon as possible.
    pub next_attempt: Option<u64>,
}

impl Recipient {
    pub fn new(address: String) -> Recipient {
        Recipient {
            address,
            status: Status::Pending,
            attempts: 0,
            last_reply: None,
            next_attempt: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub id: QueueId,
    /// Unix seconds.
    pub arrival: u64,
    /// `""` for the null reverse path `<>`.
    pub sender: String,
    pub recipients: Vec<Recipient>,
    /// Size of the message file in bytes (Received header included).
    pub size: u64,
    /// `BODY=8BITMIME` was declared.
    pub eight_bit: bool,
    /// Client address; `None` for local submission.
    pub client_ip: Option<IpAddr>,
    /// HELO/EHLO name as given.
    pub helo: String,
    /// SASL user name, when the client authenticated.
    pub auth_user: Option<String>,
}

/// The first line of every envelope file; the number changes when the format does.
const VERSION_LINE: &str = "postling-envelope 1";
/// The last line; its absence means the file was cut short.
const END_LINE: &str = "end";

/// Serialise an envelope to its file form.
pub fn encode(env: &Envelope) -> Vec<u8> {
    let mut out = String::with_capacity(256 + 64 * env.recipients.len());
    out.push_str(VERSION_LINE);
    out.push('\n');
    push_line(&mut out, "id", env.id.as_str());
    push_line(&mut out, "arrival", &env.arrival.to_string());
    push_line(&mut out, "sender", &percent_encode(&env.sender));
    push_line(&mut out, "size", &env.size.to_string());
    push_line(
        &mut out,
        "body",
        if env.eight_bit { "8bitmime" } else { "7bit" },
    );
    if let Some(ip) = env.client_ip {
        push_line(&mut out, "client", &ip.to_string());
    }
    push_line(&mut out, "helo", &single_line(&env.helo));
    if let Some(user) = &env.auth_user {
        push_line(&mut out, "auth", &single_line(user));
    }
    for r in &env.recipients {
        out.push_str("rcpt ");
        out.push_str(r.status.as_str());
        out.push(' ');
        out.push_str(&r.attempts.to_string());
        out.push(' ');
        match r.next_attempt {
            Some(t) => out.push_str(&t.to_string()),
            None => out.push('-'),
        }
        out.push(' ');
        out.push_str(&percent_encode(&r.address));
        if let Some(reply) = &r.last_reply {
            out.push(' ');
            out.push_str(&single_line(reply));
        }
        out.push('\n');
    }
    out.push_str(END_LINE);
    out.push('\n');
    out.into_bytes()
}

fn push_line(out: &mut String, key: &str, value: &str) {
    out.push_str(key);
    out.push(' ');
    out.push_str(value);
    out.push('\n');
}

/// Free text made safe for one line: every control character (CR, LF, TAB, …) becomes a
/// space, so a hostile HELO or reply cannot forge a second line.
fn single_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `%`, space and control characters as `%XX` per UTF-8 byte; everything else as is.
/// Shared with the maildrop's drop files.
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '%' || c == ' ' || c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

pub(crate) fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                .ok_or_else(|| format!("bad percent escape in {s:?}"))?;
            let b =
                u8::from_str_radix(hex, 16).map_err(|_| format!("bad percent escape in {s:?}"))?;
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("percent escapes in {s:?} are not UTF-8"))
}

fn parse_u64(what: &str, s: &str) -> Result<u64, String> {
    // `str::parse` accepts a leading `+`; the format does not.
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("bad number for {what}: {s:?}"));
    }
    s.parse()
        .map_err(|_| format!("number out of range for {what}: {s:?}"))
}

fn parse_status(s: &str) -> Result<Status, String> {
    match s {
        "pending" => Ok(Status::Pending),
        "deferred" => Ok(Status::Deferred),
        "failed" => Ok(Status::Failed),
        "delivered" => Ok(Status::Delivered),
        _ => Err(format!("unknown recipient status {s:?}")),
    }
}

/// `STATUS ATTEMPTS NEXT ADDRESS[ REPLY]` (the part after `rcpt `).
fn parse_rcpt(value: &str) -> Result<Recipient, String> {
    let mut fields = value.splitn(5, ' ');
    let mut field = |name: &str| {
        fields
            .next()
            .ok_or_else(|| format!("rcpt line without {name}: {value:?}"))
    };
    let status = parse_status(field("status")?)?;
    let attempts_s = field("attempts")?;
    let attempts = u32::try_from(parse_u64("attempts", attempts_s)?)
        .map_err(|_| format!("number out of range for attempts: {attempts_s:?}"))?;
    let next_attempt = match field("next attempt")? {
        "-" => None,
        t => Some(parse_u64("next attempt", t)?),
    };
    let address = percent_decode(field("address")?)?;
    if address.is_empty() {
        return Err("empty recipient address".to_string());
    }
    let last_reply = fields.next().map(str::to_string);
    Ok(Recipient {
        address,
        status,
        attempts,
        last_reply,
        next_attempt,
    })
}

/// Parse an envelope file. `Err` names what is wrong (for the `corrupt/` log line).
pub fn decode(bytes: &[u8]) -> Result<Envelope, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    if let Some(c) = text.chars().find(|&c| c != '\n' && c.is_control()) {
        return Err(format!("control character {:?} in file", c));
    }
    let body = text
        .strip_suffix('\n')
        .ok_or("file does not end with a newline (truncated?)")?;
    let mut lines = body.split('\n');
    match lines.next() {
        Some(VERSION_LINE) => {}
        Some(other) => return Err(format!("unsupported version line {other:?}")),
        None => return Err("empty file".to_string()),
    }

    let mut id = None;
    let mut arrival = None;
    let mut sender = None;
    let mut size = None;
    let mut eight_bit = None;
    let mut client_ip = None;
    let mut helo = None;
    let mut auth_user = None;
    let mut recipients = Vec::new();
    let mut ended = false;

    for line in lines {
        if ended {
            return Err(format!("line after end: {line:?}"));
        }
        if line == END_LINE {
            ended = true;
            continue;
        }
        // An editor may strip the trailing space of `sender ` (the null sender).
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        match key {
            "id" => {
                let parsed = QueueId::parse(value).ok_or_else(|| format!("bad id {value:?}"))?;
                set_once(&mut id, "id", parsed)?;
            }
            "arrival" => set_once(&mut arrival, "arrival", parse_u64("arrival", value)?)?,
            "sender" => set_once(&mut sender, "sender", percent_decode(value)?)?,
            "size" => set_once(&mut size, "size", parse_u64("size", value)?)?,
            "body" => {
                let eight = match value {
                    "8bitmime" => true,
                    "7bit" => false,
                    _ => return Err(format!("unknown body type {value:?}")),
                };
                set_once(&mut eight_bit, "body", eight)?;
            }
            "client" => {
                let ip = value
                    .parse()
                    .map_err(|_| format!("bad client address {value:?}"))?;
                set_once(&mut client_ip, "client", ip)?;
            }
            "helo" => set_once(&mut helo, "helo", value.to_string())?,
            "auth" => set_once(&mut auth_user, "auth", value.to_string())?,
            "rcpt" => recipients.push(parse_rcpt(value)?),
            _ => return Err(format!("unknown line {line:?}")),
        }
    }

    if !ended {
        return Err("no end line (truncated?)".to_string());
    }
    if recipients.is_empty() {
        return Err("no recipients".to_string());
    }
    Ok(Envelope {
        id: id.ok_or("missing id line")?,
        arrival: arrival.ok_or("missing arrival line")?,
        sender: sender.ok_or("missing sender line")?,
        recipients,
        size: size.ok_or("missing size line")?,
        eight_bit: eight_bit.ok_or("missing body line")?,
        client_ip,
        helo: helo.ok_or("missing helo line")?,
        auth_user,
    })
}

fn set_once<T>(slot: &mut Option<T>, key: &str, value: T) -> Result<(), String> {
    if slot.is_some() {
        return Err(format!("duplicate {key} line"));
    }
    *slot = Some(value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Envelope {
        Envelope {
            id: QueueId::new(1_796_396_783_000_001, 1),
            arrival: 1_796_396_783,
            sender: "alice@example.com".to_string(),
            recipients: vec![
                Recipient::new("bob@example.test".to_string()),
                Recipient {
                    address: "carol@example.test".to_string(),
                    status: Status::Deferred,
                    attempts: 2,
                    last_reply: Some("451 4.7.1 try later".to_string()),
                    next_attempt: Some(1_796_396_900),
                },
            ],
            size: 1234,
            eight_bit: true,
            client_ip: Some("192.0.2.1".parse().unwrap()),
            helo: "mail.example.com".to_string(),
            auth_user: Some("alice".to_string()),
        }
    }

    #[test]
    fn encodes_the_documented_form() {
        let text = String::from_utf8(encode(&sample())).unwrap();
        assert_eq!(
            text,
            "postling-envelope 1\n\
             id 661D0382059C100001\n\
             arrival 1796396783\n\
             sender alice@example.com\n\
             size 1234\n\
             body 8bitmime\n\
             client 192.0.2.1\n\
             helo mail.example.com\n\
             auth alice\n\
             rcpt pending 0 - bob@example.test\n\
             rcpt deferred 2 1796396900 carol@example.test 451 4.7.1 try later\n\
             end\n"
        );
    }

    #[test]
    fn round_trips() {
        let base = sample();
        let rcpt = |address: &str, status, attempts, reply: Option<&str>, next| Recipient {
            address: address.to_string(),
            status,
            attempts,
            last_reply: reply.map(str::to_string),
            next_attempt: next,
        };
        let cases: Vec<(&str, Envelope)> = vec![
            ("sample", base.clone()),
            (
                "null sender, local submission, no auth, 7bit",
                Envelope {
                    sender: String::new(),
                    client_ip: None,
                    auth_user: None,
                    eight_bit: false,
                    helo: String::new(),
                    ..base.clone()
                },
            ),
            (
                "IPv6 client, quoted local parts with spaces and percent, UTF-8",
                Envelope {
                    sender: "\"a b%20c\"@example.com".to_string(),
                    client_ip: Some("2001:db8::1".parse().unwrap()),
                    recipients: vec![
                        rcpt(
                            "\"x  y\"@example.test",
                            Status::Failed,
                            1,
                            Some("550 5.1.1 no"),
                            None,
                        ),
                        rcpt("jörg@bücher.example", Status::Delivered, 3, Some(""), None),
                        rcpt(
                            "t@x",
                            Status::Deferred,
                            u32::MAX,
                            Some("- "),
                            Some(u64::MAX),
                        ),
                        rcpt("\u{1}\u{85}@x", Status::Pending, 0, None, Some(0)),
                    ],
                    ..base.clone()
                },
            ),
            (
                "empty auth user, extreme numbers",
                Envelope {
                    auth_user: Some(String::new()),
                    arrival: 0,
                    size: u64::MAX,
                    ..base.clone()
                },
            ),
        ];
        for (name, env) in cases {
            let bytes = encode(&env);
            assert_eq!(decode(&bytes).as_ref(), Ok(&env), "{name}");
        }
    }

    #[test]
    fn sanitises_free_text() {
        let mut env = sample();
        env.helo = "evil\r\nrcpt pending 0 - x@y".to_string();
        env.auth_user = Some("a\tb".to_string());
        env.recipients[1].last_reply = Some("451 line one\r\n451 line two\u{0}".to_string());
        let decoded = decode(&encode(&env)).unwrap();
        assert_eq!(decoded.helo, "evil  rcpt pending 0 - x@y");
        assert_eq!(decoded.auth_user.as_deref(), Some("a b"));
        assert_eq!(decoded.recipients.len(), 2);
        assert_eq!(
            decoded.recipients[1].last_reply.as_deref(),
            Some("451 line one  451 line two ")
        );
    }

    #[test]
    fn rejects_bad_files() {
        let good = String::from_utf8(encode(&sample())).unwrap();
        let edit = |from: &str, to: &str| {
            assert!(good.contains(from), "{from}");
            good.replacen(from, to, 1)
        };
        let cases: Vec<(&str, String, &str)> = vec![
            (
                "version",
                edit("envelope 1", "envelope 2"),
                "unsupported version",
            ),
            (
                "no version",
                edit("postling-envelope 1\n", ""),
                "unsupported version",
            ),
            (
                "missing id",
                edit("id 661D0382059C100001\n", ""),
                "missing id",
            ),
            (
                "duplicate id",
                edit("arrival", "id 661D0382059C100002\narrival"),
                "duplicate id",
            ),
            ("bad id", edit("id 661D0382059C100001", "id ../x"), "bad id"),
            (
                "missing helo",
                edit("helo mail.example.com\n", ""),
                "missing helo",
            ),
            ("missing body", edit("body 8bitmime\n", ""), "missing body"),
            ("bad body", edit("8bitmime", "binarymime"), "body type"),
            ("bad number", edit("size 1234", "size 12x4"), "bad number"),
            (
                "signed number",
                edit("size 1234", "size +1234"),
                "bad number",
            ),
            (
                "huge number",
                edit("size 1234", "size 99999999999999999999"),
                "out of range",
            ),
            (
                "big attempts",
                edit("deferred 2 ", "deferred 4294967296 "),
                "out of range",
            ),
            (
                "status",
                edit("rcpt pending", "rcpt waiting"),
                "unknown recipient status",
            ),
            (
                "short rcpt",
                edit("rcpt pending 0 - bob@example.test", "rcpt pending 0 -"),
                "without address",
            ),
            (
                "empty rcpt",
                edit("rcpt pending 0 - bob@example.test", "rcpt pending 0 - "),
                "empty recipient",
            ),
            (
                "bad escape",
                edit("bob@example.test", "bob%2@example.test"),
                "percent escape",
            ),
            (
                "escape not utf8",
                edit("bob@example.test", "bob%FF@x"),
                "not UTF-8",
            ),
            ("bad client", edit("192.0.2.1", "192.0.2.300"), "bad client"),
            (
                "unknown key",
                edit("end\n", "colour blue\nend\n"),
                "unknown line",
            ),
            (
                "after end",
                format!("{good}rcpt pending 0 - x@y\n"),
                "after end",
            ),
            ("no end", edit("end\n", ""), "no end line"),
            ("no newline", good.trim_end().to_string(), "newline"),
            (
                "CR",
                edit("helo mail.example.com", "helo mail\r"),
                "control character",
            ),
            (
                "no recipients",
                good.lines()
                    .filter(|l| !l.starts_with("rcpt"))
                    .map(|l| format!("{l}\n"))
                    .collect(),
                "no recipients",
            ),
        ];
        for (name, text, want) in cases {
            match decode(text.as_bytes()) {
                Ok(_) => panic!("{name}: accepted"),
                Err(e) => assert!(e.contains(want), "{name}: {e:?} lacks {want:?}"),
            }
        }
    }

    #[test]
    fn never_panics_and_rejects_every_truncation() {
        let good = encode(&sample());
        for n in 0..good.len() {
            assert!(decode(&good[..n]).is_err(), "truncated to {n} accepted");
        }
        let garbage: &[&[u8]] = &[
            b"",
            b"\n",
            b"\n\n\n",
            b"\xff\xfe\x00",
            b"postling-envelope 1\n",
            b"postling-envelope 1\nend\n",
            b"postling-envelope 1\nrcpt\nend\n",
            b"postling-envelope 1\nrcpt    \nend\n",
            b"postling-envelope 1\nrcpt pending 0 - %\nend\n",
            b"postling-envelope 1\nrcpt pending 0 - %%%\nend\n",
            b"postling-envelope 1\nrcpt pending 0 - a%C3\nend\n",
            b"postling-envelope 1\nsender %\xc3\xa9\nend\n",
            b"postling-envelope 1\n \n",
        ];
        for g in garbage {
            assert!(decode(g).is_err(), "{g:?}");
        }
        // Flip every byte of a valid file to a few values: no panic, whatever the result.
        for i in 0..good.len() {
            for b in [0u8, b' ', b'\n', b'%', 0xff, b'9'] {
                let mut bad = good.clone();
                bad[i] = b;
                let _ = decode(&bad);
            }
        }
    }
}
