//! A message a local program wrote on sendmail's stdin, prepared for the queue.
//!
//! The input is bounded by `max_message_size` (the caller reads at most that many octets
//! plus one), so it is taken whole, as a slice: the rules below need the complete header
//! section before the first octet of output (recipients, missing fields). [`prepare`]
//! makes two passes over it, neither of which stores the lines: the first reads the
//! header section, the second writes the result. Memory is the input, the output (capped
//! at `max_size` as it is built, so a stream of empty lines cannot double it past the
//! cap), the value of one recipient field and the recipients found.
//!
//! What [`prepare`] does, in order:
//! 1. **Line ends.** Input lines may end in LF or CRLF; output lines all end in CRLF, and
//!    a last line without a line end gets one. A run of CRs before an LF (`\r\r\n`, from
//!    double conversions) is one line end. A bare CR elsewhere becomes a line end too,
//!    as `smtp::data::DotWriter` would turn it anyway: the stored copy is exactly what
//!    later hops see, and no CR or LF ever appears outside a CRLF pair (RFC 5321 §2.3.8;
//!    SMTP smuggling). Progress-bar output in cron mail (`10%\r20%\r…`) thus reads as
//!    lines.
//! 2. **A lone `.`** (`.` LF or `.` CRLF, or `.` at the end) ends the input unless
//!    `ignore_dots` (`-i`/`-oi`), as in classic sendmail; what follows is discarded. No
//!    dot-unstuffing: this is not SMTP.
//! 3. **Leading `From ` lines** (an mbox envelope line, also `>From `) are dropped, as
//!    Postfix's sendmail drops them: they are not header fields and would otherwise
//!    end the header section at its first line.
//! 4. **Header section**: the lines up to the first empty line; a line that is neither a
//!    field (`name:`, RFC 5322 §2.2, with the obsolete space before the colon, §4.5.3)
//!    nor the continuation of one also ends it, and a blank line is then inserted before
//!    it, so the result is always fields, blank line, body (RFC 5322 §2.1). Plain text
//!    with no fields at all is all body.
//! 5. **Removed fields**, with their continuation lines: `Bcc:` and `Resent-Bcc:` (always,
//!    as sendmail and Postfix do, with or without `-t`: a blind copy must stay blind),
//!    and `Return-Path:` (RFC 5321 §4.4: added at final delivery only).
//! 6. **Recipients** (`read_recipients`, `-t`): the addresses of `To:`, `Cc:`, `Bcc:`;
//!    but if any `Resent-To:`, `Resent-Cc:` or `Resent-Bcc:` is present, those instead
//!    (a resent message goes to its new recipients only, as sendmail and Postfix do).
//!    Groups contribute their members (`undisclosed-recipients:;` none). A field that
//!    does not parse is an error naming it. Without `-t` the fields are not parsed.
//! 7. **Added fields**, at the end of the header section, when missing: `From:`
//!    (`Full Name <sender>`, or the bare sender without a name; `MAILER-DAEMON@hostname`
//!    without a name for the null sender), `Date:` and `Message-ID:` (RFC 5322 §3.6,
//!    RFC 6409 §8). The name is used as an atom phrase when it is one, else as a quoted
//!    string (RFC 5322 §3.2.4), or as RFC 2047 `B` encoded-words when it is not ASCII,
//!    so the added field is always 7-bit. `Resent-From:`/`Resent-Date:` are not added.
//!
//! Kept as they are, as Postfix keeps them: lines over 998 octets (RFC 5322 §2.1.1 is a
//! MUST for the writer, and the writer is the local program; splitting a line would
//! change a signed or encoded body), NUL and other octets in the body, 8-bit text
//! (reported in [`Prepared::eight_bit`] for `BODY=8BITMIME`).
//!
//! Invariants: the output has CR and LF only as CRLF pairs, ends with CRLF, has exactly
//! one empty line between the header section and the body, no `Bcc:`, `Resent-Bcc:` or
//! `Return-Path:` field, and is never longer than `max_size`. Nothing panics on any input.

use std::fmt;

use super::addresses::{self, HeaderError};
use crate::exit;

/// What the caller knows about this submission.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrepareOptions {
    /// `-i`/`-oi`: a lone `.` is text, not the end.
    pub ignore_dots: bool,
    /// `-t`: collect the header recipients.
    pub read_recipients: bool,
    /// The envelope sender, qualified (`user@host`), `""` for the null sender.
    pub sender: String,
    /// `-F NAME`, else the user's full name (the first GECOS field), for an added `From:`.
    pub from_header_name: Option<String>,
    /// This host's name, for `Message-ID:` and the null sender's `From:`.
    pub hostname: String,
    /// Unix time of the submission, for `Date:`.
    pub now: u64,
    /// The unique left part of an added `Message-ID:` (atext and dots).
    pub message_id_local: String,
    /// The largest message the queue takes, in octets, added fields included.
    pub max_size: u64,
}

