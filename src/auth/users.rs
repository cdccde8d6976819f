//! The AUTH accounts file (`users = FILE`): one `name:HASH` per line, HASH a
//! SHA-512-crypt or SHA-256-crypt string (`openssl passwd -6`, `postling passwd`).
//! `#` starts a comment line; blank lines are ignored; white space around the name and
//! the hash is ignored.
//!
//! Invariants:
//! - A loaded [`Users`] holds only canonical `$5$`/`$6$` hashes (see
//!   [`sha_crypt::Hash::parse`]); a bad line is a `FILE:LINE: what is wrong` error and an
//!   unreadable file `FILE: reason`, both [`ConfigError`]s (exit 78), like the config
//!   and aliases files.
//! - Names are compared exactly (case-sensitive, as SASL authentication identities are,
//!   RFC 4616 §2), are 1–255 octets (RFC 4616 §2: authcid "up to 255 octets") and contain
//!   no white space, control characters or `:`.
//! - [`Users::verify`] takes as long for an unknown name as for a known one whose hash
//!   has the same cost as the first entry's, so its timing does not tell which accounts
//!   exist. Keep every hash at one cost (same scheme and rounds) for that to hold fully.
//! - Passwords longer than [`MAX_PASSWORD_LEN`] fail at once, before any lookup: the
//!   SHA-crypt cost grows with the square of the password length.

use std::collections::BTreeMap;
use std::path::Path;

use super::sha_crypt::{self, Hash, Scheme};
use crate::config::ConfigError;

/// RFC 4616 §2: "authcid ... up to 255 octets".
pub const MAX_NAME_LEN: usize = 255;

/// Longest password we hash. SHA-crypt costs O(n²) in the password length (Drepper's
/// step 13), so without a bound one AUTH PLAIN line of 12288 octets would buy a client
/// hundreds of milliseconds of our single thread. 256 bytes is beyond any typed password
/// or password-manager default; `postling passwd` refuses longer ones.
pub const MAX_PASSWORD_LEN: usize = 256;

/// Parsed users file: name → hash.
#[derive(Clone, Debug)]
pub struct Users {
    map: BTreeMap<String, Hash>,
    /// What unknown names are verified against (see the module invariants).
    decoy: Hash,
}

impl Users {
    /// Read the users file. Unlike the aliases file, a missing one is an error: it was
    /// named in the configuration, and running submission without it would refuse
    /// every login.
    pub fn load(path: &Path) -> Result<Users, ConfigError> {
        // Password hashes can be cracked offline: others must not read them.
        let text =
            crate::config::read_secret_file(path).map_err(|message| ConfigError { message })?;
        Users::parse(path, &text)
    }

