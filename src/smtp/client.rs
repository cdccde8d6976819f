//! The SMTP client dialogue for delivery: a sans-I/O state machine for one connection
//! carrying one or more messages (RFC 5321, STARTTLS RFC 3207, PIPELINING RFC 2920,
//! SIZE RFC 1870, 8BITMIME RFC 6152, AUTH RFC 4954, ENHANCEDSTATUSCODES RFC 2034,
//! SMTPUTF8 RFC 6531).
//!
//! The driver (`delivery::connection`) feeds server bytes to [`Client::handle_input`],
//! sends what [`Client::take_output`] returns and acts on [`Client::poll_event`]:
//! [`Event::StartTls`] (do the handshake, then [`Client::tls_started`]),
//! [`Event::Ready`] (call [`Client::send`] or [`Client::quit`]), [`Event::SendBody`]
//! (stream the message with [`Client::write_body`], then [`Client::end_body`]),
//! [`Event::MessageDone`], [`Event::Failed`], [`Event::Closed`]. It enforces the
//! RFC 5321 §4.5.3.2 deadlines from [`Client::phase`] and reports them with
//! [`Client::handle_timeout`]; the client never touches a socket, a file or the clock.
//!
//! Invariants:
//! - Every [`Client::send`] yields exactly one [`Event::MessageDone`] with one
//!   [`Outcome`] per recipient, in order, even when the connection fails meanwhile (then
//!   [`Event::Failed`] follows it). `Delivered` only ever comes from a positive reply to
//!   the end of data.
//! - Nothing is sent in the clear before STARTTLS when TLS is required, and no AUTH
//!   credentials go over plaintext unless the policy is [`TlsPolicy::None`].
//! - Plaintext received after the server's `220` to STARTTLS is discarded unread (a
//!   man in the middle must not be able to inject replies that we would read as coming
//!   from inside TLS; the client-side twin of CVE-2011-0411).
//! - Memory is bounded: a reply line over [`MAX_REPLY_LINE`] bytes or a reply of more
//!   than [`MAX_REPLY_LINES`] lines fails the connection (transient); nothing a server
//!   sends can make the client panic.
//! - Server replies are kept as the server wrote them: `enhanced` stays `None` and the
//!   enhanced status code, if any, is the start of the text (see [`dsn`]). Control
//!   characters are replaced by `?`, invalid UTF-8 by U+FFFD, so a reply is safe to log.

use std::borrow::Cow;
use std::collections::VecDeque;

use log::{debug, info};

use super::data::DotWriter;
use super::reply::{self, Reply};
use crate::auth::base64;
use crate::auth::secret::{wipe, Secret};

/// Longest reply line we accept, line end included. RFC 5321 §4.5.3.1.5 says 512; real
/// servers send longer texts (and long EHLO lines), so we tolerate eight times that.
pub const MAX_REPLY_LINE: usize = 4096;

/// Most lines in one reply (an EHLO reply has a dozen; a banner rarely more than a few).
pub const MAX_REPLY_LINES: usize = 100;

/// What to do about TLS on a connection that did not start with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsPolicy {
    /// Never STARTTLS (`smarthost_tls = none`, `outbound_tls = none`). The only policy
    /// under which AUTH may go over plaintext.
    None,
    /// STARTTLS when offered, else plaintext; a `454` to STARTTLS continues in plaintext
    /// (RFC 3207 §4).
    Opportunistic,
    /// STARTTLS or fail the connection as transient before any envelope is sent.
    Required,
}

/// Smarthost credentials for AUTH PLAIN (preferred) or LOGIN.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub username: String,
    pub password: Secret,
}

/// Fixed for the connection's life.
#[derive(Clone, Debug)]
pub struct ClientSettings {
    /// Our name in EHLO/HELO (`hostname`).
    pub helo_name: String,
    /// `HOST[IP]:PORT`, only used in the texts of local reasons.
    pub peer: String,
    pub tls: TlsPolicy,
    /// The connection is TLS from its first byte (`smarthost_tls = tls`).
    pub implicit_tls: bool,
    pub auth: Option<Credentials>,
}

/// The envelope of one message to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageStart {
    /// `""` for the null reverse path `<>`.
    pub from: String,
    pub recipients: Vec<String>,
    /// Size of the message file in bytes (RFC 1870 `SIZE=`).
    pub size: u64,
    /// The message has 8-bit content (RFC 6152 `BODY=8BITMIME`).
    pub eight_bit: bool,
}

/// What happened to one recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Delivered(Reply),
    Transient(Reply),
    Permanent(Reply),
}

impl Outcome {
    /// A failure: permanent for a 5xx reply, transient for anything else.
    pub fn failure(reply: Reply) -> Outcome {
        if reply.is_permanent() {
            Outcome::Permanent(reply)
        } else {
            Outcome::Transient(reply)
        }
    }

    pub fn reply(&self) -> &Reply {
        match self {
            Outcome::Delivered(r) | Outcome::Transient(r) | Outcome::Permanent(r) => r,
        }
    }

    pub fn is_delivered(&self) -> bool {
        matches!(self, Outcome::Delivered(_))
    }

    pub fn is_permanent(&self) -> bool {
        matches!(self, Outcome::Permanent(_))
    }
}

/// What the driver must do or know next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The server said `220` to STARTTLS: do the TLS handshake on the socket, then call
    /// [`Client::tls_started`] (or [`Client::handle_tls_failure`]).
    StartTls,
    /// The connection is ready for [`Client::send`] or [`Client::quit`].
    Ready,
    /// The server said `354`: stream the message with [`Client::write_body`], then call
    /// [`Client::end_body`].
    SendBody,
    /// The result of the last [`Client::send`], one outcome per recipient in order.
    MessageDone(Vec<Outcome>),
    /// The connection is unusable; this is the outcome for every recipient not yet
    /// tried on it. Transient or permanent, never delivered. Nothing more will happen;
    /// the driver sends any pending output (perhaps a QUIT) and closes.
    Failed(Outcome),
    /// QUIT is done (or the peer closed after it); close the socket.
    Closed,
}

/// What the client is waiting for, so the driver can apply the RFC 5321 §4.5.3.2
/// deadline that belongs to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the `220` greeting (5 minutes).
    Greeting,
    /// Waiting for the EHLO or HELO reply.
    Ehlo,
    /// Waiting for the STARTTLS reply, or in the TLS handshake.
    StartTls,
    /// In the AUTH exchange.
    Auth,
    /// Waiting for the driver (after [`Event::Ready`]); nothing outstanding.
    Idle,
    /// Waiting for the RSET reply.
    Rset,
    /// Waiting for the MAIL reply (5 minutes).
    Mail,
    /// Waiting for RCPT replies (5 minutes each).
    Rcpt,
    /// Waiting for the DATA reply (2 minutes).
    Data,
    /// The driver is sending the message text (3 minutes per send).
    Body,
    /// Waiting for the reply to the end of data (10 minutes).
    DataEnd,
    /// Waiting for the QUIT reply.
    Quit,
    /// Nothing more will happen.
    Closed,
}

impl Phase {
    /// "while …" text for local reasons, in the words Postfix logs use.
    pub fn describe(self) -> &'static str {
        match self {
            Phase::Greeting => "receiving the initial server greeting",
            Phase::Ehlo => "performing the EHLO handshake",
            Phase::StartTls => "performing the STARTTLS handshake",
            Phase::Auth => "authenticating",
            Phase::Idle => "idle",
            Phase::Rset => "sending RSET",
            Phase::Mail => "sending MAIL FROM",
            Phase::Rcpt => "sending RCPT TO",
            Phase::Data => "sending DATA command",
            Phase::Body => "sending message body",
            Phase::DataEnd => "sending end of data -- message may be sent more than once",
            Phase::Quit => "sending QUIT",
            Phase::Closed => "closing the connection",
        }
    }
}

/// The server's EHLO keywords we act on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// The server answered EHLO (not only HELO).
    pub esmtp: bool,
    pub pipelining: bool,
    /// `SIZE` offered: `Some(limit)`, where 0 means no fixed limit (RFC 1870 §4).
    pub size: Option<u64>,
    pub eight_bit_mime: bool,
    pub starttls: bool,
    pub auth_plain: bool,
    pub auth_login: bool,
    pub enhanced_status_codes: bool,
    pub smtputf8: bool,
}

impl Capabilities {
    /// RFC 5321 §4.1.1.1: the first line is the server's name, each further line one
    /// keyword with its parameters; keywords are case-insensitive.
    fn parse(reply: &Reply) -> Capabilities {
        let mut caps = Capabilities {
            esmtp: true,
            ..Capabilities::default()
        };
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            let keyword = keyword.to_ascii_uppercase();
            let mut mechanisms = |words: &mut dyn Iterator<Item = &str>| {
                for m in words {
                    if m.eq_ignore_ascii_case("PLAIN") {
                        caps.auth_plain = true;
                    } else if m.eq_ignore_ascii_case("LOGIN") {
                        caps.auth_login = true;
                    }
                }
            };
            match keyword.as_str() {
                "PIPELINING" => caps.pipelining = true,
                "8BITMIME" => caps.eight_bit_mime = true,
                "STARTTLS" => caps.starttls = true,
                "ENHANCEDSTATUSCODES" => caps.enhanced_status_codes = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                // A missing or unreadable number is "no fixed limit", not a reason to fail.
                "SIZE" => caps.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
                "AUTH" => mechanisms(&mut words),
                // The pre-RFC form some servers still send: `AUTH=LOGIN PLAIN`.
                k if k.starts_with("AUTH=") => {
                    let first = &keyword[5..];
                    mechanisms(&mut std::iter::once(first).chain(words))
                }
                _ => {}
            }
        }
        caps
    }
}

/// The enhanced status code of a reply (RFC 3463): the one a local reply carries, or the
/// `X.Y.Z` a server put at the start of its text when its class matches the basic code's
/// (RFC 2034 §3); otherwise `X.0.0` from the basic code, as Postfix does for `dsn=`.
pub fn dsn(reply: &Reply) -> String {
    if let Some(e) = reply.enhanced {
        return e.to_string();
    }
    let class = (reply.code / 100) as u8;
    if let Some(word) = reply.text().split(' ').next() {
        if is_enhanced_code(word, class) {
            return word.to_string();
        }
    }
    format!("{class}.0.0")
}

