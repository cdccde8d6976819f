//! The resolver against real peers on loopback only: dnsmasq (MX, implicit MX, AAAA,
//! CNAME, NXDOMAIN, null MX, REFUSED), the `postling resolve` binary, and an in-test UDP/TCP
//! responder that misbehaves (garbage, truncation, wrong ID, wrong question, spoofed
//! source, silence). Every server address is 127.0.0.1; nothing reads the machine's
//! resolv.conf for its servers.
//!
//! dnsmasq is required: when it is missing the dnsmasq tests fail with a message saying
//! what to install (`make test` installs Debian's `dnsmasq-base`).

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use postling::dns::{HostResult, Hosts, MxHost, MxResult, ResolvConf, Resolver};
use simple_dns::rdata::{RData, A, MX};
use simple_dns::{Name, Packet, PacketFlag, ResourceRecord, CLASS, RCODE};

// ---------------------------------------------------------------------------------------
// Helpers

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

/// A resolver for `servers` with a short timeout and one attempt, no /etc/hosts.
fn resolver(servers: &[SocketAddr], timeout: Duration, attempts: u32) -> Resolver {
    Resolver::with_conf(
        ResolvConf {
            servers: servers.to_vec(),
            timeout,
            attempts,
            rotate: false,
        },
        Hosts::default(),
    )
}

