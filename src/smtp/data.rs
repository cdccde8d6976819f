//! The DATA phase: a strict dot-reader and the dot-stuffing writer.
//!
//! Only `<CRLF>.<CRLF>` ends the message (RFC 5321 §4.1.1.4). A bare LF is a line end
//! that is normalised to CRLF in the output (as Postfix's `smtpd_forbid_bare_newline =
//! normalize`), but `.` framed by a bare LF on either side never ends the message. A bare
//! CR (not followed by LF) is recorded as a defect, never passed on: the session rejects
//! the message. Either way, what we store and pass on has only CRLF line ends, so a next
//! hop cannot read the message boundaries differently (SMTP smuggling).
//!
//! Invariants of [`DotReader`]:
//! - the message starts at a line start, so `.<CRLF>` as the very first line ends an
//!   empty message;
//! - the end is `.<CRLF>` at the start of a line that itself began after a real CRLF (or
//!   at the start of the message); `\n.\n`, `\r\n.\n`, `\n.\r\n`, `\r.\r` and
//!   `\r\n.\r` followed by anything but LF are never the end;
//! - its output contains CR and LF only as CRLF pairs, every line starting with `.` has
//!   lost that first dot (RFC 5321 §4.5.2), and nothing after the terminator is consumed
//!   (it is the next pipelined command);
//! - the result does not depend on how the input was split across `feed` calls, and the
//!   reader holds O(1) state: it only appends to the caller's `out`, which the caller
//!   drains (the size cap is the caller's, counted on `out`).
//!
//! Invariants of [`DotWriter`]: its output is dot-stuffed and has only CRLF line ends
//! whatever it is given (a stray bare CR or LF is turned into CRLF, never passed on), and
//! `finish` ends it with `<CRLF>.<CRLF>`.

/// Why a message read to its end is still refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Defect {
    /// A CR not followed by LF.
    BareCr,
    /// A line over 1000 octets including its CRLF (RFC 5321 §4.5.3.1.6).
    LineTooLong,
}

/// Longest text line we accept, CRLF included (RFC 5321 §4.5.3.1.6).
pub const MAX_TEXT_LINE: usize = 1000;

/// Incremental decoder for the DATA phase. Feed it bytes in chunks split anywhere.
#[derive(Debug, Default)]
pub struct DotReader {
    state: State,
    /// The current line began after a bare LF, not after a CRLF: its `.<CRLF>` is data.
    after_bare_lf: bool,
    /// Input octets of the current line so far, line end included (saturating).
    line_len: usize,
    defect: Option<Defect>,
}

/// Where the reader is, named after what it has just seen (chasquid's dotreader).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum State {
    /// At the start of a line (after CRLF, after a bare LF, or at the start of the data).
    #[default]
    LineStart,
    /// Inside a line.
    Text,
    /// Inside a line, after a CR whose LF has not been seen yet (nothing output for it).
    Cr,
    /// After a `.` at the start of a line (not output: it is either stuffing or the end).
    Dot,
    /// After `.` and CR at the start of a line: one LF away from the end.
    DotCr,
    /// The terminator has been consumed.
    Done,
}

impl DotReader {
    pub fn new() -> DotReader {
        DotReader::default()
    }

