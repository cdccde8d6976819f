//! One outbound SMTP connection: the blocking driver around [`smtp::client::Client`].
//!
//! [`open`] connects to one address, reads the greeting, says EHLO, does STARTTLS (or
//! implicit TLS) and AUTH as the settings ask, and returns a [`Connection`] ready for
//! messages; [`Connection::deliver`] sends one message file and returns one [`Outcome`]
//! per recipient; [`Connection::quit`] ends it. All the protocol is in the client; this
//! module only moves bytes, streams the message file and keeps the clock.
//!
//! Invariants:
//! - Every wait has a deadline: the RFC 5321 §4.5.3.2 timeout of the phase the client is
//!   in (counted from the start of the phase, so a server trickling one byte at a time
//!   cannot stretch it), and a cap on the whole connection ([`Timeouts::total`]). A
//!   deadline that passes defers the message: it never blocks the caller for longer.
//! - [`Connection::deliver`] always returns exactly one outcome per recipient, and
//!   never `Delivered` unless the server accepted the end of data.
//! - With [`Verify::Yes`] the certificate chain and the host name are verified by
//!   webpki; with [`Verify::No`] any certificate is accepted but the handshake
//!   signatures are still checked (opportunistic TLS to MX hosts, as every MTA does).
//!
//! [`smtp::client::Client`]: crate::smtp::client::Client

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, info};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use crate::smtp::client::{
    Capabilities, Client, ClientSettings, Credentials, Event, MessageStart, Outcome, Phase,
    TlsPolicy,
};
use crate::smtp::reply;
use crate::time::io_reason;

/// Size of the reads from the message file (and of the socket read buffer).
const CHUNK: usize = 64 * 1024;

/// CA bundles tried in order when no `tls_ca_file` is given (Debian/Alpine, Red Hat,
/// BSD/macOS-style).
pub const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// How long to wait for a goodbye (QUIT reply, a reply after a broken write).
const GOODBYE: Duration = Duration::from_secs(5);

/// Deadlines for each phase of the dialogue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect (Postfix's `smtp_connect_timeout` is 30 s).
    pub connect: Duration,
    /// The `220` greeting (RFC 5321 §4.5.3.2.1: 5 minutes); also the implicit TLS
    /// handshake.
    pub greeting: Duration,
    /// EHLO/HELO, STARTTLS and its handshake, AUTH, QUIT (Postfix: 300 s each).
    pub ehlo: Duration,
    /// MAIL and RSET replies (§4.5.3.2.2: 5 minutes).
    pub mail: Duration,
    /// Each RCPT reply (§4.5.3.2.3: 5 minutes).
    pub rcpt: Duration,
    /// The `354` to DATA (§4.5.3.2.4: 2 minutes).
    pub data_init: Duration,
    /// Each send of message text (§4.5.3.2.5: 3 minutes).
    pub data_block: Duration,
    /// The reply to the end of data (§4.5.3.2.6: 10 minutes).
    pub data_end: Duration,
    /// The whole connection, however many messages it carries.
    pub total: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts::rfc5321()
    }
}

impl Timeouts {
    /// RFC 5321 §4.5.3.2's values, a 30 s connect timeout and a one-hour cap.
    pub const fn rfc5321() -> Timeouts {
        const MIN: u64 = 60;
        Timeouts {
            connect: Duration::from_secs(30),
            greeting: Duration::from_secs(5 * MIN),
            ehlo: Duration::from_secs(5 * MIN),
            mail: Duration::from_secs(5 * MIN),
            rcpt: Duration::from_secs(5 * MIN),
            data_init: Duration::from_secs(2 * MIN),
            data_block: Duration::from_secs(3 * MIN),
            data_end: Duration::from_secs(10 * MIN),
            total: Duration::from_secs(60 * MIN),
        }
    }

