//! The pure stages run in order over in-memory sources: `sluice.toml` →
//! parse every policy file → check the whole set → conflict analysis (on a
//! set that type-checks).
//!
//! Used by every command that needs a checked policy set (check, compile,
//! test, eval) and by anything that reads sources from somewhere other than
//! the working tree (a git revision). Pure: no I/O.

use crate::analyze;
use crate::check;
use crate::compile::ir::PolicySet;
use crate::diagnostic::{Finding, Sources};
use crate::parse::{self, ast};
use crate::project::{self, Project};
use crate::source::SourceFile;

/// Everything known about a policy set after checking it.
#[derive(Debug)]
pub struct Checked {
    /// `None` when `sluice.toml` itself has errors.
    pub project: Option<Project>,
    /// The parsed policies (files with syntax errors are absent).
    pub parsed: Vec<(SourceFile, ast::Policy)>,
    /// The typed set; `None` when any finding is an error.
    pub set: Option<PolicySet>,
    /// Every finding, sorted by file and position.
    pub findings: Vec<Finding>,
    /// Every file read, for rendering findings.
    pub sources: Sources,
    /// Number of policy files.
    pub files: usize,
}

impl Checked {
    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(Finding::is_error)
    }

    /// Number of rules and limits in the files that parsed.
    pub fn rule_count(&self) -> usize {
        self.parsed.iter().map(|(_, p)| p.items.len()).sum()
    }
}

/// Parses `sluice.toml` and every policy file, and checks the whole set.
///
/// Every policy file is parsed even when `sluice.toml` is broken; the set is
/// only type-checked when there is a schema to check it against.
pub fn check_sources(project_file: &SourceFile, policy_files: &[SourceFile]) -> Checked {
    let mut sources = Sources::new();
    sources.add(project_file.clone());
    let mut findings = Vec::new();
    let project = match project::parse(project_file) {
        Ok(p) => Some(p),
        Err(mut e) => {
            findings.append(&mut e);
            None
        }
    };
    let mut parsed = Vec::new();
    for file in policy_files {
        sources.add(file.clone());
        match parse::parse_policy(file) {
            Ok(p) => parsed.push((file.clone(), p)),
            Err(mut e) => findings.append(&mut e),
        }
    }
    let mut set = None;
    if let Some(project) = &project {
        let out = check::check(&parsed, &project.schema);
        findings.extend(out.findings);
        set = out.set;
    }
    // The whole-set conflict analysis runs on a set that type-checks.
    if let (Some(project), Some(typed)) = (&project, &set) {
        let report = analyze::analyze(
            typed,
            &project.schema,
            project.default,
            &analyze::Options::default(),
        );
        findings.extend(report.findings);
    }
    findings.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    if findings.iter().any(Finding::is_error) {
        set = None;
    }
    Checked {
        project,
        parsed,
        set,
        findings,
        sources,
        files: policy_files.len(),
    }
}

impl Checked {
    /// The artifact of a set that checked without errors; `None` otherwise.
    pub fn artifact(
        &self,
        source_commit: Option<String>,
    ) -> Option<Result<crate::compile::artifact::Artifact, crate::compile::artifact::ArtifactError>>
    {
        let (project, set) = (self.project.as_ref()?, self.set.as_ref()?);
        Some(crate::compile::artifact::Artifact::new(
            project.name.clone(),
            project.default,
            project.schema.clone(),
            set.clone(),
            source_commit,
        ))
    }
}
