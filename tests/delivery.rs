//! End-to-end delivery: mail goes into the real `postling serve` over SMTP and comes out
//! where a user would look for it: at an aiosmtpd MX sink (tests/delivery_support/sink.py)
//! found through dnsmasq, in a local Maildir, as a bounce in the sender's Maildir, or in
//! `queue --json`.
//!
//! Everything is loopback: the sinks listen on 127.0.0.2, 127.0.0.3 … with one port number
//! (postling's `smtp_port` is the same for every MX host), dnsmasq on 127.0.0.1, and each
//! test has its own daemon, dnsmasq, sinks and ports.
//!
//! `serve` starts a delivery pass as soon as mail arrives. Tests that need the queue in a
//! known state first let those passes run (`settle`), often against a sink that answers
//! 450 while a gate file exists (`--defer-while`), then open the gate and run
//! `postling flush` themselves.
//!
//! Needs `python3` with `aiosmtpd`, `dnsmasq` and `openssl` (`make test` installs them).

mod common;
mod delivery_support;

use std::collections::BTreeMap;
use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::eventually;
use delivery_support::*;

/// The zone every test's dnsmasq serves (each test only uses part of it). Only IPv4
/// loopback addresses: ::2 and friends are not on `lo`.
const ZONE: &[&str] = &[
    // Two MX hosts: preference 10 on .2, 20 on .3.
    "--mx-host=order.test,mx1.order.test,10",
    "--mx-host=order.test,mx2.order.test,20",
    "--host-record=mx1.order.test,127.0.0.2",
    "--host-record=mx2.order.test,127.0.0.3",
    // No MX: the implicit MX is the domain's own address.
    "--host-record=plain.test,127.0.0.2",
    // The usual remote domains.
    "--mx-host=remote.test,mx.remote.test,10",
    "--host-record=mx.remote.test,127.0.0.2",
    "--mx-host=other.test,mx.other.test,10",
    "--host-record=mx.other.test,127.0.0.3",
    // An MX that accepts TCP connections and never says a word.
    "--mx-host=slow.test,mx.slow.test,10",
    "--host-record=mx.slow.test,127.0.0.4",
    // Null MX (RFC 7505). nope.test has no records at all: NXDOMAIN (--local=/test/).
    "--mx-host=null.test,.,0",
];

/// Makes the client's 5-minute timeouts 1 s (RFC 5321 §4.5.3.2 values / 300).
const FAST_TIMEOUTS: &[(&str, &str)] = &[("POSTLING_TIMEOUT_DIVISOR", "300")];

/// Config lines pointing delivery at the test DNS and the sinks' port, without TLS.
fn mx_config(dns: &Dns, port: u16) -> String {
    format!("{}smtp_port = {port}\noutbound_tls = none\n", dns.config())
}

/// The sink's messages' subjects.
fn subjects(sink: &Sink) -> Vec<String> {
    sink.messages()
        .iter()
        .map(|m| m.header("Subject").unwrap_or_default())
        .collect()
}

fn assert_flush_ok(d: &common::Daemon, env: &[(&str, &str)]) {
    let out = flush(d, env);
    assert_eq!(
        out.status.code(),
        Some(0),
        "flush: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `flush` until `user` has `n` Maildir files (a bounce is queued by one pass and
/// delivered by the next).
fn flush_until_maildir(d: &common::Daemon, user: &str, n: usize) -> Vec<Vec<u8>> {
    let ok = eventually(Duration::from_secs(10), || {
        if maildir_files(d, user).len() >= n {
            return true;
        }
        let _ = flush(d, FAST_TIMEOUTS);
        maildir_files(d, user).len() >= n
    });
    assert!(
        ok,
        "{user} never got {n} message(s); queue:\n{}\nlog:\n{}",
        d.queue().join("\n"),
        d.log()
    );
    maildir_files(d, user)
}

// ---------------------------------------------------------------------------------------
// Routing: MX order, implicit MX, DNS failures

#[test]
fn mx_hosts_are_tried_in_preference_order_past_a_refusing_one() {
    let port = sink_port();
    let dns = Dns::start(ZONE);
    // Nothing listens on 127.0.0.2 (preference 10): connection refused.
    let sink = Sink::start("127.0.0.3", port, &[]);
    let d = daemon(&mx_config(&dns, port), ALIASES, FAST_TIMEOUTS);
    submit(
        &d,
        "alice@mx.test",
        &["user@order.test"],
        &message("ordered"),
    );
    assert!(
        sink.wait_for(1, Duration::from_secs(10)),
        "nothing arrived at 127.0.0.3; log:\n{}",
        d.log()
    );
    assert_eq!(sink.messages()[0].rcpts(), ["user@order.test"]);
    settle(&d, Duration::from_secs(10), |q| q.is_empty());
    let log = d.log();
    let tried = format!("mx1.order.test[127.0.0.2]:{port}");
    let sent = format!("relay=mx2.order.test[127.0.0.3]:{port}");
    assert!(
        log.lines().any(|l| l.contains("to=<user@order.test>")
            && l.contains(&sent)
            && l.contains("status=sent")),
        "no 'to=<user@order.test>, {sent}, … status=sent' line:\n{log}"
    );
    // Preference 10 was tried first (the debug log of the pass says so).
    let first_try = log.find(&tried);
    let second = log.find(&format!("mx2.order.test[127.0.0.3]:{port}"));
    assert!(
        matches!((first_try, second), (Some(a), Some(b)) if a < b),
        "127.0.0.2 not tried before 127.0.0.3:\n{log}"
    );
}

#[test]
fn a_domain_without_mx_is_delivered_to_its_own_address() {
    let port = sink_port();
    let dns = Dns::start(ZONE);
    let sink = Sink::start("127.0.0.2", port, &[]);
    let d = daemon(&mx_config(&dns, port), ALIASES, FAST_TIMEOUTS);
    submit(
        &d,
        "alice@mx.test",
        &["user@plain.test"],
        &message("implicit"),
    );
    assert!(
        sink.wait_for(1, Duration::from_secs(10)),
        "nothing arrived; log:\n{}",
        d.log()
    );
    assert_eq!(sink.messages()[0].rcpts(), ["user@plain.test"]);
    settle(&d, Duration::from_secs(10), |q| q.is_empty());
    assert!(
        d.log()
            .contains(&format!("relay=plain.test[127.0.0.2]:{port}")),
        "{}",
        d.log()
    );
}

#[test]
fn an_nxdomain_recipient_domain_bounces_to_the_local_sender() {
    let port = sink_port();
    let dns = Dns::start(ZONE);
    let d = daemon(&mx_config(&dns, port), ALIASES, FAST_TIMEOUTS);
    submit(
        &d,
        "alice@mx.test",
        &["someone@nope.test"],
        &message("nxdomain"),
    );
    let files = flush_until_maildir(&d, "alice", 1);
    assert_eq!(files.len(), 1);
    check_dsn(
        &files[0],
        &format!(
            r#"{{"to": "alice@mx.test", "recipients": [{{
                "Final-Recipient": "rfc822; someone@nope.test",
                "Action": "failed",
                "Status": "5.1.2",
                "Diagnostic-Code": {}}}]}}"#,
            js("~nope.test")
        ),
    );
    settle(&d, Duration::from_secs(10), |q| q.is_empty());
}

