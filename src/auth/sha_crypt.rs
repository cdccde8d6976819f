//! SHA-256-crypt (`$5$`) and SHA-512-crypt (`$6$`), as specified by Ulrich Drepper,
//! "Unix crypt using SHA-256 and SHA-512" (version 0.6, 2016), the scheme of glibc's
//! crypt(3), `openssl passwd -5/-6` and `mkpasswd -m sha-512`.
//!
//! A hash reads `$6$[rounds=N$]SALT$CHECKSUM`:
//! - `rounds=N` is optional (default [`DEFAULT_ROUNDS`]); [`crypt`] clamps N into
//!   [`MIN_ROUNDS`]`..=`[`MAX_ROUNDS`] and writes the clamped value, as the spec says.
//! - SALT is at most [`MAX_SALT_LEN`] characters; [`crypt`] cuts a longer one.
//! - CHECKSUM is 43 (`$5$`) or 86 (`$6$`) characters of the crypt alphabet `./0-9A-Za-z`.
//!
//! Invariants:
//! - [`Hash::parse`] accepts only the canonical strings [`crypt`] itself produces
//!   (no leading zeros, no out-of-range rounds, no over-long salt): anything else could
//!   never verify, and an administrator is better told so when the file is loaded.
//! - [`verify`] recomputes the whole string and compares it with the stored one in time
//!   that does not depend on where they differ.
//! - The cost is O(len(password)²) (step 13 hashes the password len(password) times),
//!   so callers that take passwords from the network bound their length first
//!   (see `users::MAX_PASSWORD_LEN`).
//! - Nothing here panics on any input.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use ring::digest;

use super::secret::wipe;

/// Spec: "the default number of rounds is 5000".
pub const DEFAULT_ROUNDS: u32 = 5000;
/// Spec: "the minimum number of rounds is 1000"; smaller values are raised to it.
pub const MIN_ROUNDS: u32 = 1000;
/// Spec: "the maximum number of rounds is 999,999,999"; larger values are lowered to it.
pub const MAX_ROUNDS: u32 = 999_999_999;
/// Spec: "the salt string ... up to 16 characters"; further characters are ignored.
pub const MAX_SALT_LEN: usize = 16;

const ROUNDS_PREFIX: &str = "rounds=";

/// The crypt(3) base64 alphabet: note the order differs from RFC 4648's.
const CRYPT_ALPHABET: &[u8; 64] =
    b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Spec, step 22 (SHA-256): which digest bytes make up each group of four characters,
/// most significant first. The last group is `0, 31, 30` in three characters.
const ORDER_256: [[usize; 3]; 10] = [
    [0, 10, 20],
    [21, 1, 11],
    [12, 22, 2],
    [3, 13, 23],
    [24, 4, 14],
    [15, 25, 5],
    [6, 16, 26],
    [27, 7, 17],
    [18, 28, 8],
    [9, 19, 29],
];

/// Spec, step 22 (SHA-512). The last group is byte 63 alone, in two characters.
const ORDER_512: [[usize; 3]; 21] = [
    [0, 21, 42],
    [22, 43, 1],
    [44, 2, 23],
    [3, 24, 45],
    [25, 46, 4],
    [47, 5, 26],
    [6, 27, 48],
    [28, 49, 7],
    [50, 8, 29],
    [9, 30, 51],
    [31, 52, 10],
    [53, 11, 32],
    [12, 33, 54],
    [34, 55, 13],
    [56, 14, 35],
    [15, 36, 57],
    [37, 58, 16],
    [59, 17, 38],
    [18, 39, 60],
    [40, 61, 19],
    [62, 20, 41],
];

/// Which SHA-2 function: the `$5$` or `$6$` prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    Sha256,
    Sha512,
}

impl Scheme {
    pub fn prefix(self) -> &'static str {
        match self {
            Scheme::Sha256 => "$5$",
            Scheme::Sha512 => "$6$",
        }
    }

    fn algorithm(self) -> &'static digest::Algorithm {
        match self {
            Scheme::Sha256 => &digest::SHA256,
            Scheme::Sha512 => &digest::SHA512,
        }
    }

    /// Characters of the encoded checksum: 32 bytes → 43, 64 bytes → 86.
    pub fn checksum_len(self) -> usize {
        match self {
            Scheme::Sha256 => 43,
            Scheme::Sha512 => 86,
        }
    }

    fn from_prefix(s: &str) -> Option<(Scheme, &str)> {
        if let Some(rest) = s.strip_prefix("$5$") {
            Some((Scheme::Sha256, rest))
        } else {
            s.strip_prefix("$6$").map(|rest| (Scheme::Sha512, rest))
        }
    }
}

