//! One delivery pass over the queue: what `postling flush` runs, and what `serve` runs
//! in a child process after new mail and every `queue_interval`.
//!
//! Steps: pick the messages with a recipient due (all of them with `force`), lock each
//! (`Spool::lock`, so two passes never work on one message) and re-read its envelope;
//! deliver local recipients; group the remote ones by destination (the smarthost, or a
//! domain) and deliver each destination over one connection, several destinations at
//! once; record every outcome with the retry schedule; bounce what failed; then remove
//! the message or write its envelope back.
//!
//! Invariants:
//! - An outcome is written to the spool (atomically, `write_envelope`) before the
//!   message lock is released, so a crash mid-pass at worst repeats an attempt.
//! - A stalled destination holds only its own worker: every phase of a connection has a
//!   deadline, and other destinations are served by the other workers.
//! - A bounce is queued like any message, from `<>`; a failed message from `<>` is
//!   logged and dropped, never bounced.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::{mpsc, Mutex};

use log::{info, warn};

use super::local::{self, LocalContext};
use super::remote::{self, RemoteJob};
use super::route::{route, Route};
use super::schedule::{Schedule, Verdict};
use crate::bounce::{self, BounceKind, BounceParams, FailedRecipient};
use crate::config::Config;
use crate::local::aliases::Aliases;
use crate::spool::{Envelope, MessageLock, Recipient, Spool, Status};

/// Destinations delivered at the same time. Small: a router has little memory and
/// bandwidth; enough that one hanging MX does not hold up the rest.
pub const MAX_PARALLEL_DESTINATIONS: usize = 4;

#[derive(Clone, Copy, Debug, Default)]
pub struct PassOptions {
    /// Try every queued recipient now, whatever its retry time (`flush`).
    pub force: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PassSummary {
    /// Messages worked on.
    pub messages: usize,
    /// Messages skipped because another pass holds them.
    pub busy: usize,
    pub delivered: usize,
    pub deferred: usize,
    pub failed: usize,
    /// Bounce messages queued.
    pub bounces: usize,
}

/// A locked message and what this pass did to it.
struct Job {
    env: Envelope,
    /// The envelope as this pass found it (see `progress_snapshot`).
    original: Envelope,
    message: PathBuf,
    _lock: MessageLock,
    /// Recipients (indices) that failed for good in this pass: they get a bounce.
    newly_failed: Vec<usize>,
    /// The remote host that gave each newly failed recipient's reply, for the bounce.
    remote_mta: BTreeMap<usize, String>,
    /// Recipients delivered in this pass.
    delivered_now: usize,
}

/// Run one pass. `Err` only when the pass cannot start (unreadable spool or aliases).
/// Bounces this pass queued are tried in a second round of the same pass, so a sender
/// hears of a failure at once, not after `queue_interval`.
pub fn run(config: &Config, spool: &Spool, opts: PassOptions) -> Result<PassSummary, String> {
    let first = run_once(config, spool, opts)?;
    if first.bounces == 0 {
        return Ok(first);
    }
    // Bounces come from <> and are never bounced, so one more round is enough.
    let second = run_once(config, spool, PassOptions { force: false })?;
    Ok(PassSummary {
        messages: first.messages + second.messages,
        busy: first.busy,
        delivered: first.delivered + second.delivered,
        deferred: first.deferred + second.deferred,
        failed: first.failed + second.failed,
        bounces: first.bounces + second.bounces,
    })
}

fn run_once(config: &Config, spool: &Spool, opts: PassOptions) -> Result<PassSummary, String> {
    let aliases = Aliases::load(&config.aliases).map_err(|e| e.to_string())?;
    // Mail local users left in maildrop/ joins the queue first.
    let limits = crate::spool::maildrop::Limits {
        max_size: config.max_message_size,
        max_recipients: config.max_recipients,
    };
    match crate::spool::maildrop::pickup(spool, &config.hostname, &limits) {
        Ok(0) => {}
        Ok(n) => info!("picked up {n} message(s) from maildrop/"),
        Err(e) => warn!("maildrop/: {}", crate::time::io_reason(&e)),
    }
    let now = crate::time::unix_now();
    let mut summary = PassSummary::default();
    let mut jobs = Vec::new();
    let listed = spool
        .list()
        .map_err(|e| format!("{}: {}", spool.root().display(), crate::time::io_reason(&e)))?;
    for env in listed {
        // Due recipients, or nothing left to do: a message a crashed pass finished but
        // did not remove.
        let due = env
            .recipients
            .iter()
            .any(|r| Schedule::is_due(r, now, opts.force));
        let finished = env
            .recipients
            .iter()
            .all(|r| matches!(r.status, Status::Delivered | Status::Failed));
        if !due && !finished {
            continue;
        }
        let lock = match spool.lock(&env.id) {
            Ok(Some(lock)) => lock,
            Ok(None) => {
                summary.busy += 1;
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                warn!("{}: cannot lock: {}", env.id, crate::time::io_reason(&e));
                continue;
            }
        };
        // Re-read under the lock: another pass may have finished it meanwhile.
        let env = match spool.read(&env.id) {
            Ok(env) => env,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                warn!(
                    "{}: cannot read envelope: {}",
                    env.id,
                    crate::time::io_reason(&e)
                );
                continue;
            }
        };
        jobs.push(Job {
            message: spool.message_path(&env.id),
            original: env.clone(),
            env,
            _lock: lock,
            newly_failed: Vec::new(),
            remote_mta: BTreeMap::new(),
            delivered_now: 0,
        });
    }
    summary.messages = jobs.len();
    let schedule = Schedule {
        retry: &config.retry,
        max_queue_time: config.max_queue_time,
    };

