//! RFC 5321 paths and mailboxes (§4.1.2), parsed strictly.
//!
//! Invariants: a parsed [`Mailbox`] has a non-empty local part of at most 64 octets,
//! a domain that is a syntactically valid dot-separated name (no trailing dot, labels of
//! 1..=63 letters/digits/hyphens, not starting or ending with a hyphen, total ≤ 255) or an
//! address literal `[1.2.3.4]` / `[IPv6:…]`, no control characters anywhere, no `%` or `!`
//! routing hacks in the local part, no source routes, exactly one unquoted `@`.
//! A whole mailbox is at most 254 octets and a path (with its brackets) at most 256
//! (RFC 5321 §4.5.3.1.3). Non-ASCII appears only when the caller allowed it (RFC 6531).
//!
//! Parsing never "fixes up" input (no trimming, no case folding, no dropping of a source
//! route): anything outside the grammar is an error, so what we relay or deliver is
//! exactly what was checked. Nothing here panics on any input.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Longest local part, in octets (RFC 5321 §4.5.3.1.1).
pub const MAX_LOCAL_PART: usize = 64;
/// Longest domain, in octets (RFC 5321 §4.5.3.1.2).
pub const MAX_DOMAIN: usize = 255;
/// Longest DNS label, in octets (RFC 1035 §2.3.4).
pub const MAX_LABEL: usize = 63;
/// Longest mailbox: a 256-octet path minus its angle brackets (RFC 5321 §4.5.3.1.3,
/// erratum 1690).
pub const MAX_MAILBOX: usize = 254;
/// Longest path, angle brackets included (RFC 5321 §4.5.3.1.3).
pub const MAX_PATH: usize = 256;

/// `local-part@domain`, as it appeared on the wire (quoted local parts keep their quotes).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Mailbox {
    local: String,
    domain: String,
}

/// Why an address was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressError {
    /// Not `<…>`, unbalanced brackets or quotes, trailing garbage inside the brackets.
    Syntax,
    /// `@a,@b:user@c` source routes.
    SourceRoute,
    /// `%` or `!` in the local part (percent hack / bang path relaying).
    RoutingHack,
    /// Local part over 64 octets, path over 256 octets (RFC 5321 §4.5.3.1).
    TooLong,
    /// Non-ASCII where SMTPUTF8 was not given.
    NonAscii,
}

impl Mailbox {
    /// Parse `local@domain` (no angle brackets). `utf8` allows UTF-8 (RFC 6531).
    pub fn parse(s: &str, utf8: bool) -> Result<Mailbox, AddressError> {
        // Control characters are never valid, not even quoted: qtextSMTP and
        // quoted-pairSMTP are both limited to %d32-126 (RFC 5321 §4.1.2).
        if s.chars().any(char::is_control) {
            return Err(AddressError::Syntax);
        }
        if !utf8 && !s.is_ascii() {
            return Err(AddressError::NonAscii);
        }
        if s.len() > MAX_MAILBOX {
            return Err(AddressError::TooLong);
        }
        let (local, domain) = split_local_part(s, utf8)?;
        if local.len() > MAX_LOCAL_PART {
            return Err(AddressError::TooLong);
        }
        check_domain(domain, utf8)?;
        Ok(Mailbox {
            local: local.to_owned(),
            domain: domain.to_owned(),
        })
    }

    /// The local part as on the wire (a quoted local part keeps its quotes).
    pub fn local_part(&self) -> &str {
        &self.local
    }

