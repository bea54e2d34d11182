//! An uploaded artifact: read, verified, validated, and an evaluator built
//! from what passes (the hash is recomputed first, so the fuzzer reaches
//! content a real upload would carry).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::compile::artifact::Artifact;

fuzz_target!(|data: &[u8]| {
    let _ = Artifact::from_bytes(data);
    let Ok(mut a) = serde_json::from_slice::<Artifact>(data) else {
        return;
    };
    let Ok(hash) = a.compute_hash() else {
        return;
    };
    a.hash = hash;
    if let Ok(bytes) = a.to_bytes()
        && let Ok(a) = Artifact::from_bytes(&bytes)
    {
        let _ = sluice::eval::Evaluator::new(&a);
    }
});
