//! The lookup logic, sans I/O: which question to ask next, how to read its answer, and
//! what the result is. A driver (the [`Resolver`](super::Resolver), or a test with canned
//! answers) loops: `poll()` → `Step::Query(q)` → get an [`Outcome`] for `q` → `handle()`,
//! until `poll()` gives `Step::Done(result)`.
//!
//! Invariants:
//! - Every lookup ends: each `handle` counts one query and a lookup that reaches
//!   [`MAX_QUERIES`] is done with a temporary failure; CNAME chains are bounded by
//!   [`MAX_CNAME_CHAIN`] and a name seen twice in a chain is a loop.
//! - Only two results are permanent: NXDOMAIN for the recipient domain itself (not for
//!   an alias target, not for an MX host) and a null MX (RFC 7505). Everything else that
//!   goes wrong is `Temporary`, so mail is deferred, never bounced, on DNS trouble.
//! - `MxResult::Found` hosts are in delivery order (preference, random among equals,
//!   RFC 5321 §5.1) and each has at least one address, IPv6 first, then IPv4.
//! - Randomness comes in as a seed; the same seed and answers give the same result.
//!
//! Where addresses come from: an address literal is used as is; then /etc/hosts (for MX
//! hosts and smarthosts alike, never for the MX records themselves); then, for an MX
//! host, the A/AAAA records the server put in the additional section of the MX answer
//! (when there are any for that host, no further query is made for it); else AAAA and
//! A queries, each following CNAMEs.

use std::net::IpAddr;

use super::conf::{normalise, Hosts};
use super::query::{Data, Outcome, Question, RType, Rcode, Record};

/// Longest CNAME chain followed. RFC 1034 §3.6.2 asks resolvers to bound the chase;
/// 8 is what BIND's stub and glibc allow in practice, far above real-world chains.
pub const MAX_CNAME_CHAIN: usize = 8;
/// MX hosts kept after ordering. Postfix tries at most 5 (`smtp_mx_address_limit`);
/// 10 leaves room for backups while bounding the address queries to 20.
pub const MAX_MX_HOSTS: usize = 10;
/// Queries one lookup may make: MX, then AAAA and A for up to 10 hosts, with room for
/// CNAME re-queries. Beyond this the DNS data is hostile or broken.
pub const MAX_QUERIES: usize = 48;

/// One host delivery would try.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MxHost {
    /// The MX exchange (or the domain itself for an implicit MX), normalised.
    pub name: String,
    pub preference: u16,
    /// IPv6 first, then IPv4; never empty in `MxResult::Found`.
    pub addrs: Vec<IpAddr>,
    /// No MX records: the domain's own addresses (RFC 5321 §5.1), or an address literal.
    pub implicit: bool,
}

/// The result of an MX lookup for a recipient domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MxResult {
    /// Hosts in the order delivery tries them.
    Found(Vec<MxHost>),
    /// RFC 7505: the domain publishes `MX 0 .` and accepts no mail. Permanent (5.1.10).
    NullMx,
    /// NXDOMAIN for the domain itself (or a name that cannot exist). Permanent.
    NoSuchDomain,
    /// Anything else: SERVFAIL, REFUSED, timeouts, malformed answers, loops, no host
    /// with an address. The reason is one line for logs and `last_reply`.
    Temporary(String),
}

/// The result of an address lookup for one host name (a smarthost, an MX host).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostResult {
    /// IPv6 first, then IPv4 (from /etc/hosts: in file order); never empty.
    Found(Vec<IpAddr>),
    /// The name does not exist or has no A/AAAA records. Delivery treats an
    /// unresolvable smarthost as temporary all the same (spec).
    NotFound(String),
    Temporary(String),
}

/// What a lookup wants next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step<R> {
    Query(Question),
    Done(R),
}

/// `[192.0.2.1]`, `[IPv6:2001:db8::1]` (RFC 5321 §4.1.3) or a bare address.
pub fn ip_literal(name: &str) -> Option<IpAddr> {
    let inner = match name.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        Some(inner) => match inner.get(..5) {
            Some(tag) if tag.eq_ignore_ascii_case("IPv6:") => {
                return inner[5..]
                    .parse::<std::net::Ipv6Addr>()
                    .ok()
                    .map(IpAddr::V6)
            }
            _ => return inner.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4),
        },
        None => name,
    };
    inner.parse().ok()
}

/// RFC 1035 §2.3.4: labels of 1 to 63 octets, 255 octets in all on the wire (253
/// characters in text without the trailing dot).
fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 253 && name.split('.').all(|l| !l.is_empty() && l.len() <= 63)
}

