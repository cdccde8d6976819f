//! Drift between the code and what ships beside it: every configuration key is in
//! etc/postling.conf and in postling.conf(5) and nothing there is unknown to the
//! parser; every subcommand of `postling --help` and every sendmail option letter is
//! in postling(8); both man pages render without warnings.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::bin;
use postling::config::KEYS;

fn repo_file(rel: &str) -> (PathBuf, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    (path, text)
}

fn known_keys() -> BTreeSet<String> {
    KEYS.iter().map(|k| k.to_string()).collect()
}

/// `key =` and `#key =` / `# key =` lines of a configuration file.
fn conf_keys(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim_start().trim_start_matches('#').trim_start();
            let (key, _) = line.split_once('=')?;
            let key = key.trim_end();
            (!key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
                .then(|| key.to_string())
        })
        .collect()
}

/// The lines of a man page's section `.SH NAME` up to the next `.SH`.
fn section<'a>(page: &'a str, name: &str) -> Vec<&'a str> {
    page.lines()
        .skip_while(|l| l.trim() != format!(".SH {name}"))
        .skip(1)
        .take_while(|l| !l.starts_with(".SH "))
        .collect()
}

/// The first word of the tag line after each `.TP` in `lines`, font macro and quotes
/// removed: `.BI "retry = " list` gives `retry`.
fn tags(lines: &[&str]) -> Vec<String> {
    lines
        .windows(2)
        .filter(|w| w[0].trim() == ".TP" || w[0].starts_with(".TP "))
        .filter_map(|w| {
            let (mac, rest) = w[1].split_once(' ')?;
            if !mac.starts_with(".B") && !mac.starts_with(".I") {
                return None;
            }
            let word = rest.trim_start_matches('"').split([' ', '"']).next()?;
            Some(word.to_string())
        })
        .collect()
}

#[test]
fn postling_conf_has_every_key_and_no_other() {
    let (path, text) = repo_file("etc/postling.conf");
    let found = conf_keys(&text);
    let known = known_keys();
    let missing: Vec<_> = known.difference(&found).collect();
    let unknown: Vec<_> = found.difference(&known).collect();
    assert!(
        missing.is_empty(),
        "keys missing from etc/postling.conf: {missing:?}"
    );
    assert!(
        unknown.is_empty(),
        "etc/postling.conf has unknown keys: {unknown:?}"
    );
    // And what is not commented out parses as shipped.
    postling::config::parse(&path, &text).expect("etc/postling.conf parses");
}

#[test]
fn conf_man_page_has_every_key_and_no_other() {
    let (_, page) = repo_file("etc/postling.conf.5");
    let keys_section = section(&page, "KEYS");
    assert!(
        !keys_section.is_empty(),
        "postling.conf.5 has no KEYS section"
    );
    let entries = tags(&keys_section);
    let mut seen = BTreeSet::new();
    for e in &entries {
        assert!(
            seen.insert(e.clone()),
            "postling.conf.5 describes {e} twice"
        );
    }
    // Nested .TP lists inside an entry (the listen roles) are not keys.
    let roles: BTreeSet<String> = ["smtp", "submission", "submissions"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let found: BTreeSet<String> = seen.difference(&roles).cloned().collect();
    let known = known_keys();
    let missing: Vec<_> = known.difference(&found).collect();
    let unknown: Vec<_> = found.difference(&known).collect();
    assert!(
        missing.is_empty(),
        "keys missing from postling.conf.5: {missing:?}"
    );
    assert!(
        unknown.is_empty(),
        "postling.conf.5 describes unknown keys: {unknown:?}"
    );
    // In the order of KEYS (the order `postling check` prints them in).
    let order: Vec<&String> = entries.iter().filter(|e| known.contains(*e)).collect();
    assert_eq!(
        order,
        KEYS.to_vec(),
        "postling.conf.5 entries out of KEYS order"
    );
    // Every configuration line in the examples is valid too.
    for (n, line) in page.lines().enumerate() {
        if let Some((key, _)) = line.split_once(" = ") {
            if !line.starts_with('.') && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                assert!(
                    known.contains(key),
                    "postling.conf.5:{}: unknown key in '{line}'",
                    n + 1
                );
            }
        }
    }
}