/// `class.subject.detail` with subject and detail of 1–3 digits (RFC 3463 §2).
fn is_enhanced_code(word: &str, class: u8) -> bool {
    let mut parts = word.split('.');
    let ok_part = |p: Option<&str>| {
        p.is_some_and(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
    };
    let first = parts.next();
    first == Some(class.to_string().as_str())
        && matches!(class, 2 | 4 | 5)
        && ok_part(parts.next())
        && ok_part(parts.next())
        && parts.next().is_none()
}

/// Why the bytes a server sent are not a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Malformed {
    LineTooLong,
    TooManyLines,
    NotAReply,
    CodeChanged,
}

impl Malformed {
    fn describe(self) -> &'static str {
        match self {
            Malformed::LineTooLong => "reply line longer than 4096 bytes",
            Malformed::TooManyLines => "reply of more than 100 lines",
            Malformed::NotAReply => "malformed reply (not a 3-digit code)",
            Malformed::CodeChanged => "malformed multi-line reply (code changes)",
        }
    }
}

/// Assembles replies from bytes split anywhere. Holds at most one line and one reply.
#[derive(Debug, Default)]
struct ReplyReader {
    line: Vec<u8>,
    code: Option<u16>,
    lines: Vec<Cow<'static, str>>,
}

impl ReplyReader {
    /// Consume bytes up to and including one line end (or all of `input`). Returns the
    /// number consumed and, when a reply is complete or broken, the result.
    fn feed(&mut self, input: &[u8]) -> (usize, Option<Result<Reply, Malformed>>) {
        let (take, complete) = match input.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (input.len(), false),
        };
        if self.line.len() + take > MAX_REPLY_LINE {
            return (take, Some(Err(Malformed::LineTooLong)));
        }
        self.line.extend_from_slice(&input[..take]);
        if !complete {
            return (take, None);
        }
        let line = std::mem::take(&mut self.line);
        (take, self.line_done(&line).transpose())
    }

    fn line_done(&mut self, line: &[u8]) -> Result<Option<Reply>, Malformed> {
        // Tolerate a bare LF line end, as most clients do.
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let code = parse_code(line).ok_or(Malformed::NotAReply)?;
        let last = match line.get(3) {
            None | Some(b' ') => true,
            Some(b'-') => false,
            Some(_) => return Err(Malformed::NotAReply),
        };
        if self.code.is_some_and(|c| c != code) {
            return Err(Malformed::CodeChanged);
        }
        if self.lines.len() >= MAX_REPLY_LINES {
            return Err(Malformed::TooManyLines);
        }
        self.code = Some(code);
        self.lines
            .push(Cow::Owned(sanitize(line.get(4..).unwrap_or(b""))));
        if !last {
            return Ok(None);
        }
        self.code = None;
        Ok(Some(Reply {
            code,
            enhanced: None,
            lines: std::mem::take(&mut self.lines),
        }))
    }
}