/// The message as it goes into the queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prepared {
    /// The message text, CRLF line ends, not dot-stuffed.
    pub data: Vec<u8>,
    /// With `read_recipients`: the addr-specs of the recipient fields, in order
    /// (duplicates kept, bare names unqualified); empty otherwise.
    pub header_recipients: Vec<String>,
    /// The message has octets ≥ 0x80 (`BODY=8BITMIME` when relayed).
    pub eight_bit: bool,
}

/// Why a message cannot be queued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrepareError {
    /// The prepared message would exceed `max_size` octets.
    TooBig { max_size: u64 },
    /// A recipient field (`-t`) that does not parse.
    BadHeader(HeaderError),
    /// The full name for `From:` has control characters (header injection).
    BadFullName,
    /// A caller-supplied value (`"sender"`, `"hostname"`, `"message-id"`) that cannot go
    /// into a header field: a caller bug, not the user's.
    BadOption(&'static str),
}

impl PrepareError {
    /// The sysexits.h code for this failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            PrepareError::TooBig { .. } | PrepareError::BadHeader(_) => exit::DATAERR,
            PrepareError::BadFullName => exit::DATAERR,
            PrepareError::BadOption(_) => exit::SOFTWARE,
        }
    }
}

impl fmt::Display for PrepareError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrepareError::TooBig { max_size } => {
                write!(f, "message is larger than the limit of {max_size} octets")
            }
            PrepareError::BadHeader(e) => write!(f, "{e}"),
            PrepareError::BadFullName => f.write_str("full name has control characters"),
            PrepareError::BadOption(what) => write!(f, "bad {what} for the message header"),
        }
    }
}

/// Prepare `input` (the whole of stdin, at most `max_size + 1` octets) for the queue.
///
/// Two passes over the lines, neither of which stores them: the first reads the header
/// section for what it has and who it is for, the second writes the result.
pub fn prepare(input: &[u8], opts: &PrepareOptions) -> Result<Prepared, PrepareError> {
    check_options(opts)?;
    let facts = read_header_section(input, opts)?;

    let mut added = Vec::new();
    if !facts.has_from {
        added.push(from_field(opts)?);
    }
    if !facts.has_date {
        added.push(format!("Date: {}", crate::time::rfc5322(opts.now)));
    }
    if !facts.has_message_id {
        added.push(format!(
            "Message-ID: <{}@{}>",
            opts.message_id_local, opts.hostname
        ));
    }

    let mut out = Output::new(input.len(), opts.max_size);
    let mut sections = Sections::default();
    let mut removing = false;
    let mut header_done = false;
    for line in Lines::new(input, opts.ignore_dots) {
        match sections.classify(line) {
            Part::Field(name) => {
                removing = REMOVED.iter().any(|r| name.eq_ignore_ascii_case(r));
                if !removing {
                    out.line(line)?;
                }
            }
            Part::Continuation if removing => {}
            Part::Continuation => out.line(line)?,
            Part::Separator => {
                out.end_header_section(&added)?;
                header_done = true;
            }
            Part::Body => {
                if !header_done {
                    // The section ended without a separator: ours goes in first.
                    out.end_header_section(&added)?;
                    header_done = true;
                }
                out.line(line)?;
            }
        }
    }
    if !header_done {
        out.end_header_section(&added)?;
    }
    let eight_bit = out.data.iter().any(|&b| b >= 0x80);
    Ok(Prepared {
        data: out.data,
        header_recipients: facts.recipients,
        eight_bit,
    })
}

/// Fields never stored: blind copies stay blind; Return-Path is the final hop's
/// (RFC 5321 §4.4). Lower case.
const REMOVED: &[&[u8]] = &[b"bcc", b"resent-bcc", b"return-path"];

/// Recipient fields, and their `Resent-` forms that replace them when present.
const RECIPIENT_FIELDS: &[&[u8]] = &[b"to", b"cc", b"bcc"];
const RESENT_RECIPIENT_FIELDS: &[&[u8]] = &[b"resent-to", b"resent-cc", b"resent-bcc"];

/// The output under construction, with the size cap.
struct Output {
    data: Vec<u8>,
    max_size: u64,
}

impl Output {
    fn new(input_len: usize, max_size: u64) -> Output {
        // Room for the input, its CRs on typical line lengths and the added fields,
        // never more than the cap.
        let guess = (input_len as u64).saturating_add(input_len as u64 / 32 + 512);
        let capacity = usize::try_from(guess.min(max_size)).unwrap_or(0);
        Output {
            data: Vec::with_capacity(capacity),
            max_size,
        }
    }

    /// Append `line` and CRLF, unless that passes the cap.
    fn line(&mut self, line: &[u8]) -> Result<(), PrepareError> {
        let len = self.data.len() as u64 + line.len() as u64 + 2;
        if len > self.max_size {
            return Err(PrepareError::TooBig {
                max_size: self.max_size,
            });
        }
        self.data.extend_from_slice(line);
        self.data.extend_from_slice(b"\r\n");
        Ok(())
    }

