//! One command line → [`Command`], or the [`Reply`] that rejects it.
//!
//! This is the "check" step of each verb (OpenSMTPD style): a pure function that either
//! returns well-formed arguments or the reply; nothing here "fixes up" bad input.
//! The line given has its CRLF (or LF) already removed and is known to be short enough.
//!
//! Invariants of a returned [`Command`]: every string in it is valid UTF-8 free of control
//! characters (C0, DEL and C1), so it can go into a log line or a `Received:` header as
//! is; HELO/EHLO names are non-empty printable ASCII; addresses passed
//! [`address::parse_path`] without SMTPUTF8.
//!
//! Reply mapping (RFC 5321 §4.2.2, RFC 3463): NUL, invalid UTF-8 and other control
//! characters `500 5.5.2`; unknown verb `500 5.5.2`; malformed arguments `501 5.5.4`;
//! bad sender or recipient address `501 5.1.7` / `501 5.1.3` (non-ASCII address `553
//! 5.6.7`, RFC 6531 §3.5); unknown MAIL/RCPT parameter `555 5.5.4`.

use super::address::{self, AddressError, Mailbox};
use super::reply::{self, Reply};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    SevenBit,
    EightBitMime,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailParams {
    /// `SIZE=` (RFC 1870), the client's estimate.
    pub size: Option<u64>,
    /// `BODY=7BIT|8BITMIME` (RFC 6152); `SevenBit` when absent.
    pub body: Body,
}

/// `RCPT TO:` target: RFC 5321 §4.1.1.3 allows a bare `<Postmaster>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ForwardPath {
    Postmaster,
    Mailbox(Mailbox),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Helo(String),
    Ehlo(String),
    /// `from` is `None` for the null reverse path `<>`.
    Mail {
        from: Option<Mailbox>,
        params: MailParams,
    },
    Rcpt {
        to: ForwardPath,
    },
    Data,
    Rset,
    Noop,
    Quit,
    Vrfy,
    Expn,
    Help,
    StartTls,
    /// `AUTH mechanism [initial-response]`; mechanism upper-cased.
    Auth {
        mechanism: String,
        initial: Option<String>,
    },
    /// `GET`, `POST`, `CONNECT`, `HEAD`, `PUT`, `OPTIONS`: a cross-protocol request.
    Http,
}

/// Parse one command line (without its line end). Verbs are case-insensitive.
pub fn parse(line: &[u8]) -> Result<Command, Reply> {
    // Spec "Reply codes pinned down": NUL or invalid UTF-8 is `500 5.5.2`.
    if line.contains(&0) {
        return Err(reply::bad_bytes());
    }
    let line = std::str::from_utf8(line).map_err(|_| reply::bad_bytes())?;
    // RFC 5321 §4.1.1: arguments are separated by SP; a CR, tab or escape inside a
    // command is never legitimate and could end up in a header or a log line.
    if line.chars().any(char::is_control) {
        return Err(control_characters());
    }
    let (verb, args) = line.split_once(' ').unwrap_or((line, ""));
    let is = |name: &str| verb.eq_ignore_ascii_case(name);

    if is("EHLO") {
        hello(args, "Syntax: EHLO hostname").map(Command::Ehlo)
    } else if is("HELO") {
        hello(args, "Syntax: HELO hostname").map(Command::Helo)
    } else if is("MAIL") {
        mail(args)
    } else if is("RCPT") {
        rcpt(args)
    } else if is("DATA") {
        no_arguments(args, Command::Data, "Syntax: DATA")
    } else if is("RSET") {
        no_arguments(args, Command::Rset, "Syntax: RSET")
    } else if is("QUIT") {
        no_arguments(args, Command::Quit, "Syntax: QUIT")
    } else if is("STARTTLS") {
        no_arguments(args, Command::StartTls, "Syntax: STARTTLS")
    } else if is("NOOP") {
        // RFC 5321 §4.1.1.9: NOOP may carry a string, which is ignored.
        Ok(Command::Noop)
    } else if is("VRFY") {
        // RFC 5321 §4.1.1.6: VRFY takes a string; we never verify (252), so its content
        // does not matter, but its absence is a syntax error.
        required_argument(args, Command::Vrfy, "Syntax: VRFY address")
    } else if is("EXPN") {
        required_argument(args, Command::Expn, "Syntax: EXPN mailing-list")
    } else if is("HELP") {
        // RFC 5321 §4.1.1.8: HELP [ SP String ].
        Ok(Command::Help)
    } else if is("AUTH") {
        auth(args)
    } else if HTTP_VERBS.iter().any(|v| is(v)) {
        Ok(Command::Http)
    } else {
        Err(reply::unknown_command())
    }
}

