//! Building a query and judging a datagram that claims to answer it.
//!
//! Contract (the smoltcp `wire` habit): [`check_answer`] accepts any byte string and never
//! panics; it validates lengths once (through simple-dns) and returns owned values, so
//! nothing downstream touches the wire format again. An answer is accepted only when it
//! carries our query ID, has QR set, opcode QUERY and echoes our question (name, type and
//! class); anything else is [`Verdict::Ignore`]d as an off-path spoof or a stray, and the
//! transport keeps waiting for the real answer until its deadline (RFC 5452 §9.1).
//!
//! Names are kept as lower-case text without the trailing dot ([`normalise`]): DNS names
//! compare case-insensitively (RFC 4343), and the root name (the null MX target, RFC 7505)
//! is the empty string.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use simple_dns::rdata::{RData, OPT};
use simple_dns::{Name, Packet, PacketFlag, CLASS, OPCODE, QCLASS, QTYPE, RCODE, TYPE};

use super::conf::normalise;

/// RFC 6891 §6.2.5 and the 2020 DNS flag day: 1232 bytes avoids IP fragmentation on
/// any path with an MTU of 1280 (IPv6 minimum) and is large enough for MX answers with
/// their addresses in the additional section, saving a TCP retry.
pub const EDNS_UDP_SIZE: u16 = 1232;
/// Receive buffer for UDP answers. Larger than what we advertise so a server that
/// ignores our EDNS size still yields a whole datagram rather than a cut one.
pub const UDP_BUFFER: usize = 4096;
/// RFC 1035 §4.2.2: TCP messages carry a two-byte length, so 65535 at most.
pub const MAX_TCP_MESSAGE: usize = 65535;

/// The record types postling asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RType {
    A,
    Aaaa,
    Mx,
}

impl RType {
    fn wire(self) -> TYPE {
        match self {
            RType::A => TYPE::A,
            RType::Aaaa => TYPE::AAAA,
            RType::Mx => TYPE::MX,
        }
    }
}

impl fmt::Display for RType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RType::A => "A",
            RType::Aaaa => "AAAA",
            RType::Mx => "MX",
        })
    }
}

/// One question: a name (normalised, see the module docs) and a type, class IN.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Question {
    pub name: String,
    pub rtype: RType,
}

impl Question {
    pub fn new(name: &str, rtype: RType) -> Question {
        Question {
            name: normalise(name),
            rtype,
        }
    }
}

impl fmt::Display for Question {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.name, self.rtype)
    }
}

/// The response code, for the values the resolver treats differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rcode {
    NoError,
    FormErr,
    ServFail,
    NxDomain,
    NotImp,
    Refused,
    Other(u16),
}

impl From<RCODE> for Rcode {
    fn from(r: RCODE) -> Rcode {
        match r {
            RCODE::NoError => Rcode::NoError,
            RCODE::FormatError => Rcode::FormErr,
            RCODE::ServerFailure => Rcode::ServFail,
            RCODE::NameError => Rcode::NxDomain,
            RCODE::NotImplemented => Rcode::NotImp,
            RCODE::Refused => Rcode::Refused,
            other => Rcode::Other(other as u16),
        }
    }
}

impl fmt::Display for Rcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rcode::NoError => f.write_str("NOERROR"),
            Rcode::FormErr => f.write_str("FORMERR"),
            Rcode::ServFail => f.write_str("SERVFAIL"),
            Rcode::NxDomain => f.write_str("NXDOMAIN"),
            Rcode::NotImp => f.write_str("NOTIMP"),
            Rcode::Refused => f.write_str("REFUSED"),
            Rcode::Other(n) => write!(f, "RCODE {n}"),
        }
    }
}

/// The data of a record the resolver uses; every other type is `Other`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Data {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Cname(String),
    Mx { preference: u16, exchange: String },
    Other,
}

impl Data {
    pub fn rtype(&self) -> Option<RType> {
        match self {
            Data::A(_) => Some(RType::A),
            Data::Aaaa(_) => Some(RType::Aaaa),
            Data::Mx { .. } => Some(RType::Mx),
            Data::Cname(_) | Data::Other => None,
        }
    }
}

/// One resource record of class IN, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub name: String,
    pub ttl: u32,
    pub data: Data,
}