    /// The added fields and the empty line before the body.
    fn end_header_section(&mut self, added: &[String]) -> Result<(), PrepareError> {
        for field in added {
            self.line(field.as_bytes())?;
        }
        self.line(b"")
    }
}

/// Values from the caller go into header fields: no line ends, no controls, and
/// nothing that would end the `<…>` they sit in.
fn check_options(opts: &PrepareOptions) -> Result<(), PrepareError> {
    let clean = |s: &str| !s.chars().any(|c| c.is_control() || c == '<' || c == '>');
    let word = |s: &str| !s.is_empty() && clean(s) && !s.contains([' ', '@', '"', '\\']);
    if !clean(&opts.sender) {
        return Err(PrepareError::BadOption("sender"));
    }
    if !word(&opts.hostname) {
        return Err(PrepareError::BadOption("hostname"));
    }
    if !word(&opts.message_id_local) {
        return Err(PrepareError::BadOption("message-id"));
    }
    Ok(())
}

/// The input as lines without their line ends (module doc, steps 1–3), one at a time:
/// each line is a slice of the input, nothing is copied or kept.
struct Lines<'a> {
    /// The input not yet split.
    rest: &'a [u8],
    /// What is left of the current line after a bare CR.
    pending: Option<&'a [u8]>,
    ignore_dots: bool,
    /// No line has been yielded yet (mbox `From ` lines are dropped only here).
    at_start: bool,
}

impl<'a> Lines<'a> {
    fn new(input: &'a [u8], ignore_dots: bool) -> Lines<'a> {
        Lines {
            rest: input,
            pending: None,
            ignore_dots,
            at_start: true,
        }
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            if let Some(line) = self.pending.take() {
                // A bare CR inside the line is a line end of its own.
                return Some(match line.iter().position(|&b| b == b'\r') {
                    Some(cr) => {
                        self.pending = line.get(cr + 1..);
                        &line[..cr]
                    }
                    None => line,
                });
            }
            if self.rest.is_empty() {
                return None;
            }
            let (raw, rest) = match self.rest.iter().position(|&b| b == b'\n') {
                Some(lf) => self.rest.split_at(lf + 1),
                None => (self.rest, &self.rest[self.rest.len()..]),
            };
            self.rest = rest;
            let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
            // CR* before the LF (or at the very end) is part of the line end.
            let end = raw.len() - raw.iter().rev().take_while(|&&b| b == b'\r').count();
            let line = &raw[..end];
            if !self.ignore_dots && line == b"." {
                self.rest = &[];
                return None;
            }
            if self.at_start && is_envelope_from(line) && field_name(line).is_none() {
                continue;
            }
            self.at_start = false;
            self.pending = Some(line);
        }
    }
}

/// An mbox envelope line `From sender date`, possibly `>`-quoted.
fn is_envelope_from(line: &[u8]) -> bool {
    let unquoted = &line[line.iter().take_while(|&&b| b == b'>').count()..];
    unquoted.starts_with(b"From ")
}

/// Where a line stands in the message (module doc, step 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part<'a> {
    /// The first line of a header field, with the field's name.
    Field(&'a [u8]),
    /// A continuation line of the field before it.
    Continuation,
    /// The empty line that ends the header section.
    Separator,
    /// A body line; the first one may have ended the header section by not being a field.
    Body,
}

/// Classifies the lines of a message in order.
#[derive(Default)]
struct Sections {
    in_body: bool,
    seen_field: bool,
}

impl Sections {
    fn classify<'a>(&mut self, line: &'a [u8]) -> Part<'a> {
        if self.in_body {
            return Part::Body;
        }
        if line.is_empty() {
            self.in_body = true;
            return Part::Separator;
        }
        if self.seen_field && matches!(line.first(), Some(b' ' | b'\t')) {
            return Part::Continuation;
        }
        match field_name(line) {
            Some(name) => {
                self.seen_field = true;
                Part::Field(name)
            }
            None => {
                self.in_body = true;
                Part::Body
            }
        }
    }
}

/// RFC 5322 §2.2 / §3.6.8: `1*ftext ":"`, ftext being printable ASCII but `:`;
/// §4.5.3 obs-optional: whitespace before the colon.
fn field_name(line: &[u8]) -> Option<&[u8]> {
    let len = line
        .iter()
        .take_while(|&&b| (33..=126).contains(&b) && b != b':')
        .count();
    if len == 0 {
        return None;
    }
    let rest = &line[len..];
    let rest = &rest[rest
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count()..];
    if rest.first() == Some(&b':') {
        Some(&line[..len])
    } else {
        None
    }
}

/// What the first pass learns from the header section.
struct HeaderFacts {
    has_from: bool,
    has_date: bool,
    has_message_id: bool,
    /// With `read_recipients`: the addresses of the recipient fields used (step 6).
    recipients: Vec<String>,
}

/// The addresses of one set of recipient fields, or the first field that did not parse.
type FieldSet = Result<Vec<String>, HeaderError>;