/// A 64-bit generator for shuffling (SplitMix64). Unpredictability matters little here
/// (the shuffle spreads load, RFC 5321 §5.1); the seed comes from getrandom.
fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Sort by preference, shuffle runs of equal preference (RFC 5321 §5.1: "randomize
/// them to spread the load"), drop repeated names (keeping the most preferred).
fn order_mx(mut mxs: Vec<(u16, String)>, rng: &mut u64) -> Vec<(u16, String)> {
    mxs.sort_by_key(|m| m.0);
    let mut i = 0;
    while i < mxs.len() {
        let mut j = i + 1;
        while j < mxs.len() && mxs[j].0 == mxs[i].0 {
            j += 1;
        }
        // Fisher–Yates over mxs[i..j].
        for k in (i + 1..j).rev() {
            let r = i + (next_random(rng) % (k - i + 1) as u64) as usize;
            mxs.swap(k, r);
        }
        i = j;
    }
    let mut seen: Vec<String> = Vec::new();
    mxs.retain(|(_, name)| {
        let first = !seen.contains(name);
        if first {
            seen.push(name.clone());
        }
        first
    });
    mxs
}

/// How one question ended after following CNAMEs.
#[derive(Debug)]
enum Chased {
    /// The answer ended at an alias the server did not chase: ask again for it.
    Again,
    Records {
        data: Vec<Data>,
        additional: Vec<Record>,
    },
    NoData,
    NxDomain {
        aliased: bool,
    },
    Failed(String),
}

/// One name and type, followed through CNAMEs across answers (RFC 1034 §3.6.2).
#[derive(Clone, Debug)]
struct Chase {
    rtype: RType,
    origin: String,
    current: String,
    /// Names visited, origin first: a repeat is a loop.
    chain: Vec<String>,
    /// Names asked for: an alias the answer leaves dangling is asked once.
    asked: Vec<String>,
}

impl Chase {
    fn new(name: &str, rtype: RType) -> Chase {
        let name = normalise(name);
        Chase {
            rtype,
            origin: name.clone(),
            current: name.clone(),
            chain: vec![name.clone()],
            asked: vec![name],
        }
    }

    fn question(&self) -> Question {
        Question {
            name: self.current.clone(),
            rtype: self.rtype,
        }
    }

    fn handle(&mut self, outcome: Outcome) -> Chased {
        let resp = match outcome {
            Outcome::Failed(reason) => return Chased::Failed(reason),
            Outcome::Answer(r) => r,
        };
        loop {
            let data: Vec<Data> = resp
                .answers
                .iter()
                .filter(|r| r.name == self.current && r.data.rtype() == Some(self.rtype))
                .map(|r| r.data.clone())
                .collect();
            if !data.is_empty() {
                return Chased::Records {
                    data,
                    additional: resp.additional,
                };
            }
            let target = resp.answers.iter().find_map(|r| match &r.data {
                Data::Cname(t) if r.name == self.current => Some(t.clone()),
                _ => None,
            });
            let Some(target) = target else { break };
            if self.chain.contains(&target) {
                return Chased::Failed(format!(
                    "CNAME loop: {} -> {target}",
                    self.chain.join(" -> ")
                ));
            }
            if self.chain.len() > MAX_CNAME_CHAIN {
                return Chased::Failed(format!(
                    "CNAME chain from {} longer than {MAX_CNAME_CHAIN}",
                    self.origin
                ));
            }
            self.chain.push(target.clone());
            self.current = target;
        }
        let aliased = self.current != self.origin;
        match resp.rcode {
            // RFC 6604 §3: with a CNAME chain the RCODE speaks of the last name.
            Rcode::NxDomain => Chased::NxDomain { aliased },
            // RFC 1034 §3.6.2: a recursive server restarts the query at the alias; if
            // ours stopped (the target lies outside what it knows), ask for it ourselves.
            Rcode::NoError if aliased && !self.asked.contains(&self.current) => {
                self.asked.push(self.current.clone());
                Chased::Again
            }
            Rcode::NoError => Chased::NoData,
            other => Chased::Failed(format!("{other} for {}", self.question())),
        }
    }
}

/// AAAA then A for one name, /etc/hosts and address literals first.
#[derive(Clone, Debug)]
struct AddrLookup {
    name: String,
    /// The family being asked: AAAA first, then A.
    chase: Chase,
    v6: Vec<IpAddr>,
    v4: Vec<IpAddr>,
    temporary: Option<String>,
    missing: Option<String>,
    result: Option<HostResult>,
}

impl AddrLookup {
    fn new(name: &str, hosts: &Hosts) -> AddrLookup {
        let mut l = AddrLookup {
            name: normalise(name),
            chase: Chase::new(name, RType::Aaaa),
            v6: Vec::new(),
            v4: Vec::new(),
            temporary: None,
            missing: None,
            result: None,
        };
        if let Some(ip) = ip_literal(name) {
            l.result = Some(HostResult::Found(vec![ip]));
        } else if let Some(addrs) = hosts.get(name).filter(|a| !a.is_empty()) {
            // /etc/hosts first: routers map their smarthost there.
            l.result = Some(HostResult::Found(addrs.to_vec()));
        }
        l
    }

    fn poll(&self) -> Step<HostResult> {
        match &self.result {
            Some(r) => Step::Done(r.clone()),
            None => Step::Query(self.chase.question()),
        }
    }

    fn handle(&mut self, outcome: Outcome) {
        if self.result.is_some() {
            return;
        }
        let family = self.chase.rtype;
        let mut skip_a = false;
        match self.chase.handle(outcome) {
            Chased::Again => return,
            Chased::Records { data, .. } => {
                for d in data {
                    let ip = match d {
                        Data::A(ip) => IpAddr::V4(ip),
                        Data::Aaaa(ip) => IpAddr::V6(ip),
                        _ => continue,
                    };
                    let list = if ip.is_ipv6() {
                        &mut self.v6
                    } else {
                        &mut self.v4
                    };
                    if !list.contains(&ip) {
                        list.push(ip);
                    }
                }
            }
            Chased::NoData => {}
            Chased::NxDomain { aliased } => {
                self.missing = Some(if aliased {
                    format!("CNAME target of {} does not exist", self.name)
                } else {
                    format!("{} does not exist", self.name)
                });
                // RFC 2308 §2.1: NXDOMAIN holds for every type; no need to ask for A.
                skip_a = true;
            }
            Chased::Failed(reason) => {
                self.temporary = Some(format!("{} {family}: {reason}", self.name));
            }
        }
        if family == RType::Aaaa && !skip_a {
            self.chase = Chase::new(&self.name, RType::A);
            return;
        }
        let mut addrs = std::mem::take(&mut self.v6);
        addrs.append(&mut self.v4);
        self.result = Some(if !addrs.is_empty() {
            HostResult::Found(addrs)
        } else if let Some(t) = self.temporary.take() {
            HostResult::Temporary(t)
        } else {
            HostResult::NotFound(
                self.missing
                    .take()
                    .unwrap_or_else(|| format!("{} has no A or AAAA records", self.name)),
            )
        });
    }
}

/// Addresses for one host name: literal, /etc/hosts, then AAAA and A (with CNAMEs).
#[derive(Clone, Debug)]
pub struct HostLookup {
    inner: AddrLookup,
    queries: usize,
}

impl HostLookup {
    pub fn new(name: &str, hosts: &Hosts) -> HostLookup {
        HostLookup {
            inner: AddrLookup::new(name, hosts),
            queries: 0,
        }
    }

    pub fn poll(&self) -> Step<HostResult> {
        self.inner.poll()
    }

    pub fn handle(&mut self, outcome: Outcome) {
        self.queries += 1;
        self.inner.handle(outcome);
        if self.inner.result.is_none() && self.queries >= MAX_QUERIES {
            self.inner.result = Some(HostResult::Temporary(format!(
                "{}: more than {MAX_QUERIES} queries",
                self.inner.name
            )));
        }
    }
}

#[derive(Clone, Debug)]
enum MxState {
    Mx(Chase),
    Implicit(AddrLookup),
    /// Addresses for the ordered hosts; `lookup` works on `hosts[next]`.
    Targets {
        hosts: Vec<MxHost>,
        next: usize,
        lookup: AddrLookup,
        temporary: Option<String>,
    },
    Done(MxResult),
}

/// The MX lookup for a recipient domain (RFC 5321 §5.1).
#[derive(Clone, Debug)]
pub struct MxLookup<'h> {
    domain: String,
    hosts_file: &'h Hosts,
    rng: u64,
    state: MxState,
    queries: usize,
    notes: Vec<String>,
}

