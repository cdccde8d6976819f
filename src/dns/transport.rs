//! The thin I/O layer: send one question to the configured servers over UDP (TCP when
//! the answer is truncated) and return an [`Outcome`]. Every decision about the bytes
//! is made by [`query`](super::query); this file only moves them and keeps time.
//!
//! Invariants:
//! - Each try uses a fresh random 16-bit ID (getrandom) and a fresh UDP socket bound to
//!   port 0, so the kernel picks a random ephemeral source port (RFC 5452 §9.2). The
//!   socket is connected to the server, so the kernel drops datagrams from elsewhere,
//!   and the source is checked again on receipt.
//! - A try never waits past its deadline: every blocking call gets the remaining time.
//! - A truncated UDP answer is asked again over TCP to the same server, with its own
//!   timeout (RFC 7766 §5). SERVFAIL, REFUSED, malformed answers, timeouts and network
//!   errors move on to the next try; only NOERROR and NXDOMAIN end the exchange.
//! - Nothing here panics on what the network sends.

use std::collections::HashSet;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use super::conf::{schedule, ResolvConf};
use super::query::{
    build_query, check_answer, disposition, Disposition, Outcome, Question, Response, Verdict,
    MAX_TCP_MESSAGE, UDP_BUFFER,
};

/// Something that can answer a question. The resolver's only dependency on I/O, so
/// tests can replace it.
pub trait Transport {
    fn exchange(&mut self, q: &Question) -> Outcome;
}

/// Fill `buf` from the kernel's CSPRNG (getrandom(2)), falling back to /dev/urandom on
/// kernels older than 3.17 (ENOSYS), which small routers still run.
pub fn random_bytes(buf: &mut [u8]) -> Result<(), String> {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: the pointer and length describe `rest`, a live, writable slice.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n > 0 {
            filled += n as usize;
            continue;
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::ENOSYS) => {
                return std::fs::File::open("/dev/urandom")
                    .and_then(|mut f| f.read_exact(rest))
                    .map_err(|e| format!("/dev/urandom: {}", crate::time::io_reason(&e)));
            }
            _ => return Err(format!("getrandom: {}", crate::time::io_reason(&err))),
        }
    }
    Ok(())
}

pub fn random_u16() -> Result<u16, String> {
    let mut b = [0u8; 2];
    random_bytes(&mut b)?;
    Ok(u16::from_ne_bytes(b))
}

pub fn random_u64() -> Result<u64, String> {
    let mut b = [0u8; 8];
    random_bytes(&mut b)?;
    Ok(u64::from_ne_bytes(b))
}

/// UDP and TCP to the servers of a [`ResolvConf`].
#[derive(Debug)]
pub struct NetTransport {
    conf: ResolvConf,
    /// Next first server when `rotate` is set.
    turn: usize,
    /// Servers that answered FORMERR/NOTIMP to EDNS (RFC 6891 §7): asked without it
    /// from then on.
    no_edns: HashSet<SocketAddr>,
}

impl NetTransport {
    pub fn new(conf: ResolvConf) -> NetTransport {
        NetTransport {
            conf,
            turn: 0,
            no_edns: HashSet::new(),
        }
    }

    pub fn conf(&self) -> &ResolvConf {
        &self.conf
    }

    /// One try at one server: UDP, then TCP if truncated, then once more without EDNS
    /// if the server rejected it. `Ok` only for a final answer.
    fn ask(
        &mut self,
        server: SocketAddr,
        q: &Question,
        timeout: Duration,
    ) -> Result<Response, String> {
        let mut edns = !self.no_edns.contains(&server);
        loop {
            let resp = match udp(server, q, timeout, edns)? {
                Udp::Answer(r) => r,
                Udp::Truncated => {
                    log::debug!("{q}: truncated answer from {server}, retrying over TCP");
                    tcp(server, q, timeout, edns)?
                }
            };
            match disposition(resp.rcode, edns) {
                Disposition::Final => return Ok(resp),
                Disposition::RetryWithoutEdns => {
                    log::debug!(
                        "{q}: {server} answered {} to EDNS, retrying without",
                        resp.rcode
                    );
                    self.no_edns.insert(server);
                    edns = false;
                }
                Disposition::NextServer => return Err(resp.rcode.to_string()),
            }
        }
    }
}