#[test]
fn a_null_mx_bounces_at_once_with_5_1_10() {
    let port = sink_port();
    let dns = Dns::start(ZONE);
    let d = daemon(&mx_config(&dns, port), ALIASES, FAST_TIMEOUTS);
    submit(
        &d,
        "alice@mx.test",
        &["someone@null.test"],
        &message("nullmx"),
    );
    let files = flush_until_maildir(&d, "alice", 1);
    assert_eq!(files.len(), 1);
    check_dsn(
        &files[0],
        r#"{"to": "alice@mx.test", "recipients": [{
            "Final-Recipient": "rfc822; someone@null.test",
            "Action": "failed",
            "Status": "5.1.10",
            "Diagnostic-Code": "~5.1.10"}]}"#,
    );
    // One attempt only: the first pass failed it for good.
    let log = d.log();
    let bounced: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("to=<someone@null.test>"))
        .collect();
    assert_eq!(bounced.len(), 1, "{log}");
    assert!(
        bounced[0].contains("dsn=5.1.10") && bounced[0].contains("status=bounced"),
        "{log}"
    );
}

// ---------------------------------------------------------------------------------------
// Replies: 4xx, 5xx, expiry

#[test]
fn a_450_defers_and_the_next_flush_delivers() {
    let port = sink_port();
    let dns = Dns::start(ZONE);
    let sinkdir = common::TempDir::new("gate");
    let gate = sinkdir.path().join("closed");
    fs::write(&gate, "").expect("gate");
    let sink = Sink::start(
        "127.0.0.2",
        port,
        &["--defer-while", gate.to_str().expect("path")],
    );
    let d = daemon(&mx_config(&dns, port), ALIASES, FAST_TIMEOUTS);
    submit(
        &d,
        "alice@mx.test",
        &["later@remote.test"],
        &message("later"),
    );
    // serve's own pass makes the first attempt.
    settle(&d, Duration::from_secs(10), |q| {
        q.len() == 1 && q[0]["recipients"][0]["attempts"].u64() == Some(1)
    });
    let r = queued_rcpt(&d, "later@remote.test").expect("queued");
    assert_eq!(r["status"].str(), "deferred", "{r:?}");
    assert_eq!(r["attempts"].u64(), Some(1), "{r:?}");
    assert!(r["last_reply"].str().starts_with("450 4.3.2"), "{r:?}");
    let next = r["next_attempt"].u64().expect("next_attempt");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs();
    assert!(next > now, "next attempt {next} not in the future ({now})");
    assert_eq!(sink.count(), 0);

    fs::remove_file(&gate).expect("open the gate");
    assert_flush_ok(&d, FAST_TIMEOUTS);
    assert_eq!(sink.count(), 1, "log:\n{}", d.log());
    assert_eq!(sink.messages()[0].rcpts(), ["later@remote.test"]);
    assert!(d.queue().is_empty(), "{:?}", d.queue());
    assert!(
        maildir_files(&d, "alice").is_empty(),
        "no bounce, no warning"
    );
}

