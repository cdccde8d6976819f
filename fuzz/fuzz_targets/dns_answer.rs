//! Arbitrary bytes as the answer to every question an MX lookup asks: exercises answer
//! judging (`check_answer`: header, ID, TC, question echo, record parsing) and, when the
//! bytes pass, the lookup logic on top (CNAME following, null MX, MX ordering, address
//! collection). Nothing may panic. The ID and the question come from the input itself,
//! so the fuzzer can reach past the matching checks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postling::dns::query::{check_answer, Verdict};
use postling::dns::{Hosts, MxLookup, Outcome, Step};

fuzz_target!(|data: &[u8]| {
    let id = match data {
        [a, b, ..] => u16::from_be_bytes([*a, *b]),
        _ => 0,
    };
    // Ask for the name the message claims to answer, so the echo check can pass.
    let domain = simple_dns::Packet::parse(data)
        .ok()
        .and_then(|p| p.questions.first().map(|q| q.qname.to_string()))
        .unwrap_or_else(|| "example.test".to_string());
    let hosts = Hosts::default();
    let mut lookup = MxLookup::new(&domain, &hosts, u64::from(id));
    for _ in 0..64 {
        let Step::Query(q) = lookup.poll() else { break };
        match check_answer(data, id, &q) {
            Verdict::Answer(r) => lookup.handle(Outcome::Answer(r)),
            Verdict::Malformed(reason) => lookup.handle(Outcome::Failed(reason)),
            Verdict::Ignore(_) | Verdict::Truncated => break,
        }
    }
});
