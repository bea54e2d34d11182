//! The pure stages run in order over in-memory sources: `sluice.toml` →
//! parse every policy file → check the whole set → conflict analysis (on a
//! set that type-checks).
//!
//! Used by every command that needs a checked policy set (check, compile,
//! test, eval) and by anything that reads sources from somewhere other than
//! the working tree (a git revision). Pure: no I/O.

use std::collections::HashMap;

use crate::analyze;
use crate::check;
use crate::compile;
use crate::diagnostic::{Finding, Sources};
use crate::model::ir::PolicySet;
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

/// Parses `sluice.toml` and every policy file, and checks the whole set,
/// conflict analysis included.
///
/// Every policy file is parsed even when `sluice.toml` is broken; the set is
/// only type-checked when there is a schema to check it against.
pub fn check_sources(project_file: &SourceFile, policy_files: &[SourceFile]) -> Checked {
    let mut checked = check_unanalysed(project_file, policy_files);
    checked.analyze(&analyze::Options::default());
    checked
}

/// [`check_sources`] without the conflict analysis: for the pull-request
/// check, which analyses two revisions together (`review::analyze_change`).
pub fn check_unanalysed(project_file: &SourceFile, policy_files: &[SourceFile]) -> Checked {
    check_reusing(project_file, policy_files, None)
}

/// [`check_unanalysed`] for the other revision of a pull request: a file
/// `known` parsed with the same name and text is not parsed again (the two
/// revisions share most of their files, and parsing is most of checking).
pub fn check_unanalysed_sharing(
    project_file: &SourceFile,
    policy_files: &[SourceFile],
    known: &Checked,
) -> Checked {
    check_reusing(project_file, policy_files, Some(known))
}

fn check_reusing(
    project_file: &SourceFile,
    policy_files: &[SourceFile],
    known: Option<&Checked>,
) -> Checked {
    let known: HashMap<&str, &(SourceFile, ast::Policy)> = known
        .map(|k| k.parsed.iter().map(|p| (p.0.name.as_str(), p)).collect())
        .unwrap_or_default();
    let mut sources = Sources::new();
    sources.add(project_file.clone());
    let mut findings = Vec::new();
    let (project, mut warnings) = project::parse_reporting(project_file);
    findings.append(&mut warnings);
    let project = match project {
        Ok(p) => Some(p),
        Err(mut e) => {
            findings.append(&mut e);
            None
        }
    };
    let mut parsed = Vec::new();
    for file in policy_files {
        sources.add(file.clone());
        if let Some((known_file, policy)) = known.get(file.name.as_str())
            && known_file.text == file.text
        {
            parsed.push((file.clone(), policy.clone()));
            continue;
        }
        match parse::parse_policy(file) {
            Ok(p) => parsed.push((file.clone(), p)),
            Err(mut e) => findings.append(&mut e),
        }
    }
    let mut set = None;
    if let Some(project) = &project {
        let out = check::check(&parsed, &project.schema);
        findings.extend(out.findings);
        set = out.checked.as_ref().map(compile::lower);
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
    /// The revision the conflict analysis runs on: a set that type-checks.
    pub(crate) fn revision(&self) -> Option<analyze::Revision<'_>> {
        let (project, set) = (self.project.as_ref()?, self.set.as_ref()?);
        Some(analyze::Revision {
            set,
            schema: &project.schema,
            default: project.default,
            evaluator: None,
        })
    }

    /// Runs the whole-set conflict analysis, when the set type-checks, and
    /// adds its findings.
    pub fn analyze(&mut self, opts: &analyze::Options) -> Option<analyze::Stats> {
        let r = self.revision()?;
        let report = analyze::analyze(r.set, r.schema, r.default, opts);
        self.add_findings(report.findings);
        Some(report.stats)
    }

    /// Adds findings (kept sorted); an error among them leaves no set.
    pub(crate) fn add_findings(&mut self, findings: Vec<Finding>) {
        if findings.iter().any(Finding::is_error) {
            self.set = None;
        }
        self.findings.extend(findings);
        self.findings
            .sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    }

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