    /// The domain as given (case kept), or the literal with its brackets.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// True for `[…]` address literals.
    pub fn domain_is_literal(&self) -> bool {
        self.domain.starts_with('[')
    }
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

/// Parse an angle-bracketed path at the start of `s` (after `FROM:` / `TO:` and any
/// spaces). Returns the mailbox (`None` for the null path `<>` when `allow_null`) and the
/// rest of the line after `>` (the ESMTP parameters, leading spaces not stripped).
/// A `>` inside a quoted local part does not close the path.
pub fn parse_path(
    s: &str,
    allow_null: bool,
    utf8: bool,
) -> Result<(Option<Mailbox>, &str), AddressError> {
    let inner_and_rest = s.strip_prefix('<').ok_or(AddressError::Syntax)?;
    let close = closing_bracket(inner_and_rest).ok_or(AddressError::Syntax)?;
    // `<` + inner + `>`; `close` is the index of `>` within `inner_and_rest`.
    if close + 2 > MAX_PATH {
        return Err(AddressError::TooLong);
    }
    let inner = inner_and_rest.get(..close).ok_or(AddressError::Syntax)?;
    let rest = inner_and_rest
        .get(close + 1..)
        .ok_or(AddressError::Syntax)?;
    if inner.is_empty() {
        // RFC 5321 §4.1.1.2: the null reverse-path `<>` (bounces); never a forward-path.
        return if allow_null {
            Ok((None, rest))
        } else {
            Err(AddressError::Syntax)
        };
    }
    if inner.starts_with('@') && inner.contains(':') {
        // RFC 5321 §4.1.1.3 / appendix C: `@a,@b:user@c`. We refuse rather than silently
        // drop the route: dropping it is "fixing up" input, and a route is a relay request.
        return Err(AddressError::SourceRoute);
    }
    Ok((Some(Mailbox::parse(inner, utf8)?), rest))
}

/// Index of the `>` that closes a path whose `<` has been stripped, skipping over a
/// quoted string (and the quoted pairs in it), so `"a>b"@x>` closes at the last `>`.
fn closing_bracket(s: &str) -> Option<usize> {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, b) in s.bytes().enumerate() {
        if escaped {
            escaped = false;
        } else if in_quotes {
            match b {
                b'\\' => escaped = true,
                b'"' => in_quotes = false,
                _ => {}
            }
        } else {
            match b {
                b'"' => in_quotes = true,
                b'>' => return Some(i),
                _ => {}
            }
        }
    }
    None
}

/// RFC 5322 §3.2.3 atext, as used by RFC 5321 Atom. With `utf8`, any non-ASCII character
/// also counts (RFC 6531 §3.3, UTF8-non-ascii); controls were refused earlier.
fn is_atext(c: char, utf8: bool) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || (utf8 && !c.is_ascii())
}

/// RFC 5321 §4.1.2 qtextSMTP: printable ASCII except `"` and `\` (plus non-ASCII with
/// `utf8`, RFC 6531 §3.3).
fn is_qtext(c: char, utf8: bool) -> bool {
    matches!(c, ' '..='!' | '#'..='[' | ']'..='~') || (utf8 && !c.is_ascii())
}

/// Split `local@domain` at the one unquoted `@`, checking the local part's grammar.
/// Returns the local part exactly as given (quotes kept) and the unchecked domain.
fn split_local_part(s: &str, utf8: bool) -> Result<(&str, &str), AddressError> {
    let at = if s.starts_with('"') {
        quoted_string_end(s, utf8)?
    } else {
        let at = s.find('@').ok_or(AddressError::Syntax)?;
        let local = s.get(..at).ok_or(AddressError::Syntax)?;
        check_dot_string(local, utf8)?;
        at
    };
    // `at` must be the index of the `@` (a quoted local part must be followed by one).
    if s.get(at..at + 1) != Some("@") {
        return Err(AddressError::Syntax);
    }
    let local = s.get(..at).ok_or(AddressError::Syntax)?;
    // The domain is everything after the first unquoted `@`: a second one lands in the
    // domain and fails its grammar (`user@other@local`).
    let domain = s.get(at + 1..).ok_or(AddressError::Syntax)?;
    Ok((local, domain))
}

/// For a local part starting with `"`: the index just past the closing quote, which
/// must be followed by `@` (checked by the caller).
/// RFC 5321 §4.1.2: Quoted-string = DQUOTE *QcontentSMTP DQUOTE;
/// QcontentSMTP = qtextSMTP / quoted-pairSMTP; quoted-pairSMTP = "\" %d32-126.
fn quoted_string_end(s: &str, utf8: bool) -> Result<usize, AddressError> {
    let mut chars = s.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok(i + 1),
            '\\' => match chars.next() {
                Some((_, ' '..='~')) => {}
                _ => return Err(AddressError::Syntax),
            },
            c if is_qtext(c, utf8) => {}
            _ => return Err(AddressError::Syntax),
        }
    }
    Err(AddressError::Syntax)
}

/// RFC 5321 §4.1.2: Dot-string = Atom *("." Atom). `%` and `!` are atext, but in a
/// local part they ask a host to relay onwards (RFC 5321 §3.6.1 forbids honouring them
/// implicitly; `user%other@local` is the classic open-relay test), so they are refused.
fn check_dot_string(local: &str, utf8: bool) -> Result<(), AddressError> {
    let mut routing_hack = false;
    for atom in local.split('.') {
        // Empty atom: empty local part, leading, trailing or doubled dot.
        if atom.is_empty() {
            return Err(AddressError::Syntax);
        }
        for c in atom.chars() {
            if !is_atext(c, utf8) {
                return Err(AddressError::Syntax);
            }
            routing_hack |= c == '%' || c == '!';
        }
    }
    if routing_hack {
        return Err(AddressError::RoutingHack);
    }
    Ok(())
}