/// Why a string is not a usable SHA-crypt hash or setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashError {
    /// Not `$5$`/`$6$`; carries a hint naming the scheme when it is a known other one.
    Scheme(&'static str),
    /// `rounds=` not followed by digits and `$`, or with leading zeros.
    Rounds,
    /// A rounds value crypt(3) would have changed (the digits as written), so the hash
    /// can never match.
    RoundsOutOfRange(String),
    /// The salt is longer than [`MAX_SALT_LEN`].
    SaltTooLong,
    /// A salt character that is not printable ASCII, or is `$` or `:`.
    SaltCharacter,
    /// No `$` between salt and checksum.
    MissingChecksum,
    /// The checksum has the wrong length or a character outside `./0-9A-Za-z`.
    Checksum,
}

impl fmt::Display for HashError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HashError::Scheme(hint) => write!(
                f,
                "not a SHA-crypt hash ($5$ or $6$){hint}; make one with 'postling passwd' or 'openssl passwd -6'"
            ),
            HashError::Rounds => f.write_str("bad 'rounds=N$' in hash"),
            HashError::RoundsOutOfRange(n) => write!(
                f,
                "rounds={n} is outside {MIN_ROUNDS}..{MAX_ROUNDS}, so the hash can never match"
            ),
            HashError::SaltTooLong => {
                write!(f, "salt longer than {MAX_SALT_LEN} characters in hash")
            }
            HashError::SaltCharacter => f.write_str("bad character in the salt of hash"),
            HashError::MissingChecksum => f.write_str("hash has no '$CHECKSUM' after the salt"),
            HashError::Checksum => f.write_str("bad checksum part in hash (wrong length or character)"),
        }
    }
}

impl std::error::Error for HashError {}

/// Name the scheme of a hash we do not support, for a useful error message.
fn scheme_hint(s: &str) -> &'static str {
    const KNOWN: &[(&str, &str)] = &[
        ("$1$", " (this is MD5-crypt, which is too weak)"),
        ("$2a$", " (this is bcrypt, not supported)"),
        ("$2b$", " (this is bcrypt, not supported)"),
        ("$2y$", " (this is bcrypt, not supported)"),
        ("$y$", " (this is yescrypt, not supported)"),
        ("$7$", " (this is scrypt, not supported)"),
        ("$argon2", " (this is Argon2, not supported)"),
        ("$apr1$", " (this is Apache MD5, which is too weak)"),
        ("{", " (LDAP-style {SCHEME} hashes are not supported)"),
    ];
    KNOWN
        .iter()
        .find(|(p, _)| s.starts_with(p))
        .map_or("", |&(_, hint)| hint)
}

fn is_salt_byte(b: u8) -> bool {
    // Printable ASCII without `$` (the field separator) and `:` (the users file's).
    b.is_ascii_graphic() && b != b'$' && b != b':'
}

/// Parsed `$N$[rounds=R$]SALT` prefix of a setting or hash.
struct Setting<'a> {
    scheme: Scheme,
    /// `Some` when `rounds=` was given, already clamped: it is then written out again.
    rounds: Option<u32>,
    salt: &'a str,
    /// The salt in the text was longer than [`MAX_SALT_LEN`] and `salt` is its start.
    salt_cut: bool,
    /// What follows the salt (`$CHECKSUM` for a full hash, often empty for a setting).
    rest: &'a str,
}

/// Parse a setting the way crypt(3) does (clamp rounds, cut the salt), but strictly:
/// `rounds=` must be digits and `$`, and the salt must be printable ASCII.
fn parse_setting(s: &str) -> Result<Setting<'_>, HashError> {
    let (scheme, mut rest) = Scheme::from_prefix(s).ok_or(HashError::Scheme(scheme_hint(s)))?;
    let mut rounds = None;
    if let Some(r) = rest.strip_prefix(ROUNDS_PREFIX) {
        let (digits, after) = r.split_once('$').ok_or(HashError::Rounds)?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(HashError::Rounds);
        }
        // Saturate like strtoul does: an absurd count is simply "the maximum".
        let n = digits.bytes().fold(0u64, |n, d| {
            n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
        });
        rounds = Some(n.clamp(u64::from(MIN_ROUNDS), u64::from(MAX_ROUNDS)) as u32);
        rest = after;
    }
    let salt_end = rest.find('$').unwrap_or(rest.len());
    let (full_salt, tail) = rest.split_at(salt_end);
    if !full_salt.bytes().all(is_salt_byte) {
        return Err(HashError::SaltCharacter);
    }
    // ASCII only (checked above), so cutting at a byte index is cutting at a character.
    let salt = &full_salt[..full_salt.len().min(MAX_SALT_LEN)];
    Ok(Setting {
        scheme,
        rounds,
        salt,
        salt_cut: salt.len() < full_salt.len(),
        rest: tail,
    })
}