    deliver_local(config, &aliases, &schedule, &mut jobs, now, opts.force);
    deliver_remote(config, spool, &schedule, &mut jobs, now, opts.force);

    for job in &mut jobs {
        finish(config, spool, job, &mut summary);
    }
    Ok(summary)
}

fn deliver_local(
    config: &Config,
    aliases: &Aliases,
    schedule: &Schedule,
    jobs: &mut [Job],
    now: u64,
    force: bool,
) {
    let passwd = PathBuf::from("/etc/passwd");
    for job in jobs {
        let seen = std::cell::RefCell::new(std::collections::HashSet::new());
        let mut i = 0;
        // Fanned-out recipients are appended while we walk; remote ones wait for the
        // remote phase, mailbox ones arrive already tried.
        while i < job.env.recipients.len() {
            let r = &job.env.recipients[i];
            if !Schedule::is_due(r, now, force)
                || !matches!(route(config, &r.address), Route::Local(_))
            {
                i += 1;
                continue;
            }
            let address = r.address.clone();
            let id = job.env.id.to_string();
            let ctx = LocalContext {
                seen: &seen,
                id: &id,
                config,
                aliases,
                passwd: &passwd,
                message: &job.message,
                sender: &job.env.sender,
            };
            let out = local::deliver(&ctx, &address, !address.contains('@'));
            record(schedule, job, i, out.verdict, &out.reply, "local", now);
            for f in out.fan_out {
                let mut r = Recipient::new(f.address);
                if let Some((verdict, reply)) = f.done {
                    let index = job.env.recipients.len();
                    job.env.recipients.push(r);
                    record(schedule, job, index, verdict, &reply, "local", now);
                } else {
                    r.status = Status::Pending;
                    job.env.recipients.push(r);
                }
            }
            i += 1;
        }
    }
}

