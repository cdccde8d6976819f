//! `sendmail -t`: RFC 5322 address lists and whole messages of arbitrary bytes.
//! Addresses returned hold no control character and no whitespace outside quotes; a
//! prepared message has CRLF line ends only, ends with CRLF, is within `max_size`, has
//! a header section of fields and continuations ended by an empty line, and no Bcc:,
//! Resent-Bcc: or Return-Path: field. Input: `[flags] [message]`; flags: `-i`, `-F`
//! name, null sender, small size cap.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postling::sendmail::addresses::parse_address_list;
use postling::sendmail::message::{prepare, PrepareOptions};

fn check_address(a: &str) {
    // A tab is whitespace (allowed in quotes, checked below), not a control here.
    assert!(
        !a.is_empty() && !a.chars().any(|c| c.is_control() && c != '\t'),
        "{a:?}"
    );
    let (mut quoted, mut escaped) = (false, false);
    for c in a.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c.is_ascii_whitespace() => assert!(quoted, "whitespace outside quotes in {a:?}"),
            _ => {}
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, input)) = data.split_first() else {
        return;
    };
    if let Ok(list) = parse_address_list(input) {
        list.iter().for_each(|a| check_address(a));
    }
    let opts = PrepareOptions {
        ignore_dots: flags & 1 != 0,
        read_recipients: true,
        sender: if flags & 4 != 0 {
            String::new()
        } else {
            "cron@host.example".into()
        },
        from_header_name: (flags & 2 != 0).then(|| "Jörg \"the\" Müller, Esq.".into()),
        hostname: "host.example".into(),
        now: 1_796_396_783,
        message_id_local: "20261203.ABC".into(),
        max_size: if flags & 8 != 0 { 300 } else { 1 << 20 },
    };
    let Ok(p) = prepare(input, &opts) else { return };
    let out = &p.data;
    assert!(out.len() as u64 <= opts.max_size && out.ends_with(b"\r\n"));
    assert!(
        out.iter().enumerate().all(|(i, &c)| match c {
            b'\r' => out.get(i + 1) == Some(&b'\n'),
            b'\n' => i > 0 && out[i - 1] == b'\r',
            _ => true,
        }),
        "bare CR or LF"
    );
    p.header_recipients.iter().for_each(|a| check_address(a));
    let end = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no empty line after the header section");
    for (i, line) in out[..end].split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if i > 0 && matches!(line.first(), Some(b' ' | b'\t')) {
            continue;
        }
        let name_len = line
            .iter()
            .take_while(|&&b| (33..=126).contains(&b) && b != b':')
            .count();
        let after = line[name_len..].iter().find(|&&b| b != b' ' && b != b'\t');
        assert!(
            name_len > 0 && after == Some(&b':'),
            "not a field: {:?}",
            String::from_utf8_lossy(line)
        );
        let name = line[..name_len].to_ascii_lowercase();
        assert!(
            ![&b"bcc"[..], b"resent-bcc", b"return-path"].contains(&name.as_slice()),
            "{:?} kept",
            String::from_utf8_lossy(line)
        );
    }
});