/// The SHA-crypt digest (spec steps 1–21).
fn digest_bytes(scheme: Scheme, password: &[u8], salt: &[u8], rounds: u32) -> digest::Digest {
    let alg = scheme.algorithm();
    let hash_len = alg.output_len();
    let pw_len = password.len();

    // Steps 4–8: digest B = H(password, salt, password).
    let mut ctx = digest::Context::new(alg);
    ctx.update(password);
    ctx.update(salt);
    ctx.update(password);
    let b = ctx.finish();

    // Steps 1–3, 9–12: digest A starts with password and salt, then len(password)
    // bytes taken from B repeated.
    let mut ctx = digest::Context::new(alg);
    ctx.update(password);
    ctx.update(salt);
    let mut n = pw_len;
    while n > hash_len {
        ctx.update(b.as_ref());
        n -= hash_len;
    }
    ctx.update(&b.as_ref()[..n]);
    // Step 11: for each bit of len(password), lowest first: 1 adds B, 0 adds the password.
    let mut bits = pw_len;
    while bits > 0 {
        if bits & 1 == 1 {
            ctx.update(b.as_ref());
        } else {
            ctx.update(password);
        }
        bits >>= 1;
    }
    let a = ctx.finish();

    // Steps 13–16: DP = H(password repeated len(password) times); P is DP repeated to
    // len(password) bytes.
    let mut ctx = digest::Context::new(alg);
    for _ in 0..pw_len {
        ctx.update(password);
    }
    let dp = ctx.finish();
    let mut p: Vec<u8> = dp.as_ref().iter().copied().cycle().take(pw_len).collect();

    // Steps 17–20: DS = H(salt repeated 16 + A[0] times); S is DS cut to len(salt).
    let mut ctx = digest::Context::new(alg);
    for _ in 0..16 + usize::from(a.as_ref()[0]) {
        ctx.update(salt);
    }
    let ds = ctx.finish();
    let s = &ds.as_ref()[..salt.len()];

    // Step 21: the rounds.
    let mut c = a;
    for i in 0..rounds {
        let mut ctx = digest::Context::new(alg);
        if i & 1 == 1 {
            ctx.update(&p);
        } else {
            ctx.update(c.as_ref());
        }
        if i % 3 != 0 {
            ctx.update(s);
        }
        if i % 7 != 0 {
            ctx.update(&p);
        }
        if i & 1 == 1 {
            ctx.update(c.as_ref());
        } else {
            ctx.update(&p);
        }
        c = ctx.finish();
    }
    wipe(&mut p);
    c
}

/// Step 22: the digest in the crypt alphabet, in the spec's byte order.
fn encode_checksum(scheme: Scheme, d: &[u8], out: &mut String) {
    let mut put = |w: u32, chars: usize| {
        for k in 0..chars {
            out.push(char::from(CRYPT_ALPHABET[(w >> (6 * k) & 63) as usize]));
        }
    };
    let group =
        |[x, y, z]: [usize; 3]| u32::from(d[x]) << 16 | u32::from(d[y]) << 8 | u32::from(d[z]);
    match scheme {
        Scheme::Sha256 => {
            for g in ORDER_256 {
                put(group(g), 4);
            }
            put(u32::from(d[31]) << 8 | u32::from(d[30]), 3);
        }
        Scheme::Sha512 => {
            for g in ORDER_512 {
                put(group(g), 4);
            }
            put(u32::from(d[63]), 2);
        }
    }
}

/// The full string for a parsed setting.
fn render(scheme: Scheme, rounds: Option<u32>, salt: &str, password: &[u8]) -> String {
    let effective = rounds.unwrap_or(DEFAULT_ROUNDS);
    let d = digest_bytes(scheme, password, salt.as_bytes(), effective);
    let mut out = String::with_capacity(3 + 17 + salt.len() + 1 + scheme.checksum_len());
    out.push_str(scheme.prefix());
    if let Some(r) = rounds {
        out.push_str(ROUNDS_PREFIX);
        out.push_str(&r.to_string());
        out.push('$');
    }
    out.push_str(salt);
    out.push('$');
    encode_checksum(scheme, d.as_ref(), &mut out);
    out
}

