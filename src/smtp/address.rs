//! RFC 5321 paths and mailboxes (§4.1.2), parsed strictly.
//!
//! Invariants: a parsed [`Mailbox`] has a non-empty local part of at most 64 octets,
//! a domain that is a syntactically valid dot-separated name (no trailing dot, labels of
//! 1..=63 letters/digits/hyphens, not starting or ending with a hyphen, total ≤ 255) or an
//! address literal `[1.2.3.4]` / `[IPv6:…]`, no control characters anywhere, no `%` or `!`
//! routing hacks in the local part, no source routes, exactly one unquoted `@`.

use std::fmt;

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
        let _ = (s, utf8);
        todo!()
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
    let _ = (s, allow_null, utf8);
    todo!()
}
