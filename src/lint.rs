//! Warnings about dangerous but valid settings, printed by `postling check` as
//! `postling: warning: …` lines (the exit code stays 0: the configuration works, it is
//! just risky).
//!
//! [`warnings`] is a pure function of the [`Config`] and of a few facts about the file
//! system ([`FsFacts`]), so every rule is unit-tested without touching the machine;
//! [`FsFacts::gather`] reads those facts for real.
//!
//! The rules:
//! - an open relay: `relay_from` names a network beyond loopback while an `smtp`
//!   listener is reachable from beyond loopback (`submission`/`submissions` require
//!   AUTH whatever `relay_from` says, so they do not count). A network with public
//!   addresses (`0.0.0.0/0`, `::/0`, …) is an open relay; a private one (RFC 1918,
//!   CGNAT, link-local, ULA) is a LAN relay, worth a reminder since every host there
//!   (and anything that compromises one) can send mail as this server;
//! - `auth_without_tls = yes` (passwords in clear text);
//! - `smarthost_verify = no` with a smarthost over TLS (anyone on the path can pose as
//!   the smarthost and collect the mail and the `smarthost_auth` password);
//! - `smarthost_tls = none` with `smarthost_auth` (the password crosses in clear text);
//! - `users`, `smarthost_auth` or `tls_key` readable by every user;
//! - the spool on tmpfs or ramfs: `250` promises the message is on disk, and a reboot
//!   or power cut would lose the queue.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use crate::config::{Config, Network, Role, SmarthostTls};

/// `statfs.f_type` of tmpfs (linux/magic.h `TMPFS_MAGIC`).
pub const TMPFS_MAGIC: u64 = 0x0102_1994;
/// `statfs.f_type` of ramfs (linux/magic.h `RAMFS_MAGIC`).
pub const RAMFS_MAGIC: u64 = 0x8584_58f6;

/// What [`warnings`] needs to know about the file system.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FsFacts {
    /// Permission bits (`st_mode & 0o7777`) of the files the configuration names as
    /// secret (`users`, `smarthost_auth`, `tls_key`); a file missing here could not be
    /// examined and gets no warning (`check` reports unreadable files itself).
    pub modes: Vec<(PathBuf, u32)>,
    /// `statfs.f_type` of the spool, or of its nearest existing parent when the spool
    /// is not created yet; `None` when even that failed.
    pub spool_fs_type: Option<u64>,
}

impl FsFacts {
    /// Read the facts for `config` from the real file system.
    pub fn gather(config: &Config) -> FsFacts {
        use std::os::unix::fs::PermissionsExt;
        let modes = secret_files(config)
            .into_iter()
            .filter_map(|(_, path)| {
                let meta = std::fs::metadata(path).ok()?;
                Some((path.to_path_buf(), meta.permissions().mode() & 0o7777))
            })
            .collect();
        FsFacts {
            modes,
            spool_fs_type: fs_type_of_nearest(&config.spool),
        }
    }

    fn mode_of(&self, path: &Path) -> Option<u32> {
        self.modes.iter().find(|(p, _)| p == path).map(|&(_, m)| m)
    }
}

/// The keys naming files that must stay private, with their paths.
fn secret_files(config: &Config) -> Vec<(&'static str, &Path)> {
    [
        ("users", &config.users),
        ("smarthost_auth", &config.smarthost_auth),
        ("tls_key", &config.tls_key),
    ]
    .into_iter()
    .filter_map(|(key, path)| path.as_deref().map(|p| (key, p)))
    .collect()
}

/// `statfs(2)` of `path`, or of the nearest parent that exists.
fn fs_type_of_nearest(path: &Path) -> Option<u64> {
    // A relative spool is relative to the current directory.
    let mut p = if path.is_relative() {
        std::env::current_dir().ok()?.join(path)
    } else {
        path.to_path_buf()
    };
    loop {
        if let Some(t) = statfs_type(&p) {
            return Some(t);
        }
        if !p.pop() {
            return None;
        }
    }
}

fn statfs_type(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statfs is plain old data, so all-zero is a valid value for it.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid NUL-terminated path and a valid out pointer.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    // The field's type differs between libcs and word sizes (i64, u64, u32); the
    // magic numbers are below 2^32, so sign extension never matters.
    #[allow(clippy::unnecessary_cast)]
    Some(st.f_type as u64 & 0xffff_ffff)
}