    /// Decode `input`, appending message bytes (dot-unstuffed, CRLF line ends) to `out`.
    /// Returns the number of input bytes consumed and whether the terminating
    /// `<CRLF>.<CRLF>` was seen; when it was, consumption stops right after it, and the
    /// final CRLF of the message (the one before the dot) is part of `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, bool) {
        if self.state == State::Done {
            return (0, true);
        }
        let mut i = 0;
        while let Some(&b) = input.get(i) {
            if self.state == State::Text && b != b'\r' && b != b'\n' {
                // Fast path: copy the rest of the line's text in one go.
                let rest = input.get(i..).unwrap_or_default();
                let run = rest
                    .iter()
                    .position(|&c| c == b'\r' || c == b'\n')
                    .unwrap_or(rest.len());
                out.extend_from_slice(rest.get(..run).unwrap_or_default());
                self.count(run);
                i += run;
                continue;
            }
            i += 1;
            self.count(1);
            if self.step(b, out) {
                return (i, true);
            }
        }
        (i, false)
    }

    /// The first defect seen, if any.
    pub fn defect(&self) -> Option<Defect> {
        self.defect
    }

    fn set_defect(&mut self, defect: Defect) {
        self.defect.get_or_insert(defect);
    }

    /// Count input octets of the current line; over [`MAX_TEXT_LINE`] is a defect, but
    /// reading goes on to the real end so the session can reply in step.
    fn count(&mut self, n: usize) {
        self.line_len = self.line_len.saturating_add(n);
        if self.line_len > MAX_TEXT_LINE {
            self.set_defect(Defect::LineTooLong);
        }
    }

    /// A line ended: with a real CRLF (`crlf`) or a bare LF normalised to CRLF.
    fn end_line(&mut self, crlf: bool, out: &mut Vec<u8>) {
        out.extend_from_slice(b"\r\n");
        self.state = State::LineStart;
        self.after_bare_lf = !crlf;
        self.line_len = 0;
    }

    /// One input octet; true when it completed the terminator.
    fn step(&mut self, b: u8, out: &mut Vec<u8>) -> bool {
        match (self.state, b) {
            (State::Done, _) => return true,
            // RFC 5321 §4.5.2: a line starting with `.` loses that dot; `.<CRLF>` alone
            // may be the end, so nothing is output until we know.
            (State::LineStart, b'.') => self.state = State::Dot,
            (State::Dot, b'\r') => self.state = State::DotCr,
            // RFC 5321 §4.1.1.4: the end is exactly <CRLF>.<CRLF>. A `.` line opened by a
            // bare LF is an (unstuffed, now empty) data line, never the end.
            (State::DotCr, b'\n') if !self.after_bare_lf => {
                self.state = State::Done;
                return true;
            }
            (State::DotCr, b'\n') => self.end_line(true, out),
            // `.` then a bare CR: the dot was stuffing; the CR is a defect and the octet
            // after it is ordinary text (a bare CR does not end a line).
            (State::DotCr, _) => {
                self.set_defect(Defect::BareCr);
                self.state = State::Text;
                return self.step(b, out);
            }
            (State::Cr, b'\n') => self.end_line(true, out),
            // RFC 5321 §2.3.8: a CR must be followed by LF. The bare CR is dropped, never
            // passed on, and the message will be refused; this octet is text as usual.
            (State::Cr, _) => {
                self.set_defect(Defect::BareCr);
                self.state = State::Text;
                return self.step(b, out);
            }
            (State::LineStart | State::Text, b'\r') => self.state = State::Cr,
            // A bare LF is a line end, normalised to CRLF (Postfix's
            // `smtpd_forbid_bare_newline = normalize`), so a next hop sees one line end
            // where we saw one.
            (State::LineStart | State::Dot | State::Text, b'\n') => self.end_line(false, out),
            (State::LineStart | State::Dot | State::Text, _) => {
                out.push(b);
                self.state = State::Text;
            }
        }
        false
    }
}

/// Dot-stuffing writer for sending a stored message (CRLF lines) as DATA: doubles a
/// leading dot on every line (RFC 5321 §4.5.2). Keep one per message; `finish` appends
/// the CRLF (if the message did not end with one) and the terminating `.` line.
#[derive(Debug)]
pub struct DotWriter {
    at_line_start: bool,
    /// A CR was written last and its LF (if any) has not arrived yet.
    pending_cr: bool,
}

impl Default for DotWriter {
    fn default() -> Self {
        DotWriter {
            at_line_start: true,
            pending_cr: false,
        }
    }
}

impl DotWriter {
    pub fn new() -> DotWriter {
        DotWriter::default()
    }

    /// Append `input` (part of a stored message, split anywhere) to `out`, dot-stuffed.
    /// A stored message has CRLF line ends only; should a bare CR or LF slip through
    /// anyway, it is written as CRLF so that the next hop cannot see a line end (or an
    /// end of data) where we did not (SMTP smuggling).
    pub fn write(&mut self, input: &[u8], out: &mut Vec<u8>) {
        out.reserve(input.len() + input.len() / 64);
        for &b in input {
            if std::mem::take(&mut self.pending_cr) {
                out.extend_from_slice(b"\r\n");
                self.at_line_start = true;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\r' => self.pending_cr = true,
                b'\n' => {
                    out.extend_from_slice(b"\r\n");
                    self.at_line_start = true;
                }
                _ => {
                    // RFC 5321 §4.5.2: a line starting with `.` gets one more.
                    if self.at_line_start && b == b'.' {
                        out.push(b'.');
                    }
                    out.push(b);
                    self.at_line_start = false;
                }
            }
        }
    }

