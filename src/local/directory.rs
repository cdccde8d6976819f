//! Which local parts exist, for the RCPT check (spec: "a local part is valid when an
//! alias maps it, a system user of that name exists, or `mail_dir/<name>/` exists").
//!
//! System users are read from /etc/passwd on each lookup rather than through libc, so
//! the static musl binary behaves the same everywhere and sees users added after start.

use std::path::{Path, PathBuf};

use super::aliases::Aliases;

#[derive(Clone, Debug)]
pub struct Directory {
    pub aliases: Aliases,
    pub mail_dir: PathBuf,
    pub passwd: PathBuf,
}

impl Directory {
    pub fn new(aliases: Aliases, mail_dir: &Path) -> Directory {
        Directory {
            aliases,
            mail_dir: mail_dir.to_path_buf(),
            passwd: PathBuf::from("/etc/passwd"),
        }
    }

    /// `name` is lower-cased by the caller. Names that could escape `mail_dir`
    /// (`..`, `/`) or are not plain user names never exist.
    pub fn exists(&self, name: &str) -> bool {
        if name.is_empty()
            || name.starts_with('.')
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+'))
        {
            return false;
        }
        self.aliases.get(name).is_some()
            || self.mail_dir.join(name).is_dir()
            || system_user_exists(&self.passwd, name)
    }
}

/// The first passwd line whose fields satisfy `pick`, as its fields
/// (name, password, uid, gid, GECOS, home, shell).
fn passwd_entry(passwd: &Path, pick: impl Fn(&[&str]) -> bool) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(passwd).ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        pick(&f).then(|| f.iter().map(|s| s.to_string()).collect())
    })
}

/// The uid and gid of system user `name` from the passwd file, if it has one.
pub fn system_user_ids(passwd: &Path, name: &str) -> Option<(u32, u32)> {
    let f = passwd_entry(passwd, |f| f.first() == Some(&name))?;
    Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?))
}

/// The user name of `uid` in /etc/passwd, if any.
pub fn user_name(uid: u32) -> Option<String> {
    let uid = uid.to_string();
    let f = passwd_entry(Path::new("/etc/passwd"), |f| {
        f.get(2) == Some(&uid.as_str())
    })?;
    f.into_iter().next()
}

/// The full name of user `name` (the first GECOS field) in /etc/passwd, if set.
pub fn full_name(name: &str) -> Option<String> {
    let f = passwd_entry(Path::new("/etc/passwd"), |f| f.first() == Some(&name))?;
    let gecos = f.get(4)?.split(',').next().unwrap_or("").trim().to_string();
    (!gecos.is_empty()).then_some(gecos)
}

fn system_user_exists(passwd: &Path, name: &str) -> bool {
    passwd_entry(passwd, |f| f.first() == Some(&name)).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups() {
        let dir = std::env::temp_dir().join(format!("postling-dir-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("mail/carol")).expect("mkdir");
        std::fs::write(
            dir.join("passwd"),
            "root:x:0:0::/root:/bin/sh\ndave:x:1000:1000::/:/bin/sh\n",
        )
        .expect("write");
        let aliases =
            Aliases::parse(Path::new("a"), "postmaster: root\nsales: dave\n").expect("aliases");
        let mut d = Directory::new(aliases, &dir.join("mail"));
        d.passwd = dir.join("passwd");
        for (name, want) in [
            ("sales", true),
            ("carol", true),
            ("dave", true),
            ("root", true),
            ("eve", false),
            ("..", false),
            ("../mail", false),
            ("", false),
            ("da:ve", false),
        ] {
            assert_eq!(d.exists(name), want, "{name}");
        }
        assert_eq!(system_user_ids(&d.passwd, "dave"), Some((1000, 1000)));
        assert_eq!(system_user_ids(&d.passwd, "root"), Some((0, 0)));
        assert_eq!(system_user_ids(&d.passwd, "eve"), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
