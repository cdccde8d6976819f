//! The server side of SASL PLAIN (RFC 4616) and LOGIN (draft-murchison-sasl-login-00)
//! inside SMTP AUTH (RFC 4954), as a sans-I/O state machine.
//!
//! The session calls [`Exchange::start`] with the `AUTH` command's mechanism and optional
//! initial response, then [`Exchange::handle_line`] with each client line (without CRLF)
//! while the last [`Step`] was a [`Step::Challenge`]. Every other step ends the exchange.
//! What the session replies for each step:
//!
//! | step | reply |
//! |---|---|
//! | `Challenge(text)` | `334 text` (RFC 4954 §4; `text` may be empty: `334 `) |
//! | `Done { .. }` | verify the password: `235 2.7.0` or `535 5.7.8` (§6) |
//! | `Cancelled` | `501 5.7.0` (§4: the client sent `*`) |
//! | `Malformed` | `501 5.5.2` (bad base64, missing NULs, empty name or password) |
//! | `TooLong` | `500 5.5.6` (§4: "Authentication Exchange line is too long") |
//! | `Refused` | `535 5.7.8` (PLAIN authzid other than the user: we do no proxy authorization) |
//!
//! Invariants:
//! - Nothing here decides whether credentials are right (that is `users.rs`) or looks a
//!   user up, so no step depends on which accounts exist: `Malformed`, `TooLong` and
//!   `Refused` are decided from the bytes alone.
//! - Decoded bytes that contain a password live only in [`Secret`]s, which wipe
//!   themselves when dropped.
//! - Base64 is strict ([`base64::decode`]); `=` stands for an empty response only as the
//!   initial response (RFC 4954 §4); `*` cancels only on a continuation line.
//! - No input panics; lines over [`MAX_RESPONSE_LEN`] are refused before decoding.

use std::fmt;

use super::base64;
use super::secret::Secret;

/// RFC 4954 §4: "12288 octets is considered to be a sufficient line length limit for
/// handling of deployed authentication mechanisms". Counted like Postfix's
/// `smtpd_sasl_response_limit`: base64 text, CRLF not included. The session's line
/// reader must accept continuation lines this long (plus CRLF) while an exchange runs.
pub const MAX_RESPONSE_LEN: usize = 12288;

/// The mechanisms to advertise: `250-AUTH PLAIN LOGIN`.
pub const MECHANISMS: &str = "PLAIN LOGIN";

/// LOGIN's challenges, base64 of `Username:` and `Password:` as every client expects.
const LOGIN_USERNAME: &str = "VXNlcm5hbWU6";
const LOGIN_PASSWORD: &str = "UGFzc3dvcmQ6";

/// The mechanisms we implement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Login,
}

impl Mechanism {
    /// RFC 4954 §4: mechanism names are case-insensitive.
    pub fn from_name(name: &str) -> Option<Mechanism> {
        if name.eq_ignore_ascii_case("PLAIN") {
            Some(Mechanism::Plain)
        } else if name.eq_ignore_ascii_case("LOGIN") {
            Some(Mechanism::Login)
        } else {
            None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
        }
    }
}

/// What the session does next (see the table in the module docs).
#[derive(PartialEq, Eq)]
pub enum Step {
    /// Send `334 ` and this base64 text; feed the client's answer to `handle_line`.
    Challenge(String),
    /// The client has said who it is. `authzid` is `Some` only when a PLAIN client sent
    /// one, and then it equals `username` (anything else is [`Step::Refused`]).
    Done {
        authzid: Option<String>,
        username: String,
        password: Secret,
    },
    /// The client sent `*` (RFC 4954 §4).
    Cancelled,
    /// Not base64, not the mechanism's message format, or an empty name or password.
    Malformed,
    /// A line longer than [`MAX_RESPONSE_LEN`].
    TooLong,
    /// PLAIN with an authorization identity other than the authentication identity.
    Refused,
}

