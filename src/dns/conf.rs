//! `/etc/resolv.conf` and `/etc/hosts`, parsed from strings (the caller reads the files,
//! so tests never depend on the machine's own), plus the retransmission schedule.
//!
//! Invariants:
//! - [`ResolvConf::parse`] never fails: unknown or malformed lines are skipped, as the
//!   libc stub resolver does, and the result always has at least one server (the local
//!   one, per resolv.conf(5), when none is listed), `1 <= attempts <= 5` and
//!   `1s <= timeout <= 30s`.
//! - [`Hosts`] keys are lower-case and carry no trailing dot; lookups normalise the same
//!   way, so matching is case-insensitive as DNS names are (RFC 4343).
//! - [`schedule`] is a pure function: the same inputs give the same list of tries.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// resolv.conf(5): at most three `nameserver` lines are used (MAXNS).
pub const MAX_NAMESERVERS: usize = 3;
/// resolv.conf(5): `timeout:n` defaults to 5 seconds and is capped at 30.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
pub const MAX_TIMEOUT: Duration = Duration::from_secs(30);
/// resolv.conf(5): `attempts:n` defaults to 2 and is capped at 5.
pub const DEFAULT_ATTEMPTS: u32 = 2;
pub const MAX_ATTEMPTS: u32 = 5;
/// RFC 1035 §4.2.1: the DNS port, for both UDP and TCP.
pub const DNS_PORT: u16 = 53;

/// The stub-resolver settings: where to send queries and how long to wait.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvConf {
    pub servers: Vec<SocketAddr>,
    /// Time to wait for an answer from one server in the first round; later rounds
    /// double it (see [`schedule`]).
    pub timeout: Duration,
    /// Rounds over the whole server list.
    pub attempts: u32,
    /// `options rotate`: spread queries over the servers instead of always asking the
    /// first one first.
    pub rotate: bool,
}

impl Default for ResolvConf {
    fn default() -> Self {
        ResolvConf {
            servers: vec![SocketAddr::from(([127, 0, 0, 1], DNS_PORT))],
            timeout: DEFAULT_TIMEOUT,
            attempts: DEFAULT_ATTEMPTS,
            rotate: false,
        }
    }
}

impl ResolvConf {
    /// Parse resolv.conf text. `search`, `domain`, `sortlist` and unknown options are
    /// ignored: an MTA resolves fully qualified names only (RFC 5321 §2.3.5 forbids
    /// unqualified names on the wire, so a search list would only invent destinations).
    pub fn parse(text: &str) -> ResolvConf {
        let mut conf = ResolvConf {
            servers: Vec::new(),
            ..ResolvConf::default()
        };
        for line in text.lines() {
            // resolv.conf(5): `;` or `#` in the first column starts a comment; glibc also
            // accepts them after a value, so strip from either.
            let line = match line.find(['#', ';']) {
                Some(i) => &line[..i],
                None => line,
            };
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    if let Some(addr) = words.next().and_then(parse_nameserver) {
                        if conf.servers.len() < MAX_NAMESERVERS {
                            conf.servers.push(addr);
                        }
                    }
                }
                Some("options") => {
                    for opt in words {
                        conf.apply_option(opt);
                    }
                }
                _ => {}
            }
        }
        if conf.servers.is_empty() {
            // resolv.conf(5): "If no nameserver entries are present, the default is to
            // use the name server on the local machine."
            conf.servers = ResolvConf::default().servers;
        }
        conf
    }

    fn apply_option(&mut self, opt: &str) {
        if opt == "rotate" {
            self.rotate = true;
        } else if let Some(n) = opt.strip_prefix("timeout:") {
            if let Ok(n) = n.parse::<u64>() {
                self.timeout = Duration::from_secs(n.max(1)).min(MAX_TIMEOUT);
            }
        } else if let Some(n) = opt.strip_prefix("attempts:") {
            if let Ok(n) = n.parse::<u32>() {
                self.attempts = n.clamp(1, MAX_ATTEMPTS);
            }
        }
    }
}

/// A `nameserver` value: an IPv4 or IPv6 address, always port 53. A scoped IPv6
/// address (`fe80::1%eth0`) is skipped: resolving the interface name needs
/// `if_nametoindex`, and a link-local resolver is rare enough on the hosts we target.
fn parse_nameserver(s: &str) -> Option<SocketAddr> {
    s.parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, DNS_PORT))
}

/// One try in a query's retransmission schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Try {
    /// Index into the server list.
    pub server: usize,
    /// How long to wait for this server's answer.
    pub timeout: Duration,
}

/// The tries for one query: `attempts` rounds over `servers` servers, starting at
/// `start` (rotation), each round waiting twice as long as the one before (exponential
/// back-off, RFC 1035 §4.2.1 leaves the policy to the resolver; doubling is what BIND's
/// and glibc's stubs do), each wait capped at [`MAX_TIMEOUT`].
pub fn schedule(servers: usize, attempts: u32, timeout: Duration, start: usize) -> Vec<Try> {
    let mut tries = Vec::new();
    if servers == 0 {
        return tries;
    }
    for round in 0..attempts.min(MAX_ATTEMPTS) {
        let wait = timeout.saturating_mul(1 << round).min(MAX_TIMEOUT);
        for i in 0..servers {
            tries.push(Try {
                server: (start + i) % servers,
                timeout: wait,
            });
        }
    }
    tries
}

/// `/etc/hosts`: name → addresses, in file order (IPv6 and IPv4 together).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hosts {
    map: HashMap<String, Vec<IpAddr>>,
}