/// crypt(3) for `$5$`/`$6$`: hash `password` with the scheme, rounds and salt of
/// `setting` (a bare setting like `$6$rounds=10$salt`, or a whole stored hash). Rounds
/// are clamped and the salt cut to 16 characters, as the spec requires.
pub fn crypt(password: &[u8], setting: &str) -> Result<String, HashError> {
    let s = parse_setting(setting)?;
    Ok(render(s.scheme, s.rounds, s.salt, password))
}

/// A stored hash, checked to be canonical (see the module invariants).
#[derive(Clone, PartialEq, Eq)]
pub struct Hash {
    text: String,
    scheme: Scheme,
    rounds: Option<u32>,
    salt: Range<usize>,
}

impl Hash {
    /// Accept exactly the strings [`crypt`] produces.
    pub fn parse(text: &str) -> Result<Hash, HashError> {
        let s = parse_setting(text)?;
        if let Some(after_prefix) = text[3..].strip_prefix(ROUNDS_PREFIX) {
            // Canonical means crypt(3) would write the same digits back.
            let digits = after_prefix.split('$').next().unwrap_or("");
            if digits.len() > 1 && digits.starts_with('0') {
                return Err(HashError::Rounds);
            }
            if digits.parse::<u64>().ok() != s.rounds.map(u64::from) {
                return Err(HashError::RoundsOutOfRange(digits.to_string()));
            }
        }
        if s.salt_cut {
            return Err(HashError::SaltTooLong);
        }
        let checksum = s.rest.strip_prefix('$').ok_or(HashError::MissingChecksum)?;
        let salt_start = text.len() - s.rest.len() - s.salt.len();
        if checksum.len() != s.scheme.checksum_len()
            || !checksum.bytes().all(|b| CRYPT_ALPHABET.contains(&b))
        {
            return Err(HashError::Checksum);
        }
        Ok(Hash {
            text: text.to_string(),
            scheme: s.scheme,
            rounds: s.rounds,
            salt: salt_start..salt_start + s.salt.len(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The effective number of rounds (explicit or the default 5000).
    pub fn rounds(&self) -> u32 {
        self.rounds.unwrap_or(DEFAULT_ROUNDS)
    }

    pub fn salt(&self) -> &str {
        &self.text[self.salt.clone()]
    }

    /// A hash with the same scheme, rounds and salt length as this one, hence the same
    /// verification cost: what an unknown user is verified against (see [`decoy`]).
    pub fn decoy(&self) -> Hash {
        decoy(self.scheme, self.rounds, self.salt.len())
    }
}

/// A hash that costs as much to verify as any with this scheme, rounds (`None`: the
/// default, not written out) and salt length (at most 16). Its checksum is all `.`, which
/// no password is known to produce; callers must not accept a match against it anyway
/// (`users::Users::verify` does not).
pub fn decoy(scheme: Scheme, rounds: Option<u32>, salt_len: usize) -> Hash {
    const FILL: &str = "postlingdecoysal";
    let salt = &FILL[..salt_len.min(FILL.len())];
    let rounds = rounds.map(|r| r.clamp(MIN_ROUNDS, MAX_ROUNDS));
    let mut text = String::from(scheme.prefix());
    if let Some(r) = rounds {
        text.push_str(ROUNDS_PREFIX);
        text.push_str(&r.to_string());
        text.push('$');
    }
    let salt_start = text.len();
    text.push_str(salt);
    text.push('$');
    text.extend(std::iter::repeat_n('.', scheme.checksum_len()));
    Hash {
        text,
        scheme,
        rounds,
        salt: salt_start..salt_start + salt.len(),
    }
}

impl FromStr for Hash {
    type Err = HashError;
    fn from_str(s: &str) -> Result<Hash, HashError> {
        Hash::parse(s)
    }
}

impl fmt::Debug for Hash {
    /// Not the checksum: it is what an offline password guesser needs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Hash({}rounds={}${}$…)",
            self.scheme.prefix(),
            self.rounds(),
            self.salt()
        )
    }
}

/// Hash `password` for storage: `$6$SALT$…` (or with `rounds=N$` when `rounds` is
/// given; it is clamped like crypt(3) does). The salt must be at most 16 characters of
/// printable ASCII other than `$` and `:`.
pub fn hash(
    password: &[u8],
    salt: &str,
    scheme: Scheme,
    rounds: Option<u32>,
) -> Result<Hash, HashError> {
    if salt.len() > MAX_SALT_LEN {
        return Err(HashError::SaltTooLong);
    }
    if !salt.bytes().all(is_salt_byte) {
        return Err(HashError::SaltCharacter);
    }
    let rounds = rounds.map(|r| r.clamp(MIN_ROUNDS, MAX_ROUNDS));
    Hash::parse(&render(scheme, rounds, salt, password))
}

/// A salt of [`MAX_SALT_LEN`] crypt-alphabet characters from random bytes: each byte's
/// low six bits pick a character (256 is a multiple of 64, so every character is
/// equally likely: 96 bits of salt).
pub fn salt_from_random(random: &[u8; MAX_SALT_LEN]) -> String {
    random
        .iter()
        .map(|&b| char::from(CRYPT_ALPHABET[usize::from(b & 63)]))
        .collect()
}

/// Does `password` match `hash`? Recomputes the whole string and compares in constant
/// time (the position of the first difference must not show in the timing).
pub fn verify(password: &[u8], hash: &Hash) -> bool {
    let computed = render(hash.scheme, hash.rounds, hash.salt(), password);
    constant_time_eq(computed.as_bytes(), hash.text.as_bytes())
}

/// Equal lengths and bytes, in time that depends only on the length. Lengths are public
/// here (both strings have the length their scheme fixes).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // black_box keeps the optimiser from turning the fold into an early-exit compare.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (setting, password, expected): the test vectors of Drepper's specification
    /// ("Unix crypt using SHA-256 and SHA-512", section "Test vectors"), which glibc's
    /// crypt/sha256c-test.c and sha512c-test.c also carry.
    const DREPPER: &[(&str, &str, &str)] = &[
        (
            "$5$saltstring",
            "Hello world!",
            "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5",
        ),
        (
            "$5$rounds=10000$saltstringsaltstring",
            "Hello world!",
            "$5$rounds=10000$saltstringsaltst$3xv.VbSHBb41AL9AvLeujZkZRBAwqFMz2.opqey6IcA",
        ),
        (
            "$5$rounds=5000$toolongsaltstring",
            "This is just a test",
            "$5$rounds=5000$toolongsaltstrin$Un/5jzAHMgOGZ5.mWJpuVolil07guHPvOW8mGRcvxa5",
        ),
        (
            "$5$rounds=1400$anotherlongsaltstring",
            "a very much longer text to encrypt.  This one even stretches over morethan one line.",
            "$5$rounds=1400$anotherlongsalts$Rx.j8H.h8HjEDGomFU8bDkXm3XIUnzyxf12oP84Bnq1",
        ),
        (
            "$5$rounds=77777$short",
            "we have a short salt string but not a short password",
            "$5$rounds=77777$short$JiO1O3ZpDAxGJeaDIuqCoEFysAe1mZNJRs3pw0KQRd/",
        ),
        (
            "$5$rounds=123456$asaltof16chars..",
            "a short string",
            "$5$rounds=123456$asaltof16chars..$gP3VQ/6X7UUEW3HkBn2w1/Ptq2jxPyzV/cZKmF/wJvD",
        ),
        (
            "$5$rounds=10$roundstoolow",
            "the minimum number is still observed",
            "$5$rounds=1000$roundstoolow$yfvwcWrQ8l/K0DAWyuPMDNHpIVlTQebY9l/gL972bIC",
        ),
        (
            "$6$saltstring",
            "Hello world!",
            "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1",
        ),
        (
            "$6$rounds=10000$saltstringsaltstring",
            "Hello world!",
            "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v.",
        ),
        (
            "$6$rounds=5000$toolongsaltstring",
            "This is just a test",
            "$6$rounds=5000$toolongsaltstrin$lQ8jolhgVRVhY4b5pZKaysCLi0QBxGoNeKQzQ3glMhwllF7oGDZxUhx1yxdYcz/e1JSbq3y6JMxxl8audkUEm0",
        ),
        (
            "$6$rounds=1400$anotherlongsaltstring",
            "a very much longer text to encrypt.  This one even stretches over morethan one line.",
            "$6$rounds=1400$anotherlongsalts$POfYwTEok97VWcjxIiSOjiykti.o/pQs.wPvMxQ6Fm7I6IoYN3CmLs66x9t0oSwbtEW7o7UmJEiDwGqd8p4ur1",
        ),
        (
            "$6$rounds=77777$short",
            "we have a short salt string but not a short password",
            "$6$rounds=77777$short$WuQyW2YR.hBNpjjRhpYD/ifIw05xdfeEyQoMxIXbkvr0gge1a1x3yRULJ5CCaUeOxFmtlcGZelFl5CxtgfiAc0",
        ),
        (
            "$6$rounds=123456$asaltof16chars..",
            "a short string",
            "$6$rounds=123456$asaltof16chars..$BtCwjqMJGx5hrJhZywWvt0RLE8uZ4oPwcelCjmw2kSYu.Ec6ycULevoBK25fs2xXgMNrCzIMVcgEJAstJeonj1",
        ),
        (
            "$6$rounds=10$roundstoolow",
            "the minimum number is still observed",
            "$6$rounds=1000$roundstoolow$kUMsbe306n21p9R.FRkW3IGn.S9NPN0x50YhH1xhLsPuWGsUSklZt58jaTfF4ZEQpyUNGc0dqbpBYYBaHHrsX.",
        ),
    ];

    /// (salt given to openssl, password, `openssl passwd -5|-6 -salt SALT PASSWORD`),
    /// generated with OpenSSL 3.0.19 on 2026-12-04 and pasted literally. The first rows
    /// cross-check Drepper's vectors; the others cover salts of 1, 2, 3 and 16
    /// characters, non-ASCII and 200-byte passwords, and an explicit `rounds=`.
    const OPENSSL: &[(&str, &str, &str)] = &[
        (
            "saltstring",
            "Hello world!",
            "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1",
        ),
        (
            "rounds=10$roundstoolow",
            "the minimum number is still observed",
            "$5$rounds=1000$roundstoolow$yfvwcWrQ8l/K0DAWyuPMDNHpIVlTQebY9l/gL972bIC",
        ),
        (
            "pQ7./xyZ09abcdEF",
            "correct horse battery staple",
            "$6$pQ7./xyZ09abcdEF$S4.3iC.t9De48dx5ld.qcOOMq3Zk5EP/O9i3gwQJ/lLwfSVqw0soUZCQ9..Q2l1ki5bN5Sb9do6M/WErq1xJl0",
        ),
        (
            "pQ7./xyZ09abcdEF",
            "correct horse battery staple",
            "$5$pQ7./xyZ09abcdEF$rah2bJOK3dsbmNrWJsYsfXEr2ZNKsez.T/gmjSZ2Wt2",
        ),
        (
            "Ab",
            "correct horse battery staple",
            "$6$Ab$Eaw20sanNdcRvZ.MBqMYeVnXJJFvTqvIR3b5RzM7DaozruO9ZwlEaueBR7kwzw2QLsC4XM12bkIBugOeahzSo/",
        ),
        (
            "Ab",
            "correct horse battery staple",
            "$5$Ab$8VU5cj0WQFtGLoqFw3ttA9761tbXaq3btvj7aShabvB",
        ),
        (
            "x",
            "correct horse battery staple",
            "$6$x$JPZkRLGV6I4cNJqQuyxNeRiBAU88jeD8GIN3csjnRhyurQuY3p7Dp4zLbthPUYbpWXg0BxtkLWgI7.m8O3PXl.",
        ),
        (
            "x",
            "correct horse battery staple",
            "$5$x$RrDtgbaz46pvvLWqPJLm/GAw4W5wMRX6aV0oly1Xj6.",
        ),
        (
            "Zz9",
            "pässwörd",
            "$6$Zz9$xQHiGS9.1YOwnCciNkDubnAU58BKY1l0Q/up1eobaEu68fZtjSbHQB7bcbaFOY8hde3.1Jl0NSR9..Z.bar8X/",
        ),
        (
            "Zz9",
            "pässwörd",
            "$5$Zz9$p1TlOMdCSlr.cRsBFHbH5Jq2KA9tE8RbkY3Aw2c3tK/",
        ),
        (
            "sixteencharssalt",
            "a200",
            "$6$sixteencharssalt$weKP5i.ag9CqjdnC2gzA870vLY0NZU0kMkQPnivnl6y1ry2wBKQgxgMdkOZCiY4ibLqPyXbUWaggqapjvmy3H1",
        ),
        (
            "sixteencharssalt",
            "a200",
            "$5$sixteencharssalt$0/krj3xMVnNcVKtgNKbFV3xsBolaEVvOPc2m47gTm72",
        ),
        (
            "rounds=1234$Q2",
            "hunter2",
            "$6$rounds=1234$Q2$/M7hostJoIhLTmOgHfZU5CAWyvT9X6/CMyWNq68LyEtonbo63ycTv44aeY/jHcPaNI1FvDOeVkUsnJNo2Obpk/",
        ),
        (
            "rounds=1234$Q2",
            "hunter2",
            "$5$rounds=1234$Q2$G1tdAr9KUmNsh3esnd2WAOgonmYdAuoUm1miU5E3Z//",
        ),
        (
            "rounds=5000$abc",
            "hunter2",
            "$6$rounds=5000$abc$DgQcmr5KFqu3fq81mYtIJay1T2LBpa.rQ2RhGMZh1rrZZTaVbmnQH3Ulo10Skn5W2CNkPoN8xS.9uYEnniHHC0",
        ),
        (
            "abc",
            "hunter2",
            "$6$abc$DgQcmr5KFqu3fq81mYtIJay1T2LBpa.rQ2RhGMZh1rrZZTaVbmnQH3Ulo10Skn5W2CNkPoN8xS.9uYEnniHHC0",
        ),
    ];

    /// "a200" in the table stands for 200 times 'a' (the shell built it with printf).
    fn password(p: &str) -> Vec<u8> {
        match p {
            "a200" => vec![b'a'; 200],
            _ => p.as_bytes().to_vec(),
        }
    }

    #[test]
    fn drepper_vectors() {
        for &(setting, pw, want) in DREPPER {
            assert_eq!(
                crypt(pw.as_bytes(), setting).as_deref(),
                Ok(want),
                "{setting}"
            );
            // The result is canonical and verifies (that is crypt(pw, result) == result).
            let h = Hash::parse(want).expect(want);
            assert!(verify(pw.as_bytes(), &h), "{want}");
        }
    }

    #[test]
    fn openssl_vectors() {
        for &(salt, pw, want) in OPENSSL {
            let setting = format!("{}{salt}", &want[..3]);
            assert_eq!(
                crypt(&password(pw), &setting).as_deref(),
                Ok(want),
                "{setting}"
            );
            let h = Hash::parse(want).expect(want);
            assert!(verify(&password(pw), &h), "{want}");
        }
    }

    #[test]
    fn empty_salt_and_password() {
        // Empty salt: from the test suites of PHP's crypt() and Perl's Crypt::Passwd::XS.
        const CASES: &[(&str, &str, &str)] = &[
            ("$5$", "test1234", "$5$$LTI8w5KsA5bMCaf3VTEMPeKckTBV4y9mN7la4rjh896"),
            ("$5$test1234", "", "$5$test1234$UA0OvNpssFd2pcJm0sJ0ne3E6b518x/YEIPtJO8m841"),
            (
                "$6$$bar$",
                "foo",
                "$6$$QMXjqd7rHQZPQ1yHsXkQqC1FBzDiVfTHXL.LaeDAeVV.IzMaV9VU4MQ8kPuZa2SOP1A0RPm772EaFYjpEJtdu.",
            ),
        ];
        for &(setting, pw, want) in CASES {
            assert_eq!(
                crypt(pw.as_bytes(), setting).as_deref(),
                Ok(want),
                "{setting}"
            );
        }
    }

    #[test]
    fn verify_rejects_near_misses() {
        let h = Hash::parse(OPENSSL[2].2).unwrap();
        for pw in [
            &b"correct horse battery staple"[..],
            b"correct horse battery stapl",
            b"correct horse battery staple ",
            b"Correct horse battery staple",
            b"",
        ] {
            assert_eq!(
                verify(pw, &h),
                pw == b"correct horse battery staple",
                "{pw:?}"
            );
        }
    }

    #[test]
    fn parse_rejects() {
        let c86 = ".".repeat(86);
        let c43 = ".".repeat(43);
        let cases: Vec<(String, HashError)> = vec![
            (String::new(), HashError::Scheme("")),
            ("plaintext".into(), HashError::Scheme("")),
            (
                "$1$saltsalt$le8lFSqqnPaRFOlmAZpvH1".into(),
                HashError::Scheme(" (this is MD5-crypt, which is too weak)"),
            ),
            (
                "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW".into(),
                HashError::Scheme(" (this is bcrypt, not supported)"),
            ),
            (
                "$y$j9T$salt$hash".into(),
                HashError::Scheme(" (this is yescrypt, not supported)"),
            ),
            ("$6".into(), HashError::Scheme("")),
            (format!("$6$rounds=$salt${c86}"), HashError::Rounds),
            (format!("$6$rounds=1e4$salt${c86}"), HashError::Rounds),
            (format!("$6$rounds=-5$salt${c86}"), HashError::Rounds),
            (format!("$6$rounds=05000$salt${c86}"), HashError::Rounds),
            ("$6$rounds=5000".into(), HashError::Rounds),
            (
                format!("$6$rounds=10$salt${c86}"),
                HashError::RoundsOutOfRange("10".into()),
            ),
            (
                format!("$6$rounds=1000000000$salt${c86}"),
                HashError::RoundsOutOfRange("1000000000".into()),
            ),
            (
                format!("$6$rounds=99999999999999999999999$salt${c86}"),
                HashError::RoundsOutOfRange("99999999999999999999999".into()),
            ),
            (
                format!("$6$toolongsaltstring${c86}"),
                HashError::SaltTooLong,
            ),
            (format!("$6$sa lt${c86}"), HashError::SaltCharacter),
            (format!("$6$sa:lt${c86}"), HashError::SaltCharacter),
            (format!("$6$s\u{e4}lt${c86}"), HashError::SaltCharacter),
            ("$6$salt".into(), HashError::MissingChecksum),
            ("$6$salt$".into(), HashError::Checksum),
            (format!("$6$salt${c43}"), HashError::Checksum),
            (format!("$5$salt${c86}"), HashError::Checksum),
            (format!("$6$salt${}", &c86[1..]), HashError::Checksum),
            (format!("$6$salt${c86}."), HashError::Checksum),
            (format!("$6$salt${}+", &c86[1..]), HashError::Checksum),
            (format!("$6$salt${c86}$"), HashError::Checksum),
            (format!("$6$salt${c86}\n"), HashError::Checksum),
        ];
        for (text, want) in cases {
            assert_eq!(Hash::parse(&text), Err(want), "{text:?}");
        }
        // The bounds themselves are fine.
        for r in [MIN_ROUNDS, MAX_ROUNDS] {
            assert!(Hash::parse(&format!("$6$rounds={r}$salt${c86}")).is_ok());
        }
    }

    #[test]
    fn hash_for_storage() {
        let h = hash(b"hunter2", "abc", Scheme::Sha512, None).unwrap();
        assert_eq!(h.as_str(), OPENSSL[15].2);
        assert_eq!(
            (h.scheme(), h.rounds(), h.salt()),
            (Scheme::Sha512, 5000, "abc")
        );
        let h = hash(b"hunter2", "abc", Scheme::Sha512, Some(5000)).unwrap();
        assert_eq!(h.as_str(), OPENSSL[14].2);
        let h = hash(b"hunter2", "Q2", Scheme::Sha256, Some(1234)).unwrap();
        assert_eq!(h.as_str(), OPENSSL[13].2);
        // Clamped like crypt(3).
        let h = hash(b"x", "s", Scheme::Sha256, Some(1)).unwrap();
        assert!(h.as_str().starts_with("$5$rounds=1000$s$"), "{h:?}");
        assert_eq!(
            hash(b"x", "toolongsaltstring", Scheme::Sha512, None),
            Err(HashError::SaltTooLong)
        );
        assert_eq!(
            hash(b"x", "a$b", Scheme::Sha512, None),
            Err(HashError::SaltCharacter)
        );
    }

    #[test]
    fn decoy_costs_the_same_and_matches_nothing() {
        for &(_, pw, want) in &OPENSSL[12..] {
            let h = Hash::parse(want).unwrap();
            let d = h.decoy();
            assert_eq!(
                (d.scheme(), d.rounds(), d.salt().len()),
                (h.scheme(), h.rounds(), h.salt().len())
            );
            assert_eq!(Hash::parse(d.as_str()).as_ref(), Ok(&d));
            assert!(!verify(pw.as_bytes(), &d));
            assert!(!verify(b"", &d));
        }
    }

    #[test]
    fn debug_hides_the_checksum() {
        let h = Hash::parse(OPENSSL[12].2).unwrap();
        assert_eq!(format!("{h:?}"), "Hash($6$rounds=1234$Q2$…)");
        let h = Hash::parse(OPENSSL[15].2).unwrap();
        assert_eq!(format!("{h:?}"), "Hash($6$rounds=5000$abc$…)");
    }

    #[test]
    fn random_salts() {
        let mut bytes = [0u8; MAX_SALT_LEN];
        assert_eq!(salt_from_random(&bytes), "................");
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (i * 17 + 200) as u8;
        }
        let salt = salt_from_random(&bytes);
        assert_eq!(salt, "6NevARizEVm1IZq5");
        assert!(hash(b"x", &salt, Scheme::Sha512, None).is_ok());
    }

    #[test]
    fn constant_time_compare() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