/// The subcommands `postling --help` lists: its indented lines' first words.
fn help_subcommands() -> Vec<String> {
    let out = Command::new(bin())
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).expect("utf-8 help");
    let mut cmds: Vec<String> = help
        .lines()
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.bytes().all(|b| b.is_ascii_lowercase()))
        .map(str::to_string)
        .collect();
    cmds.dedup();
    cmds
}

#[test]
fn man8_documents_every_subcommand() {
    let (_, page) = repo_file("etc/postling.8");
    let cmds = help_subcommands();
    for expected in [
        "serve", "flush", "queue", "send", "check", "resolve", "passwd",
    ] {
        assert!(
            cmds.iter().any(|c| c == expected),
            "--help lacks {expected}: {cmds:?}"
        );
    }
    let synopsis = section(&page, "SYNOPSIS").join("\n");
    let commands = tags(&section(&page, "COMMANDS"));
    for c in &cmds {
        assert!(
            synopsis.contains(&format!(".B postling {c}")),
            "postling.8 SYNOPSIS lacks 'postling {c}'"
        );
        assert!(
            commands.contains(c),
            "postling.8 COMMANDS has no entry for {c} (has {commands:?})"
        );
    }
    for opt in ["\\-\\-help", "\\-\\-version"] {
        assert!(synopsis.contains(opt), "postling.8 SYNOPSIS lacks {opt}");
    }
}

#[test]
fn man8_documents_every_sendmail_option() {
    // The option table of src/sendmail/options.rs: `('f', Takes::Value), // ...`.
    let (_, source) = repo_file("src/sendmail/options.rs");
    let letters: Vec<char> = source
        .lines()
        .filter_map(|l| {
            let l = l.trim().strip_prefix("('")?;
            let mut chars = l.chars();
            let c = chars.next()?;
            chars.as_str().starts_with("', Takes::").then_some(c)
        })
        .collect();
    assert!(letters.len() > 20, "option table not found: {letters:?}");
    let (_, page) = repo_file("etc/postling.8");
    let section = section(&page, "SENDMAIL COMPATIBILITY").join("\n");
    for c in letters {
        assert!(
            section.contains(&format!("\\-{c}")),
            "postling.8 SENDMAIL COMPATIBILITY does not mention -{c}"
        );
    }
}

#[test]
fn man_pages_carry_the_package_version() {
    for rel in ["etc/postling.8", "etc/postling.conf.5"] {
        let (_, page) = repo_file(rel);
        let th = page
            .lines()
            .find(|l| l.starts_with(".TH "))
            .expect(".TH line");
        let version = format!("postling {}", env!("CARGO_PKG_VERSION"));
        assert!(
            th.contains(&version),
            "{rel}: '{th}' does not say {version}"
        );
    }
}

#[test]
fn man_pages_render_without_warnings() {
    if Command::new("man").arg("--version").output().is_err() {
        eprintln!("skipped: man is not installed");
        return;
    }
    for (rel, title) in [
        ("etc/postling.8", "POSTLING(8)"),
        ("etc/postling.conf.5", "POSTLING.CONF(5)"),
    ] {
        let (path, _) = repo_file(rel);
        let out = Command::new("man")
            .env("MANWIDTH", "80")
            .env("MANPAGER", "cat")
            .env("PAGER", "cat")
            .env("LC_ALL", "C.UTF-8")
            .args(["--warnings", "-l"])
            .arg(&path)
            .output()
            .expect("run man");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "man -l {rel} failed: {stderr}");
        assert!(
            stderr.trim().is_empty(),
            "man --warnings on {rel}:\n{stderr}"
        );
        assert!(
            stdout.contains(title),
            "{rel} rendered without its title:\n{stdout}"
        );
        // Rendered at 80 columns nothing runs over (a too-long unbreakable line).
        for line in stdout.lines() {
            assert!(
                line.chars().count() <= 80,
                "{rel}: line over 80 columns: {line}"
            );
        }
    }
}
