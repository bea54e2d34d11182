//! `sluice.toml`: every input is a project or located findings.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::source::SourceFile;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = sluice::project::parse(&SourceFile::new("sluice.toml", text));
    }
});
