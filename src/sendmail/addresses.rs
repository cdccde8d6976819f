//! RFC 5322 §3.4 address lists, as found in (unfolded) `To:`, `Cc:`, `Bcc:` header
//! values and in sendmail's command-line recipient arguments (Postfix parses each
//! argument as an address list, so `sendmail 'a@b, Name <c@d>'` is two recipients).
//!
//! The result is the list of addr-specs (`local@domain`), in order, without display
//! names, comments or groups: exactly what becomes envelope recipients. Extensions and
//! tolerances:
//! - a bare local part without `@` (`root`) is an address, as cron and sendmail use it;
//!   qualifying it with a domain is the caller's business;
//! - obsolete syntax (RFC 5322 §4.4) is read: empty list elements (`a@b,,c@d,`), a `.` in
//!   a display name (`J. Smith <j@x>`), CFWS around the dots of a local part or domain,
//!   `a@b (Name)`;
//! - 8-bit text is atext and qtext (RFC 6532), but an address must be valid UTF-8.
//!
//! Strictness: two addresses without a comma between them (`a@b c@d`), a group inside a
//! group, `<>`, an obsolete source route `<@a,@b:c@d>` (refused rather than silently
//! dropped, as `smtp::address` does), an unterminated quoted string, comment or domain
//! literal, control characters, and comments nested deeper than [`MAX_COMMENT_DEPTH`]
//! are errors. The addr-specs returned are only RFC 5322 syntax; RFC 5321 validity (length,
//! `%`-hacks, domain grammar) is checked by `smtp::address::Mailbox` afterwards.
//!
//! Invariants: time linear in the input (tokens are lexed on demand, each at most twice:
//! a display name is looked past, then read again as a local part when it was one);
//! memory O(1) besides the addresses returned, and no recursion whose depth depends on
//! the input (groups do not nest, comments are counted); nothing here panics on any
//! input; a returned address contains no whitespace outside quoted strings and no
//! control characters.

use std::fmt;

/// Deepest comment nesting accepted: `((…))` deeper than this is hostile, not mail.
pub const MAX_COMMENT_DEPTH: usize = 32;

/// Why an address list was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListError {
    /// `"…` without its closing quote.
    UnterminatedQuotedString,
    /// `(…` without its closing parenthesis.
    UnterminatedComment,
    /// `[…` without its closing bracket.
    UnterminatedDomainLiteral,
    /// Comments nested deeper than [`MAX_COMMENT_DEPTH`].
    CommentTooDeep,
    /// A control character (other than space, tab, CR, LF) outside a comment.
    ControlCharacter,
    /// Two addresses with no comma between them (`a@b c@d`).
    MissingComma,
    /// Something that is not an address where one should start (a stray `>`, `)`, `@`,
    /// `;`, a display name not followed by `<`, a group without a name).
    ExpectedAddress,
    /// A local part that is not `word *("." word)` (`a..b@c`, `a.@c`).
    BadLocalPart,
    /// Nothing, or not `atom *("." atom)` / `[literal]`, after the `@`.
    BadDomain,
    /// `<` not closed by `>` right after the address.
    MissingAngleClose,
    /// `<>`: the null path is not a recipient.
    EmptyAngleAddress,
    /// `<@a,@b:c@d>`: an obsolete source route (RFC 5322 §4.4).
    SourceRoute,
    /// `a: b: c@d;;`: groups do not nest (RFC 5322 §3.4).
    NestedGroup,
    /// `team: a@b` without the closing `;`.
    UnclosedGroup,
    /// An address with 8-bit octets that are not UTF-8.
    NotUtf8,
}

