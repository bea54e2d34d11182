//! Evaluation benchmarks (criterion).
//!
//! - `eval/policies/*`: the starter repository `policies/`, on the requests
//!   of its traces;
//! - `eval/generated_{P}x{R}/*`: a generated set of `P` policies × `R` rules
//!   (`benches/support/gen.rs`, seed 42) on 1,000 generated requests: 1000 ×
//!   10 (10,000 rules), 100 × 10 (1,000 rules) and 2 × 10 (20 rules).
//!
//! Each set has two benchmarks: `eval`, one evaluation of a pre-decoded
//! request, and `decode_eval`, JSON text → request → decision. One iteration
//! is one request; iterations walk the request list in order. Before timing,
//! every generated request must get the generator's reference decision.
//!
//! The comparison with Cedar and regorus is a crate of its own,
//! `benches/peers`, so that this crate never builds them.

#![expect(
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test or benchmark that cannot go on fails by panicking"
)]

#[expect(dead_code, reason = "the Cedar and Rego output serves the peers crate")]
#[path = "support/gen.rs"]
mod generator;
#[path = "support/load.rs"]
mod load;

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use sluice::model::ir::DecisionKind;

const SEED: u64 = 42;
const REQUESTS: usize = 1000;

/// `eval` and `decode_eval` on one loaded set.
fn bench_set(c: &mut Criterion, name: &str, mut engine: load::Sluice) {
    let n = engine.requests.len();
    let mut group = c.benchmark_group(format!("eval/{name}"));
    let mut i = 0;
    group.bench_function("eval", |b| {
        b.iter(|| {
            i = if i + 1 == n { 0 } else { i + 1 };
            black_box(engine.eval(black_box(i)))
        })
    });
    group.bench_function("decode_eval", |b| {
        b.iter(|| {
            i = if i + 1 == n { 0 } else { i + 1 };
            black_box(engine.decode_eval(black_box(i)))
        })
    });
    group.finish();
}

fn starter_repository(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    match load::repository(&root) {
        Some((artifact, traces)) if !traces.is_empty() => {
            let (texts, expected): (Vec<String>, Vec<DecisionKind>) = traces.into_iter().unzip();
            let mut engine = load::Sluice::new(&artifact, texts);
            // The traces pass, evaluated once in order (limits count as in
            // `sluice test`); repeated evaluation in the benchmark fills the
            // limit counters, which then stay full.
            for (i, want) in expected.iter().enumerate() {
                assert_eq!(engine.eval(i), *want, "trace {i} of policies/");
            }
            bench_set(c, "policies", engine);
        }
        Some(_) => eprintln!("eval/policies: skipped, `policies/` has no trace requests"),
        None => eprintln!("eval/policies: skipped, `policies/` is not a policy repository"),
    }
}

fn generated(c: &mut Criterion) {
    for (policies, rules) in [(1000, 10), (100, 10), (2, 10)] {
        let set = generator::generate(policies, rules, REQUESTS, SEED);
        let texts = set
            .requests
            .iter()
            .map(generator::Request::to_json)
            .collect();
        let mut engine = load::Sluice::new(&load::generated(&set), texts);
        for (i, req) in set.requests.iter().enumerate() {
            let want = match set.decide(req) {
                generator::Effect::Allow => DecisionKind::Allow,
                generator::Effect::Deny => DecisionKind::Deny,
            };
            assert_eq!(
                engine.eval(i),
                want,
                "request {i} of {policies}x{rules}: {}",
                req.to_json()
            );
            assert_eq!(engine.decode_eval(i), want);
        }
        bench_set(c, &format!("generated_{policies}x{rules}"), engine);
    }
}

criterion_group!(benches, starter_repository, generated);
criterion_main!(benches);