fn deliver_remote(
    config: &Config,
    spool: &Spool,
    schedule: &Schedule,
    jobs: &mut [Job],
    now: u64,
    force: bool,
) {
    // Destination → the messages (and their recipients) going there.
    let mut destinations: BTreeMap<Route, Vec<RemoteJob>> = BTreeMap::new();
    for (j, job) in jobs.iter().enumerate() {
        let mut by_route: BTreeMap<Route, Vec<usize>> = BTreeMap::new();
        for (i, r) in job.env.recipients.iter().enumerate() {
            if !Schedule::is_due(r, now, force) {
                continue;
            }
            let rt = route(config, &r.address);
            if !matches!(rt, Route::Local(_)) {
                by_route.entry(rt).or_default().push(i);
            }
        }
        for (rt, indices) in by_route {
            destinations.entry(rt).or_default().push(RemoteJob {
                job: j,
                recipients: indices
                    .iter()
                    .map(|&i| (i, job.env.recipients[i].address.clone()))
                    .collect(),
                message: job.message.clone(),
                from: job.env.sender.clone(),
                size: job.env.size,
                eight_bit: job.env.eight_bit,
            });
        }
    }
    if destinations.is_empty() {
        return;
    }
    let queue = Mutex::new(destinations.into_iter().collect::<Vec<_>>());
    let workers = MAX_PARALLEL_DESTINATIONS.min(queue.lock().map(|q| q.len()).unwrap_or(1));
    let (tx, rx) = mpsc::channel::<remote::Outcomes>();
    std::thread::scope(|s| {
        for _ in 0..workers {
            let tx = tx.clone();
            let queue = &queue;
            s.spawn(move || {
                let mut resolver = crate::dns::Resolver::new(config);
                loop {
                    let next = match queue.lock() {
                        Ok(mut q) => q.pop(),
                        Err(_) => None,
                    };
                    let Some((rt, work)) = next else { break };
                    remote::deliver_destination(config, &mut resolver, &rt, work, &tx);
                }
            });
        }
        drop(tx);
        // Record each message's outcome as it arrives, while the other workers go on:
        // a crash later in the pass then repeats nothing the next hop already took.
        for (batch, ack) in rx {
            let mut touched = Vec::new();
            for res in batch {
                let Some(job) = jobs.get_mut(res.job) else {
                    continue;
                };
                record(
                    schedule,
                    job,
                    res.recipient,
                    res.verdict,
                    &res.reply,
                    &res.relay,
                    now,
                );
                if res.verdict == Verdict::Permanent && res.relay != "none" {
                    // RFC 3464 §2.3.5: Remote-MTA names the host ("dns; mx.example"),
                    // not our `host[ip]:port` log notation.
                    let host = res.relay.split('[').next().unwrap_or(&res.relay);
                    job.remote_mta.insert(res.recipient, host.to_string());
                }
                touched.push(res.job);
            }
            touched.dedup();
            for j in touched {
                if let Some(job) = jobs.get(j) {
                    if let Err(e) = spool.write_envelope(&progress_snapshot(job)) {
                        warn!("{}: cannot record delivery state: {e}", job.env.id);
                    }
                }
            }
            if let Some(ack) = ack {
                let _ = ack.send(());
            }
        }
    });
}

/// The envelope to write while the pass is still running: what was delivered is
/// recorded (never sent twice after a crash), but a recipient that failed for good keeps
/// its state from before the pass until its bounce is queued in `finish` (a crash in
/// between then retries it and bounces then, rather than losing the bounce).
fn progress_snapshot(job: &Job) -> Envelope {
    let mut env = job.env.clone();
    for &i in &job.newly_failed {
        if let Some(r) = env.recipients.get_mut(i) {
            *r = job
                .original
                .recipients
                .get(i)
                .cloned()
                .unwrap_or_else(|| Recipient::new(r.address.clone()));
        }
    }
    env
}

/// Record one outcome and log it the way Postfix does.
fn record(
    schedule: &Schedule,
    job: &mut Job,
    index: usize,
    verdict: Verdict,
    reply: &str,
    relay: &str,
    now: u64,
) {
    let arrival = job.env.arrival;
    let Some(r) = job.env.recipients.get_mut(index) else {
        return;
    };
    schedule.record(r, verdict, reply, now, arrival);
    let status = match r.status {
        Status::Delivered => "sent",
        Status::Failed => "bounced",
        _ => "deferred",
    };
    match r.status {
        Status::Failed => job.newly_failed.push(index),
        Status::Delivered => job.delivered_now += 1,
        _ => {}
    }
    let last = r.last_reply.clone().unwrap_or_default();
    info!(
        "{}: to=<{}>, relay={relay}, delay={}, dsn={}, status={status} ({last})",
        job.env.id,
        r.address,
        now.saturating_sub(arrival),
        dsn_of(&last, verdict),
    );
}

/// The `X.Y.Z` of a one-line reply (`550 5.1.1 …`), else derived from its class.
fn dsn_of(reply: &str, verdict: Verdict) -> String {
    let mut words = reply.split(' ');
    let code = words.next().unwrap_or("");
    if let Some(w) = words.next() {
        let parts: Vec<&str> = w.split('.').collect();
        if parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        {
            return w.to_string();
        }
    }
    match (verdict, code.as_bytes().first()) {
        (Verdict::Delivered, _) => "2.0.0".into(),
        (_, Some(b'5')) | (Verdict::Permanent, _) => "5.0.0".into(),
        _ => "4.0.0".into(),
    }
}