/// Request methods that mark a cross-protocol (HTTP) request on the SMTP port.
const HTTP_VERBS: &[&str] = &["GET", "POST", "HEAD", "PUT", "CONNECT", "OPTIONS"];

fn control_characters() -> Reply {
    Reply::new(500, "5.5.2", "Error: control character in command")
}

/// HELO/EHLO: like Postfix, the name is the rest of the line with surrounding spaces
/// removed (clients send all sorts of things; it is only recorded, never trusted), but
/// it must be there (RFC 5321 §4.1.1.1) and be printable ASCII so that it can go into
/// a `Received:` header unencoded.
fn hello(args: &str, usage: &'static str) -> Result<String, Reply> {
    let name = args.trim_matches(' ');
    if name.is_empty() || !name.is_ascii() {
        return Err(reply::syntax(usage));
    }
    Ok(name.to_owned())
}

/// Verbs without arguments (RFC 5321 §4.1.1.4, .5, .10; RFC 3207 §4). Trailing spaces
/// are tolerated: they carry nothing, and some clients pad.
fn no_arguments(args: &str, command: Command, usage: &'static str) -> Result<Command, Reply> {
    if args.trim_matches(' ').is_empty() {
        Ok(command)
    } else {
        Err(reply::syntax(usage))
    }
}

fn required_argument(args: &str, command: Command, usage: &'static str) -> Result<Command, Reply> {
    if args.trim_matches(' ').is_empty() {
        Err(reply::syntax(usage))
    } else {
        Ok(command)
    }
}

/// Strip a case-insensitive `FROM:` / `TO:` and the spaces some clients put after the
/// colon (RFC 5321 §4.1.1.2 has none; Postfix and most servers tolerate them).
fn strip_keyword<'a>(args: &'a str, keyword: &str) -> Option<&'a str> {
    let head = args.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    Some(args.get(keyword.len()..)?.trim_start_matches(' '))
}

/// The text after `>`: empty, or SP-separated parameters (RFC 5321 §4.1.2,
/// Mail-parameters). Anything glued to the `>` is a syntax error.
fn parameters<'a>(rest: &'a str, usage: &'static str) -> Result<Vec<&'a str>, Reply> {
    if !rest.is_empty() && !rest.starts_with(' ') {
        return Err(reply::syntax(usage));
    }
    Ok(rest.split(' ').filter(|p| !p.is_empty()).collect())
}

/// `553 5.6.7` for a non-ASCII address without SMTPUTF8 (RFC 6531 §3.5); every other
/// address error is the caller's `501 5.1.x`.
fn address_error(e: AddressError, otherwise: fn() -> Reply) -> Reply {
    match e {
        AddressError::NonAscii => {
            Reply::new(553, "5.6.7", "Error: non-ASCII address requires SMTPUTF8")
        }
        AddressError::Syntax
        | AddressError::SourceRoute
        | AddressError::RoutingHack
        | AddressError::TooLong => otherwise(),
    }
}

