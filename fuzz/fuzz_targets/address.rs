//! RFC 5321 mailboxes and paths from arbitrary strings. A parsed mailbox is exactly its
//! input (nothing is fixed up), so its Display is the input and re-parses to an equal
//! value, and it meets the module's promises (lengths, no controls, no routing hacks,
//! ASCII unless SMTPUTF8). Input: `[flags] [UTF-8 text]`; flag bits: SMTPUTF8, allow `<>`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postling::smtp::address::{
    parse_path, Mailbox, MAX_DOMAIN, MAX_LABEL, MAX_LOCAL_PART, MAX_MAILBOX, MAX_PATH,
};

fn check(m: &Mailbox, utf8: bool) {
    let s = m.to_string();
    assert_eq!(
        Mailbox::parse(&s, utf8).as_ref(),
        Ok(m),
        "{s:?} does not re-parse"
    );
    let (local, domain) = (m.local_part(), m.domain());
    assert!(
        !local.is_empty() && local.len() <= MAX_LOCAL_PART && s.len() <= MAX_MAILBOX,
        "{s:?}"
    );
    assert!(
        !s.chars().any(char::is_control) && (utf8 || s.is_ascii()),
        "{s:?}"
    );
    assert!(
        local.starts_with('"') || !local.contains(['%', '!', '@']),
        "{s:?}"
    );
    if !m.domain_is_literal() {
        assert!(domain.len() <= MAX_DOMAIN, "{s:?}");
        for label in domain.split('.') {
            let ldh = label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || !c.is_ascii());
            assert!(
                ldh && !label.is_empty() && label.len() <= MAX_LABEL,
                "{s:?}"
            );
            assert!(!label.starts_with('-') && !label.ends_with('-'), "{s:?}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Ok(s) = std::str::from_utf8(rest) else {
        return;
    };
    let (utf8, allow_null) = (flags & 1 != 0, flags & 2 != 0);
    if let Ok(m) = Mailbox::parse(s, utf8) {
        assert_eq!(m.to_string(), s);
        check(&m, utf8);
    }
    match parse_path(s, allow_null, utf8) {
        Ok((Some(m), rest)) => {
            assert_eq!(format!("<{m}>{rest}"), s);
            assert!(m.to_string().len() + 2 <= MAX_PATH);
            check(&m, utf8);
        }
        Ok((None, rest)) => assert!(allow_null && s.strip_prefix("<>") == Some(rest)),
        Err(_) => {}
    }
});