/// A port free for both UDP and TCP on 127.0.0.1 right now.
fn free_port() -> u16 {
    for _ in 0..50 {
        let Ok(u) = UdpSocket::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(addr) = u.local_addr() else { continue };
        if TcpListener::bind(addr).is_ok() {
            return addr.port();
        }
    }
    panic!("no free port on 127.0.0.1");
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "postling-dns-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The records every dnsmasq test serves.
const ZONE: &[&str] = &[
    // Two MX hosts, preference order 10 then 20.
    "--mx-host=example.test,mx1.example.test,10",
    "--mx-host=example.test,mx2.example.test,20",
    "--host-record=mx1.example.test,127.0.0.2,::2",
    "--host-record=mx2.example.test,127.0.0.3",
    // No MX: implicit MX (RFC 5321 §5.1).
    "--host-record=plain.test,127.0.0.5,::5",
    // A CNAME, and an MX whose target is that CNAME.
    "--cname=alias.example.test,mx1.example.test",
    "--mx-host=cnamed.test,alias.example.test,5",
    // Null MX (RFC 7505).
    "--mx-host=null.test,.,0",
    // Authoritative for .test: unknown names get NXDOMAIN rather than REFUSED.
    "--local=/test/",
];

/// dnsmasq on a free 127.0.0.1 port, killed on drop.
struct Dnsmasq {
    child: Child,
    addr: SocketAddr,
}

impl Dnsmasq {
    fn start() -> Dnsmasq {
        let found = Command::new("dnsmasq")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        assert!(
            found,
            "dnsmasq is not installed: the DNS integration tests need it \
             (Debian: apt-get install dnsmasq-base; `make test` does this)"
        );
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new("dnsmasq")
                // Debug mode: foreground, no pid file, no change of user, log to stderr.
                .arg("--no-daemon")
                .arg("--conf-file=/dev/null")
                .arg("--no-resolv")
                .arg("--no-hosts")
                .arg(format!("--port={port}"))
                .arg("--listen-address=127.0.0.1")
                .arg("--bind-interfaces")
                .args(ZONE)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn dnsmasq");
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // port taken meanwhile: try another
                }
                let mut r = resolver(&[addr], Duration::from_millis(200), 1);
                if matches!(r.host("mx2.example.test"), HostResult::Found(_)) {
                    return Dnsmasq { child, addr };
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("dnsmasq did not start answering on 127.0.0.1");
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// dnsmasq: the library

#[test]
fn dnsmasq_mx_in_preference_order_with_addresses() {
    let d = Dnsmasq::start();
    let mut r = resolver(&[d.addr], Duration::from_secs(2), 2);
    let MxResult::Found(hosts) = r.mx("example.test") else {
        panic!("no MX for example.test");
    };
    let names: Vec<(&str, u16)> = hosts
        .iter()
        .map(|h| (h.name.as_str(), h.preference))
        .collect();
    assert_eq!(names, [("mx1.example.test", 10), ("mx2.example.test", 20)]);
    assert_eq!(hosts[0].addrs, [ip("::2"), ip("127.0.0.2")], "IPv6 first");
    assert_eq!(hosts[1].addrs, [ip("127.0.0.3")]);
    // Case and a trailing dot do not matter.
    assert_eq!(r.mx("Example.TEST."), MxResult::Found(hosts));
}

#[test]
fn dnsmasq_implicit_mx_aaaa_cname_nxdomain_null_refused() {
    let d = Dnsmasq::start();
    let mut r = resolver(&[d.addr], Duration::from_secs(2), 2);
    // (domain, expected result)
    let cases: Vec<(&str, MxResult)> = vec![
        (
            "plain.test",
            MxResult::Found(vec![MxHost {
                name: "plain.test".into(),
                preference: 0,
                addrs: vec![ip("::5"), ip("127.0.0.5")],
                implicit: true,
            }]),
        ),
        (
            "cnamed.test",
            MxResult::Found(vec![MxHost {
                name: "alias.example.test".into(),
                preference: 5,
                addrs: vec![ip("::2"), ip("127.0.0.2")],
                implicit: false,
            }]),
        ),
        ("nope.test", MxResult::NoSuchDomain),
        ("null.test", MxResult::NullMx),
    ];
    for (domain, want) in cases {
        assert_eq!(r.mx(domain), want, "{domain}");
    }
    // Outside --local=/test/ dnsmasq without upstreams says REFUSED: temporary.
    let MxResult::Temporary(reason) = r.mx("example.org") else {
        panic!("REFUSED must be temporary");
    };
    assert!(reason.contains("REFUSED"), "{reason}");
    // Host lookups: AAAA and A, through a CNAME; NXDOMAIN is NotFound.
    assert_eq!(
        r.host("alias.example.test"),
        HostResult::Found(vec![ip("::2"), ip("127.0.0.2")])
    );
    assert_eq!(
        r.host("mx2.example.test"),
        HostResult::Found(vec![ip("127.0.0.3")])
    );
    assert!(matches!(r.host("nope.test"), HostResult::NotFound(_)));
}

#[test]
fn dead_server_then_dnsmasq() {
    // The first server never answers (a bound socket that never reads); the second is
    // dnsmasq: the lookup moves on after the first server's timeout.
    let d = Dnsmasq::start();
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let silent_addr = silent.local_addr().expect("addr");
    let mut r = resolver(&[silent_addr, d.addr], Duration::from_millis(300), 1);
    let t = Instant::now();
    assert!(matches!(r.mx("example.test"), MxResult::Found(_)));
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}

// ---------------------------------------------------------------------------------------
// dnsmasq: the binary

fn write_config(dir: &Path, dns: SocketAddr, extra: &str) -> PathBuf {
    let conf = dir.join("postling.conf");
    std::fs::write(
        &conf,
        format!(
            "hostname = mx.test\nspool = {}/spool\nlisten = 127.0.0.1:1 smtp\ndns = {dns}\n{extra}",
            dir.display()
        ),
    )
    .expect("write config");
    conf
}

fn run_resolve(conf: &Path, domain: &str) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_postling"))
        .args(["resolve", "-c"])
        .arg(conf)
        .arg(domain)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run postling resolve");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn resolve_subcommand_prints_mx_hosts_and_addresses() {
    let d = Dnsmasq::start();
    let dir = TempDir::new("resolve");
    let conf = write_config(dir.path(), d.addr, "");
    let (code, out, err) = run_resolve(&conf, "example.test");
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with(&format!("; name servers {} (dns)", d.addr)),
        "{out}"
    );
    assert_eq!(
        &lines[1..],
        [
            "example.test: MX hosts in the order delivery tries them, port 25:",
            "  mx1.example.test (preference 10): ::2, 127.0.0.2",
            "  mx2.example.test (preference 20): 127.0.0.3",
        ],
        "{out}"
    );
    // (domain, exit code, a line of the output)
    let cases: &[(&str, i32, &str)] = &[
        (
            "postmaster@plain.test",
            0,
            "  plain.test: ::5, 127.0.0.5",
        ),
        ("nope.test", 69, "nope.test: no such domain (NXDOMAIN); delivery bounces"),
        (
            "null.test",
            69,
            "null.test: null MX (RFC 7505): the domain accepts no mail; delivery bounces at once (5.1.10)",
        ),
        ("MX.test", 0, "MX.test: local domain, delivered to Maildir under /var/mail/USER/"),
    ];
    for &(domain, want_code, want_line) in cases {
        let (code, out, err) = run_resolve(&conf, domain);
        assert_eq!(code, want_code, "{domain}\nstdout:\n{out}\nstderr:\n{err}");
        assert!(out.lines().any(|l| l == want_line), "{domain}:\n{out}");
    }
    // A smarthost takes every non-local domain.
    let conf = write_config(dir.path(), d.addr, "smarthost = alias.example.test:587\n");
    let (code, out, _) = run_resolve(&conf, "example.test");
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("example.test: relayed through the smarthost alias.example.test, port 587\n  alias.example.test: ::2, 127.0.0.2, port 587\n"),
        "{out}"
    );
}