    /// Terminate the message: its last line end (added if missing), then `.<CRLF>`.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if std::mem::take(&mut self.pending_cr) || !self.at_line_start {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
        self.at_line_start = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `chunks` in order, as the session would: stop at the end of data.
    /// Returns (output, total consumed, done, defect).
    fn read_chunks(chunks: &[&[u8]]) -> (Vec<u8>, usize, bool, Option<Defect>) {
        let mut reader = DotReader::new();
        let mut out = Vec::new();
        let mut consumed = 0;
        for chunk in chunks {
            let (n, done) = reader.feed(chunk, &mut out);
            consumed += n;
            if done {
                // Later feeds consume nothing more.
                assert_eq!(reader.feed(b".\r\n", &mut out), (0, true));
                return (out, consumed, true, reader.defect());
            }
            assert_eq!(n, chunk.len(), "not done, so everything is consumed");
        }
        (out, consumed, false, reader.defect())
    }

    /// Only CRLF pairs: no CR without LF after it, no LF without CR before it.
    fn only_crlf(out: &[u8]) -> bool {
        out.iter().enumerate().all(|(i, &b)| match b {
            b'\r' => out.get(i + 1) == Some(&b'\n'),
            b'\n' => i > 0 && out.get(i - 1) == Some(&b'\r'),
            _ => true,
        })
    }

