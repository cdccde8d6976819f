//! Bad input against the real daemon over TCP: smuggling sequences, over-long lines,
//! NUL bytes, invalid UTF-8, garbage, floods, limits. Each must get the right reply or a
//! clean disconnect, never a crash, a second message, or a stall of other sessions.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Client, Daemon};

/// Opens a session up to the 354 of DATA.
fn in_data(d: &Daemon) -> Client {
    let mut c = Client::greeted(d.port);
    assert!(c.cmd("EHLO test.example").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<s@example.org>").starts_with("250"));
    // A remote recipient: delivery defers it (no DNS here), so it stays in the queue
    // for the test to inspect.
    assert!(c.cmd("RCPT TO:<friend@remote.example>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c
}

/// After an ending that a lenient server would take as end-of-data, a second
/// transaction is smuggled. Whatever postling answers, it must never queue the
/// smuggled message.
#[test]
fn smuggling_sequences_never_make_two_messages() {
    // (ending that must not end DATA, expected final reply after the real CRLF.CRLF)
    const CASES: &[(&str, &str)] = &[
        ("\n.\n", "250"),
        ("\r\n.\n", "250"),
        ("\n.\r\n", "250"),
        ("\r.\r", "550 5.6.0"),
        ("\r\n.\r", "550 5.6.0"),
        ("\r.\r\n", "550 5.6.0"),
    ];
    let d = Daemon::start("");
    let mut queued = 0;
    for (ending, expect) in CASES {
        let mut c = in_data(&d);
        let smuggled = format!(
            "Subject: smuggle\r\n\r\nfirst part{ending}MAIL FROM:<evil@example.org>\r\n\
             RCPT TO:<bob@mx.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n.\r\n"
        );
        c.send(smuggled.as_bytes());
        let reply = c.reply();
        assert!(reply.starts_with(expect), "ending {ending:?}: {reply:?}");
        if reply.starts_with("250") {
            queued += 1;
        }
        // The connection is still in a sane state: the next command is a command.
        let noop = c.cmd("NOOP");
        assert!(
            noop.starts_with("250"),
            "ending {ending:?}: NOOP got {noop:?}"
        );
        assert!(c.cmd("QUIT").starts_with("221"));
    }
    let queue = d.queue();
    assert_eq!(queue.len(), queued, "{queue:?}");
    for line in &queue {
        assert!(
            !line.contains("evil@example.org"),
            "smuggled sender queued: {line}"
        );
        assert!(
            !line.contains("bob@mx.test"),
            "smuggled recipient queued: {line}"
        );
    }
    // Bare LFs were normalised: no spool file carries a lone LF line ending, so the
    // next hop cannot read the smuggled part as a second message either.
    for msg in d.spooled_messages() {
        let bytes = msg.as_bytes();
        for (i, b) in bytes.iter().enumerate() {
            if *b == b'\n' {
                assert!(
                    i > 0 && bytes[i - 1] == b'\r',
                    "bare LF in spool file: {msg:?}"
                );
            }
            if *b == b'\r' {
                assert_eq!(
                    bytes.get(i + 1),
                    Some(&b'\n'),
                    "bare CR in spool file: {msg:?}"
                );
            }
        }
    }
}

#[test]
fn over_long_command_line_gets_500_and_the_session_goes_on() {
    let d = Daemon::start("");
    let mut c = Client::greeted(d.port);
    let long = format!("NOOP {}", "x".repeat(3000));
    let reply = c.cmd(&long);
    assert!(reply.starts_with("500 5.5.2"), "{reply:?}");
    assert!(c.cmd("NOOP").starts_with("250"));
    // A line far beyond any buffer: still one error, the daemon lives.
    let huge = format!("HELO {}", "y".repeat(1 << 20));
    let reply = c.cmd(&huge);
    assert!(reply.starts_with("500 5.5.2"), "{reply:?}");
    assert!(c.cmd("NOOP").starts_with("250"));
}

#[test]
fn nul_and_invalid_utf8_in_commands_get_500() {
    let d = Daemon::start("");
    let mut c = Client::greeted(d.port);
    for bad in [
        &b"EHLO a\0b\r\n"[..],
        b"MAIL FROM:<a\xff@b.example>\r\n",
        b"\xc3\x28\r\n",
        b"NOOP \x00\r\n",
    ] {
        c.send(bad);
        let reply = c.reply();
        assert!(reply.starts_with("500 5.5.2"), "{bad:?}: {reply:?}");
    }
    assert!(c.cmd("EHLO ok.example").starts_with("250"));
}

#[test]
fn random_garbage_gets_errors_and_then_a_disconnect() {
    let d = Daemon::start("");
    let mut c = Client::greeted(d.port);
    // Deterministic pseudo-random bytes (xorshift), with line breaks sprinkled in.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut garbage = Vec::new();
    for i in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        garbage.push(if i % 97 == 96 { b'\n' } else { x as u8 });
    }
    // The server may close before reading it all; a write error is fine then.
    let _ = c.reader.get_mut().write_all(&garbage);
    let mut replies = String::new();
    loop {
        let r = c.reply();
        if r.is_empty() {
            break;
        }
        replies.push_str(&r);
    }
    assert!(replies.contains("500 5.5.2"), "{replies}");
    assert!(
        replies.contains("421 4.7.0"),
        "too many errors must end it: {replies}"
    );
    // The daemon lives and serves the next client.
    let mut next = Client::greeted(d.port);
    assert!(next.cmd("EHLO ok.example").starts_with("250"));
}

#[test]
fn http_request_is_answered_and_closed() {
    let d = Daemon::start("");
    let mut c = Client::greeted(d.port);
    c.send(b"GET / HTTP/1.1\r\nHost: mx.test\r\n\r\n");
    let reply = c.reply();
    assert!(reply.starts_with("221"), "{reply:?}");
    assert!(c.closed());
}

#[test]
fn relay_to_foreign_domain_is_denied_outside_relay_from() {
    // 127.0.0.1 is not in relay_from, so this client is a stranger.
    let d = Daemon::start("relay_from = 10.255.255.1/32\n");
    let mut c = Client::greeted(d.port);
    assert!(c.cmd("EHLO stranger.example").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<s@example.org>").starts_with("250"));
    let r = c.cmd("RCPT TO:<victim@example.net>");
    assert!(r.starts_with("554 5.7.1"), "{r:?}");
    let r = c.cmd("RCPT TO:<no.such.user@mx.test>");
    assert!(r.starts_with("550 5.1.1"), "{r:?}");
    let r = c.cmd("RCPT TO:<alice@mx.test>");
    assert!(r.starts_with("250"), "{r:?}");
    // Address tricks that would relay through us are refused as syntax.
    for trick in [
        "RCPT TO:<victim%example.net@mx.test>",
        "RCPT TO:<@mx.test:victim@example.net>",
        "RCPT TO:<victim!example.net@mx.test>",
    ] {
        let r = c.cmd(trick);
        assert!(r.starts_with('5'), "{trick}: {r:?}");
    }
    assert!(d.log().contains("reject: RCPT"), "{}", d.log());
}

#[test]
fn relay_from_loopback_may_send_anywhere() {
    let d = Daemon::start("");
    let mut c = Client::greeted(d.port);
    assert!(c.cmd("EHLO trusted.example").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<s@mx.test>").starts_with("250"));
    let r = c.cmd("RCPT TO:<friend@example.net>");
    assert!(r.starts_with("250"), "{r:?}");
}

#[test]
fn too_many_recipients_gets_452() {
    let d = Daemon::start("max_recipients = 3\n");
    let mut c = Client::greeted(d.port);
    assert!(c.cmd("EHLO t.example").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<s@example.org>").starts_with("250"));
    for _ in 0..3 {
        assert!(c.cmd("RCPT TO:<alice@mx.test>").starts_with("250"));
    }
    let r = c.cmd("RCPT TO:<bob@mx.test>");
    assert!(r.starts_with("452 4.5.3"), "{r:?}");
}

#[test]
fn declared_and_actual_size_over_the_limit_get_552() {
    let d = Daemon::start("max_message_size = 10K\n");
    let mut c = Client::greeted(d.port);
    let ehlo = c.cmd("EHLO t.example");
    assert!(ehlo.contains("250-SIZE 10240"), "{ehlo}");
    let r = c.cmd("MAIL FROM:<s@example.org> SIZE=20000");
    assert!(r.starts_with("552 5.3.4"), "{r:?}");

    assert!(c
        .cmd("MAIL FROM:<s@example.org> SIZE=100")
        .starts_with("250"));
    assert!(c.cmd("RCPT TO:<alice@mx.test>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    let line = format!("{}\r\n", "z".repeat(900));
    for _ in 0..20 {
        c.send(line.as_bytes());
    }
    let r = c.cmd(".");
    assert!(r.starts_with("552 5.3.4"), "{r:?}");
    assert!(d.queue().is_empty());
    assert!(c.cmd("NOOP").starts_with("250"));
}

#[test]
fn pipelined_commands_are_answered_in_order() {
    let d = Daemon::start("");
    let mut c = Client::greeted(d.port);
    c.send(
        b"EHLO p.example\r\nMAIL FROM:<s@example.org>\r\nRCPT TO:<no.such.user@mx.test>\r\n\
          RCPT TO:<friend@remote.example>\r\nDATA\r\nSubject: p\r\n\r\nbody\r\n.\r\nQUIT\r\n",
    );
    let expect = [
        "250",
        "250 2.1.0",
        "550 5.1.1",
        "250 2.1.5",
        "354",
        "250 2.0.0",
        "221",
    ];
    for e in expect {
        let r = c.reply();
        assert!(r.starts_with(e), "expected {e}, got {r:?}");
    }
    assert!(c.closed());
    assert_eq!(d.queue().len(), 1);
}

#[test]
fn idle_client_gets_421_after_idle_timeout() {
    let d = Daemon::start("idle_timeout = 1s\n");
    let mut c = Client::greeted(d.port);
    let started = Instant::now();
    let r = c.reply();
    let waited = started.elapsed();
    assert!(r.starts_with("421 4.4.2"), "{r:?}");
    assert!(waited < Duration::from_secs(4), "took {waited:?}");
    assert!(c.closed());
}

#[test]
fn a_silent_client_does_not_stall_others() {
    let d = Daemon::start("");
    // One client connects and stays silent mid-command; another sends a whole message.
    let mut silent = TcpStream::connect(("127.0.0.1", d.port)).expect("connect");
    silent.write_all(b"EHLO half").expect("write");
    let mut c = Client::greeted(d.port);
    assert!(c.cmd("EHLO t.example").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<s@example.org>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<alice@mx.test>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(b"Subject: x\r\n\r\nhi\r\n");
    assert!(c.cmd(".").starts_with("250"));
    drop(silent);
}

#[test]
fn two_hundred_concurrent_clients_are_served_or_refused_with_421() {
    let d = Daemon::start("max_connections = 64\nmax_connections_per_ip = 256\n");
    let port = d.port;
    let handles: Vec<_> = (0..200)
        .map(|i| {
            std::thread::spawn(move || -> Result<bool, String> {
                let mut c = Client::connect(port);
                let banner = c.reply();
                if banner.starts_with("421 4.7.0") {
                    return Ok(false);
                }
                if !banner.starts_with("220") {
                    return Err(format!("client {i}: banner {banner:?}"));
                }
                let steps = [
                    ("EHLO c.example", "250"),
                    ("MAIL FROM:<s@example.org>", "250"),
                    ("RCPT TO:<friend@remote.example>", "250"),
                    ("DATA", "354"),
                ];
                for (cmd, want) in steps {
                    let r = c.cmd(cmd);
                    if !r.starts_with(want) {
                        return Err(format!("client {i}: {cmd} -> {r:?}"));
                    }
                }
                let r = c.cmd(&format!("Subject: client {i}\r\n\r\nbody\r\n."));
                if !r.starts_with("250 2.0.0") {
                    return Err(format!("client {i}: end of data -> {r:?}"));
                }
                c.cmd("QUIT");
                Ok(true)
            })
        })
        .collect();
    let mut served = 0;
    let mut refused = 0;
    for h in handles {
        match h.join().expect("client thread") {
            Ok(true) => served += 1,
            Ok(false) => refused += 1,
            Err(e) => panic!("{e}\nlog:\n{}", d.log()),
        }
    }
    assert_eq!(served + refused, 200);
    assert!(served >= 64, "served {served}, refused {refused}");
    assert_eq!(d.queue().len(), served);
    // The daemon lives on and serves the next client.
    let mut c = Client::greeted(d.port);
    assert!(c.cmd("EHLO after.example").starts_with("250"));
}

#[test]
fn connections_over_the_per_ip_limit_get_421() {
    let d = Daemon::start("max_connections_per_ip = 2\n");
    let _a = Client::greeted(d.port);
    let _b = Client::greeted(d.port);
    let mut c = Client::connect(d.port);
    let r = c.reply();
    assert!(r.starts_with("421 4.7.0"), "{r:?}");
    assert!(c.closed());
}