impl fmt::Debug for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Challenge(c) => f.debug_tuple("Challenge").field(c).finish(),
            Step::Done {
                authzid,
                username,
                password,
            } => f
                .debug_struct("Done")
                .field("authzid", authzid)
                .field("username", username)
                .field("password", password) // Secret's Debug shows only the length.
                .finish(),
            Step::Cancelled => f.write_str("Cancelled"),
            Step::Malformed => f.write_str("Malformed"),
            Step::TooLong => f.write_str("TooLong"),
            Step::Refused => f.write_str("Refused"),
        }
    }
}

/// `AUTH` named a mechanism we do not offer: `504 5.5.4` (RFC 4954 §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnsupportedMechanism;

#[derive(Debug)]
enum State {
    /// PLAIN sent its empty challenge; awaiting the message.
    PlainResponse,
    /// LOGIN asked `Username:`.
    LoginUsername,
    /// LOGIN asked `Password:`.
    LoginPassword { username: String },
    /// A final step was returned; further lines are a caller bug and `Malformed`.
    Finished,
}

/// One AUTH exchange in progress.
#[derive(Debug)]
pub struct Exchange {
    mechanism: Mechanism,
    state: State,
}

impl Exchange {
    /// Begin `AUTH mechanism [initial-response]`. The first step is usually a
    /// [`Step::Challenge`]; with an initial response PLAIN finishes at once.
    pub fn start(
        mechanism: &str,
        initial: Option<&str>,
    ) -> Result<(Exchange, Step), UnsupportedMechanism> {
        let mechanism = Mechanism::from_name(mechanism).ok_or(UnsupportedMechanism)?;
        let mut ex = Exchange {
            mechanism,
            state: State::Finished,
        };
        let step = match (mechanism, initial) {
            (Mechanism::Plain, None) => {
                // RFC 4954 §4: a mechanism whose client speaks first gets an empty
                // challenge when the client did not send an initial response.
                ex.state = State::PlainResponse;
                Step::Challenge(String::new())
            }
            (Mechanism::Login, None) => {
                ex.state = State::LoginUsername;
                Step::Challenge(LOGIN_USERNAME.into())
            }
            (_, Some(text)) => match decode_initial(text) {
                Ok(bytes) => match mechanism {
                    Mechanism::Plain => plain(bytes),
                    // `AUTH LOGIN dXNlcg==`: the initial response is the user name
                    // (what Outlook and others send), so go straight to `Password:`.
                    Mechanism::Login => ex.login_username(bytes),
                },
                Err(step) => step,
            },
        };
        Ok((ex, step))
    }

    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// True once a final step (anything but a challenge) has been returned.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Finished)
    }

    /// The client's answer to the last challenge, without its CRLF.
    pub fn handle_line(&mut self, line: &[u8]) -> Step {
        let state = std::mem::replace(&mut self.state, State::Finished);
        if matches!(state, State::Finished) {
            return Step::Malformed;
        }
        if line.len() > MAX_RESPONSE_LEN {
            return Step::TooLong;
        }
        // RFC 4954 §4: "If the client wishes to cancel the authentication exchange, it
        // issues a line with a single '*'. [...] the server MUST reject the AUTH command
        // by sending a 501 reply."
        if line == b"*" {
            return Step::Cancelled;
        }
        let bytes = match base64::decode(line) {
            Ok(b) => Secret::new(b),
            Err(_) => return Step::Malformed,
        };
        match state {
            State::PlainResponse => plain(bytes),
            State::LoginUsername => self.login_username(bytes),
            State::LoginPassword { username } => {
                if bytes.is_empty() {
                    return Step::Malformed;
                }
                Step::Done {
                    authzid: None,
                    username,
                    password: bytes,
                }
            }
            State::Finished => Step::Malformed,
        }
    }

    /// LOGIN got its user name: ask for the password.
    fn login_username(&mut self, bytes: Secret) -> Step {
        match identity(bytes.expose()) {
            Some(username) => {
                self.state = State::LoginPassword { username };
                Step::Challenge(LOGIN_PASSWORD.into())
            }
            None => Step::Malformed,
        }
    }
}