#[test]
fn only_the_deferred_recipient_is_tried_again() {
    let port = sink_port();
    let dns = Dns::start(ZONE);
    let gatedir = common::TempDir::new("gate");
    let gate = gatedir.path().join("closed");
    fs::write(&gate, "").expect("gate");
    // remote.test (127.0.0.2) says 450 while the gate is closed; other.test (127.0.0.3)
    // takes everything.
    let remote = Sink::start(
        "127.0.0.2",
        port,
        &["--defer-while", gate.to_str().expect("path")],
    );
    let other = Sink::start("127.0.0.3", port, &[]);
    let d = daemon(&mx_config(&dns, port), ALIASES, FAST_TIMEOUTS);
    submit(
        &d,
        "alice@mx.test",
        &["a@remote.test", "b@other.test"],
        &message("split"),
    );
    settle(&d, Duration::from_secs(10), |q| {
        q.len() == 1
            && q[0]["recipients"]
                .items()
                .iter()
                .all(|r| r["attempts"].u64() == Some(1))
    });
    assert_eq!(other.count(), 1);
    assert_eq!(remote.count(), 0);
    let b = queued_rcpt(&d, "b@other.test").expect("listed");
    assert_eq!(b["status"].str(), "delivered", "{b:?}");
    fs::remove_file(&gate).expect("open the gate");
    assert_flush_ok(&d, FAST_TIMEOUTS);
    assert_eq!(remote.count(), 1);
    assert_eq!(remote.messages()[0].rcpts(), ["a@remote.test"]);
    assert_eq!(other.count(), 1, "b@other.test got it twice");
    assert!(d.queue().is_empty(), "{:?}", d.queue());
}

#[test]
fn a_550_bounces_with_the_remote_reply_and_remote_mta() {
    let port = sink_port();
    let dns = Dns::start(ZONE);
    let sink = Sink::start("127.0.0.2", port, &[]);
    let d = daemon(&mx_config(&dns, port), ALIASES, FAST_TIMEOUTS);
    submit(
        &d,
        "alice@mx.test",
        &["perm@remote.test", "fine@remote.test"],
        &message("half"),
    );
    let files = flush_until_maildir(&d, "alice", 1);
    assert_eq!(files.len(), 1);
    check_dsn(
        &files[0],
        r#"{"to": "alice@mx.test",
            "text_contains": ["perm@remote.test"],
            "recipients": [{
            "Final-Recipient": "rfc822; perm@remote.test",
            "Action": "failed",
            "Status": "5.1.1",
            "Remote-MTA": "~mx.remote.test",
            "Diagnostic-Code": "smtp; 550 5.1.1 <perm@remote.test>: Recipient address rejected: no such user"}]}"#,
    );
    // The other recipient was delivered, once.
    let got = sink.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].rcpts(), ["fine@remote.test"]);
    settle(&d, Duration::from_secs(10), |q| q.is_empty());
}

#[test]
fn a_failure_from_the_null_sender_is_dropped_without_a_bounce() {
    let port = sink_port();
    let dns = Dns::start(ZONE);
    let _sink = Sink::start("127.0.0.2", port, &[]);
    let d = daemon(&mx_config(&dns, port), ALIASES, FAST_TIMEOUTS);
    let id = submit(&d, "", &["perm@remote.test"], &message("from-null"));
    settle(&d, Duration::from_secs(10), |q| q.is_empty());
    // Another pass: nothing was queued behind our back.
    assert_flush_ok(&d, FAST_TIMEOUTS);
    assert!(d.queue().is_empty(), "{:?}", d.queue());
    assert!(maildir_files(&d, "alice").is_empty());
    let log = d.log();
    assert!(
        log.contains(&format!("{id}: to=<perm@remote.test>"))
            && log.contains(&format!("{id}: bounce not sent: the sender is <>")),
        "{log}"
    );
    assert!(!log.contains("sender non-delivery notification"), "{log}");
}

#[test]
fn an_unreachable_mx_defers_with_the_connect_error() {
    let port = sink_port();
    let dns = Dns::start(ZONE);
    // Nothing listens on mx.remote.test (127.0.0.2).
    let d = daemon(&mx_config(&dns, port), ALIASES, FAST_TIMEOUTS);
    submit(&d, "alice@mx.test", &["x@remote.test"], &message("refused"));
    settle(&d, Duration::from_secs(10), |q| {
        q.len() == 1 && q[0]["recipients"][0]["attempts"].u64() == Some(1)
    });
    assert_flush_ok(&d, FAST_TIMEOUTS);
    let r = queued_rcpt(&d, "x@remote.test").expect("still queued");
    assert_eq!(r["status"].str(), "deferred", "{r:?}");
    assert_eq!(
        r["attempts"].u64(),
        Some(2),
        "connection failures count: {r:?}"
    );
    // The spec's example is the bare local reason; postling puts `451 4.4.1 ` in front.
    assert!(
        r["last_reply"].str().ends_with(&format!(
            "connect to mx.remote.test[127.0.0.2]:{port}: Connection refused"
        )),
        "{r:?}"
    );
    assert!(
        maildir_files(&d, "alice").is_empty(),
        "a deferral is no bounce"
    );
}

#[test]
fn a_bounce_from_serves_pass_is_delivered_at_once() {
    let port = sink_port();
    let dns = Dns::start(ZONE);
    let _sink = Sink::start("127.0.0.2", port, &[]);
    let d = daemon(&mx_config(&dns, port), ALIASES, FAST_TIMEOUTS);
    // Let serve's start-up pass end first (under load it may otherwise pick up the
    // message, and the pass that the arrival asked for then finds the bounce).
    settle(&d, Duration::from_secs(10), |q| q.is_empty());
    let t0 = Instant::now();
    submit(
        &d,
        "alice@mx.test",
        &["perm@remote.test"],
        &message("no flush"),
    );
    // No `postling flush` here: serve alone must bring the bounce home.
    assert!(
        eventually(Duration::from_secs(10), || !maildir_files(&d, "alice")
            .is_empty()),
        "no bounce in alice's Maildir {:?} after the 550 (queue_interval is 1m); queue:\n{}",
        t0.elapsed(),
        d.queue().join("\n")
    );
}

