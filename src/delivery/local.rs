//! Local delivery of one recipient: alias expansion, then a Maildir per mailbox.
//!
//! Invariants:
//! - A recipient that is one mailbox (no alias, or an alias to one user) is delivered
//!   and judged directly: a transient failure retries that recipient, so nothing is
//!   delivered twice.
//! - A recipient that expands further is *fanned out*: every mailbox is tried now, and
//!   what did not succeed, plus every remote target, becomes a recipient of its own in
//!   the envelope (a mailbox as a bare user name, which routing never expands again).
//!   The original recipient is then done: delivered, or failed with the expansion
//!   error when the alias table is broken (sendmail's behaviour).

use std::fs::File;
use std::path::Path;

use super::schedule::Verdict;
use crate::config::Config;
use crate::local::aliases::Aliases;
use crate::local::directory::system_user_ids;
use crate::local::expand::{expand, Target};
use crate::local::maildir;

/// What became of one local recipient.
#[derive(Debug, PartialEq, Eq)]
pub struct LocalOutcome {
    pub verdict: Verdict,
    pub reply: String,
    /// Recipients to add to the envelope: (address, already failed with this reply).
    pub fan_out: Vec<FanOut>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct FanOut {
    pub address: String,
    /// `None`: still to deliver (a remote target); `Some`: the attempt already made (a
    /// mailbox that failed, transiently or for good).
    pub done: Option<(Verdict, String)>,
}

/// Where local delivery reads and writes.
pub struct LocalContext<'a> {
    /// Queue ID, for the log.
    pub id: &'a str,
    pub config: &'a Config,
    pub aliases: &'a Aliases,
    pub passwd: &'a Path,
    /// The spool message file.
    pub message: &'a Path,
    /// Envelope sender (`""` for `<>`), for Return-Path.
    pub sender: &'a str,
    /// Mailboxes this message was already delivered to in this pass: a user named
    /// directly and through an alias gets one copy, as with sendmail and Postfix.
    pub seen: &'a std::cell::RefCell<std::collections::HashSet<String>>,
}

/// Deliver `address` (`user@local.domain`, or a bare name = an expanded mailbox).
pub fn deliver(ctx: &LocalContext, address: &str, expanded: bool) -> LocalOutcome {
    if expanded {
        let (verdict, reply) = to_mailbox(ctx, address, address);
        return LocalOutcome {
            verdict,
            reply,
            fan_out: Vec::new(),
        };
    }
    let config = ctx.config;
    let expansion = expand(ctx.aliases, |d| config.is_local_domain(d), address);
    if let ([Target::Mailbox { user }], []) =
        (expansion.targets.as_slice(), expansion.errors.as_slice())
    {
        let (verdict, reply) = to_mailbox(ctx, user, address);
        return LocalOutcome {
            verdict,
            reply,
            fan_out: Vec::new(),
        };
    }
    let mut fan_out = Vec::new();
    let mut delivered = 0;
    for target in &expansion.targets {
        match target {
            Target::Mailbox { user } => {
                let (verdict, reply) = to_mailbox(ctx, user, address);
                if verdict == Verdict::Delivered {
                    delivered += 1;
                    log::info!(
                        "to=<{user}>, orig_to=<{address}>, relay=local, status=sent ({reply})"
                    );
                } else {
                    // Tried once already: the fanned-out recipient starts with this
                    // attempt recorded (deferred or failed), not as pending.
                    fan_out.push(FanOut {
                        address: user.clone(),
                        done: Some((verdict, reply)),
                    });
                }
            }
            Target::Remote { address } => fan_out.push(FanOut {
                address: address.clone(),
                done: None,
            }),
        }
    }
    match expansion.errors.first() {
        Some(e) => LocalOutcome {
            verdict: Verdict::Permanent,
            reply: e.reply(),
            fan_out,
        },
        None => LocalOutcome {
            verdict: Verdict::Delivered,
            reply: format!(
                "250 2.0.0 expanded: {delivered} delivered, {} more recipient(s)",
                fan_out.len()
            ),
            fan_out,
        },
    }
}

/// One copy into `mail_dir/<user>/`.
fn to_mailbox(ctx: &LocalContext, user: &str, delivered_to: &str) -> (Verdict, String) {
    let user = user.to_ascii_lowercase();
    if ctx.seen.borrow().contains(&user) {
        return (
            Verdict::Delivered,
            "250 2.0.0 duplicate: this mailbox already has a copy".into(),
        );
    }
    let Some(path) = maildir::mailbox_path(&ctx.config.mail_dir, &user) else {
        return (Verdict::Permanent, "550 5.1.1 bad mailbox name".into());
    };
    // The user must still exist: a Maildir, or a system user (whose Maildir we create,
    // owned by them when we run as root).
    if !path.is_dir() {
        match system_user_ids(ctx.passwd, &user) {
            Some(ids) => {
                // SAFETY: geteuid has no preconditions.
                let owner = (unsafe { libc::geteuid() } == 0).then_some(ids);
                if let Err(e) = maildir::ensure_maildir(&path, owner) {
                    return (verdict_of(&e), e.reply());
                }
            }
            None => {
                return (
                    Verdict::Permanent,
                    "550 5.1.1 user unknown (no such mailbox)".into(),
                )
            }
        }
    }
    let mut file = match File::open(ctx.message) {
        Ok(f) => f,
        Err(e) => {
            return (
                Verdict::Transient,
                format!(
                    "451 4.3.0 cannot read queue file: {}",
                    crate::time::io_reason(&e)
                ),
            )
        }
    };
    match maildir::deliver(
        &path,
        &mut file,
        ctx.sender,
        delivered_to,
        crate::time::unix_micros(),
    ) {
        Ok(_) => {
            ctx.seen.borrow_mut().insert(user);
            (Verdict::Delivered, "250 2.0.0 delivered to maildir".into())
        }
        Err(e) => (verdict_of(&e), e.reply()),
    }
}

