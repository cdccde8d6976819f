//! The SMTP server session: a sans-I/O state machine.
//!
//! The loop around it feeds received bytes to [`Session::handle_input`] and sends what
//! [`Session::take_output`] returns; the session never touches a socket or the clock.
//! Storage and the local-user check go through the [`Backend`] trait, so the same
//! session serves TCP clients, `sendmail -bs` on stdin, and the unit tests below.
//!
//! Invariants:
//! - Replies are produced in command order, one per command (RFC 2920 pipelining).
//! - Only `<CRLF>.<CRLF>` ends DATA (see `data.rs`); `250` after DATA is only sent when
//!   [`Backend::commit_message`] returned `Ok`, i.e. the message is durable.
//! - Memory is bounded: a command line is at most [`MAX_COMMAND_LINE`] bytes, message
//!   bytes are handed to the backend as they are decoded, and input processing pauses
//!   while more than [`OUTPUT_HIGH_WATER`] bytes of replies wait to be sent.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use log::info;

use super::address::Mailbox;
use super::command::{self, Body, Command, ForwardPath, MailParams};
use super::data::{Defect, DotReader};
use super::headers::SubmissionHeaders;
use super::reply::{self, Reply};
use crate::auth::sasl::{self, Exchange, Step};
use crate::auth::throttle::{Action, Policy, SessionThrottle};
use crate::config::{Config, Role};
use crate::spool::{Envelope, QueueId, Recipient, SpoolError};

/// Longest command line, CRLF included. RFC 5321 §4.5.3.1.4 says 512; real clients send
/// longer (many recipients' parameters, long AUTH responses), so we tolerate up to 2048
/// as the spec pins down, then answer `500 5.5.2` and keep the session usable.
pub const MAX_COMMAND_LINE: usize = 2048;

/// Replies waiting to be sent above which input processing pauses (a client that
/// pipelines 10,000 commands without reading replies cannot grow our buffers).
pub const OUTPUT_HIGH_WATER: usize = 16 * 1024;

/// Failed commands after which the client is disconnected (Postfix's
/// `smtpd_hard_error_limit` is 20 too).
pub const MAX_ERRORS: u32 = 20;

/// Longest HELO name we copy into a Received header.
const MAX_HELO_IN_HEADER: usize = 255;

/// Storage and directory services the session needs. The server implements it over the
/// spool and the local user directory; tests implement it in memory.
pub trait Backend {
    /// Is `local_part` (lower-cased) a local recipient: an alias, a system user or an
    /// existing Maildir?
    fn local_user_exists(&self, local_part: &str) -> bool;
    /// Does `password` belong to `username` (the `users` file)?
    fn authenticate(&mut self, username: &str, password: &[u8]) -> bool;
    /// Start storing a new message; returns its queue ID.
    fn begin_message(&mut self, now: u64) -> Result<QueueId, SpoolError>;
    /// Append decoded message bytes.
    fn write_message(&mut self, bytes: &[u8]) -> Result<(), SpoolError>;
    /// Make the message and its envelope durable and visible to delivery; or, when
    /// [`defers_commit`](Backend::defers_commit), hand it over for a later group commit
    /// whose result comes back through [`Session::handle_commit_result`].
    fn commit_message(&mut self, envelope: &Envelope) -> Result<(), SpoolError>;
    /// `commit_message` only stages the message: the `250` waits for
    /// `Session::handle_commit_result` (the server fsyncs many messages together).
    fn defers_commit(&self) -> bool {
        false
    }
    /// Drop the message being stored, leaving nothing in the queue.
    fn abort_message(&mut self);
}

/// Who the client is and what it may do; fixed for the session's life.
#[derive(Clone, Debug)]
pub struct Peer {
    /// `None` for local submission (`sendmail -bs`).
    pub ip: Option<IpAddr>,
    pub role: Role,
    /// The server can start TLS on this connection (a certificate is configured).
    pub starttls: bool,
    /// The connection is TLS from its first byte (`submissions`, port 465).
    pub implicit_tls: bool,
    /// Recent failed AUTHs from this address in earlier sessions (the server's memory),
    /// so reconnecting does not reset the delay.
    pub prior_auth_failures: u32,
}

struct Transaction {
    /// `None` = null reverse path `<>`.
    from: Option<Mailbox>,
    params: MailParams,
    recipients: Vec<String>,
}

enum State {
    Command,
    Data(DataState),
    /// An AUTH exchange awaits the client's next line (after a `334`).
    Auth(Box<Exchange>),
    /// The message is staged for a group commit; the reply waits for
    /// [`Session::handle_commit_result`] and no input is processed meanwhile.
    Committing(Box<Committed>),
    /// `220` to STARTTLS sent: the server switches the connection to TLS once that
    /// reply is out. Any plaintext that arrives meanwhile is discarded unread (pipelined
    /// commands after STARTTLS must not run inside TLS: CVE-2011-0411).
    StartingTls,
    Closed,
}

/// What the log line and the reply need once a deferred commit is done.
struct Committed {
    id: QueueId,
    sender: String,
    size: u64,
    nrcpt: usize,
}

struct DataState {
    reader: DotReader,
    id: QueueId,
    /// Message bytes decoded so far (what `max_message_size` limits).
    size: u64,
    /// Length of the Received header we prepended (part of the stored size).
    header_len: u64,
    too_big: bool,
    failed: Option<SpoolError>,
    /// On submission: adds a missing Date: and Message-ID: (RFC 6409 §8).
    headers: Option<SubmissionHeaders>,
}

pub struct Session {
    config: Arc<Config>,
    peer: Peer,
    state: State,
    /// The HELO/EHLO name, once given.
    helo: Option<String>,
    esmtp: bool,
    tls: bool,
    auth_user: Option<String>,
    auth_throttle: SessionThrottle,
    /// Failed AUTHs not yet reported to the server (see `take_auth_failures`).
    new_auth_failures: u32,
    /// Hold the replies produced so far for this long before sending them (a failed AUTH).
    reply_delay: Option<Duration>,
    transaction: Option<Transaction>,
    /// A command line being assembled across reads.
    line: Vec<u8>,
    /// Inside an over-long line: drop bytes until its LF, then reply 500.
    discarding: bool,
    errors: u32,
    shutting_down: bool,
    /// Unix time of the input being handled (Received header, arrival).
    now: u64,
    out: Vec<u8>,
    /// Decoded message bytes between the reader and the backend (reused).
    body: Vec<u8>,
    /// `body` after header insertion (reused).
    edited: Vec<u8>,
}