/// An answer that matched our question, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub rcode: Rcode,
    pub answers: Vec<Record>,
    pub additional: Vec<Record>,
    /// RFC 2308 §5: how long a negative answer (NXDOMAIN or no data) may be cached:
    /// the lesser of the authority SOA's TTL and its MINIMUM field. `None` without SOA,
    /// and then RFC 2308 §5 says not to cache it.
    pub negative_ttl: Option<u32>,
}

/// What the transport has to say about one question after trying its servers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A final answer: NOERROR (with or without data) or NXDOMAIN.
    Answer(Response),
    /// No server gave a final answer: timeouts, SERVFAIL, REFUSED, malformed answers,
    /// network errors. Always a temporary condition.
    Failed(String),
}

/// The judgement on one received message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not an answer to our query (wrong ID, not a response, another question): drop it
    /// and keep waiting, as for an off-path spoof.
    Ignore(&'static str),
    /// TC set (RFC 1035 §4.1.1): ask again over TCP (RFC 7766 §5).
    Truncated,
    /// Carries our ID but cannot be used.
    Malformed(String),
    Answer(Response),
}

/// What to do with a matched response's code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// NOERROR or NXDOMAIN: the answer stands (RFC 1035 §4.1.1).
    Final,
    /// FORMERR, NOTIMP or (some old servers) SERVFAIL in reply to a query with an OPT
    /// record: RFC 6891 §7 says to retry without EDNS.
    RetryWithoutEdns,
    /// SERVFAIL, REFUSED and the rest: this server cannot help; ask the next one.
    NextServer,
}

pub fn disposition(rcode: Rcode, edns_sent: bool) -> Disposition {
    match rcode {
        Rcode::NoError | Rcode::NxDomain => Disposition::Final,
        Rcode::FormErr | Rcode::NotImp if edns_sent => Disposition::RetryWithoutEdns,
        _ => Disposition::NextServer,
    }
}

/// The wire form of a query: ID `id`, RD set (we are a stub resolver, RFC 1035
/// §4.1.1), one question of class IN, and an OPT record advertising
/// [`EDNS_UDP_SIZE`] when `edns` (RFC 6891 §6.1.1).
pub fn build_query(id: u16, q: &Question, edns: bool) -> Result<Vec<u8>, String> {
    let name = Name::new(&q.name).map_err(|e| format!("bad name '{}': {e}", q.name))?;
    let mut packet = Packet::new_query(id);
    packet.set_flags(PacketFlag::RECURSION_DESIRED);
    packet.questions.push(simple_dns::Question::new(
        name,
        QTYPE::TYPE(q.rtype.wire()),
        QCLASS::CLASS(CLASS::IN),
        false,
    ));
    if edns {
        *packet.opt_mut() = Some(OPT {
            opt_codes: Vec::new(),
            udp_packet_size: EDNS_UDP_SIZE,
            version: 0,
        });
    }
    packet
        .build_bytes_vec()
        .map_err(|e| format!("cannot build query for {q}: {e}"))
}

/// Judge `msg` as the answer to query `id` for `q`. Never panics.
pub fn check_answer(msg: &[u8], id: u16, q: &Question) -> Verdict {
    // RFC 1035 §4.1.1: the header is 12 bytes; ID first, then QR|Opcode|AA|TC|RD, RA|Z|RCODE.
    if msg.len() < 12 {
        return Verdict::Ignore("shorter than a DNS header");
    }
    if u16::from_be_bytes([msg[0], msg[1]]) != id {
        return Verdict::Ignore("wrong ID");
    }
    let flags = u16::from_be_bytes([msg[2], msg[3]]);
    if flags & 0x8000 == 0 {
        return Verdict::Ignore("not a response");
    }
    if (flags >> 11) & 0xf != 0 {
        return Verdict::Ignore("not a standard query response");
    }
    // The body of a truncated message may be cut anywhere: check TC before parsing.
    // Only the ID vouches for it, but the worst a forged TC can do is make us use TCP.
    if flags & 0x0200 != 0 {
        return Verdict::Truncated;
    }
    let packet = match Packet::parse(msg) {
        Ok(p) => p,
        Err(e) => return Verdict::Malformed(format!("malformed answer: {e}")),
    };
    if packet.opcode() != OPCODE::StandardQuery {
        return Verdict::Ignore("not a standard query response");
    }
    let rcode = Rcode::from(packet.rcode());
    match packet.questions.as_slice() {
        [one] if question_matches(one, q) => {}
        // Some servers drop the question from a FORMERR/NOTIMP (RFC 6891 §7 fallback
        // depends on seeing it); accept those as the failure they report.
        [] if matches!(rcode, Rcode::FormErr | Rcode::NotImp) => {}
        _ => return Verdict::Ignore("answer to another question"),
    }
    Verdict::Answer(Response {
        rcode,
        answers: owned_records(&packet.answers),
        additional: owned_records(&packet.additional_records),
        negative_ttl: negative_ttl(&packet),
    })
}

