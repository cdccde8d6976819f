//! Envelope files of arbitrary bytes. `decode` never panics; what it accepts encodes
//! to a file holding no control character but LF that decodes to the same envelope.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postling::spool::envelope::{decode, encode};

fuzz_target!(|data: &[u8]| {
    if let Ok(env) = decode(data) {
        let file = encode(&env);
        let text = std::str::from_utf8(&file).expect("encode gives UTF-8");
        assert!(
            !text.chars().any(|c| c != '\n' && c.is_control()),
            "{text:?}"
        );
        assert_eq!(decode(&file), Ok(env), "{text:?}");
    }
});