/// RFC 5321 §4.1.2: Domain / address-literal.
fn check_domain(domain: &str, utf8: bool) -> Result<(), AddressError> {
    if let Some(literal) = domain.strip_prefix('[') {
        let inner = literal.strip_suffix(']').ok_or(AddressError::Syntax)?;
        return check_address_literal(inner);
    }
    if domain.len() > MAX_DOMAIN {
        return Err(AddressError::TooLong);
    }
    // Splitting gives at least one label; an empty domain, a leading or trailing dot
    // and `..` all produce an empty label.
    for label in domain.split('.') {
        check_label(label, utf8)?;
    }
    Ok(())
}

/// RFC 5321 §4.1.2 sub-domain (Let-dig [Ldh-str]), RFC 1035 §2.3.4 length; with `utf8`,
/// a U-label may carry non-ASCII characters (RFC 6531 §3.3); IDNA validity is left to
/// DNS, which will simply not find a bad name.
fn check_label(label: &str, utf8: bool) -> Result<(), AddressError> {
    if label.is_empty() || label.starts_with('-') || label.ends_with('-') {
        return Err(AddressError::Syntax);
    }
    if label.len() > MAX_LABEL {
        return Err(AddressError::TooLong);
    }
    let ldh = |c: char| c.is_ascii_alphanumeric() || c == '-' || (utf8 && !c.is_ascii());
    if !label.chars().all(ldh) {
        return Err(AddressError::Syntax);
    }
    Ok(())
}

/// RFC 5321 §4.1.3: IPv4-address-literal or IPv6-address-literal (tag case-insensitive,
/// as every ABNF literal string). General-address-literal tags are not supported.
fn check_address_literal(inner: &str) -> Result<(), AddressError> {
    let ipv6 = inner
        .get(..5)
        .filter(|tag| tag.eq_ignore_ascii_case("IPv6:"))
        .and_then(|_| inner.get(5..));
    let valid = match ipv6 {
        Some(v6) => v6.parse::<Ipv6Addr>().is_ok(),
        None => inner.parse::<Ipv4Addr>().is_ok(),
    };
    if valid {
        Ok(())
    } else {
        Err(AddressError::Syntax)
    }
}

#[cfg(test)]
mod tests {
    use super::AddressError::*;
    use super::*;

    /// (input, utf8, Ok((local, domain)) or the error)
    type Case = (
        &'static str,
        bool,
        Result<(&'static str, &'static str), AddressError>,
    );

