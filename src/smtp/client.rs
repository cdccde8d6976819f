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