#[test]
fn a_bounce_names_the_remote_mta_by_its_host_name() {
    let port = sink_port();
    let dns = Dns::start(ZONE);
    let _sink = Sink::start("127.0.0.2", port, &[]);
    let d = daemon(&mx_config(&dns, port), ALIASES, FAST_TIMEOUTS);
    submit(&d, "alice@mx.test", &["perm@remote.test"], &message("mta"));
    let files = flush_until_maildir(&d, "alice", 1);
    check_dsn(
        &files[0],
        r#"{"to": "alice@mx.test", "recipients": [{
            "Final-Recipient": "rfc822; perm@remote.test",
            "Remote-MTA": "dns; mx.remote.test"}]}"#,
    );
}

#[test]
fn an_expired_message_bounces_quoting_the_last_reply() {
    let port = sink_port();
    let dns = Dns::start(ZONE);
    let _sink = Sink::start("127.0.0.2", port, &[]);
    let extra = format!("{}max_queue_time = 1s\n", mx_config(&dns, port));
    let d = daemon(&extra, ALIASES, FAST_TIMEOUTS);
    submit(
        &d,
        "alice@mx.test",
        &["temp@remote.test"],
        &message("expiring"),
    );
    // The first attempt (serve's pass) gets the 450.
    settle(&d, Duration::from_secs(10), |q| {
        q.iter().all(|m| {
            m["recipients"]
                .items()
                .iter()
                .all(|r| r["attempts"].u64() >= Some(1))
        })
    });
    std::thread::sleep(Duration::from_secs(2));
    let files = flush_until_maildir(&d, "alice", 1);
    assert_eq!(files.len(), 1);
    check_dsn(
        &files[0],
        r#"{"to": "alice@mx.test",
            "recipients": [{
            "Final-Recipient": "rfc822; temp@remote.test",
            "Action": "failed",
            "Diagnostic-Code": "~450 4.2.0 <temp@remote.test>: Recipient address rejected: greylisted"}]}"#,
    );
    let text = String::from_utf8_lossy(&files[0]);
    assert!(text.contains("expired"), "{text}");
    settle(&d, Duration::from_secs(10), |q| q.is_empty());
}

// ---------------------------------------------------------------------------------------
// Smarthost

/// The smarthost: STARTTLS required, AUTH required, a certificate for 127.0.0.2 from
/// a test CA. Returns (pki, sink, config lines, auth file).
fn smarthost_setup(port: u16) -> (Pki, Sink, String, std::path::PathBuf) {
    let pki = Pki::new("IP:127.0.0.2");
    let cert = pki.path("leaf.pem");
    let key = pki.path("leaf.key");
    let sink = Sink::start(
        "127.0.0.2",
        port,
        &[
            "--cert",
            cert.to_str().expect("path"),
            "--key",
            key.to_str().expect("path"),
            "--starttls",
            "--require-starttls",
            "--auth",
            "relayuser:s3cret pass",
        ],
    );
    let auth = pki.path("smarthost_auth");
    fs::write(&auth, "# smarthost credentials\nrelayuser s3cret pass\n").expect("auth file");
    fs::set_permissions(&auth, fs::Permissions::from_mode(0o600)).expect("chmod");
    let extra = format!(
        "smarthost = 127.0.0.2:{port}\nsmarthost_auth = {}\ntls_ca_file = {}\n",
        auth.display(),
        pki.path("ca.pem").display()
    );
    (pki, sink, extra, auth)
}

#[test]
fn smarthost_with_starttls_and_auth() {
    let port = sink_port();
    let (_pki, sink, extra, _auth) = smarthost_setup(port);
    let d = daemon(&extra, ALIASES, FAST_TIMEOUTS);
    submit(
        &d,
        "alice@mx.test",
        &["friend@anywhere.example"],
        &message("relayed"),
    );
    assert!(
        sink.wait_for(1, Duration::from_secs(10)),
        "nothing at the smarthost; log:\n{}",
        d.log()
    );
    let m = &sink.messages()[0];
    assert_eq!(m.rcpts(), ["friend@anywhere.example"]);
    assert_eq!(m.env["tls"].bool(), Some(true), "{:?}", m.env);
    assert_eq!(m.env["auth"].bool(), Some(true), "{:?}", m.env);
    assert_eq!(m.env["from"].str(), "alice@mx.test");
    // No envelope ever went in clear text.
    assert!(
        sink.mail_log().lines().all(|l| l.contains("tls=True")),
        "{}",
        sink.mail_log()
    );
    settle(&d, Duration::from_secs(10), |q| q.is_empty());
    assert!(
        d.log()
            .contains(&format!("relay=127.0.0.2[127.0.0.2]:{port}")),
        "{}",
        d.log()
    );
}