/// Decode an initial response; `=` is the empty one (RFC 4954 §4).
fn decode_initial(text: &str) -> Result<Secret, Step> {
    if text.len() > MAX_RESPONSE_LEN {
        return Err(Step::TooLong);
    }
    if text == "=" {
        return Ok(Secret::new(Vec::new()));
    }
    base64::decode(text.as_bytes())
        .map(Secret::new)
        .map_err(|_| Step::Malformed)
}

/// A user or authorization name: non-empty UTF-8 without NUL (RFC 4616 §2: `1*SAFE`).
fn identity(bytes: &[u8]) -> Option<String> {
    if bytes.is_empty() || bytes.contains(&0) {
        return None;
    }
    std::str::from_utf8(bytes).ok().map(str::to_owned)
}

/// RFC 4616 §2: `message = [authzid] UTF8NUL authcid UTF8NUL passwd`, with authcid and
/// passwd `1*SAFE` (no NUL). Exactly two NULs, then.
fn plain(message: Secret) -> Step {
    let m = message.expose();
    let mut parts = m.splitn(3, |&b| b == 0);
    let (Some(authzid), Some(authcid), Some(passwd)) = (parts.next(), parts.next(), parts.next())
    else {
        return Step::Malformed;
    };
    if passwd.is_empty() || passwd.contains(&0) {
        return Step::Malformed;
    }
    let Some(username) = identity(authcid) else {
        return Step::Malformed;
    };
    let authzid = if authzid.is_empty() {
        None
    } else {
        match identity(authzid) {
            Some(z) if z == username => Some(z),
            // RFC 4616 §2: the server "MUST verify that [the authcid] is authorized to
            // act as the authzid"; we grant that to no one but the user itself.
            Some(_) => return Step::Refused,
            None => return Step::Malformed,
        }
    };
    Step::Done {
        authzid,
        username,
        password: Secret::copy_from(passwd),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a transcript expects after each line.
    #[derive(Debug, PartialEq, Eq)]
    enum Want {
        Challenge(&'static str),
        Done(Option<&'static str>, &'static str, &'static [u8]),
        Cancelled,
        Malformed,
        TooLong,
        Refused,
    }
    use Want::*;

    fn want(step: Step) -> Want {
        match step {
            Step::Challenge(c) => Challenge(String::leak(c)),
            Step::Done {
                authzid,
                username,
                password,
            } => Done(
                authzid.map(|z| &*String::leak(z)),
                String::leak(username),
                Vec::leak(password.expose().to_vec()),
            ),
            Step::Cancelled => Cancelled,
            Step::Malformed => Malformed,
            Step::TooLong => TooLong,
            Step::Refused => Refused,
        }
    }

    /// `AUTH mechanism [initial]`, then client lines; one expected step per input.
    struct Transcript {
        auth: (&'static str, Option<&'static str>),
        lines: &'static [&'static str],
        steps: &'static [Want],
    }

    const TRANSCRIPTS: &[Transcript] = &[
        // PLAIN with an initial response: "\0user\0pass".
        Transcript {
            auth: ("PLAIN", Some("AHVzZXIAcGFzcw==")),
            lines: &[],
            steps: &[Done(None, "user", b"pass")],
        },
        // Mechanism names are case-insensitive.
        Transcript {
            auth: ("plain", Some("AHVzZXIAcGFzcw==")),
            lines: &[],
            steps: &[Done(None, "user", b"pass")],
        },
        // PLAIN without: empty challenge, then the message.
        Transcript {
            auth: ("PLAIN", None),
            lines: &["AHVzZXIAcGFzcw=="],
            steps: &[Challenge(""), Done(None, "user", b"pass")],
        },
        // authzid equal to the user: accepted and reported. "user\0user\0pass"
        Transcript {
            auth: ("PLAIN", Some("dXNlcgB1c2VyAHBhc3M=")),
            lines: &[],
            steps: &[Done(Some("user"), "user", b"pass")],
        },
        // authzid of someone else: refused. "admin\0user\0pass"
        Transcript {
            auth: ("PLAIN", Some("YWRtaW4AdXNlcgBwYXNz")),
            lines: &[],
            steps: &[Refused],
        },
        Transcript {
            auth: ("PLAIN", None),
            lines: &["YWRtaW4AdXNlcgBwYXNz"],
            steps: &[Challenge(""), Refused],
        },
        // UTF-8 names and passwords pass through. "\0jörg\0pässwörd"
        Transcript {
            auth: ("PLAIN", Some("AGrDtnJnAHDDpHNzd8O2cmQ=")),
            lines: &[],
            steps: &[Done(None, "jörg", "pässwörd".as_bytes())],
        },
        // `=` is the empty initial response: not a PLAIN message.
        Transcript {
            auth: ("PLAIN", Some("=")),
            lines: &[],
            steps: &[Malformed],
        },
        // Missing NULs: "userpass", "\0userpass".
        Transcript {
            auth: ("PLAIN", Some("dXNlcnBhc3M=")),
            lines: &[],
            steps: &[Malformed],
        },
        Transcript {
            auth: ("PLAIN", Some("AHVzZXJwYXNz")),
            lines: &[],
            steps: &[Malformed],
        },
        // Three NULs: "\0user\0pa\0ss".
        Transcript {
            auth: ("PLAIN", Some("AHVzZXIAcGEAc3M=")),
            lines: &[],
            steps: &[Malformed],
        },
        // Empty user, empty password: "\0\0pass", "\0user\0".
        Transcript {
            auth: ("PLAIN", Some("AABwYXNz")),
            lines: &[],
            steps: &[Malformed],
        },
        Transcript {
            auth: ("PLAIN", Some("AHVzZXIA")),
            lines: &[],
            steps: &[Malformed],
        },
        // A user name that is not UTF-8: "\0\xff\0pass".
        Transcript {
            auth: ("PLAIN", Some("AP8AcGFzcw==")),
            lines: &[],
            steps: &[Malformed],
        },
        // Bad base64, initial and continuation.
        Transcript {
            auth: ("PLAIN", Some("AHVzZXIAcGFzcw")),
            lines: &[],
            steps: &[Malformed],
        },
        Transcript {
            auth: ("PLAIN", None),
            lines: &["AHVzZXIAcGFzcw== "],
            steps: &[Challenge(""), Malformed],
        },
        // `=` on a continuation line is not special (RFC 4954 §4 defines it for the
        // initial response only) and not base64.
        Transcript {
            auth: ("PLAIN", None),
            lines: &["="],
            steps: &[Challenge(""), Malformed],
        },
        Transcript {
            auth: ("PLAIN", None),
            lines: &[""],
            steps: &[Challenge(""), Malformed],
        },
        // `*` cancels.
        Transcript {
            auth: ("PLAIN", None),
            lines: &["*"],
            steps: &[Challenge(""), Cancelled],
        },
        // ...but is not base64 as an initial response.
        Transcript {
            auth: ("PLAIN", Some("*")),
            lines: &[],
            steps: &[Malformed],
        },
        // LOGIN without an initial response.
        Transcript {
            auth: ("LOGIN", None),
            lines: &["dXNlcg==", "cGFzcw=="],
            steps: &[
                Challenge("VXNlcm5hbWU6"),
                Challenge("UGFzc3dvcmQ6"),
                Done(None, "user", b"pass"),
            ],
        },
        // LOGIN with the user name as initial response.
        Transcript {
            auth: ("login", Some("dXNlcg==")),
            lines: &["cGFzcw=="],
            steps: &[Challenge("UGFzc3dvcmQ6"), Done(None, "user", b"pass")],
        },
        // LOGIN cancelled at either prompt.
        Transcript {
            auth: ("LOGIN", None),
            lines: &["*"],
            steps: &[Challenge("VXNlcm5hbWU6"), Cancelled],
        },
        Transcript {
            auth: ("LOGIN", Some("dXNlcg==")),
            lines: &["*"],
            steps: &[Challenge("UGFzc3dvcmQ6"), Cancelled],
        },
        // LOGIN with empty or bad answers.
        Transcript {
            auth: ("LOGIN", Some("=")),
            lines: &[],
            steps: &[Malformed],
        },
        Transcript {
            auth: ("LOGIN", None),
            lines: &[""],
            steps: &[Challenge("VXNlcm5hbWU6"), Malformed],
        },
        Transcript {
            auth: ("LOGIN", None),
            lines: &["dXNlcg==", ""],
            steps: &[
                Challenge("VXNlcm5hbWU6"),
                Challenge("UGFzc3dvcmQ6"),
                Malformed,
            ],
        },
        Transcript {
            auth: ("LOGIN", None),
            lines: &["dXNlcg==", "cGFzcw"],
            steps: &[
                Challenge("VXNlcm5hbWU6"),
                Challenge("UGFzc3dvcmQ6"),
                Malformed,
            ],
        },
        // A NUL inside a LOGIN user name: "us\0er".
        Transcript {
            auth: ("LOGIN", Some("dXMAZXI=")),
            lines: &[],
            steps: &[Malformed],
        },
        // LOGIN has no separator, so a NUL in the password ("pa\0ss") is just a byte;
        // no stored hash can match it.
        Transcript {
            auth: ("LOGIN", Some("dXNlcg==")),
            lines: &["cGEAc3M="],
            steps: &[Challenge("UGFzc3dvcmQ6"), Done(None, "user", b"pa\0ss")],
        },
        // Lines after the end are a caller bug, answered as malformed.
        Transcript {
            auth: ("PLAIN", Some("AHVzZXIAcGFzcw==")),
            lines: &["AHVzZXIAcGFzcw=="],
            steps: &[Done(None, "user", b"pass"), Malformed],
        },
    ];

    #[test]
    fn transcripts() {
        for (i, t) in TRANSCRIPTS.iter().enumerate() {
            let (mut ex, first) = Exchange::start(t.auth.0, t.auth.1).expect("mechanism");
            let mut got = vec![want(first)];
            for line in t.lines {
                got.push(want(ex.handle_line(line.as_bytes())));
            }
            assert_eq!(got, t.steps, "transcript {i}: AUTH {:?}", t.auth);
            assert!(ex.is_finished(), "transcript {i}");
        }
    }

    #[test]
    fn unsupported_mechanisms() {
        for m in ["CRAM-MD5", "XOAUTH2", "PLAIN2", "", "PLAINX"] {
            assert_eq!(
                Exchange::start(m, None).err(),
                Some(UnsupportedMechanism),
                "{m}"
            );
        }
    }

    #[test]
    fn line_length_limit() {
        // "\0user\0" + a password that makes exactly MAX_RESPONSE_LEN of base64.
        let mut msg = b"\0user\0".to_vec();
        msg.resize(MAX_RESPONSE_LEN / 4 * 3, b'p');
        let line = base64::encode(&msg);
        assert_eq!(line.len(), MAX_RESPONSE_LEN);
        let (mut ex, _) = Exchange::start("PLAIN", None).unwrap();
        assert!(matches!(ex.handle_line(line.as_bytes()), Step::Done { .. }));
        let (_, step) = Exchange::start("PLAIN", Some(&line)).unwrap();
        assert!(matches!(step, Step::Done { .. }));

        let longer = format!("{line}AAAA");
        let (mut ex, _) = Exchange::start("PLAIN", None).unwrap();
        assert_eq!(ex.handle_line(longer.as_bytes()), Step::TooLong);
        let (_, step) = Exchange::start("PLAIN", Some(&longer)).unwrap();
        assert_eq!(step, Step::TooLong);
        let (mut ex, _) = Exchange::start("LOGIN", None).unwrap();
        assert_eq!(ex.handle_line(longer.as_bytes()), Step::TooLong);
    }

    #[test]
    fn debug_hides_the_password() {
        let (_, step) = Exchange::start("PLAIN", Some("AHVzZXIAcGFzcw==")).unwrap();
        assert_eq!(
            format!("{step:?}"),
            r#"Done { authzid: None, username: "user", password: Secret(4 bytes) }"#
        );
    }
}