/// Bounce what failed, then remove the message or write its state back.
fn finish(config: &Config, spool: &Spool, job: &mut Job, summary: &mut PassSummary) {
    let id = job.env.id.clone();
    summary.failed += job.newly_failed.len();
    if !job.newly_failed.is_empty() {
        if job.env.sender.is_empty() {
            info!("{id}: bounce not sent: the sender is <> (a bounce is never bounced)");
        } else {
            match queue_bounce(config, spool, job) {
                Ok(bounce_id) => {
                    summary.bounces += 1;
                    info!("{id}: sender non-delivery notification: {bounce_id}")
                }
                // Keep the message: next pass, the failed recipients are not due again,
                // so the bounce is lost only if this keeps failing; log loudly.
                Err(e) => warn!("{id}: cannot queue bounce to <{}>: {e}", job.env.sender),
            }
        }
    }
    let open = job
        .env
        .recipients
        .iter()
        .filter(|r| matches!(r.status, Status::Pending | Status::Deferred))
        .count();
    summary.deferred += open;
    summary.delivered += job.delivered_now;
    if open == 0 {
        match spool.remove(&id) {
            Ok(_) => info!("{id}: removed"),
            Err(e) => warn!("{id}: cannot remove: {}", crate::time::io_reason(&e)),
        }
    } else if let Err(e) = spool.write_envelope(&job.env) {
        warn!("{id}: cannot record delivery state: {e}");
    }
}

fn queue_bounce(config: &Config, spool: &Spool, job: &Job) -> Result<String, String> {
    let headers = File::open(&job.message)
        .and_then(|mut f| bounce::header_section(&mut f, bounce::MAX_HEADER_SECTION))
        .unwrap_or_default();
    let now = crate::time::unix_now();
    let recipients = job
        .newly_failed
        .iter()
        .filter_map(|&i| job.env.recipients.get(i).map(|r| (i, r)))
        .map(|(i, r)| FailedRecipient {
            address: r.address.clone(),
            original: None,
            reply: r.last_reply.clone().unwrap_or_default(),
            status: None,
            remote_mta: job.remote_mta.get(&i).cloned(),
        })
        .collect();
    let text = bounce::build(&BounceParams {
        hostname: config.hostname.clone(),
        queue_id: job.env.id.to_string(),
        arrival: job.env.arrival,
        now,
        original_sender: job.env.sender.clone(),
        recipients,
        kind: BounceKind::Failure,
        retry_until: None,
        original_headers: headers,
    });
    let mut incoming = spool.begin(now).map_err(|e| e.to_string())?;
    let id = incoming.id().clone();
    let received = format!(
        "Received: by {} (postling) id {id};\r\n\t{}\r\n",
        config.hostname,
        crate::time::rfc5322(now)
    );
    incoming
        .write(received.as_bytes())
        .and_then(|()| incoming.write(&text))
        .map_err(|e| e.to_string())?;
    let env = Envelope {
        id: id.clone(),
        arrival: now,
        sender: String::new(),
        recipients: vec![Recipient::new(job.env.sender.clone())],
        size: (received.len() + text.len()) as u64,
        eight_bit: text.iter().any(|&b| b >= 0x80),
        client_ip: None,
        helo: config.hostname.clone(),
        auth_user: None,
    };
    incoming.commit(&env).map_err(|e| e.to_string())?;
    info!(
        "{id}: from=<>, size={}, nrcpt=1 (bounce for {})",
        env.size, job.env.id
    );
    Ok(id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsn_from_replies() {
        const CASES: &[(&str, Verdict, &str)] = &[
            ("250 2.0.0 Ok: queued", Verdict::Delivered, "2.0.0"),
            ("550 5.1.1 no such user", Verdict::Permanent, "5.1.1"),
            ("451 try later", Verdict::Transient, "4.0.0"),
            ("554 go away", Verdict::Permanent, "5.0.0"),
            (
                "connect to mx[127.0.0.2]:25: Connection refused",
                Verdict::Transient,
                "4.0.0",
            ),
            ("", Verdict::Permanent, "5.0.0"),
        ];
        for (reply, v, want) in CASES {
            assert_eq!(dsn_of(reply, *v), *want, "{reply}");
        }
    }
}
