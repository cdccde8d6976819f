//! What ships: `make install` into a staging directory (DESTDIR), the installed
//! binary under its link names doing real work, the shipped configuration valid as
//! installed, `make uninstall`; and the service files: the systemd unit verified by
//! systemd-analyze, the sysvinit script starting and stopping a real daemon, the
//! OpenWrt script and the crontab line run against stand-ins.
//!
//! `make install` gets `BIN=` the binary under test (cargo's, or `$POSTLING_BIN`), so
//! it never builds and never installs a stale release binary.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{bin, free_port, TempDir};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `make TARGET DESTDIR=dest PREFIX=/usr BIN=<binary under test>` from the repository.
fn make(target: &str, dest: &Path) -> Output {
    let out = Command::new("make")
        .current_dir(repo())
        .arg("--no-print-directory")
        .arg(target)
        .arg(format!("DESTDIR={}", dest.display()))
        .arg("PREFIX=/usr")
        .arg(format!("BIN={}", bin()))
        .output()
        .expect("run make");
    assert!(out.status.success(), "make {target}: {}", text(&out));
    out
}

/// Every file and symlink under `root` (directories left out), relative, sorted.
fn files(root: &Path) -> Vec<String> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(dir).expect("read_dir").flatten() {
            let path = e.path();
            let ft = e.file_type().expect("file type");
            if ft.is_dir() {
                walk(&path, root, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

const INSTALLED: &[&str] = &[
    "etc/postling.conf",
    "usr/sbin/mailq",
    "usr/sbin/newaliases",
    "usr/sbin/postling",
    "usr/sbin/sendmail",
    "usr/share/man/man5/postling.conf.5",
    "usr/share/man/man8/postling.8",
];

/// A configuration whose spool and Maildirs are in `dir`, with a local user alice.
fn test_config(dir: &Path, port: u16) -> PathBuf {
    for sub in ["tmp", "new", "cur"] {
        fs::create_dir_all(dir.join("mail/alice").join(sub)).unwrap();
    }
    fs::write(dir.join("aliases"), "postmaster: alice\n").unwrap();
    let config = dir.join("postling.conf");
    fs::write(
        &config,
        common::base_config(dir, port) + "max_connections_per_ip = 64\n",
    )
    .unwrap();
    config
}

#[test]
fn install_then_uninstall() {
    let dest = TempDir::new("install");
    let d = dest.path();
    make("install", d);

    assert_eq!(files(d), INSTALLED);
    let sbin = d.join("usr/sbin");
    assert_eq!(mode(&sbin.join("postling")), 0o755);
    assert_eq!(
        fs::read(sbin.join("postling")).unwrap(),
        fs::read(bin()).unwrap(),
        "the installed binary is not the one under test"
    );
    for link in ["sendmail", "mailq", "newaliases"] {
        let target = fs::read_link(sbin.join(link)).expect("a symlink");
        assert_eq!(target, Path::new("postling"), "{link} is a relative link");
    }
    for f in [
        "etc/postling.conf",
        "usr/share/man/man8/postling.8",
        "usr/share/man/man5/postling.conf.5",
    ] {
        assert_eq!(mode(&d.join(f)), 0o644, "{f}");
    }
    assert_eq!(
        fs::read(d.join("etc/postling.conf")).unwrap(),
        fs::read(repo().join("etc/postling.conf")).unwrap()
    );
    let spool = d.join("var/spool/postling");
    assert!(
        spool.is_dir(),
        "the spool directory for the service sandbox"
    );
    assert_eq!(mode(&spool), 0o711);

    // The shipped configuration is valid as installed, without warnings (a spool on
    // tmpfs would be this machine's doing, not the file's).
    let out = Command::new(sbin.join("postling"))
        .arg("check")
        .arg("-c")
        .arg(d.join("etc/postling.conf"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "check of the installed config: {}",
        text(&out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in stderr.lines() {
        assert!(
            line.starts_with("postling: warning: spool = "),
            "the shipped configuration gets a warning: {line}"
        );
    }
    assert!(String::from_utf8_lossy(&out.stdout).contains("listen = 127.0.0.1:25 smtp"));

    // The links at work, with the configuration from the environment (sendmail has
    // no -c): sendmail -t queues, the background pass and flush deliver.
    let work = TempDir::new("install-work");
    let config = test_config(work.path(), free_port());
    let mut child = Command::new(sbin.join("sendmail"))
        .arg("-t")
        .env("POSTLING_CONFIG", &config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            b"To: alice@mx.test, bob@remote.example\nSubject: installed\n\nthrough the sendmail link\n",
        )
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "installed sendmail -t: {}",
        text(&out)
    );

    let new = work.path().join("mail/alice/new");
    let deadline = Instant::now() + Duration::from_secs(30);
    let (delivered, listed) = loop {
        let flush = Command::new(sbin.join("postling"))
            .args(["flush", "-c"])
            .arg(&config)
            .output()
            .unwrap();
        assert!(flush.status.success(), "flush: {}", text(&flush));
        let mailq = Command::new(sbin.join("mailq"))
            .arg("--json")
            .env("POSTLING_CONFIG", &config)
            .output()
            .unwrap();
        assert!(mailq.status.success(), "mailq: {}", text(&mailq));
        let listed = String::from_utf8_lossy(&mailq.stdout).into_owned();
        let delivered: Vec<PathBuf> = fs::read_dir(&new)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        if !delivered.is_empty()
            && listed.contains(r#""address": "bob@remote.example", "status": "deferred""#)
        {
            break (delivered, listed);
        }
        assert!(
            Instant::now() < deadline,
            "not delivered and queued in time: maildir {delivered:?}, queue {listed}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let message = fs::read_to_string(&delivered[0]).unwrap();
    assert!(message.contains("Subject: installed"), "{message}");
    assert!(message.contains("through the sendmail link"), "{message}");
    // Queued once (the pass sendmail started and ours ran at the same time), delivered
    // once; the remote copy waits in the queue (the test DNS server is a closed port).
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert!(
        listed.contains(r#""address": "alice@mx.test", "status": "delivered""#),
        "{listed}"
    );

    let out = Command::new(sbin.join("newaliases"))
        .env("POSTLING_CONFIG", &config)
        .output()
        .unwrap();
    assert!(out.status.success(), "newaliases: {}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 aliases"));

    // A second install keeps the configuration, edited or not.
    let conf = d.join("etc/postling.conf");
    fs::write(&conf, fs::read_to_string(&conf).unwrap() + "# edited\n").unwrap();
    let out = make("install", d);
    assert!(String::from_utf8_lossy(&out.stdout).contains("kept the existing"));
    assert!(fs::read_to_string(&conf).unwrap().ends_with("# edited\n"));
    // Uninstall then keeps the edited configuration and nothing else.
    let out = make("uninstall", d);
    assert!(String::from_utf8_lossy(&out.stdout).contains("(edited)"));
    assert_eq!(files(d), ["etc/postling.conf"]);
    assert!(!spool.exists(), "the empty spool is removed");

    // From scratch: install + uninstall leaves no file behind.
    fs::remove_file(&conf).unwrap();
    make("install", d);
    assert_eq!(files(d), INSTALLED);
    make("uninstall", d);
    assert_eq!(files(d), Vec::<String>::new());
}

#[test]
fn uninstall_keeps_what_is_not_postlings() {
    let dest = TempDir::new("uninstall");
    let d = dest.path();
    make("install", d);
    // Another MTA took mailq over meanwhile, and the spool holds mail.
    let mailq = d.join("usr/sbin/mailq");
    fs::remove_file(&mailq).unwrap();
    std::os::unix::fs::symlink("/usr/bin/other-mta", &mailq).unwrap();
    fs::create_dir(d.join("var/spool/postling/msg")).unwrap();
    let out = make("uninstall", d);
    assert!(String::from_utf8_lossy(&out.stdout).contains("not empty"));
    assert_eq!(files(d), ["usr/sbin/mailq"]);
    assert!(d.join("var/spool/postling/msg").is_dir());
}

#[test]
fn systemd_unit_verifies() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: systemd-analyze is not installed");
        return;
    }
    // The unit as installed by hand beside a staged `make install`: ExecStart
    // pointing at the staged binary (systemd-analyze checks that it is executable)
    // and man pointed at the staged man pages (it checks Documentation= too).
    let dest = TempDir::new("unit");
    let d = dest.path();
    make("install", d);
    let unit = fs::read_to_string(repo().join("etc/postling.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/sbin/postling serve"));
    let staged = d.join("usr/sbin/postling");
    let unit = unit.replace("/usr/local/sbin/postling", &staged.display().to_string());
    let path = d.join("postling.service");
    fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .env("MANPATH", d.join("usr/share/man"))
        .env("SYSTEMD_LOG_LEVEL", "notice")
        .output()
        .unwrap();
    let all = text(&out);
    assert!(out.status.success(), "systemd-analyze verify: {all}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("postling.service"),
        "systemd-analyze complains: {all}"
    );
}

/// Kills the daemon the init script started if the test fails halfway.
struct PidFile(PathBuf);

impl Drop for PidFile {
    fn drop(&mut self) {
        if let Ok(pid) = fs::read_to_string(&self.0) {
            if let Ok(pid) = pid.trim().parse::<i32>() {
                // SAFETY: plain kill(2) on a pid the test started.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

fn banner(port: u16) -> Option<String> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[test]
fn sysvinit_script_starts_reloads_and_stops_the_daemon() {
    let work = TempDir::new("initd");
    let w = work.path();
    let port = free_port();
    let config = test_config(w, port);
    let pidfile = w.join("postling.pid");
    let _guard = PidFile(pidfile.clone());
    let script = repo().join("etc/init.d/postling");
    assert_eq!(
        mode(&script) & 0o111,
        0o111,
        "the init script is executable"
    );
    let run = |action: &str| {
        Command::new(&script)
            .arg(action)
            .env("DAEMON", bin())
            .env("CONF", &config)
            .env("PIDFILE", &pidfile)
            .env("LOGFILE", w.join("postling.log"))
            .env("DEFAULTS", w.join("no-defaults"))
            .output()
            .unwrap()
    };

    let out = run("status");
    assert_eq!(
        out.status.code(),
        Some(3),
        "status before start: {}",
        text(&out)
    );
    let out = run("start");
    assert!(out.status.success(), "start: {}", text(&out));
    let b = banner(port).expect("the daemon answers");
    assert!(b.starts_with("220 mx.test"), "{b}");
    let out = run("status");
    assert_eq!(out.status.code(), Some(0), "status: {}", text(&out));
    let out = run("start");
    assert!(String::from_utf8_lossy(&out.stdout).contains("already running"));
    let out = run("reload");
    assert!(out.status.success(), "reload: {}", text(&out));
    let out = run("stop");
    assert!(out.status.success(), "stop: {}", text(&out));
    assert!(!pidfile.exists());
    assert!(banner(port).is_none(), "still listening after stop");
    let out = run("status");
    assert_eq!(
        out.status.code(),
        Some(3),
        "status after stop: {}",
        text(&out)
    );
    let log = fs::read_to_string(w.join("postling.log")).unwrap();
    assert!(log.contains("reloaded"), "{log}");
    assert!(log.contains("stopped"), "{log}");

    // A broken configuration is refused before anything starts.
    fs::write(&config, "bogus = 1\n").unwrap();
    let out = run("start");
    assert_eq!(
        out.status.code(),
        Some(6),
        "start with a bad config: {}",
        text(&out)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown key 'bogus'"));
    assert!(!pidfile.exists());
}

#[test]
fn openwrt_script_runs_serve_under_procd() {
    // procd's shell functions replaced by stand-ins that print their arguments.
    let work = TempDir::new("procd");
    let config = test_config(work.path(), free_port());
    let script = repo().join("etc/openwrt/postling.init");
    let harness = format!(
        "procd_open_instance() {{ echo open; }}\n\
         procd_set_param() {{ echo \"param $*\"; }}\n\
         procd_close_instance() {{ echo close; }}\n\
         procd_send_signal() {{ echo \"signal $*\"; }}\n\
         . '{}'\n\
         [ \"$USE_PROCD\" = 1 ] || exit 9\n\
         PROG='{}' CONF='{}'\n\
         start_service && reload_service\n",
        script.display(),
        bin(),
        config.display()
    );
    let out = Command::new("sh").arg("-c").arg(&harness).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "param command {} serve -c {}",
            bin(),
            config.display()
        )),
        "{stdout}"
    );
    assert!(stdout.contains("param reload_signal HUP"), "{stdout}");
    assert!(stdout.contains("signal postling * HUP"), "{stdout}");
    assert!(
        stdout.starts_with("open\n") && stdout.contains("close\n"),
        "{stdout}"
    );
    // The shipped paths are those of an OpenWrt install.
    let text = fs::read_to_string(&script).unwrap();
    assert!(text.starts_with("#!/bin/sh /etc/rc.common\n"));
    assert!(text.contains("PROG=/usr/sbin/postling\n"));
}

#[test]
fn crontab_line_is_a_valid_flush() {
    let crontab = fs::read_to_string(repo().join("etc/crontab")).unwrap();
    let jobs: Vec<&str> = crontab
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#') && !l.contains('='))
        .collect();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let fields: Vec<&str> = jobs[0].split_whitespace().collect();
    // m h dom mon dow user command...
    assert_eq!(&fields[..6], ["*/5", "*", "*", "*", "*", "root"]);
    assert_eq!(
        fields[6], "/usr/local/sbin/postling",
        "make install's default path"
    );
    assert!(crontab.contains("\nRUST_LOG=warn\n"));
    // The same arguments work on a real spool, quietly at RUST_LOG=warn.
    let work = TempDir::new("cron");
    let config = test_config(work.path(), free_port());
    let args: Vec<String> = fields[7..]
        .iter()
        .map(|a| {
            if *a == "/etc/postling.conf" {
                config.display().to_string()
            } else {
                a.to_string()
            }
        })
        .collect();
    let out = Command::new(bin())
        .args(&args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {}", text(&out));
    assert!(
        out.stdout.is_empty() && out.stderr.is_empty(),
        "{}",
        text(&out)
    );
}

#[test]
fn container_files_fit_together() {
    let cf = fs::read_to_string(repo().join("etc/Containerfile")).unwrap();
    assert!(cf.contains("\nFROM scratch\n"));
    assert!(cf.contains("\nEXPOSE 25 587 465\n"));
    assert!(cf.contains("VOLUME [\"/var/spool/postling\""));
    assert!(cf.contains("COPY ${BIN} /postling\n"));
    assert!(cf.contains("ARG BIN=target/x86_64-unknown-linux-musl/release/postling\n"));
    // Every other COPY source exists and is let through the ignore file.
    let ignore = fs::read_to_string(repo().join("etc/Containerfile.dockerignore")).unwrap();
    for line in cf.lines().filter(|l| l.starts_with("COPY ")) {
        let src = line.split_whitespace().nth(1).unwrap();
        if src == "${BIN}" {
            continue;
        }
        assert!(repo().join(src).exists(), "COPY source {src} missing");
        let src = src.trim_end_matches('/');
        assert!(ignore.contains(&format!("!{src}\n")), "{src} is ignored");
    }
    let root = repo().join("etc/container");
    for link in ["usr/sbin/sendmail", "usr/sbin/newaliases", "usr/bin/mailq"] {
        assert_eq!(
            fs::read_link(root.join(link)).unwrap(),
            Path::new("/postling"),
            "{link}"
        );
    }
    let passwd = fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert!(passwd.lines().any(|l| l.starts_with("postling:x:")));
    // The image's configuration is valid and names that user, the image's volumes
    // and the exposed smtp port.
    let config = root.join("etc/postling.conf");
    let out = Command::new(bin())
        .arg("check")
        .arg("-c")
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let effective = String::from_utf8_lossy(&out.stdout);
    for line in [
        "user = postling",
        "spool = /var/spool/postling",
        "mail_dir = /var/mail",
        "listen = 0.0.0.0:25 smtp",
    ] {
        assert!(effective.contains(line), "{line} not in\n{effective}");
    }
    // Loopback relay only: no warning about it.
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("relay"),
        "{}",
        text(&out)
    );
}