#[test]
fn a_smarthost_certificate_that_does_not_verify_defers() {
    let port = sink_port();
    let (_pki, sink, extra, _auth) = smarthost_setup(port);
    // Without tls_ca_file the system bundle does not know the test CA.
    let extra: String = extra
        .lines()
        .filter(|l| !l.starts_with("tls_ca_file"))
        .map(|l| format!("{l}\n"))
        .collect();
    let d = daemon(&extra, ALIASES, FAST_TIMEOUTS);
    submit(
        &d,
        "alice@mx.test",
        &["friend@anywhere.example"],
        &message("unverified"),
    );
    settle(&d, Duration::from_secs(10), |q| {
        q.len() == 1 && q[0]["recipients"][0]["attempts"].u64() == Some(1)
    });
    let r = queued_rcpt(&d, "friend@anywhere.example").expect("queued");
    assert_eq!(r["status"].str(), "deferred", "{r:?}");
    assert!(r["last_reply"].str().starts_with('4'), "{r:?}");
    assert_eq!(sink.count(), 0);
    assert_eq!(sink.mail_log(), "", "an envelope went out");
    assert!(
        maildir_files(&d, "alice").is_empty(),
        "no bounce for a TLS failure"
    );
}

#[test]
fn a_world_readable_smarthost_auth_file_makes_flush_exit_78() {
    let port = sink_port();
    let (_pki, sink, extra, auth) = smarthost_setup(port);
    let d = daemon(&extra, ALIASES, FAST_TIMEOUTS);
    fs::set_permissions(&auth, fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = flush(&d, FAST_TIMEOUTS);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains(&auth.display().to_string()) && err.contains("world-readable"),
        "{err}"
    );
    assert_eq!(sink.count(), 0);
}

// ---------------------------------------------------------------------------------------
// Connections and concurrency

/// A sink behind a closed gate and a daemon with `n` messages to `domain` deferred by
/// it (one attempt each, by serve's passes). Returns (gate file, its directory, daemon).
fn gated_queue(
    sink_args: &[&str],
    n: usize,
    domain: &str,
    port: u16,
    dns: &Dns,
    env: &[(&str, &str)],
) -> (std::path::PathBuf, common::TempDir, common::Daemon, Sink) {
    let gatedir = common::TempDir::new("gate");
    let gate = gatedir.path().join("closed");
    fs::write(&gate, "").expect("gate");
    let mut args = vec!["--defer-while", gate.to_str().expect("path")];
    args.extend_from_slice(sink_args);
    let sink = Sink::start("127.0.0.2", port, &args);
    let d = daemon(&mx_config(dns, port), ALIASES, env);
    for i in 0..n {
        submit(
            &d,
            "alice@mx.test",
            &[&format!("user{i}@{domain}")],
            &message(&format!("message-{i}")),
        );
    }
    settle(&d, Duration::from_secs(20), |q| {
        q.len() == n
            && q.iter()
                .all(|m| m["recipients"][0]["status"].str() == "deferred")
    });
    assert_eq!(sink.count(), 0);
    (gate, gatedir, d, sink)
}

#[test]
fn one_connection_carries_every_message_for_a_domain() {
    let port = sink_port();
    let dns = Dns::start(ZONE);
    let (gate, _g, d, sink) = gated_queue(&[], 5, "remote.test", port, &dns, FAST_TIMEOUTS);
    let before = sink.connections().len();
    fs::remove_file(&gate).expect("open the gate");
    assert_flush_ok(&d, FAST_TIMEOUTS);
    let got = sink.messages();
    assert_eq!(got.len(), 5, "log:\n{}", d.log());
    let ports: Vec<u64> = got
        .iter()
        .map(|m| m.env["peer_port"].u64().expect("peer port"))
        .collect();
    assert!(ports.iter().all(|&p| p == ports[0]), "sessions: {ports:?}");
    assert_eq!(
        sink.connections().len() - before,
        1,
        "connections after the gate opened: {:?}",
        &sink.connections()[before..]
    );
    assert!(d.queue().is_empty(), "{:?}", d.queue());
}

#[test]
fn a_hanging_mx_does_not_hold_up_other_domains() {
    // Timeouts / 60: the hanging MX times out at the greeting after 5 s.
    const ENV: &[(&str, &str)] = &[("POSTLING_TIMEOUT_DIVISOR", "60")];
    let port = sink_port();
    let dns = Dns::start(ZONE);
    let sink = Sink::start("127.0.0.2", port, &[]);
    // mx.slow.test: the kernel completes the handshake (backlog), nobody ever speaks.
    let _silent = TcpListener::bind(("127.0.0.4", port)).expect("bind 127.0.0.4");
    let d = daemon(&mx_config(&dns, port), ALIASES, ENV);
    let t0 = Instant::now();
    submit(
        &d,
        "alice@mx.test",
        &["someone@slow.test", "fast@remote.test"],
        &message("two-domains"),
    );
    assert!(
        sink.wait_for(1, Duration::from_secs(10)),
        "log:\n{}",
        d.log()
    );
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "remote.test waited {took:?} for the hanging slow.test (greeting timeout 5 s)"
    );
    settle(&d, Duration::from_secs(20), |q| {
        q.len() == 1 && q[0]["recipients"][0]["attempts"].u64() == Some(1)
    });
    let slow = queued_rcpt(&d, "someone@slow.test").expect("slow.test still queued");
    assert_eq!(slow["status"].str(), "deferred", "{slow:?}");
    assert!(
        slow["last_reply"].str().contains("127.0.0.4"),
        "the reply names the host: {slow:?}"
    );
    let fast = queued_rcpt(&d, "fast@remote.test").expect("listed");
    assert_eq!(fast["status"].str(), "delivered", "{fast:?}");
    assert_eq!(sink.count(), 1);
}

