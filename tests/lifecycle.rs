//! The daemon's life: crash after 250, SIGTERM, SIGHUP, and the administrator's
//! commands around it (`check`, `queue -d`).

mod common;

use std::fs;
use std::process::Command;
use std::time::Duration;

use common::{eventually, Client, Daemon, TempDir, BIN};

/// Sends one message over a raw session and returns its queue ID.
fn send_one(d: &Daemon, rcpt: &str) -> String {
    let mut c = Client::greeted(d.port);
    assert!(c.cmd("EHLO t.example").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<s@example.org>").starts_with("250"));
    assert!(c.cmd(&format!("RCPT TO:<{rcpt}>")).starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    let r = c.cmd("Subject: durable\r\n\r\nbody\r\n.");
    assert!(r.starts_with("250 2.0.0 Ok: queued as "), "{r:?}");
    r.trim_end().rsplit(' ').next().expect("id").to_string()
}

#[test]
fn kill_9_right_after_250_keeps_the_message_for_a_restart() {
    let mut d = Daemon::start("");
    let id = send_one(&d, "friend@remote.example");
    // No QUIT, no grace: the process dies the instant after the reply.
    d.signal("KILL");
    // Killed by a signal: no exit code, and the process is gone.
    assert_eq!(d.wait_exit(Duration::from_secs(5)), None);
    assert!(!d.is_running(), "serve survived SIGKILL");
    let queue = d.queue();
    assert_eq!(queue.len(), 1, "{queue:?}");
    assert!(queue[0].contains(&id));
    // A restarted daemon reads the same spool and keeps accepting.
    d.spawn();
    let id2 = send_one(&d, "other@remote.example");
    let queue = d.queue();
    assert_eq!(queue.len(), 2, "{queue:?}");
    assert!(queue.iter().any(|l| l.contains(&id)) && queue.iter().any(|l| l.contains(&id2)));
    // Nothing half-written is left behind in tmp/ (a delivery pass may be rewriting an
    // envelope through tmp/ right now, so give it a moment).
    let tmp_empty = || {
        fs::read_dir(d.dir.path().join("spool/tmp"))
            .map(|r| r.count() == 0)
            .unwrap_or(false)
    };
    assert!(eventually(Duration::from_secs(5), tmp_empty));
}

#[test]
fn sigterm_answers_open_sessions_421_and_exits_0() {
    let mut d = Daemon::start("");
    let mut idle = Client::greeted(d.port);
    assert!(idle.cmd("EHLO t.example").starts_with("250"));
    let mut in_data = Client::greeted(d.port);
    assert!(in_data.cmd("EHLO t.example").starts_with("250"));
    assert!(in_data.cmd("MAIL FROM:<s@example.org>").starts_with("250"));
    assert!(in_data
        .cmd("RCPT TO:<friend@remote.example>")
        .starts_with("250"));
    assert!(in_data.cmd("DATA").starts_with("354"));
    in_data.send(b"Subject: in flight\r\n\r\n");

    d.signal("TERM");
    // New connections are no longer accepted...
    assert!(
        eventually(Duration::from_secs(5), || {
            d.log().contains("stopping") || d.log().contains("shutting down")
        }),
        "log:\n{}",
        d.log()
    );
    // ...the idle session gets 421 4.3.2 at its next command...
    let r = idle.cmd("NOOP");
    assert!(r.starts_with("421 4.3.2"), "{r:?}");
    // ...and the message in flight may finish and is accepted durably.
    let r = in_data.cmd("body\r\n.");
    assert!(r.starts_with("250 2.0.0"), "{r:?}");
    let r = in_data.cmd("MAIL FROM:<s@example.org>");
    assert!(r.starts_with("421 4.3.2"), "{r:?}");
    assert_eq!(
        d.wait_exit(Duration::from_secs(15)),
        Some(0),
        "log:\n{}",
        d.log()
    );
    assert_eq!(d.queue().len(), 1);
}

#[test]
fn sighup_reloads_the_configuration() {
    let d = Daemon::start("max_recipients = 1\n");
    let mut before = Client::greeted(d.port);
    assert!(before.cmd("EHLO t.example").starts_with("250"));
    assert!(before.cmd("MAIL FROM:<s@example.org>").starts_with("250"));
    assert!(before.cmd("RCPT TO:<alice@mx.test>").starts_with("250"));
    assert!(before.cmd("RCPT TO:<bob@mx.test>").starts_with("452"));

    let text = fs::read_to_string(&d.config).expect("config");
    fs::write(
        &d.config,
        text.replace("max_recipients = 1", "max_recipients = 2"),
    )
    .expect("rewrite config");
    // An alias added to the file is known after the reload too.
    fs::write(d.dir.path().join("aliases"), "sales: alice\nnewname: bob\n").expect("aliases");
    d.signal("HUP");
    assert!(
        eventually(Duration::from_secs(5), || d.log().contains("reloaded")),
        "log:\n{}",
        d.log()
    );
    let mut after = Client::greeted(d.port);
    assert!(after.cmd("EHLO t.example").starts_with("250"));
    assert!(after.cmd("MAIL FROM:<s@example.org>").starts_with("250"));
    assert!(after.cmd("RCPT TO:<alice@mx.test>").starts_with("250"));
    let r = after.cmd("RCPT TO:<newname@mx.test>");
    assert!(r.starts_with("250"), "{r:?}");

    // A broken file on reload keeps the running configuration.
    fs::write(&d.config, "no_such_key = 1\n").expect("break config");
    d.signal("HUP");
    assert!(eventually(Duration::from_secs(5), || d
        .log()
        .contains("keeping the running")));
    let mut still = Client::greeted(d.port);
    assert!(still.cmd("EHLO t.example").starts_with("250"));
}

#[test]
fn check_prints_settings_and_rejects_bad_files_with_78() {
    let dir = TempDir::new("check");
    let good = dir.path().join("good.conf");
    fs::write(
        &good,
        format!(
            "hostname = mx.test\nspool = {}/spool\nmax_message_size = 10M\naliases = /dev/null\n",
            dir.path().display()
        ),
    )
    .expect("write");
    let out = Command::new(BIN)
        .args(["check", "-c"])
        .arg(&good)
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("hostname = mx.test"), "{text}");
    assert!(text.contains("max_message_size = 10M"), "{text}");

    let bad = dir.path().join("bad.conf");
    fs::write(&bad, "hostname = mx.test\n\nmax_recipients = lots\n").expect("write");
    let out = Command::new(BIN)
        .args(["check", "-c"])
        .arg(&bad)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains(&format!("{}:3:", bad.display())), "{err}");

    // $POSTLING_CONFIG is used when -c is absent.
    let out = Command::new(BIN)
        .arg("check")
        .env("POSTLING_CONFIG", &bad)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(78));

    let missing = dir.path().join("missing.conf");
    let out = Command::new(BIN)
        .args(["check", "-c"])
        .arg(&missing)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.conf"));
}

#[test]
fn queue_delete_removes_one_message_or_all() {
    let d = Daemon::start("");
    let a = send_one(&d, "friend@remote.example");
    let _b = send_one(&d, "other@remote.example");
    let _c = send_one(&d, "other@remote.example");
    assert_eq!(d.queue().len(), 3);

    let out = d.run(&["queue", "-d", "not-an-id"]);
    assert_eq!(out.status.code(), Some(64));
    assert_eq!(d.queue().len(), 3);

    let out = d.run(&["queue", "-d", &a]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let queue = d.queue();
    assert_eq!(queue.len(), 2);
    assert!(!queue.iter().any(|l| l.contains(&a)));
    assert!(!d.dir.path().join("spool/msg").join(&a).exists());

    let out = d.run(&["queue", "-d", "ALL"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(d.queue().is_empty());
}

#[test]
fn version_and_help() {
    let out = Command::new(BIN).arg("--version").output().expect("run");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("postling "));
    let out = Command::new(BIN).arg("--help").output().expect("run");
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("serve"));
    let out = Command::new(BIN).arg("frobnicate").output().expect("run");
    assert_eq!(out.status.code(), Some(64));
}
