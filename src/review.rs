//! The pull-request review: what a change does against its base revision
//! ([`base`]) and against an engine's live state ([`live`]); one build of a
//! checked set with its state checks, for `sluice check` and the daemon
//! ([`build`]); and the whole `sluice check` of a repository, head and base
//! read through [`crate::tree`] ([`check`]); the upstream MCP tools'
//! arguments the schema lacks ([`upstream`]). Runs after the analysis; prints
//! nothing, and reads no live state itself (it is given).

pub mod base;
pub mod build;
pub mod check;
pub mod live;
pub mod upstream;

use crate::analyze;
use crate::diagnostic::Finding;
use crate::pipeline::Checked;

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
/// [`check_unanalysed`](crate::pipeline::check_unanalysed). The head is analysed in full: its report has every
/// error, old or new, and a head with an error compiles to nothing. The
/// base gets what two full analyses would give it without the solver work:
/// `analyze::analyze_change` runs, at both revisions, only the questions
/// that involve a changed rule; every other finding of the head is, by
/// construction, a finding of the base too (same rules, files and
/// messages), and is recorded as such. Comparing the two
/// (`base::introduced`) then gives exactly what comparing two full
/// analyses gives. When the base does not type-check it has no analysis
/// findings at all.
pub fn analyze_change(
    base: &mut Checked,
    head: &mut Checked,
    opts: &analyze::Options,
) -> (ChangeAnalysis, Option<analyze::DecisionDiff>) {
    let Some(h) = head.revision() else {
        return (ChangeAnalysis::None, None);
    };
    let Some(b) = base.revision() else {
        return match head.analyze(opts) {
            Some(head) => (ChangeAnalysis::Full { head }, None),
            None => (ChangeAnalysis::None, None),
        };
    };
    let report = analyze::analyze_change(b, h, opts);
    let decisions = report.decisions;
    let Some(full) = report.head_full else {
        // Not incremental: both revisions were analysed in full.
        let (bs, hs) = (report.base.stats, report.head.stats);
        base.add_findings(report.base.findings);
        head.add_findings(report.head.findings);
        return (ChangeAnalysis::Both { base: bs, head: hs }, decisions);
    };
    // The head's findings no changed rule takes part in: the base's too.
    let shared = base::unmatched(full.findings.clone(), &report.head.findings);
    base.add_findings(report.base.findings);
    base.add_findings(shared);
    head.add_findings(full.findings);
    (
        ChangeAnalysis::Incremental {
            changed: report.changed,
            base: report.base.stats,
            head: full.stats,
        },
        decisions,
    )
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
    /// What the change does to decisions (its findings are in `findings`
    /// too); `None` when it was not computed (the head does not
    /// type-check, the base has no set, or the schemas differ).
    pub decisions: Option<analyze::DecisionDiff>,
}

/// The pull-request check of `head` against `base`, both from
/// [`check_unanalysed`](crate::pipeline::check_unanalysed): the conflict analysis of the change
/// ([`analyze_change`]), what the head introduces
/// (`base::introduced`) and the version checks
/// (`base::version_changes`). Both keep their findings, the analysis's
/// included.
pub fn pull_request(
    base: &mut Checked,
    head: &mut Checked,
    opts: &analyze::Options,
) -> PullRequest {
    let (analysis, decisions) = analyze_change(base, head, opts);
    let mut findings = base::introduced(&base.findings, head.findings.clone());
    let hidden = head.findings.len() - findings.len();
    findings.extend(base::version_changes(
        base.version_side(),
        head.version_side(),
    ));
    if let Some(d) = &decisions {
        findings.extend(d.findings.iter().cloned());
    }
    findings.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    PullRequest {
        findings,
        hidden,
        analysis,
        decisions,
    }
}

impl Checked {
    /// This revision's side of the version comparison.
    fn version_side(&self) -> base::Side<'_> {
        base::Side {
            parsed: &self.parsed,
            schema: self.project.as_ref().map(|p| &p.schema),
        }
    }
}
