//! An evaluate body as the engine reads it: duplicate keys, then the
//! request decoded against a schema with a field of every type.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::source::SourceFile;

const TOML: &str = "[project]\nname = \"f\"\ndefault = \"allow\"\n\n[schema]\ntool = \"string\"\nagent = \"string\"\n\"args.amount?\" = \"int\"\n\"args.urgent?\" = \"bool\"\n\"args.to?\" = \"set<string>\"\n";

fuzz_target!(|data: &[u8]| {
    let _ = sluice::eval::unique::duplicate_key(data);
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Ok(project) = sluice::project::parse(&SourceFile::new("sluice.toml", TOML)) else {
        return;
    };
    let _ = sluice::eval::request::Request::from_json(&json, &project.schema);
});
