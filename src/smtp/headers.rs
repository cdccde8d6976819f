//! Adds the `Date:` and `Message-ID:` headers a submitted message lacks (RFC 6409 §8.2,
//! §8.3), while the message streams through: no copy of the message is kept.
//!
//! The scanner watches decoded message bytes (CRLF line ends, no dot-stuffing) for the
//! end of the header section: the first empty line, or the first line that is not a
//! header field (then a blank line is added too, so the result is headers, blank line,
//! body, as RFC 5322 §2.1 wants). Just before that point it emits the missing fields.
//!
//! Invariants: bytes pass through unchanged and in order; at most one insertion happens;
//! memory is bounded by [`MAX_NAME`] whatever the input.

/// Longest header field name we look at; longer ones cannot be Date or Message-ID.
const MAX_NAME: usize = 32;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Where {
    /// At the start of a line in the header section.
    LineStart,
    /// Reading a possible field name (kept in `name`).
    Name,
    /// In the rest of a header line (value or continuation).
    Value,
    /// Saw CR at the start of a line: an empty line if LF follows.
    EmptyCr,
    /// Header section over; everything else passes through.
    Body,
}

pub struct SubmissionHeaders {
    at: Where,
    name: Vec<u8>,
    has_date: bool,
    has_message_id: bool,
    /// The fields to add, each a complete CRLF-terminated line.
    date: String,
    message_id: String,
    /// Bytes inserted (part of the stored message size).
    inserted: usize,
}

impl SubmissionHeaders {
    /// `date` is an RFC 5322 date-time, `message_id` includes its angle brackets.
    pub fn new(date: String, message_id: String) -> SubmissionHeaders {
        SubmissionHeaders {
            at: Where::LineStart,
            name: Vec::with_capacity(MAX_NAME),
            has_date: false,
            has_message_id: false,
            date,
            message_id,
            inserted: 0,
        }
    }

