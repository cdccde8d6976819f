//! One command line → [`Command`], or the [`Reply`] that rejects it.
//!
//! This is the "check" step of each verb (OpenSMTPD style): a pure function that either
//! returns well-formed arguments or the reply; nothing here "fixes up" bad input.
//! The line given has its CRLF (or LF) already removed and is known to be short enough.

use super::address::Mailbox;
use super::reply::Reply;

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
    let _ = line;
    todo!()
}
