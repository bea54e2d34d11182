//! Loading a policy set into sluice's evaluator for the benchmarks: a
//! generated set (from [`super::generator`]'s text) or a policy repository on
//! disk, through the same stages as `sluice compile` (parse, type-check,
//! artifact) but without the conflict analysis.
//!
//! Shared by the main crate's bench and the peer-comparison crate, which both
//! depend on `sluice` and `serde_json`.

use std::path::Path;

use sluice::check;
use sluice::compile::artifact::Artifact;
use sluice::diagnostic::{Finding, Sources, render_human};
use sluice::eval::request::Request;
use sluice::eval::state::MemoryLimitStore;
use sluice::eval::{Evaluator, LimitMode, Outcome};
use sluice::model::ir::DecisionKind;
use sluice::parse;
use sluice::project;
use sluice::repo;
use sluice::source::SourceFile;

use super::generator::Set;

/// A fixed evaluation time (seconds since the epoch); no benchmark set has
/// limits, so it only matters for form.
pub const NOW: u64 = 1_800_000_000;

/// Parses, type-checks and compiles `sluice.toml` and the policy files, as
/// `sluice compile` does but without the whole-set conflict analysis: a
/// random set has conflicts (an allow overridden by a deny is what a
/// benchmark exercises), and they do not change what the evaluator does.
/// Panics with the rendered findings on a language error.
pub fn artifact(project_file: &SourceFile, policies: &[SourceFile]) -> Artifact {
    let mut sources = Sources::new();
    sources.add(project_file.clone());
    let mut findings = Vec::new();
    let project = project::parse(project_file).map_err(|mut e| findings.append(&mut e));
    let mut parsed = Vec::new();
    for file in policies {
        sources.add(file.clone());
        match parse::parse_policy(file) {
            Ok(p) => parsed.push((file.clone(), p)),
            Err(mut e) => findings.append(&mut e),
        }
    }
    let mut set = None;
    if let Ok(project) = &project {
        let out = check::check(&parsed, &project.schema);
        findings.extend(out.findings);
        set = out.checked.as_ref().map(sluice::compile::lower);
    }
    let (Ok(project), Some(set), false) = (project, set, findings.iter().any(Finding::is_error))
    else {
        panic!(
            "the benchmark set does not check:\n{}",
            render_human(&findings, &sources, false, 100)
        );
    };
    Artifact::new(project.name, project.default, project.schema, set, None)
        .unwrap_or_else(|e| panic!("the benchmark set does not compile: {e}"))
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
    let project = project::parse(&files.project).ok()?;
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