#[test]
fn resolve_subcommand_usage_errors() {
    let dir = TempDir::new("usage");
    let conf = write_config(dir.path(), "127.0.0.1:1".parse().expect("addr"), "");
    let out = Command::new(env!("CARGO_BIN_EXE_postling"))
        .args(["resolve", "-c"])
        .arg(&conf)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    let out = Command::new(env!("CARGO_BIN_EXE_postling"))
        .args(["resolve", "-c"])
        .arg(dir.path().join("missing.conf"))
        .arg("example.test")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(78));
}

// ---------------------------------------------------------------------------------------
// A misbehaving server

/// How the in-test responder answers.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// Bytes that are not DNS at all.
    Garbage,
    /// Our ID, then garbage.
    GarbageWithId,
    /// A good answer with the ID off by one.
    WrongId,
    /// A good answer to another name.
    WrongQuestion,
    /// Header with TC set over UDP; the full answer over TCP on the same port.
    Truncate,
    /// TC set over UDP and no TCP listener.
    TruncateNoTcp,
    /// A forged answer from another port first, then the real one.
    SpoofThenAnswer,
    /// SERVFAIL.
    ServFail,
    /// Nothing at all.
    Silent,
}

/// The answer a good server gives to `query`: one MX and its address.
fn good_answer(query: &[u8]) -> Option<Vec<u8>> {
    let q = Packet::parse(query).ok()?;
    let question = q.questions.first()?.clone();
    let mut p = Packet::new_reply(q.id());
    p.set_flags(PacketFlag::RECURSION_DESIRED | PacketFlag::RECURSION_AVAILABLE);
    let name = question.qname.clone();
    p.questions.push(question);
    let mx1 = Name::new_unchecked("mx1.example.test");
    p.answers.push(ResourceRecord::new(
        name,
        CLASS::IN,
        300,
        RData::MX(MX {
            preference: 10,
            exchange: mx1.clone(),
        }),
    ));
    p.additional_records.push(ResourceRecord::new(
        mx1,
        CLASS::IN,
        300,
        RData::A(A::from(std::net::Ipv4Addr::new(127, 0, 0, 9))),
    ));
    p.build_bytes_vec().ok()
}

fn reply_for(mode: Mode, query: &[u8]) -> Option<Vec<u8>> {
    let good = good_answer(query)?;
    Some(match mode {
        Mode::Garbage => b"\xde\xad\xbe\xef this is not a DNS message at all".to_vec(),
        Mode::GarbageWithId => {
            let mut g = good[..2].to_vec();
            g.extend_from_slice(b"\x81\x80\x00\x01\x00\x05\x00\x00\x00\x00\xff\xff\xff");
            g
        }
        Mode::WrongId => {
            let mut g = good;
            let id = u16::from_be_bytes([g[0], g[1]]).wrapping_add(1);
            g[..2].copy_from_slice(&id.to_be_bytes());
            g
        }
        Mode::WrongQuestion => {
            let q = Packet::parse(query).ok()?;
            let mut other = Packet::new_query(q.id());
            other.questions.push(simple_dns::Question::new(
                Name::new_unchecked("other.test"),
                simple_dns::TYPE::MX.into(),
                CLASS::IN.into(),
                false,
            ));
            good_answer(&other.build_bytes_vec().ok()?)?
        }
        Mode::Truncate | Mode::TruncateNoTcp => {
            // Header only, TC set, counts zero: what a server sends when nothing fits.
            let mut h = good[..12].to_vec();
            h[2] |= 0x02;
            h[4..12].fill(0);
            h
        }
        Mode::ServFail => {
            let mut p = Packet::parse(query).ok()?.into_reply();
            *p.rcode_mut() = RCODE::ServerFailure;
            p.build_bytes_vec().ok()?
        }
        Mode::SpoofThenAnswer | Mode::Silent => good,
    })
}