    /// Check a case whole, split once at every position, split twice at every pair of
    /// positions (short inputs), and byte by byte: all must agree.
    fn check(input: &[u8], want: &(Vec<u8>, usize, bool, Option<Defect>)) {
        let shown = String::from_utf8_lossy(input);
        assert_eq!(&read_chunks(&[input]), want, "whole {shown:?}");
        assert!(only_crlf(&want.0), "bare CR or LF in output for {shown:?}");
        for i in 0..=input.len() {
            let (a, rest) = input.split_at(i);
            assert_eq!(&read_chunks(&[a, rest]), want, "split at {i} {shown:?}");
            if input.len() <= 64 {
                for j in 0..=rest.len() {
                    let (b, c) = rest.split_at(j);
                    assert_eq!(&read_chunks(&[a, b, c]), want, "split {i},{j} {shown:?}");
                }
            }
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(&read_chunks(&bytes), want, "byte by byte {shown:?}");
    }

    use Defect::{BareCr, LineTooLong};

    /// (input, output, consumed, end seen, defect)
    type Case = (&'static [u8], &'static [u8], usize, bool, Option<Defect>);

    const CASES: &[Case] = &[
        // The end, and what follows it (pipelined commands) is left alone.
        (b".\r\n", b"", 3, true, None),
        (b".\r\nQUIT\r\n", b"", 3, true, None),
        (b"a\r\n.\r\n", b"a\r\n", 6, true, None),
        (b"a\r\n.\r\nQUIT\r\n", b"a\r\n", 6, true, None),
        (b"a\r\n.\r\n.\r\n", b"a\r\n", 6, true, None),
        (b"\r\n.\r\n", b"\r\n", 5, true, None),
        (
            b"Subject: x\r\n\r\nbody\r\n.\r\nMAIL FROM:<>\r\n",
            b"Subject: x\r\n\r\nbody\r\n",
            23,
            true,
            None,
        ),
        // RFC 5321 §4.5.2: dot-unstuffing, first dot only.
        (b"..\r\n.\r\n", b".\r\n", 7, true, None),
        (b".a\r\n.\r\n", b"a\r\n", 7, true, None),
        (b"...a\r\n.\r\n", b"..a\r\n", 9, true, None),
        (b"a.\r\n.b\r\n.\r\n", b"a.\r\nb\r\n", 11, true, None),
        (b"a\r\n..\r\n.\r\n", b"a\r\n.\r\n", 10, true, None),
        // Smuggling: a dot framed by a bare LF is never the end, and becomes an (empty)
        // CRLF line; a bare CR is never a line end.
        (b"a\n.\nb\r\n.\r\n", b"a\r\n\r\nb\r\n", 10, true, None),
        (b"a\r\n.\nb\r\n.\r\n", b"a\r\n\r\nb\r\n", 11, true, None),
        (b"a\n.\r\nb\r\n.\r\n", b"a\r\n\r\nb\r\n", 11, true, None),
        (b"\n.\r\n", b"\r\n\r\n", 4, false, None),
        (b"\n.\n", b"\r\n\r\n", 3, false, None),
        (b"a\r.\rb\r\n.\r\n", b"a.b\r\n", 10, true, Some(BareCr)),
        (
            b"a\r.\r\nb\r\n.\r\n",
            b"a.\r\nb\r\n",
            11,
            true,
            Some(BareCr),
        ),
        (b"a\r\n.\rX\r\n.\r\n", b"a\r\nX\r\n", 11, true, Some(BareCr)),
        (b"a\r\n.\r.\r\n.\r\n", b"a\r\n.\r\n", 11, true, Some(BareCr)),
        (b"a\r\n.\r\r\n.\r\n", b"a\r\n\r\n", 10, true, Some(BareCr)),
        (b"\r\r\n.\r\n", b"\r\n", 6, true, Some(BareCr)),
        (b"a\rb\r\n.\r\n", b"ab\r\n", 8, true, Some(BareCr)),
        (b"a\r\rb\r\n.\r\n", b"ab\r\n", 9, true, Some(BareCr)),
        (b"a\r\n\r.\r\n.\r\n", b"a\r\n.\r\n", 10, true, Some(BareCr)),
        // Bare LF lines are normalised to CRLF.
        (b"a\nb\n\n.\r\n", b"a\r\nb\r\n\r\n\r\n", 8, false, None),
        (b"a\nb\r\n.\r\n", b"a\r\nb\r\n", 8, true, None),
        (b"\n\r\n.\r\n", b"\r\n\r\n", 6, true, None),
        // Not finished yet: everything consumed, partial terminator not output.
        (b"", b"", 0, false, None),
        (b"a", b"a", 1, false, None),
        (b"a\r", b"a", 2, false, None),
        (b"a\r\n", b"a\r\n", 3, false, None),
        (b"a\r\n.", b"a\r\n", 4, false, None),
        (b"a\r\n.\r", b"a\r\n", 5, false, None),
        (b"a\r\n..", b"a\r\n.", 5, false, None),
        (b"\x00\xff\xfe\r\n.\r\n", b"\x00\xff\xfe\r\n", 8, true, None),
    ];

    #[test]
    fn reader_table_at_every_split() {
        for &(input, out, consumed, done, defect) in CASES {
            check(input, &(out.to_vec(), consumed, done, defect));
        }
    }

    #[test]
    fn line_length_is_measured_on_input() {
        // 998 octets + CRLF = 1000: the longest line allowed (RFC 5321 §4.5.3.1.6).
        let line = |n: usize, end: &[u8]| [vec![b'x'; n], end.to_vec()].concat();
        let ok = [line(998, b"\r\n"), b".\r\n".to_vec()].concat();
        let out = line(998, b"\r\n");
        check(&ok, &(out, 1003, true, None));
        // A bare LF is one octet of line end.
        let ok_lf = [line(999, b"\n"), b"y\r\n.\r\n".to_vec()].concat();
        let out = [line(999, b"\r\n"), b"y\r\n".to_vec()].concat();
        check(&ok_lf, &(out, 1006, true, None));

        let long = [line(999, b"\r\n"), b".\r\n".to_vec()].concat();
        check(&long, &(line(999, b"\r\n"), 1004, true, Some(LineTooLong)));
        // The stuffing dot counts: it was on the wire.
        let stuffed = [b".".to_vec(), line(998, b"\r\n"), b".\r\n".to_vec()].concat();
        check(
            &stuffed,
            &(line(998, b"\r\n"), 1004, true, Some(LineTooLong)),
        );
        // The first defect is the one reported.
        let both = [line(2000, b"\ra\r\n"), b".\r\n".to_vec()].concat();
        let (_, _, done, defect) = read_chunks(&[&both]);
        assert!(done);
        assert_eq!(defect, Some(LineTooLong));
        // A huge line is consumed without holding on to anything but `out`.
        let mut reader = DotReader::new();
        let mut out = Vec::new();
        for _ in 0..1000 {
            assert_eq!(reader.feed(&[b'y'; 4096], &mut out), (4096, false));
            out.clear();
        }
        assert_eq!(reader.feed(b"\r\n.\r\n", &mut out), (5, true));
        assert_eq!(out, b"\r\n");
        assert_eq!(reader.defect(), Some(LineTooLong));
    }

    /// A small deterministic generator (xorshift64*) so tests need no crates.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn pick(&mut self, from: &[u8]) -> u8 {
            from.get(self.below(from.len())).copied().unwrap_or(b'x')
        }
    }

    /// Write `msg` in random pieces, returning the wire form.
    fn write_in_pieces(msg: &[u8], rng: &mut Rng) -> Vec<u8> {
        let mut writer = DotWriter::new();
        let mut wire = Vec::new();
        let mut rest = msg;
        while !rest.is_empty() {
            let (piece, tail) = rest.split_at(rng.below(rest.len() + 1));
            writer.write(piece, &mut wire);
            rest = tail;
        }
        writer.finish(&mut wire);
        wire
    }

    /// Read `wire` in random pieces; returns (output, consumed, done, defect).
    fn read_in_pieces(wire: &[u8], rng: &mut Rng) -> (Vec<u8>, usize, bool, Option<Defect>) {
        let mut pieces = Vec::new();
        let mut rest = wire;
        while !rest.is_empty() {
            let (piece, tail) = rest.split_at(rng.below(rest.len()) + 1);
            pieces.push(piece);
            rest = tail;
        }
        read_chunks(&pieces)
    }

    #[test]
    fn round_trip_crlf_messages() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..2000 {
            let mut msg = Vec::new();
            for _ in 0..rng.below(8) {
                for _ in 0..rng.below(6) {
                    msg.push(rng.pick(b"..a. \t\xc3"));
                }
                msg.extend_from_slice(b"\r\n");
            }
            let wire = write_in_pieces(&msg, &mut rng);
            assert!(wire.ends_with(b"\r\n.\r\n") || wire == b".\r\n");
            assert_eq!(
                read_in_pieces(&wire, &mut rng),
                (msg, wire.len(), true, None)
            );
        }
    }

    #[test]
    fn writer_output_always_ends_exactly_at_its_terminator() {
        // Whatever bytes a writer is given (bare CR, bare LF, dots), its output is read
        // back to exactly its own end, with nothing smuggled and no defect.
        let mut rng = Rng(0xD1B5_4A32_D192_ED03);
        for _ in 0..2000 {
            let msg: Vec<u8> = (0..rng.below(24))
                .map(|_| rng.pick(b"\r\n.\r\n.a"))
                .collect();
            let wire = write_in_pieces(&msg, &mut rng);
            assert!(only_crlf(&wire), "{wire:?}");
            let (out, consumed, done, defect) = read_in_pieces(&wire, &mut rng);
            assert_eq!(
                (consumed, done, defect),
                (wire.len(), true, None),
                "{msg:?}"
            );
            assert!(only_crlf(&out));
        }
    }

    /// (stored message, wire form)
    const WRITER_CASES: &[(&[u8], &[u8])] = &[
        (b"", b".\r\n"),
        (b"a", b"a\r\n.\r\n"),
        (b"a\r\n", b"a\r\n.\r\n"),
        (b".", b"..\r\n.\r\n"),
        (b".\r\n", b"..\r\n.\r\n"),
        (b"a\r\n.b\r\n..\r\n", b"a\r\n..b\r\n...\r\n.\r\n"),
        (b"a.b\r\n", b"a.b\r\n.\r\n"),
        (b"\r\n.\r\n", b"\r\n..\r\n.\r\n"),
        // Stray bare line ends are written as CRLF, never passed on.
        (b"a\n.b", b"a\r\n..b\r\n.\r\n"),
        (b"a\r.b", b"a\r\n..b\r\n.\r\n"),
        (b"a\r", b"a\r\n.\r\n"),
        (b"a\r\r\n", b"a\r\n\r\n.\r\n"),
        (b"a\n\r", b"a\r\n\r\n.\r\n"),
    ];

    #[test]
    fn writer_table_at_every_split() {
        for &(msg, wire) in WRITER_CASES {
            for i in 0..=msg.len() {
                let (a, b) = msg.split_at(i);
                let mut writer = DotWriter::new();
                let mut out = Vec::new();
                writer.write(a, &mut out);
                writer.write(b, &mut out);
                writer.finish(&mut out);
                assert_eq!(out, wire, "{msg:?} split at {i}");
            }
        }
    }
}