/// Name, type and class must echo ours. Names compare as `Name`s (case-insensitive,
/// byte-exact otherwise), not as display strings, which are lossy for odd bytes.
fn question_matches(got: &simple_dns::Question, q: &Question) -> bool {
    let Ok(want) = Name::new(&q.name) else {
        return false;
    };
    got.qname == want
        && got.qtype == QTYPE::TYPE(q.rtype.wire())
        && got.qclass == QCLASS::CLASS(CLASS::IN)
}

fn owned_records(rrs: &[simple_dns::ResourceRecord]) -> Vec<Record> {
    rrs.iter()
        .filter(|rr| rr.class == CLASS::IN)
        .map(|rr| Record {
            name: normalise(&rr.name.to_string()),
            ttl: rr.ttl,
            data: match &rr.rdata {
                RData::A(a) => Data::A(Ipv4Addr::from(a.address)),
                RData::AAAA(a) => Data::Aaaa(Ipv6Addr::from(a.address)),
                RData::CNAME(c) => Data::Cname(normalise(&c.0.to_string())),
                RData::MX(mx) => Data::Mx {
                    preference: mx.preference,
                    exchange: normalise(&mx.exchange.to_string()),
                },
                _ => Data::Other,
            },
        })
        .collect()
}

fn negative_ttl(packet: &Packet) -> Option<u32> {
    packet.name_servers.iter().find_map(|rr| match &rr.rdata {
        RData::SOA(soa) => Some(rr.ttl.min(soa.minimum)),
        _ => None,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use simple_dns::rdata::{A, AAAA, CNAME, MX, SOA};
    use simple_dns::ResourceRecord;

    /// A canned answer to `q` with ID `id`, built with simple-dns as a server would.
    pub(crate) fn answer(
        id: u16,
        q: &Question,
        rcode: RCODE,
        answers: &[(&str, u32, Data)],
        additional: &[(&str, u32, Data)],
    ) -> Vec<u8> {
        let mut p = Packet::new_reply(id);
        *p.rcode_mut() = rcode;
        p.questions.push(simple_dns::Question::new(
            Name::new_unchecked(&q.name),
            QTYPE::TYPE(q.rtype.wire()),
            QCLASS::CLASS(CLASS::IN),
            false,
        ));
        for (section, rrs) in [(0, answers), (1, additional)] {
            for (name, ttl, data) in rrs {
                let rdata = match data {
                    Data::A(ip) => RData::A(A::from(*ip)),
                    Data::Aaaa(ip) => RData::AAAA(AAAA::from(*ip)),
                    Data::Cname(t) => RData::CNAME(CNAME(Name::new_unchecked(t))),
                    Data::Mx {
                        preference,
                        exchange,
                    } => RData::MX(MX {
                        preference: *preference,
                        exchange: Name::new_unchecked(exchange),
                    }),
                    Data::Other => RData::SOA(SOA {
                        mname: Name::new_unchecked("ns.test"),
                        rname: Name::new_unchecked("hostmaster.test"),
                        serial: 1,
                        refresh: 3600,
                        retry: 600,
                        expire: 86400,
                        minimum: 60,
                    }),
                };
                let rr = ResourceRecord::new(Name::new_unchecked(name), CLASS::IN, *ttl, rdata);
                match (section, data) {
                    // A SOA goes to the authority section, as in a negative answer.
                    (_, Data::Other) => p.name_servers.push(rr),
                    (0, _) => p.answers.push(rr),
                    _ => p.additional_records.push(rr),
                }
            }
        }
        p.build_bytes_vec_compressed().expect("canned answer")
    }

    fn q(name: &str, t: RType) -> Question {
        Question::new(name, t)
    }

    #[test]
    fn query_wire_format() {
        let bytes = build_query(0xbeef, &q("Example.TEST.", RType::Mx), true).expect("build");
        let p = Packet::parse(&bytes).expect("parse");
        assert_eq!(p.id(), 0xbeef);
        assert!(p.has_flags(PacketFlag::RECURSION_DESIRED));
        assert!(!p.has_flags(PacketFlag::RESPONSE));
        assert_eq!(p.questions.len(), 1);
        assert_eq!(p.questions[0].qname.to_string(), "example.test");
        assert_eq!(p.questions[0].qtype, QTYPE::TYPE(TYPE::MX));
        assert_eq!(p.opt().map(|o| o.udp_packet_size), Some(EDNS_UDP_SIZE));
        let plain = build_query(1, &q("example.test", RType::A), false).expect("build");
        assert!(Packet::parse(&plain).expect("parse").opt().is_none());
        // A label over 63 bytes cannot be asked (RFC 1035 §2.3.4).
        assert!(build_query(1, &q(&"a".repeat(64), RType::A), false).is_err());
    }

    #[test]
    fn answers_are_matched_or_ignored() {
        let mx = q("example.test", RType::Mx);
        let good = answer(7, &mx, RCODE::NoError, &[], &[]);
        let mut query_not_response = build_query(7, &mx, false).expect("q");
        query_not_response[2] &= 0x7f;
        let mut truncated = good.clone();
        truncated[2] |= 0x02;
        truncated.truncate(20);
        let mut cut = good.clone();
        cut.truncate(good.len() - 3);
        let mut notify = good.clone();
        notify[2] |= 4 << 3;
        // (message, expected ID, expected question, verdict kind)
        let cases: &[(&[u8], u16, &Question, &str)] = &[
            (&good, 7, &mx, "answer"),
            (&good, 8, &mx, "ignore"),
            (&good, 7, &q("example.test", RType::A), "ignore"),
            (&good, 7, &q("other.test", RType::Mx), "ignore"),
            (&good, 7, &q("EXAMPLE.test", RType::Mx), "answer"),
            (&query_not_response, 7, &mx, "ignore"),
            (&notify, 7, &mx, "ignore"),
            (&truncated, 7, &mx, "truncated"),
            (&truncated, 9, &mx, "ignore"),
            (&cut, 7, &mx, "malformed"),
            (&good[..11], 7, &mx, "ignore"),
            (b"", 7, &mx, "ignore"),
        ];
        for (i, &(msg, id, question, want)) in cases.iter().enumerate() {
            let got = match check_answer(msg, id, question) {
                Verdict::Answer(_) => "answer",
                Verdict::Ignore(_) => "ignore",
                Verdict::Truncated => "truncated",
                Verdict::Malformed(_) => "malformed",
            };
            assert_eq!(got, want, "case {i}");
        }
    }

    #[test]
    fn records_are_owned_and_normalised() {
        let mx = q("example.test", RType::Mx);
        let msg = answer(
            1,
            &mx,
            RCODE::NoError,
            &[(
                "Example.Test",
                300,
                Data::Mx {
                    preference: 10,
                    exchange: "MX1.example.test".into(),
                },
            )],
            &[
                ("mx1.example.test", 60, Data::A(Ipv4Addr::new(192, 0, 2, 1))),
                ("ns.test", 60, Data::Other),
            ],
        );
        let Verdict::Answer(r) = check_answer(&msg, 1, &mx) else {
            panic!("not an answer");
        };
        assert_eq!(r.rcode, Rcode::NoError);
        assert_eq!(
            r.answers,
            vec![Record {
                name: "example.test".into(),
                ttl: 300,
                data: Data::Mx {
                    preference: 10,
                    exchange: "mx1.example.test".into()
                }
            }]
        );
        assert_eq!(r.additional.len(), 1);
        // RFC 2308 §5: min(SOA TTL 60, MINIMUM 60).
        assert_eq!(r.negative_ttl, Some(60));
    }

    #[test]
    fn dispositions() {
        const CASES: &[(Rcode, bool, Disposition)] = &[
            (Rcode::NoError, true, Disposition::Final),
            (Rcode::NxDomain, false, Disposition::Final),
            (Rcode::FormErr, true, Disposition::RetryWithoutEdns),
            (Rcode::NotImp, true, Disposition::RetryWithoutEdns),
            (Rcode::FormErr, false, Disposition::NextServer),
            (Rcode::ServFail, true, Disposition::NextServer),
            (Rcode::Refused, false, Disposition::NextServer),
            (Rcode::Other(9), false, Disposition::NextServer),
        ];
        for &(rcode, edns, want) in CASES {
            assert_eq!(disposition(rcode, edns), want, "{rcode} {edns}");
        }
    }
}