    /// Every timeout divided by `divisor` (for tests: `scaled_down(300)` makes the
    /// 5-minute ones 1 s).
    pub fn scaled_down(divisor: u32) -> Timeouts {
        let d = divisor.max(1);
        let t = Timeouts::rfc5321();
        Timeouts {
            connect: t.connect / d,
            greeting: t.greeting / d,
            ehlo: t.ehlo / d,
            mail: t.mail / d,
            rcpt: t.rcpt / d,
            data_init: t.data_init / d,
            data_block: t.data_block / d,
            data_end: t.data_end / d,
            total: t.total / d,
        }
    }

    /// The deadline that belongs to a phase of the client.
    pub fn for_phase(&self, phase: Phase) -> Duration {
        match phase {
            Phase::Greeting => self.greeting,
            Phase::Ehlo | Phase::StartTls | Phase::Auth | Phase::Quit => self.ehlo,
            Phase::Mail | Phase::Rset => self.mail,
            Phase::Rcpt => self.rcpt,
            Phase::Data => self.data_init,
            Phase::Body => self.data_block,
            Phase::DataEnd => self.data_end,
            Phase::Idle | Phase::Closed => self.total,
        }
    }
}

/// Whether to verify the server's certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verify {
    /// Chain to a trusted root and match the host name we connected for.
    Yes,
    /// Accept any certificate (opportunistic TLS: encryption against passive
    /// listeners only).
    No,
}

/// The rustls client configuration for outbound TLS (ring provider, TLS 1.3 and 1.2).
/// With [`Verify::Yes`] the roots come from `ca_file`, else from the first system bundle
/// in [`SYSTEM_CA_BUNDLES`] that exists.
pub fn client_tls(verify: Verify, ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS setup: {e}"))?;
    let config = match verify {
        Verify::Yes => builder
            .with_root_certificates(load_roots(ca_file)?)
            .with_no_client_auth(),
        Verify::No => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate {
                algorithms: provider.signature_verification_algorithms,
            }))
            .with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

fn load_roots(ca_file: Option<&Path>) -> Result<RootCertStore, String> {
    let path: PathBuf = match ca_file {
        Some(p) => p.to_path_buf(),
        None => SYSTEM_CA_BUNDLES
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .ok_or_else(|| {
                format!(
                    "no CA bundle found (tried {}); set tls_ca_file",
                    SYSTEM_CA_BUNDLES.join(", ")
                )
            })?,
    };
    let certs = CertificateDer::pem_file_iter(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: bad PEM certificate: {e}", path.display()))?;
    let mut roots = RootCertStore::empty();
    // A system bundle may hold a certificate webpki cannot use; skip it, keep the rest.
    let (added, ignored) = roots.add_parsable_certificates(certs);
    if ignored > 0 {
        debug!(
            "{}: ignored {ignored} unusable CA certificates",
            path.display()
        );
    }
    if added == 0 {
        return Err(format!(
            "{}: no usable PEM CA certificate (-----BEGIN CERTIFICATE-----) found",
            path.display()
        ));
    }
    Ok(roots)
}

/// Accepts any certificate, but still checks that the server holds its key (the
/// handshake signatures), with the provider's algorithms.
#[derive(Debug)]
struct AnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// How to talk to one destination.
#[derive(Clone, Debug)]
pub struct ConnectionSettings {
    /// Our name in EHLO (`hostname`).
    pub helo_name: String,
    /// STARTTLS policy; ignored when `implicit_tls`.
    pub tls: TlsPolicy,
    /// TLS from the first byte (`smarthost_tls = tls`).
    pub implicit_tls: bool,
    /// From [`client_tls`]; needed unless `tls` is `None` and not `implicit_tls`.
    pub tls_config: Option<Arc<ClientConfig>>,
    pub auth: Option<Credentials>,
    pub timeouts: Timeouts,
}

/// A TCP stream, with TLS over it once started.
struct Transport {
    tcp: TcpStream,
    tls: Option<Box<ClientConnection>>,
}

impl Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.tls.as_deref_mut() {
            None => self.tcp.read(buf),
            Some(tls) => rustls::Stream::new(tls, &mut self.tcp).read(buf),
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self.tls.as_deref_mut() {
            None => self.tcp.write_all(bytes),
            Some(tls) => {
                let mut s = rustls::Stream::new(tls, &mut self.tcp);
                s.write_all(bytes)?;
                s.flush()
            }
        }
    }

    /// Runs the TLS handshake to its end (the socket's timeouts apply to each step).
    fn handshake(
        &mut self,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
    ) -> io::Result<()> {
        let mut tls = ClientConnection::new(config, name).map_err(io::Error::other)?;
        while tls.is_handshaking() {
            if tls.complete_io(&mut self.tcp)? == (0, 0) {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed during the TLS handshake",
                ));
            }
        }
        while tls.wants_write() {
            tls.write_tls(&mut self.tcp)?;
        }
        self.tls = Some(Box::new(tls));
        Ok(())
    }

    /// Protocol and cipher suite, for the log.
    fn describe(&self) -> Option<String> {
        let tls = self.tls.as_ref()?;
        Some(format!(
            "{:?} {:?}",
            tls.protocol_version()?,
            tls.negotiated_cipher_suite()?.suite()
        ))
    }

    /// Best effort: close_notify, then shut the socket.
    fn close(&mut self) {
        if let Some(tls) = self.tls.as_deref_mut() {
            tls.send_close_notify();
            let _ = tls.write_tls(&mut self.tcp);
        }
        let _ = self.tcp.shutdown(Shutdown::Both);
    }
}