#[test]
fn mail_accepted_while_a_pass_hangs_is_not_held_up() {
    // Timeouts / 30: the hanging MX holds its pass for 10 s (the greeting timeout).
    const ENV: &[(&str, &str)] = &[("POSTLING_TIMEOUT_DIVISOR", "30")];
    let port = sink_port();
    let dns = Dns::start(ZONE);
    let sink = Sink::start("127.0.0.2", port, &[]);
    let _silent = TcpListener::bind(("127.0.0.4", port)).expect("bind 127.0.0.4");
    let d = daemon(&mx_config(&dns, port), ALIASES, ENV);
    submit(
        &d,
        "alice@mx.test",
        &["someone@slow.test"],
        &message("stuck"),
    );
    // serve's pass is now waiting for mx.slow.test's greeting.
    assert!(eventually(Duration::from_secs(5), || !children_of(d.pid()).is_empty()));
    std::thread::sleep(Duration::from_millis(500));
    let t0 = Instant::now();
    submit(
        &d,
        "alice@mx.test",
        &["fast@remote.test"],
        &message("fresh"),
    );
    assert!(
        sink.wait_for(1, Duration::from_secs(15)),
        "log:\n{}",
        d.log()
    );
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "mail for remote.test waited {took:?} behind a pass stuck on slow.test"
    );
}

#[test]
fn two_concurrent_flushes_deliver_each_message_once() {
    const N: usize = 12;
    let port = sink_port();
    let dns = Dns::start(ZONE);
    let (gate, _g, d, sink) = gated_queue(&[], N, "remote.test", port, &dns, FAST_TIMEOUTS);
    fs::remove_file(&gate).expect("open the gate");
    let mut a = flush_command(&d, FAST_TIMEOUTS)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("flush a");
    let mut b = flush_command(&d, FAST_TIMEOUTS)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("flush b");
    let sa = a.wait().expect("wait a");
    let sb = b.wait().expect("wait b");
    assert!(sa.success() && sb.success(), "{sa} {sb}");
    // One of them may have found every message locked; either way, all went out.
    if !d.queue().is_empty() {
        assert_flush_ok(&d, FAST_TIMEOUTS);
    }
    let subjects = subjects(&sink);
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &subjects {
        *counts.entry(s.as_str()).or_default() += 1;
    }
    assert_eq!(subjects.len(), N, "delivered: {counts:?}");
    assert!(counts.values().all(|&c| c == 1), "duplicates: {counts:?}");
    let ids: Vec<String> = sink
        .messages()
        .iter()
        .map(|m| m.header("Message-ID").unwrap_or_default())
        .collect();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), N, "{ids:?}");
    assert!(d.queue().is_empty(), "{:?}", d.queue());
}

/// Queues 4 messages, starts a pass against a sink that takes 1 s per message, kills the
/// pass with SIGKILL 0.3 s after the sink accepted the 2nd (so the client has read the
/// 250 for the first two and the 3rd is in flight), then flushes again. Returns the subjects
/// in the order the sink accepted them, and how many were accepted before the second
/// flush.
fn kill_9_mid_pass() -> (Vec<String>, usize, common::Daemon, Sink) {
    let port = sink_port();
    let dns = Dns::start(ZONE);
    // Normal timeouts: the slow sink's 1 s per message must not time out.
    let (gate, _g, d, sink) = gated_queue(&["--slow", "1"], 4, "remote.test", port, &dns, &[]);
    fs::remove_file(&gate).expect("open the gate");
    let mut pass = flush_command(&d, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("flush");
    assert!(
        sink.wait_for(2, Duration::from_secs(20)),
        "the pass never got going; log:\n{}",
        d.log()
    );
    // The client reads the 250 for the 2nd and starts the 3rd.
    std::thread::sleep(Duration::from_millis(300));
    pass.kill().expect("kill -9");
    let _ = pass.wait();
    // Let the sink finish what it was given (the 3rd, still in its hands).
    std::thread::sleep(Duration::from_millis(1500));
    let before = sink.count();
    assert_flush_ok(&d, &[]);
    assert!(d.queue().is_empty(), "{:?}", d.queue());
    (subjects(&sink), before, d, sink)
}

#[test]
fn kill_9_in_the_middle_of_a_pass_loses_nothing() {
    let (subjects, _, d, _sink) = kill_9_mid_pass();
    for i in 0..4 {
        let s = format!("message-{i}");
        assert!(
            subjects.contains(&s),
            "{s} lost: {subjects:?}; log:\n{}",
            d.log()
        );
    }
}

#[test]
fn kill_9_in_the_middle_of_a_pass_repeats_only_the_message_in_flight() {
    let (subjects, before, d, _sink) = kill_9_mid_pass();
    // The first two were acknowledged (250 read by the client) before the kill: they
    // must not go out again. Only the one in flight at the kill may.
    let acknowledged = &subjects[..2];
    for s in acknowledged {
        let n = subjects.iter().filter(|x| *x == s).count();
        assert_eq!(
            n,
            1,
            "{s} was acknowledged before the kill yet delivered {n} times \
             ({before} accepted before the second flush): {subjects:?}; log:\n{}",
            d.log()
        );
    }
}

// ---------------------------------------------------------------------------------------
// Aliases, content, local delivery

#[test]
fn an_alias_to_local_and_remote_targets_delivers_to_both() {
    let port = sink_port();
    let dns = Dns::start(ZONE);
    let sink = Sink::start("127.0.0.2", port, &[]);
    let aliases = format!("{ALIASES}team: alice, friend@remote.test\n");
    let d = daemon(&mx_config(&dns, port), &aliases, FAST_TIMEOUTS);
    submit(
        &d,
        "carol@elsewhere.example",
        &["team@mx.test"],
        &message("team news"),
    );
    assert!(
        sink.wait_for(1, Duration::from_secs(10)),
        "log:\n{}",
        d.log()
    );
    settle(&d, Duration::from_secs(10), |q| q.is_empty());
    let got = sink.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].rcpts(), ["friend@remote.test"]);
    assert_eq!(got[0].env["from"].str(), "carol@elsewhere.example");
    assert_eq!(got[0].header("Subject").as_deref(), Some("team news"));
    let local = maildir_files(&d, "alice");
    assert_eq!(local.len(), 1);
    let text = String::from_utf8_lossy(&local[0]);
    assert!(text.contains("Subject: team news"), "{text}");
    assert!(
        text.starts_with("Return-Path: <carol@elsewhere.example>"),
        "{text}"
    );
    assert!(maildir_files(&d, "bob").is_empty());
}

