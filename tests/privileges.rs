//! Privileges: started as root with `user = nobody`, the SMTP process runs as nobody
//! (uid, gid, no supplementary groups) while delivery still writes root-owned Maildirs;
//! the spool's directories are 0700 and its files 0600; path tricks in `queue -d` are
//! refused. Needs root; says so and passes trivially otherwise.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use common::{eventually, Client, Daemon};

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// Direct children of `pid`, from /proc.
fn children_of(pid: u32) -> Vec<u32> {
    let mut v = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(child) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // The command name is in parentheses and may hold spaces: split after it.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        if rest.split_whitespace().nth(1) == Some(&pid.to_string()) {
            v.push(child);
        }
    }
    v
}

fn status_field(pid: u32, field: &str) -> String {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .map(|l| {
            l[field.len()..]
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

#[test]
fn serve_drops_to_user_after_binding_and_still_delivers() {
    if !is_root() {
        eprintln!("skipped: needs root to test privilege dropping");
        return;
    }
    let mut d = Daemon::start("user = nobody\n");
    let parent = d.pid();
    let mut smtp = Vec::new();
    assert!(
        eventually(Duration::from_secs(5), || {
            smtp = children_of(parent)
                .into_iter()
                .filter(|c| status_field(*c, "Uid:") == "65534 65534 65534 65534")
                .collect();
            !smtp.is_empty()
        }),
        "no unprivileged child; log:\n{}",
        d.log()
    );
    let child = smtp[0];
    assert_eq!(status_field(child, "Gid:"), "65534 65534 65534 65534");
    assert_eq!(
        status_field(child, "Groups:"),
        "",
        "supplementary groups kept"
    );
    assert_eq!(status_field(parent, "Uid:"), "0 0 0 0");

    // The unprivileged process accepts; the root pass delivers into a root-owned Maildir.
    let mut c = Client::greeted(d.port);
    assert!(c.cmd("EHLO t.example").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<s@example.org>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<alice@mx.test>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<friend@remote.example>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    assert!(c.cmd("Subject: privsep\r\n\r\nhi\r\n.").starts_with("250"));
    assert!(c.cmd("QUIT").starts_with("221"));
    assert!(
        eventually(Duration::from_secs(10), || d.maildir("alice").len() == 1),
        "log:\n{}",
        d.log()
    );
    // Spool: directories 0700 (the root 0711 so local users reach maildrop/), files 0600.
    let spool = d.dir.path().join("spool");
    for sub in ["tmp", "msg", "env", "corrupt"] {
        let m = fs::metadata(spool.join(sub)).expect("spool dir");
        assert_eq!(m.permissions().mode() & 0o777, 0o700, "{sub}/");
        assert_eq!(m.uid(), 65534, "{sub}/ owner");
    }
    assert_eq!(
        fs::metadata(&spool).expect("spool").permissions().mode() & 0o777,
        0o711
    );
    for sub in ["msg", "env"] {
        for f in fs::read_dir(spool.join(sub)).expect("list").flatten() {
            let mode = f.metadata().expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{:?}", f.path());
        }
    }
    // Path tricks never reach the file system.
    for bad in ["../../etc/passwd", "/etc/passwd", "..", "ALL/../x"] {
        let out = d.run(&["queue", "-d", bad]);
        assert_eq!(out.status.code(), Some(64), "{bad}");
    }
    assert!(fs::metadata("/etc/passwd").is_ok());
    d.signal("TERM");
    assert_eq!(
        d.wait_exit(Duration::from_secs(15)),
        Some(0),
        "log:\n{}",
        d.log()
    );
}

#[test]
fn an_unknown_user_is_a_config_error() {
    if is_root() {
        let dir = common::TempDir::new("nouser");
        let conf = dir.path().join("c.conf");
        fs::write(
            &conf,
            format!(
                "hostname = mx.test\nlisten = 127.0.0.1:{} smtp\nspool = {}/spool\naliases = /dev/null\nuser = no-such-user-here\n",
                common::free_port(),
                dir.path().display()
            ),
        )
        .expect("write");
        let out = std::process::Command::new(common::BIN)
            .args(["serve", "-c"])
            .arg(&conf)
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(78));
        assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-user-here"));
    }
}
