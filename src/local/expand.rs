//! Alias expansion: one envelope recipient → the final places its copies go.
//!
//! Invariants:
//! - An address is *local* when it has no `@` or its domain passes `is_local`; its local
//!   part, lower-cased, is then looked up in the aliases. Anything else is
//!   [`Target::Remote`], passed on unchanged (RFC 5321 §2.4: a remote local part is the
//!   remote host's business, so it is never lower-cased or looked up).
//! - A local name that is not an alias is a [`Target::Mailbox`]. Whether that user exists
//!   is the delivery's question (`Directory`, `maildir::mailbox_path`), not this module's.
//! - Sendmail's self-reference rule: a target equal to the name being expanded
//!   (`root: root`, `alice: alice, bob`) is that name's own mailbox and is not expanded
//!   again.
//! - A target that names an alias already being expanded further up the same branch is
//!   a loop: that branch stops with [`ExpansionErrorKind::Loop`] ("alias loop"), the other
//!   branches still expand. Nothing here panics or recurses without bound:
//!   nesting stops at [`MAX_DEPTH`], and the result holds at most [`MAX_TARGETS`] targets.
//! - Each alias is expanded at most once per call (a second path to it adds nothing new
//!   after de-duplication), so the work is linear in the size of the aliases table even
//!   for "diamond" tables that would otherwise blow up exponentially.
//! - Targets are de-duplicated (mailboxes by lower-case name, remote addresses with the
//!   domain lower-cased) and kept in first-seen order.
//!
//! Suggested use by the delivery pass (sendmail's behaviour): deliver to every target;
//! if `errors` is not empty, the recipient also bounces with the first error's
//! [`ExpansionError::reply`]; if `targets` is empty it is simply failed with that reply.

use super::aliases::Aliases;

/// Alias nesting limit: sendmail's MAXRCRSN is 10, Postfix allows 1000 "expansion
/// depth"; 20 covers any sane table (`postmaster → root → admin → alice@…`) and keeps a
/// hostile or mistaken table cheap.
pub const MAX_DEPTH: usize = 20;

/// Fan-out limit per envelope recipient: one alias should not turn a message into more
/// copies than a small host should send in one go (Postfix's default
/// `virtual_alias_expansion_limit` is 1000).
pub const MAX_TARGETS: usize = 1000;

/// Where a copy of the message finally goes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// A local Maildir user (lower-case local part).
    Mailbox { user: String },
    /// An address handed to remote delivery, as written (no brackets).
    Remote { address: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpansionErrorKind {
    /// A target names an alias already being expanded on the same branch.
    Loop,
    /// Nesting deeper than [`MAX_DEPTH`].
    TooDeep,
    /// More than [`MAX_TARGETS`] targets.
    TooManyTargets,
}

impl ExpansionErrorKind {
    /// RFC 3463 enhanced status code: X.4.6 "routing loop detected" for a loop and for
    /// runaway nesting (sendmail reports both as a loop), X.2.4 "mailing list expansion
    /// problem" for fan-out.
    pub fn status(self) -> &'static str {
        match self {
            ExpansionErrorKind::Loop | ExpansionErrorKind::TooDeep => "5.4.6",
            ExpansionErrorKind::TooManyTargets => "5.2.4",
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            ExpansionErrorKind::Loop => "alias loop",
            ExpansionErrorKind::TooDeep => "alias nesting too deep",
            ExpansionErrorKind::TooManyTargets => "alias expands to too many addresses",
        }
    }
}

/// A branch of the expansion that was cut off. Always permanent: the table, not the
/// moment, is at fault, and retrying would give the same result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpansionError {
    /// The alias name (or address) at which the branch stopped.
    pub at: String,
    pub kind: ExpansionErrorKind,
}

impl ExpansionError {
    /// One reply line for `last_reply` and the bounce, e.g. `550 5.4.6 alias loop at bob`.
    pub fn reply(&self) -> String {
        format!(
            "550 {} {} at {}",
            self.kind.status(),
            self.kind.reason(),
            self.at
        )
    }
}

/// The result of expanding one envelope recipient.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expansion {
    /// De-duplicated final targets, in first-seen order; at most [`MAX_TARGETS`].
    pub targets: Vec<Target>,
    /// Branches that failed; empty when the whole expansion succeeded.
    pub errors: Vec<ExpansionError>,
}