impl<'h> MxLookup<'h> {
    /// `seed` drives the shuffle of equal preferences; `hosts_file` is consulted for the
    /// addresses of MX hosts (never for the MX records themselves).
    pub fn new(domain: &str, hosts_file: &'h Hosts, seed: u64) -> MxLookup<'h> {
        let name = normalise(domain);
        let state = if let Some(ip) = domain
            .starts_with('[')
            .then(|| ip_literal(domain))
            .flatten()
        {
            // RFC 5321 §5.1: an address literal is the destination itself.
            MxState::Done(MxResult::Found(vec![MxHost {
                name: domain.to_string(),
                preference: 0,
                addrs: vec![ip],
                implicit: true,
            }]))
        } else if domain.starts_with('[') || !valid_name(&name) {
            // A name that cannot be asked cannot exist (RFC 1035 §2.3.4 limits).
            MxState::Done(MxResult::NoSuchDomain)
        } else {
            MxState::Mx(Chase::new(&name, RType::Mx))
        };
        MxLookup {
            domain: name,
            hosts_file,
            rng: seed,
            state,
            queries: 0,
            notes: Vec::new(),
        }
    }

    pub fn poll(&self) -> Step<MxResult> {
        match &self.state {
            MxState::Mx(chase) => Step::Query(chase.question()),
            MxState::Implicit(l) | MxState::Targets { lookup: l, .. } => match l.poll() {
                Step::Query(q) => Step::Query(q),
                // Unreachable in practice: a finished AddrLookup moves the state on.
                Step::Done(_) => Step::Done(MxResult::Temporary("lookup stalled".into())),
            },
            MxState::Done(r) => Step::Done(r.clone()),
        }
    }

    /// Things worth a warning in the log: hosts skipped and why.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    pub fn handle(&mut self, outcome: Outcome) {
        self.queries += 1;
        let state = std::mem::replace(
            &mut self.state,
            MxState::Done(MxResult::Temporary("lookup stalled".into())),
        );
        self.state = match state {
            MxState::Mx(mut chase) => match chase.handle(outcome) {
                Chased::Again => MxState::Mx(chase),
                Chased::Records { data, additional } => self.mx_records(data, &additional),
                Chased::NoData => {
                    // RFC 5321 §5.1: no MX records, so the domain is its own MX.
                    self.implicit(AddrLookup::new(&self.domain, self.hosts_file))
                }
                Chased::NxDomain { aliased: false } => MxState::Done(MxResult::NoSuchDomain),
                Chased::NxDomain { aliased: true } => MxState::Done(MxResult::Temporary(format!(
                    "CNAME target of {} does not exist",
                    self.domain
                ))),
                Chased::Failed(reason) => {
                    MxState::Done(MxResult::Temporary(format!("{} MX: {reason}", self.domain)))
                }
            },
            MxState::Implicit(mut l) => {
                l.handle(outcome);
                self.implicit(l)
            }
            MxState::Targets {
                hosts,
                next,
                mut lookup,
                temporary,
            } => {
                lookup.handle(outcome);
                self.targets(hosts, next, lookup, temporary)
            }
            done @ MxState::Done(_) => done,
        };
        if self.queries >= MAX_QUERIES && !matches!(self.state, MxState::Done(_)) {
            self.state = MxState::Done(MxResult::Temporary(format!(
                "{}: more than {MAX_QUERIES} queries",
                self.domain
            )));
        }
    }

