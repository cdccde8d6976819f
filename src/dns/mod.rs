//! The resolver: MX, A and AAAA lookups done by postling itself, with simple-dns for
//! the wire format and no libc resolver, so one static binary behaves the same on every
//! router and container.
//!
//! Shape (sans-I/O core, thin transport):
//! - [`conf`]: resolv.conf and /etc/hosts parsed from strings; the retry schedule.
//! - [`query`]: build a query, judge a received message (ID, QR, question echo, TC).
//! - [`lookup`]: the MX and host lookups as state machines — which question next, CNAME
//!   following, the result. No sockets, no clock; randomness comes in as a seed.
//! - [`cache`]: answers kept for one delivery pass, honouring TTLs; time comes in.
//! - [`transport`]: UDP with TCP fallback to the configured servers, timeouts, rotation.
//! - [`report`]: the `postling resolve` subcommand.
//!
//! API for delivery: build one [`Resolver`] per delivery pass (it holds the cache), then
//! [`Resolver::mx`] for a recipient domain (→ [`MxResult`]: `Found(Vec<MxHost>)` in
//! delivery order, `NullMx`, `NoSuchDomain`, `Temporary(reason)`) and
//! [`Resolver::host`] for a smarthost (→ [`HostResult`]). Only `NullMx` and
//! `NoSuchDomain` are permanent; delivery defers on everything else.
//!
//! Invariants: nothing in this module panics on what a server, a file or the network
//! provides; every lookup ends within a bounded number of queries, each bounded in time
//! by the schedule (`servers × timeout × (2^attempts − 1)` at most, plus one TCP retry
//! per truncated answer).

pub mod cache;
pub mod conf;
pub mod lookup;
pub mod query;
pub mod report;
pub mod transport;

use std::path::Path;
use std::time::Instant;

pub use conf::{Hosts, ResolvConf};
pub use lookup::{HostLookup, HostResult, MxHost, MxLookup, MxResult, Step};
pub use query::{Outcome, Question};
pub use transport::{NetTransport, Transport};

use cache::Cache;

/// Where the stub resolver reads its settings unless told otherwise.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";
pub const HOSTS: &str = "/etc/hosts";

/// One delivery pass's resolver: servers, /etc/hosts, and the answer cache.
pub struct Resolver<T: Transport = NetTransport> {
    transport: T,
    hosts: Hosts,
    cache: Cache,
    clock: Box<dyn FnMut() -> Instant + Send>,
}

impl Resolver<NetTransport> {
    /// Settings from `/etc/resolv.conf` (servers replaced by the `dns` key when set)
    /// and names from `/etc/hosts`.
    pub fn new(config: &crate::config::Config) -> Resolver {
        Resolver::from_files(config, Path::new(RESOLV_CONF), Path::new(HOSTS))
    }

    /// [`Resolver::new`] with the two files elsewhere (tests, chroots). A missing or
    /// unreadable file counts as empty: resolv.conf(5) defaults then apply.
    pub fn from_files(
        config: &crate::config::Config,
        resolv_conf: &Path,
        hosts: &Path,
    ) -> Resolver {
        let read = |p: &Path| match std::fs::read_to_string(p) {
            Ok(s) => s,
            Err(e) => {
                log::debug!("{}: {}", p.display(), crate::time::io_reason(&e));
                String::new()
            }
        };
        let mut conf = ResolvConf::parse(&read(resolv_conf));
        if !config.dns.is_empty() {
            conf.servers = config.dns.clone();
        }
        Resolver::with_conf(conf, Hosts::parse(&read(hosts)))
    }

    /// Explicit settings, no files read.
    pub fn with_conf(conf: ResolvConf, hosts: Hosts) -> Resolver {
        Resolver::with_transport(NetTransport::new(conf), hosts)
    }

    pub fn conf(&self) -> &ResolvConf {
        self.transport.conf()
    }
}

impl<T: Transport> Resolver<T> {
    pub fn with_transport(transport: T, hosts: Hosts) -> Resolver<T> {
        Resolver {
            transport,
            hosts,
            cache: Cache::default(),
            clock: Box::new(Instant::now),
        }
    }

    /// Replace the clock the cache uses (tests).
    pub fn set_clock(&mut self, clock: Box<dyn FnMut() -> Instant + Send>) {
        self.clock = clock;
    }