/// Expand `recipient` (`local@domain` as accepted, no brackets; or a bare name).
/// `is_local` is asked about lower-cased domains.
pub fn expand(aliases: &Aliases, is_local: impl Fn(&str) -> bool, recipient: &str) -> Expansion {
    let mut walk = Walk {
        aliases,
        is_local: &is_local,
        out: Expansion::default(),
        path: Vec::new(),
        done: Vec::new(),
    };
    match local_name(&is_local, recipient) {
        // The recipient is itself an alias name: expand it as the root of the tree.
        Some(name) if aliases.get(&name).is_some() => walk.alias(&name),
        Some(name) => walk.push(Target::Mailbox { user: name }),
        None => walk.push(Target::Remote {
            address: recipient.to_string(),
        }),
    }
    walk.out
}

/// The lower-cased local part when `address` is local; `None` when it is remote.
fn local_name(is_local: &dyn Fn(&str) -> bool, address: &str) -> Option<String> {
    // The last `@` separates the domain: a quoted local part may itself contain `@`.
    match address.rsplit_once('@') {
        None => Some(address.to_ascii_lowercase()),
        Some((local, domain)) if is_local(&domain.to_ascii_lowercase()) => {
            Some(local.to_ascii_lowercase())
        }
        Some(_) => None,
    }
}

struct Walk<'a> {
    aliases: &'a Aliases,
    is_local: &'a dyn Fn(&str) -> bool,
    out: Expansion,
    /// Aliases being expanded on the current branch, outermost first.
    path: Vec<String>,
    /// Aliases fully expanded already (a small table is scanned faster than hashed).
    done: Vec<String>,
}

impl Walk<'_> {
    /// Expand alias `name` (known to be in the table and not on `path`).
    fn alias(&mut self, name: &str) {
        if self.path.len() >= MAX_DEPTH {
            self.error(name, ExpansionErrorKind::TooDeep);
            return;
        }
        let Some(targets) = self.aliases.get(name) else {
            return;
        };
        self.path.push(name.to_string());
        for t in targets {
            if self.full() {
                break;
            }
            match local_name(self.is_local, t) {
                None => self.push(Target::Remote { address: t.clone() }),
                // Self-reference: `alice: alice, bob` delivers to alice's own mailbox.
                Some(n) if n == name => self.push(Target::Mailbox { user: n }),
                Some(n) if self.aliases.get(&n).is_none() => self.push(Target::Mailbox { user: n }),
                Some(n) if self.path.contains(&n) => self.error(&n, ExpansionErrorKind::Loop),
                // Reached before by another branch: its targets are already in `out`.
                Some(n) if self.done.contains(&n) => {}
                Some(n) => self.alias(&n),
            }
        }
        self.path.pop();
        self.done.push(name.to_string());
    }

    fn full(&self) -> bool {
        self.out
            .errors
            .iter()
            .any(|e| e.kind == ExpansionErrorKind::TooManyTargets)
    }

    fn push(&mut self, target: Target) {
        let key = dedup_key(&target);
        if self.out.targets.iter().any(|t| dedup_key(t) == key) {
            return;
        }
        if self.out.targets.len() >= MAX_TARGETS {
            let at = self.path.first().cloned().unwrap_or_default();
            self.error(&at, ExpansionErrorKind::TooManyTargets);
            return;
        }
        self.out.targets.push(target);
    }

    fn error(&mut self, at: &str, kind: ExpansionErrorKind) {
        let e = ExpansionError {
            at: at.to_string(),
            kind,
        };
        if !self.out.errors.contains(&e) {
            self.out.errors.push(e);
        }
    }
}

