//! A route document (`PUT /v1/route`): read and normalized.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = serde_json::from_slice::<sluice::api::lease::RouteRequest>(data) {
        let _ = req.route.normalize();
    }
    if let Ok(spec) = serde_json::from_slice::<sluice::api::route::RouteSpec>(data) {
        let _ = spec.normalize();
    }
});