    const MAILBOXES: &[Case] = &[
        // Valid dot-strings, domains kept as given.
        ("user@example.org", false, Ok(("user", "example.org"))),
        (
            "first.last@Example.ORG",
            false,
            Ok(("first.last", "Example.ORG")),
        ),
        ("a+tag@localhost", false, Ok(("a+tag", "localhost"))),
        ("o'neil@x-y.example", false, Ok(("o'neil", "x-y.example"))),
        ("#!$&'*+-/=?^_`{|}~@x", false, Err(RoutingHack)),
        ("#$&'*+-/=?^_`{|}~@x", false, Ok(("#$&'*+-/=?^_`{|}~", "x"))),
        ("u@1.2.3.4.example", false, Ok(("u", "1.2.3.4.example"))),
        ("u@a.b-c.d", false, Ok(("u", "a.b-c.d"))),
        // Quoted local parts keep their quotes; `@`, spaces and escapes inside are fine.
        (
            "\"user@other\"@local",
            false,
            Ok(("\"user@other\"", "local")),
        ),
        ("\"john smith\"@x", false, Ok(("\"john smith\"", "x"))),
        ("\"a\\\"b\\\\c\"@x", false, Ok(("\"a\\\"b\\\\c\"", "x"))),
        (
            "\"user%other\"@local",
            false,
            Ok(("\"user%other\"", "local")),
        ),
        ("\"\"@x", false, Ok(("\"\"", "x"))),
        ("\"unterminated@x", false, Err(Syntax)),
        ("\"a\"b@x", false, Err(Syntax)),
        ("\"a\"", false, Err(Syntax)),
        ("\"a\\\"@x", false, Err(Syntax)),
        ("\"a\tb\"@x", false, Err(Syntax)),
        ("a\"b\"@x", false, Err(Syntax)),
        // Address literals.
        ("user@[192.0.2.1]", false, Ok(("user", "[192.0.2.1]"))),
        (
            "user@[IPv6:2001:db8::1]",
            false,
            Ok(("user", "[IPv6:2001:db8::1]")),
        ),
        ("user@[ipv6:::1]", false, Ok(("user", "[ipv6:::1]"))),
        (
            "user@[IPv6:::ffff:192.0.2.1]",
            false,
            Ok(("user", "[IPv6:::ffff:192.0.2.1]")),
        ),
        ("user@[192.0.2.256]", false, Err(Syntax)),
        ("user@[192.0.2]", false, Err(Syntax)),
        ("user@[2001:db8::1]", false, Err(Syntax)),
        ("user@[IPv6:192.0.2.1]", false, Err(Syntax)),
        ("user@[IPv6:fe80::1%eth0]", false, Err(Syntax)),
        ("user@[x-tag:stuff]", false, Err(Syntax)),
        ("user@[192.0.2.1", false, Err(Syntax)),
        ("user@[192.0.2.1]x", false, Err(Syntax)),
        ("user@[]", false, Err(Syntax)),
        // Classic relay tests.
        ("user%other@local", false, Err(RoutingHack)),
        ("user!other@local", false, Err(RoutingHack)),
        ("other!user@local", false, Err(RoutingHack)),
        ("user@other@local", false, Err(Syntax)),
        ("user@local@", false, Err(Syntax)),
        ("@route:user@other", false, Err(Syntax)),
        // Local-part syntax.
        ("@x", false, Err(Syntax)),
        (".user@x", false, Err(Syntax)),
        ("user.@x", false, Err(Syntax)),
        ("us..er@x", false, Err(Syntax)),
        ("us er@x", false, Err(Syntax)),
        ("us(er)@x", false, Err(Syntax)),
        ("us\\er@x", false, Err(Syntax)),
        ("us<er@x", false, Err(Syntax)),
        ("user", false, Err(Syntax)),
        ("", false, Err(Syntax)),
        // Domain syntax.
        ("user@", false, Err(Syntax)),
        ("user@domain.", false, Err(Syntax)),
        ("user@.domain", false, Err(Syntax)),
        ("user@a..b", false, Err(Syntax)),
        ("user@-bad.example", false, Err(Syntax)),
        ("user@bad-.example", false, Err(Syntax)),
        ("user@under_score.example", false, Err(Syntax)),
        ("user@sp ace.example", false, Err(Syntax)),
        ("user@x:25", false, Err(Syntax)),
        // Controls, anywhere.
        ("us\rer@x", false, Err(Syntax)),
        ("user@x\n", false, Err(Syntax)),
        ("\"a\u{7f}\"@x", false, Err(Syntax)),
        ("\"a\0\"@x", false, Err(Syntax)),
        ("a@b\u{85}c", true, Err(Syntax)),
        // Non-ASCII only with SMTPUTF8.
        ("jöran@x", false, Err(NonAscii)),
        ("jöran@x", true, Ok(("jöran", "x"))),
        ("user@bücher.example", false, Err(NonAscii)),
        ("user@bücher.example", true, Ok(("user", "bücher.example"))),
        ("\"jö ran\"@x", true, Ok(("\"jö ran\"", "x"))),
        ("用户@例子.广告", true, Ok(("用户", "例子.广告"))),
        ("用户@例子..广告", true, Err(Syntax)),
    ];

    #[test]
    fn mailbox_table() {
        for (input, utf8, expected) in MAILBOXES {
            let got = Mailbox::parse(input, *utf8);
            let got = got
                .as_ref()
                .map(|m| (m.local_part(), m.domain()))
                .map_err(|e| *e);
            assert_eq!(got, *expected, "input {input:?} utf8={utf8}");
        }
    }

