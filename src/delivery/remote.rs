//! Remote delivery to one destination (a domain's MX hosts, or the smarthost): find the
//! hosts, then carry every message for the destination over as few connections as
//! possible.
//!
//! Invariants:
//! - Hosts are tried in MX order, each host's addresses in turn (IPv6 first, as the
//!   resolver orders them). A connection that fails before the envelope (refused,
//!   timeout, a 4xx/5xx greeting, TLS required but absent) moves on to the next
//!   address; a host that answered the envelope decides for those recipients.
//! - One connection carries every message for the destination (RFC 5321 §4.5.4.1's
//!   advice to batch); if it breaks, the messages not yet sent try the next address.
//! - Only NXDOMAIN for the domain and a null MX are permanent DNS results; everything
//!   else that prevents a connection is transient.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Sender};

/// A batch of results, and where to say it is recorded (see [`Outcomes`]).
pub type Outcomes = (Vec<RemoteResult>, Option<mpsc::SyncSender<()>>);

use log::debug;

use super::connection::{self, client_tls, ConnectionSettings, Timeouts, Verify};
use super::route::Route;
use super::schedule::Verdict;
use crate::auth::secret::Secret;
use crate::config::{Config, OutboundTls, SmarthostTls};
use crate::dns::{HostResult, MxResult, Resolver};
use crate::smtp::client::{Credentials, MessageStart, Outcome, TlsPolicy};

/// Divides every SMTP client timeout, so tests can watch a hanging server time out in
/// seconds instead of minutes. Unset in production.
pub const TIMEOUT_DIVISOR_ENV: &str = "POSTLING_TIMEOUT_DIVISOR";

/// One message's recipients for this destination.
#[derive(Clone, Debug)]
pub struct RemoteJob {
    /// Index of the message in the pass.
    pub job: usize,
    /// (index in the envelope, address).
    pub recipients: Vec<(usize, String)>,
    pub message: PathBuf,
    pub from: String,
    pub size: u64,
    pub eight_bit: bool,
}

/// The outcome for one recipient.
#[derive(Clone, Debug)]
pub struct RemoteResult {
    pub job: usize,
    pub recipient: usize,
    pub verdict: Verdict,
    pub reply: String,
    /// `HOST[IP]:PORT` that answered, or `none`.
    pub relay: String,
}

/// Reads `smarthost_auth`: one `user password` line (`#` comments and blank lines
/// allowed). Refuses a file that others may read: it holds a password in clear.
pub fn load_smarthost_auth(path: &Path) -> Result<Credentials, String> {
    let text = crate::config::read_secret_file(path)?;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((user, password)) = line.split_once(char::is_whitespace) else {
            return Err(format!(
                "{}:{}: expected 'user password'",
                path.display(),
                n + 1
            ));
        };
        let password = password.trim();
        if password.is_empty() {
            return Err(format!("{}:{}: empty password", path.display(), n + 1));
        }
        return Ok(Credentials {
            username: user.to_string(),
            password: Secret::copy_from(password.as_bytes()),
        });
    }
    Err(format!("{}: no 'user password' line", path.display()))
}

fn timeouts() -> Timeouts {
    match std::env::var(TIMEOUT_DIVISOR_ENV)
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
    {
        Some(d) if d > 1 => Timeouts::scaled_down(d),
        _ => Timeouts::rfc5321(),
    }
}

/// Connection settings for a destination, or the reason there can be none.
fn settings(config: &Config, route: &Route) -> Result<ConnectionSettings, String> {
    let (tls, implicit_tls, verify, auth) = match route {
        Route::Smarthost => {
            let verify = if config.smarthost_verify {
                Verify::Yes
            } else {
                Verify::No
            };
            let auth = match &config.smarthost_auth {
                Some(p) => Some(load_smarthost_auth(p)?),
                None => None,
            };
            match config.smarthost_tls {
                SmarthostTls::StartTls => (TlsPolicy::Required, false, Some(verify), auth),
                SmarthostTls::Tls => (TlsPolicy::Required, true, Some(verify), auth),
                SmarthostTls::None => (TlsPolicy::None, false, None, auth),
            }
        }
        _ => match config.outbound_tls {
            OutboundTls::Opportunistic => (TlsPolicy::Opportunistic, false, Some(Verify::No), None),
            OutboundTls::Require => (TlsPolicy::Required, false, Some(Verify::Yes), None),
            OutboundTls::None => (TlsPolicy::None, false, None, None),
        },
    };
    let tls_config = match verify {
        Some(v) => Some(client_tls(v, config.tls_ca_file.as_deref())?),
        None => None,
    };
    Ok(ConnectionSettings {
        helo_name: config.hostname.clone(),
        tls,
        implicit_tls,
        tls_config,
        auth,
        timeouts: timeouts(),
    })
}

/// Deliver every job for `route`; one result per recipient, sent to `out` as soon as
/// each message's outcome is known (so the pass can record it before the next one).
pub fn deliver_destination(
    config: &Config,
    resolver: &mut Resolver,
    route: &Route,
    jobs: Vec<RemoteJob>,
    out: &Sender<Outcomes>,
) {
    let mut results = Vec::new();
    deliver_into(config, resolver, route, jobs, out, &mut results);
    if !results.is_empty() {
        let _ = out.send((results, None));
    }
}