/// `MAIL FROM:<reverse-path> [SP Mail-parameters]` (RFC 5321 §4.1.1.2).
fn mail(args: &str) -> Result<Command, Reply> {
    const USAGE: &str = "Syntax: MAIL FROM:<address>";
    let path = strip_keyword(args, "FROM:").ok_or_else(|| reply::syntax(USAGE))?;
    let (from, rest) = address::parse_path(path, true, false)
        .map_err(|e| address_error(e, reply::bad_sender_syntax))?;
    let mut params = MailParams {
        size: None,
        body: Body::SevenBit,
    };
    let mut seen_size = false;
    let mut seen_body = false;
    let mut seen_auth = false;
    for param in parameters(rest, USAGE)? {
        let (keyword, value) = match param.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (param, None),
        };
        if keyword.eq_ignore_ascii_case("SIZE") {
            // RFC 1870 §6: size-value ::= 1*20DIGIT.
            if std::mem::replace(&mut seen_size, true) {
                return Err(reply::syntax("Syntax: duplicate SIZE parameter"));
            }
            let size = value
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| reply::syntax("Syntax: SIZE=number"))?;
            params.size = Some(size);
        } else if keyword.eq_ignore_ascii_case("BODY") {
            // RFC 6152 §2: BODY=7BIT / BODY=8BITMIME. BINARYMIME (RFC 3030) is not offered.
            if std::mem::replace(&mut seen_body, true) {
                return Err(reply::syntax("Syntax: duplicate BODY parameter"));
            }
            params.body = match value {
                Some(v) if v.eq_ignore_ascii_case("7BIT") => Body::SevenBit,
                Some(v) if v.eq_ignore_ascii_case("8BITMIME") => Body::EightBitMime,
                _ => return Err(reply::syntax("Syntax: BODY=7BIT or BODY=8BITMIME")),
            };
        } else if keyword.eq_ignore_ascii_case("AUTH") {
            // RFC 4954 §5: a server offering AUTH must accept `AUTH=<mailbox>|<>` on MAIL.
            // We do not relay the claimed identity onwards, which §5 allows (it is then
            // as if `AUTH=<>` was given), so the value is checked and dropped.
            if std::mem::replace(&mut seen_auth, true) {
                return Err(reply::syntax("Syntax: duplicate AUTH parameter"));
            }
            if !value.is_some_and(is_xtext) {
                return Err(reply::syntax("Syntax: AUTH=xtext"));
            }
        } else {
            return Err(reply::unknown_parameter());
        }
    }
    Ok(Command::Mail { from, params })
}

/// RFC 3461 §4: xtext, or `<>`. Non-empty printable ASCII except `+` escapes as `+XX`
/// (upper-case hex) and no `=`.
fn is_xtext(value: &str) -> bool {
    if value == "<>" {
        return true;
    }
    let bytes = value.as_bytes();
    if bytes.is_empty() {
        return false;
    }
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => {
                let hex = |j: usize| {
                    bytes
                        .get(j)
                        .is_some_and(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(c))
                };
                if !(hex(i + 1) && hex(i + 2)) {
                    return false;
                }
                i += 3;
            }
            b'!'..=b'~' if b != b'=' => i += 1,
            _ => return false,
        }
    }
    true
}

/// `RCPT TO:<forward-path> [SP Rcpt-parameters]` (RFC 5321 §4.1.1.3).
fn rcpt(args: &str) -> Result<Command, Reply> {
    const USAGE: &str = "Syntax: RCPT TO:<address>";
    let path = strip_keyword(args, "TO:").ok_or_else(|| reply::syntax(USAGE))?;
    // RFC 5321 §4.1.1.3: `<Postmaster>` without a domain must be accepted (any case,
    // §2.4: the local part "postmaster" is case-insensitive).
    let postmaster = "<postmaster>";
    let (to, rest) = match path.get(..postmaster.len()) {
        Some(head) if head.eq_ignore_ascii_case(postmaster) => (
            ForwardPath::Postmaster,
            path.get(postmaster.len()..).unwrap_or(""),
        ),
        _ => match address::parse_path(path, false, false) {
            Ok((Some(mailbox), rest)) => (ForwardPath::Mailbox(mailbox), rest),
            // Unreachable with allow_null = false, but never trust that with a panic.
            Ok((None, _)) => return Err(reply::bad_recipient_syntax()),
            Err(e) => return Err(address_error(e, reply::bad_recipient_syntax)),
        },
    };
    // We advertise no RCPT parameters (no DSN), so any is unrecognised (RFC 5321
    // §4.1.1.11 / §4.2.2: 555).
    if !parameters(rest, USAGE)?.is_empty() {
        return Err(reply::unknown_parameter());
    }
    Ok(Command::Rcpt { to })
}