/// An open SMTP connection ready for messages (or failed; then every message gets the
/// failure).
pub struct Connection {
    client: Client,
    transport: Transport,
    /// `HOST[IP]:PORT`.
    peer: String,
    server_name: ServerName<'static>,
    tls_config: Option<Arc<ClientConfig>>,
    timeouts: Timeouts,
    /// The phase whose deadline runs, and that deadline.
    phase: Phase,
    phase_deadline: Instant,
    total_deadline: Instant,
    /// Set once the connection is unusable: the outcome for any further message.
    failure: Option<Outcome>,
    closed: bool,
    tls_handshake_failed: bool,
    buf: Vec<u8>,
}

/// Connects to `addr` (the address of `host_name`) and gets the connection ready for
/// messages: greeting, EHLO, STARTTLS and AUTH per `settings`. The error is the outcome
/// for every recipient meant for this connection (a `5xx` greeting is permanent; a
/// connect failure, a timeout, a TLS failure or a missing STARTTLS that is required is
/// transient).
///
/// Opportunistic STARTTLS whose handshake fails is retried once in plaintext on a new
/// connection, as Postfix does at its `may` level (a server with a broken TLS stack
/// must not stall mail that would go in the clear anyway). Never with credentials.
pub fn open(
    addr: SocketAddr,
    host_name: &str,
    settings: &ConnectionSettings,
) -> Result<Connection, Outcome> {
    match open_once(addr, host_name, settings) {
        Err((outcome, true))
            if settings.tls == TlsPolicy::Opportunistic
                && !settings.implicit_tls
                && settings.auth.is_none() =>
        {
            info!(
                "{}: {}; retrying without TLS",
                peer_name(host_name, addr),
                outcome.reply()
            );
            let plain = ConnectionSettings {
                tls: TlsPolicy::None,
                ..settings.clone()
            };
            open_once(addr, host_name, &plain).map_err(|(o, _)| o)
        }
        other => other.map_err(|(o, _)| o),
    }
}

fn peer_name(host_name: &str, addr: SocketAddr) -> String {
    format!(
        "{}[{}]:{}",
        host_name.trim_end_matches('.'),
        addr.ip(),
        addr.port()
    )
}