impl Hosts {
    /// Parse hosts(5) text: `ADDRESS NAME [ALIAS...]`, `#` comments. Lines whose first
    /// word is not an IP address are skipped.
    pub fn parse(text: &str) -> Hosts {
        let mut map: HashMap<String, Vec<IpAddr>> = HashMap::new();
        for line in text.lines() {
            let line = match line.find('#') {
                Some(i) => &line[..i],
                None => line,
            };
            let mut words = line.split_whitespace();
            let Some(ip) = words.next().and_then(|w| w.parse::<IpAddr>().ok()) else {
                continue;
            };
            for name in words {
                let addrs = map.entry(normalise(name)).or_default();
                if !addrs.contains(&ip) {
                    addrs.push(ip);
                }
            }
        }
        Hosts { map }
    }

    /// The addresses listed for `name`, if any.
    pub fn get(&self, name: &str) -> Option<&[IpAddr]> {
        self.map.get(&normalise(name)).map(Vec::as_slice)
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Lower-case, without the trailing dot of an absolute name.
pub fn normalise(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn resolv_conf() {
        // (text, servers, timeout seconds, attempts, rotate)
        const CASES: &[(&str, &[&str], u64, u32, bool)] = &[
            ("", &["127.0.0.1:53"], 5, 2, false),
            ("nameserver 192.0.2.1\n", &["192.0.2.1:53"], 5, 2, false),
            (
                "# comment\nsearch example.com\nnameserver 192.0.2.1\nnameserver ::1\n",
                &["192.0.2.1:53", "[::1]:53"],
                5,
                2,
                false,
            ),
            // At most three servers (MAXNS); bad and scoped addresses skipped.
            (
                "nameserver a.b.c\nnameserver fe80::1%eth0\nnameserver 192.0.2.1\n\
                 nameserver 192.0.2.2\nnameserver 192.0.2.3\nnameserver 192.0.2.4\n",
                &["192.0.2.1:53", "192.0.2.2:53", "192.0.2.3:53"],
                5,
                2,
                false,
            ),
            (
                "options timeout:1 attempts:3 rotate ndots:2\nnameserver 192.0.2.1 ; x\n",
                &["192.0.2.1:53"],
                1,
                3,
                true,
            ),
            // Caps and floors; garbage values ignored.
            (
                "options timeout:99 attempts:9\n",
                &["127.0.0.1:53"],
                30,
                5,
                false,
            ),
            (
                "options timeout:0 attempts:0\n",
                &["127.0.0.1:53"],
                1,
                1,
                false,
            ),
            (
                "options timeout:x attempts:-1\n",
                &["127.0.0.1:53"],
                5,
                2,
                false,
            ),
            (
                "; nameserver 192.0.2.9\n#nameserver 192.0.2.8\n",
                &["127.0.0.1:53"],
                5,
                2,
                false,
            ),
        ];
        for &(text, servers, timeout, attempts, rotate) in CASES {
            let c = ResolvConf::parse(text);
            let want: Vec<SocketAddr> = servers.iter().map(|s| sa(s)).collect();
            assert_eq!(c.servers, want, "{text:?}");
            assert_eq!(c.timeout, Duration::from_secs(timeout), "{text:?}");
            assert_eq!(c.attempts, attempts, "{text:?}");
            assert_eq!(c.rotate, rotate, "{text:?}");
        }
    }

    #[test]
    fn hosts() {
        let h = Hosts::parse(
            "127.0.0.1 localhost\n::1 localhost ip6-localhost\n\
             # 192.0.2.9 commented.example\n\
             192.0.2.1 Relay.Example.  relay # the smarthost\n\
             2001:db8::1 relay.example\nbogus line here\n192.0.2.1 relay.example\n",
        );
        // (name, addresses)
        const CASES: &[(&str, &[&str])] = &[
            ("localhost", &["127.0.0.1", "::1"]),
            ("relay.example", &["192.0.2.1", "2001:db8::1"]),
            ("RELAY.example.", &["192.0.2.1", "2001:db8::1"]),
            ("relay", &["192.0.2.1"]),
            ("commented.example", &[]),
            ("line", &[]),
        ];
        for &(name, addrs) in CASES {
            let want: Vec<IpAddr> = addrs.iter().map(|a| a.parse().expect("ip")).collect();
            assert_eq!(h.get(name).unwrap_or(&[]), &want[..], "{name}");
        }
    }

    #[test]
    fn schedule_rotates_and_backs_off() {
        let s = Duration::from_secs;
        // (servers, attempts, timeout, start, expected (server, seconds))
        type Case = (usize, u32, u64, usize, &'static [(usize, u64)]);
        const CASES: &[Case] = &[
            (0, 2, 5, 0, &[]),
            (1, 2, 5, 0, &[(0, 5), (0, 10)]),
            (2, 2, 5, 0, &[(0, 5), (1, 5), (0, 10), (1, 10)]),
            (2, 2, 5, 1, &[(1, 5), (0, 5), (1, 10), (0, 10)]),
            (3, 1, 1, 5, &[(2, 1), (0, 1), (1, 1)]),
            // Back-off is capped at 30 s.
            (1, 3, 20, 0, &[(0, 20), (0, 30), (0, 30)]),
        ];
        for &(n, attempts, timeout, start, want) in CASES {
            let got: Vec<(usize, u64)> = schedule(n, attempts, s(timeout), start)
                .iter()
                .map(|t| (t.server, t.timeout.as_secs()))
                .collect();
            assert_eq!(got, want, "{n} {attempts} {timeout} {start}");
        }
    }
}