    #[test]
    fn lengths() {
        let l64 = "a".repeat(64);
        let l65 = "a".repeat(65);
        assert!(Mailbox::parse(&format!("{l64}@x"), false).is_ok());
        assert_eq!(Mailbox::parse(&format!("{l65}@x"), false), Err(TooLong));
        // 62 quoted characters + 2 quotes = 64 octets.
        let q64 = format!("\"{}\"@x", "a".repeat(62));
        let q65 = format!("\"{}\"@x", "a".repeat(63));
        assert!(Mailbox::parse(&q64, false).is_ok());
        assert_eq!(Mailbox::parse(&q65, false), Err(TooLong));
        // Octets, not characters: 32 two-octet characters is 64 octets.
        assert!(Mailbox::parse(&format!("{}@x", "ö".repeat(32)), true).is_ok());
        assert_eq!(
            Mailbox::parse(&format!("{}@x", "ö".repeat(33)), true),
            Err(TooLong)
        );

        let label63 = "b".repeat(63);
        let label64 = "b".repeat(64);
        assert!(Mailbox::parse(&format!("a@{label63}.x"), false).is_ok());
        assert_eq!(
            Mailbox::parse(&format!("a@{label64}.x"), false),
            Err(TooLong)
        );

        // A 254-octet mailbox is the longest: 64 + 1 + 189.
        let domain189 = format!("{}.{}.{}", label63, label63, "c".repeat(61));
        assert_eq!(domain189.len(), 189);
        let longest = format!("{l64}@{domain189}");
        assert_eq!(longest.len(), 254);
        assert!(Mailbox::parse(&longest, false).is_ok());
        assert_eq!(
            Mailbox::parse(&format!("{l64}@d{domain189}"), false),
            Err(TooLong)
        );
        let path = format!("<{longest}> SIZE=1");
        let (m, rest) = parse_path(&path, false, false).unwrap();
        assert_eq!(m.unwrap().to_string(), longest);
        assert_eq!(rest, " SIZE=1");
        let path = format!("<{l64}@d{domain189}>");
        assert_eq!(parse_path(&path, false, false), Err(TooLong));
    }

    /// (input, allow_null, Ok((mailbox as displayed or "" for <>, rest)) or the error)
    type PathCase = (
        &'static str,
        bool,
        Result<(&'static str, &'static str), AddressError>,
    );

    const PATHS: &[PathCase] = &[
        ("<user@example.org>", false, Ok(("user@example.org", ""))),
        (
            "<user@example.org> SIZE=10",
            false,
            Ok(("user@example.org", " SIZE=10")),
        ),
        (
            "<user@example.org>  BODY=8BITMIME ",
            false,
            Ok(("user@example.org", "  BODY=8BITMIME ")),
        ),
        ("<user@x>junk", false, Ok(("user@x", "junk"))),
        ("<>", true, Ok(("", ""))),
        ("<> SIZE=1", true, Ok(("", " SIZE=1"))),
        ("<>", false, Err(Syntax)),
        ("<\"a>b\"@x>", false, Ok(("\"a>b\"@x", ""))),
        ("<\"a\\\">b\"@x> X", false, Ok(("\"a\\\">b\"@x", " X"))),
        (
            "<\"user@other\"@local>",
            false,
            Ok(("\"user@other\"@local", "")),
        ),
        ("<user@[192.0.2.1]>", false, Ok(("user@[192.0.2.1]", ""))),
        ("<@route:user@other>", false, Err(SourceRoute)),
        ("<@a,@b:user@c>", true, Err(SourceRoute)),
        ("<@x>", false, Err(Syntax)),
        ("<user%other@local>", false, Err(RoutingHack)),
        ("<user@other@local>", false, Err(Syntax)),
        ("user@x", false, Err(Syntax)),
        (" <user@x>", false, Err(Syntax)),
        ("<user@x", false, Err(Syntax)),
        ("<\"user>@x", false, Err(Syntax)),
        ("<<user@x>>", false, Err(Syntax)),
        ("< user@x>", false, Err(Syntax)),
        ("<user@x >", false, Err(Syntax)),
        ("<user@domain.>", false, Err(Syntax)),
        ("<jöran@x>", false, Err(NonAscii)),
        ("", false, Err(Syntax)),
        ("<", false, Err(Syntax)),
    ];

    #[test]
    fn path_table() {
        for (input, allow_null, expected) in PATHS {
            let got = parse_path(input, *allow_null, false);
            let got = got.map(|(m, rest)| (m.map(|m| m.to_string()).unwrap_or_default(), rest));
            let expected = expected.map(|(m, rest)| (m.to_string(), rest));
            assert_eq!(got, expected, "input {input:?} allow_null={allow_null}");
        }
    }

    #[test]
    fn literal_flag() {
        let m = Mailbox::parse("u@[192.0.2.1]", false).unwrap();
        assert!(m.domain_is_literal());
        let m = Mailbox::parse("u@x", false).unwrap();
        assert!(!m.domain_is_literal());
    }

    #[test]
    fn never_panics_on_any_prefix_or_suffix() {
        // Every slice of some tricky inputs at char boundaries: no panic, whatever result.
        let inputs = [
            "<\"a\\\">b\"@[IPv6:::1]> X",
            "<jö@bü.x>",
            "<@a,@b:c@d>",
            "\"\\",
        ];
        for s in inputs {
            for (i, _) in s.char_indices() {
                for (j, _) in s.char_indices().skip(1) {
                    if i <= j {
                        let _ = parse_path(&s[i..j], true, true);
                        let _ = Mailbox::parse(&s[i..j], true);
                    }
                }
            }
        }
    }
}