/// A UDP responder (and, for `Truncate`, a TCP one on the same port) on 127.0.0.1.
struct Responder {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    queries: Arc<AtomicUsize>,
}

impl Responder {
    fn start(mode: Mode) -> Responder {
        Responder::start_on(mode, "127.0.0.1:0").expect("bind 127.0.0.1")
    }

    /// On `bind` (127.0.0.1:0 or [::1]:0); `None` when that address is unavailable.
    fn start_on(mode: Mode, bind: &str) -> Option<Responder> {
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind(bind).ok()?;
            let addr = udp.local_addr().expect("addr");
            match mode {
                Mode::Truncate => match TcpListener::bind(addr) {
                    Ok(t) => break (udp, Some(t)),
                    Err(_) => continue,
                },
                _ => break (udp, None),
            }
        };
        let addr = udp.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let queries = Arc::new(AtomicUsize::new(0));
        let mut threads = Vec::new();
        udp.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        {
            let (stop, queries) = (stop.clone(), queries.clone());
            threads.push(std::thread::spawn(move || {
                let mut buf = [0u8; 1500];
                while !stop.load(Ordering::SeqCst) {
                    let Ok((n, from)) = udp.recv_from(&mut buf) else {
                        continue;
                    };
                    queries.fetch_add(1, Ordering::SeqCst);
                    if matches!(mode, Mode::Silent) {
                        continue;
                    }
                    let Some(reply) = reply_for(mode, &buf[..n]) else {
                        continue;
                    };
                    if let Mode::SpoofThenAnswer = mode {
                        // Same ID and question, another source port, other data.
                        let mut forged = reply.clone();
                        let at = forged.len() - 1;
                        forged[at] = 66; // 127.0.0.66
                        let other = SocketAddr::new(from.ip(), 0);
                        if let Ok(s) = UdpSocket::bind(other) {
                            let _ = s.send_to(&forged, from);
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    let _ = udp.send_to(&reply, from);
                }
            }));
        }
        if let Some(tcp) = tcp {
            tcp.set_nonblocking(true).expect("nonblocking");
            let stop = stop.clone();
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match tcp.accept() {
                        Ok((s, _)) => serve_tcp(s),
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            }));
        }
        Some(Responder {
            addr,
            stop,
            threads,
            queries,
        })
    }
}