    /// Copies `input` to `out`, inserting the missing fields at the end of the headers.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for (i, &b) in input.iter().enumerate() {
            match self.at {
                Where::Body => {
                    out.extend_from_slice(&input[i..]);
                    return;
                }
                Where::LineStart => match b {
                    b'\r' => {
                        self.at = Where::EmptyCr;
                        continue; // the CR is emitted with what follows it
                    }
                    b' ' | b'\t' => self.at = Where::Value, // folded continuation
                    _ => {
                        self.name.clear();
                        self.at = Where::Name;
                        if !self.name_byte(b, out) {
                            continue;
                        }
                    }
                },
                Where::Name => {
                    if !self.name_byte(b, out) {
                        continue;
                    }
                }
                Where::Value => {
                    if b == b'\n' {
                        self.at = Where::LineStart;
                    }
                }
                Where::EmptyCr => {
                    if b == b'\n' {
                        // The empty line that ends the headers: add ours before it.
                        self.insert(out);
                        out.extend_from_slice(b"\r\n");
                        self.at = Where::Body;
                        continue;
                    }
                    // A CR not followed by LF at a line start: not a header line.
                    self.end_without_blank_line(out);
                    out.push(b'\r');
                }
            }
            out.push(b);
        }
    }

    /// The message ended. A message that was all headers gets the fields at its end.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        match self.at {
            Where::Body => {}
            Where::LineStart => {
                self.insert(out);
                self.at = Where::Body;
            }
            Where::EmptyCr => {
                self.insert(out);
                out.push(b'\r');
                self.at = Where::Body;
            }
            Where::Name => {
                // A last line without a line end that never reached its colon.
                out.extend_from_slice(&self.name);
                out.extend_from_slice(b"\r\n");
                self.inserted += 2;
                self.insert(out);
                self.at = Where::Body;
            }
            Where::Value => {
                out.extend_from_slice(b"\r\n");
                self.inserted += 2;
                self.insert(out);
                self.at = Where::Body;
            }
        }
    }

    /// Bytes inserted so far (part of the stored message size).
    pub fn inserted_len(&self) -> usize {
        self.inserted
    }

    fn added(&self) -> Vec<&str> {
        let mut v = Vec::new();
        if !self.has_date {
            v.push(self.date.as_str());
        }
        if !self.has_message_id {
            v.push(self.message_id.as_str());
        }
        v
    }

    /// One byte of a possible field name. Returns whether the caller should emit `b`
    /// (false when it was held back in `name`).
    fn name_byte(&mut self, b: u8, out: &mut Vec<u8>) -> bool {
        if b == b':' {
            let name = std::mem::take(&mut self.name);
            if name.eq_ignore_ascii_case(b"date") {
                self.has_date = true;
            } else if name.eq_ignore_ascii_case(b"message-id") {
                self.has_message_id = true;
            }
            out.extend_from_slice(&name);
            self.name = name;
            self.at = Where::Value;
            return true;
        }
        // RFC 5322 §3.6.8: a field name is printable ASCII except ':' and space.
        let name_char = (33..=126).contains(&b);
        if !name_char {
            // Not a header line: the header section ended without an empty line.
            let held = std::mem::take(&mut self.name);
            self.end_without_blank_line(out);
            out.extend_from_slice(&held);
            return true;
        }
        if self.name.len() < MAX_NAME {
            self.name.push(b);
            return false;
        }
        // Too long to be a field we care about: stop holding it back.
        out.extend_from_slice(&self.name);
        self.name.clear();
        self.at = Where::Value;
        true
    }

    fn end_without_blank_line(&mut self, out: &mut Vec<u8>) {
        self.insert(out);
        out.extend_from_slice(b"\r\n");
        // The blank line is ours too: part of the stored size.
        self.inserted += 2;
        self.at = Where::Body;
    }

    fn insert(&mut self, out: &mut Vec<u8>) {
        let added: Vec<String> = self.added().into_iter().map(str::to_owned).collect();
        for line in added {
            out.extend_from_slice(line.as_bytes());
            self.inserted += line.len();
        }
        // Inserted once: afterwards nothing is missing.
        self.has_date = true;
        self.has_message_id = true;
        self.date.clear();
        self.message_id.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "Date: Fri, 04 Dec 2026 15:00:00 +0000\r\n";
    const M: &str = "Message-ID: <ID@mx.test>\r\n";

    fn run(input: &str, split: usize) -> String {
        let mut h = SubmissionHeaders::new(D.to_string(), M.to_string());
        let mut out = Vec::new();
        let (a, b) = input.as_bytes().split_at(split.min(input.len()));
        h.feed(a, &mut out);
        h.feed(b, &mut out);
        h.finish(&mut out);
        String::from_utf8(out).expect("utf8")
    }

    #[test]
    fn inserts_missing_fields_at_the_end_of_the_headers() {
        let cases: &[(&str, String)] = &[
            // Both missing.
            (
                "From: a@b\r\nSubject: x\r\n\r\nbody\r\n",
                format!("From: a@b\r\nSubject: x\r\n{D}{M}\r\nbody\r\n"),
            ),
            // Date present (any case), Message-ID missing.
            (
                "DATE: whenever\r\nSubject: x\r\n\r\nbody\r\n",
                format!("DATE: whenever\r\nSubject: x\r\n{M}\r\nbody\r\n"),
            ),
            // Both present: unchanged.
            (
                "Date: d\r\nMessage-Id: <x@y>\r\n\r\nDate: in body\r\n",
                "Date: d\r\nMessage-Id: <x@y>\r\n\r\nDate: in body\r\n".to_string(),
            ),
            // A folded header, then the body mentions Date: only the header counts.
            (
                "Subject: a\r\n Date: folded\r\n\r\nDate: body\r\n",
                format!("Subject: a\r\n Date: folded\r\n{D}{M}\r\nDate: body\r\n"),
            ),
            // Headers only, no body.
            ("Subject: x\r\n", format!("Subject: x\r\n{D}{M}")),
            // Empty message.
            ("", format!("{D}{M}")),
            // No header section at all: fields, then a blank line, then the text.
            (
                "just text\r\nmore\r\n",
                format!("{D}{M}\r\njust text\r\nmore\r\n"),
            ),
            // Header section ended by a non-header line.
            (
                "Subject: x\r\nnot a header\r\n",
                format!("Subject: x\r\n{D}{M}\r\nnot a header\r\n"),
            ),
            // A very long field name passes through untouched.
            (
                &format!("{}: v\r\n\r\nb", "X".repeat(100)),
                format!("{}: v\r\n{D}{M}\r\nb", "X".repeat(100)),
            ),
            // Date-Received is not Date.
            (
                "Date-Received: x\r\n\r\n",
                format!("Date-Received: x\r\n{D}{M}\r\n"),
            ),
        ];
        for (input, want) in cases {
            for split in 0..=input.len() {
                assert_eq!(&run(input, split), want, "input {input:?} split at {split}");
            }
        }
    }

    #[test]
    fn inserted_len_counts_what_is_inserted() {
        let mut h = SubmissionHeaders::new(D.to_string(), M.to_string());
        let mut out = Vec::new();
        h.feed(b"Date: x\r\n", &mut out);
        assert_eq!(h.inserted_len(), 0);
        h.feed(b"\r\nbody", &mut out);
        h.finish(&mut out);
        assert_eq!(h.inserted_len(), M.len());
        assert_eq!(out.len(), "Date: x\r\n\r\nbody".len() + M.len());
    }
}