#[test]
fn eight_bit_and_dot_lines_arrive_intact_with_body_8bitmime() {
    let port = sink_port();
    let dns = Dns::start(ZONE);
    let sink = Sink::start("127.0.0.2", port, &[]);
    let d = daemon(&mx_config(&dns, port), ALIASES, FAST_TIMEOUTS);
    let mut data = b"From: alice@mx.test\r\nTo: x@remote.test\r\nSubject: caf\xc3\xa9\r\n\
        Message-ID: <8bit@client.test>\r\nMIME-Version: 1.0\r\n\
        Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
        .leading dot\r\n..two dots\r\n.\r\ncaf\xc3\xa9 \xe2\x82\xac \xff\xfe raw 8-bit\r\n. \r\n\
        \x80\r\n"
        .to_vec();
    // Enough lines that the data crosses several reads, dots at every position.
    for i in 0..3000 {
        data.extend_from_slice(format!(".{i} {}\r\n", "\u{e9}".repeat(i % 50)).as_bytes());
    }
    data.extend_from_slice(b"last line\r\n");
    submit(&d, "alice@mx.test", &["x@remote.test"], &data);
    assert!(
        sink.wait_for(1, Duration::from_secs(10)),
        "log:\n{}",
        d.log()
    );
    let got = &sink.messages()[0];
    // What arrives is postling's Received: header, then exactly what was submitted.
    assert!(got.data.starts_with(b"Received: "), "{}", got.text());
    assert!(
        got.data.ends_with(&data),
        "the data changed on the way:\n{}",
        got.text()
    );
    let head = &got.data[..got.data.len() - data.len()];
    assert!(
        !head.windows(4).any(|w| w == b"\r\n\r\n"),
        "only header lines were added: {}",
        String::from_utf8_lossy(head)
    );
    let options: Vec<&str> = got.env["mail_options"]
        .items()
        .iter()
        .map(|o| o.str())
        .collect();
    assert!(options.contains(&"BODY=8BITMIME"), "{options:?}");
}

#[test]
fn local_delivery_writes_return_path_and_delivered_to() {
    let d = common::Daemon::start("");
    let data =
        b"From: carol@elsewhere.example\r\nTo: alice@mx.test\r\nSubject: local\r\n\r\nhi\r\n";
    submit(&d, "carol@elsewhere.example", &["Alice@mx.test"], data);
    assert!(
        eventually(Duration::from_secs(10), || d.maildir("alice").len() == 1),
        "log:\n{}",
        d.log()
    );
    let files = maildir_files(&d, "alice");
    let text = String::from_utf8_lossy(&files[0]);
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("Return-Path: <carol@elsewhere.example>"),
        "{text}"
    );
    assert_eq!(
        header(&text, "Delivered-To").as_deref(),
        Some("Alice@mx.test")
    );
    assert!(text.contains("Subject: local"), "{text}");
    assert!(text.contains("Received: "), "{text}");
    // tmp/ is empty: the file was renamed into new/.
    let tmp = fs::read_dir(d.dir.path().join("mail/alice/tmp"))
        .expect("tmp")
        .count();
    assert_eq!(tmp, 0);
    assert!(eventually(Duration::from_secs(10), || d.queue().is_empty()));
}

// ---------------------------------------------------------------------------------------
// Measurements (not assertions): run with
//   cargo build --release && POSTLING_BENCH_BIN=$CARGO_TARGET_DIR/release/postling \
//     cargo test --test delivery measure_ -- --ignored --nocapture --test-threads=1
// Without POSTLING_BENCH_BIN they measure the debug build.

/// Whether the tests run as root (uid 0), from /proc (no libc call needed).
fn running_as_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

fn bench_bin() -> std::path::PathBuf {
    std::env::var_os("POSTLING_BENCH_BIN")
        .map(Into::into)
        .unwrap_or_else(|| common::BIN.into())
}