impl Session {
    /// A new session; the greeting is queued for sending at once.
    pub fn new(config: Arc<Config>, peer: Peer) -> Session {
        let mut s = Session {
            state: State::Command,
            helo: None,
            esmtp: false,
            tls: peer.implicit_tls,
            auth_user: None,
            auth_throttle: SessionThrottle::new(Policy::DEFAULT, peer.prior_auth_failures),
            new_auth_failures: 0,
            reply_delay: None,
            transaction: None,
            line: Vec::new(),
            discarding: false,
            errors: 0,
            shutting_down: false,
            now: 0,
            out: Vec::new(),
            body: Vec::new(),
            edited: Vec::new(),
            peer,
            config,
        };
        let greeting = Reply::plain(220, format!("{} ESMTP postling", s.config.hostname));
        s.send(&greeting);
        s
    }

    /// Feed received bytes. Returns how many were consumed: processing stops early when
    /// the session closes or when too many replies wait to be sent; the caller keeps the
    /// rest and offers it again after sending.
    pub fn handle_input(&mut self, input: &[u8], now: u64, backend: &mut dyn Backend) -> usize {
        self.now = now;
        let mut pos = 0;
        while pos < input.len() && self.out.len() < OUTPUT_HIGH_WATER && self.reply_delay.is_none()
        {
            match self.state {
                State::Closed | State::Committing(_) => break,
                State::StartingTls => {
                    if input.len() > pos {
                        info!(
                            "{}: discarding {} plaintext bytes pipelined after STARTTLS",
                            self.client_name(),
                            input.len() - pos
                        );
                    }
                    pos = input.len();
                }
                State::Data(_) => pos += self.handle_data(&input[pos..], backend),
                State::Command | State::Auth(_) => {
                    pos += self.handle_command_bytes(&input[pos..], backend)
                }
            }
        }
        pos
    }

    /// Replies to send, in order. Empties the session's output buffer.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Bytes waiting in [`take_output`](Self::take_output).
    pub fn pending_output(&self) -> usize {
        self.out.len()
    }

    /// The session has ended; close once the output is sent.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// The replies now pending must not be sent before this delay has passed (a failed
    /// AUTH); input is not processed meanwhile. Taking it clears it.
    pub fn take_reply_delay(&mut self) -> Option<Duration> {
        self.reply_delay.take()
    }

    /// A message waits for its group commit (see [`Backend::defers_commit`]).
    pub fn is_committing(&self) -> bool {
        matches!(self.state, State::Committing(_))
    }

    /// The group commit of the staged message is done: `Ok` means durable, and only
    /// now is `250` sent.
    pub fn handle_commit_result(&mut self, result: Result<(), SpoolError>) {
        let State::Committing(c) = std::mem::replace(&mut self.state, State::Command) else {
            return;
        };
        self.report_commit(&c, result);
    }

    fn report_commit(&mut self, c: &Committed, result: Result<(), SpoolError>) {
        let client = self.client_name();
        match result {
            Ok(()) => {
                let sasl = match &self.auth_user {
                    Some(user) => format!(", sasl_username={user}"),
                    None => String::new(),
                };
                info!(
                    "{}: client={client}{sasl}, from=<{}>, size={}, nrcpt={}",
                    c.id, c.sender, c.size, c.nrcpt
                );
                self.send(&reply::queued(c.id.as_str()));
            }
            Err(e) => {
                log::error!("{}: cannot queue message from {client}: {e}", c.id);
                self.fail(spool_reply(&e));
            }
        }
    }

    /// Failed AUTHs since the last call, for the server's per-address memory.
    pub fn take_auth_failures(&mut self) -> u32 {
        std::mem::take(&mut self.new_auth_failures)
    }

    /// STARTTLS was accepted: once the pending output is sent, the server must switch
    /// the connection to TLS and call [`handle_tls_started`](Self::handle_tls_started).
    pub fn wants_tls(&self) -> bool {
        matches!(self.state, State::StartingTls)
    }

    /// The TLS handshake is under way: RFC 3207 §4.2, the client must start over with
    /// EHLO and nothing learnt before TLS (HELO name, AUTH, a transaction) is kept.
    pub fn handle_tls_started(&mut self) {
        self.state = State::Command;
        self.tls = true;
        self.helo = None;
        self.esmtp = false;
        self.auth_user = None;
        self.transaction = None;
        self.line.clear();
        self.discarding = false;
    }

    /// In the middle of receiving message data.
    pub fn in_data(&self) -> bool {
        matches!(self.state, State::Data(_))
    }

    /// The daemon is stopping: the next command gets `421 4.3.2`. A message being
    /// received may still complete.
    pub fn begin_shutdown(&mut self) {
        self.shutting_down = true;
    }

    /// End the session now with `reply` (idle timeout, shutdown grace expired). A
    /// message being received is dropped: it was never acknowledged.
    pub fn abort(&mut self, reply: &Reply, backend: &mut dyn Backend) {
        if let State::Data(_) = self.state {
            backend.abort_message();
        }
        if !self.is_closed() {
            self.send(reply);
            self.state = State::Closed;
        }
    }

    /// The connection is gone (peer closed or I/O error): drop any message in progress.
    pub fn handle_disconnect(&mut self, backend: &mut dyn Backend) {
        if let State::Data(_) = self.state {
            backend.abort_message();
        }
        self.state = State::Closed;
    }

    fn send(&mut self, reply: &Reply) {
        reply.write_to(&mut self.out);
    }

    /// Send an error reply and count it; too many errors end the session.
    fn fail(&mut self, reply: Reply) {
        self.send(&reply);
        self.errors += 1;
        if self.errors >= MAX_ERRORS && !self.is_closed() {
            self.send(&reply::too_many_errors());
            self.state = State::Closed;
        }
    }

    fn respond(&mut self, result: Result<Reply, Reply>) {
        match result {
            Ok(r) => self.send(&r),
            Err(r) => self.fail(r),
        }
    }

    // --- command phase -------------------------------------------------------------

    /// Consume bytes up to and including one line end (or all of `input` when it holds
    /// none). Returns the number consumed.
    fn handle_command_bytes(&mut self, input: &[u8], backend: &mut dyn Backend) -> usize {
        let limit = match self.state {
            // RFC 4954 §4: SASL responses may be longer than commands.
            State::Auth(_) => sasl::MAX_RESPONSE_LEN + 2,
            _ => MAX_COMMAND_LINE,
        };
        let Some(lf) = input.iter().position(|&b| b == b'\n') else {
            // No line end yet: keep the partial line unless it is already too long.
            if !self.discarding {
                if self.line.len() + input.len() < limit {
                    self.line.extend_from_slice(input);
                } else {
                    self.line.clear();
                    self.discarding = true;
                }
            }
            return input.len();
        };
        let consumed = lf + 1;
        if self.discarding || self.line.len() + consumed > limit {
            self.discarding = false;
            self.line.clear();
            if let State::Auth(_) = self.state {
                self.state = State::Command;
                self.fail(reply::auth_line_too_long());
            } else {
                self.fail(reply::line_too_long());
            }
            return consumed;
        }
        let mut line = std::mem::take(&mut self.line);
        line.extend_from_slice(&input[..lf]);
        // A bare LF ends a command too (lenient, as Postfix); strip the CR of CRLF.
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if let State::Auth(_) = self.state {
            self.handle_auth_line(&line, backend);
            // The line held credentials: do not leave them in a reused buffer.
            crate::auth::secret::wipe(&mut line);
        } else {
            let was_auth = line.len() > 4 && line[..5].eq_ignore_ascii_case(b"AUTH ");
            self.handle_line(&line, backend);
            if was_auth {
                crate::auth::secret::wipe(&mut line);
            }
        }
        line.clear();
        self.line = line; // keep the allocation
        consumed
    }

