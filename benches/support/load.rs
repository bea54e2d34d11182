//! Loading a policy set into sluice's evaluator for the benchmarks: a
//! generated set (from [`super::generator`]'s text) or a policy repository on
//! disk, through the same pipeline as `sluice compile`.
//!
//! Shared by the main crate's bench and the peer-comparison crate, which both
//! depend on `sluice` and `serde_json`.

use std::path::Path;

use sluice::compile::artifact::Artifact;
use sluice::compile::ir::DecisionKind;
use sluice::diagnostic::render_human;
use sluice::engine::eval::{Evaluator, LimitMode, Outcome};
use sluice::engine::request::Request;
use sluice::engine::state::MemoryLimitStore;
use sluice::pipeline;
use sluice::repo;
use sluice::source::SourceFile;

use super::generator::Set;

/// A fixed evaluation time (seconds since the epoch); no benchmark set has
/// limits, so it only matters for form.
pub const NOW: u64 = 1_800_000_000;

/// Checks and compiles `sluice.toml` and the policy files; panics with the
/// rendered findings when the set has errors.
pub fn artifact(project: &SourceFile, policies: &[SourceFile]) -> Artifact {
    let checked = pipeline::check_sources(project, policies);
    if checked.has_errors() {
        panic!(
            "the benchmark set does not check:\n{}",
            render_human(&checked.findings, &checked.sources, false, 100)
        );
    }
    match checked.artifact(None) {
        Some(Ok(artifact)) => artifact,
        Some(Err(e)) => panic!("the benchmark set does not compile: {e}"),
        None => panic!("the benchmark set has no artifact"),
    }
}

/// The artifact of a generated set.
pub fn generated(set: &Set) -> Artifact {
    let project = SourceFile::new("sluice.toml", set.sluice_toml());
    let policies: Vec<SourceFile> = set
        .sluice_policies()
        .into_iter()
        .map(|(name, text)| SourceFile::new(name, text))
        .collect();
    artifact(&project, &policies)
}

/// The artifact of the repository at `root` and, for every trace line under
/// its traces folder, the request as JSON text and the expected decision;
/// `None` when `root` is not a policy repository.
pub fn repository(root: &Path) -> Option<(Artifact, Vec<(String, DecisionKind)>)> {
    let files = repo::load(root).ok()?;
    let artifact = artifact(&files.project, &files.policies);
    let project = sluice::project::parse(&files.project).ok()?;
    let traces = repo::load_traces(root, &project.traces).ok()?;
    let mut requests = Vec::new();
    for file in traces {
        for line in file.text.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line).expect("trace line is JSON");
            let expect = v["expect"]
                .as_str()
                .and_then(DecisionKind::parse)
                .expect("trace line has an expected decision");
            requests.push((v["request"].to_string(), expect));
        }
    }
    Some((artifact, requests))
}

/// An evaluator with its requests, pre-decoded and as JSON text, and the
/// buffers one evaluation reuses.
pub struct Sluice {
    pub evaluator: Evaluator,
    pub limits: MemoryLimitStore,
    pub requests: Vec<Request>,
    pub texts: Vec<String>,
    out: Outcome,
}

impl Sluice {
    pub fn new(artifact: &Artifact, texts: Vec<String>) -> Sluice {
        let evaluator = Evaluator::new(artifact).expect("the artifact loads");
        let requests = texts.iter().map(|t| decode(&evaluator, t)).collect();
        Sluice {
            evaluator,
            limits: MemoryLimitStore::new(),
            requests,
            texts,
            out: Outcome::default(),
        }
    }

    /// The decision for pre-decoded request `i`.
    pub fn eval(&mut self, i: usize) -> DecisionKind {
        self.evaluator
            .evaluate_into(
                &self.requests[i],
                NOW,
                &self.limits,
                LimitMode::Count,
                &mut self.out,
            )
            .expect("evaluation");
        self.out.decision()
    }

    /// Decodes request `i` from its JSON text, then evaluates it.
    pub fn decode_eval(&mut self, i: usize) -> DecisionKind {
        let request = decode(&self.evaluator, &self.texts[i]);
        self.evaluator
            .evaluate_into(&request, NOW, &self.limits, LimitMode::Count, &mut self.out)
            .expect("evaluation");
        self.out.decision()
    }
}

/// JSON text → request, as the engine receives it.
pub fn decode(evaluator: &Evaluator, text: &str) -> Request {
    let json: serde_json::Value = serde_json::from_str(text).expect("request JSON");
    evaluator.decode(&json).expect("a valid request")
}