/// Postfix's smtp-source / smtp-sink: installed, or unpacked from the Debian package
/// under /tmp/pf/root (`apt-get download postfix; dpkg-deb -x postfix_*.deb /tmp/pf/root`).
fn postfix_tool(name: &str) -> std::process::Command {
    let system = std::path::Path::new("/usr/sbin").join(name);
    if system.exists() {
        return std::process::Command::new(system);
    }
    let mut c = std::process::Command::new(format!("/tmp/pf/root/usr/sbin/{name}"));
    c.env("LD_LIBRARY_PATH", "/tmp/pf/root/usr/lib/postfix");
    c
}

#[test]
#[ignore = "measurement: end-to-end throughput with smtp-source and smtp-sink"]
fn measure_throughput_smtp_source_to_smtp_sink() {
    const MESSAGES: usize = 2000;
    let port = sink_port();
    let dns = Dns::start(ZONE);
    let mut sink = postfix_tool("smtp-sink");
    // As root it insists on a user to switch to.
    if running_as_root() {
        sink.args(["-u", "nobody"]);
    }
    let mut sink = sink
        .args([&format!("127.0.0.2:{port}"), "1000"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("smtp-sink (apt-get install postfix, or see postfix_tool)");
    assert!(eventually(Duration::from_secs(5), || {
        std::net::TcpStream::connect(("127.0.0.2", port)).is_ok()
    }));
    let bin = bench_bin();
    let d = daemon_bin(
        &bin,
        &mx_config(&dns, port),
        ALIASES,
        &[("RUST_LOG", "info")],
    );
    settle(&d, Duration::from_secs(10), |q| q.is_empty());
    let t0 = Instant::now();
    let out = postfix_tool("smtp-source")
        .args(["-s", "20", "-m", &MESSAGES.to_string(), "-l", "4096"])
        .args(["-f", "alice@mx.test", "-t", "user@remote.test"])
        .arg(format!("127.0.0.1:{}", d.port))
        .output()
        .expect("smtp-source");
    let accepted = t0.elapsed();
    assert!(
        out.status.success(),
        "smtp-source: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent = || {
        d.log()
            .lines()
            .filter(|l| l.contains("to=<user@remote.test>") && l.contains("status=sent"))
            .count()
    };
    let all = eventually(Duration::from_secs(600), || sent() >= MESSAGES);
    let done = t0.elapsed();
    let _ = sink.kill();
    let _ = sink.wait();
    assert!(all, "only {} of {MESSAGES} sent", sent());
    eprintln!(
        "throughput ({}): {MESSAGES} x 4096 B, 20 sessions: accepted in {:.2} s ({:.0} msg/s), \
         all at smtp-sink after {:.2} s ({:.0} msg/s end to end); passes: {}",
        bin.display(),
        accepted.as_secs_f64(),
        MESSAGES as f64 / accepted.as_secs_f64(),
        done.as_secs_f64(),
        MESSAGES as f64 / done.as_secs_f64(),
        d.log().lines().filter(|l| l.contains(": pass: ")).count(),
    );
}

#[test]
#[ignore = "measurement: postling flush on an empty queue"]
fn measure_flush_on_an_empty_queue() {
    const RUNS: u32 = 100;
    let bin = bench_bin();
    let d = daemon_bin(&bin, "", ALIASES, &[("RUST_LOG", "info")]);
    settle(&d, Duration::from_secs(10), |q| q.is_empty());
    let mut times = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        let st = std::process::Command::new(&bin)
            .args(["flush", "-c"])
            .arg(&d.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("flush");
        times.push(t.elapsed());
        assert!(st.success());
    }
    times.sort();
    let total: Duration = times.iter().sum();
    eprintln!(
        "flush on an empty queue ({}), {RUNS} runs: mean {:.2} ms, median {:.2} ms, max {:.2} ms",
        bin.display(),
        total.as_secs_f64() * 1000.0 / f64::from(RUNS),
        times[times.len() / 2].as_secs_f64() * 1000.0,
        times[times.len() - 1].as_secs_f64() * 1000.0,
    );
}

/// A fast MX takes messages much faster than the pass can fsync their outcomes; the pass
/// must not run ahead of its records, or a crash resends everything sent so far
/// (BENCHMARKS.md: once 1,043 of 2,000). Kill the pass in the middle of 60 messages: the
/// next flush may repeat only what was in flight.
#[test]
fn kill_9_during_a_fast_flush_repeats_at_most_the_message_in_flight() {
    const N: usize = 60;
    let port = sink_port();
    let dns = Dns::start(ZONE);
    let (gate, _g, d, sink) = gated_queue(&[], N, "remote.test", port, &dns, &[]);
    fs::remove_file(&gate).expect("open the gate");
    let mut pass = flush_command(&d, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("flush");
    assert!(
        eventually(Duration::from_secs(30), || sink.count() >= N / 3),
        "the pass never got going; log:\n{}",
        d.log()
    );
    pass.kill().expect("kill -9");
    let _ = pass.wait();
    let before = sink.count();
    assert_flush_ok(&d, &[]);
    assert!(d.queue().is_empty(), "{:?}", d.queue());
    let subjects = subjects(&sink);
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &subjects {
        *counts.entry(s.as_str()).or_default() += 1;
    }
    assert_eq!(counts.len(), N, "lost messages: {counts:?}");
    let repeated = counts.values().filter(|&&c| c > 1).count();
    assert!(
        repeated <= 2,
        "{repeated} messages sent twice after a kill at {before} delivered: {counts:?}"
    );
}