/// `AUTH mechanism [initial-response]` (RFC 4954 §4). The mechanism is an RFC 4422 §3.1
/// SASL name (1..=20 of A-Z, 0-9, `-`, `_`); the initial response is passed on
/// unchecked (base64 or `=`), the SASL code decodes it.
fn auth(args: &str) -> Result<Command, Reply> {
    const USAGE: &str = "Syntax: AUTH mechanism [initial-response]";
    let mut words = args.split(' ').filter(|w| !w.is_empty());
    let mechanism = words.next().ok_or_else(|| reply::syntax(USAGE))?;
    let initial = words.next().map(str::to_owned);
    if words.next().is_some() {
        return Err(reply::syntax(USAGE));
    }
    let sasl_name = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if mechanism.len() > 20 || !mechanism.chars().all(sasl_name) {
        return Err(reply::syntax(USAGE));
    }
    Ok(Command::Auth {
        mechanism: mechanism.to_ascii_uppercase(),
        initial,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a case expects: a command, or the reply's basic and enhanced codes.
    #[derive(Debug)]
    enum Want {
        Is(fn() -> Command),
        Code(u16, &'static str),
    }
    use Want::{Code, Is};

    fn mb(s: &str) -> Mailbox {
        Mailbox::parse(s, false).unwrap()
    }
    fn mail(from: Option<&str>, size: Option<u64>, body: Body) -> Command {
        Command::Mail {
            from: from.map(mb),
            params: MailParams { size, body },
        }
    }
    fn rcpt(to: &str) -> Command {
        Command::Rcpt {
            to: ForwardPath::Mailbox(mb(to)),
        }
    }
    fn auth(mechanism: &str, initial: Option<&str>) -> Command {
        Command::Auth {
            mechanism: mechanism.to_owned(),
            initial: initial.map(str::to_owned),
        }
    }

    const CASES: &[(&[u8], Want)] = &[
        // Bytes the spec pins down.
        (b"MAIL FROM:<a\0@b>", Code(500, "5.5.2")),
        (b"\0", Code(500, "5.5.2")),
        (b"EHLO \xff\xfe", Code(500, "5.5.2")),
        (b"EHLO ex\xc3", Code(500, "5.5.2")),
        (b"EHLO a\rb", Code(500, "5.5.2")),
        (b"EHLO a\tb", Code(500, "5.5.2")),
        (b"NOOP \x1b[2J", Code(500, "5.5.2")),
        // HELO / EHLO.
        (
            b"EHLO client.example",
            Is(|| Command::Ehlo("client.example".into())),
        ),
        (
            b"ehlo [192.0.2.1]",
            Is(|| Command::Ehlo("[192.0.2.1]".into())),
        ),
        (b"HELO  x y ", Is(|| Command::Helo("x y".into()))),
        (
            b"HeLo garbage!%$",
            Is(|| Command::Helo("garbage!%$".into())),
        ),
        (b"EHLO", Code(501, "5.5.4")),
        (b"EHLO ", Code(501, "5.5.4")),
        (b"HELO", Code(501, "5.5.4")),
        (b"EHLO b\xc3\xbccher", Code(501, "5.5.4")),
        (b"EHLO\tx", Code(500, "5.5.2")),
        // MAIL.
        (
            b"MAIL FROM:<a@b.example>",
            Is(|| mail(Some("a@b.example"), None, Body::SevenBit)),
        ),
        (
            b"mail from:<a@b>",
            Is(|| mail(Some("a@b"), None, Body::SevenBit)),
        ),
        (
            b"MAIL FROM: <a@b>",
            Is(|| mail(Some("a@b"), None, Body::SevenBit)),
        ),
        (b"MAIL FROM:<>", Is(|| mail(None, None, Body::SevenBit))),
        (
            b"MAIL FROM:<> SIZE=0",
            Is(|| mail(None, Some(0), Body::SevenBit)),
        ),
        (
            b"MAIL FROM:<a@b> SIZE=1000 BODY=8BITMIME",
            Is(|| mail(Some("a@b"), Some(1000), Body::EightBitMime)),
        ),
        (
            b"MAIL FROM:<a@b>  body=8bitmime  ",
            Is(|| mail(Some("a@b"), None, Body::EightBitMime)),
        ),
        (
            b"MAIL FROM:<a@b> BODY=7bit",
            Is(|| mail(Some("a@b"), None, Body::SevenBit)),
        ),
        (
            b"MAIL FROM:<a@b> SIZE=18446744073709551615",
            Is(|| mail(Some("a@b"), Some(u64::MAX), Body::SevenBit)),
        ),
        (
            b"MAIL FROM:<a@b> AUTH=<>",
            Is(|| mail(Some("a@b"), None, Body::SevenBit)),
        ),
        (
            b"MAIL FROM:<a@b> AUTH=e+2Bx@y",
            Is(|| mail(Some("a@b"), None, Body::SevenBit)),
        ),
        (b"MAIL FROM:<a@b> AUTH=e+2x@y", Code(501, "5.5.4")),
        (b"MAIL FROM:<a@b> AUTH=", Code(501, "5.5.4")),
        (b"MAIL FROM:<a@b> AUTH=<> AUTH=<>", Code(501, "5.5.4")),
        (
            b"MAIL FROM:<a@b> SIZE=18446744073709551616",
            Code(501, "5.5.4"),
        ),
        (b"MAIL FROM:<a@b> SIZE=", Code(501, "5.5.4")),
        (b"MAIL FROM:<a@b> SIZE", Code(501, "5.5.4")),
        (b"MAIL FROM:<a@b> SIZE=+5", Code(501, "5.5.4")),
        (b"MAIL FROM:<a@b> SIZE=1k", Code(501, "5.5.4")),
        (b"MAIL FROM:<a@b> SIZE=1 SIZE=1", Code(501, "5.5.4")),
        (b"MAIL FROM:<a@b> BODY=7BIT body=7bit", Code(501, "5.5.4")),
        (b"MAIL FROM:<a@b> BODY=BINARYMIME", Code(501, "5.5.4")),
        (b"MAIL FROM:<a@b> BODY", Code(501, "5.5.4")),
        (b"MAIL FROM:<a@b> SMTPUTF8", Code(555, "5.5.4")),
        (b"MAIL FROM:<a@b> RET=HDRS", Code(555, "5.5.4")),
        (b"MAIL FROM:<a@b> =x", Code(555, "5.5.4")),
        (b"MAIL FROM:<a@b>SIZE=1", Code(501, "5.5.4")),
        (b"MAIL FROM:", Code(501, "5.1.7")),
        (b"MAIL FROM:a@b", Code(501, "5.1.7")),
        (b"MAIL FROM:<a@b", Code(501, "5.1.7")),
        (b"MAIL FROM:<user%other@local>", Code(501, "5.1.7")),
        (b"MAIL FROM:<@r:a@b>", Code(501, "5.1.7")),
        (b"MAIL FROM:<j\xc3\xb6@b>", Code(553, "5.6.7")),
        (b"MAIL", Code(501, "5.5.4")),
        (b"MAIL TO:<a@b>", Code(501, "5.5.4")),
        (b"MAIL FROM <a@b>", Code(501, "5.5.4")),
        (b"MAILFROM:<a@b>", Code(500, "5.5.2")),
        // RCPT.
        (b"RCPT TO:<c@d.example>", Is(|| rcpt("c@d.example"))),
        (b"rcpt to: <c@d> ", Is(|| rcpt("c@d"))),
        (
            b"RCPT TO:<\"user@other\"@local>",
            Is(|| rcpt("\"user@other\"@local")),
        ),
        (b"RCPT TO:<c@[192.0.2.1]>", Is(|| rcpt("c@[192.0.2.1]"))),
        (
            b"RCPT TO:<postmaster>",
            Is(|| Command::Rcpt {
                to: ForwardPath::Postmaster,
            }),
        ),
        (
            b"RCPT TO:<PostMaster>",
            Is(|| Command::Rcpt {
                to: ForwardPath::Postmaster,
            }),
        ),
        (b"RCPT TO:<postmaster> NOTIFY=NEVER", Code(555, "5.5.4")),
        (b"RCPT TO:<postmaster>x", Code(501, "5.5.4")),
        (b"RCPT TO:<c@d> NOTIFY=NEVER", Code(555, "5.5.4")),
        (b"RCPT TO:<c@d>x", Code(501, "5.5.4")),
        (b"RCPT TO:<>", Code(501, "5.1.3")),
        (b"RCPT TO:<user%other@local>", Code(501, "5.1.3")),
        (b"RCPT TO:<user!other@local>", Code(501, "5.1.3")),
        (b"RCPT TO:<user@other@local>", Code(501, "5.1.3")),
        (b"RCPT TO:<@route:user@other>", Code(501, "5.1.3")),
        (b"RCPT TO:<user@domain.>", Code(501, "5.1.3")),
        (b"RCPT TO:<postmaster@>", Code(501, "5.1.3")),
        (b"RCPT TO:postmaster", Code(501, "5.1.3")),
        (b"RCPT TO:<j\xc3\xb6@d>", Code(553, "5.6.7")),
        (b"RCPT", Code(501, "5.5.4")),
        (b"RCPT FROM:<c@d>", Code(501, "5.5.4")),
        // Verbs without arguments.
        (b"DATA", Is(|| Command::Data)),
        (b"data ", Is(|| Command::Data)),
        (b"DATA x", Code(501, "5.5.4")),
        (b"RSET", Is(|| Command::Rset)),
        (b"RSET now", Code(501, "5.5.4")),
        (b"QUIT", Is(|| Command::Quit)),
        (b"quit please", Code(501, "5.5.4")),
        (b"STARTTLS", Is(|| Command::StartTls)),
        (b"StartTLS x", Code(501, "5.5.4")),
        (b"NOOP", Is(|| Command::Noop)),
        (b"NOOP anything at all", Is(|| Command::Noop)),
        // VRFY, EXPN, HELP.
        (b"VRFY root", Is(|| Command::Vrfy)),
        (b"VRFY", Code(501, "5.5.4")),
        (b"EXPN staff", Is(|| Command::Expn)),
        (b"EXPN ", Code(501, "5.5.4")),
        (b"HELP", Is(|| Command::Help)),
        (b"help mail", Is(|| Command::Help)),
        // AUTH.
        (b"AUTH PLAIN", Is(|| auth("PLAIN", None))),
        (
            b"auth plain AGEAYg==",
            Is(|| auth("PLAIN", Some("AGEAYg=="))),
        ),
        (
            b"AUTH login dXNlcg==",
            Is(|| auth("LOGIN", Some("dXNlcg=="))),
        ),
        (b"AUTH PLAIN =", Is(|| auth("PLAIN", Some("=")))),
        (b"AUTH CRAM-MD5", Is(|| auth("CRAM-MD5", None))),
        (b"AUTH", Code(501, "5.5.4")),
        (b"AUTH ", Code(501, "5.5.4")),
        (b"AUTH PLAIN a b", Code(501, "5.5.4")),
        (b"AUTH PL@IN", Code(501, "5.5.4")),
        // Cross-protocol requests.
        (b"GET / HTTP/1.1", Is(|| Command::Http)),
        (b"POST /cgi HTTP/1.0", Is(|| Command::Http)),
        (b"head /", Is(|| Command::Http)),
        (b"PUT x", Is(|| Command::Http)),
        (b"CONNECT mail.example:25 HTTP/1.1", Is(|| Command::Http)),
        (b"OPTIONS *", Is(|| Command::Http)),
        // Unknown.
        (b"", Code(500, "5.5.2")),
        (b" MAIL FROM:<a@b>", Code(500, "5.5.2")),
        (b"BDAT 10 LAST", Code(500, "5.5.2")),
        (b"XYZZY", Code(500, "5.5.2")),
        (b"Host: example.org", Code(500, "5.5.2")),
    ];

    #[test]
    fn command_table() {
        for (line, want) in CASES {
            let got = parse(line);
            let shown = String::from_utf8_lossy(line);
            match (want, got) {
                (Is(command), Ok(got)) => assert_eq!(got, command(), "line {shown:?}"),
                (Code(code, enhanced), Err(reply)) => {
                    assert_eq!(
                        (reply.code, reply.enhanced),
                        (*code, Some(*enhanced)),
                        "line {shown:?}"
                    )
                }
                (want, got) => panic!("line {shown:?}: want {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn address_errors_use_the_reply_table() {
        assert_eq!(parse(b"MAIL FROM:<a@b@c>"), Err(reply::bad_sender_syntax()));
        assert_eq!(
            parse(b"RCPT TO:<a@b@c>"),
            Err(reply::bad_recipient_syntax())
        );
        assert_eq!(
            parse(b"MAIL FROM:<a@b> X=1"),
            Err(reply::unknown_parameter())
        );
        assert_eq!(parse(b"FOO"), Err(reply::unknown_command()));
        assert_eq!(parse(b"\xc0"), Err(reply::bad_bytes()));
        assert_eq!(
            parse(b"EHLO").map_err(|r| r.text().to_owned()),
            Err("Syntax: EHLO hostname".to_owned())
        );
    }

    #[test]
    fn never_panics_on_prefixes() {
        let line: &[u8] =
            b"MAIL FROM:<\"a\\\">\"@[IPv6:::1]> SIZE=1 BODY=8BITMIME AUTH=+41\xc3\xb6";
        for end in 0..=line.len() {
            let _ = parse(&line[..end]);
            let _ = parse(&line[end..]);
        }
    }
}