impl Transport for NetTransport {
    fn exchange(&mut self, q: &Question) -> Outcome {
        let servers = self.conf.servers.clone();
        let start = if self.conf.rotate {
            self.turn = self.turn.wrapping_add(1);
            self.turn
        } else {
            0
        };
        let mut reasons: Vec<String> = Vec::new();
        for t in schedule(servers.len(), self.conf.attempts, self.conf.timeout, start) {
            let Some(&server) = servers.get(t.server) else {
                continue;
            };
            match self.ask(server, q, t.timeout) {
                Ok(resp) => return Outcome::Answer(resp),
                Err(reason) => {
                    log::debug!("{q}: {server}: {reason}");
                    let line = format!("{reason} from {server}");
                    if !reasons.contains(&line) {
                        reasons.push(line);
                    }
                }
            }
        }
        if reasons.is_empty() {
            reasons.push("no name servers configured".into());
        }
        Outcome::Failed(reasons.join("; "))
    }
}

enum Udp {
    Answer(Response),
    Truncated,
}

fn io(e: &std::io::Error) -> String {
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => "timed out".into(),
        _ => crate::time::io_reason(e),
    }
}

/// The time left before `deadline`, or a timeout error.
fn remaining(deadline: Instant) -> Result<Duration, String> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err("timed out".into())
    } else {
        Ok(left)
    }
}

fn udp(server: SocketAddr, q: &Question, timeout: Duration, edns: bool) -> Result<Udp, String> {
    let deadline = Instant::now() + timeout;
    let id = random_u16()?;
    let query = build_query(id, q, edns)?;
    let local: SocketAddr = if server.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(local).map_err(|e| io(&e))?;
    sock.connect(server).map_err(|e| io(&e))?;
    sock.send(&query).map_err(|e| io(&e))?;
    let mut buf = vec![0u8; UDP_BUFFER];
    loop {
        sock.set_read_timeout(Some(remaining(deadline)?))
            .map_err(|e| io(&e))?;
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(io(&e)),
        };
        if from != server {
            log::debug!("{q}: ignored a datagram from {from}, not {server}");
            continue;
        }
        match check_answer(&buf[..n], id, q) {
            Verdict::Answer(r) => return Ok(Udp::Answer(r)),
            Verdict::Truncated => return Ok(Udp::Truncated),
            Verdict::Malformed(reason) => return Err(reason),
            Verdict::Ignore(why) => log::debug!("{q}: ignored an answer from {server}: {why}"),
        }
    }
}

fn tcp(
    server: SocketAddr,
    q: &Question,
    timeout: Duration,
    edns: bool,
) -> Result<Response, String> {
    let deadline = Instant::now() + timeout;
    let id = random_u16()?;
    let query = build_query(id, q, edns)?;
    let len = u16::try_from(query.len()).map_err(|_| "query too long for TCP".to_string())?;
    let mut stream = TcpStream::connect_timeout(&server, timeout).map_err(|e| io(&e))?;
    let mut msg = Vec::with_capacity(query.len() + 2);
    // RFC 1035 §4.2.2: a two-byte length before each message.
    msg.extend_from_slice(&len.to_be_bytes());
    msg.extend_from_slice(&query);
    stream
        .set_write_timeout(Some(remaining(deadline)?))
        .map_err(|e| io(&e))?;
    stream.write_all(&msg).map_err(|e| io(&e))?;
    let mut body = vec![0u8; MAX_TCP_MESSAGE];
    // RFC 7766 §7: a server may send other messages on the connection; skip them.
    loop {
        let mut prefix = [0u8; 2];
        read_by(&mut stream, &mut prefix, deadline)?;
        let n = usize::from(u16::from_be_bytes(prefix));
        read_by(&mut stream, &mut body[..n], deadline)?;
        match check_answer(&body[..n], id, q) {
            Verdict::Answer(r) => return Ok(r),
            Verdict::Truncated => return Err("truncated answer over TCP".into()),
            Verdict::Malformed(reason) => return Err(reason),
            Verdict::Ignore(why) => log::debug!("{q}: ignored a TCP message from {server}: {why}"),
        }
    }
}

/// `read_exact` that gives up at `deadline` however slowly the bytes trickle in.
fn read_by(stream: &mut TcpStream, mut buf: &mut [u8], deadline: Instant) -> Result<(), String> {
    while !buf.is_empty() {
        stream
            .set_read_timeout(Some(remaining(deadline)?))
            .map_err(|e| io(&e))?;
        match stream.read(buf) {
            Ok(0) => return Err("connection closed by server".into()),
            Ok(n) => buf = &mut buf[n..],
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(io(&e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_vary() {
        let ids: HashSet<u16> = (0..64).filter_map(|_| random_u16().ok()).collect();
        // 64 draws from 65536 values: a handful of repeats at most.
        assert!(ids.len() > 56, "{}", ids.len());
    }
}
