//! The sans-I/O SMTP client fed arbitrary server bytes in arbitrary chunks (layout: see
//! `common`), driven as `delivery::connection` drives it: one or two messages, TLS and
//! the body when events ask, QUIT when done, the connection lost at the end. Checks:
//! each `send` gets exactly one `MessageDone` with one outcome per recipient, and
//! `Delivered` only after the body went out; `Failed` is never a delivery and nothing
//! follows it or `Closed`; no envelope or credentials leave in plaintext when TLS is
//! required; output is CRLF-only and bounded by the input; `dsn` of any outcome is an
//! enhanced code of the reply's class.
//!
//! Input: `[flags] [chunking] [server bytes]`. Flags: TLS policy (2 bits), implicit TLS,
//! credentials, TLS handshake fails, odd recipients (UTF-8, unsafe), 8-bit, two messages.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use postling::auth::secret::Secret;
use postling::smtp::client::{
    dsn, Client, ClientSettings, Credentials, Event, MessageStart, Outcome, TlsPolicy,
};

const BODY: &[u8] = b"Subject: t\r\n\r\n.leading dot\r\n.\r\nlast line";

#[derive(Default)]
struct Seen {
    sends: usize,
    done: usize,
    body_sent: bool,
    ended: bool, // Failed or Closed seen
    out: usize,
}

fn check_dsn(o: &Outcome) {
    let (r, d) = (o.reply(), dsn(o.reply()));
    let parts: Vec<&str> = d.split('.').collect();
    assert!(
        parts.len() == 3 && parts[0] == (r.code / 100).to_string(),
        "dsn {d:?} for {r:?}"
    );
}

fn flush(c: &mut Client, s: &mut Seen, guard: bool, auth_guard: bool) {
    let out = c.take_output();
    s.out += out.len();
    assert!(
        common::crlf_only(&out),
        "bare CR/LF sent: {:?}",
        String::from_utf8_lossy(&out)
    );
    if !c.is_tls() {
        let text = String::from_utf8_lossy(&out);
        let leak = |w: &str| text.lines().any(|l| l.starts_with(w));
        assert!(
            !guard || !["MAIL", "RCPT", "DATA", "AUTH"].into_iter().any(leak),
            "plaintext: {text:?}"
        );
        assert!(
            !auth_guard || !leak("AUTH"),
            "credentials in plaintext: {text:?}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, data)) = data.split_first() else {
        return;
    };
    let tls = [
        TlsPolicy::None,
        TlsPolicy::Opportunistic,
        TlsPolicy::Required,
        TlsPolicy::Opportunistic,
    ][usize::from(flags & 3)];
    let implicit_tls = flags & 4 != 0;
    let auth = (flags & 8 != 0).then(|| Credentials {
        username: "u".into(),
        password: Secret::copy_from(b"p"),
    });
    let recipients: Vec<String> = match flags & 32 {
        0 => vec!["a@example.net".into(), "b@example.net".into()],
        _ => vec![
            "ü@example.net".into(),
            "bad address@x".into(),
            "c@example.net".into(),
        ],
    };
    let msg = MessageStart {
        from: "s@example.org".into(),
        recipients,
        size: 1234,
        eight_bit: flags & 64 != 0,
    };
    let wanted = 1 + usize::from(flags >> 7);
    // Nothing of the envelope before TLS when it is required; no credentials ever
    // in plaintext unless the policy is None.
    let guard = tls == TlsPolicy::Required;
    let auth_guard = auth.is_some() && tls != TlsPolicy::None;
    let settings = ClientSettings {
        helo_name: "mx.test".into(),
        peer: "peer[192.0.2.1]:25".into(),
        tls,
        implicit_tls,
        auth,
    };
    let mut c = Client::new(settings);
    let mut s = Seen::default();
    let lines = data.iter().filter(|&&b| b == b'\n').count();
    let chunks = common::chunked(data);
    for chunk in chunks.map(Some).chain([None]) {
        match chunk {
            Some(bytes) => c.handle_input(bytes),
            None => c.handle_connection_lost(),
        }
        flush(&mut c, &mut s, guard, auth_guard);
        while let Some(ev) = c.poll_event() {
            assert!(!s.ended, "{ev:?} after Failed/Closed");
            match ev {
                Event::StartTls if flags & 16 != 0 => c.handle_tls_failure("handshake failed"),
                Event::StartTls => c.tls_started(),
                // A Ready made stale by replies in the same read (a 421 after the EHLO
                // reply): the Failed queued after it says why; nothing to send.
                Event::Ready if c.is_closed() => {}
                Event::Ready if s.sends < wanted => {
                    c.send(&msg);
                    s.sends += 1;
                    s.body_sent = false;
                }
                Event::Ready => c.quit(),
                Event::SendBody => {
                    c.write_body(BODY);
                    c.end_body();
                    s.body_sent = true;
                }
                Event::MessageDone(outcomes) => {
                    s.done += 1;
                    assert!(s.done <= s.sends, "MessageDone without a send");
                    assert_eq!(outcomes.len(), msg.recipients.len());
                    assert!(
                        s.body_sent || !outcomes.iter().any(Outcome::is_delivered),
                        "{outcomes:?}"
                    );
                    if flags & 32 != 0 {
                        assert!(outcomes[1].is_permanent(), "unsafe address not refused");
                    }
                    outcomes.iter().for_each(check_dsn);
                }
                Event::Failed(o) => {
                    assert!(!o.is_delivered());
                    assert_eq!(s.done, s.sends, "Failed before the message's MessageDone");
                    check_dsn(&o);
                    s.ended = true;
                }
                Event::Closed => s.ended = true,
            }
            flush(&mut c, &mut s, guard, auth_guard);
            c.phase();
        }
    }
    assert_eq!(s.done, s.sends, "a send without its MessageDone");
    assert!(
        s.out <= 1024 * (lines + 1) + s.sends * 2 * BODY.len(),
        "{} bytes out for {lines} lines",
        s.out
    );
});