impl fmt::Display for ListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ListError::UnterminatedQuotedString => "unterminated quoted string",
            ListError::UnterminatedComment => "unterminated comment",
            ListError::UnterminatedDomainLiteral => "unterminated domain literal",
            ListError::CommentTooDeep => "comments nested too deeply",
            ListError::ControlCharacter => "control character",
            ListError::MissingComma => "missing comma between addresses",
            ListError::ExpectedAddress => "expected an address",
            ListError::BadLocalPart => "bad local part",
            ListError::BadDomain => "bad domain after '@'",
            ListError::MissingAngleClose => "missing '>' after the address",
            ListError::EmptyAngleAddress => "empty address <>",
            ListError::SourceRoute => "source routes are not supported",
            ListError::NestedGroup => "group inside a group",
            ListError::UnclosedGroup => "group without its closing ';'",
            ListError::NotUtf8 => "address is not valid UTF-8",
        };
        f.write_str(s)
    }
}

/// An address-list header that did not parse, naming the header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderError {
    /// The field name as it appeared (`To`, `resent-cc`).
    pub header: String,
    pub error: ListError,
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad {}: header: {}", self.header, self.error)
    }
}

/// Parse the unfolded value of the address-list header `name` (`To`, `Cc`, `Bcc`,
/// `Resent-To`, …). Errors name the header.
pub fn parse_header(name: &str, value: &[u8]) -> Result<Vec<String>, HeaderError> {
    parse_address_list(value).map_err(|error| HeaderError {
        header: name.to_string(),
        error,
    })
}

/// Parse an RFC 5322 address list (possibly empty) into its addr-specs, in order.
/// Groups contribute their members; `undisclosed-recipients:;` contributes nothing.
pub fn parse_address_list(value: &[u8]) -> Result<Vec<String>, ListError> {
    let out = parse_list(value)?;
    // RFC 6532 allows UTF-8, but not its C1 control characters (U+0080–U+009F):
    // found by fuzzing (fuzz/regressions/headers_t).
    if out.iter().any(|a| a.chars().any(char::is_control)) {
        return Err(ListError::ControlCharacter);
    }
    Ok(out)
}

fn parse_list(value: &[u8]) -> Result<Vec<String>, ListError> {
    let mut p = Parser {
        input: value,
        pos: 0,
        peeked: None,
    };
    let mut out = Vec::new();
    loop {
        // RFC 5322 §4.4 obs-addr-list: empty elements between commas are allowed.
        while p.eat(b',')? {}
        if p.peek()?.is_none() {
            return Ok(out);
        }
        p.address(false, &mut out)?;
        match p.peek()? {
            None => return Ok(out),
            Some(Token::Special(b',')) => {}
            Some(t) => return Err(p.after_address(t)),
        }
    }
}

/// A lexical token of RFC 5322 §3.2 (CFWS already dropped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token<'a> {
    /// A run of atext (§3.2.3), 8-bit octets included (RFC 6532).
    Atom(&'a [u8]),
    /// A quoted string with its quotes and quoted pairs, as written (§3.2.4).
    Quoted(&'a [u8]),
    /// A domain literal with its brackets, as written (§3.4.1).
    Literal(&'a [u8]),
    /// One of the specials `( ) < > [ ] : ; @ \ , .` that is not part of the above.
    Special(u8),
}

/// RFC 5322 §3.2.3 atext; octets ≥ 0x80 count too (RFC 6532 §3.2, UTF8-non-ascii).
fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b) || b >= 0x80
}