/// The first pass (module doc, steps 6 and 7): which fields exist, and with `-t` the
/// recipients. Only the value of the recipient field being read is held.
fn read_header_section(input: &[u8], opts: &PrepareOptions) -> Result<HeaderFacts, PrepareError> {
    let mut facts = HeaderFacts {
        has_from: false,
        has_date: false,
        has_message_id: false,
        recipients: Vec::new(),
    };
    let mut plain: FieldSet = Ok(Vec::new());
    let mut resent: FieldSet = Ok(Vec::new());
    let mut resent_seen = false;
    // The recipient field being read: its name, whether it is a Resent- one, and its
    // unfolded value so far (RFC 5322 §2.2.3: the line ends go, the WSP stays).
    let mut current: Option<(&[u8], bool, Vec<u8>)> = None;
    let mut sections = Sections::default();
    for line in Lines::new(input, opts.ignore_dots) {
        match sections.classify(line) {
            Part::Field(name) => {
                finish_field(current.take(), &mut plain, &mut resent);
                let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
                facts.has_from |= is(b"from");
                facts.has_date |= is(b"date");
                facts.has_message_id |= is(b"message-id");
                let is_resent = RESENT_RECIPIENT_FIELDS.iter().any(|n| is(n));
                resent_seen |= is_resent;
                let wanted = is_resent || RECIPIENT_FIELDS.iter().any(|n| is(n));
                if opts.read_recipients && wanted {
                    // `field_name` found the colon after the name.
                    let colon = line.iter().position(|&b| b == b':').unwrap_or(line.len());
                    let value = line.get(colon + 1..).unwrap_or_default().to_vec();
                    current = Some((name, is_resent, value));
                }
            }
            Part::Continuation => {
                if let Some((_, _, value)) = &mut current {
                    value.extend_from_slice(line);
                }
            }
            Part::Separator | Part::Body => break,
        }
    }
    finish_field(current.take(), &mut plain, &mut resent);
    // RFC 5322 §3.6.6 / sendmail -t: a resent message goes to the Resent- recipients.
    let chosen = if resent_seen { resent } else { plain };
    facts.recipients = chosen.map_err(PrepareError::BadHeader)?;
    Ok(facts)
}

/// Parse a complete recipient field into its set, unless the set already failed.
fn finish_field(
    field: Option<(&[u8], bool, Vec<u8>)>,
    plain: &mut FieldSet,
    resent: &mut FieldSet,
) {
    let Some((name, is_resent, value)) = field else {
        return;
    };
    let set = if is_resent { resent } else { plain };
    if let Ok(list) = set {
        match addresses::parse_header(&String::from_utf8_lossy(name), &value) {
            Ok(more) => list.extend(more),
            Err(e) => *set = Err(e),
        }
    }
}

/// The `From:` field for a message without one (module doc, step 7).
fn from_field(opts: &PrepareOptions) -> Result<String, PrepareError> {
    if opts.sender.is_empty() {
        // The null sender: mail from the mail system itself; no person's name on it.
        return Ok(format!("From: MAILER-DAEMON@{}", opts.hostname));
    }
    let name = opts.from_header_name.as_deref().unwrap_or("");
    if name.chars().any(|c| c.is_control() && c != '\t') {
        return Err(PrepareError::BadFullName);
    }
    let name = name.trim_matches(|c| c == ' ' || c == '\t');
    if name.is_empty() {
        return Ok(format!("From: {}", opts.sender));
    }
    Ok(format!("From: {} <{}>", display_name(name), opts.sender))
}