/// As [`open`], once; the flag says whether a TLS handshake failed.
fn open_once(
    addr: SocketAddr,
    host_name: &str,
    settings: &ConnectionSettings,
) -> Result<Connection, (Outcome, bool)> {
    let peer = peer_name(host_name, addr);
    let started = Instant::now();
    let timeouts = settings.timeouts;
    let transient = |r| (Outcome::Transient(r), false);
    let connect_timeout = timeouts
        .connect
        .min(timeouts.total)
        .max(Duration::from_millis(1));
    debug!("{peer}: connecting");
    let tcp = TcpStream::connect_timeout(&addr, connect_timeout).map_err(|e| {
        let reason = if is_timeout(&e) {
            "Connection timed out".to_string()
        } else {
            io_reason(&e)
        };
        transient(reply::connect_failed(&peer, &reason))
    })?;
    let _ = tcp.set_nodelay(true);
    // Server name for SNI and verification; an IP literal names itself. A name that
    // cannot be a certificate's DNS name (empty, `_`) is replaced by the address, which
    // a certificate must then name for verification to pass.
    let server_name = ServerName::try_from(host_name.trim_end_matches('.').to_string())
        .unwrap_or(ServerName::IpAddress(addr.ip().into()));
    let client = Client::new(ClientSettings {
        helo_name: settings.helo_name.clone(),
        peer: peer.clone(),
        tls: settings.tls,
        implicit_tls: settings.implicit_tls,
        auth: settings.auth.clone(),
    });
    let mut conn = Connection {
        client,
        transport: Transport { tcp, tls: None },
        peer,
        server_name,
        tls_config: settings.tls_config.clone(),
        timeouts,
        phase: Phase::Greeting,
        phase_deadline: started + timeouts.greeting,
        total_deadline: started + timeouts.total,
        failure: None,
        closed: false,
        tls_handshake_failed: false,
        buf: vec![0; CHUNK],
    };
    debug!("{}: connected", conn.peer);
    if settings.implicit_tls {
        if let Err(reason) = conn.handshake() {
            conn.close();
            return Err(transient(reply::tls_failed(&conn.peer, &reason)));
        }
    }
    loop {
        match conn.next_event() {
            Some(Event::Ready) => {
                debug!(
                    "{}: ready{}",
                    conn.peer,
                    conn.tls().map(|t| format!(" ({t})")).unwrap_or_default()
                );
                return Ok(conn);
            }
            Some(Event::StartTls) => match conn.handshake() {
                Ok(()) => conn.client.tls_started(),
                Err(reason) => {
                    conn.tls_handshake_failed = true;
                    conn.client.handle_tls_failure(&reason);
                }
            },
            Some(Event::Failed(outcome)) => {
                conn.close();
                return Err((outcome, conn.tls_handshake_failed));
            }
            // Nothing else can happen before Ready.
            _ => {
                conn.close();
                return Err(transient(reply::local_error()));
            }
        }
    }
}

impl Connection {
    /// Sends one message: `msg`'s envelope, then the file at `body` (the spooled
    /// message, CRLF lines; dot-stuffed on the way). Returns one outcome per recipient,
    /// in order. A connection that failed gives its failure to every recipient.
    pub fn deliver(&mut self, msg: &MessageStart, body: &Path) -> Vec<Outcome> {
        let n = msg.recipients.len();
        if let Some(failure) = &self.failure {
            return vec![failure.clone(); n];
        }
        let mut file = match File::open(body) {
            Ok(f) => f,
            Err(e) => {
                let reason = format!("{}: {}", body.display(), io_reason(&e));
                return vec![Outcome::Transient(reply::message_unreadable(&reason)); n];
            }
        };
        self.client.send(msg);
        let mut outcomes = None;
        loop {
            match self.next_event() {
                Some(Event::SendBody) => self.send_body(&mut file),
                Some(Event::MessageDone(v)) => outcomes = Some(v),
                Some(Event::Ready) if outcomes.is_some() => break,
                Some(Event::Failed(o)) => {
                    self.close();
                    self.failure = Some(o);
                    break;
                }
                other => {
                    debug!("{}: unexpected {other:?} during a message", self.peer);
                    self.close();
                    self.failure = Some(Outcome::Transient(reply::local_error()));
                    break;
                }
            }
        }
        match outcomes {
            Some(v) if v.len() == n => v,
            _ => {
                let o = self
                    .failure
                    .clone()
                    .unwrap_or(Outcome::Transient(reply::local_error()));
                vec![o; n]
            }
        }
    }