/// Mailbox names are already lower-case; for a remote address only the domain is
/// case-insensitive (RFC 5321 §2.4), so `Bob@Example.org` and `Bob@example.org` are one
/// copy but `bob@example.org` is another.
fn dedup_key(t: &Target) -> (bool, String) {
    match t {
        Target::Mailbox { user } => (true, user.clone()),
        Target::Remote { address } => match address.rsplit_once('@') {
            Some((l, d)) => (false, format!("{l}@{}", d.to_ascii_lowercase())),
            None => (false, address.clone()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn local(domain: &str) -> bool {
        domain == "mx.test" || domain == "localhost"
    }

    fn mb(user: &str) -> Target {
        Target::Mailbox {
            user: user.to_string(),
        }
    }

    fn remote(address: &str) -> Target {
        Target::Remote {
            address: address.to_string(),
        }
    }

    fn err(at: &str, kind: ExpansionErrorKind) -> ExpansionError {
        ExpansionError {
            at: at.to_string(),
            kind,
        }
    }

    const TABLE: &str = "\
postmaster: root
root: admin
admin: alice, bob@mx.test, ops@example.org
alice: alice, carol
self: self
team: alice, bob, Alice, alice@MX.TEST, root@localhost
loop1: loop2
loop2: loop3
loop3: loop1
mixed: dave, loop1, erin@example.net
ring: ring2, ring
ring2: ring
diamond: d1, d2
d1: shared
d2: shared
shared: frank, gina@example.com, gina@EXAMPLE.COM, Gina@example.com
";

    #[test]
    fn expands_table() {
        use ExpansionErrorKind::*;
        let aliases = Aliases::parse(Path::new("aliases"), TABLE).expect("table parses");
        type Case = (&'static str, Vec<Target>, Vec<ExpansionError>);
        let cases: Vec<Case> = vec![
            ("nobody@mx.test", vec![mb("nobody")], vec![]),
            ("Nobody@MX.Test", vec![mb("nobody")], vec![]),
            ("bare", vec![mb("bare")], vec![]),
            ("Bob@Example.ORG", vec![remote("Bob@Example.ORG")], vec![]),
            // A remote address is never looked up, even when its local part is an alias.
            ("root@example.org", vec![remote("root@example.org")], vec![]),
            (
                "postmaster@mx.test",
                vec![
                    mb("alice"),
                    mb("carol"),
                    mb("bob"),
                    remote("ops@example.org"),
                ],
                vec![],
            ),
            ("self@localhost", vec![mb("self")], vec![]),
            ("alice@mx.test", vec![mb("alice"), mb("carol")], vec![]),
            (
                "team@mx.test",
                vec![
                    mb("alice"),
                    mb("carol"),
                    mb("bob"),
                    remote("ops@example.org"),
                ],
                vec![],
            ),
            ("loop1@mx.test", vec![], vec![err("loop1", Loop)]),
            (
                "mixed@mx.test",
                vec![mb("dave"), remote("erin@example.net")],
                vec![err("loop1", Loop)],
            ),
            // `ring: ring2, ring`: the self-reference is the mailbox; ring2 → ring loops.
            ("ring@mx.test", vec![mb("ring")], vec![err("ring", Loop)]),
            (
                "diamond@mx.test",
                // Domains compare case-blind, remote local parts do not.
                vec![
                    mb("frank"),
                    remote("gina@example.com"),
                    remote("Gina@example.com"),
                ],
                vec![],
            ),
        ];
        for (rcpt, targets, errors) in cases {
            let got = expand(&aliases, local, rcpt);
            assert_eq!(got.targets, targets, "{rcpt}");
            assert_eq!(got.errors, errors, "{rcpt}");
        }
    }

    #[test]
    fn depth_is_bounded() {
        // a0 → a1 → … → a40 → end: cut at MAX_DEPTH.
        let mut text = String::new();
        for i in 0..40 {
            text.push_str(&format!("a{i}: a{}\n", i + 1));
        }
        text.push_str("a40: end\n");
        let aliases = Aliases::parse(Path::new("aliases"), &text).expect("parses");
        let got = expand(&aliases, local, "a0@mx.test");
        assert!(got.targets.is_empty());
        assert_eq!(
            got.errors,
            vec![err(&format!("a{MAX_DEPTH}"), ExpansionErrorKind::TooDeep)]
        );
        assert_eq!(
            got.errors[0].reply(),
            "550 5.4.6 alias nesting too deep at a20"
        );
        // Just inside the limit still works.
        let got = expand(&aliases, local, &format!("a{}@mx.test", 41 - MAX_DEPTH));
        assert_eq!(got.targets, vec![mb("end")]);
        assert!(got.errors.is_empty());
    }

    #[test]
    fn fan_out_is_bounded() {
        let users: Vec<String> = (0..MAX_TARGETS + 5).map(|i| format!("u{i}")).collect();
        let text = format!("big: {}\n", users.join(", "));
        let aliases = Aliases::parse(Path::new("aliases"), &text).expect("parses");
        let got = expand(&aliases, local, "big@mx.test");
        assert_eq!(got.targets.len(), MAX_TARGETS);
        assert_eq!(
            got.errors,
            vec![err("big", ExpansionErrorKind::TooManyTargets)]
        );
        assert_eq!(
            got.errors[0].reply(),
            "550 5.2.4 alias expands to too many addresses at big"
        );
    }

    #[test]
    fn wide_diamonds_stay_cheap() {
        // Each level lists the next level twice: 2^30 paths, 31 aliases.
        let mut text = String::new();
        for i in 0..30 {
            text.push_str(&format!("w{i}: w{n}, x{i}, w{n}\n", n = i + 1));
        }
        text.push_str("w30: last\n");
        let aliases = Aliases::parse(Path::new("aliases"), &text).expect("parses");
        let got = expand(&aliases, local, "w15@mx.test");
        assert!(got.errors.is_empty(), "{:?}", got.errors);
        assert_eq!(got.targets.len(), 16);
    }
}
