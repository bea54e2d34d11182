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
/// check, which analyses two revisions together ([`analyze_change`]).
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
        set = out.set;
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
    fn revision(&self) -> Option<analyze::Revision<'_>> {
        let (project, set) = (self.project.as_ref()?, self.set.as_ref()?);
        Some(analyze::Revision {
            set,
            schema: &project.schema,
            default: project.default,
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
    fn add_findings(&mut self, findings: Vec<Finding>) {
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

/// How the conflict analysis of a change ran ([`analyze_change`]).
#[derive(Debug, Clone, PartialEq)]
pub enum ChangeAnalysis {
    /// The head does not type-check: nothing to analyse.
    None,
    /// The head was analysed in full: the base has no set that type-checks,
    /// hence no conflict findings, so every finding is new to it.
    Full { head: analyze::Stats },
    /// The head analysed in full, the base only where the change can matter.
    Incremental {
        changed: Vec<String>,
        base: analyze::Stats,
        head: analyze::Stats,
    },
    /// Both revisions analysed in full: another schema, default decision or
    /// encoding of a field.
    Both {
        base: analyze::Stats,
        head: analyze::Stats,
    },
}

/// The conflict analysis of a pull request: `base` and `head` come from
/// [`check_unanalysed`]. The head is analysed in full: its report has every
/// error, old or new, and a head with an error compiles to nothing. The
/// base gets what two full analyses would give it without the solver work:
/// `analyze::analyze_change` runs, at both revisions, only the questions
/// that involve a changed rule; every other finding of the head is, by
/// construction, a finding of the base too (same rules, files and
/// messages), and is recorded as such. Comparing the two
/// (`check::base::introduced`) then gives exactly what comparing two full
/// analyses gives. When the base does not type-check it has no analysis
/// findings at all.
pub fn analyze_change(
    base: &mut Checked,
    head: &mut Checked,
    opts: &analyze::Options,
) -> ChangeAnalysis {
    let Some(h) = head.revision() else {
        return ChangeAnalysis::None;
    };
    let Some(b) = base.revision() else {
        return match head.analyze(opts) {
            Some(head) => ChangeAnalysis::Full { head },
            None => ChangeAnalysis::None,
        };
    };
    let report = analyze::analyze_change(b, h, opts);
    let Some(full) = report.head_full else {
        // Not incremental: both revisions were analysed in full.
        let (bs, hs) = (report.base.stats, report.head.stats);
        base.add_findings(report.base.findings);
        head.add_findings(report.head.findings);
        return ChangeAnalysis::Both { base: bs, head: hs };
    };
    // The head's findings no changed rule takes part in: the base's too.
    let shared = check::base::unmatched(full.findings.clone(), &report.head.findings);
    base.add_findings(report.base.findings);
    base.add_findings(shared);
    head.add_findings(full.findings);
    ChangeAnalysis::Incremental {
        changed: report.changed,
        base: report.base.stats,
        head: full.stats,
    }
}

/// What the pull-request check reports ([`pull_request`]).
#[derive(Debug, Clone)]
pub struct PullRequest {
    /// The head's findings the base did not have, every error of the head,
    /// and the version checks.
    pub findings: Vec<Finding>,
    /// Head findings left out because the base had them.
    pub hidden: usize,
    pub analysis: ChangeAnalysis,
}

/// The pull-request check of `head` against `base`, both from
/// [`check_unanalysed`]: the conflict analysis of the change
/// ([`analyze_change`]), what the head introduces
/// (`check::base::introduced`) and the version checks
/// (`check::base::version_changes`). Both keep their findings, the analysis's
/// included.
pub fn pull_request(
    base: &mut Checked,
    head: &mut Checked,
    opts: &analyze::Options,
) -> PullRequest {
    let analysis = analyze_change(base, head, opts);
    let mut findings = check::base::introduced(&base.findings, head.findings.clone());
    let hidden = head.findings.len() - findings.len();
    findings.extend(check::base::version_changes(
        base.version_side(),
        head.version_side(),
    ));
    PullRequest {
        findings,
        hidden,
        analysis,
    }
}

impl Checked {
    /// This revision's side of the version comparison.
    fn version_side(&self) -> check::base::Side<'_> {
        check::base::Side {
            parsed: &self.parsed,
            schema: self.project.as_ref().map(|p| &p.schema),
        }
    }
}
