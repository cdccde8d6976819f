//! DATA decoding over arbitrary bytes in arbitrary chunks (input layout: see `common`).
//! The reader's output has CR and LF only as CRLF pairs, and does not depend on how the
//! input was split. The writer, split anywhere, sends what the reader reads back whole:
//! the text with every line end made CRLF, never a bare CR defect, never an early end.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use postling::smtp::data::{Defect, DotReader, DotWriter};

fuzz_target!(|data: &[u8]| {
    let chunks = common::chunked(data);
    let text = chunks.payload();

    let (mut whole, mut whole_out) = (DotReader::new(), Vec::new());
    let (n, done) = whole.feed(text, &mut whole_out);
    assert!(done || n == text.len());
    let (mut split, mut out, mut consumed, mut split_done) =
        (DotReader::new(), Vec::new(), 0, false);
    for chunk in chunks.clone() {
        let (n, d) = split.feed(chunk, &mut out);
        consumed += n;
        if d {
            split_done = true;
            break;
        }
        assert_eq!(n, chunk.len(), "not done, yet not everything consumed");
    }
    assert_eq!(
        (&out, consumed, split_done, split.defect()),
        (&whole_out, n, done, whole.defect())
    );
    assert!(common::crlf_only(&out), "bare CR or LF in {out:?}");
    assert!(!done || out.is_empty() || out.ends_with(b"\r\n"));

    // Writer → reader: the text, line ends normalised to CRLF, last line terminated.
    let (mut w, mut wire, mut wire_split) = (DotWriter::new(), Vec::new(), Vec::new());
    w.write(text, &mut wire);
    w.finish(&mut wire);
    let mut w = DotWriter::new();
    chunks.for_each(|c| w.write(c, &mut wire_split));
    w.finish(&mut wire_split);
    assert_eq!(wire, wire_split, "writer output depends on the split");
    let mut expect = Vec::with_capacity(text.len() + 2);
    let mut i = 0;
    while let Some(&b) = text.get(i) {
        match b {
            b'\r' | b'\n' => {
                expect.extend_from_slice(b"\r\n");
                i += usize::from(b == b'\r' && text.get(i + 1) == Some(&b'\n'));
            }
            _ => expect.push(b),
        }
        i += 1;
    }
    if !expect.is_empty() && !expect.ends_with(b"\r\n") {
        expect.extend_from_slice(b"\r\n");
    }
    let (mut r, mut back) = (DotReader::new(), Vec::new());
    assert_eq!(
        r.feed(&wire, &mut back),
        (wire.len(), true),
        "end of data not where the writer put it"
    );
    assert_eq!(back, expect);
    assert!(matches!(r.defect(), None | Some(Defect::LineTooLong)));
});