    /// QUIT and close. Harmless on a failed connection.
    pub fn quit(mut self) {
        if self.failure.is_none() && !self.closed {
            self.client.quit();
            // Do not wait long for a goodbye.
            self.total_deadline = self.total_deadline.min(Instant::now() + GOODBYE);
            while let Some(e) = self.next_event() {
                if matches!(e, Event::Closed | Event::Failed(_)) {
                    break;
                }
            }
        }
        self.close();
    }

    /// The connection can take another message.
    pub fn is_usable(&self) -> bool {
        self.failure.is_none() && !self.closed
    }

    /// Why the connection is unusable, if it is.
    pub fn failure(&self) -> Option<&Outcome> {
        self.failure.as_ref()
    }

    /// `HOST[IP]:PORT`, as in the log.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// The TLS protocol and cipher suite, if the connection is encrypted.
    pub fn tls(&self) -> Option<String> {
        self.transport.describe()
    }

    pub fn capabilities(&self) -> &Capabilities {
        self.client.capabilities()
    }

    /// Moves bytes until the client has something to say. `None` when it waits for
    /// nothing (idle, closed, or it expects the message text).
    fn next_event(&mut self) -> Option<Event> {
        loop {
            self.flush();
            if let Some(e) = self.client.poll_event() {
                return Some(e);
            }
            match self.client.phase() {
                Phase::Idle | Phase::Closed | Phase::Body => return None,
                _ => self.read_some(),
            }
        }
    }

    /// Time left before the current phase's deadline (or the connection's), starting a
    /// new deadline when the phase changed. `None` once it has passed.
    fn remaining(&mut self) -> Option<Duration> {
        let now = Instant::now();
        let phase = self.client.phase();
        if phase != self.phase {
            debug!("{}: {:?}", self.peer, phase);
            self.phase = phase;
            self.phase_deadline = now + self.timeouts.for_phase(phase);
        }
        self.phase_deadline
            .min(self.total_deadline)
            .checked_duration_since(now)
            .filter(|d| !d.is_zero())
    }

    /// Sends what the client has to send.
    fn flush(&mut self) {
        let out = self.client.take_output();
        if out.is_empty() || self.closed {
            return;
        }
        let Some(left) = self.remaining() else {
            return self.client.handle_timeout();
        };
        let _ = self.transport.tcp.set_write_timeout(Some(left));
        match self.transport.write_all(&out) {
            Ok(()) => {}
            Err(e) if is_timeout(&e) => self.client.handle_timeout(),
            Err(e) => {
                debug!("{}: write: {}", self.peer, io_reason(&e));
                // The server may have said why before closing (552 in the middle of a
                // large message): read what is there before giving up.
                self.salvage_reply();
                self.client.handle_connection_lost();
            }
        }
    }

