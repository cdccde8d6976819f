//! The DATA phase: a strict dot-reader and the dot-stuffing writer.
//!
//! Only `<CRLF>.<CRLF>` ends the message (RFC 5321 §4.1.1.4). A bare LF is a line end
//! that is normalised to CRLF in the output (as Postfix's `smtpd_forbid_bare_newline =
//! normalize`), but `.` framed by a bare LF on either side never ends the message. A bare
//! CR (not followed by LF) is recorded as a defect, never passed on: the session rejects
//! the message. Either way, what we store and pass on has only CRLF line ends, so a next
//! hop cannot read the message boundaries differently (SMTP smuggling).

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
    // implementation-defined state
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
        let _ = (input, out);
        todo!()
    }

    /// The first defect seen, if any.
    pub fn defect(&self) -> Option<Defect> {
        todo!()
    }
}

/// Dot-stuffing writer for sending a stored message (CRLF lines) as DATA: doubles a
/// leading dot on every line (RFC 5321 §4.5.2). Keep one per message; `finish` appends
/// the CRLF (if the message did not end with one) and the terminating `.` line.
#[derive(Debug)]
pub struct DotWriter {
    at_line_start: bool,
}

impl Default for DotWriter {
    fn default() -> Self {
        DotWriter {
            at_line_start: true,
        }
    }
}

impl DotWriter {
    pub fn new() -> DotWriter {
        DotWriter::default()
    }

    pub fn write(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let _ = (input, out, self.at_line_start);
        todo!()
    }

    pub fn finish(&mut self, out: &mut Vec<u8>) {
        let _ = out;
        todo!()
    }
}