    fn implicit(&mut self, l: AddrLookup) -> MxState {
        match &l.result {
            None => MxState::Implicit(l),
            Some(HostResult::Found(addrs)) => MxState::Done(MxResult::Found(vec![MxHost {
                name: self.domain.clone(),
                preference: 0,
                addrs: addrs.clone(),
                implicit: true,
            }])),
            // The domain exists (no NXDOMAIN for it) but has neither MX nor address: not
            // a mail domain today. The spec keeps this temporary; the queue lifetime
            // bounds it.
            Some(HostResult::NotFound(_)) => MxState::Done(MxResult::Temporary(format!(
                "{} has no MX and no A or AAAA records",
                self.domain
            ))),
            Some(HostResult::Temporary(r)) => MxState::Done(MxResult::Temporary(r.clone())),
        }
    }

    fn mx_records(&mut self, data: Vec<Data>, additional: &[Record]) -> MxState {
        let mut mxs = Vec::new();
        let mut null = false;
        for d in data {
            let Data::Mx {
                preference,
                exchange,
            } = d
            else {
                continue;
            };
            if exchange.is_empty() {
                // RFC 7505 §3: the root as exchange means "no mail service".
                null = true;
            } else if ip_literal(&exchange).is_some() {
                // RFC 5321 §5.1: MX names "MUST NOT be IP literals"; following one would
                // let a DNS answer aim us anywhere without an address record.
                self.notes.push(format!(
                    "{}: MX {preference} {exchange} is an IP address, not a host name (RFC 5321 §5.1): skipped",
                    self.domain
                ));
            } else {
                mxs.push((preference, exchange));
            }
        }
        if null && mxs.is_empty() {
            return MxState::Done(MxResult::NullMx);
        }
        if null {
            // RFC 7505 §3 forbids mixing; the real hosts are the better reading of intent.
            self.notes.push(format!(
                "{}: null MX published beside other MX records (RFC 7505 §3): null MX ignored",
                self.domain
            ));
        }
        if mxs.is_empty() {
            return MxState::Done(MxResult::Temporary(format!(
                "{} has no usable MX host",
                self.domain
            )));
        }
        let mut ordered = order_mx(mxs, &mut self.rng);
        if ordered.len() > MAX_MX_HOSTS {
            self.notes.push(format!(
                "{}: {} MX hosts, only the first {MAX_MX_HOSTS} are used",
                self.domain,
                ordered.len()
            ));
            ordered.truncate(MAX_MX_HOSTS);
        }
        let hosts: Vec<MxHost> = ordered
            .into_iter()
            .map(|(preference, name)| {
                // Addresses the server volunteered in the additional section (RFC 1035
                // §3.3.9) save two queries per host. RFC 2181 §5.4.1 ranks such data
                // low, but our recursive server vouches for it as it does for answers.
                let mut v6 = Vec::new();
                let mut v4 = Vec::new();
                for r in additional.iter().filter(|r| r.name == name) {
                    match r.data {
                        Data::Aaaa(ip) if !v6.contains(&IpAddr::V6(ip)) => v6.push(IpAddr::V6(ip)),
                        Data::A(ip) if !v4.contains(&IpAddr::V4(ip)) => v4.push(IpAddr::V4(ip)),
                        _ => {}
                    }
                }
                v6.append(&mut v4);
                MxHost {
                    name,
                    preference,
                    addrs: v6,
                    implicit: false,
                }
            })
            .collect();
        let placeholder = AddrLookup::new("", &Hosts::default());
        self.targets(hosts, 0, placeholder, None)
    }