/// Space, tab and (in a value that was not unfolded) the CR and LF of a fold.
fn is_wsp(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// A control character that has no place outside a comment.
fn is_ctl(b: u8) -> bool {
    (b < 0x20 && !is_wsp(b)) || b == 0x7f
}

/// The token starting at or after `value[i..]` (whitespace and comments skipped) and
/// the index just past it, or `None` at the end. No recursion, no allocation.
fn next_token(value: &[u8], mut i: usize) -> Result<Option<(Token<'_>, usize)>, ListError> {
    while let Some(&b) = value.get(i) {
        let (token, end) = match b {
            _ if is_wsp(b) => {
                i += 1;
                continue;
            }
            b'(' => {
                i = skip_comment(value, i)?;
                continue;
            }
            b'"' => {
                let end = quoted_string_end(value, i)?;
                (Token::Quoted(&value[i..end]), end)
            }
            b'[' => {
                let end = domain_literal_end(value, i)?;
                (Token::Literal(&value[i..end]), end)
            }
            _ if is_atext(b) => {
                let end = i + value[i..].iter().take_while(|&&c| is_atext(c)).count();
                (Token::Atom(&value[i..end]), end)
            }
            _ if is_ctl(b) => return Err(ListError::ControlCharacter),
            // The remaining specials: ) < > ] : ; @ \ , .
            _ => (Token::Special(b), i + 1),
        };
        return Ok(Some((token, end)));
    }
    Ok(None)
}

/// `value[start]` is `(`: the index just past the matching `)`. RFC 5322 §3.2.2:
/// comments nest and may hold quoted pairs; their text is never looked at.
fn skip_comment(value: &[u8], start: usize) -> Result<usize, ListError> {
    let mut depth = 0usize;
    let mut i = start;
    while let Some(&b) = value.get(i) {
        match b {
            b'\\' => i += 1, // quoted pair: the next octet is text, whatever it is
            b'(' => {
                depth += 1;
                if depth > MAX_COMMENT_DEPTH {
                    return Err(ListError::CommentTooDeep);
                }
            }
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return Ok(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    Err(ListError::UnterminatedComment)
}

/// `value[start]` is `"`: the index just past the closing quote (RFC 5322 §3.2.4).
fn quoted_string_end(value: &[u8], start: usize) -> Result<usize, ListError> {
    let mut i = start + 1;
    while let Some(&b) = value.get(i) {
        match b {
            b'"' => return Ok(i + 1),
            b'\\' => match value.get(i + 1) {
                // RFC 5322 §3.2.1 quoted-pair: VCHAR or WSP (8-bit allowed, RFC 6532).
                Some(&c) if c == b' ' || c == b'\t' || c >= 0x21 && c != 0x7f => i += 2,
                Some(_) => return Err(ListError::ControlCharacter),
                None => return Err(ListError::UnterminatedQuotedString),
            },
            // An unfolded value has no CR or LF; an address never carries one.
            b'\r' | b'\n' => return Err(ListError::ControlCharacter),
            _ if is_ctl(b) => return Err(ListError::ControlCharacter),
            _ => i += 1,
        }
    }
    Err(ListError::UnterminatedQuotedString)
}

/// `value[start]` is `[`: the index just past the closing `]` (RFC 5322 §3.4.1 dtext,
/// §4.4 obs-dtext quoted pairs). Whitespace inside is refused: the literal is copied
/// into the address as written.
fn domain_literal_end(value: &[u8], start: usize) -> Result<usize, ListError> {
    let mut i = start + 1;
    while let Some(&b) = value.get(i) {
        match b {
            b']' => return Ok(i + 1),
            b'[' | b'\\' => return Err(ListError::BadDomain),
            _ if is_wsp(b) => return Err(ListError::BadDomain),
            _ if is_ctl(b) => return Err(ListError::ControlCharacter),
            _ => i += 1,
        }
    }
    Err(ListError::UnterminatedDomainLiteral)
}

/// A recursive-descent parser over tokens lexed on demand: memory is O(1) besides the
/// output, whatever the input.
struct Parser<'a> {
    input: &'a [u8],
    /// Where the next token's lexing starts (whitespace and comments before it included).
    pos: usize,
    /// The next token and the index just past it, once lexed.
    peeked: Option<(Token<'a>, usize)>,
}

impl<'a> Parser<'a> {
    fn peek(&mut self) -> Result<Option<Token<'a>>, ListError> {
        if self.peeked.is_none() {
            self.peeked = next_token(self.input, self.pos)?;
        }
        Ok(self.peeked.map(|(t, _)| t))
    }

    /// Consume the peeked token.
    fn bump(&mut self) {
        if let Some((_, end)) = self.peeked.take() {
            self.pos = end;
        }
    }

    fn eat(&mut self, special: u8) -> Result<bool, ListError> {
        if self.peek()? == Some(Token::Special(special)) {
            self.bump();
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// Go back to a position from `self.pos` (before any token was peeked past it).
    fn rewind(&mut self, pos: usize) {
        self.pos = pos;
        self.peeked = None;
    }

    /// The error for token `t` found right after a complete address, where only `,`
    /// (or `;` in a group, or the end) may follow.
    fn after_address(&self, t: Token<'a>) -> ListError {
        match t {
            Token::Atom(_) | Token::Quoted(_) | Token::Literal(_) | Token::Special(b'<') => {
                ListError::MissingComma
            }
            _ => ListError::ExpectedAddress,
        }
    }

    /// RFC 5322 §3.4 address = mailbox / group. Pushes the addr-specs onto `out`.
    fn address(&mut self, in_group: bool, out: &mut Vec<String>) -> Result<(), ListError> {
        // Look past a possible display-name (obs-phrase: words and dots) to see what
        // kind of address this is: `name <addr>`, `name: members;` or a bare addr-spec.
        let start = self.pos;
        let mut words = 0usize;
        while let Some(t) = self.peek()? {
            match t {
                Token::Atom(_) | Token::Quoted(_) => words += 1,
                Token::Special(b'.') => {}
                _ => break,
            }
            self.bump();
        }
        match self.peek()? {
            Some(Token::Special(b'<')) => {
                self.bump();
                out.push(self.angle_addr()?);
                Ok(())
            }
            Some(Token::Special(b':')) if in_group => Err(ListError::NestedGroup),
            Some(Token::Special(b':')) if words == 0 => Err(ListError::ExpectedAddress),
            Some(Token::Special(b':')) => {
                self.bump();
                self.group_members(out)
            }
            _ => {
                self.rewind(start);
                out.push(self.addr_spec()?);
                Ok(())
            }
        }
    }

    /// After `name:`: `[mailbox-list] ";"`, with the obsolete empty elements.
    fn group_members(&mut self, out: &mut Vec<String>) -> Result<(), ListError> {
        loop {
            while self.eat(b',')? {}
            match self.peek()? {
                None => return Err(ListError::UnclosedGroup),
                Some(Token::Special(b';')) => {
                    self.bump();
                    return Ok(());
                }
                Some(_) => {}
            }
            self.address(true, out)?;
            match self.peek()? {
                None => return Err(ListError::UnclosedGroup),
                Some(Token::Special(b',' | b';')) => {}
                Some(t) => return Err(self.after_address(t)),
            }
        }
    }

    /// After `<`: `addr-spec ">"`.
    fn angle_addr(&mut self) -> Result<String, ListError> {
        match self.peek()? {
            Some(Token::Special(b'>')) => return Err(ListError::EmptyAngleAddress),
            // RFC 5322 §4.4 obs-route: `<@a,@b:c@d>`.
            Some(Token::Special(b'@')) => return Err(ListError::SourceRoute),
            _ => {}
        }
        let addr = self.addr_spec()?;
        if self.eat(b'>')? {
            Ok(addr)
        } else {
            Err(ListError::MissingAngleClose)
        }
    }

    /// RFC 5322 §3.4.1 addr-spec (with the obsolete CFWS around dots, §4.4), or a bare
    /// local part.
    fn addr_spec(&mut self) -> Result<String, ListError> {
        let mut addr = Vec::new();
        match self.peek()? {
            Some(Token::Atom(w) | Token::Quoted(w)) => addr.extend_from_slice(w),
            _ => return Err(ListError::ExpectedAddress),
        }
        self.bump();
        while self.eat(b'.')? {
            match self.peek()? {
                Some(Token::Atom(w) | Token::Quoted(w)) => {
                    addr.push(b'.');
                    addr.extend_from_slice(w);
                    self.bump();
                }
                _ => return Err(ListError::BadLocalPart),
            }
        }
        if self.eat(b'@')? {
            addr.push(b'@');
            match self.peek()? {
                Some(Token::Literal(l)) => {
                    addr.extend_from_slice(l);
                    self.bump();
                }
                Some(Token::Atom(a)) => {
                    addr.extend_from_slice(a);
                    self.bump();
                    while self.eat(b'.')? {
                        match self.peek()? {
                            Some(Token::Atom(a)) => {
                                addr.push(b'.');
                                addr.extend_from_slice(a);
                                self.bump();
                            }
                            _ => return Err(ListError::BadDomain),
                        }
                    }
                }
                _ => return Err(ListError::BadDomain),
            }
        }
        String::from_utf8(addr).map_err(|_| ListError::NotUtf8)
    }
}

#[cfg(test)]
mod tests {
    use super::ListError::*;
    use super::*;

    type Case = (&'static str, Result<&'static [&'static str], ListError>);

    const CASES: &[Case] = &[
        // Plain addr-specs and lists.
        ("a@b", Ok(&["a@b"])),
        ("user@example.org", Ok(&["user@example.org"])),
        ("a@b, c@d", Ok(&["a@b", "c@d"])),
        ("a@b,c@d", Ok(&["a@b", "c@d"])),
        ("  a@b  ,\t c@d  ", Ok(&["a@b", "c@d"])),
        ("", Ok(&[])),
        ("   ", Ok(&[])),
        // Bare local names (cron's `root`).
        ("root", Ok(&["root"])),
        ("root, admin@x", Ok(&["root", "admin@x"])),
        ("first.last", Ok(&["first.last"])),
        // Display names, quoted and not.
        ("John Smith <john@x.org>", Ok(&["john@x.org"])),
        ("\"Smith, John\" <john@x.org>", Ok(&["john@x.org"])),
        (
            "\"Smith, John\" <john@x.org>, Jane <jane@y>",
            Ok(&["john@x.org", "jane@y"]),
        ),
        ("<a@b>", Ok(&["a@b"])),
        ("  <a@b>  ", Ok(&["a@b"])),
        ("J. Smith <j@x>", Ok(&["j@x"])),
        ("\"J. \\\"Q\\\" Smith\" <j@x>", Ok(&["j@x"])),
        ("Jörg Müller <joerg@x.de>", Ok(&["joerg@x.de"])),
        ("=?UTF-8?B?SsO2cmc=?= <j@x>", Ok(&["j@x"])),
        // Comments, nested, anywhere CFWS may be.
        ("a@b (Name)", Ok(&["a@b"])),
        ("(c) a@b", Ok(&["a@b"])),
        ("a(c)@(c)b", Ok(&["a@b"])),
        ("Name (with (nested) comment) <a@b>", Ok(&["a@b"])),
        ("a@b (a \\) in a comment)", Ok(&["a@b"])),
        ("a@b (comma, inside)", Ok(&["a@b"])),
        (
            "Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>",
            Ok(&["pete@silly.test"]),
        ),
        // Quoted local parts keep their quotes.
        ("\"john smith\"@x", Ok(&["\"john smith\"@x"])),
        ("\"a,b\"@x, c@d", Ok(&["\"a,b\"@x", "c@d"])),
        ("Name <\"a b\"@x>", Ok(&["\"a b\"@x"])),
        // Domain literals.
        ("u@[192.0.2.1]", Ok(&["u@[192.0.2.1]"])),
        ("u@[IPv6:2001:db8::1]", Ok(&["u@[IPv6:2001:db8::1]"])),
        // Groups (RFC 5322 §3.4, appendix A.1.3).
        ("undisclosed-recipients:;", Ok(&[])),
        ("undisclosed-recipients: ;", Ok(&[])),
        ("team: a@b, c@d;", Ok(&["a@b", "c@d"])),
        (
            "A Group:Ed Jones <c@a.test>,joe@where.test,John <jdoe@one.test>;",
            Ok(&["c@a.test", "joe@where.test", "jdoe@one.test"]),
        ),
        ("team: a@b;, c@d", Ok(&["a@b", "c@d"])),
        ("x@y, team: a@b; , c@d", Ok(&["x@y", "a@b", "c@d"])),
        ("\"the team\": a@b;", Ok(&["a@b"])),
        ("team: a@b, ;", Ok(&["a@b"])),
        ("team: (nobody) ;", Ok(&[])),
        // Obsolete forms (RFC 5322 §4.4).
        ("a@b,,c@d,", Ok(&["a@b", "c@d"])),
        (", a@b", Ok(&["a@b"])),
        (",,,", Ok(&[])),
        ("a . b @ c . d", Ok(&["a.b@c.d"])),
        ("\"a\".b@c", Ok(&["\"a\".b@c"])),
        // 8-bit addresses (RFC 6532) pass through; validity is Mailbox's business.
        ("jöran@bücher.example", Ok(&["jöran@bücher.example"])),
        // Errors.
        ("a@b c@d", Err(MissingComma)),
        ("a@b <c@d>", Err(MissingComma)),
        ("John Smith", Err(MissingComma)),
        ("john smith@x", Err(MissingComma)),
        ("a@b \"x\"", Err(MissingComma)),
        ("a@b>", Err(ExpectedAddress)),
        (">", Err(ExpectedAddress)),
        ("@b", Err(ExpectedAddress)),
        ("a@b;", Err(ExpectedAddress)),
        (": a@b;", Err(ExpectedAddress)),
        ("Name <a@b", Err(MissingAngleClose)),
        ("<a@b c>", Err(MissingAngleClose)),
        ("<>", Err(EmptyAngleAddress)),
        ("Name <>", Err(EmptyAngleAddress)),
        ("<@route.test:a@b>", Err(SourceRoute)),
        ("<@a,@b:c@d>", Err(SourceRoute)),
        ("a..b@c", Err(BadLocalPart)),
        ("a.@c", Err(BadLocalPart)),
        (".a@c", Err(ExpectedAddress)),
        ("a@", Err(BadDomain)),
        ("a@b.", Err(BadDomain)),
        ("a@.b", Err(BadDomain)),
        ("a@b..c", Err(BadDomain)),
        ("a@\"b\"", Err(BadDomain)),
        ("a@[1.2.3.4", Err(UnterminatedDomainLiteral)),
        ("a@[1.2 .3.4]", Err(BadDomain)),
        ("a@[1[2]", Err(BadDomain)),
        ("\"unterminated@x", Err(UnterminatedQuotedString)),
        ("\"ends in backslash\\", Err(UnterminatedQuotedString)),
        ("a@b (unterminated", Err(UnterminatedComment)),
        ("a@b ((one closed)", Err(UnterminatedComment)),
        ("a@b)", Err(ExpectedAddress)),
        ("team: a@b", Err(UnclosedGroup)),
        ("team: a@b, c@d", Err(UnclosedGroup)),
        ("team:", Err(UnclosedGroup)),
        ("outer: inner: a@b;;", Err(NestedGroup)),
        ("team: a@b c@d;", Err(MissingComma)),
        ("a\0b@c", Err(ControlCharacter)),
        ("a@b\x1b", Err(ControlCharacter)),
        ("a\u{85}b@c", Err(ControlCharacter)),
        ("Name <x\u{9f}@c>", Err(ControlCharacter)),
        ("\"a\x07\"@b", Err(ControlCharacter)),
        ("\"a\\\x07\"@b", Err(ControlCharacter)),
        ("\"a\r\nb\"@c", Err(ControlCharacter)),
        ("a\\b@c", Err(ExpectedAddress)),
    ];

    #[test]
    fn address_list_table() {
        for (input, want) in CASES {
            let got = parse_address_list(input.as_bytes());
            let want = want.map(|v| v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
            assert_eq!(got, want, "input {input:?}");
        }
    }

    #[test]
    fn folded_whitespace_is_whitespace() {
        // A value that still carries its folds parses the same as the unfolded one.
        let got = parse_address_list(b"a@b,\r\n\tJohn\r\n <c@d>");
        assert_eq!(got, Ok(vec!["a@b".to_string(), "c@d".to_string()]));
    }

    #[test]
    fn non_utf8_address_is_refused_but_non_utf8_name_is_not() {
        assert_eq!(parse_address_list(b"j\xf6ran@x"), Err(NotUtf8));
        assert_eq!(
            parse_address_list(b"J\xf6ran <joran@x>"),
            Ok(vec!["joran@x".to_string()])
        );
        assert_eq!(
            parse_address_list(b"a@b (J\xf6ran)"),
            Ok(vec!["a@b".to_string()])
        );
    }

    #[test]
    fn comment_nesting_is_bounded() {
        let ok = format!(
            "a@b {}x{}",
            "(".repeat(MAX_COMMENT_DEPTH),
            ")".repeat(MAX_COMMENT_DEPTH)
        );
        assert_eq!(parse_address_list(ok.as_bytes()), Ok(vec!["a@b".into()]));
        let deep = format!(
            "a@b {}x{}",
            "(".repeat(MAX_COMMENT_DEPTH + 1),
            ")".repeat(MAX_COMMENT_DEPTH + 1)
        );
        assert_eq!(parse_address_list(deep.as_bytes()), Err(CommentTooDeep));
        // A million opening parentheses: refused quickly, no stack growth.
        let hostile = "(".repeat(1_000_000);
        assert_eq!(parse_address_list(hostile.as_bytes()), Err(CommentTooDeep));
    }

    #[test]
    fn very_long_values_are_linear() {
        // 100 000 addresses in one header: parsed in one pass.
        let value = "someone@example.org, ".repeat(100_000);
        let got = parse_address_list(value.as_bytes()).expect("parses");
        assert_eq!(got.len(), 100_000);
        // A megabyte-long local part and a megabyte of dots fail or pass without fuss.
        let long = format!("{}@x", "a".repeat(1 << 20));
        assert_eq!(parse_address_list(long.as_bytes()).map(|v| v.len()), Ok(1));
        let dots = ".".repeat(1 << 20);
        assert_eq!(parse_address_list(dots.as_bytes()), Err(ExpectedAddress));
        let quotes = "\"".repeat((1 << 20) + 1);
        assert_eq!(
            parse_address_list(quotes.as_bytes()),
            Err(UnterminatedQuotedString)
        );
        let groups = "g: ".repeat(10_000);
        assert_eq!(parse_address_list(groups.as_bytes()), Err(NestedGroup));
    }

    #[test]
    fn header_errors_name_the_header() {
        let err = parse_header("Cc", b"a@b c@d").unwrap_err();
        assert_eq!(err.header, "Cc");
        assert_eq!(err.error, MissingComma);
        assert_eq!(
            err.to_string(),
            "bad Cc: header: missing comma between addresses"
        );
        assert_eq!(parse_header("To", b"x@y"), Ok(vec!["x@y".to_string()]));
    }

    #[test]
    fn never_panics_on_any_slice() {
        let inputs: &[&[u8]] = &[
            b"\"Smith, J\\\"\" <j(c)@[1.2.3.4]>, team: a@b, (x\\) ;, <@r:c@d>",
            b"J\xf6 <\xff@\x80>",
        ];
        for s in inputs {
            for i in 0..s.len() {
                for j in i..=s.len() {
                    let _ = parse_address_list(&s[i..j]);
                }
            }
        }
    }
}