    fn salvage_reply(&mut self) {
        let _ = self
            .transport
            .tcp
            .set_read_timeout(Some(Duration::from_millis(500)));
        let mut total = 0;
        while total < CHUNK && !self.client.is_closed() {
            match self.transport.read(&mut self.buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    total += n;
                    self.client.handle_input(&self.buf[..n]);
                }
            }
        }
    }

    /// One read from the socket, within the phase's deadline.
    fn read_some(&mut self) {
        let Some(left) = self.remaining() else {
            return self.client.handle_timeout();
        };
        let _ = self.transport.tcp.set_read_timeout(Some(left));
        match self.transport.read(&mut self.buf) {
            Ok(0) => self.client.handle_connection_lost(),
            Ok(n) => self.client.handle_input(&self.buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => self.client.handle_timeout(),
            Err(e) => {
                debug!("{}: read: {}", self.peer, io_reason(&e));
                self.client.handle_connection_lost();
            }
        }
    }

    /// The TLS handshake, within the current phase's deadline.
    fn handshake(&mut self) -> Result<(), String> {
        let Some(config) = self.tls_config.clone() else {
            return Err("no TLS client configuration".to_string());
        };
        let name = self.server_name.clone();
        let left = self.remaining().ok_or("timed out")?;
        let _ = self.transport.tcp.set_read_timeout(Some(left));
        let _ = self.transport.tcp.set_write_timeout(Some(left));
        self.transport.handshake(config, name).map_err(|e| {
            if is_timeout(&e) {
                "timed out".to_string()
            } else {
                io_reason(&e)
            }
        })?;
        debug!(
            "{}: TLS established: {}",
            self.peer,
            self.transport.describe().unwrap_or_default()
        );
        Ok(())
    }

    /// Streams the message file in chunks, each send under its own data-block deadline
    /// (RFC 5321 §4.5.3.2.5).
    fn send_body(&mut self, file: &mut File) {
        let mut chunk = vec![0; CHUNK];
        loop {
            match file.read(&mut chunk) {
                Ok(0) => return self.client.end_body(),
                Ok(n) => {
                    self.client.write_body(&chunk[..n]);
                    self.phase_deadline = Instant::now() + self.timeouts.data_block;
                    self.flush();
                    if self.client.phase() != Phase::Body {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Dropping the connection without the final dot makes the server
                    // discard what it got (RFC 5321 §4.1.1.4).
                    return self.client.abort(reply::message_unreadable(&io_reason(&e)));
                }
            }
        }
    }

    /// Sends any last words (a QUIT after a refusal), then closes the socket.
    fn close(&mut self) {
        if self.closed {
            return;
        }
        let out = self.client.take_output();
        if !out.is_empty() {
            let _ = self.transport.tcp.set_write_timeout(Some(GOODBYE));
            let _ = self.transport.write_all(&out);
        }
        let _ = self.transport.tcp.set_write_timeout(Some(GOODBYE));
        self.transport.close();
        self.closed = true;
        debug!("{}: closed", self.peer);
    }
}

/// A socket timeout shows as `WouldBlock` on Unix and `TimedOut` elsewhere.
fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaled_timeouts() {
        let t = Timeouts::scaled_down(300);
        assert_eq!(t.greeting, Duration::from_secs(1));
        assert_eq!(t.data_end, Duration::from_secs(2));
        assert_eq!(t.for_phase(Phase::Rcpt), Duration::from_secs(1));
        assert_eq!(Timeouts::default().data_init, Duration::from_secs(120));
        assert_eq!(Timeouts::scaled_down(0), Timeouts::rfc5321());
    }

    #[test]
    fn tls_config_errors_name_the_file() {
        let e =
            client_tls(Verify::Yes, Some(Path::new("/nonexistent/ca.pem"))).expect_err("missing");
        assert!(e.starts_with("/nonexistent/ca.pem: "), "{e}");
        let dir = std::env::temp_dir().join(format!("postling-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, "no certificates here\n").expect("write");
        let e = client_tls(Verify::Yes, Some(&ca)).expect_err("empty");
        assert!(e.contains("no usable PEM CA certificate"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(client_tls(Verify::No, None).is_ok());
    }

    #[test]
    fn connect_refused_is_transient_and_named() {
        // A port nobody listens on: bind, note the port, close.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let settings = ConnectionSettings {
            helo_name: "client.test".into(),
            tls: TlsPolicy::None,
            implicit_tls: false,
            tls_config: None,
            auth: None,
            timeouts: Timeouts::scaled_down(30),
        };
        let Err(Outcome::Transient(r)) = open(addr, "mx.test", &settings) else {
            panic!("connect should fail");
        };
        assert_eq!(
            r.text(),
            format!("connect to mx.test[127.0.0.1]:{port}: Connection refused")
        );
    }
}