/// A display name as a phrase (RFC 5322 §3.2.5): the words themselves when they are all
/// atoms, else one quoted string; non-ASCII as RFC 2047 encoded-words. `name` has no
/// controls but tab, and no leading or trailing whitespace.
fn display_name(name: &str) -> String {
    if !name.is_ascii() {
        return encoded_words(name);
    }
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c);
    if name.chars().all(|c| atext(c) || c == ' ') {
        return name.to_string();
    }
    let mut quoted = String::with_capacity(name.len() + 2);
    quoted.push('"');
    for c in name.chars() {
        // RFC 5322 §3.2.4: `"` and `\` are quoted pairs; everything else is qtext or WSP.
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

/// Longest UTF-8 text in one `=?UTF-8?B?…?=` word: 45 octets → 60 base64 characters,
/// 72 with the delimiters, within RFC 2047 §2's 75.
const ENCODED_WORD_OCTETS: usize = 45;

/// RFC 2047 §4.1 `B` encoded-words for a non-ASCII phrase, split at character
/// boundaries, folded between words (RFC 2047 §2: each word on a line of its own is fine).
fn encoded_words(name: &str) -> String {
    let mut words = Vec::new();
    let mut start = 0;
    let mut end = 0;
    for (i, c) in name.char_indices() {
        let next = i + c.len_utf8();
        if next - start > ENCODED_WORD_OCTETS {
            words.push(&name[start..end]);
            start = end;
        }
        end = next;
    }
    words.push(&name[start..end]);
    words
        .iter()
        .map(|w| format!("=?UTF-8?B?{}?=", base64(w.as_bytes())))
        .collect::<Vec<_>>()
        .join("\r\n ")
}

/// RFC 4648 §4 base64 with padding.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * k)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fields added to a message that has none of them, with the test options.
    macro_rules! added {
        () => {
            "From: user@host.test\r\nDate: Fri, 04 Dec 2026 15:06:23 +0000\r\n\
             Message-ID: <ID@host.test>\r\n"
        };
    }
    const DATE: &str = "Date: Fri, 04 Dec 2026 15:06:23 +0000\r\n";

    fn opts(flags: &str) -> PrepareOptions {
        PrepareOptions {
            ignore_dots: flags.contains("-i"),
            read_recipients: flags.contains("-t"),
            sender: "user@host.test".to_string(),
            from_header_name: None,
            hostname: "host.test".to_string(),
            now: 1_796_396_783,
            message_id_local: "ID".to_string(),
            max_size: 1 << 20,
        }
    }

    /// (flags: `-i` and/or `-t`, input, stored text)
    const TEXTS: &[(&str, &[u8], &str)] = &[
        // A complete message: only line ends change.
        (
            "",
            b"From: a@b\nDate: d\nMessage-ID: <x@y>\nSubject: s\n\nbody\n",
            "From: a@b\r\nDate: d\r\nMessage-ID: <x@y>\r\nSubject: s\r\n\r\nbody\r\n",
        ),
        (
            "",
            b"From: a@b\r\nDate: d\r\nMessage-ID: <x@y>\r\n\r\nbody\r\n",
            "From: a@b\r\nDate: d\r\nMessage-ID: <x@y>\r\n\r\nbody\r\n",
        ),
        // Field names in any case.
        (
            "",
            b"FROM: a@b\nDATE: d\nmessage-id: <x@y>\n\nbody\n",
            "FROM: a@b\r\nDATE: d\r\nmessage-id: <x@y>\r\n\r\nbody\r\n",
        ),
        // Missing fields are added at the end of the header section.
        (
            "",
            b"Subject: hi\n\nbody\n",
            concat!("Subject: hi\r\n", added!(), "\r\nbody\r\n"),
        ),
        (
            "",
            b"From: a@b\nSubject: hi\n\nbody\n",
            "From: a@b\r\nSubject: hi\r\nDate: Fri, 04 Dec 2026 15:06:23 +0000\r\n\
             Message-ID: <ID@host.test>\r\n\r\nbody\r\n",
        ),
        // Plain text (cron output without headers): fields, blank line, the text.
        (
            "",
            b"backup done\nno errors\n",
            concat!(added!(), "\r\nbackup done\r\nno errors\r\n"),
        ),
        // A text line that looks like a field is a field (as sendmail reads it).
        (
            "",
            b"Note: disk full\n",
            concat!("Note: disk full\r\n", added!(), "\r\n"),
        ),
        // Fields, then a line that is not one: a blank line goes in before it.
        (
            "",
            b"Subject: x\nnot a field\nmore\n",
            concat!("Subject: x\r\n", added!(), "\r\nnot a field\r\nmore\r\n"),
        ),
        // Only fields, no body, no final newline.
        (
            "",
            b"Subject: x",
            concat!("Subject: x\r\n", added!(), "\r\n"),
        ),
        // Empty input; input that is only the dot.
        ("", b"", concat!(added!(), "\r\n")),
        ("", b".\n", concat!(added!(), "\r\n")),
        // A leading empty line: no fields, all body.
        (
            "",
            b"\nSubject: x\n",
            concat!(added!(), "\r\nSubject: x\r\n"),
        ),
        // A continuation line at the very start is not a field.
        ("", b" indented\n", concat!(added!(), "\r\n indented\r\n")),
        // Folded fields stay folded.
        (
            "",
            b"Subject: a\n  long\n\tsubject\n\nbody\n",
            concat!(
                "Subject: a\r\n  long\r\n\tsubject\r\n",
                added!(),
                "\r\nbody\r\n"
            ),
        ),
        // The obsolete space before the colon (RFC 5322 §4.5.3).
        (
            "",
            b"Subject : x\n\nb\n",
            concat!("Subject : x\r\n", added!(), "\r\nb\r\n"),
        ),
        // A lone dot ends the input unless -i; CRLF and a final dot without LF too.
        ("", b"a\n.\nb\n", concat!(added!(), "\r\na\r\n")),
        ("", b"a\r\n.\r\nb\r\n", concat!(added!(), "\r\na\r\n")),
        ("", b"a\n.", concat!(added!(), "\r\na\r\n")),
        ("-i", b"a\n.\nb\n", concat!(added!(), "\r\na\r\n.\r\nb\r\n")),
        ("-i", b"a\n.", concat!(added!(), "\r\na\r\n.\r\n")),
        // Dots are not unstuffed, and other dotted lines are text.
        (
            "",
            b"a\n..\n. \n.x\n",
            concat!(added!(), "\r\na\r\n..\r\n. \r\n.x\r\n"),
        ),
        // The dot ends the header section too.
        (
            "",
            b"Subject: x\n.\nbody\n",
            concat!("Subject: x\r\n", added!(), "\r\n"),
        ),
        // Line ends: a final line without one gets CRLF; CR runs before LF are one end;
        // a bare CR is a line end; mixed input ends up all CRLF.
        (
            "",
            b"Subject: x\n\nlast",
            concat!("Subject: x\r\n", added!(), "\r\nlast\r\n"),
        ),
        (
            "",
            b"Subject: x\r\r\n\r\nb\r\r\n",
            concat!("Subject: x\r\n", added!(), "\r\nb\r\n"),
        ),
        (
            "",
            b"Subject: x\n\n10%\r20%\r100%\n",
            concat!("Subject: x\r\n", added!(), "\r\n10%\r\n20%\r\n100%\r\n"),
        ),
        (
            "",
            b"Subject: x\n\nend\r",
            concat!("Subject: x\r\n", added!(), "\r\nend\r\n"),
        ),
        (
            "",
            b"Subject: x\r\n\nmixed\nends\r\n",
            concat!("Subject: x\r\n", added!(), "\r\nmixed\r\nends\r\n"),
        ),
        // A bare CR inside the headers splits the line: the second half is not a field,
        // so the body starts there.
        (
            "",
            b"Subject: x\rtext\n\nb\n",
            concat!("Subject: x\r\n", added!(), "\r\ntext\r\n\r\nb\r\n"),
        ),
        // Leading mbox `From ` lines go; later ones and `From:` stay.
        (
            "",
            b"From sender@x Fri Dec  4 15:06:23 2026\nSubject: x\n\nFrom me\n",
            concat!("Subject: x\r\n", added!(), "\r\nFrom me\r\n"),
        ),
        (
            "",
            b">From a\nFrom b\nSubject: x\n\nb\n",
            concat!("Subject: x\r\n", added!(), "\r\nb\r\n"),
        ),
        (
            "",
            b"From : a@b\nDate: d\nMessage-ID: <i@d>\n\nb\n",
            "From : a@b\r\nDate: d\r\nMessage-ID: <i@d>\r\n\r\nb\r\n",
        ),
        // Bcc, Resent-Bcc and Return-Path are removed with their continuation lines,
        // with or without -t; the body is never touched.
        (
            "",
            b"To: a@b\nBcc: secret@x,\n  other@y\nSubject: s\n\nBcc: body@x\n",
            concat!("To: a@b\r\nSubject: s\r\n", added!(), "\r\nBcc: body@x\r\n"),
        ),
        (
            "-t",
            b"To: a@b\nBCC: secret@x\nResent-Bcc: r@x\nReturn-Path: <x@y>\n\nb\n",
            concat!("To: a@b\r\n", added!(), "\r\nb\r\n"),
        ),
        ("", b"Bcc: x@y\n", concat!(added!(), "\r\n")),
        // Bcc-Like fields are not Bcc.
        (
            "",
            b"Bcc-Note: kept\n\nb\n",
            concat!("Bcc-Note: kept\r\n", added!(), "\r\nb\r\n"),
        ),
        // Long lines and odd octets are kept as they are.
        (
            "",
            b"Subject: x\n\nNUL\0here \xff\n",
            concat!("Subject: x\r\n", added!(), "\r\nNUL\0here \u{fffd}\r\n"),
        ),
    ];

    #[test]
    fn stored_text_table() {
        for (flags, input, want) in TEXTS {
            let got = prepare(input, &opts(flags)).expect("prepares");
            // The one non-UTF-8 case compares lossily; the octet test is below.
            let text = String::from_utf8_lossy(&got.data);
            assert_eq!(
                text,
                *want,
                "flags {flags:?} input {:?}",
                String::from_utf8_lossy(input)
            );
            assert!(only_crlf(&got.data), "bare CR or LF for {input:?}");
        }
    }

    fn only_crlf(data: &[u8]) -> bool {
        data.ends_with(b"\r\n")
            && data.iter().enumerate().all(|(i, &b)| match b {
                b'\r' => data.get(i + 1) == Some(&b'\n'),
                b'\n' => i > 0 && data[i - 1] == b'\r',
                _ => true,
            })
    }

    #[test]
    fn long_lines_and_eight_bit() {
        let long = "x".repeat(5000);
        let input = format!("Subject: x\n\n{long}\n");
        let got = prepare(input.as_bytes(), &opts("")).expect("prepares");
        let want = format!("Subject: x\r\n{}\r\n{long}\r\n", added!());
        assert_eq!(got.data, want.as_bytes());
        assert!(!got.eight_bit);

        let got = prepare(b"Subject: x\n\n\xc3\xa9t\xc3\xa9\n", &opts("")).unwrap();
        assert!(got.eight_bit);
        assert!(got.data.ends_with(b"\r\n\xc3\xa9t\xc3\xa9\r\n"));
        let got = prepare(b"Subject: \xff\n\nplain\n", &opts("")).unwrap();
        assert!(got.eight_bit);
    }

    /// (input, recipients with -t, or the error text)
    const RECIPIENTS: &[(&str, Result<&[&str], &str>)] = &[
        // PHP mail(): To in the headers, Cc and Bcc too.
        (
            "To: a@x\nCc: b@x, C <c@x>\nBcc: d@x\n\nb\n",
            Ok(&["a@x", "b@x", "c@x", "d@x"]),
        ),
        // Several To fields, folded values, field names in any case.
        (
            "to: a@x,\n  b@x\nTO: \"Doe, J\"\n <j@x>\n\nb\n",
            Ok(&["a@x", "b@x", "j@x"]),
        ),
        // Groups and bare names (cron-style `To: root`).
        (
            "To: undisclosed-recipients:;\nBcc: hidden@x\n\nb\n",
            Ok(&["hidden@x"]),
        ),
        ("To: root\n\nb\n", Ok(&["root"])),
        (
            "To: team: a@x, b@x;, c@x\n\nb\n",
            Ok(&["a@x", "b@x", "c@x"]),
        ),
        // Resent-* replace To/Cc/Bcc when present (a bounced/redirected message).
        (
            "To: old@x\nCc: old2@x\nResent-To: new@x\nResent-Bcc: new2@x\n\nb\n",
            Ok(&["new@x", "new2@x"]),
        ),
        // Even an empty Resent-Cc means "resent": To is not used.
        ("To: old@x\nResent-Cc:\n\nb\n", Ok(&[])),
        // Unparsable fields not used are not looked at.
        ("To: a@x b@x\nResent-To: new@x\n\nb\n", Ok(&["new@x"])),
        ("Subject: none\n\nTo: in-body@x\n", Ok(&[])),
        // Errors name the field as written.
        (
            "To: a@x b@x\n\nb\n",
            Err("bad To: header: missing comma between addresses"),
        ),
        (
            "cc: \"unterminated\n\nb\n",
            Err("bad cc: header: unterminated quoted string"),
        ),
        (
            "Resent-To: <>\n\nb\n",
            Err("bad Resent-To: header: empty address <>"),
        ),
    ];

    #[test]
    fn header_recipients_table() {
        for (input, want) in RECIPIENTS {
            let got = prepare(input.as_bytes(), &opts("-t"))
                .map(|p| p.header_recipients)
                .map_err(|e| e.to_string());
            let want = want
                .map(|v| v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .map_err(str::to_string);
            assert_eq!(got, want, "input {input:?}");
        }
        // Without -t the fields are not parsed: a bad To: is not an error.
        let got = prepare(b"To: a@x b@x\n\nb\n", &opts("")).unwrap();
        assert!(got.header_recipients.is_empty());
    }

    /// (sender, full name, the added From field or the error text)
    const FROM: &[(&str, Option<&str>, Result<&str, &str>)] = &[
        ("u@h", None, Ok("From: u@h")),
        ("u@h", Some(""), Ok("From: u@h")),
        ("u@h", Some("  "), Ok("From: u@h")),
        ("u@h", Some("CronDaemon"), Ok("From: CronDaemon <u@h>")),
        ("u@h", Some("Jane Doe"), Ok("From: Jane Doe <u@h>")),
        ("u@h", Some(" Jane Doe "), Ok("From: Jane Doe <u@h>")),
        ("u@h", Some("J. Doe"), Ok("From: \"J. Doe\" <u@h>")),
        ("u@h", Some("Doe, Jane"), Ok("From: \"Doe, Jane\" <u@h>")),
        (
            "u@h",
            Some("a \"b\" \\c"),
            Ok("From: \"a \\\"b\\\" \\\\c\" <u@h>"),
        ),
        (
            "u@h",
            Some("Cron <Daemon>"),
            Ok("From: \"Cron <Daemon>\" <u@h>"),
        ),
        ("u@h", Some("(root)"), Ok("From: \"(root)\" <u@h>")),
        ("u@h", Some("a\tb"), Ok("From: \"a\tb\" <u@h>")),
        // Non-ASCII: RFC 2047 encoded-words, so the field is 7-bit.
        ("u@h", Some("Jörg"), Ok("From: =?UTF-8?B?SsO2cmc=?= <u@h>")),
        (
            "u@h",
            Some("Ünïcödé Ünïcödé Ünïcödé Ünïcödé Ünïcödé"),
            Ok(
                "From: =?UTF-8?B?w5xuw69jw7Zkw6kgw5xuw69jw7Zkw6kgw5xuw69jw7Zkw6kgw5xuw69jw7Zk?=\r\n \
                =?UTF-8?B?w6kgw5xuw69jw7Zkw6k=?= <u@h>",
            ),
        ),
        // The null sender: MAILER-DAEMON, no person's name.
        ("", None, Ok("From: MAILER-DAEMON@host.test")),
        ("", Some("Jane"), Ok("From: MAILER-DAEMON@host.test")),
        // Header injection through the name or the sender.
        (
            "u@h",
            Some("x\r\nBcc: victim@x"),
            Err("full name has control characters"),
        ),
        ("u@h", Some("x\0"), Err("full name has control characters")),
        (
            "u@h\r\nBcc: v@x",
            None,
            Err("bad sender for the message header"),
        ),
        ("u@h>", None, Err("bad sender for the message header")),
    ];

    #[test]
    fn added_from_table() {
        for (sender, name, want) in FROM {
            let mut o = opts("");
            o.sender = sender.to_string();
            o.from_header_name = name.map(str::to_string);
            let got = prepare(b"Subject: x\n\n", &o)
                .map(|p| {
                    let text = String::from_utf8_lossy(&p.data).into_owned();
                    let from = text.find("From:").map(|i| &text[i..]).unwrap_or("");
                    from[..from.find(DATE).unwrap_or(0)].trim_end().to_string()
                })
                .map_err(|e| e.to_string());
            assert_eq!(
                got,
                want.map(str::to_string).map_err(str::to_string),
                "{sender:?} {name:?}"
            );
        }
    }

    #[test]
    fn encoded_words_stay_short_and_decode() {
        // Every word fits in 75 characters, for names of any length and character width.
        for c in ["a", "é", "€", "𝄞"] {
            for n in 1..60 {
                let name = format!("{}{}", c.repeat(n), if c == "a" { "é" } else { "" });
                let words = encoded_words(&name);
                for w in words.split("\r\n ") {
                    assert!(w.len() <= 75, "{w}");
                    assert!(w.starts_with("=?UTF-8?B?") && w.ends_with("?="));
                }
            }
        }
        const BASE64: &[(&str, &str)] = &[
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in BASE64 {
            assert_eq!(base64(plain.as_bytes()), *encoded, "RFC 4648 §10 {plain:?}");
        }
    }

    #[test]
    fn size_cap_counts_the_stored_text() {
        // `Subject: x` + added + blank line + `body`: every octet of the result counts.
        let stored = prepare(b"Subject: x\n\nbody\n", &opts("")).unwrap().data;
        let exact = stored.len() as u64;
        let mut o = opts("");
        o.max_size = exact;
        assert_eq!(
            prepare(b"Subject: x\n\nbody\n", &o).map(|p| p.data),
            Ok(stored)
        );
        o.max_size = exact - 1;
        let err = prepare(b"Subject: x\n\nbody\n", &o).unwrap_err();
        assert_eq!(
            err,
            PrepareError::TooBig {
                max_size: exact - 1
            }
        );
        assert_eq!(err.exit_code(), exit::DATAERR);
        // LF → CRLF growth counts: 1000 LF-only lines need 2000 octets of body.
        let input = "\n".repeat(1000);
        o.max_size = 1500;
        assert!(matches!(
            prepare(input.as_bytes(), &o),
            Err(PrepareError::TooBig { .. })
        ));
        // A cap smaller than the added fields.
        o.max_size = 10;
        assert!(matches!(prepare(b"", &o), Err(PrepareError::TooBig { .. })));
    }

    #[test]
    fn caller_values_are_checked() {
        type Change = fn(&mut PrepareOptions);
        let cases: &[(Change, &str)] = &[
            (|o| o.hostname = String::new(), "hostname"),
            (|o| o.hostname = "a b".into(), "hostname"),
            (|o| o.hostname = "h\n".into(), "hostname"),
            (|o| o.message_id_local = "a@b".into(), "message-id"),
            (|o| o.message_id_local = "a>b".into(), "message-id"),
            (|o| o.message_id_local = String::new(), "message-id"),
            (|o| o.sender = "a\nb".into(), "sender"),
        ];
        for (change, what) in cases {
            let mut o = opts("");
            change(&mut o);
            let err = prepare(b"", &o).unwrap_err();
            assert_eq!(err, PrepareError::BadOption(what));
            assert_eq!(err.exit_code(), exit::SOFTWARE);
        }
    }

    #[test]
    fn never_panics_and_keeps_invariants() {
        let inputs: &[&[u8]] = &[
            b"From x\r\nTo: a@b,\r\n c@d\rBcc: e@f\n\n.\r\n\r\r\nb\n.",
            b"\r\r\n\n\r.\r\n:\n \n\t:x\n\xff:\n",
        ];
        for s in inputs {
            for i in 0..s.len() {
                for j in i..=s.len() {
                    for flags in ["", "-i", "-t", "-t -i"] {
                        if let Ok(p) = prepare(&s[i..j], &opts(flags)) {
                            assert!(only_crlf(&p.data), "{:?}", &s[i..j]);
                            // No Bcc in the header section (the body is not ours).
                            let text = String::from_utf8_lossy(&p.data).to_lowercase();
                            let end = text.find("\r\n\r\n").map_or(0, |i| i + 2);
                            let head = format!("\r\n{}", &text[..end]);
                            assert!(!head.contains("\r\nbcc:"), "{:?}", &s[i..j]);
                            assert!(text.contains("\r\n\r\n"), "no separator");
                        }
                    }
                }
            }
        }
    }
}