/// `2xx`–`5xx` at the start of a line (RFC 5321 §4.2: the first digit is 2–5, the
/// second 0–5).
fn parse_code(line: &[u8]) -> Option<u16> {
    match line.get(..3)? {
        &[a @ b'2'..=b'5', b @ b'0'..=b'5', c @ b'0'..=b'9'] => {
            Some(u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'))
        }
        _ => None,
    }
}

/// Reply text safe for logs, the queue listing and bounces.
fn sanitize(text: &[u8]) -> String {
    String::from_utf8_lossy(text)
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// An address we are willing to put between `<` and `>`: nothing that could end the
/// command line or the path early. The spool holds addresses the session parsed, so
/// this only guards against a damaged envelope.
fn safe_address(address: &str) -> bool {
    address.len() <= 512
        && !address
            .chars()
            .any(|c| c.is_control() || matches!(c, '<' | '>' | ' '))
}

/// A reply the client is waiting for, in the order the commands went out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Greeting,
    Ehlo,
    Helo,
    StartTls,
    Auth(AuthStep),
    Rset,
    Mail,
    /// Index into the message's recipients.
    Rcpt(usize),
    Data,
    DataEnd,
    Quit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AuthStep {
    /// `AUTH PLAIN <initial response>` sent.
    Plain,
    /// `AUTH LOGIN` sent; the username challenge comes next.
    Login,
    /// Username sent; the password challenge comes next.
    LoginUsername,
    /// Password sent.
    LoginPassword,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Greeting, EHLO, STARTTLS, AUTH.
    Opening,
    /// `220` to STARTTLS received; the driver is doing the handshake.
    TlsHandshake,
    /// Waiting for the driver.
    Ready,
    /// A message's commands are out.
    Transaction,
    /// The driver streams the message text.
    Body,
    Quitting,
    Closed,
}

/// One message on its way.
struct Transaction {
    recipients: Vec<String>,
    /// `None` = no final word yet (accepted by RCPT, or not answered yet).
    outcomes: Vec<Option<Outcome>>,
    /// Recipients to send RCPT for (indexes), and how many of them have gone out.
    to_send: Vec<usize>,
    sent: usize,
    accepted: usize,
    /// The MAIL command was rejected with this reply: every recipient gets it.
    mail_failure: Option<Reply>,
    /// A lone `.` was sent after a `354` that came although no recipient was accepted
    /// (RFC 2920 §3.1); its reply says nothing about our recipients.
    discarding: bool,
    writer: DotWriter,
}

impl Transaction {
    /// Give every recipient without a final word `outcome`.
    fn settle(&mut self, outcome: &Outcome) {
        for o in self.outcomes.iter_mut().filter(|o| o.is_none()) {
            *o = Some(outcome.clone());
        }
    }
}

/// The client side of one SMTP connection.
pub struct Client {
    settings: ClientSettings,
    stage: Stage,
    pending: VecDeque<Expect>,
    reader: ReplyReader,
    caps: Capabilities,
    tls: bool,
    authenticated: bool,
    /// The last transaction ended in a state that leaves the server's envelope
    /// buffers in use (MAIL accepted, no end of data): send RSET before the next MAIL.
    needs_rset: bool,
    tx: Option<Transaction>,
    /// Without pipelining, the MAIL command waiting for the RSET reply.
    pending_mail: Option<String>,
    out: Vec<u8>,
    events: VecDeque<Event>,
}

impl Client {
    /// A client for a freshly connected socket (TLS already up if `implicit_tls`). It
    /// sends nothing until the server's greeting arrives.
    pub fn new(settings: ClientSettings) -> Client {
        let mut pending = VecDeque::new();
        pending.push_back(Expect::Greeting);
        Client {
            tls: settings.implicit_tls,
            settings,
            stage: Stage::Opening,
            pending,
            reader: ReplyReader::default(),
            caps: Capabilities::default(),
            authenticated: false,
            needs_rset: false,
            tx: None,
            pending_mail: None,
            out: Vec::new(),
            events: VecDeque::new(),
        }
    }

    // --- driver interface --------------------------------------------------------------

    /// Feed bytes received from the server. All of them are consumed; what arrives when
    /// no reply is expected fails the connection, and plaintext after a `220` to
    /// STARTTLS is dropped.
    pub fn handle_input(&mut self, input: &[u8]) {
        let mut pos = 0;
        while pos < input.len() {
            if !matches!(
                self.stage,
                Stage::Opening | Stage::Ready | Stage::Transaction | Stage::Body | Stage::Quitting
            ) {
                break;
            }
            let (n, result) = self.reader.feed(&input[pos..]);
            pos += n;
            match result {
                None => {}
                Some(Ok(reply)) => self.handle_reply(reply),
                Some(Err(m)) => self.fail_protocol(m.describe()),
            }
        }
        if pos < input.len() && self.stage == Stage::TlsHandshake {
            info!(
                "{}: discarding {} plaintext bytes received after the 220 to STARTTLS",
                self.settings.peer,
                input.len() - pos
            );
        }
    }

    /// Bytes to send, in order. Empties the client's output buffer.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Bytes waiting in [`take_output`](Self::take_output).
    pub fn pending_output(&self) -> usize {
        self.out.len()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// What the client waits for now (the driver's deadline).
    pub fn phase(&self) -> Phase {
        match self.stage {
            Stage::Closed => return Phase::Closed,
            Stage::TlsHandshake => return Phase::StartTls,
            Stage::Body => return Phase::Body,
            _ => {}
        }
        match self.pending.front() {
            None => Phase::Idle,
            Some(Expect::Greeting) => Phase::Greeting,
            Some(Expect::Ehlo | Expect::Helo) => Phase::Ehlo,
            Some(Expect::StartTls) => Phase::StartTls,
            Some(Expect::Auth(_)) => Phase::Auth,
            Some(Expect::Rset) => Phase::Rset,
            Some(Expect::Mail) => Phase::Mail,
            Some(Expect::Rcpt(_)) => Phase::Rcpt,
            Some(Expect::Data) => Phase::Data,
            Some(Expect::DataEnd) => Phase::DataEnd,
            Some(Expect::Quit) => Phase::Quit,
        }
    }

    /// What the server offered in its last EHLO reply (after TLS, the one inside TLS).
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// The connection is encrypted (implicit TLS or STARTTLS done).
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    pub fn is_closed(&self) -> bool {
        self.stage == Stage::Closed
    }

    /// The TLS handshake after [`Event::StartTls`] succeeded: RFC 3207 §4.2, forget what
    /// the server said before and start over with EHLO.
    pub fn tls_started(&mut self) {
        if self.stage != Stage::TlsHandshake {
            return;
        }
        debug!("{}: TLS started", self.settings.peer);
        self.tls = true;
        self.caps = Capabilities::default();
        self.reader = ReplyReader::default();
        self.stage = Stage::Opening;
        let ehlo = format!("EHLO {}", self.settings.helo_name);
        self.command(&ehlo, Expect::Ehlo);
    }

    /// The TLS handshake failed (or the certificate did not verify): transient.
    pub fn handle_tls_failure(&mut self, reason: &str) {
        let reply = reply::tls_failed(&self.settings.peer, reason);
        self.fail(Outcome::Transient(reply), false);
    }

    /// The driver's deadline for the current phase passed.
    pub fn handle_timeout(&mut self) {
        let reply = reply::conversation_timed_out(&self.settings.peer, self.phase().describe());
        self.fail(Outcome::Transient(reply), false);
    }

    /// The server closed the connection, or reading or writing failed.
    pub fn handle_connection_lost(&mut self) {
        match self.stage {
            Stage::Closed => {}
            // RFC 5321 §4.1.1.10: the server closes after its 221; closing first is rude
            // but harmless once QUIT is out.
            Stage::Quitting => self.close(),
            _ => {
                let reply = reply::lost_connection(&self.settings.peer, self.phase().describe());
                self.fail(Outcome::Transient(reply), false);
            }
        }
    }

    /// Give up on the connection for a local reason (the message file cannot be read in
    /// the middle of the body): the connection must be dropped without ending the data,
    /// so the server discards the message. `reply` is the outcome for every recipient
    /// without one (transient).
    pub fn abort(&mut self, reply: Reply) {
        self.fail(Outcome::Transient(reply), false);
    }

    /// Start a message. Only valid after [`Event::Ready`]; otherwise every recipient is
    /// deferred at once with a local error.
    pub fn send(&mut self, msg: &MessageStart) {
        let n = msg.recipients.len();
        if self.stage != Stage::Ready {
            let o = Outcome::Transient(reply::local_error());
            self.events.push_back(Event::MessageDone(vec![o; n]));
            return;
        }
        let mut tx = Transaction {
            recipients: msg.recipients.clone(),
            outcomes: vec![None; n],
            to_send: Vec::new(),
            sent: 0,
            accepted: 0,
            mail_failure: None,
            discarding: false,
            writer: DotWriter::new(),
        };
        // Refusals we can tell without asking the server.
        let peer = &self.settings.peer.clone();
        let utf8 = !msg.from.is_ascii() || msg.recipients.iter().any(|r| !r.is_ascii());
        let refusal = if !safe_address(&msg.from) {
            Some(Outcome::Permanent(reply::bad_envelope_sender()))
        } else if utf8 && !self.caps.smtputf8 {
            Some(Outcome::Permanent(reply::smtputf8_not_offered(peer)))
        } else {
            match self.caps.size {
                // RFC 1870 §6.1: do not send what the server said it will not take.
                Some(limit) if limit > 0 && msg.size > limit => Some(Outcome::Permanent(
                    reply::size_over_remote_limit(peer, msg.size, limit),
                )),
                _ => None,
            }
        };
        if let Some(o) = refusal {
            tx.settle(&o);
        }
        for (i, r) in msg.recipients.iter().enumerate() {
            if tx.outcomes[i].is_none() {
                if safe_address(r) {
                    tx.to_send.push(i);
                } else {
                    tx.outcomes[i] = Some(Outcome::Permanent(reply::bad_envelope_recipient()));
                }
            }
        }
        if tx.to_send.is_empty() {
            self.tx = Some(tx);
            self.finish();
            return;
        }

        let mut mail = format!("MAIL FROM:<{}>", msg.from);
        if self.caps.size.is_some() {
            mail.push_str(&format!(" SIZE={}", msg.size));
        }
        if msg.eight_bit {
            if self.caps.eight_bit_mime {
                mail.push_str(" BODY=8BITMIME");
            } else {
                // RFC 6152 §3 would have us convert to 7 bit; like Postfix (and every
                // MTA in practice) we send it as it is and say so.
                info!(
                    "{}: sending 8-bit message to a server that does not offer 8BITMIME",
                    peer
                );
            }
        }
        if utf8 {
            mail.push_str(" SMTPUTF8");
        }
        self.stage = Stage::Transaction;
        if self.caps.pipelining {
            // RFC 2920 §3.1: RSET, MAIL and RCPT may be grouped; DATA ends the group.
            if self.needs_rset {
                self.command("RSET", Expect::Rset);
            }
            self.command(&mail, Expect::Mail);
            for &i in &tx.to_send {
                let rcpt = format!("RCPT TO:<{}>", tx.recipients[i]);
                self.command(&rcpt, Expect::Rcpt(i));
            }
            tx.sent = tx.to_send.len();
            self.command("DATA", Expect::Data);
            self.tx = Some(tx);
        } else {
            self.tx = Some(tx);
            if self.needs_rset {
                self.command("RSET", Expect::Rset);
                // MAIL goes out once RSET is answered.
                self.pending_mail = Some(mail);
            } else {
                self.command(&mail, Expect::Mail);
            }
        }
    }

    /// Message text after [`Event::SendBody`], split anywhere; dot-stuffed here (RFC 5321
    /// §4.5.2). Ignored in any other phase.
    pub fn write_body(&mut self, bytes: &[u8]) {
        if self.stage != Stage::Body {
            return;
        }
        if let Some(tx) = self.tx.as_mut() {
            tx.writer.write(bytes, &mut self.out);
        }
    }

    /// The whole message was given to [`write_body`](Self::write_body): send the end of
    /// data and wait for the verdict.
    pub fn end_body(&mut self) {
        if self.stage != Stage::Body {
            return;
        }
        if let Some(tx) = self.tx.as_mut() {
            tx.writer.finish(&mut self.out);
        }
        self.stage = Stage::Transaction;
        self.pending.push_back(Expect::DataEnd);
    }

    /// End the connection: QUIT when ready (then [`Event::Closed`]). In the middle of a
    /// message, the message is deferred and the connection fails instead.
    pub fn quit(&mut self) {
        match self.stage {
            Stage::Closed | Stage::Quitting => {}
            Stage::Ready => {
                self.stage = Stage::Quitting;
                self.command("QUIT", Expect::Quit);
            }
            _ => {
                let reply = reply::lost_connection(&self.settings.peer, "closing before the end");
                // Commands may be half answered: do not add a QUIT to a broken dialogue.
                self.fail(Outcome::Transient(reply), false);
            }
        }
    }

    // --- the dialogue ------------------------------------------------------------------

    fn command(&mut self, line: &str, expect: Expect) {
        debug!("{}: >>> {}", self.settings.peer, line);
        self.out.extend_from_slice(line.as_bytes());
        self.out.extend_from_slice(b"\r\n");
        self.pending.push_back(expect);
    }

    fn handle_reply(&mut self, reply: Reply) {
        debug!("{}: <<< {}", self.settings.peer, reply);
        let Some(expect) = self.pending.pop_front() else {
            // Nothing was asked. A 421 is the server timing us out or shutting down.
            if reply.code == 421 {
                return self.fail(Outcome::Transient(reply), false);
            }
            return self.fail_protocol(&format!("unexpected reply: {reply}"));
        };
        if reply.code == 421 && expect != Expect::Quit {
            // RFC 5321 §3.8: the server is closing the channel, whatever we asked.
            return self.fail(Outcome::Transient(reply), false);
        }
        match expect {
            Expect::Greeting => self.greeting(reply),
            Expect::Ehlo => self.ehlo(reply),
            Expect::Helo => self.helo(reply),
            Expect::StartTls => self.starttls(reply),
            Expect::Auth(step) => self.auth(step, reply),
            Expect::Rset => self.rset(reply),
            Expect::Mail => self.mail(reply),
            Expect::Rcpt(i) => self.rcpt(i, reply),
            Expect::Data => self.data(reply),
            Expect::DataEnd => self.data_end(reply),
            Expect::Quit => self.close(),
        }
    }

    fn greeting(&mut self, reply: Reply) {
        match reply.code {
            220 => {
                let ehlo = format!("EHLO {}", self.settings.helo_name);
                self.command(&ehlo, Expect::Ehlo);
            }
            // RFC 5321 §3.1: after a 554 greeting the client should send QUIT.
            400..=599 => self.fail(Outcome::failure(reply), true),
            _ => self.fail_protocol(&format!("unexpected greeting: {reply}")),
        }
    }

    fn ehlo(&mut self, reply: Reply) {
        match reply.code / 100 {
            2 => {
                self.caps = Capabilities::parse(&reply);
                debug!("{}: {:?}", self.settings.peer, self.caps);
                self.after_hello();
            }
            // RFC 5321 §3.2: a server that does not know EHLO answers 5xx; try HELO.
            5 => {
                let helo = format!("HELO {}", self.settings.helo_name);
                self.command(&helo, Expect::Helo);
            }
            4 => self.fail(Outcome::Transient(reply), true),
            _ => self.fail_protocol(&format!("unexpected reply to EHLO: {reply}")),
        }
    }

    fn helo(&mut self, reply: Reply) {
        match reply.code / 100 {
            2 => {
                self.caps = Capabilities::default();
                self.after_hello();
            }
            4 | 5 => self.fail(Outcome::failure(reply), true),
            _ => self.fail_protocol(&format!("unexpected reply to HELO: {reply}")),
        }
    }

    /// EHLO/HELO done: STARTTLS if the policy wants it, else AUTH if configured.
    fn after_hello(&mut self) {
        if !self.tls {
            match self.settings.tls {
                TlsPolicy::None => {}
                TlsPolicy::Opportunistic | TlsPolicy::Required if self.caps.starttls => {
                    return self.command("STARTTLS", Expect::StartTls);
                }
                TlsPolicy::Opportunistic => {}
                TlsPolicy::Required => {
                    let reply = reply::tls_not_offered(&self.settings.peer);
                    return self.fail(Outcome::Transient(reply), true);
                }
            }
        }
        self.authenticate_or_ready();
    }

    fn starttls(&mut self, reply: Reply) {
        if reply.code == 220 {
            self.stage = Stage::TlsHandshake;
            self.events.push_back(Event::StartTls);
            return;
        }
        match self.settings.tls {
            TlsPolicy::Required => {
                let reply = reply::starttls_refused(&self.settings.peer, &reply);
                self.fail(Outcome::Transient(reply), true);
            }
            // RFC 3207 §4: on 454 the client decides; opportunistic goes on in plaintext.
            _ => {
                info!(
                    "{}: STARTTLS refused ({reply}), continuing without TLS",
                    self.settings.peer
                );
                self.authenticate_or_ready();
            }
        }
    }

    fn authenticate_or_ready(&mut self) {
        let Some(creds) = self.settings.auth.as_ref().filter(|_| !self.authenticated) else {
            return self.ready();
        };
        let peer = &self.settings.peer;
        if !self.tls && self.settings.tls != TlsPolicy::None {
            let reply = reply::auth_impossible(peer, "refusing to send credentials without TLS");
            return self.fail(Outcome::Transient(reply), true);
        }
        if self.caps.auth_plain {
            // RFC 4616: authzid NUL authcid NUL password, with the initial response
            // (RFC 4954 §4).
            let mut message = Vec::with_capacity(creds.username.len() + creds.password.len() + 2);
            message.push(0);
            message.extend_from_slice(creds.username.as_bytes());
            message.push(0);
            message.extend_from_slice(creds.password.expose());
            let mut line = format!("AUTH PLAIN {}", base64::encode(&message)).into_bytes();
            wipe(&mut message);
            debug!("{}: >>> AUTH PLAIN (credentials)", peer);
            self.out.extend_from_slice(&line);
            self.out.extend_from_slice(b"\r\n");
            wipe(&mut line);
            self.pending.push_back(Expect::Auth(AuthStep::Plain));
        } else if self.caps.auth_login {
            self.command("AUTH LOGIN", Expect::Auth(AuthStep::Login));
        } else {
            let reply = reply::auth_impossible(peer, "no AUTH PLAIN or LOGIN offered");
            self.fail(Outcome::Transient(reply), true);
        }
    }

    fn auth(&mut self, step: AuthStep, reply: Reply) {
        match (reply.code, step) {
            (235, AuthStep::Plain | AuthStep::LoginPassword) => {
                debug!("{}: authenticated", self.settings.peer);
                self.authenticated = true;
                self.ready();
            }
            (334, AuthStep::Login | AuthStep::LoginUsername) => {
                let Some(creds) = self.settings.auth.as_ref() else {
                    return self.fail_protocol("AUTH without credentials");
                };
                let (secret, next) = if step == AuthStep::Login {
                    (creds.username.as_bytes(), AuthStep::LoginUsername)
                } else {
                    (creds.password.expose(), AuthStep::LoginPassword)
                };
                let mut line = base64::encode(secret).into_bytes();
                debug!("{}: >>> (AUTH LOGIN response)", self.settings.peer);
                self.out.extend_from_slice(&line);
                self.out.extend_from_slice(b"\r\n");
                wipe(&mut line);
                self.pending.push_back(Expect::Auth(next));
            }
            (400..=599, _) => {
                let reply = reply::remote_auth_failed(&self.settings.peer, &reply);
                // Still in command mode after a failed AUTH: say goodbye.
                self.fail(Outcome::Transient(reply), true);
            }
            // A 334 where the exchange is over, or some other code: the SASL dialogue is
            // out of step, so no QUIT (it would be read as a SASL response).
            _ => self.fail_protocol(&format!("unexpected reply to AUTH: {reply}")),
        }
    }

    fn ready(&mut self) {
        self.stage = Stage::Ready;
        self.events.push_back(Event::Ready);
    }

    fn rset(&mut self, reply: Reply) {
        if reply.code / 100 != 2 {
            return self.fail(Outcome::Transient(reply), false);
        }
        self.needs_rset = false;
        if let Some(mail) = self.pending_mail.take() {
            self.command(&mail, Expect::Mail);
        }
    }

    fn mail(&mut self, reply: Reply) {
        let pipelining = self.caps.pipelining;
        let Some(tx) = self.tx.as_mut() else {
            return self.fail_protocol("MAIL reply outside a transaction");
        };
        if reply.code / 100 == 2 {
            // From here until the end of data, the server holds a transaction.
            self.needs_rset = true;
            if !pipelining {
                self.next_rcpt();
            }
        } else {
            tx.settle(&Outcome::failure(reply.clone()));
            tx.mail_failure = Some(reply);
            if !pipelining {
                self.finish();
            }
        }
    }

    fn rcpt(&mut self, i: usize, reply: Reply) {
        let pipelining = self.caps.pipelining;
        let Some(tx) = self.tx.as_mut() else {
            return self.fail_protocol("RCPT reply outside a transaction");
        };
        // After a failed MAIL, every recipient already has MAIL's reply.
        if tx.mail_failure.is_none() {
            if let Some(slot) = tx.outcomes.get_mut(i) {
                if reply.code / 100 == 2 {
                    tx.accepted += 1;
                } else {
                    *slot = Some(Outcome::failure(reply));
                }
            }
        }
        if !pipelining {
            self.next_rcpt();
        }
    }

    /// Without pipelining: the next RCPT, or DATA after the last one (or give up when
    /// no recipient was accepted: RSET comes before the next message).
    fn next_rcpt(&mut self) {
        let Some(tx) = self.tx.as_mut() else {
            return;
        };
        if let Some(&i) = tx.to_send.get(tx.sent) {
            tx.sent += 1;
            let line = format!("RCPT TO:<{}>", tx.recipients[i]);
            self.command(&line, Expect::Rcpt(i));
        } else if tx.accepted > 0 {
            self.command("DATA", Expect::Data);
        } else {
            self.finish();
        }
    }

    fn data(&mut self, reply: Reply) {
        let Some(tx) = self.tx.as_mut() else {
            return self.fail_protocol("DATA reply outside a transaction");
        };
        if reply.code == 354 {
            if tx.accepted > 0 && tx.mail_failure.is_none() {
                self.stage = Stage::Body;
                self.events.push_back(Event::SendBody);
            } else {
                // RFC 2920 §3.1: a server that accepts DATA after rejecting every
                // recipient gets an empty message, which it must not deliver.
                tx.discarding = true;
                self.out.extend_from_slice(b".\r\n");
                self.pending.push_back(Expect::DataEnd);
            }
            return;
        }
        if reply.code / 100 != 4 && reply.code / 100 != 5 {
            return self.fail_protocol(&format!("unexpected reply to DATA: {reply}"));
        }
        // Every accepted recipient gets DATA's refusal (the others have their own).
        tx.settle(&Outcome::failure(reply));
        self.finish();
    }

    fn data_end(&mut self, reply: Reply) {
        let Some(tx) = self.tx.as_mut() else {
            return self.fail_protocol("end-of-data reply outside a transaction");
        };
        // The transaction is over whatever the reply (RFC 5321 §4.1.1.4).
        self.needs_rset = false;
        if !tx.discarding {
            tx.settle(&if reply.code / 100 == 2 {
                Outcome::Delivered(reply)
            } else {
                Outcome::failure(reply)
            });
        }
        self.finish();
    }

    /// The message is decided: report it and be ready for the next one.
    fn finish(&mut self) {
        let Some(mut tx) = self.tx.take() else {
            return;
        };
        // Every recipient has an outcome by now; be safe if the server skipped a step.
        tx.settle(&Outcome::Transient(reply::local_error()));
        let outcomes = tx.outcomes.into_iter().flatten().collect();
        self.events.push_back(Event::MessageDone(outcomes));
        self.pending_mail = None;
        self.ready();
    }

    /// A protocol error: the dialogue is out of step, so no QUIT.
    fn fail_protocol(&mut self, what: &str) {
        let reply = reply::malformed_reply(&self.settings.peer, what);
        self.fail(Outcome::Transient(reply), false);
    }

    /// The connection is unusable. A message in progress is settled first (its
    /// recipients without a final word get `outcome`); then [`Event::Failed`]. `quit`
    /// when the dialogue is in step and a QUIT is polite (RFC 5321 §3.1, §4.1.1.10).
    fn fail(&mut self, outcome: Outcome, quit: bool) {
        if self.stage == Stage::Closed {
            return;
        }
        debug!("{}: failed: {}", self.settings.peer, outcome.reply());
        if let Some(mut tx) = self.tx.take() {
            tx.settle(&outcome);
            let outcomes = tx.outcomes.into_iter().flatten().collect();
            self.events.push_back(Event::MessageDone(outcomes));
        }
        // Unsent output (pipelined commands, body bytes) is moot now.
        self.out.clear();
        if quit {
            self.out.extend_from_slice(b"QUIT\r\n");
        }
        self.pending.clear();
        self.stage = Stage::Closed;
        self.events.push_back(Event::Failed(outcome));
    }

    fn close(&mut self) {
        if self.stage != Stage::Closed {
            self.stage = Stage::Closed;
            self.pending.clear();
            self.events.push_back(Event::Closed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEER: &str = "mx.test[127.0.0.1]:25";
    const GREETING: &[u8] = b"220 mx.test ESMTP\r\n";
    /// Everything but STARTTLS and AUTH, with pipelining.
    const EHLO_PIPELINING: &[u8] = b"250-mx.test\r\n250-PIPELINING\r\n250-SIZE 10000\r\n\
        250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250 SMTPUTF8\r\n";
    /// A plain old server: no pipelining, no SIZE.
    const EHLO_BASIC: &[u8] = b"250-mx.test\r\n250 8BITMIME\r\n";

    fn settings(tls: TlsPolicy) -> ClientSettings {
        ClientSettings {
            helo_name: "client.test".into(),
            peer: PEER.into(),
            tls,
            implicit_tls: false,
            auth: None,
        }
    }

    fn with_auth(mut s: ClientSettings) -> ClientSettings {
        s.auth = Some(Credentials {
            username: "user".into(),
            password: Secret::copy_from(b"pass"),
        });
        s
    }

    fn msg(from: &str, to: &[&str], size: u64, eight_bit: bool) -> MessageStart {
        MessageStart {
            from: from.into(),
            recipients: to.iter().map(|s| s.to_string()).collect(),
            size,
            eight_bit,
        }
    }

    /// One thing that happens to the client: server bytes, or a driver call.
    #[derive(Debug)]
    enum Step {
        Server(Vec<u8>),
        Send(MessageStart),
        Body(Vec<u8>),
        EndBody,
        TlsStarted,
        TlsFailed,
        Quit,
        Eof,
        Timeout,
    }
    use Step::*;

    fn srv(bytes: &[u8]) -> Step {
        Server(bytes.to_vec())
    }

    /// `D250` / `T451` / `P550`: the outcome's kind and reply code.
    fn tag(o: &Outcome) -> String {
        let kind = match o {
            Outcome::Delivered(_) => 'D',
            Outcome::Transient(_) => 'T',
            Outcome::Permanent(_) => 'P',
        };
        format!("{kind}{}", o.reply().code)
    }

    fn summary(e: &Event) -> String {
        match e {
            Event::StartTls => "StartTls".into(),
            Event::Ready => "Ready".into(),
            Event::SendBody => "SendBody".into(),
            Event::Closed => "Closed".into(),
            Event::Failed(o) => format!("Failed({})", tag(o)),
            Event::MessageDone(v) => {
                format!("Done[{}]", v.iter().map(tag).collect::<Vec<_>>().join(","))
            }
        }
    }

    struct Harness {
        c: Client,
        /// Every event so far, for looking at reply texts.
        events: Vec<Event>,
    }

    impl Harness {
        fn new(s: ClientSettings) -> Harness {
            Harness {
                c: Client::new(s),
                events: Vec::new(),
            }
        }

        /// Greeting and EHLO answered; the client is ready.
        fn opened(s: ClientSettings, ehlo: &[u8]) -> Harness {
            let mut h = Harness::new(s);
            transcript!(h,
                srv(GREETING) => "EHLO client.test\r\n", "";
                srv(ehlo) => "", "Ready";
            );
            h
        }

        /// Apply one step; returns what the client sent and its events, summarised.
        fn step(&mut self, step: &Step) -> (String, String) {
            match step {
                Server(b) => self.c.handle_input(b),
                Send(m) => self.c.send(m),
                Body(b) => self.c.write_body(b),
                EndBody => self.c.end_body(),
                TlsStarted => self.c.tls_started(),
                TlsFailed => self
                    .c
                    .handle_tls_failure("invalid peer certificate: UnknownIssuer"),
                Quit => self.c.quit(),
                Eof => self.c.handle_connection_lost(),
                Timeout => self.c.handle_timeout(),
            }
            self.collect()
        }

        fn collect(&mut self) -> (String, String) {
            let out = String::from_utf8_lossy(&self.c.take_output()).into_owned();
            let mut ev = Vec::new();
            while let Some(e) = self.c.poll_event() {
                ev.push(summary(&e));
                self.events.push(e);
            }
            (out, ev.join(" "))
        }

        /// The reply of the last `Failed` event, as logged.
        fn failure(&self) -> String {
            self.events
                .iter()
                .rev()
                .find_map(|e| match e {
                    Event::Failed(o) => Some(o.reply().to_string()),
                    _ => None,
                })
                .unwrap_or_default()
        }

        fn last_done(&self) -> Vec<Outcome> {
            self.events
                .iter()
                .rev()
                .find_map(|e| match e {
                    Event::MessageDone(v) => Some(v.clone()),
                    _ => None,
                })
                .unwrap_or_default()
        }
    }

    /// Server bytes or driver call in; exact client bytes and events out.
    macro_rules! transcript {
        ($h:expr, $( $step:expr => $out:expr, $events:expr );* $(;)?) => {
            $( {
                let step = $step;
                let (out, events) = $h.step(&step);
                assert_eq!((out.as_str(), events.as_str()), ($out, $events), "after {:?}", step);
            } )*
        };
    }
    use transcript;

    #[test]
    fn pipelined_transaction_with_a_rejected_recipient_and_dot_stuffing() {
        let mut h = Harness::opened(settings(TlsPolicy::Opportunistic), EHLO_PIPELINING);
        assert!(h.c.capabilities().pipelining);
        assert_eq!(h.c.phase(), Phase::Idle);
        transcript!(h,
            Send(msg("a@b.example", &["x@mx.test", "y@mx.test", "z@mx.test"], 120, true)) =>
                "MAIL FROM:<a@b.example> SIZE=120 BODY=8BITMIME\r\nRCPT TO:<x@mx.test>\r\n\
                 RCPT TO:<y@mx.test>\r\nRCPT TO:<z@mx.test>\r\nDATA\r\n", "";
            srv(b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 <y@mx.test>: unknown\r\n") => "", "";
            srv(b"450 4.2.0 <z@mx.test>: greylisted\r\n354 go ahead\r\n") => "", "SendBody";
            Body(b".leading dot\r\n".to_vec()) => "..leading dot\r\n", "";
            Body(b"caf\xc3\xa9\r\n.\r\nend".to_vec()) => "caf\u{e9}\r\n..\r\nend", "";
            EndBody => "\r\n.\r\n", "";
            srv(b"250 2.0.0 Ok: queued as 1234\r\n") => "", "Done[D250,P550,T450] Ready";
            Quit => "QUIT\r\n", "";
            srv(b"221 2.0.0 Bye\r\n") => "", "Closed";
        );
        let done = h.last_done();
        assert_eq!(done[0].reply().to_string(), "250 2.0.0 Ok: queued as 1234");
        assert_eq!(
            done[1].reply().to_string(),
            "550 5.1.1 <y@mx.test>: unknown"
        );
        assert_eq!(dsn(done[1].reply()), "5.1.1");
        assert_eq!(h.c.phase(), Phase::Closed);
    }

    #[test]
    fn one_command_at_a_time_without_pipelining() {
        let mut h = Harness::opened(settings(TlsPolicy::Opportunistic), EHLO_BASIC);
        transcript!(h,
            Send(msg("", &["x@mx.test", "y@mx.test"], 99, false)) => "MAIL FROM:<>\r\n", "";
            srv(b"250 Ok\r\n") => "RCPT TO:<x@mx.test>\r\n", "";
            srv(b"550 no\r\n") => "RCPT TO:<y@mx.test>\r\n", "";
            srv(b"251 will forward\r\n") => "DATA\r\n", "";
            srv(b"354 go\r\n") => "", "SendBody";
            Body(b"Subject: x\r\n\r\nhi\r\n".to_vec()) => "Subject: x\r\n\r\nhi\r\n", "";
            EndBody => ".\r\n", "";
            srv(b"250 Ok\r\n") => "", "Done[P550,D250] Ready";
        );
    }

    #[test]
    fn phases_follow_the_replies_awaited() {
        let mut h = Harness::new(settings(TlsPolicy::None));
        assert_eq!(h.c.phase(), Phase::Greeting);
        h.step(&srv(GREETING));
        assert_eq!(h.c.phase(), Phase::Ehlo);
        h.step(&srv(EHLO_PIPELINING));
        assert_eq!(h.c.phase(), Phase::Idle);
        h.step(&Send(msg("a@b", &["c@d", "e@f"], 1, false)));
        assert_eq!(h.c.phase(), Phase::Mail);
        h.step(&srv(b"250 ok\r\n"));
        assert_eq!(h.c.phase(), Phase::Rcpt);
        h.step(&srv(b"250 ok\r\n250 ok\r\n"));
        assert_eq!(h.c.phase(), Phase::Data);
        h.step(&srv(b"354 go\r\n"));
        assert_eq!(h.c.phase(), Phase::Body);
        h.step(&EndBody);
        assert_eq!(h.c.phase(), Phase::DataEnd);
        h.step(&srv(b"250 ok\r\n"));
        assert_eq!(h.c.phase(), Phase::Idle);
        h.step(&Quit);
        assert_eq!(h.c.phase(), Phase::Quit);
    }

    #[test]
    fn helo_fallback_when_ehlo_is_refused() {
        let mut h = Harness::new(settings(TlsPolicy::Opportunistic));
        transcript!(h,
            srv(b"220-mx.test old\r\n220 school\r\n") => "EHLO client.test\r\n", "";
            srv(b"502 5.5.1 what?\r\n") => "HELO client.test\r\n", "";
            srv(b"250 mx.test\r\n") => "", "Ready";
            // No 8BITMIME: the 8-bit message goes as it is, without BODY= or SIZE=.
            Send(msg("a@b", &["c@d"], 10, true)) => "MAIL FROM:<a@b>\r\n", "";
        );
        assert!(!h.c.capabilities().esmtp);
    }

    #[test]
    fn helo_refused_too_fails_the_connection() {
        let mut h = Harness::new(settings(TlsPolicy::None));
        transcript!(h,
            srv(GREETING) => "EHLO client.test\r\n", "";
            srv(b"500 no\r\n") => "HELO client.test\r\n", "";
            srv(b"550 go away\r\n") => "QUIT\r\n", "Failed(P550)";
        );
        let mut h = Harness::new(settings(TlsPolicy::None));
        transcript!(h,
            srv(GREETING) => "EHLO client.test\r\n", "";
            srv(b"451 later\r\n") => "QUIT\r\n", "Failed(T451)";
        );
    }

    #[test]
    fn greeting_outcomes() {
        const CASES: &[(&[u8], &str, &str)] = &[
            (b"554 5.7.1 no mail for you\r\n", "QUIT\r\n", "Failed(P554)"),
            (b"450 busy\r\n", "QUIT\r\n", "Failed(T450)"),
            // 421: the server is closing; no QUIT.
            (b"421 4.3.2 shutting down\r\n", "", "Failed(T421)"),
            (b"250 hello?\r\n", "", "Failed(T451)"),
            (b"SSH-2.0-OpenSSH_9.6\r\n", "", "Failed(T451)"),
            (b"HTTP/1.1 400 Bad Request\r\n", "", "Failed(T451)"),
            (b"220\r\n", "EHLO client.test\r\n", ""),
            (b"220 mx\n", "EHLO client.test\r\n", ""),
        ];
        for &(greeting, out, events) in CASES {
            let mut h = Harness::new(settings(TlsPolicy::None));
            let (o, e) = h.step(&srv(greeting));
            assert_eq!((o.as_str(), e.as_str()), (out, events), "{greeting:?}");
        }
    }

    #[test]
    fn starttls_required_and_offered() {
        let mut h = Harness::new(settings(TlsPolicy::Required));
        transcript!(h,
            srv(GREETING) => "EHLO client.test\r\n", "";
            srv(b"250-mx.test\r\n250-STARTTLS\r\n250 SIZE 100\r\n") => "STARTTLS\r\n", "";
            srv(b"220 2.0.0 go ahead\r\n") => "", "StartTls";
            TlsStarted => "EHLO client.test\r\n", "";
            srv(b"250-mx.test\r\n250 PIPELINING\r\n") => "", "Ready";
        );
        assert!(h.c.is_tls());
        // What was learnt before TLS is forgotten (SIZE was only offered in plaintext).
        assert_eq!(h.c.capabilities().size, None);
        assert!(h.c.capabilities().pipelining);
    }

    /// (policy, EHLO reply, STARTTLS reply (if sent), client output, events)
    type TlsCase = (
        TlsPolicy,
        &'static [u8],
        &'static [u8],
        &'static str,
        &'static str,
    );

    #[test]
    fn starttls_policies() {
        const OFFERED: &[u8] = b"250-mx.test\r\n250 STARTTLS\r\n";
        const ABSENT: &[u8] = b"250-mx.test\r\n250 8BITMIME\r\n";
        const CASES: &[TlsCase] = &[
            (TlsPolicy::Required, ABSENT, b"", "QUIT\r\n", "Failed(T451)"),
            (
                TlsPolicy::Required,
                OFFERED,
                b"454 4.7.0 TLS not available\r\n",
                "QUIT\r\n",
                "Failed(T451)",
            ),
            (
                TlsPolicy::Required,
                OFFERED,
                b"501 5.5.4 no\r\n",
                "QUIT\r\n",
                "Failed(T451)",
            ),
            (
                TlsPolicy::Required,
                OFFERED,
                b"421 4.3.2 bye\r\n",
                "",
                "Failed(T421)",
            ),
            (TlsPolicy::Opportunistic, ABSENT, b"", "", "Ready"),
            (
                TlsPolicy::Opportunistic,
                OFFERED,
                b"454 4.7.0 TLS not available\r\n",
                "",
                "Ready",
            ),
            (
                TlsPolicy::Opportunistic,
                OFFERED,
                b"220 go\r\n",
                "",
                "StartTls",
            ),
            (TlsPolicy::None, OFFERED, b"", "", "Ready"),
        ];
        for &(policy, ehlo, starttls_reply, out, events) in CASES {
            let mut h = Harness::new(settings(policy));
            h.step(&srv(GREETING));
            let (mut o, mut e) = h.step(&srv(ehlo));
            if !starttls_reply.is_empty() {
                assert_eq!((o.as_str(), e.as_str()), ("STARTTLS\r\n", ""), "{policy:?}");
                (o, e) = h.step(&srv(starttls_reply));
            }
            let case = format!("{policy:?} {:?}", String::from_utf8_lossy(starttls_reply));
            assert_eq!((o.as_str(), e.as_str()), (out, events), "{case}");
            if e.starts_with("Failed(T451)") {
                assert!(
                    h.failure().starts_with("451 4.7.4 TLS is required, but"),
                    "{}",
                    h.failure()
                );
            }
            assert!(!h.c.is_tls());
        }
    }

    #[test]
    fn tls_required_never_sends_the_envelope_in_clear() {
        let mut h = Harness::new(settings(TlsPolicy::Required));
        transcript!(h,
            srv(GREETING) => "EHLO client.test\r\n", "";
            srv(EHLO_PIPELINING) => "QUIT\r\n", "Failed(T451)";
            // A driver that ignores the failure gets nothing sent either.
            Send(msg("a@b", &["c@d"], 1, false)) => "", "Done[T451]";
        );
        assert_eq!(
            h.failure(),
            "451 4.7.4 TLS is required, but was not offered by host mx.test[127.0.0.1]:25"
        );
    }

    #[test]
    fn plaintext_injected_after_the_starttls_reply_is_discarded() {
        let mut h = Harness::new(settings(TlsPolicy::Required));
        transcript!(h,
            srv(GREETING) => "EHLO client.test\r\n", "";
            srv(b"250-mx.test\r\n250 STARTTLS\r\n") => "STARTTLS\r\n", "";
            // A man in the middle appends a fake EHLO reply to the 220.
            srv(b"220 go ahead\r\n250-evil\r\n250 AUTH PLAIN\r\n") => "", "StartTls";
            srv(b"250 more injection\r\n") => "", "";
            TlsStarted => "EHLO client.test\r\n", "";
            srv(b"250-mx.test\r\n250 8BITMIME\r\n") => "", "Ready";
        );
        assert!(!h.c.capabilities().auth_plain);
    }

    #[test]
    fn tls_handshake_failure_is_transient() {
        let mut h = Harness::new(settings(TlsPolicy::Required));
        transcript!(h,
            srv(GREETING) => "EHLO client.test\r\n", "";
            srv(b"250-mx.test\r\n250 STARTTLS\r\n") => "STARTTLS\r\n", "";
            srv(b"220 go ahead\r\n") => "", "StartTls";
            TlsFailed => "", "Failed(T451)";
        );
        assert_eq!(
            h.failure(),
            "451 4.7.5 TLS handshake with mx.test[127.0.0.1]:25 failed: \
             invalid peer certificate: UnknownIssuer"
        );
    }

    #[test]
    fn auth_plain_and_login() {
        let mut tls = with_auth(settings(TlsPolicy::Required));
        tls.implicit_tls = true;
        // PLAIN preferred when both are offered; credentials "user"/"pass".
        let mut h = Harness::new(tls.clone());
        transcript!(h,
            srv(GREETING) => "EHLO client.test\r\n", "";
            srv(b"250-mx.test\r\n250-AUTH LOGIN PLAIN\r\n250 PIPELINING\r\n") =>
                "AUTH PLAIN AHVzZXIAcGFzcw==\r\n", "";
            srv(b"235 2.7.0 Authentication successful\r\n") => "", "Ready";
        );
        let mut h = Harness::new(tls.clone());
        transcript!(h,
            srv(GREETING) => "EHLO client.test\r\n", "";
            srv(b"250-mx.test\r\n250 AUTH=LOGIN\r\n") => "AUTH LOGIN\r\n", "";
            srv(b"334 VXNlcm5hbWU6\r\n") => "dXNlcg==\r\n", "";
            srv(b"334 UGFzc3dvcmQ6\r\n") => "cGFzcw==\r\n", "";
            srv(b"235 2.7.0 ok\r\n") => "", "Ready";
        );
        // After STARTTLS, AUTH follows the second EHLO.
        let mut h = Harness::new(with_auth(settings(TlsPolicy::Required)));
        transcript!(h,
            srv(GREETING) => "EHLO client.test\r\n", "";
            srv(b"250-mx.test\r\n250 STARTTLS\r\n") => "STARTTLS\r\n", "";
            srv(b"220 go\r\n") => "", "StartTls";
            TlsStarted => "EHLO client.test\r\n", "";
            srv(b"250-mx.test\r\n250 AUTH PLAIN\r\n") => "AUTH PLAIN AHVzZXIAcGFzcw==\r\n", "";
            srv(b"235 ok\r\n") => "", "Ready";
        );
    }

    /// (EHLO reply, AUTH reply, client output, events, failure text prefix)
    type AuthCase = (
        &'static [u8],
        &'static [u8],
        &'static str,
        &'static str,
        &'static str,
    );

    #[test]
    fn auth_failures_defer() {
        let mut tls = with_auth(settings(TlsPolicy::Required));
        tls.implicit_tls = true;
        const CASES: &[AuthCase] = &[
            (
                b"250-mx\r\n250 AUTH PLAIN\r\n",
                b"535 5.7.8 Error: authentication failed\r\n",
                "QUIT\r\n",
                "Failed(T451)",
                "451 4.7.0 SASL authentication failed; server mx.test[127.0.0.1]:25 said: \
                 535 5.7.8 Error: authentication failed",
            ),
            (
                b"250-mx\r\n250 AUTH PLAIN\r\n",
                b"454 4.7.0 try later\r\n",
                "QUIT\r\n",
                "Failed(T451)",
                "451 4.7.0 SASL",
            ),
            (
                b"250-mx\r\n250 AUTH PLAIN\r\n",
                b"334 \r\n",
                "",
                "Failed(T451)",
                "451 4.5.0 protocol error",
            ),
            (
                b"250-mx\r\n250 AUTH CRAM-MD5\r\n",
                b"",
                "QUIT\r\n",
                "Failed(T451)",
                "451 4.7.0 cannot authenticate",
            ),
            (
                b"250 mx\r\n",
                b"",
                "QUIT\r\n",
                "Failed(T451)",
                "451 4.7.0 cannot authenticate",
            ),
        ];
        for &(ehlo, auth_reply, out, events, text) in CASES {
            let mut h = Harness::new(tls.clone());
            h.step(&srv(GREETING));
            let (mut o, mut e) = h.step(&srv(ehlo));
            if !auth_reply.is_empty() {
                assert_eq!(o, "AUTH PLAIN AHVzZXIAcGFzcw==\r\n");
                (o, e) = h.step(&srv(auth_reply));
            }
            assert_eq!((o.as_str(), e.as_str()), (out, events), "{auth_reply:?}");
            assert!(h.failure().starts_with(text), "{}", h.failure());
        }
    }

    #[test]
    fn no_auth_over_plaintext_unless_tls_is_off() {
        const EHLO: &[u8] = b"250-mx.test\r\n250 AUTH PLAIN\r\n";
        let mut h = Harness::new(with_auth(settings(TlsPolicy::Opportunistic)));
        transcript!(h,
            srv(GREETING) => "EHLO client.test\r\n", "";
            srv(EHLO) => "QUIT\r\n", "Failed(T451)";
        );
        assert!(h.failure().contains("without TLS"), "{}", h.failure());
        // smarthost_tls = none: the administrator said so.
        let mut h = Harness::new(with_auth(settings(TlsPolicy::None)));
        transcript!(h,
            srv(GREETING) => "EHLO client.test\r\n", "";
            srv(EHLO) => "AUTH PLAIN AHVzZXIAcGFzcw==\r\n", "";
        );
    }

    #[test]
    fn mail_rejected() {
        // Pipelined: every recipient gets MAIL's reply; no RSET is needed afterwards.
        let mut h = Harness::opened(settings(TlsPolicy::None), EHLO_PIPELINING);
        transcript!(h,
            Send(msg("a@b", &["c@d", "e@f"], 1, false)) =>
                "MAIL FROM:<a@b> SIZE=1\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\nDATA\r\n", "";
            srv(b"553 5.7.1 <a@b>: Sender address rejected\r\n503 5.5.1 need MAIL\r\n\
                  503 5.5.1 need MAIL\r\n554 5.5.1 no valid recipients\r\n") =>
                "", "Done[P553,P553] Ready";
            Send(msg("a@b", &["c@d"], 1, false)) =>
                "MAIL FROM:<a@b> SIZE=1\r\nRCPT TO:<c@d>\r\nDATA\r\n", "";
        );
        assert_eq!(
            h.last_done()[1].reply().text(),
            "5.7.1 <a@b>: Sender address rejected"
        );
        // One at a time: no RCPT after a refused MAIL.
        let mut h = Harness::opened(settings(TlsPolicy::None), EHLO_BASIC);
        transcript!(h,
            Send(msg("a@b", &["c@d", "e@f"], 1, false)) => "MAIL FROM:<a@b>\r\n", "";
            srv(b"451 4.3.0 try later\r\n") => "", "Done[T451,T451] Ready";
        );
    }

    #[test]
    fn data_refused_then_rset_before_the_next_message() {
        let mut h = Harness::opened(settings(TlsPolicy::None), EHLO_PIPELINING);
        transcript!(h,
            Send(msg("a@b", &["c@d", "e@f"], 1, false)) =>
                "MAIL FROM:<a@b> SIZE=1\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\nDATA\r\n", "";
            srv(b"250 ok\r\n250 ok\r\n550 no\r\n554 5.7.0 no thanks\r\n") =>
                "", "Done[P554,P550] Ready";
            Send(msg("a@b", &["c@d"], 1, false)) =>
                "RSET\r\nMAIL FROM:<a@b> SIZE=1\r\nRCPT TO:<c@d>\r\nDATA\r\n", "";
            srv(b"250 reset\r\n250 ok\r\n250 ok\r\n354 go\r\n") => "", "SendBody";
        );
    }

    #[test]
    fn end_of_data_refused() {
        let mut h = Harness::opened(settings(TlsPolicy::None), EHLO_PIPELINING);
        transcript!(h,
            Send(msg("a@b", &["c@d", "e@f"], 1, false)) =>
                "MAIL FROM:<a@b> SIZE=1\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\nDATA\r\n", "";
            srv(b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n") => "", "SendBody";
            EndBody => ".\r\n", "";
            srv(b"451 4.3.0 Error: queue file write error\r\n") => "", "Done[T451,T451] Ready";
            // The transaction ended with the end of data: no RSET.
            Send(msg("a@b", &["c@d"], 1, false)) =>
                "MAIL FROM:<a@b> SIZE=1\r\nRCPT TO:<c@d>\r\nDATA\r\n", "";
            srv(b"250 ok\r\n250 ok\r\n354 go\r\n") => "", "SendBody";
            EndBody => ".\r\n", "";
            srv(b"554 5.7.1 spam\r\n") => "", "Done[P554] Ready";
        );
    }

    #[test]
    fn no_recipient_accepted() {
        // Pipelined: DATA is refused; RSET before the next message.
        let mut h = Harness::opened(settings(TlsPolicy::None), EHLO_PIPELINING);
        transcript!(h,
            Send(msg("a@b", &["c@d"], 1, false)) =>
                "MAIL FROM:<a@b> SIZE=1\r\nRCPT TO:<c@d>\r\nDATA\r\n", "";
            srv(b"250 ok\r\n550 5.1.1 unknown\r\n554 5.5.1 no valid recipients\r\n") =>
                "", "Done[P550] Ready";
            Quit => "QUIT\r\n", "";
        );
        // A server that says 354 anyway gets an empty message (RFC 2920 §3.1).
        let mut h = Harness::opened(settings(TlsPolicy::None), EHLO_PIPELINING);
        transcript!(h,
            Send(msg("a@b", &["c@d"], 1, false)) =>
                "MAIL FROM:<a@b> SIZE=1\r\nRCPT TO:<c@d>\r\nDATA\r\n", "";
            srv(b"250 ok\r\n550 5.1.1 unknown\r\n354 go\r\n") => ".\r\n", "";
            srv(b"554 no message\r\n") => "", "Done[P550] Ready";
        );
        // One at a time: no DATA at all, then RSET before the next MAIL.
        let mut h = Harness::opened(settings(TlsPolicy::None), EHLO_BASIC);
        transcript!(h,
            Send(msg("a@b", &["c@d", "e@f"], 1, false)) => "MAIL FROM:<a@b>\r\n", "";
            srv(b"250 ok\r\n") => "RCPT TO:<c@d>\r\n", "";
            srv(b"550 no\r\n") => "RCPT TO:<e@f>\r\n", "";
            srv(b"450 later\r\n") => "", "Done[P550,T450] Ready";
            Send(msg("a@b", &["g@h"], 1, false)) => "RSET\r\n", "";
            srv(b"250 ok\r\n") => "MAIL FROM:<a@b>\r\n", "";
            srv(b"250 ok\r\n") => "RCPT TO:<g@h>\r\n", "";
        );
    }

    #[test]
    fn two_messages_on_one_connection() {
        let mut h = Harness::opened(settings(TlsPolicy::None), EHLO_PIPELINING);
        for i in 0..2 {
            let to = format!("r{i}@mx.test");
            let expected = format!("MAIL FROM:<a@b> SIZE=5\r\nRCPT TO:<{to}>\r\nDATA\r\n");
            transcript!(h,
                Send(msg("a@b", &[&to], 5, false)) => expected.as_str(), "";
                srv(b"250 ok\r\n250 ok\r\n354 go\r\n") => "", "SendBody";
                Body(b"hello".to_vec()) => "hello", "";
                EndBody => "\r\n.\r\n", "";
                srv(b"250 2.0.0 queued\r\n") => "", "Done[D250] Ready";
            );
        }
        transcript!(h,
            Quit => "QUIT\r\n", "";
            Eof => "", "Closed";
        );
    }

    #[test]
    fn code_421_ends_the_connection_anywhere() {
        // During a transaction: the message is deferred, then the connection fails.
        let mut h = Harness::opened(settings(TlsPolicy::None), EHLO_PIPELINING);
        transcript!(h,
            Send(msg("a@b", &["c@d", "e@f", "g@h"], 1, false)) =>
                "MAIL FROM:<a@b> SIZE=1\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\nRCPT TO:<g@h>\r\nDATA\r\n", "";
            srv(b"250 ok\r\n550 5.1.1 no such user\r\n421 4.4.2 timeout\r\n") =>
                "", "Done[P550,T421,T421] Failed(T421)";
            Send(msg("a@b", &["c@d"], 1, false)) => "", "Done[T451]";
        );
        // While idle (the server timed us out).
        let mut h = Harness::opened(settings(TlsPolicy::None), EHLO_PIPELINING);
        transcript!(h, srv(b"421 4.4.2 idle timeout\r\n") => "", "Failed(T421)");
        // As the end-of-data reply.
        let mut h = Harness::opened(settings(TlsPolicy::None), EHLO_BASIC);
        transcript!(h,
            Send(msg("a@b", &["c@d"], 1, false)) => "MAIL FROM:<a@b>\r\n", "";
            srv(b"250 ok\r\n") => "RCPT TO:<c@d>\r\n", "";
            srv(b"250 ok\r\n") => "DATA\r\n", "";
            srv(b"354 go\r\n") => "", "SendBody";
            EndBody => ".\r\n", "";
            srv(b"421 4.3.2 shutting down\r\n") => "", "Done[T421] Failed(T421)";
        );
        // To EHLO.
        let mut h = Harness::new(settings(TlsPolicy::None));
        transcript!(h,
            srv(GREETING) => "EHLO client.test\r\n", "";
            srv(b"421 4.7.0 too many connections\r\n") => "", "Failed(T421)";
        );
    }

    #[test]
    fn lost_connection_and_timeouts_name_the_phase() {
        let mut h = Harness::new(settings(TlsPolicy::None));
        transcript!(h, Timeout => "", "Failed(T451)");
        assert_eq!(
            h.failure(),
            "451 4.4.2 conversation with mx.test[127.0.0.1]:25 timed out while \
             receiving the initial server greeting"
        );
        let mut h = Harness::opened(settings(TlsPolicy::None), EHLO_PIPELINING);
        transcript!(h,
            Send(msg("a@b", &["c@d", "e@f"], 1, false)) =>
                "MAIL FROM:<a@b> SIZE=1\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\nDATA\r\n", "";
            srv(b"250 ok\r\n550 no\r\n") => "", "";
            Eof => "", "Done[P550,T451] Failed(T451)";
            Eof => "", "";
        );
        assert_eq!(
            h.failure(),
            "451 4.4.2 lost connection with mx.test[127.0.0.1]:25 while sending RCPT TO"
        );
        // In the body, the body bytes not sent yet are dropped with the connection.
        let mut h = Harness::opened(settings(TlsPolicy::None), EHLO_PIPELINING);
        transcript!(h,
            Send(msg("a@b", &["c@d"], 1, false)) =>
                "MAIL FROM:<a@b> SIZE=1\r\nRCPT TO:<c@d>\r\nDATA\r\n", "";
            srv(b"250 ok\r\n250 ok\r\n354 go\r\n") => "", "SendBody";
            EndBody => ".\r\n", "";
            Timeout => "", "Done[T451] Failed(T451)";
        );
        assert!(h.failure().ends_with("message may be sent more than once"));
    }

    #[test]
    fn a_reply_in_the_middle_of_the_body_ends_the_message() {
        let mut h = Harness::opened(settings(TlsPolicy::None), EHLO_PIPELINING);
        transcript!(h,
            Send(msg("a@b", &["c@d"], 1, false)) =>
                "MAIL FROM:<a@b> SIZE=1\r\nRCPT TO:<c@d>\r\nDATA\r\n", "";
            srv(b"250 ok\r\n250 ok\r\n354 go\r\n") => "", "SendBody";
            Body(b"partial".to_vec()) => "partial", "";
            srv(b"552 5.3.4 too big\r\n") => "", "Done[T451] Failed(T451)";
        );
    }

    #[test]
    fn local_refusals_send_nothing() {
        let mut h = Harness::opened(settings(TlsPolicy::None), EHLO_PIPELINING);
        transcript!(h,
            // SIZE 10000 was advertised.
            Send(msg("a@b", &["c@d", "e@f"], 10_001, false)) => "", "Done[P552,P552] Ready";
            // An envelope that would inject a command.
            Send(msg("a@b", &["c@d>\r\nRSET", "e@f"], 1, false)) =>
                "MAIL FROM:<a@b> SIZE=1\r\nRCPT TO:<e@f>\r\nDATA\r\n", "";
            srv(b"250 ok\r\n250 ok\r\n354 go\r\n") => "", "SendBody";
            EndBody => ".\r\n", "";
            srv(b"250 ok\r\n") => "", "Done[P553,D250] Ready";
            Send(msg("a@b>\r\nDATA", &["c@d"], 1, false)) => "", "Done[P553] Ready";
            // SMTPUTF8 offered: the parameter goes with MAIL.
            Send(msg("a@b", &["jos\u{e9}@mx.test"], 1, false)) =>
                "MAIL FROM:<a@b> SIZE=1 SMTPUTF8\r\nRCPT TO:<jos\u{e9}@mx.test>\r\nDATA\r\n", "";
        );
        assert_eq!(
            h.events[1],
            Event::MessageDone(vec![
                Outcome::Permanent(reply::size_over_remote_limit(
                    PEER, 10_001, 10_000
                ));
                2
            ])
        );
        let mut h = Harness::opened(settings(TlsPolicy::None), EHLO_BASIC);
        transcript!(h,
            Send(msg("a@b", &["jos\u{e9}@mx.test"], 1, false)) => "", "Done[P553] Ready";
            // No SIZE offered: no limit, no parameter.
            Send(msg("a@b", &["c@d"], 1 << 40, false)) => "MAIL FROM:<a@b>\r\n", "";
        );
        assert_eq!(dsn(h.last_done()[0].reply()), "5.6.7");
    }

    #[test]
    fn garbage_from_the_server_is_a_transient_failure() {
        let long = [b"250-".as_slice(), &[b'x'; MAX_REPLY_LINE], b"\r\n"].concat();
        let many = b"250-x\r\n".repeat(MAX_REPLY_LINES + 1);
        let cases: &[(&[u8], &str)] = &[
            (
                b"250-mx.test\r\n251 changed code\r\n",
                "malformed multi-line reply",
            ),
            (b"250_mx.test\r\n", "not a 3-digit code"),
            (b"25\r\n", "not a 3-digit code"),
            (b"650 six hundred\r\n", "not a 3-digit code"),
            (b"\x00\x01\x02\r\n", "not a 3-digit code"),
            (&long, "longer than 4096"),
            (&many, "more than 100 lines"),
        ];
        for &(ehlo, text) in cases {
            let mut h = Harness::new(settings(TlsPolicy::None));
            h.step(&srv(GREETING));
            let (o, e) = h.step(&srv(ehlo));
            assert_eq!((o.as_str(), e.as_str()), ("", "Failed(T451)"), "{text}");
            assert!(h.failure().contains(text), "{}", h.failure());
            assert_eq!(h.c.phase(), Phase::Closed);
            // After failing, input is ignored.
            assert_eq!(h.step(&srv(b"250 ok\r\n")), (String::new(), String::new()));
        }
        // A line of exactly the limit is fine.
        let mut exact = b"250 ".to_vec();
        exact.resize(MAX_REPLY_LINE - 2, b'x');
        exact.extend_from_slice(b"\r\n");
        let mut h = Harness::new(settings(TlsPolicy::None));
        h.step(&srv(GREETING));
        assert_eq!(h.step(&srv(&exact)).1, "Ready");
        // A reply nobody asked for.
        let mut h = Harness::opened(settings(TlsPolicy::None), EHLO_BASIC);
        transcript!(h, srv(b"250 surprise\r\n") => "", "Failed(T451)");
        // Garbage in the middle of a transaction settles the message first.
        let mut h = Harness::opened(settings(TlsPolicy::None), EHLO_PIPELINING);
        transcript!(h,
            Send(msg("a@b", &["c@d"], 1, false)) =>
                "MAIL FROM:<a@b> SIZE=1\r\nRCPT TO:<c@d>\r\nDATA\r\n", "";
            srv(b"250 ok\r\n\xff\xfe garbage\r\n") => "", "Done[T451] Failed(T451)";
        );
    }

    #[test]
    fn reply_text_is_made_safe() {
        let mut h = Harness::opened(settings(TlsPolicy::None), EHLO_BASIC);
        transcript!(h,
            Send(msg("a@b", &["c@d"], 1, false)) => "MAIL FROM:<a@b>\r\n", "";
            srv(b"550 5.1.0 bad\x1b[31m\xff\tx\r\n") => "", "Done[P550] Ready";
        );
        assert_eq!(h.last_done()[0].reply().text(), "5.1.0 bad?[31m\u{fffd}?x");
    }

    #[test]
    fn capabilities_are_parsed_case_insensitively() {
        let reply = Reply {
            code: 250,
            enhanced: None,
            lines: vec![
                "mx.test greets you".into(),
                "pipelining".into(),
                "Size".into(),
                "8bitmime".into(),
                "auth=plain".into(),
                "ENHANCEDSTATUSCODES".into(),
                "smtputf8".into(),
                "starttls".into(),
                "".into(),
            ],
        };
        let caps = Capabilities::parse(&reply);
        assert_eq!(
            caps,
            Capabilities {
                esmtp: true,
                pipelining: true,
                size: Some(0),
                eight_bit_mime: true,
                starttls: true,
                auth_plain: true,
                auth_login: false,
                enhanced_status_codes: true,
                smtputf8: true,
            }
        );
    }

    #[test]
    fn dsn_from_reply() {
        let r = |code, text: &'static str| Reply {
            code,
            enhanced: None,
            lines: vec![text.into()],
        };
        const CASES: &[(u16, &str, &str)] = &[
            (550, "5.1.1 user unknown", "5.1.1"),
            (451, "4.7.10 greylisted", "4.7.10"),
            (550, "4.1.1 class mismatch", "5.0.0"),
            (550, "5.1 short", "5.0.0"),
            (250, "ok", "2.0.0"),
            (452, "", "4.0.0"),
            (550, "5.1.1234 too long", "5.0.0"),
        ];
        for &(code, text, expected) in CASES {
            assert_eq!(dsn(&r(code, text)), expected, "{text}");
        }
        assert_eq!(dsn(&reply::tls_not_offered(PEER)), "4.7.4");
    }

    /// A whole session's server side, as (server bytes, client calls after it).
    fn full_session() -> Vec<Step> {
        vec![
            srv(b"220-mx.test ESMTP\r\n220-second line\r\n220 third\r\n"),
            srv(b"250-mx.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-STARTTLS\r\n250 8BITMIME\r\n"),
            srv(b"220 2.0.0 go\r\n"),
            TlsStarted,
            srv(b"250-mx.test\r\n250-PIPELINING\r\n250-AUTH PLAIN LOGIN\r\n250 SIZE 1000\r\n"),
            srv(b"235 2.7.0 ok\r\n"),
            Send(msg("a@b", &["c@d", "e@f", "g@h"], 10, true)),
            srv(b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n550-5.1.1 no\r\n550 5.1.1 such user\r\n\
                  250 2.1.5 ok\r\n354 go\r\n"),
            Body(b".hi\r\n".to_vec()),
            EndBody,
            srv(b"250-2.0.0 queued\r\n250 2.0.0 as X\r\n"),
            Send(msg("", &["c@d"], 10, false)),
            srv(b"250 ok\r\n550 5.1.1 no\r\n554 5.5.1 no valid recipients\r\n"),
            Send(msg("", &["c@d"], 10, false)),
            srv(b"250 2.0.0 reset\r\n250 ok\r\n250 ok\r\n354 go\r\n"),
            EndBody,
            srv(b"451 4.3.0 later\r\n"),
            Quit,
            srv(b"221 2.0.0 bye\r\n"),
        ]
    }

    fn run(steps: &[Step], split: impl Fn(&[u8]) -> Vec<Vec<u8>>) -> (String, String) {
        let mut h = Harness::new(with_auth(settings(TlsPolicy::Required)));
        let (mut out, mut events) = (String::new(), Vec::new());
        for step in steps {
            let (o, e) = match step {
                Server(bytes) => {
                    let mut all = (String::new(), Vec::new());
                    for piece in split(bytes) {
                        let (o, e) = h.step(&Server(piece));
                        all.0.push_str(&o);
                        if !e.is_empty() {
                            all.1.push(e);
                        }
                    }
                    (all.0, all.1.join(" "))
                }
                _ => h.step(step),
            };
            out.push_str(&o);
            if !e.is_empty() {
                events.push(e);
            }
        }
        (out, events.join(" "))
    }

    #[test]
    fn replies_split_at_every_byte_boundary_read_the_same() {
        let steps = full_session();
        let whole = run(&steps, |b| vec![b.to_vec()]);
        assert_eq!(
            whole.1,
            "StartTls Ready SendBody Done[D250,P550,D250] Ready Done[P550] Ready \
             SendBody Done[T451] Ready Closed"
        );
        assert!(
            whole.0.contains("RSET\r\nMAIL FROM:<> SIZE=10\r\n"),
            "{}",
            whole.0
        );
        assert!(whole.0.contains("\r\n..hi\r\n.\r\n"), "{}", whole.0);
        // One byte at a time.
        assert_eq!(run(&steps, |b| b.iter().map(|&x| vec![x]).collect()), whole);
        // Every two-piece split of every server chunk.
        for (i, step) in steps.iter().enumerate() {
            let Server(bytes) = step else { continue };
            for k in 1..bytes.len() {
                let got = run(&steps, |b| {
                    if std::ptr::eq(b, bytes.as_slice()) {
                        vec![b[..k].to_vec(), b[k..].to_vec()]
                    } else {
                        vec![b.to_vec()]
                    }
                });
                assert_eq!(got, whole, "step {i} split at {k}");
            }
        }
    }

    #[test]
    fn send_before_ready_defers_without_sending() {
        let mut h = Harness::new(settings(TlsPolicy::None));
        transcript!(h, Send(msg("a@b", &["c@d", "e@f"], 1, false)) => "", "Done[T451,T451]");
        // Body calls out of turn do nothing.
        transcript!(h, Body(b"x".to_vec()) => "", ""; EndBody => "", "");
        // quit() mid-opening fails the connection rather than sending QUIT into it.
        transcript!(h, Quit => "", "Failed(T451)");
    }
}