    fn handle_line(&mut self, line: &[u8], backend: &mut dyn Backend) {
        let cmd = match command::parse(line) {
            Ok(c) => c,
            Err(r) => {
                if self.shutting_down {
                    return self.close_for_shutdown();
                }
                return self.fail(r);
            }
        };
        if self.shutting_down && cmd != Command::Quit {
            return self.close_for_shutdown();
        }
        match cmd {
            Command::Ehlo(name) => self.ehlo(name, true),
            Command::Helo(name) => self.ehlo(name, false),
            Command::Mail { from, params } => {
                let r = self.mail(from, params);
                self.respond(r)
            }
            Command::Rcpt { to } => {
                let r = self.rcpt(to, backend);
                self.respond(r)
            }
            Command::Data => self.data(backend),
            Command::Rset => {
                self.transaction = None;
                self.send(&reply::ok())
            }
            Command::Noop => self.send(&reply::ok()),
            Command::Quit => {
                self.send(&reply::bye());
                self.state = State::Closed;
            }
            Command::Vrfy => self.send(&reply::vrfy()),
            Command::Help => self.send(&reply::help()),
            Command::StartTls => self.starttls(),
            Command::Auth { mechanism, initial } => {
                self.auth(&mechanism, initial.as_deref(), backend)
            }
            Command::Expn => self.fail(reply::not_implemented()),
            Command::Http => {
                info!(
                    "{}: HTTP request on the SMTP port, closing",
                    self.client_name()
                );
                self.send(&reply::http_refused());
                self.state = State::Closed;
            }
        }
    }

    /// AUTH is offered: accounts exist and the connection is private (RFC 4954 §4,
    /// RFC 8314), unless the administrator allowed plaintext for loopback testing.
    fn auth_offered(&self) -> bool {
        self.config.users.is_some() && (self.tls || self.config.auth_without_tls)
    }

    fn auth(&mut self, mechanism: &str, initial: Option<&str>, backend: &mut dyn Backend) {
        if self.config.users.is_none() {
            return self.fail(reply::not_implemented());
        }
        if self.helo.is_none() {
            return self.fail(reply::bad_sequence("Error: send HELO/EHLO first"));
        }
        if self.auth_user.is_some() {
            // RFC 4954 §4: after a successful AUTH, another AUTH gets 503.
            return self.fail(reply::bad_sequence("Error: already authenticated"));
        }
        if self.transaction.is_some() {
            return self.fail(reply::bad_sequence("Error: MAIL transaction in progress"));
        }
        if !self.auth_offered() {
            return self.fail(reply::encryption_required());
        }
        match Exchange::start(mechanism, initial) {
            Ok((exchange, step)) => self.auth_step(Box::new(exchange), step, backend),
            Err(sasl::UnsupportedMechanism) => self.fail(reply::unknown_mechanism()),
        }
    }

    fn handle_auth_line(&mut self, line: &[u8], backend: &mut dyn Backend) {
        let State::Auth(mut exchange) = std::mem::replace(&mut self.state, State::Command) else {
            return;
        };
        let step = exchange.handle_line(line);
        self.auth_step(exchange, step, backend);
    }

    fn auth_step(&mut self, exchange: Box<Exchange>, step: Step, backend: &mut dyn Backend) {
        let method = exchange.mechanism().name();
        match step {
            Step::Challenge(text) => {
                self.send(&Reply::plain(334, text));
                self.state = State::Auth(exchange);
            }
            Step::Done {
                username, password, ..
            } => {
                if backend.authenticate(&username, password.expose()) {
                    info!(
                        "{}: sasl_method={method}, sasl_username={username}",
                        self.client_name()
                    );
                    self.auth_user = Some(username);
                    self.send(&reply::auth_ok());
                } else {
                    info!(
                        "{}: warning: SASL {method} authentication failed for user '{}'",
                        self.client_name(),
                        username.escape_debug()
                    );
                    self.auth_failed();
                }
            }
            Step::Refused => self.auth_failed(),
            Step::Cancelled => self.fail(reply::auth_cancelled()),
            Step::Malformed => self.fail(reply::auth_malformed()),
            Step::TooLong => self.fail(reply::auth_line_too_long()),
        }
    }

    /// 535 after a delay that grows with each failure (see `auth::throttle`); after a
    /// few, 421 and a disconnect.
    fn auth_failed(&mut self) {
        self.new_auth_failures += 1;
        let delay = match self.auth_throttle.on_failure() {
            Action::ReplyAfter(d) => {
                self.fail(reply::auth_failed());
                d
            }
            Action::DisconnectAfter(d) => {
                self.send(&reply::auth_failed());
                if !self.is_closed() {
                    self.send(&reply::too_many_auth_failures());
                    self.state = State::Closed;
                }
                d
            }
        };
        if !delay.is_zero() {
            self.reply_delay = Some(delay);
        }
    }

    fn starttls(&mut self) {
        if self.tls {
            return self.fail(reply::bad_sequence("Error: TLS already active"));
        }
        if !self.peer.starttls {
            return self.fail(reply::not_implemented());
        }
        if self.transaction.is_some() {
            return self.fail(reply::bad_sequence("Error: MAIL transaction in progress"));
        }
        self.send(&reply::ready_for_tls());
        self.state = State::StartingTls;
    }

    fn close_for_shutdown(&mut self) {
        self.send(&reply::shutting_down());
        self.state = State::Closed;
    }