    /// The hosts delivery should try for mail to `domain`, in order.
    pub fn mx(&mut self, domain: &str) -> MxResult {
        let seed = match transport::random_u64() {
            Ok(s) => s,
            Err(e) => return MxResult::Temporary(e),
        };
        let mut lookup = MxLookup::new(domain, &self.hosts, seed);
        let result = loop {
            match lookup.poll() {
                Step::Done(r) => break r,
                Step::Query(q) => {
                    let o = ask(&mut self.transport, &mut self.cache, &mut self.clock, &q);
                    lookup.handle(o);
                }
            }
        };
        for note in lookup.notes() {
            log::warn!("{note}");
        }
        result
    }

    /// Addresses of a host name (a smarthost): literal, /etc/hosts, then DNS.
    pub fn host(&mut self, name: &str) -> HostResult {
        let mut lookup = HostLookup::new(name, &self.hosts);
        loop {
            match lookup.poll() {
                Step::Done(r) => return r,
                Step::Query(q) => {
                    let o = ask(&mut self.transport, &mut self.cache, &mut self.clock, &q);
                    lookup.handle(o);
                }
            }
        }
    }
}

/// The cache, else the network (and remember what it said).
fn ask<T: Transport>(
    transport: &mut T,
    cache: &mut Cache,
    clock: &mut Box<dyn FnMut() -> Instant + Send>,
    q: &Question,
) -> Outcome {
    if let Some(o) = cache.get(q, clock()) {
        log::debug!("{q}: from cache");
        return o;
    }
    let o = transport.exchange(q);
    cache.put(q, &o, clock());
    o
}

#[cfg(test)]
mod tests {
    use super::query::tests::answer;
    use super::query::{check_answer, Data, RType, Verdict};
    use super::*;
    use simple_dns::RCODE;
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// A transport that answers from a script and counts questions.
    struct Scripted {
        asked: Arc<Mutex<usize>>,
        ttl: u32,
    }

    impl Transport for Scripted {
        fn exchange(&mut self, q: &Question) -> Outcome {
            if let Ok(mut n) = self.asked.lock() {
                *n += 1;
            }
            let rrs: Vec<(&str, u32, Data)> = match q.rtype {
                RType::Mx => vec![(
                    "ex.test",
                    self.ttl,
                    Data::Mx {
                        preference: 10,
                        exchange: "mx.ex.test".into(),
                    },
                )],
                RType::A => vec![("mx.ex.test", self.ttl, Data::A(Ipv4Addr::new(192, 0, 2, 1)))],
                RType::Aaaa => vec![],
            };
            let bytes = answer(9, q, RCODE::NoError, &rrs, &[]);
            match check_answer(&bytes, 9, q) {
                Verdict::Answer(r) => Outcome::Answer(r),
                _ => Outcome::Failed("canned".into()),
            }
        }
    }

    #[test]
    fn resolver_is_send() {
        // Delivery may run a pass on its own thread.
        fn send<T: Send>() {}
        send::<Resolver>();
    }

    #[test]
    fn cache_serves_within_ttl_and_expires() {
        let asked = Arc::new(Mutex::new(0));
        let count = |a: &Arc<Mutex<usize>>| a.lock().map(|n| *n).unwrap_or(0);
        let mut r = Resolver::with_transport(
            Scripted {
                asked: asked.clone(),
                ttl: 60,
            },
            Hosts::default(),
        );
        let t0 = Instant::now();
        let now = Arc::new(Mutex::new(t0));
        let n = now.clone();
        r.set_clock(Box::new(move || n.lock().map(|t| *t).unwrap_or(t0)));
        let set = |t: Instant| {
            if let Ok(mut n) = now.lock() {
                *n = t;
            }
        };
        let want = MxResult::Found(vec![MxHost {
            name: "mx.ex.test".into(),
            preference: 10,
            addrs: vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))],
            implicit: false,
        }]);
        // MX, AAAA (no data, no SOA: not cached), A.
        assert_eq!(r.mx("ex.test"), want);
        assert_eq!(count(&asked), 3);
        set(t0 + Duration::from_secs(59));
        assert_eq!(r.mx("EX.test."), want);
        assert_eq!(count(&asked), 4, "only the uncacheable AAAA is asked again");
        set(t0 + Duration::from_secs(60));
        assert_eq!(r.mx("ex.test"), want);
        assert_eq!(count(&asked), 7, "expired: all three asked again");
    }
}