/// Every warning for this configuration, one line each, without a prefix.
pub fn warnings(config: &Config, fs: &FsFacts) -> Vec<String> {
    let mut out = Vec::new();
    relay_warnings(config, &mut out);
    if config.auth_without_tls {
        out.push(
            "auth_without_tls = yes: passwords may be sent in clear text on connections \
             without TLS (only for testing on loopback)"
                .to_string(),
        );
    }
    if let Some(host) = &config.smarthost {
        match config.smarthost_tls {
            SmarthostTls::None => {
                if config.smarthost_auth.is_some() {
                    out.push(format!(
                        "smarthost_tls = none with smarthost_auth: the smarthost password \
                         and all mail cross to {} in clear text",
                        host.host
                    ));
                }
            }
            SmarthostTls::StartTls | SmarthostTls::Tls => {
                if !config.smarthost_verify {
                    out.push(format!(
                        "smarthost_verify = no: the certificate of {} is not checked; \
                         anyone on the path can pose as it and collect the mail{}",
                        host.host,
                        if config.smarthost_auth.is_some() {
                            " and the smarthost_auth password"
                        } else {
                            ""
                        }
                    ));
                }
            }
        }
    }
    for (key, path) in secret_files(config) {
        if let Some(mode) = fs.mode_of(path) {
            if mode & 0o004 != 0 {
                out.push(format!(
                    "{key} = {}: the file is readable by every user (mode {mode:04o}); \
                     chmod o-r it",
                    path.display()
                ));
            }
        }
    }
    match fs.spool_fs_type {
        Some(TMPFS_MAGIC) | Some(RAMFS_MAGIC) => out.push(format!(
            "spool = {}: the spool is on a RAM file system (tmpfs); queued mail is lost \
             at a reboot or power cut although every 250 promised it was on disk",
            config.spool.display()
        )),
        _ => {}
    }
    out
}

fn relay_warnings(config: &Config, out: &mut Vec<String>) {
    let exposed: Vec<String> = config
        .listen
        .iter()
        .filter(|l| l.role == Role::Smtp && !is_loopback_ip(l.addr.ip()))
        .map(|l| l.addr.to_string())
        .collect();
    if exposed.is_empty() {
        return;
    }
    let listeners = format!(
        "{} {}",
        if exposed.len() == 1 {
            "listener"
        } else {
            "listeners"
        },
        exposed.join(", ")
    );
    for net in &config.relay_from {
        if is_loopback_net(net) {
            continue;
        }
        let shown = render(net);
        if is_private_net(net) {
            out.push(format!(
                "relay_from = {shown}: every host of this network may relay to any domain \
                 without AUTH through the smtp {listeners}; make sure that is \
                 only your own LAN"
            ));
        } else {
            out.push(format!(
                "open relay: relay_from = {shown} includes public addresses, which may \
                 relay to any domain without AUTH through the smtp {listeners}; \
                 spammers find open relays within hours (list only loopback and your own \
                 LAN; remote users should use submission with AUTH)"
            ));
        }
    }
}

fn render(n: &Network) -> String {
    let full = if n.addr.is_ipv4() { 32 } else { 128 };
    if n.prefix == full {
        n.addr.to_string()
    } else {
        format!("{}/{}", n.addr, n.prefix)
    }
}

/// A listener address only loopback clients can reach (`0.0.0.0` and `::` are every
/// address, so they are not).
fn is_loopback_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// `inner` lies entirely inside `outer`.
fn within(inner: &Network, outer: &Network) -> bool {
    inner.addr.is_ipv4() == outer.addr.is_ipv4()
        && inner.prefix >= outer.prefix
        && outer.contains(inner.addr)
}

fn v4(a: u8, b: u8, prefix: u8) -> Network {
    Network {
        addr: IpAddr::V4(Ipv4Addr::new(a, b, 0, 0)),
        prefix,
    }
}

fn v6(first: u16, prefix: u8) -> Network {
    Network {
        addr: IpAddr::V6(Ipv6Addr::new(first, 0, 0, 0, 0, 0, 0, 0)),
        prefix,
    }
}

/// IPv4 networks as IPv4-mapped IPv6 (`::ffff:a.b.c.d/96+n`) are judged as IPv4.
fn unmap(n: &Network) -> Network {
    match n.addr {
        IpAddr::V6(a) if n.prefix >= 96 => match a.to_ipv4_mapped() {
            Some(v4) => Network {
                addr: IpAddr::V4(v4),
                prefix: n.prefix - 96,
            },
            None => *n,
        },
        _ => *n,
    }
}