    fn ehlo(&mut self, name: String, esmtp: bool) {
        // RFC 5321 §4.1.4: EHLO/HELO resets any transaction in progress.
        self.transaction = None;
        self.helo = Some(name);
        self.esmtp = esmtp;
        let host = self.config.hostname.clone();
        if !esmtp {
            return self.send(&Reply::plain(250, host));
        }
        let mut lines: Vec<Cow<'static, str>> = vec![
            host.into(),
            "PIPELINING".into(),
            format!("SIZE {}", self.config.max_message_size).into(),
            "8BITMIME".into(),
            "ENHANCEDSTATUSCODES".into(),
        ];
        if self.peer.starttls && !self.tls {
            lines.push("STARTTLS".into());
        }
        if self.auth_offered() {
            lines.push(format!("AUTH {}", sasl::MECHANISMS).into());
        }
        lines.push("HELP".into());
        self.send(&Reply::multiline(250, lines));
    }

    fn mail(&mut self, from: Option<Mailbox>, params: MailParams) -> Result<Reply, Reply> {
        if self.helo.is_none() {
            return Err(reply::bad_sequence("Error: send HELO/EHLO first"));
        }
        if self.transaction.is_some() {
            return Err(reply::bad_sequence("Error: nested MAIL command"));
        }
        if self.peer.role != Role::Smtp && self.auth_user.is_none() {
            return Err(reply::auth_required());
        }
        if params
            .size
            .is_some_and(|s| s > self.config.max_message_size)
        {
            return Err(reply::message_too_big());
        }
        if params.body == Body::EightBitMime && !self.esmtp {
            return Err(reply::bad_sequence("Error: BODY=8BITMIME needs EHLO"));
        }
        self.transaction = Some(Transaction {
            from,
            params,
            recipients: Vec::new(),
        });
        Ok(reply::sender_ok())
    }

    fn rcpt(&mut self, to: ForwardPath, backend: &mut dyn Backend) -> Result<Reply, Reply> {
        let relay_ok = self.may_relay();
        let Some(tx) = &mut self.transaction else {
            return Err(reply::bad_sequence("Error: need MAIL command"));
        };
        if tx.recipients.len() >= self.config.max_recipients {
            return Err(reply::too_many_recipients());
        }
        let address = match to {
            // RFC 5321 §4.5.1: postmaster must always be accepted.
            ForwardPath::Postmaster => format!("postmaster@{}", self.config.hostname),
            ForwardPath::Mailbox(m) => {
                let local = !m.domain_is_literal() && self.config.is_local_domain(m.domain());
                if local {
                    let user = m.local_part().to_ascii_lowercase();
                    if user != "postmaster" && !backend.local_user_exists(&user) {
                        let r = reply::no_such_user();
                        info!("{}: reject: RCPT to=<{m}>: {r}", self.client_name());
                        return Err(r);
                    }
                    // Local domains are case-insensitive; store them lower-cased so
                    // delivery compares like with like.
                    format!("{}@{}", m.local_part(), m.domain().to_ascii_lowercase())
                } else if relay_ok {
                    m.to_string()
                } else {
                    let r = reply::relay_denied();
                    info!("{}: reject: RCPT to=<{m}>: {r}", self.client_name());
                    return Err(r);
                }
            }
        };
        tx.recipients.push(address);
        Ok(reply::recipient_ok())
    }

    fn may_relay(&self) -> bool {
        self.auth_user.is_some()
            || match self.peer.ip {
                None => true, // local submission
                Some(ip) => self.config.may_relay(ip),
            }
    }

    fn data(&mut self, backend: &mut dyn Backend) {
        let Some(tx) = &self.transaction else {
            return self.fail(reply::bad_sequence("Error: need MAIL command"));
        };
        if tx.recipients.is_empty() {
            return self.fail(reply::no_valid_recipients());
        }
        let now = self.now;
        let id = match backend.begin_message(now) {
            Ok(id) => id,
            Err(e) => return self.fail(spool_reply(&e)),
        };
        let header = self.received_header(&id, now);
        // Submission ports and local submission (`sendmail -bs`): RFC 6409 §8.
        let submission = self.peer.role != Role::Smtp || self.peer.ip.is_none();
        let headers = submission.then(|| {
            SubmissionHeaders::new(
                format!("Date: {}\r\n", crate::time::rfc5322(now)),
                format!("Message-ID: <{id}@{}>\r\n", self.config.hostname),
            )
        });
        let mut st = DataState {
            reader: DotReader::new(),
            id,
            size: 0,
            header_len: header.len() as u64,
            too_big: false,
            failed: None,
            headers,
        };
        if let Err(e) = backend.write_message(header.as_bytes()) {
            st.failed = Some(e);
        }
        self.state = State::Data(st);
        self.send(&reply::start_data());
    }

    // --- data phase ----------------------------------------------------------------

    fn handle_data(&mut self, input: &[u8], backend: &mut dyn Backend) -> usize {
        let State::Data(st) = &mut self.state else {
            return 0;
        };
        let mut body = std::mem::take(&mut self.body);
        let (consumed, done) = st.reader.feed(input, &mut body);
        st.size += body.len() as u64;
        if st.size > self.config.max_message_size {
            // Keep reading to the end so the client sees the 552 at the right place,
            // but store nothing more.
            st.too_big = true;
        }
        if !st.too_big && st.failed.is_none() && st.reader.defect().is_none() {
            let mut edited = std::mem::take(&mut self.edited);
            let bytes = match st.headers.as_mut() {
                Some(h) => {
                    h.feed(&body, &mut edited);
                    if done {
                        h.finish(&mut edited);
                    }
                    &edited
                }
                None => &body,
            };
            if !bytes.is_empty() {
                if let Err(e) = backend.write_message(bytes) {
                    st.failed = Some(e);
                }
            }
            edited.clear();
            self.edited = edited;
        }
        body.clear();
        self.body = body;
        if done {
            self.finish_data(backend);
        }
        consumed
    }

    fn finish_data(&mut self, backend: &mut dyn Backend) {
        let State::Data(st) = std::mem::replace(&mut self.state, State::Command) else {
            return;
        };
        let Some(tx) = self.transaction.take() else {
            backend.abort_message();
            return self.fail(reply::local_error());
        };
        let client = self.client_name();
        let refusal = if st.too_big {
            Some(reply::message_too_big())
        } else if let Some(defect) = st.reader.defect() {
            Some(match defect {
                Defect::BareCr => reply::bare_cr(),
                Defect::LineTooLong => reply::text_line_too_long(),
            })
        } else {
            st.failed.as_ref().map(spool_reply)
        };
        if let Some(r) = refusal {
            backend.abort_message();
            info!(
                "{client}: reject: DATA from=<{}>: {r}",
                sender_text(&tx.from)
            );
            return self.fail(r);
        }
        let sender = sender_text(&tx.from);
        let envelope = Envelope {
            id: st.id.clone(),
            arrival: self.now,
            sender: sender.clone(),
            recipients: tx.recipients.into_iter().map(Recipient::new).collect(),
            size: st.header_len
                + st.size
                + st.headers.as_ref().map_or(0, |h| h.inserted_len() as u64),
            eight_bit: tx.params.body == Body::EightBitMime,
            client_ip: self.peer.ip,
            helo: self.helo.clone().unwrap_or_default(),
            auth_user: self.auth_user.clone(),
        };
        let committed = Committed {
            id: st.id.clone(),
            sender,
            size: envelope.size,
            nrcpt: envelope.recipients.len(),
        };
        let result = backend.commit_message(&envelope);
        if result.is_ok() && backend.defers_commit() {
            self.state = State::Committing(Box::new(committed));
            return;
        }
        self.report_commit(&committed, result);
    }

    /// RFC 5321 §4.4 trace header. The client-supplied HELO name is reduced to printable
    /// ASCII so it cannot inject header lines.
    fn received_header(&self, id: &QueueId, now: u64) -> String {
        let helo: String = self
            .helo
            .as_deref()
            .unwrap_or("")
            .chars()
            .take(MAX_HELO_IN_HEADER)
            .map(|c| if c.is_ascii_graphic() { c } else { '?' })
            .collect();
        let from = match self.peer.ip {
            Some(ip) => format!("{helo} ([{ip}])"),
            None => format!("{helo} (local)"),
        };
        // RFC 3848 protocol names.
        let with = match (self.esmtp, self.tls, self.auth_user.is_some()) {
            (false, _, _) => "SMTP",
            (true, false, false) => "ESMTP",
            (true, true, false) => "ESMTPS",
            (true, false, true) => "ESMTPA",
            (true, true, true) => "ESMTPSA",
        };
        // Name the recipient only when there is one, so a Bcc list is not disclosed.
        let rcpts = self.transaction.as_ref().map(|t| t.recipients.as_slice());
        let for_clause = match rcpts {
            Some([only]) => format!("\r\n\tfor <{only}>"),
            _ => String::new(),
        };
        format!(
            "Received: from {from}\r\n\tby {} (postling) with {with} id {id}{for_clause};\r\n\t{}\r\n",
            self.config.hostname,
            crate::time::rfc5322(now)
        )
    }

    /// `[ip]` or `local`, for log lines.
    fn client_name(&self) -> String {
        match self.peer.ip {
            Some(ip) => format!("[{ip}]"),
            None => "local".to_string(),
        }
    }
}

