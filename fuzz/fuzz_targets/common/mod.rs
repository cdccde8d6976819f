//! Shared by the targets that feed a stream: the input says where to split it.
//!
//! Layout: `[n] [n % 8 size bytes] [payload]`. The chunk sizes cycle through the size
//! bytes (`b + 1`, so 1–256); with none, the rest is one chunk. If bit 7 of `n` is set,
//! a chunk also ends after each LF, so a server's replies can arrive one line at a time,
//! after the command they answer. A seed written as `\0` + a transcript is fed whole;
//! `\x80` + a transcript is fed line by line.
#![allow(dead_code)]

#[derive(Clone)]
pub struct Chunks<'a> {
    sizes: &'a [u8],
    lines: bool,
    rest: &'a [u8],
    next: usize,
}

pub fn chunked(data: &[u8]) -> Chunks<'_> {
    let (&n, data) = data.split_first().unwrap_or((&0, &[]));
    let (sizes, rest) = data.split_at((n as usize % 8).min(data.len()));
    Chunks {
        sizes,
        lines: n & 0x80 != 0,
        rest,
        next: 0,
    }
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
        let mut size = match self.sizes {
            [] => self.rest.len(),
            s => s[self.next % s.len()] as usize + 1,
        };
        self.next += 1;
        if self.lines {
            if let Some(lf) = self.rest.iter().position(|&b| b == b'\n') {
                size = size.min(lf + 1);
            }
        }
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
