//! One SMTP command line (line end removed) of arbitrary bytes. An accepted command
//! holds only strings safe for a log line or a Received header (module invariants); a
//! rejection is a 5xx reply with an enhanced code and well-formed lines; the verb's
//! case does not matter.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postling::smtp::command::{parse, Command, ForwardPath};

fn clean(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

fuzz_target!(|line: &[u8]| {
    let result = parse(line);
    match &result {
        Ok(Command::Helo(name) | Command::Ehlo(name)) => {
            assert!(
                !name.is_empty() && name.is_ascii() && clean(name),
                "{name:?}"
            );
            assert_eq!(name.trim_matches(' '), name);
        }
        Ok(Command::Mail { from, .. }) => {
            assert!(from
                .as_ref()
                .is_none_or(|m| m.to_string().is_ascii() && clean(&m.to_string())));
        }
        Ok(Command::Rcpt {
            to: ForwardPath::Mailbox(m),
        }) => {
            assert!(m.to_string().is_ascii() && clean(&m.to_string()), "{m}");
        }
        Ok(Command::Auth { mechanism, initial }) => {
            assert!((1..=20).contains(&mechanism.len()), "{mechanism:?}");
            assert!(mechanism
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-' || b == b'_'));
            assert!(initial
                .as_deref()
                .is_none_or(|i| clean(i) && !i.is_empty() && !i.contains(' ')));
        }
        Ok(_) => {}
        Err(r) => {
            assert!(
                (500..600).contains(&r.code) && r.enhanced.is_some(),
                "{r:?}"
            );
            let wire = r.to_bytes();
            let text = std::str::from_utf8(&wire).expect("reply is UTF-8");
            assert!(text
                .split_terminator("\r\n")
                .all(|l| clean(l) && l.starts_with(&r.code.to_string())));
        }
    }
    // Verbs are case-insensitive: swapping the verb's ASCII case changes nothing.
    let verb_len = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
    let mut swapped = line.to_vec();
    for b in &mut swapped[..verb_len] {
        if b.is_ascii_alphabetic() {
            *b ^= 0x20;
        }
    }
    assert_eq!(parse(&swapped), result);
});
