//! Shared by the targets that feed a stream: the input says where to split it.
//!
//! Layout: `[n] [n size bytes] [payload]`. `n % 8` size bytes follow the first byte; the
//! chunk sizes cycle through them (`b + 1`, so 1–256). With no size bytes the payload
//! is one chunk. A seed written as `\0` + a transcript is fed in one piece.

#![allow(dead_code)]

#[derive(Clone)]
pub struct Chunks<'a> {
    sizes: &'a [u8],
    rest: &'a [u8],
    next: usize,
}

pub fn chunked(data: &[u8]) -> Chunks<'_> {
    let (&n, data) = data.split_first().unwrap_or((&0, &[]));
    let (sizes, rest) = data.split_at((n as usize % 8).min(data.len()));
    Chunks { sizes, rest, next: 0 }
}

impl<'a> Chunks<'a> {
    /// Everything the chunks will yield, in one piece.
    pub fn payload(&self) -> &'a [u8] {
        self.rest
    }
}

impl<'a> Iterator for Chunks<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        let size = match self.sizes {
            [] => self.rest.len(),
            s => s[self.next % s.len()] as usize + 1,
        };
        self.next += 1;
        let (chunk, rest) = self.rest.split_at(size.min(self.rest.len()));
        self.rest = rest;
        Some(chunk)
    }
}

/// CR and LF appear only as CRLF pairs.
pub fn crlf_only(b: &[u8]) -> bool {
    b.iter().enumerate().all(|(i, &c)| match c {
        b'\r' => b.get(i + 1) == Some(&b'\n'),
        b'\n' => i > 0 && b[i - 1] == b'\r',
        _ => true,
    })
}