fn is_loopback_net(n: &Network) -> bool {
    let n = unmap(n);
    let loopback6 = Network {
        addr: IpAddr::V6(Ipv6Addr::LOCALHOST),
        prefix: 128,
    };
    within(&n, &v4(127, 0, 8)) || within(&n, &loopback6)
}

/// Inside one of the non-routable ranges a LAN uses.
fn is_private_net(n: &Network) -> bool {
    let n = unmap(n);
    [
        v4(10, 0, 8),     // RFC 1918
        v4(172, 16, 12),  // RFC 1918
        v4(192, 168, 16), // RFC 1918
        v4(100, 64, 10),  // RFC 6598 shared address space (CGNAT)
        v4(169, 254, 16), // RFC 3927 link-local
        v6(0xfc00, 7),    // RFC 4193 unique local
        v6(0xfe80, 10),   // link-local
        v4(127, 0, 8),    // loopback (handled before, harmless here)
    ]
    .iter()
    .any(|outer| within(&n, outer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    fn config(text: &str) -> Config {
        let base = "hostname = mx.example.org\n";
        parse(Path::new("test.conf"), &format!("{base}{text}")).expect("valid config")
    }

    /// The warnings for `text`, each reduced to its first words (enough to tell them
    /// apart without pinning every word of the advice).
    fn starts(text: &str, fs: &FsFacts) -> Vec<String> {
        warnings(&config(text), fs)
            .into_iter()
            .map(|w| w.split(':').next().unwrap_or_default().to_string())
            .collect()
    }

    #[test]
    fn relay_rules() {
        let public = "listen = 0.0.0.0:25 smtp\n";
        let cases: &[(&str, &[&str])] = &[
            // The shipped defaults: loopback only.
            ("", &[]),
            (public, &[]),
            ("relay_from = 127.0.0.1/8, ::1\nlisten = [::]:25 smtp\n", &[]),
            ("relay_from = 127.0.0.5\nlisten = 192.0.2.1:25\n", &[]),
            ("relay_from = ::ffff:127.0.0.0/104\nlisten = [::]:25\n", &[]),
            // Wide open, from any listener reachable from outside.
            ("relay_from = 0.0.0.0/0\nlisten = 0.0.0.0:25\n", &["open relay"]),
            ("relay_from = ::/0\nlisten = [::]:25\n", &["open relay"]),
            ("relay_from = 0.0.0.0/0\nlisten = 192.0.2.1:2525\n", &["open relay"]),
            ("relay_from = 198.51.100.0/24\nlisten = [::]:25\n", &["open relay"]),
            ("relay_from = 2001:db8::/32\nlisten = [::]:25\n", &["open relay"]),
            ("relay_from = ::ffff:0.0.0.0/96\nlisten = [::]:25\n", &["open relay"]),
            // 127.0.0.0/7 reaches past loopback.
            ("relay_from = 127.0.0.0/7\nlisten = 0.0.0.0:25\n", &["open relay"]),
            (
                "relay_from = 0.0.0.0/0, ::/0\nlisten = 0.0.0.0:25\n",
                &["open relay", "open relay"],
            ),
            // A LAN: a reminder, not "open relay".
            (
                "relay_from = 127.0.0.1/8, 192.168.1.0/24\nlisten = 0.0.0.0:25\n",
                &["relay_from = 192.168.1.0/24"],
            ),
            (
                "relay_from = fd00::/8\nlisten = [::]:25\n",
                &["relay_from = fd00"],
            ),
            // 10.0.0.0/7 is wider than 10/8.
            ("relay_from = 10.0.0.0/7\nlisten = 0.0.0.0:25\n", &["open relay"]),
            // Only loopback listeners: nobody outside can connect.
            ("relay_from = 0.0.0.0/0\nlisten = 127.0.0.1:25\n", &[]),
            ("relay_from = 0.0.0.0/0\nlisten = [::1]:25\n", &[]),
            // Submission requires AUTH whatever relay_from says.
            (
                "relay_from = 0.0.0.0/0\nlisten = 127.0.0.1:25 smtp\nlisten = 0.0.0.0:587 submission\n",
                &[],
            ),
        ];
        for (text, want) in cases {
            let got = starts(text, &FsFacts::default());
            assert_eq!(&got, want, "config:\n{text}");
        }
    }

    #[test]
    fn setting_rules() {
        let cases: &[(&str, &[&str])] = &[
            ("auth_without_tls = no\n", &[]),
            ("auth_without_tls = yes\n", &["auth_without_tls = yes"]),
            // smarthost_verify matters only with a smarthost spoken to over TLS.
            ("smarthost_verify = no\n", &[]),
            ("smarthost = relay.example.net\n", &[]),
            (
                "smarthost = relay.example.net\nsmarthost_verify = no\n",
                &["smarthost_verify = no"],
            ),
            (
                "smarthost = relay.example.net\nsmarthost_tls = tls\nsmarthost_verify = no\n",
                &["smarthost_verify = no"],
            ),
            (
                "smarthost = relay.example.net\nsmarthost_tls = none\nsmarthost_verify = no\n",
                &[],
            ),
            (
                "smarthost = relay.example.net\nsmarthost_tls = none\nsmarthost_auth = /etc/s\n",
                &["smarthost_tls = none with smarthost_auth"],
            ),
            (
                "auth_without_tls = yes\nsmarthost = r.example.net\nsmarthost_verify = no\n",
                &["auth_without_tls = yes", "smarthost_verify = no"],
            ),
        ];
        for (text, want) in cases {
            assert_eq!(&starts(text, &FsFacts::default()), want, "config:\n{text}");
        }
    }

    #[test]
    fn file_rules() {
        let text = "users = /etc/u\nsmarthost = r.example.net\nsmarthost_auth = /etc/s\n\
                    tls_cert = /etc/c\ntls_key = /etc/k\nspool = /var/spool/p\n";
        let facts = |modes: &[(&str, u32)], fs_type: Option<u64>| FsFacts {
            modes: modes.iter().map(|&(p, m)| (PathBuf::from(p), m)).collect(),
            spool_fs_type: fs_type,
        };
        const EXT4: u64 = 0xef53;
        let cases: &[(FsFacts, &[&str])] = &[
            (facts(&[], None), &[]),
            (
                facts(
                    &[("/etc/u", 0o600), ("/etc/s", 0o640), ("/etc/k", 0o400)],
                    Some(EXT4),
                ),
                &[],
            ),
            (facts(&[("/etc/u", 0o644)], None), &["users = /etc/u"]),
            (
                facts(&[("/etc/s", 0o604)], None),
                &["smarthost_auth = /etc/s"],
            ),
            (facts(&[("/etc/k", 0o444)], None), &["tls_key = /etc/k"]),
            // The certificate is public: no warning.
            (facts(&[("/etc/c", 0o644)], None), &[]),
            (
                facts(&[("/etc/u", 0o604), ("/etc/k", 0o664)], None),
                &["users = /etc/u", "tls_key = /etc/k"],
            ),
            (facts(&[], Some(TMPFS_MAGIC)), &["spool = /var/spool/p"]),
            (facts(&[], Some(RAMFS_MAGIC)), &["spool = /var/spool/p"]),
        ];
        for (fs, want) in cases {
            assert_eq!(&starts(text, fs), want, "facts: {fs:?}");
        }
    }

    #[test]
    fn messages_name_the_setting_and_the_listener() {
        let w = warnings(
            &config("relay_from = 0.0.0.0/0\nlisten = 0.0.0.0:25\n"),
            &FsFacts::default(),
        );
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("relay_from = 0.0.0.0/0"), "{}", w[0]);
        assert!(w[0].contains("0.0.0.0:25"), "{}", w[0]);
        assert!(!w[0].contains('\n'));
    }

    #[test]
    fn gather_reads_modes_and_the_spool_fs() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("postling-lint-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let users = dir.join("users");
        std::fs::write(&users, "").unwrap();
        std::fs::set_permissions(&users, std::fs::Permissions::from_mode(0o644)).unwrap();
        let c = config(&format!(
            "users = {}\nspool = {}/not/yet/there\n",
            users.display(),
            dir.display()
        ));
        let facts = FsFacts::gather(&c);
        assert_eq!(facts.modes, vec![(users.clone(), 0o644)]);
        // The spool does not exist: its nearest parent's file system is used.
        assert_eq!(facts.spool_fs_type, statfs_type(&dir));
        assert!(facts.spool_fs_type.is_some());
        let w = warnings(&c, &facts);
        assert!(w.iter().any(|w| w.starts_with("users = ")), "{w:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