fn sender_text(from: &Option<Mailbox>) -> String {
    from.as_ref().map(|m| m.to_string()).unwrap_or_default()
}

/// The one place where a spool failure becomes a reply.
pub fn spool_reply(e: &SpoolError) -> Reply {
    match e {
        SpoolError::NoSpace => reply::disk_full(),
        SpoolError::Io(_) => reply::local_error(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// An in-memory backend: `alice` and `bob` exist; messages land in `queued`.
    #[derive(Default)]
    struct MemoryBackend {
        current: Option<(QueueId, Vec<u8>)>,
        queued: Vec<(Envelope, Vec<u8>)>,
        next: u32,
        fail_write: Option<fn() -> SpoolError>,
        aborted: u32,
    }

    impl Backend for MemoryBackend {
        fn local_user_exists(&self, local_part: &str) -> bool {
            matches!(local_part, "alice" | "bob")
        }
        fn authenticate(&mut self, username: &str, password: &[u8]) -> bool {
            username == "alice" && password == b"secret"
        }
        fn begin_message(&mut self, _now: u64) -> Result<QueueId, SpoolError> {
            self.next += 1;
            let id = QueueId::new(1_000_000, self.next);
            self.current = Some((id.clone(), Vec::new()));
            Ok(id)
        }
        fn write_message(&mut self, bytes: &[u8]) -> Result<(), SpoolError> {
            if let Some(f) = self.fail_write {
                return Err(f());
            }
            if let Some((_, buf)) = &mut self.current {
                buf.extend_from_slice(bytes);
            }
            Ok(())
        }
        fn commit_message(&mut self, envelope: &Envelope) -> Result<(), SpoolError> {
            let (_, data) = self.current.take().ok_or(SpoolError::NoSpace)?;
            self.queued.push((envelope.clone(), data));
            Ok(())
        }
        fn abort_message(&mut self) {
            self.current = None;
            self.aborted += 1;
        }
    }

    fn config(extra: &str) -> Arc<Config> {
        let text = format!(
            "hostname = mx.test\nlocal_domains = mx.test\nmax_recipients = 3\n\
             max_message_size = 1K\n{extra}"
        );
        Arc::new(crate::config::parse(Path::new("test.conf"), &text).expect("test config"))
    }

    struct Harness {
        session: Session,
        backend: MemoryBackend,
        delays: Vec<Duration>,
    }

    impl Harness {
        fn new(extra: &str, ip: &str) -> Harness {
            let peer = Peer {
                ip: Some(ip.parse().expect("ip")),
                role: Role::Smtp,
                starttls: extra.contains("tls_cert"),
                implicit_tls: false,
                prior_auth_failures: 0,
            };
            let mut h = Harness {
                session: Session::new(config(extra), peer),
                backend: MemoryBackend::default(),
                delays: Vec::new(),
            };
            let greeting = h.output();
            assert_eq!(greeting, "220 mx.test ESMTP postling\r\n");
            h
        }

        /// Feed bytes (all of them, as the server loop would) and return the replies.
        fn send(&mut self, input: &[u8]) -> String {
            let mut pos = 0;
            let mut out = String::new();
            while pos < input.len() && !self.session.is_closed() {
                pos += self
                    .session
                    .handle_input(&input[pos..], 1_796_396_783, &mut self.backend);
                // The server holds delayed replies, then goes on; record the delay.
                if let Some(d) = self.session.take_reply_delay() {
                    self.delays.push(d);
                }
                out.push_str(&self.output());
            }
            out.push_str(&self.output());
            out
        }

        fn output(&mut self) -> String {
            String::from_utf8(self.session.take_output()).expect("replies are UTF-8")
        }
    }

    /// Client line in, exact reply out, as a conversation.
    macro_rules! transcript {
        ($h:expr, $( $line:expr => $reply:expr ),* $(,)?) => {
            $( assert_eq!($h.send($line), $reply, "after {:?}", String::from_utf8_lossy($line)); )*
        };
    }

    const EHLO_REPLY: &str = "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 1024\r\n\
        250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250 HELP\r\n";

    #[test]
    fn a_whole_transaction() {
        let mut h = Harness::new("", "127.0.0.1");
        transcript!(h,
            b"EHLO client.example\r\n" => EHLO_REPLY,
            b"MAIL FROM:<sender@example.org> SIZE=100 BODY=8BITMIME\r\n" => "250 2.1.0 Ok\r\n",
            b"RCPT TO:<Alice@MX.TEST>\r\n" => "250 2.1.5 Ok\r\n",
            b"RCPT TO:<someone@elsewhere.example>\r\n" => "250 2.1.5 Ok\r\n",
            b"DATA\r\n" => "354 End data with <CR><LF>.<CR><LF>\r\n",
            b"Subject: hi\r\n\r\n..leading dot\r\nbody\r\n.\r\n" =>
                format!("250 2.0.0 Ok: queued as {}\r\n", QueueId::new(1_000_000, 1)),
            b"QUIT\r\n" => "221 2.0.0 Bye\r\n",
        );
        assert!(h.session.is_closed());
        let (env, data) = &h.backend.queued[0];
        assert_eq!(env.sender, "sender@example.org");
        let rcpts: Vec<&str> = env.recipients.iter().map(|r| r.address.as_str()).collect();
        assert_eq!(rcpts, ["Alice@mx.test", "someone@elsewhere.example"]);
        assert!(env.eight_bit);
        assert_eq!(env.helo, "client.example");
        let text = String::from_utf8_lossy(data);
        assert!(text.starts_with("Received: from client.example ([127.0.0.1])\r\n\tby mx.test (postling) with ESMTP id "), "{text}");
        assert!(
            text.ends_with("Subject: hi\r\n\r\n.leading dot\r\nbody\r\n"),
            "{text}"
        );
        // Two recipients: the Received header names neither.
        assert!(!text.contains("for <"));
    }

    #[test]
    fn pipelined_commands_in_one_buffer_get_replies_in_order() {
        let mut h = Harness::new("", "127.0.0.1");
        let out = h.send(
            b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<bob@mx.test>\r\nRCPT TO:<nobody@mx.test>\r\nDATA\r\n\
              hello\r\n.\r\nNOOP\r\nQUIT\r\n",
        );
        let codes: Vec<&str> = out.lines().map(|l| &l[..4]).collect();
        assert_eq!(
            codes,
            [
                "250-", "250-", "250-", "250-", "250-", "250 ", "250 ", "250 ", "550 ", "354 ",
                "250 ", "250 ", "221 "
            ]
        );
        assert_eq!(h.backend.queued.len(), 1);
        assert_eq!(h.backend.queued[0].0.sender, "");
        let text = String::from_utf8_lossy(&h.backend.queued[0].1).into_owned();
        assert!(text.contains("\tfor <bob@mx.test>;"), "{text}");
    }

    #[test]
    fn sequence_and_policy_errors() {
        const CASES: &[(&str, &[u8], &str)] = &[
            ("127.0.0.1", b"MAIL FROM:<a@b.example>\r\n", "503 5.5.1"),
            (
                "127.0.0.1",
                b"HELO c\r\nRCPT TO:<alice@mx.test>\r\n",
                "503 5.5.1",
            ),
            ("127.0.0.1", b"HELO c\r\nDATA\r\n", "503 5.5.1"),
            (
                "127.0.0.1",
                b"HELO c\r\nMAIL FROM:<>\r\nDATA\r\n",
                "554 5.5.1",
            ),
            (
                "127.0.0.1",
                b"HELO c\r\nMAIL FROM:<>\r\nMAIL FROM:<>\r\n",
                "503 5.5.1",
            ),
            (
                "192.0.2.9",
                b"HELO c\r\nMAIL FROM:<>\r\nRCPT TO:<x@elsewhere.example>\r\n",
                "554 5.7.1",
            ),
            (
                "192.0.2.9",
                b"HELO c\r\nMAIL FROM:<>\r\nRCPT TO:<x@[192.0.2.1]>\r\n",
                "554 5.7.1",
            ),
            (
                "192.0.2.9",
                b"HELO c\r\nMAIL FROM:<>\r\nRCPT TO:<carol@mx.test>\r\n",
                "550 5.1.1",
            ),
            (
                "192.0.2.9",
                b"HELO c\r\nMAIL FROM:<>\r\nRCPT TO:<user%other@mx.test>\r\n",
                "501 5.1.3",
            ),
            (
                "192.0.2.9",
                b"HELO c\r\nMAIL FROM:<>\r\nRCPT TO:<\"alice@x\"@mx.test>\r\n",
                "550 5.1.1",
            ),
            (
                "127.0.0.1",
                b"EHLO c\r\nMAIL FROM:<> SIZE=1025\r\n",
                "552 5.3.4",
            ),
            (
                "127.0.0.1",
                b"HELO c\r\nMAIL FROM:<> BODY=8BITMIME\r\n",
                "503 5.5.1",
            ),
            (
                "127.0.0.1",
                b"EHLO c\r\nMAIL FROM:<> FOO=BAR\r\n",
                "555 5.5.4",
            ),
        ];
        for &(ip, input, expected) in CASES {
            let mut h = Harness::new("", ip);
            let out = h.send(input);
            let last = out.lines().last().unwrap_or("");
            assert!(
                last.starts_with(expected),
                "{ip} {:?}: {out}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn postmaster_is_always_accepted() {
        let mut h = Harness::new("", "192.0.2.9");
        let out = h.send(
            b"HELO c\r\nMAIL FROM:<>\r\nRCPT TO:<Postmaster>\r\nRCPT TO:<postmaster@mx.test>\r\n",
        );
        assert_eq!(out.matches("250 2.1.5").count(), 2, "{out}");
    }

    #[test]
    fn too_many_recipients() {
        let mut h = Harness::new("", "127.0.0.1");
        let out = h.send(b"HELO c\r\nMAIL FROM:<>\r\nRCPT TO:<a@x.example>\r\nRCPT TO:<b@x.example>\r\nRCPT TO:<c@x.example>\r\nRCPT TO:<d@x.example>\r\n");
        assert!(
            out.ends_with("250 2.1.5 Ok\r\n452 4.5.3 Error: too many recipients\r\n"),
            "{out}"
        );
    }

    #[test]
    fn long_lines_and_bad_bytes_keep_the_session_usable() {
        let mut h = Harness::new("", "127.0.0.1");
        let mut long = vec![b'N'; MAX_COMMAND_LINE - 1];
        long.extend_from_slice(b"\r\n"); // 2049 bytes with CRLF
        transcript!(h,
            &long => "500 5.5.2 Error: line too long\r\n",
            b"NOOP\r\n" => "250 2.0.0 Ok\r\n",
            b"NO\0OP\r\n" => "500 5.5.2 Error: NUL or invalid UTF-8 in command\r\n",
            b"NOOP \xff\xfe\r\n" => "500 5.5.2 Error: NUL or invalid UTF-8 in command\r\n",
        );
        // Exactly 2048 bytes with CRLF is allowed.
        let mut ok = b"NOOP ".to_vec();
        ok.resize(MAX_COMMAND_LINE - 2, b'x');
        ok.extend_from_slice(b"\r\n");
        assert_eq!(h.send(&ok), "250 2.0.0 Ok\r\n");
        // An over-long line arriving in pieces is discarded as it comes.
        let piece = vec![b'x'; 1000];
        for _ in 0..10 {
            assert_eq!(h.send(&piece), "");
        }
        assert_eq!(
            h.send(b"\r\nNOOP\r\n"),
            "500 5.5.2 Error: line too long\r\n250 2.0.0 Ok\r\n"
        );
    }

    #[test]
    fn too_many_errors_closes() {
        let mut h = Harness::new("", "127.0.0.1");
        let out = h.send(&b"BOGUS\r\n".repeat(MAX_ERRORS as usize + 5));
        assert_eq!(out.matches("500 5.5.2").count(), MAX_ERRORS as usize);
        assert!(out.ends_with("421 4.7.0 Error: too many errors, closing connection\r\n"));
        assert!(h.session.is_closed());
    }

    #[test]
    fn http_request_is_answered_and_closed() {
        let mut h = Harness::new("", "127.0.0.1");
        let out = h.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(out.starts_with("221 2.7.0"), "{out}");
        assert!(h.session.is_closed());
    }

    #[test]
    fn message_size_limit_is_enforced_after_reading_to_the_end() {
        let mut h = Harness::new("", "127.0.0.1");
        h.send(b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<alice@mx.test>\r\nDATA\r\n");
        let mut body = b"x\r\n".repeat(500);
        body.extend_from_slice(b".\r\nNOOP\r\n");
        let out = h.send(&body);
        assert_eq!(
            out,
            "552 5.3.4 Error: message exceeds fixed maximum message size\r\n250 2.0.0 Ok\r\n"
        );
        assert!(h.backend.queued.is_empty());
        assert_eq!(h.backend.aborted, 1);
    }

    #[test]
    fn smuggling_sequences_never_end_the_message() {
        for seq in [&b"\n.\n"[..], b"\r\n.\n", b"\n.\r\n"] {
            let mut h = Harness::new("", "127.0.0.1");
            h.send(b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<alice@mx.test>\r\nDATA\r\n");
            let mut input = b"one".to_vec();
            input.extend_from_slice(seq);
            input.extend_from_slice(
                b"MAIL FROM:<evil@x.example>\r\nRCPT TO:<bob@mx.test>\r\nDATA\r\nsmuggled\r\n.\r\n",
            );
            let out = h.send(&input);
            assert_eq!(
                out.matches("250 2.0.0 Ok: queued").count(),
                1,
                "{seq:?}: {out}"
            );
            assert_eq!(h.backend.queued.len(), 1);
            let data = &h.backend.queued[0].1;
            // Stored with CRLF only: no bare LF or CR survives.
            for (i, &b) in data.iter().enumerate() {
                if b == b'\n' {
                    assert_eq!(data.get(i.wrapping_sub(1)), Some(&b'\r'), "{seq:?}");
                }
                if b == b'\r' {
                    assert_eq!(data.get(i + 1), Some(&b'\n'), "{seq:?}");
                }
            }
        }
        // A bare CR is refused outright.
        let mut h = Harness::new("", "127.0.0.1");
        h.send(b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<alice@mx.test>\r\nDATA\r\n");
        let out = h.send(b"one\r.\rtwo\r\n.\r\n");
        assert!(out.starts_with("550 5.6.0"), "{out}");
        assert!(h.backend.queued.is_empty());
    }

    #[test]
    fn disk_full_gives_452_and_nothing_queued() {
        let mut h = Harness::new("", "127.0.0.1");
        h.backend.fail_write = Some(|| SpoolError::NoSpace);
        h.send(b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<alice@mx.test>\r\nDATA\r\n");
        let out = h.send(b"hello\r\n.\r\nNOOP\r\n");
        assert_eq!(
            out,
            "452 4.3.1 Error: insufficient system storage, try again later\r\n250 2.0.0 Ok\r\n"
        );
        assert!(h.backend.queued.is_empty());
    }

    #[test]
    fn submission_requires_auth_before_mail() {
        let peer = Peer {
            ip: Some("192.0.2.9".parse().expect("ip")),
            role: Role::Submission,
            starttls: false,
            implicit_tls: false,
            prior_auth_failures: 0,
        };
        let mut s = Session::new(config(""), peer);
        let mut b = MemoryBackend::default();
        s.take_output();
        s.handle_input(b"EHLO c\r\nMAIL FROM:<a@b.example>\r\n", 0, &mut b);
        let out = String::from_utf8(s.take_output()).expect("utf8");
        assert!(
            out.ends_with("530 5.7.0 Authentication required\r\n"),
            "{out}"
        );
    }

    #[test]
    fn shutdown_answers_the_next_command_but_lets_data_finish() {
        let mut h = Harness::new("", "127.0.0.1");
        h.send(b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<alice@mx.test>\r\nDATA\r\npart");
        h.session.begin_shutdown();
        let out = h.send(b" two\r\n.\r\nNOOP\r\n");
        assert!(out.starts_with("250 2.0.0 Ok: queued"), "{out}");
        assert!(
            out.ends_with("421 4.3.2 Service shutting down, closing connection\r\n"),
            "{out}"
        );
        assert!(h.session.is_closed());
    }

    #[test]
    fn output_backpressure_pauses_input() {
        let mut h = Harness::new("", "127.0.0.1");
        let input = b"NOOP\r\n".repeat(10_000);
        let consumed = h.session.handle_input(&input, 0, &mut h.backend);
        assert!(consumed < input.len());
        assert!(h.session.pending_output() <= OUTPUT_HIGH_WATER + 64);
    }

    const TLS: &str = "tls_cert = /c.pem\ntls_key = /k.pem\n";

    #[test]
    fn starttls_is_offered_only_with_a_certificate() {
        let mut h = Harness::new("", "127.0.0.1");
        assert!(!h.send(b"EHLO c\r\n").contains("STARTTLS"));
        transcript!(h, b"STARTTLS\r\n" => "502 5.5.1 Error: command not implemented\r\n");
        let mut h = Harness::new(TLS, "127.0.0.1");
        assert!(h.send(b"EHLO c\r\n").contains("250-STARTTLS\r\n"));
    }

    #[test]
    fn commands_pipelined_after_starttls_are_discarded() {
        let mut h = Harness::new(TLS, "127.0.0.1");
        h.send(b"EHLO c\r\n");
        // CVE-2011-0411: RSET and MAIL arrive in the same packet as STARTTLS.
        transcript!(h,
            b"STARTTLS\r\nRSET\r\nMAIL FROM:<evil@example.org>\r\n" =>
                "220 2.0.0 Ready to start TLS\r\n",
        );
        assert!(h.session.wants_tls());
        h.session.handle_tls_started();
        assert!(!h.session.wants_tls());
        // Nothing from before TLS survives: EHLO again, and no STARTTLS offered now.
        transcript!(h,
            b"MAIL FROM:<a@example.org>\r\n" => "503 5.5.1 Error: send HELO/EHLO first\r\n",
            b"STARTTLS\r\n" => "503 5.5.1 Error: TLS already active\r\n",
        );
        let ehlo = h.send(b"EHLO c\r\n");
        assert!(
            ehlo.starts_with("250-mx.test") && !ehlo.contains("STARTTLS"),
            "{ehlo}"
        );
        transcript!(h, b"MAIL FROM:<a@example.org>\r\n" => "250 2.1.0 Ok\r\n");
        transcript!(h,
            b"STARTTLS\r\n" => "503 5.5.1 Error: TLS already active\r\n",
        );
    }

    #[test]
    fn starttls_inside_a_transaction_is_refused() {
        let mut h = Harness::new(TLS, "127.0.0.1");
        transcript!(h,
            b"EHLO c\r\nMAIL FROM:<a@example.org>\r\n" => format!("{}250 2.1.0 Ok\r\n",
                EHLO_REPLY.replace("250 HELP", "250-STARTTLS\r\n250 HELP")),
            b"STARTTLS\r\n" => "503 5.5.1 Error: MAIL transaction in progress\r\n",
        );
    }

    /// A submission-port harness with accounts; `tls` says whether the session is
    /// already inside TLS.
    fn submission(extra: &str, tls: bool) -> Harness {
        let peer = Peer {
            ip: Some("192.0.2.7".parse().expect("ip")),
            role: Role::Submission,
            starttls: true,
            implicit_tls: tls,
            prior_auth_failures: 0,
        };
        let mut h = Harness {
            session: Session::new(
                config(&format!("users = /etc/postling.users\n{extra}")),
                peer,
            ),
            backend: MemoryBackend::default(),
            delays: Vec::new(),
        };
        h.output();
        h
    }

    #[test]
    fn auth_is_neither_offered_nor_accepted_before_tls() {
        let mut h = submission("", false);
        let ehlo = h.send(b"EHLO c\r\n");
        assert!(!ehlo.contains("AUTH"), "{ehlo}");
        transcript!(h,
            b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n" =>
                "538 5.7.11 Encryption required for requested authentication mechanism\r\n",
            b"MAIL FROM:<alice@mx.test>\r\n" => "530 5.7.0 Authentication required\r\n",
        );
        // Unless the administrator allowed it (loopback testing).
        let mut h = submission("auth_without_tls = yes\n", false);
        assert!(h.send(b"EHLO c\r\n").contains("250-AUTH PLAIN LOGIN\r\n"));
        transcript!(h, b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n" => "235 2.7.0 Authentication successful\r\n");
    }

    #[test]
    fn auth_plain_and_login_in_every_form() {
        const CASES: &[&[(&[u8], &str)]] = &[
            // PLAIN with an initial response.
            &[(
                b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
                "235 2.7.0 Authentication successful\r\n",
            )],
            // PLAIN without: an empty challenge first.
            &[
                (b"AUTH PLAIN\r\n", "334 \r\n"),
                (
                    b"AGFsaWNlAHNlY3JldA==\r\n",
                    "235 2.7.0 Authentication successful\r\n",
                ),
            ],
            // LOGIN without an initial response.
            &[
                (b"AUTH LOGIN\r\n", "334 VXNlcm5hbWU6\r\n"),
                (b"YWxpY2U=\r\n", "334 UGFzc3dvcmQ6\r\n"),
                (b"c2VjcmV0\r\n", "235 2.7.0 Authentication successful\r\n"),
            ],
            // LOGIN with the user name as initial response; mechanism in lower case.
            &[
                (b"auth login YWxpY2U=\r\n", "334 UGFzc3dvcmQ6\r\n"),
                (b"c2VjcmV0\r\n", "235 2.7.0 Authentication successful\r\n"),
            ],
        ];
        for case in CASES {
            let mut h = submission("", true);
            h.send(b"EHLO c\r\n");
            for (line, reply) in *case {
                assert_eq!(h.send(line), *reply, "{:?}", String::from_utf8_lossy(line));
            }
            transcript!(h,
                b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n" => "503 5.5.1 Error: already authenticated\r\n",
                b"MAIL FROM:<alice@mx.test>\r\n" => "250 2.1.0 Ok\r\n",
                // Authenticated: may relay anywhere, from an address outside relay_from.
                b"RCPT TO:<friend@elsewhere.example>\r\n" => "250 2.1.5 Ok\r\n",
            );
        }
    }

    #[test]
    fn auth_errors() {
        let mut h = submission("", true);
        h.send(b"EHLO c\r\n");
        transcript!(h,
            b"AUTH CRAM-MD5\r\n" => "504 5.5.4 Unrecognized authentication type\r\n",
            b"AUTH LOGIN\r\n" => "334 VXNlcm5hbWU6\r\n",
            b"*\r\n" => "501 5.7.0 Authentication aborted\r\n",
            b"AUTH PLAIN !!!notbase64\r\n" => "501 5.5.2 Error: cannot decode response\r\n",
            b"AUTH PLAIN\r\n" => "334 \r\n",
            b"*\r\n" => "501 5.7.0 Authentication aborted\r\n",
        );
        // A response line beyond the RFC 4954 limit, then the session goes on.
        h.send(b"AUTH LOGIN\r\n");
        let long = format!("{}\r\n", "A".repeat(13_000));
        assert_eq!(
            h.send(long.as_bytes()),
            "500 5.5.6 Authentication exchange line is too long\r\n"
        );
        transcript!(h, b"NOOP\r\n" => "250 2.0.0 Ok\r\n");
        assert!(h.backend.queued.is_empty());
        assert!(h.delays.is_empty());
    }

    #[test]
    fn failed_auth_is_delayed_more_each_time_then_disconnected() {
        let mut h = submission("", true);
        h.send(b"EHLO c\r\n");
        // Pipelined guesses: each waits for its delayed 535 before the next is read.
        let out = h.send(
            b"AUTH PLAIN AGFsaWNlAHdyb25n\r\nAUTH PLAIN AGFsaWNlAHdyb25n\r\n\
              AUTH PLAIN AGFsaWNlAHdyb25n\r\nAUTH PLAIN AGFsaWNlAHdyb25n\r\n\
              AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
        );
        assert_eq!(
            out,
            "535 5.7.8 Error: authentication failed\r\n\
             535 5.7.8 Error: authentication failed\r\n\
             535 5.7.8 Error: authentication failed\r\n\
             421 4.7.0 Error: too many authentication failures, closing connection\r\n"
        );
        // A first typo costs nothing; then 1 s, 2 s (auth::throttle's schedule).
        assert_eq!(h.delays, [Duration::from_secs(1), Duration::from_secs(2)]);
        assert!(h.session.is_closed());
        assert_eq!(h.session.take_auth_failures(), 3);
    }

    #[test]
    fn submission_adds_headers_and_says_esmtpsa() {
        let mut h = submission("", true);
        transcript!(h,
            b"EHLO c\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n" => format!(
                "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 1024\r\n250-8BITMIME\r\n\
                 250-ENHANCEDSTATUSCODES\r\n250-AUTH PLAIN LOGIN\r\n250 HELP\r\n\
                 235 2.7.0 Authentication successful\r\n"),
            b"MAIL FROM:<alice@mx.test>\r\nRCPT TO:<bob@mx.test>\r\nDATA\r\n" =>
                "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n",
            b"Subject: no date\r\n\r\nbody\r\n.\r\n" =>
                format!("250 2.0.0 Ok: queued as {}\r\n", QueueId::new(1_000_000, 1)),
        );
        let (env, data) = &h.backend.queued[0];
        let text = String::from_utf8_lossy(data);
        assert!(text.contains("with ESMTPSA id"), "{text}");
        assert!(text.contains("\r\nSubject: no date\r\nDate: "), "{text}");
        assert!(
            text.contains(&format!(
                "\r\nMessage-ID: <{}@mx.test>\r\n\r\nbody\r\n",
                env.id
            )),
            "{text}"
        );
        assert_eq!(env.size, data.len() as u64);
        assert_eq!(env.auth_user.as_deref(), Some("alice"));
    }
}
