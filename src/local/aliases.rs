//! The aliases file: `name: target, target…` (sendmail/Postfix syntax).
//!
//! A line starting with white space continues the previous entry; `#` starts a comment
//! line; names are case-insensitive (stored lower-cased). Targets are local user names or
//! remote addresses. Program (`|cmd`), file (`/path`) and `:include:` targets are refused:
//! postling never runs commands or writes files on behalf of mail (design.md, security).

use std::collections::BTreeMap;
use std::path::Path;

use crate::config::ConfigError;

/// Parsed aliases: name → targets, in file order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Aliases {
    map: BTreeMap<String, Vec<String>>,
}

impl Aliases {
    /// Read the aliases file. A missing file is an empty table (a fresh router has no
    /// /etc/aliases); any other read error, or a bad line, is a `ConfigError`.
    pub fn load(path: &Path) -> Result<Aliases, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Aliases::parse(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Aliases::default()),
            Err(e) => Err(ConfigError {
                message: format!("{}: {}", path.display(), crate::time::io_reason(&e)),
            }),
        }
    }

    pub fn parse(path: &Path, text: &str) -> Result<Aliases, ConfigError> {
        let err = |line: usize, what: String| ConfigError {
            message: format!("{}:{line}: {what}", path.display()),
        };
        // Join continuation lines first, remembering where each entry started.
        let mut entries: Vec<(usize, String)> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            if raw.starts_with(char::is_whitespace) {
                match entries.last_mut() {
                    Some((_, e)) => {
                        e.push(' ');
                        e.push_str(trimmed);
                    }
                    None => return Err(err(n, "continuation line with no entry before it".into())),
                }
            } else {
                entries.push((n, trimmed.to_string()));
            }
        }
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (n, entry) in entries {
            let Some((name, targets)) = entry.split_once(':') else {
                return Err(err(n, "line is not 'name: target, target…'".into()));
            };
            let name = name.trim().to_ascii_lowercase();
            if name.is_empty() || !name.bytes().all(is_name_byte) {
                return Err(err(n, format!("bad alias name '{name}'")));
            }
            if map.contains_key(&name) {
                return Err(err(n, format!("duplicate alias '{name}'")));
            }
            let mut list = Vec::new();
            for t in targets.split(',') {
                let t = t.trim();
                if t.is_empty() {
                    return Err(err(n, format!("empty target in alias '{name}'")));
                }
                if t.starts_with('|') || t.starts_with('/') || t.starts_with(":include:") {
                    return Err(err(
                        n,
                        format!(
                            "alias '{name}': program, file and :include: targets are not supported"
                        ),
                    ));
                }
                let ok = match t.rsplit_once('@') {
                    Some(_) => crate::smtp::address::Mailbox::parse(t, true).is_ok(),
                    None => t.bytes().all(is_name_byte),
                };
                if !ok {
                    return Err(err(n, format!("alias '{name}': bad target '{t}'")));
                }
                list.push(if t.contains('@') {
                    t.to_string()
                } else {
                    t.to_ascii_lowercase()
                });
            }
            map.insert(name, list);
        }
        Ok(Aliases { map })
    }

    /// The targets of `name` (lower-case), if it is an alias.
    pub fn get(&self, name: &str) -> Option<&[String]> {
        self.map.get(name).map(|v| v.as_slice())
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.map.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }
}

/// Characters of a local user or alias name: what useradd and Postfix accept.
fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_entries_and_continuations() {
        let text = "# comment\n\nPostmaster: root\nteam: alice, Bob,\n  carol@example.org\n";
        let a = Aliases::parse(Path::new("aliases"), text).expect("parses");
        assert_eq!(a.get("postmaster"), Some(&["root".to_string()][..]));
        assert_eq!(
            a.get("team").map(|t| t.to_vec()),
            Some(vec![
                "alice".into(),
                "bob".into(),
                "carol@example.org".into()
            ])
        );
        assert_eq!(a.get("nobody"), None);
    }

    #[test]
    fn errors_name_file_and_line() {
        const CASES: &[(&str, &str)] = &[
            ("a b\n", "aliases:1: line is not"),
            ("x: |/bin/sh\n", "aliases:1: alias 'x': program"),
            ("x: /tmp/file\n", "aliases:1: alias 'x': program"),
            ("x: a\nx: b\n", "aliases:2: duplicate alias 'x'"),
            ("  a\n", "aliases:1: continuation"),
            ("x: a,,b\n", "aliases:1: empty target"),
            ("x: a@@b\n", "aliases:1: alias 'x': bad target"),
            ("b@d: a\n", "aliases:1: bad alias name"),
        ];
        for &(text, want) in CASES {
            let e = Aliases::parse(Path::new("aliases"), text).expect_err(text);
            assert!(e.message.starts_with(want), "{text:?}: {}", e.message);
        }
    }
}
