//! A policy file: parsed, and when it parses, checked against a schema
//! with a field of every type. Nothing may panic or overflow the stack.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::source::SourceFile;

const TOML: &str = "[project]\nname = \"f\"\ndefault = \"allow\"\n\n[schema]\ntool = \"string\"\nagent = \"string\"\n\"args.amount?\" = \"int\"\n\"args.urgent?\" = \"bool\"\n\"args.to?\" = \"set<string>\"\n";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = SourceFile::new("policies/f.policy", text);
    let Ok(policy) = sluice::parse::parse_policy(&file) else {
        return;
    };
    let _ = sluice::fmt::format_source(&file);
    let Ok(project) = sluice::project::parse(&SourceFile::new("sluice.toml", TOML)) else {
        return;
    };
    let _ = sluice::check::check(&[(file, policy)], &project.schema);
});
