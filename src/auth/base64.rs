//! Base64 with the standard alphabet and padding (RFC 4648 §4), as SMTP AUTH uses it
//! (RFC 4954 §4: challenges and responses are "encoded using Base64").
//!
//! Invariants:
//! - [`decode`] is strict: only `A-Z a-z 0-9 + /`, length a multiple of 4, `=` only as
//!   the last one or two characters, and the unused bits of the last symbol zero
//!   (RFC 4648 §3.5 "canonical encoding"). No white space, no line breaks, no URL-safe
//!   alphabet. Anything else is an error, never "fixed up": an attacker must not be able
//!   to smuggle two different byte strings past us under one text.
//! - `decode(encode(x)) == x` for every `x`, and `encode(decode(t)) == t` for every `t`
//!   that decodes.
//! - Nothing here panics on any input.

use std::fmt;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Why a text is not strict base64.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The length is not a multiple of 4 (RFC 4648 §4: the output is always padded).
    Length,
    /// A byte outside the alphabet at this offset (white space included).
    Byte(usize),
    /// `=` somewhere other than the last one or two positions.
    Padding,
    /// The unused low bits of the last symbol are not zero (RFC 4648 §3.5).
    NonCanonical,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Length => f.write_str("base64 length is not a multiple of 4"),
            DecodeError::Byte(at) => write!(f, "invalid base64 character at offset {at}"),
            DecodeError::Padding => f.write_str("misplaced base64 padding"),
            DecodeError::NonCanonical => f.write_str("non-canonical base64 (nonzero pad bits)"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Encode `input` with padding.
pub fn encode(input: &[u8]) -> String {
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        let sym = |shift: u32| char::from(ALPHABET[(n >> shift & 63) as usize]);
        out.push(sym(18));
        out.push(sym(12));
        out.push(if chunk.len() > 1 { sym(6) } else { '=' });
        out.push(if chunk.len() > 2 { sym(0) } else { '=' });
    }
    out
}

/// The 6-bit value of an alphabet byte.
fn value(c: u8) -> Option<u32> {
    let v = match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    };
    Some(u32::from(v))
}

/// Decode strict base64 (see the module invariants). The empty text is the empty string.
pub fn decode(input: &[u8]) -> Result<Vec<u8>, DecodeError> {
    if !input.len().is_multiple_of(4) {
        return Err(DecodeError::Length);
    }
    // Exact capacity: credentials decoded here are wiped by their owner, and a
    // reallocation would leave an unwiped copy behind in freed memory.
    let pad = input
        .iter()
        .rev()
        .take(2)
        .take_while(|&&c| c == b'=')
        .count();
    let mut out = Vec::with_capacity(input.len() / 4 * 3 - pad);
    let last_group = input.len().saturating_sub(4);
    for (g, group) in input.chunks_exact(4).enumerate() {
        let base = g * 4;
        let is_last = base == last_group;
        let mut n: u32 = 0;
        let mut symbols = 0;
        for (i, &c) in group.iter().enumerate() {
            if c == b'=' {
                // Padding: only in the last group, only in positions 2 and 3, and once
                // started it runs to the end ("ab=c" is wrong).
                if !is_last || i < 2 || group[i..].iter().any(|&x| x != b'=') {
                    return Err(DecodeError::Padding);
                }
                break;
            }
            let v = value(c).ok_or(DecodeError::Byte(base + i))?;
            n |= v << (18 - 6 * i as u32);
            symbols += 1;
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        // 4 symbols carry 3 bytes, 3 carry 2 (2 spare bits), 2 carry 1 (4 spare bits).
        let len = symbols - 1;
        let spare = match len {
            1 => n & 0xFFFF,
            2 => n & 0xFF,
            _ => 0,
        };
        if spare != 0 {
            return Err(DecodeError::NonCanonical);
        }
        out.extend_from_slice(&bytes[..len]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4648 §10 test vectors, plus binary and credential-shaped ones.
    const ROUND_TRIP: &[(&[u8], &str)] = &[
        (b"", ""),
        (b"f", "Zg=="),
        (b"fo", "Zm8="),
        (b"foo", "Zm9v"),
        (b"foob", "Zm9vYg=="),
        (b"fooba", "Zm9vYmE="),
        (b"foobar", "Zm9vYmFy"),
        (b"\0user\0pass", "AHVzZXIAcGFzcw=="),
        (b"Username:", "VXNlcm5hbWU6"),
        (b"Password:", "UGFzc3dvcmQ6"),
        (b"\xff\xfe\xfd\xfc\xfb\xfa", "//79/Pv6"),
        (b"\x00\x00\x00", "AAAA"),
        (b"\xfb\xff", "+/8="),
    ];

    #[test]
    fn round_trip() {
        for &(raw, text) in ROUND_TRIP {
            assert_eq!(encode(raw), text, "encode {raw:?}");
            assert_eq!(decode(text.as_bytes()).as_deref(), Ok(raw), "decode {text}");
        }
        // Every byte value in every position of a group.
        let all: Vec<u8> = (0..=255u8).collect();
        for start in 0..3 {
            let slice = &all[start..];
            assert_eq!(decode(encode(slice).as_bytes()).as_deref(), Ok(slice));
        }
    }

    const REJECT: &[(&str, DecodeError)] = &[
        ("Zg", DecodeError::Length),
        ("Zg=", DecodeError::Length),
        ("Zm9vY", DecodeError::Length),
        ("Zm9v\r\n", DecodeError::Length),
        ("Zm9v Zm9v", DecodeError::Length),
        (" Zm9vYmE", DecodeError::Byte(0)),
        ("Zm9vYmE\n", DecodeError::Byte(7)),
        ("Zm9-", DecodeError::Byte(3)), // URL-safe alphabet
        ("Zm9_", DecodeError::Byte(3)),
        ("Zm9\0", DecodeError::Byte(3)),
        ("Zm9\u{e9}", DecodeError::Length), // two UTF-8 bytes
        ("====", DecodeError::Padding),
        ("Z===", DecodeError::Padding),
        ("Zg==Zm9v", DecodeError::Padding), // padding in the middle
        ("Zm=v", DecodeError::Padding),
        ("=m9v", DecodeError::Padding),
        ("Zh==", DecodeError::NonCanonical), // "f" with a stray low bit
        ("Zm9=", DecodeError::NonCanonical),
    ];

    #[test]
    fn reject() {
        for &(text, want) in REJECT {
            assert_eq!(decode(text.as_bytes()), Err(want), "{text:?}");
        }
    }
}