fn deliver_into(
    config: &Config,
    resolver: &mut Resolver,
    route: &Route,
    jobs: Vec<RemoteJob>,
    out: &Sender<Outcomes>,
    results: &mut Vec<RemoteResult>,
) {
    let settings = match settings(config, route) {
        Ok(s) => s,
        Err(e) => {
            fail_all(
                &jobs,
                Verdict::Transient,
                &format!("451 4.3.5 {e}"),
                "none",
                results,
            );
            return;
        }
    };
    let (hosts, port) = match route {
        Route::Smarthost => {
            let Some(sh) = &config.smarthost else {
                return;
            };
            match resolver.host(&sh.host) {
                HostResult::Found(addrs) => (vec![(sh.host.clone(), addrs)], sh.port),
                // An unresolvable smarthost is temporary (spec): DNS may come back.
                HostResult::NotFound(r) | HostResult::Temporary(r) => {
                    let reply = format!("451 4.4.3 smarthost {}: {r}", sh.host);
                    fail_all(&jobs, Verdict::Transient, &reply, "none", results);
                    return;
                }
            }
        }
        Route::Domain(domain) => match resolver.mx(domain) {
            MxResult::Found(hosts) => (
                hosts.into_iter().map(|h| (h.name, h.addrs)).collect(),
                config.smtp_port,
            ),
            MxResult::NullMx => {
                // RFC 7505 §4.2.
                let reply = format!("550 5.1.10 domain {domain} accepts no mail (null MX)");
                fail_all(&jobs, Verdict::Permanent, &reply, "none", results);
                return;
            }
            MxResult::NoSuchDomain => {
                let reply = format!("550 5.1.2 domain {domain} not found (NXDOMAIN)");
                fail_all(&jobs, Verdict::Permanent, &reply, "none", results);
                return;
            }
            MxResult::Temporary(r) => {
                let reply = format!("451 4.4.3 DNS lookup for {domain} failed: {r}");
                fail_all(&jobs, Verdict::Transient, &reply, "none", results);
                return;
            }
        },
        Route::Local(_) => return,
    };

    let mut pending = jobs;
    // The most telling failure so far, for what no host took.
    let mut last: Option<(Outcome, String)> = None;
    'hosts: for (name, addrs) in hosts {
        for ip in addrs {
            if pending.is_empty() {
                break 'hosts;
            }
            let addr = SocketAddr::new(ip, port);
            let relay = format!("{name}[{ip}]:{port}");
            debug!("connecting to {relay}");
            let mut conn = match connection::open(addr, &name, &settings) {
                Ok(c) => c,
                Err(outcome) => {
                    last = Some((outcome, relay));
                    continue;
                }
            };
            let mut retry_elsewhere = Vec::new();
            for job in pending.drain(..) {
                if !conn.is_usable() {
                    retry_elsewhere.push(job);
                    continue;
                }
                let start = MessageStart {
                    from: job.from.clone(),
                    recipients: job.recipients.iter().map(|(_, a)| a.clone()).collect(),
                    size: job.size,
                    eight_bit: job.eight_bit,
                };
                let outcomes = conn.deliver(&start, &job.message);
                let broke = !conn.is_usable()
                    && outcomes.iter().all(|o| matches!(o, Outcome::Transient(_)));
                if broke {
                    // The connection died under this message (421, timeout, reset):
                    // the next address may do better.
                    if let Some(o) = outcomes.first() {
                        last = Some((o.clone(), relay.clone()));
                    }
                    retry_elsewhere.push(job);
                    continue;
                }
                let done: Vec<RemoteResult> = job
                    .recipients
                    .iter()
                    .zip(outcomes)
                    .map(|((index, _), outcome)| result_of(job.job, *index, &outcome, &relay))
                    .collect();
                // Wait until the pass has written this message's outcome to the queue
                // before sending the next one: a crash then repeats at most the
                // message in flight, never everything sent so far.
                let (ack_tx, ack_rx) = mpsc::sync_channel(1);
                if out.send((done, Some(ack_tx))).is_ok() {
                    let _ = ack_rx.recv();
                }
            }
            if conn.is_usable() {
                conn.quit();
            }
            pending = retry_elsewhere;
        }
    }
    if !pending.is_empty() {
        let (verdict, reply, relay) = match last {
            Some((o, relay)) => {
                let r = result_of(0, 0, &o, &relay);
                (r.verdict, r.reply, relay)
            }
            None => (
                Verdict::Transient,
                "451 4.4.1 no host could be reached".to_string(),
                "none".to_string(),
            ),
        };
        // A host that refused us outright (5xx greeting) is not a verdict on the
        // recipients while other hosts remain untried; with none left it is.
        fail_all(&pending, verdict, &reply, &relay, results);
    }
}

fn result_of(job: usize, recipient: usize, outcome: &Outcome, relay: &str) -> RemoteResult {
    let verdict = match outcome {
        Outcome::Delivered(_) => Verdict::Delivered,
        Outcome::Transient(_) => Verdict::Transient,
        Outcome::Permanent(_) => Verdict::Permanent,
    };
    let reply = outcome.reply();
    let text = String::from_utf8_lossy(&reply.to_bytes()).into_owned();
    RemoteResult {
        job,
        recipient,
        verdict,
        reply: text.lines().collect::<Vec<_>>().join(" "),
        relay: relay.to_string(),
    }
}

fn fail_all(
    jobs: &[RemoteJob],
    verdict: Verdict,
    reply: &str,
    relay: &str,
    out: &mut Vec<RemoteResult>,
) {
    for job in jobs {
        for (index, _) in &job.recipients {
            out.push(RemoteResult {
                job: job.job,
                recipient: *index,
                verdict,
                reply: reply.to_string(),
                relay: relay.to_string(),
            });
        }
    }
}