    /// Move through the hosts that still need addresses. `lookup` works on
    /// `hosts[next]` when `next < hosts.len()` and that host has no addresses yet.
    fn targets(
        &mut self,
        mut hosts: Vec<MxHost>,
        mut next: usize,
        mut lookup: AddrLookup,
        mut temporary: Option<String>,
    ) -> MxState {
        loop {
            if next < hosts.len() && hosts[next].addrs.is_empty() {
                if lookup.name != hosts[next].name {
                    lookup = AddrLookup::new(&hosts[next].name, self.hosts_file);
                }
                match lookup.result.take() {
                    None => {
                        return MxState::Targets {
                            hosts,
                            next,
                            lookup,
                            temporary,
                        }
                    }
                    Some(HostResult::Found(addrs)) => hosts[next].addrs = addrs,
                    // RFC 5321 §5.1: an MX host without addresses is skipped; the others
                    // may still take the mail.
                    Some(HostResult::NotFound(reason)) => {
                        self.notes
                            .push(format!("{}: MX host skipped: {reason}", self.domain));
                    }
                    Some(HostResult::Temporary(reason)) => {
                        self.notes
                            .push(format!("{}: MX host skipped: {reason}", self.domain));
                        temporary.get_or_insert(reason);
                    }
                }
            }
            if next >= hosts.len() {
                break;
            }
            next += 1;
        }
        hosts.retain(|h| !h.addrs.is_empty());
        if hosts.is_empty() {
            return MxState::Done(MxResult::Temporary(
                temporary
                    .unwrap_or_else(|| format!("no MX host of {} has an address", self.domain)),
            ));
        }
        MxState::Done(MxResult::Found(hosts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::query::tests::answer;
    use crate::dns::query::{check_answer, Verdict};
    use simple_dns::RCODE;
    use std::collections::HashMap;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// A record in a canned answer: (owner, data).
    type Rr = (&'static str, Data);

    /// What a canned server says to one question.
    #[derive(Clone)]
    enum Canned {
        /// NOERROR with these answer and additional records.
        Ok(Vec<Rr>, Vec<Rr>),
        NxDomain(Vec<Rr>),
        ServFail,
    }

    fn mx(pref: u16, name: &str) -> Data {
        Data::Mx {
            preference: pref,
            exchange: name.into(),
        }
    }
    fn a(last: u8) -> Data {
        Data::A(Ipv4Addr::new(192, 0, 2, last))
    }
    fn aaaa(last: u16) -> Data {
        Data::Aaaa(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last))
    }
    fn cname(t: &str) -> Data {
        Data::Cname(t.into())
    }
    fn ip4(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }
    fn ip6(last: u16) -> IpAddr {
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last))
    }

    /// Turn a canned answer into an Outcome through the real wire path: build the
    /// bytes with simple-dns, then judge them with `check_answer`.
    fn outcome(q: &Question, canned: Option<&Canned>) -> Outcome {
        let id = 0x1234;
        let with_ttl = |rrs: &[Rr]| -> Vec<(&str, u32, Data)> {
            rrs.iter().map(|(n, d)| (*n, 300, d.clone())).collect()
        };
        let bytes = match canned {
            // An unknown name is NOERROR with no data, as from a real server.
            None => answer(id, q, RCODE::NoError, &[], &[]),
            Some(Canned::Ok(ans, add)) => {
                answer(id, q, RCODE::NoError, &with_ttl(ans), &with_ttl(add))
            }
            Some(Canned::NxDomain(ans)) => answer(id, q, RCODE::NameError, &with_ttl(ans), &[]),
            Some(Canned::ServFail) => return Outcome::Failed("SERVFAIL".into()),
        };
        match check_answer(&bytes, id, q) {
            Verdict::Answer(r) => Outcome::Answer(r),
            other => panic!("canned answer judged {other:?}"),
        }
    }

    type Zone = HashMap<(String, RType), Canned>;

    fn zone(entries: &[(&str, RType, Canned)]) -> Zone {
        entries
            .iter()
            .map(|(n, t, c)| ((n.to_string(), *t), c.clone()))
            .collect()
    }

    /// Drive an MX lookup against a canned zone; returns the result and the questions.
    fn run_mx(domain: &str, zone: &Zone, hosts: &Hosts, seed: u64) -> (MxResult, Vec<String>) {
        let mut l = MxLookup::new(domain, hosts, seed);
        let mut asked = Vec::new();
        for _ in 0..1000 {
            match l.poll() {
                Step::Done(r) => return (r, asked),
                Step::Query(q) => {
                    asked.push(q.to_string());
                    let o = outcome(&q, zone.get(&(q.name.clone(), q.rtype)));
                    l.handle(o);
                }
            }
        }
        panic!("lookup did not end");
    }

    fn host(name: &str, pref: u16, addrs: &[IpAddr]) -> MxHost {
        MxHost {
            name: name.into(),
            preference: pref,
            addrs: addrs.to_vec(),
            implicit: false,
        }
    }

    #[test]
    fn mx_lookups() {
        use Canned::*;
        use RType::{Aaaa, Mx, A};
        struct Case {
            what: &'static str,
            zone: Vec<(&'static str, RType, Canned)>,
            result: MxResult,
            asked: &'static [&'static str],
        }
        let cases = vec![
            Case {
                what: "preference order, addresses from the additional section",
                zone: vec![(
                    "ex.test",
                    Mx,
                    Ok(
                        vec![
                            ("ex.test", mx(20, "mx2.ex.test")),
                            ("ex.test", mx(10, "mx1.ex.test")),
                        ],
                        vec![
                            ("mx1.ex.test", a(1)),
                            ("mx1.ex.test", aaaa(1)),
                            ("mx2.ex.test", a(2)),
                            ("other.test", a(9)),
                        ],
                    ),
                )],
                result: MxResult::Found(vec![
                    host("mx1.ex.test", 10, &[ip6(1), ip4(1)]),
                    host("mx2.ex.test", 20, &[ip4(2)]),
                ]),
                asked: &["ex.test MX"],
            },
            Case {
                what: "no additional section: AAAA then A per host",
                zone: vec![
                    (
                        "ex.test",
                        Mx,
                        Ok(vec![("ex.test", mx(10, "mx1.ex.test"))], vec![]),
                    ),
                    (
                        "mx1.ex.test",
                        Aaaa,
                        Ok(vec![("mx1.ex.test", aaaa(1))], vec![]),
                    ),
                    (
                        "mx1.ex.test",
                        A,
                        Ok(vec![("mx1.ex.test", a(1)), ("mx1.ex.test", a(2))], vec![]),
                    ),
                ],
                result: MxResult::Found(vec![host("mx1.ex.test", 10, &[ip6(1), ip4(1), ip4(2)])]),
                asked: &["ex.test MX", "mx1.ex.test AAAA", "mx1.ex.test A"],
            },
            Case {
                what: "CNAME chain inside one answer (RFC 5321 §5.1)",
                zone: vec![(
                    "ex.test",
                    Mx,
                    Ok(
                        vec![
                            ("ex.test", cname("c1.test")),
                            ("c1.test", cname("c2.test")),
                            ("c2.test", mx(5, "mx.c2.test")),
                        ],
                        vec![("mx.c2.test", a(5))],
                    ),
                )],
                result: MxResult::Found(vec![host("mx.c2.test", 5, &[ip4(5)])]),
                asked: &["ex.test MX"],
            },
            Case {
                what: "CNAME the server did not chase is asked again",
                zone: vec![
                    (
                        "ex.test",
                        Mx,
                        Ok(vec![("ex.test", cname("c1.test"))], vec![]),
                    ),
                    (
                        "c1.test",
                        Mx,
                        Ok(
                            vec![("c1.test", mx(5, "mx.c1.test"))],
                            vec![("mx.c1.test", a(5))],
                        ),
                    ),
                ],
                result: MxResult::Found(vec![host("mx.c1.test", 5, &[ip4(5)])]),
                asked: &["ex.test MX", "c1.test MX"],
            },
            Case {
                what: "CNAME loop within an answer",
                zone: vec![(
                    "ex.test",
                    Mx,
                    Ok(
                        vec![("ex.test", cname("c1.test")), ("c1.test", cname("ex.test"))],
                        vec![],
                    ),
                )],
                result: MxResult::Temporary(
                    "ex.test MX: CNAME loop: ex.test -> c1.test -> ex.test".into(),
                ),
                asked: &["ex.test MX"],
            },
            Case {
                what: "CNAME loop across answers",
                zone: vec![
                    (
                        "ex.test",
                        Mx,
                        Ok(vec![("ex.test", cname("c1.test"))], vec![]),
                    ),
                    (
                        "c1.test",
                        Mx,
                        Ok(vec![("c1.test", cname("c2.test"))], vec![]),
                    ),
                    (
                        "c2.test",
                        Mx,
                        Ok(vec![("c2.test", cname("c1.test"))], vec![]),
                    ),
                ],
                result: MxResult::Temporary(
                    "ex.test MX: CNAME loop: ex.test -> c1.test -> c2.test -> c1.test".into(),
                ),
                asked: &["ex.test MX", "c1.test MX", "c2.test MX"],
            },
            Case {
                what: "CNAME chain too long",
                zone: vec![(
                    "ex.test",
                    Mx,
                    Ok(
                        vec![
                            ("ex.test", cname("c1.test")),
                            ("c1.test", cname("c2.test")),
                            ("c2.test", cname("c3.test")),
                            ("c3.test", cname("c4.test")),
                            ("c4.test", cname("c5.test")),
                            ("c5.test", cname("c6.test")),
                            ("c6.test", cname("c7.test")),
                            ("c7.test", cname("c8.test")),
                            ("c8.test", cname("c9.test")),
                            ("c9.test", mx(1, "mx.test")),
                        ],
                        vec![],
                    ),
                )],
                result: MxResult::Temporary(
                    "ex.test MX: CNAME chain from ex.test longer than 8".into(),
                ),
                asked: &["ex.test MX"],
            },
            Case {
                what: "null MX (RFC 7505)",
                zone: vec![("ex.test", Mx, Ok(vec![("ex.test", mx(0, ""))], vec![]))],
                result: MxResult::NullMx,
                asked: &["ex.test MX"],
            },
            Case {
                what: "null MX beside a real one is ignored",
                zone: vec![(
                    "ex.test",
                    Mx,
                    Ok(
                        vec![("ex.test", mx(0, "")), ("ex.test", mx(10, "mx1.ex.test"))],
                        vec![("mx1.ex.test", a(1))],
                    ),
                )],
                result: MxResult::Found(vec![host("mx1.ex.test", 10, &[ip4(1)])]),
                asked: &["ex.test MX"],
            },
            Case {
                what: "NXDOMAIN for the recipient domain is permanent",
                zone: vec![("ex.test", Mx, NxDomain(vec![]))],
                result: MxResult::NoSuchDomain,
                asked: &["ex.test MX"],
            },
            Case {
                what: "NXDOMAIN for a CNAME target is not",
                zone: vec![(
                    "ex.test",
                    Mx,
                    NxDomain(vec![("ex.test", cname("gone.test"))]),
                )],
                result: MxResult::Temporary("CNAME target of ex.test does not exist".into()),
                asked: &["ex.test MX"],
            },
            Case {
                what: "SERVFAIL is temporary",
                zone: vec![("ex.test", Mx, ServFail)],
                result: MxResult::Temporary("ex.test MX: SERVFAIL".into()),
                asked: &["ex.test MX"],
            },
            Case {
                what: "implicit MX (RFC 5321 §5.1)",
                zone: vec![
                    ("ex.test", Mx, Ok(vec![], vec![])),
                    ("ex.test", A, Ok(vec![("ex.test", a(7))], vec![])),
                ],
                result: MxResult::Found(vec![MxHost {
                    name: "ex.test".into(),
                    preference: 0,
                    addrs: vec![ip4(7)],
                    implicit: true,
                }]),
                asked: &["ex.test MX", "ex.test AAAA", "ex.test A"],
            },
            Case {
                what: "no MX and no address: temporary",
                zone: vec![],
                result: MxResult::Temporary("ex.test has no MX and no A or AAAA records".into()),
                asked: &["ex.test MX", "ex.test AAAA", "ex.test A"],
            },
            Case {
                what:
                    "MX target that is a CNAME is followed (RFC 2181 §10.3 forbids it; be liberal)",
                zone: vec![
                    (
                        "ex.test",
                        Mx,
                        Ok(vec![("ex.test", mx(10, "alias.ex.test"))], vec![]),
                    ),
                    (
                        "alias.ex.test",
                        Aaaa,
                        Ok(vec![("alias.ex.test", cname("real.ex.test"))], vec![]),
                    ),
                    (
                        "alias.ex.test",
                        A,
                        Ok(
                            vec![
                                ("alias.ex.test", cname("real.ex.test")),
                                ("real.ex.test", a(3)),
                            ],
                            vec![],
                        ),
                    ),
                ],
                result: MxResult::Found(vec![host("alias.ex.test", 10, &[ip4(3)])]),
                asked: &[
                    "ex.test MX",
                    "alias.ex.test AAAA",
                    "real.ex.test AAAA",
                    "alias.ex.test A",
                ],
            },
            Case {
                what: "MX target that is an IP literal is skipped (RFC 5321 §5.1)",
                zone: vec![(
                    "ex.test",
                    Mx,
                    Ok(
                        vec![
                            ("ex.test", mx(5, "192.0.2.66")),
                            ("ex.test", mx(10, "mx1.ex.test")),
                        ],
                        vec![("mx1.ex.test", a(1))],
                    ),
                )],
                result: MxResult::Found(vec![host("mx1.ex.test", 10, &[ip4(1)])]),
                asked: &["ex.test MX"],
            },
            Case {
                what: "one MX host unresolvable, the other used",
                zone: vec![
                    (
                        "ex.test",
                        Mx,
                        Ok(
                            vec![
                                ("ex.test", mx(10, "bad.ex.test")),
                                ("ex.test", mx(20, "mx2.ex.test")),
                            ],
                            vec![("mx2.ex.test", a(2))],
                        ),
                    ),
                    ("bad.ex.test", Aaaa, ServFail),
                    ("bad.ex.test", A, ServFail),
                ],
                result: MxResult::Found(vec![host("mx2.ex.test", 20, &[ip4(2)])]),
                asked: &["ex.test MX", "bad.ex.test AAAA", "bad.ex.test A"],
            },
            Case {
                what: "no MX host has an address: temporary, not a bounce",
                zone: vec![
                    (
                        "ex.test",
                        Mx,
                        Ok(vec![("ex.test", mx(10, "gone.ex.test"))], vec![]),
                    ),
                    ("gone.ex.test", Aaaa, NxDomain(vec![])),
                ],
                result: MxResult::Temporary("no MX host of ex.test has an address".into()),
                asked: &["ex.test MX", "gone.ex.test AAAA"],
            },
            Case {
                what: "address temporarily unavailable: the reason is kept",
                zone: vec![
                    (
                        "ex.test",
                        Mx,
                        Ok(vec![("ex.test", mx(10, "mx1.ex.test"))], vec![]),
                    ),
                    ("mx1.ex.test", Aaaa, ServFail),
                ],
                result: MxResult::Temporary("mx1.ex.test AAAA: SERVFAIL".into()),
                asked: &["ex.test MX", "mx1.ex.test AAAA", "mx1.ex.test A"],
            },
            Case {
                what: "duplicate exchanges collapse to the most preferred",
                zone: vec![(
                    "ex.test",
                    Mx,
                    Ok(
                        vec![
                            ("ex.test", mx(30, "mx1.ex.test")),
                            ("ex.test", mx(10, "MX1.ex.test")),
                        ],
                        vec![("mx1.ex.test", a(1))],
                    ),
                )],
                result: MxResult::Found(vec![host("mx1.ex.test", 10, &[ip4(1)])]),
                asked: &["ex.test MX"],
            },
        ];
        let no_hosts = Hosts::default();
        for c in cases {
            let (result, asked) = run_mx("Ex.Test.", &zone(&c.zone), &no_hosts, 1);
            assert_eq!(result, c.result, "{}", c.what);
            assert_eq!(asked, c.asked, "{}", c.what);
        }
    }

    #[test]
    fn equal_preferences_are_shuffled() {
        let z = zone(&[(
            "ex.test",
            RType::Mx,
            Canned::Ok(
                vec![
                    ("ex.test", mx(10, "a.ex.test")),
                    ("ex.test", mx(10, "b.ex.test")),
                    ("ex.test", mx(10, "c.ex.test")),
                    ("ex.test", mx(5, "first.ex.test")),
                    ("ex.test", mx(20, "last.ex.test")),
                ],
                vec![
                    ("a.ex.test", a(1)),
                    ("b.ex.test", a(2)),
                    ("c.ex.test", a(3)),
                    ("first.ex.test", a(4)),
                    ("last.ex.test", a(5)),
                ],
            ),
        )]);
        let mut orders = std::collections::HashSet::new();
        for seed in 0..200 {
            let (MxResult::Found(hosts), _) = run_mx("ex.test", &z, &Hosts::default(), seed) else {
                panic!("not found");
            };
            let names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
            assert_eq!(names[0], "first.ex.test");
            assert_eq!(names[4], "last.ex.test");
            let prefs: Vec<u16> = hosts.iter().map(|h| h.preference).collect();
            assert_eq!(prefs, [5, 10, 10, 10, 20]);
            orders.insert(names[1..4].join(","));
        }
        // All 3! orders of the equal-preference hosts show up.
        assert_eq!(orders.len(), 6, "{orders:?}");
    }

    #[test]
    fn hosts_file_gives_mx_host_addresses() {
        let hosts = Hosts::parse("192.0.2.77 mx1.ex.test\n");
        let z = zone(&[(
            "ex.test",
            RType::Mx,
            Canned::Ok(vec![("ex.test", mx(10, "mx1.ex.test"))], vec![]),
        )]);
        let (r, asked) = run_mx("ex.test", &z, &hosts, 0);
        assert_eq!(
            r,
            MxResult::Found(vec![host("mx1.ex.test", 10, &[ip4(77)])])
        );
        assert_eq!(asked, ["ex.test MX"]);
    }

    #[test]
    fn names_that_need_no_query() {
        // (domain, result)
        let cases: &[(&str, MxResult)] = &[
            (
                "[192.0.2.1]",
                MxResult::Found(vec![MxHost {
                    name: "[192.0.2.1]".into(),
                    preference: 0,
                    addrs: vec![ip4(1)],
                    implicit: true,
                }]),
            ),
            (
                "[IPv6:2001:db8::1]",
                MxResult::Found(vec![MxHost {
                    name: "[IPv6:2001:db8::1]".into(),
                    preference: 0,
                    addrs: vec![ip6(1)],
                    implicit: true,
                }]),
            ),
            ("", MxResult::NoSuchDomain),
            (".", MxResult::NoSuchDomain),
            ("a.b..c", MxResult::NoSuchDomain),
            ("[foo]", MxResult::NoSuchDomain),
            ("[192.0.2.300]", MxResult::NoSuchDomain),
        ];
        let long = format!("{}.test", "a".repeat(64));
        let hosts = Hosts::default();
        for (domain, want) in cases
            .iter()
            .cloned()
            .chain([(long.as_str(), MxResult::NoSuchDomain)])
        {
            let (r, asked) = run_mx(domain, &Zone::new(), &hosts, 0);
            assert_eq!(r, want, "{domain}");
            assert!(asked.is_empty(), "{domain}");
        }
    }

    #[test]
    fn host_lookups() {
        use Canned::*;
        use RType::{Aaaa, A};
        let hosts = Hosts::parse("192.0.2.25 relay.test\n");
        // (name, zone, result, questions)
        type Case = (
            &'static str,
            Vec<(&'static str, RType, Canned)>,
            HostResult,
            &'static [&'static str],
        );
        let cases: Vec<Case> = vec![
            (
                "relay.test",
                vec![("relay.test", A, ServFail)],
                HostResult::Found(vec![ip4(25)]),
                &[],
            ),
            ("192.0.2.9", vec![], HostResult::Found(vec![ip4(9)]), &[]),
            (
                "[IPv6:2001:db8::9]",
                vec![],
                HostResult::Found(vec![ip6(9)]),
                &[],
            ),
            (
                "smart.test",
                vec![
                    (
                        "smart.test",
                        Aaaa,
                        Ok(vec![("smart.test", aaaa(2))], vec![]),
                    ),
                    ("smart.test", A, Ok(vec![("smart.test", a(2))], vec![])),
                ],
                HostResult::Found(vec![ip6(2), ip4(2)]),
                &["smart.test AAAA", "smart.test A"],
            ),
            (
                "smart.test",
                vec![("smart.test", Aaaa, NxDomain(vec![]))],
                HostResult::NotFound("smart.test does not exist".into()),
                &["smart.test AAAA"],
            ),
            (
                "smart.test",
                vec![],
                HostResult::NotFound("smart.test has no A or AAAA records".into()),
                &["smart.test AAAA", "smart.test A"],
            ),
            (
                "smart.test",
                vec![("smart.test", Aaaa, ServFail), ("smart.test", A, ServFail)],
                HostResult::Temporary("smart.test A: SERVFAIL".into()),
                &["smart.test AAAA", "smart.test A"],
            ),
            (
                "smart.test",
                vec![
                    ("smart.test", Aaaa, ServFail),
                    ("smart.test", A, Ok(vec![("smart.test", a(2))], vec![])),
                ],
                HostResult::Found(vec![ip4(2)]),
                &["smart.test AAAA", "smart.test A"],
            ),
        ];
        for (name, z, want, want_asked) in cases {
            let z = zone(&z);
            let mut l = HostLookup::new(name, &hosts);
            let mut asked = Vec::new();
            let got = loop {
                match l.poll() {
                    Step::Done(r) => break r,
                    Step::Query(q) => {
                        asked.push(q.to_string());
                        l.handle(outcome(&q, z.get(&(q.name.clone(), q.rtype))));
                    }
                }
            };
            assert_eq!(got, want, "{name}");
            assert_eq!(asked, want_asked, "{name}");
        }
    }

    #[test]
    fn query_budget_ends_hostile_lookups() {
        // Every MX host answers with a fresh CNAME the server never chases.
        let no_hosts = Hosts::default();
        let mut l = MxLookup::new("ex.test", &no_hosts, 0);
        let mut n = 0;
        while let Step::Query(q) = l.poll() {
            n += 1;
            assert!(n <= MAX_QUERIES, "budget exceeded");
            let next = format!("c{n}.test");
            let bytes = answer(
                1,
                &q,
                RCODE::NoError,
                &[(q.name.as_str(), 60, cname(&next))],
                &[],
            );
            let Verdict::Answer(r) = check_answer(&bytes, 1, &q) else {
                panic!("canned")
            };
            l.handle(Outcome::Answer(r));
        }
        assert!(matches!(l.poll(), Step::Done(MxResult::Temporary(_))));
    }

    #[test]
    fn literals() {
        const CASES: &[(&str, Option<&str>)] = &[
            ("192.0.2.1", Some("192.0.2.1")),
            ("[192.0.2.1]", Some("192.0.2.1")),
            ("[IPv6:2001:db8::1]", Some("2001:db8::1")),
            ("[ipv6:2001:db8::1]", Some("2001:db8::1")),
            ("2001:db8::1", Some("2001:db8::1")),
            ("[2001:db8::1]", None),
            ("[IPv6:192.0.2.1]", None),
            ("mx.example", None),
            ("[", None),
            ("[]", None),
        ];
        for &(s, want) in CASES {
            let want = want.map(|w| w.parse::<IpAddr>().expect("ip"));
            assert_eq!(ip_literal(s), want, "{s}");
        }
    }
}
