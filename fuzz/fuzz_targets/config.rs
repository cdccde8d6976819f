//! Configuration text. `parse` never panics; what it accepts renders to text that
//! parses back to an equal `Config` (`render`'s promise).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use postling::config::{parse, render};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = parse(Path::new("f"), text) {
        let rendered = render(&config);
        let back = parse(Path::new("f"), &rendered);
        assert_eq!(back.as_ref(), Ok(&config), "render gave:\n{rendered}");
    }
});