fn serve_tcp(mut s: TcpStream) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut len = [0u8; 2];
    if s.read_exact(&mut len).is_err() {
        return;
    }
    let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
    if s.read_exact(&mut q).is_err() {
        return;
    }
    if let Some(a) = good_answer(&q) {
        let mut msg = (a.len() as u16).to_be_bytes().to_vec();
        msg.extend_from_slice(&a);
        let _ = s.write_all(&msg);
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[test]
fn misbehaving_servers_give_temporary_failures_in_time() {
    let timeout = Duration::from_millis(300);
    // (mode, attempts, a word the reason must contain)
    let cases: &[(Mode, u32, &str)] = &[
        (Mode::Garbage, 1, "timed out"),
        (Mode::GarbageWithId, 1, "malformed"),
        (Mode::WrongId, 1, "timed out"),
        (Mode::WrongQuestion, 1, "timed out"),
        (Mode::TruncateNoTcp, 1, "refused"),
        (Mode::ServFail, 2, "SERVFAIL"),
        (Mode::Silent, 2, "timed out"),
    ];
    for &(mode, attempts, word) in cases {
        let server = Responder::start(mode);
        let mut r = resolver(&[server.addr], timeout, attempts);
        let t = Instant::now();
        let result = r.mx("example.test");
        let elapsed = t.elapsed();
        let MxResult::Temporary(reason) = result else {
            panic!("{mode:?}: {result:?}");
        };
        assert!(
            reason.to_lowercase().contains(&word.to_lowercase()),
            "{mode:?}: {reason}"
        );
        // One server: at most timeout × (1 + 2 + …) for the attempts, plus slack.
        let budget = timeout * ((1 << attempts) - 1) + Duration::from_millis(500);
        assert!(elapsed < budget, "{mode:?}: took {elapsed:?}");
        assert!(
            server.queries.load(Ordering::SeqCst) >= 1,
            "{mode:?}: never asked"
        );
        // Asked once per attempt; the failure is then cached for the pass.
        let before = server.queries.load(Ordering::SeqCst);
        assert!(matches!(r.mx("example.test"), MxResult::Temporary(_)));
        assert_eq!(
            server.queries.load(Ordering::SeqCst),
            before,
            "{mode:?}: not cached"
        );
    }
}

#[test]
fn truncated_answer_is_retried_over_tcp() {
    let server = Responder::start(Mode::Truncate);
    let mut r = resolver(&[server.addr], Duration::from_secs(2), 1);
    assert_eq!(
        r.mx("example.test"),
        MxResult::Found(vec![MxHost {
            name: "mx1.example.test".into(),
            preference: 10,
            addrs: vec![ip("127.0.0.9")],
            implicit: false,
        }])
    );
}

#[test]
fn ipv6_loopback_server() {
    // [::1] with TC and TCP: the socket family follows the server's address.
    let Some(server) = Responder::start_on(Mode::Truncate, "[::1]:0") else {
        eprintln!("no IPv6 loopback here: skipped");
        return;
    };
    let mut r = resolver(&[server.addr], Duration::from_secs(2), 1);
    assert!(matches!(r.mx("example.test"), MxResult::Found(_)));
}

#[test]
fn answer_from_another_port_is_ignored() {
    let server = Responder::start(Mode::SpoofThenAnswer);
    let mut r = resolver(&[server.addr], Duration::from_secs(2), 1);
    let MxResult::Found(hosts) = r.mx("example.test") else {
        panic!("no answer");
    };
    assert_eq!(
        hosts[0].addrs,
        [ip("127.0.0.9")],
        "the forged 127.0.0.66 was used"
    );
}

#[test]
fn servfail_moves_to_the_next_server() {
    let bad = Responder::start(Mode::ServFail);
    let good = Responder::start(Mode::Truncate);
    let mut r = resolver(&[bad.addr, good.addr], Duration::from_secs(1), 1);
    assert!(matches!(r.mx("example.test"), MxResult::Found(_)));
    assert_eq!(bad.queries.load(Ordering::SeqCst), 1);
}

// ---------------------------------------------------------------------------------------
// Measurement (not part of `make test`):
//   cargo test --release --test dns -- --ignored --nocapture mx_latency

#[test]
#[ignore]
fn mx_latency_against_dnsmasq() {
    let d = Dnsmasq::start();
    let mut samples = Vec::with_capacity(1000);
    for _ in 0..1000 {
        // A fresh resolver each time: no cache, the full MX lookup every time.
        let mut r = resolver(&[d.addr], Duration::from_secs(2), 2);
        let t = Instant::now();
        let result = r.mx("example.test");
        samples.push(t.elapsed());
        assert!(matches!(result, MxResult::Found(_)), "{result:?}");
    }
    samples.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "mx(example.test) against dnsmasq, 1000 uncached lookups: median {:.0} µs, p90 {:.0} µs, p99 {:.0} µs, max {:.0} µs",
        us(samples[499]),
        us(samples[899]),
        us(samples[989]),
        us(samples[999])
    );
    let mut r = resolver(&[d.addr], Duration::from_secs(2), 2);
    let mut samples = Vec::with_capacity(1000);
    for _ in 0..1000 {
        let t = Instant::now();
        let _ = r.mx("plain.test");
        samples.push(t.elapsed());
    }
    samples.sort();
    println!(
        "mx(plain.test) (implicit MX: MX + AAAA + A queries), same resolver: median {:.0} µs",
        us(samples[499])
    );
}
