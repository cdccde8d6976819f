//! A client connection's byte stream: plain TCP, or TLS over it (STARTTLS or implicit).
//!
//! The session above only ever sees plaintext. TLS follows rustls' mio example: TLS
//! records are read from the socket when plaintext is wanted, and written out whenever
//! rustls has some (handshake messages included), all without blocking.
//!
//! Invariants:
//! - `read` returns `WouldBlock` only when the socket had nothing more to give, so the
//!   event loop may wait for the next readable event.
//! - Plaintext accepted by `write` is either on the socket or queued inside rustls;
//!   [`Transport::has_unsent`] tells which, so a connection is not closed before its
//!   last reply has left.

use std::io::{self, Read, Write};
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::{ServerConfig, ServerConnection};

pub struct Transport {
    tcp: TcpStream,
    /// Set once TLS starts (at connect for implicit TLS, after `220` for STARTTLS).
    tls: Option<Box<ServerConnection>>,
}

impl Transport {
    pub fn plain(tcp: TcpStream) -> Transport {
        Transport { tcp, tls: None }
    }

    /// Switches to TLS: from now on the socket carries TLS records, starting with the
    /// client's hello.
    pub fn start_tls(&mut self, config: &Arc<ServerConfig>) -> io::Result<()> {
        if self.tls.is_none() {
            let conn = ServerConnection::new(Arc::clone(config)).map_err(io::Error::other)?;
            self.tls = Some(Box::new(conn));
        }
        Ok(())
    }

    /// The socket, for registering with mio.
    pub fn socket(&mut self) -> &mut TcpStream {
        &mut self.tcp
    }

    /// Still in the TLS handshake.
    pub fn handshaking(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.is_handshaking())
    }

    /// The negotiated protocol and cipher suite, for the log.
    pub fn describe(&self) -> Option<String> {
        let tls = self.tls.as_ref()?;
        let version = tls.protocol_version()?;
        let suite = tls.negotiated_cipher_suite()?;
        Some(format!("{:?} {:?}", version, suite.suite()))
    }

    /// Reads plaintext. `Ok(0)` is the end of the stream.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(tls) = self.tls.as_mut() else {
            return self.tcp.read(buf);
        };
        loop {
            match tls.reader().read(buf) {
                Ok(n) => return Ok(n), // 0: the peer sent close_notify
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The TCP stream ended without close_notify: the end of the stream.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            // No plaintext buffered: pull TLS records from the socket.
            if tls.read_tls(&mut self.tcp)? == 0 {
                return Ok(0);
            }
            if let Err(e) = tls.process_new_packets() {
                // Tell the peer why (the alert rustls queued), then give up.
                let _ = flush_tls(tls, &mut self.tcp);
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            // Handshake messages, key updates: answer them now.
            flush_tls(tls, &mut self.tcp)?;
        }
    }

    /// Writes plaintext; returns how much was taken.
    pub fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(tls) = self.tls.as_mut() else {
            return self.tcp.write(buf);
        };
        let n = tls.writer().write(buf)?;
        flush_tls(tls, &mut self.tcp)?;
        if n == 0 && !buf.is_empty() {
            // rustls' plaintext buffer is full: wait for the socket.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    /// Sends what TLS has queued (handshake, alerts, records of earlier writes).
    pub fn flush(&mut self) -> io::Result<()> {
        match self.tls.as_mut() {
            Some(tls) => flush_tls(tls, &mut self.tcp),
            None => Ok(()),
        }
    }

    /// TLS records accepted but not yet on the socket.
    pub fn has_unsent(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// Sends a TLS close_notify (best effort) before the socket is dropped.
    pub fn close(&mut self) {
        // Mid-handshake there is no session to close: just drop the socket.
        if let Some(tls) = self.tls.as_mut().filter(|t| !t.is_handshaking()) {
            tls.send_close_notify();
            let _ = flush_tls(tls, &mut self.tcp);
        }
    }
}

fn flush_tls(tls: &mut ServerConnection, tcp: &mut TcpStream) -> io::Result<()> {
    while tls.wants_write() {
        match tls.write_tls(tcp) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
