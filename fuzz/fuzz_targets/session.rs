//! The SMTP server session fed an arbitrary client byte stream, split where the input
//! says (see `common`), with an in-memory backend. Checks what the session promises:
//! replies are well-formed reply lines, a `250 … queued` only follows a successful
//! commit (immediate, or a deferred group commit's result), a stored
//! message has CRLF line ends only and its envelope states its size and survives the
//! spool's encoding, the body stored never exceeds `max_message_size`, input is always
//! consumed once output is drained, and no message is left open at the end.
//!
//! Input: `[flags] [flags2] [chunking, see common] [client bytes]`. Flags pick the
//! config (the default, or 1K messages / 3 recipients), the peer (address, role,
//! STARTTLS, implicit TLS) and whether shutdown begins after the first chunk; flags2
//! whether commits are deferred (group commit) and whether they fail (disk full).
#![no_main]

mod common;

use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use postling::config::{self, Config, Role};
use postling::smtp::session::{Backend, Peer, Session, OUTPUT_HIGH_WATER};
use postling::spool::{envelope, Envelope, QueueId, SpoolError};

const CONFIG: &str =
    "hostname = mx.test\nlocal_domains = mx.test\nusers = /x\nauth_without_tls = yes\n";

/// Received header (HELO ≤ 255, an address, `for <path>`) plus Date: and Message-ID:.
const ADDED_MAX: u64 = 1024;

fn configs() -> &'static [Arc<Config>; 2] {
    static C: OnceLock<[Arc<Config>; 2]> = OnceLock::new();
    C.get_or_init(|| {
        let p = |t: &str| Arc::new(config::parse(Path::new("f"), t).expect("config"));
        [
            p(CONFIG),
            p(&format!(
                "{CONFIG}max_message_size = 1K\nmax_recipients = 3\n"
            )),
        ]
    })
}

#[derive(Default)]
struct Memory {
    max: u64,
    defers: bool,
    fails: bool,
    current: Option<Vec<u8>>,
    next: u32,
    /// Commits that succeeded: each must get its `250 … queued`.
    commits: usize,
}

impl Backend for Memory {
    fn local_user_exists(&self, local_part: &str) -> bool {
        local_part == "alice"
    }
    // alice/secret succeeds so the fuzzer can reach submission (AUTH required before MAIL).
    fn authenticate(&mut self, username: &str, password: &[u8]) -> bool {
        username == "alice" && password == b"secret"
    }
    fn begin_message(&mut self, _now: u64) -> Result<QueueId, SpoolError> {
        assert!(self.current.is_none(), "begin_message with a message open");
        self.next += 1;
        self.current = Some(Vec::new());
        Ok(QueueId::new(1_796_396_783_000_000, self.next))
    }
    fn write_message(&mut self, bytes: &[u8]) -> Result<(), SpoolError> {
        let m = self
            .current
            .as_mut()
            .expect("write_message with no message open");
        m.extend_from_slice(bytes);
        assert!(
            m.len() as u64 <= self.max + ADDED_MAX,
            "stored {} bytes",
            m.len()
        );
        Ok(())
    }
    fn commit_message(&mut self, env: &Envelope) -> Result<(), SpoolError> {
        let m = self
            .current
            .take()
            .expect("commit_message with no message open");
        assert!(
            env.size == m.len() as u64,
            "envelope size {} != stored size {}",
            env.size,
            m.len()
        );
        assert!(!env.recipients.is_empty());
        assert!(common::crlf_only(&m), "stored message has a bare CR or LF");
        let back = envelope::decode(&envelope::encode(env));
        assert_eq!(
            back.as_ref(),
            Ok(env),
            "envelope does not survive the spool"
        );
        if self.fails && !self.defers {
            return Err(SpoolError::NoSpace);
        }
        self.commits += usize::from(!self.defers);
        Ok(())
    }
    fn defers_commit(&self) -> bool {
        self.defers
    }
    fn abort_message(&mut self) {
        self.current = None;
    }
}

/// Whole replies: `ddd` + SP or `-` + printable text + CRLF, codes constant within one.
fn check_replies(out: &[u8], queued: &mut usize) {
    let text = std::str::from_utf8(out).expect("replies are UTF-8");
    assert!(text.is_empty() || text.ends_with("\r\n"), "{text:?}");
    let mut open: Option<&str> = None; // code of an unfinished multi-line reply
    for line in text.split_terminator("\r\n") {
        let b = line.as_bytes();
        let ok = b.len() >= 3
            && (b'2'..=b'5').contains(&b[0])
            && b[1..3].iter().all(u8::is_ascii_digit)
            && matches!(b.get(3), None | Some(b' ' | b'-'))
            && !line.chars().any(char::is_control);
        assert!(ok, "bad reply line {line:?}");
        assert!(
            open.is_none_or(|c| c == &line[..3]),
            "code changed: {text:?}"
        );
        open = (b.get(3) == Some(&b'-')).then(|| &line[..3]);
        *queued += usize::from(line.starts_with("250 2.0.0 Ok: queued as "));
    }
    assert!(open.is_none(), "unfinished reply {text:?}");
}

fuzz_target!(|data: &[u8]| {
    let [flags, flags2, data @ ..] = data else {
        return;
    };
    let (flags, flags2) = (*flags, *flags2);
    let config = Arc::clone(&configs()[usize::from(flags & 1)]);
    let ip: Option<IpAddr> = match (flags >> 1) & 3 {
        0 => Some([127, 0, 0, 1].into()),
        1 => Some([192, 0, 2, 1].into()),
        2 => None,
        _ => Some(std::net::Ipv6Addr::LOCALHOST.into()),
    };
    let role = [Role::Smtp, Role::Submission, Role::Submissions, Role::Smtp]
        [usize::from((flags >> 3) & 3)];
    let peer = Peer {
        ip,
        role,
        starttls: flags & 32 != 0,
        implicit_tls: flags & 64 != 0,
        prior_auth_failures: 0,
    };
    let mut backend = Memory {
        max: config.max_message_size,
        defers: flags2 & 1 != 0,
        fails: flags2 & 2 != 0,
        ..Memory::default()
    };
    let mut session = Session::new(config, peer);
    let mut queued = 0;
    for (i, chunk) in common::chunked(data).enumerate() {
        let mut pos = 0;
        while pos < chunk.len() && !session.is_closed() {
            let n = session.handle_input(&chunk[pos..], 1_796_396_783, &mut backend);
            pos += n;
            if session.is_committing() {
                // The server's group commit ends; only now may the 250 go out.
                let ok = !backend.fails;
                backend.commits += usize::from(ok);
                session.handle_commit_result(if ok { Ok(()) } else { Err(SpoolError::NoSpace) });
            }
            let delayed = session.take_reply_delay().is_some();
            let out = session.take_output();
            assert!(
                out.len() <= OUTPUT_HIGH_WATER + 4096,
                "{} bytes of replies",
                out.len()
            );
            check_replies(&out, &mut queued);
            assert!(
                n > 0 || delayed || !out.is_empty() || session.is_closed(),
                "stuck"
            );
            if session.wants_tls() {
                session.handle_tls_started();
            }
        }
        if i == 0 && flags & 128 != 0 {
            session.begin_shutdown();
        }
    }
    session.handle_disconnect(&mut backend);
    assert!(backend.current.is_none(), "message left open");
    assert_eq!(
        queued, backend.commits,
        "a 250 queued without a commit (or vice versa)"
    );
});