fn verdict_of(e: &maildir::DeliveryError) -> Verdict {
    if e.is_permanent() {
        Verdict::Permanent
    } else {
        Verdict::Transient
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::path::PathBuf;

    struct Fixture {
        dir: PathBuf,
        config: Config,
        aliases: Aliases,
        seen: std::cell::RefCell<std::collections::HashSet<String>>,
    }

    impl Fixture {
        fn new(aliases: &str) -> Fixture {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "postling-local-{}-{}",
                std::process::id(),
                N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            ));
            fs::create_dir_all(dir.join("mail/alice")).expect("mkdir");
            fs::create_dir_all(dir.join("mail/bob")).expect("mkdir");
            fs::write(dir.join("passwd"), "carol:x:1234:1234::/:/bin/sh\n").expect("passwd");
            fs::write(dir.join("msg"), "Subject: hi\r\n\r\nbody\r\n").expect("msg");
            let text = format!(
                "hostname = mx.test\nlocal_domains = mx.test\nmail_dir = {}/mail\n",
                dir.display()
            );
            let config = crate::config::parse(Path::new("t"), &text).expect("config");
            let aliases = Aliases::parse(Path::new("a"), aliases).expect("aliases");
            Fixture {
                dir,
                config,
                aliases,
                seen: Default::default(),
            }
        }

        fn deliver(&self, address: &str, expanded: bool) -> LocalOutcome {
            let passwd = self.dir.join("passwd");
            let message = self.dir.join("msg");
            let ctx = LocalContext {
                seen: &self.seen,
                id: "TEST",
                config: &self.config,
                aliases: &self.aliases,
                passwd: &passwd,
                message: &message,
                sender: "s@example.org",
            };
            deliver(&ctx, address, expanded)
        }

        fn count(&self, user: &str) -> usize {
            fs::read_dir(self.dir.join("mail").join(user).join("new"))
                .map(|d| d.count())
                .unwrap_or(0)
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }

    #[test]
    fn a_plain_mailbox() {
        let f = Fixture::new("");
        let out = f.deliver("Alice@mx.test", false);
        assert_eq!(out.verdict, Verdict::Delivered, "{out:?}");
        assert!(out.fan_out.is_empty());
        assert_eq!(f.count("alice"), 1);
        let file = fs::read_dir(f.dir.join("mail/alice/new"))
            .expect("new")
            .next()
            .expect("file")
            .expect("entry")
            .path();
        let text = fs::read_to_string(file).expect("read");
        assert!(text.starts_with("Return-Path: <s@example.org>\n"), "{text}");
        assert!(text.contains("Delivered-To: Alice@mx.test\n"), "{text}");
    }

    #[test]
    fn unknown_user_fails_permanently() {
        let f = Fixture::new("");
        let out = f.deliver("nobody-here@mx.test", false);
        assert_eq!(out.verdict, Verdict::Permanent);
        assert!(out.reply.starts_with("550 5.1.1"), "{}", out.reply);
    }

    #[test]
    fn a_system_user_gets_a_maildir() {
        let f = Fixture::new("");
        let out = f.deliver("carol@mx.test", false);
        assert_eq!(out.verdict, Verdict::Delivered, "{out:?}");
        assert_eq!(f.count("carol"), 1);
    }

    #[test]
    fn an_alias_fans_out_once() {
        let f = Fixture::new("team: alice, bob, friend@elsewhere.example, ghost\n");
        let out = f.deliver("team@mx.test", false);
        assert_eq!(out.verdict, Verdict::Delivered, "{out:?}");
        assert_eq!((f.count("alice"), f.count("bob")), (1, 1));
        assert_eq!(
            out.fan_out,
            vec![
                FanOut {
                    address: "friend@elsewhere.example".into(),
                    done: None
                },
                FanOut {
                    address: "ghost".into(),
                    done: Some((
                        Verdict::Permanent,
                        "550 5.1.1 user unknown (no such mailbox)".into()
                    ))
                },
            ]
        );
        // In this pass alice already has her copy: naming her again adds none.
        let out = f.deliver("alice@mx.test", false);
        assert_eq!(out.verdict, Verdict::Delivered);
        assert_eq!(f.count("alice"), 1);
        // In a later pass, a fanned-out mailbox is delivered as itself.
        f.seen.borrow_mut().clear();
        let out = f.deliver("alice", true);
        assert_eq!(out.verdict, Verdict::Delivered);
        assert_eq!(f.count("alice"), 2);
    }

    #[test]
    fn an_alias_loop_bounces_the_recipient() {
        let f = Fixture::new("a: b\nb: a\n");
        let out = f.deliver("a@mx.test", false);
        assert_eq!(out.verdict, Verdict::Permanent);
        assert!(out.reply.contains("alias loop"), "{}", out.reply);
    }
}
