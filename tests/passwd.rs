//! `postling passwd` end to end: the real binary, the password piped on stdin, the
//! printed line checked by the library and by OpenSSL's independent implementation.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use postling::auth::sha_crypt::{self, Hash, Scheme};
use postling::auth::users::Users;

/// Run `postling passwd ARGS` with `stdin` piped and `USER` set or removed.
fn passwd(args: &[&str], stdin: &[u8], user: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_postling"));
    cmd.arg("passwd")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match user {
        Some(u) => cmd.env("USER", u),
        None => cmd.env_remove("USER"),
    };
    let mut child = cmd.spawn().expect("run postling");
    // A run that refuses its arguments may exit before reading: a broken pipe is fine.
    match child.stdin.take().expect("stdin").write_all(stdin) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => panic!("write stdin: {e}"),
        _ => {}
    }
    child.wait_with_output().expect("wait")
}

fn stdout_line(out: &Output) -> String {
    let text = String::from_utf8(out.stdout.clone()).expect("UTF-8 output");
    assert!(
        text.ends_with('\n') && text.matches('\n').count() == 1,
        "{text:?}"
    );
    text.trim_end().to_string()
}

/// `openssl passwd -6 -salt SALT PASSWORD`, or `None` when openssl is not installed.
fn openssl_sha512(salt: &str, password: &str) -> Option<String> {
    let out = match Command::new("openssl")
        .args(["passwd", "-6", "-salt", salt, password])
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("openssl: {e}"),
    };
    assert!(out.status.success(), "openssl: {:?}", out);
    Some(
        String::from_utf8(out.stdout)
            .expect("UTF-8")
            .trim_end()
            .to_string(),
    )
}

#[test]
fn passwd_alice_matches_library_and_openssl() {
    let password = "correct horse battery staple";
    let out = passwd(&["alice"], format!("{password}\n").as_bytes(), Some("bob"));
    assert!(out.status.success(), "{out:?}");
    let line = stdout_line(&out);

    let (name, hash) = line.split_once(':').expect("NAME:HASH");
    assert_eq!(name, "alice");
    let h = Hash::parse(hash).expect("a canonical hash");
    assert_eq!(
        (h.scheme(), h.rounds(), h.salt().len()),
        (Scheme::Sha512, 5000, 16)
    );
    assert!(
        hash.starts_with(&format!("$6${}$", h.salt())),
        "no rounds= prefix: {hash}"
    );
    assert!(sha_crypt::verify(password.as_bytes(), &h));
    assert!(!sha_crypt::verify(b"correct horse battery stapler", &h));

    // The line is a valid users file as it stands.
    let users = Users::parse(Path::new("users"), &format!("{line}\n")).expect("users file");
    assert!(users.verify("alice", password.as_bytes()));
    assert!(!users.verify("bob", password.as_bytes()));

    match openssl_sha512(h.salt(), password) {
        Some(theirs) => assert_eq!(theirs, hash),
        None => eprintln!("openssl not installed: cross-check skipped"),
    }
}

#[test]
fn two_runs_use_different_salts() {
    let a = passwd(&["alice"], b"pw\n", None);
    let b = passwd(&["alice"], b"pw\n", None);
    assert_ne!(stdout_line(&a), stdout_line(&b));
}

#[test]
fn name_defaults_to_user_and_crlf_is_dropped() {
    let out = passwd(&[], b"s3cret\r\n", Some("carol"));
    assert!(out.status.success(), "{out:?}");
    let line = stdout_line(&out);
    let users = Users::parse(Path::new("users"), &line).expect("users file");
    assert!(users.verify("carol", b"s3cret"));
    // A password without a final newline is taken whole.
    let out = passwd(&["dave"], b"no newline", None);
    let users = Users::parse(Path::new("users"), &stdout_line(&out)).expect("users file");
    assert!(users.verify("dave", b"no newline"));
}

#[test]
fn refusals() {
    let long = vec![b'a'; 257];
    // (args, stdin, exit code, stderr), with USER unset.
    type Case<'a> = (&'a [&'a str], &'a [u8], i32, &'a str);
    let cases: &[Case] = &[
        (
            &["alice"],
            b"",
            65,
            "postling: passwd: no password on standard input\n",
        ),
        (&["alice"], b"\n", 65, "postling: passwd: empty password\n"),
        (
            &["alice"],
            &long,
            65,
            "postling: passwd: password longer than 256 bytes\n",
        ),
        (
            &["alice"],
            b"a\0b\n",
            65,
            "postling: passwd: password contains a NUL byte\n",
        ),
        (
            &["a:b"],
            b"pw\n",
            64,
            "postling: passwd: user name 'a:b' contains white space, a control character or ':'\n",
        ),
        (
            &[],
            b"pw\n",
            64,
            "postling: passwd: no NAME given and $USER is not set\n",
        ),
        (
            &["a", "b"],
            b"pw\n",
            64,
            "postling: passwd takes at most one NAME\nusage: postling passwd [NAME]\n",
        ),
    ];
    for &(args, stdin, code, stderr) in cases {
        let out = passwd(args, stdin, None);
        assert_eq!(out.status.code(), Some(code), "{args:?} {out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr), stderr, "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}