    /// Parse users file text. `path` is only used in messages.
    pub fn parse(path: &Path, text: &str) -> Result<Users, ConfigError> {
        let err = |line: usize, what: String| ConfigError {
            message: format!("{}:{line}: {what}", path.display()),
        };
        let mut map = BTreeMap::new();
        let mut lines_of: BTreeMap<String, usize> = BTreeMap::new();
        let mut first: Option<Hash> = None;
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((name, hash)) = line.split_once(':') else {
                return Err(err(n, "line is not 'name:HASH'".into()));
            };
            let (name, hash) = (name.trim(), hash.trim());
            check_name(name).map_err(|what| err(n, what))?;
            let hash = Hash::parse(hash).map_err(|e| err(n, format!("user '{name}': {e}")))?;
            if let Some(prev) = lines_of.insert(name.to_string(), n) {
                return Err(err(
                    n,
                    format!("duplicate user '{name}' (first on line {prev})"),
                ));
            }
            first.get_or_insert_with(|| hash.clone());
            map.insert(name.to_string(), hash);
        }
        // An empty file: what `postling passwd` would write.
        let decoy = match first {
            Some(h) => h.decoy(),
            None => sha_crypt::decoy(Scheme::Sha512, None, sha_crypt::MAX_SALT_LEN),
        };
        Ok(Users { map, decoy })
    }

    /// The hash stored for `name`, if there is such a user.
    pub fn lookup(&self, name: &str) -> Option<&Hash> {
        self.map.get(name)
    }

    /// Does `password` belong to user `name`? An unknown name costs the same hashing
    /// work as a known one and is never accepted.
    pub fn verify(&self, name: &str, password: &[u8]) -> bool {
        if password.is_empty() || password.len() > MAX_PASSWORD_LEN {
            return false;
        }
        match self.map.get(name) {
            Some(hash) => sha_crypt::verify(password, hash),
            None => {
                // black_box: the result is unused, and the work must not be optimised out.
                std::hint::black_box(sha_crypt::verify(password, &self.decoy));
                false
            }
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Check a user name (see the module invariants); `Err` is the complaint.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty user name".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!("user name longer than {MAX_NAME_LEN} octets"));
    }
    if name
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == ':')
    {
        return Err(format!(
            "user name '{}' contains white space, a control character or ':'",
            name.escape_debug()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `openssl passwd -6 -salt abc hunter2` and `openssl passwd -5 -salt Q2 …`.
    const ALICE: &str = "$6$abc$DgQcmr5KFqu3fq81mYtIJay1T2LBpa.rQ2RhGMZh1rrZZTaVbmnQH3Ulo10Skn5W2CNkPoN8xS.9uYEnniHHC0";
    const BOB: &str = "$5$rounds=1234$Q2$G1tdAr9KUmNsh3esnd2WAOgonmYdAuoUm1miU5E3Z//";

    fn parse(text: &str) -> Result<Users, String> {
        Users::parse(Path::new("users"), text).map_err(|e| e.message)
    }

    #[test]
    fn good_file() {
        let text = format!(
            "# accounts\n\nalice:{ALICE}\n  bob@example.org : {BOB}  \r\n\t# indented comment\n"
        );
        let u = parse(&text).unwrap();
        assert_eq!(u.len(), 2);
        assert_eq!(u.lookup("alice").map(Hash::as_str), Some(ALICE));
        assert_eq!(u.lookup("bob@example.org").map(Hash::as_str), Some(BOB));
        assert!(u.lookup("Alice").is_none());
        assert!(u.verify("alice", b"hunter2"));
        assert!(u.verify("bob@example.org", b"hunter2"));
        assert!(!u.verify("alice", b"hunter3"));
        assert!(!u.verify("Alice", b"hunter2"));
        assert!(!u.verify("carol", b"hunter2"));
        assert!(!u.verify("alice", b""));
        let long = vec![b'a'; MAX_PASSWORD_LEN + 1];
        assert!(!u.verify("alice", &long));
    }

    #[test]
    fn empty_file() {
        for text in ["", "\n", "# nobody yet\n"] {
            let u = parse(text).unwrap();
            assert!(u.is_empty());
            assert!(!u.verify("alice", b"hunter2"));
        }
    }

    #[test]
    fn decoy_mimics_the_first_user() {
        let u = parse(&format!("bob:{BOB}\nalice:{ALICE}\n")).unwrap();
        let d = &u.decoy;
        assert_eq!(
            (d.scheme(), d.rounds(), d.salt().len()),
            (Scheme::Sha256, 1234, 2)
        );
        let u = parse("").unwrap();
        assert_eq!((u.decoy.scheme(), u.decoy.rounds()), (Scheme::Sha512, 5000));
    }

    #[test]
    fn bad_lines() {
        let c86 = ".".repeat(86);
        let cases: Vec<(String, String)> = vec![
            ("alice".into(), "users:1: line is not 'name:HASH'".into()),
            (
                format!("# c\n\nalice {ALICE}"),
                "users:3: line is not 'name:HASH'".into(),
            ),
            (format!(":{ALICE}"), "users:1: empty user name".into()),
            (
                format!("al ice:{ALICE}"),
                "users:1: user name 'al ice' contains white space, a control character or ':'"
                    .into(),
            ),
            (
                format!("{}:{ALICE}", "a".repeat(256)),
                "users:1: user name longer than 255 octets".into(),
            ),
            (
                "alice:".into(),
                "users:1: user 'alice': not a SHA-crypt hash ($5$ or $6$); make one with 'postling passwd' or 'openssl passwd -6'".into(),
            ),
            (
                "alice:hunter2".into(),
                "users:1: user 'alice': not a SHA-crypt hash ($5$ or $6$); make one with 'postling passwd' or 'openssl passwd -6'".into(),
            ),
            (
                "\nalice:$1$saltsalt$le8lFSqqnPaRFOlmAZpvH1".into(),
                "users:2: user 'alice': not a SHA-crypt hash ($5$ or $6$) (this is MD5-crypt, which is too weak); make one with 'postling passwd' or 'openssl passwd -6'".into(),
            ),
            (
                format!("alice:$6$rounds=10$salt${c86}"),
                "users:1: user 'alice': rounds=10 is outside 1000..999999999, so the hash can never match".into(),
            ),
            (
                format!("alice:$6$toolongsaltstring${c86}"),
                "users:1: user 'alice': salt longer than 16 characters in hash".into(),
            ),
            (
                format!("alice:{ALICE}:extra"),
                "users:1: user 'alice': bad checksum part in hash (wrong length or character)".into(),
            ),
            (
                format!("alice:{ALICE} # comment"),
                "users:1: user 'alice': bad checksum part in hash (wrong length or character)".into(),
            ),
            (
                format!("alice:{ALICE}\nbob:{BOB}\nalice:{BOB}\n"),
                "users:3: duplicate user 'alice' (first on line 1)".into(),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parse(&text).err(), Some(want), "{text:?}");
        }
    }

    /// Not a pass/fail test: prints what a verification costs, known vs unknown user.
    /// `cargo test --release --lib timing_report -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn timing_report() {
        use std::time::{Duration, Instant};
        let u = parse(&format!("alice:{ALICE}\n")).unwrap();
        let cases: [(&str, &[u8]); 3] = [
            ("alice", b"hunter2"),
            ("alice", b"wrong"),
            ("nobody", b"hunter2"),
        ];
        // Interleaved, after a warm-up, so frequency scaling hits all cases alike.
        let mut spent = [Duration::ZERO; 3];
        let n = 200;
        for round in 0..=n {
            for (k, &(name, pw)) in cases.iter().enumerate() {
                let t = Instant::now();
                std::hint::black_box(u.verify(name, pw));
                if round > 0 {
                    spent[k] += t.elapsed();
                }
            }
        }
        for (k, &(name, pw)) in cases.iter().enumerate() {
            eprintln!(
                "verify({name}, {} bytes): {:?} each",
                pw.len(),
                spent[k] / n
            );
        }
        let long = vec![b'a'; MAX_PASSWORD_LEN];
        let t = Instant::now();
        u.verify("alice", &long);
        eprintln!(
            "verify with a {MAX_PASSWORD_LEN}-byte password: {:?}",
            t.elapsed()
        );
    }

    #[test]
    fn unreadable_file() {
        let e = Users::load(Path::new("/nonexistent/postling-users")).unwrap_err();
        assert_eq!(
            e.message,
            "/nonexistent/postling-users: No such file or directory"
        );
    }
}
