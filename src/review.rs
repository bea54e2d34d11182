//! The pull-request review: what a change does against its base revision
//! ([`base`]) and against an engine's live state ([`live`]); one build of a
//! checked set with its state checks, for `sluice check` and the daemon
//! ([`build`]); and the whole `sluice check` of a repository, head and base
//! read through [`crate::tree`] ([`check`]). Runs after the analysis; prints
//! nothing, and reads no live state itself (it is given).

pub mod base;
pub mod build;
pub mod check;
pub mod live;

use crate::analyze;
use crate::diagnostic::Finding;
use crate::eval::Evaluator;
use crate::pipeline::Checked;

/// Evaluators already built of the base and head sets (either may be
/// missing), for the analysis to replay witnesses on.
pub type Evaluators<'e> = (Option<&'e Evaluator>, Option<&'e Evaluator>);

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
        changed: Vec<String>,
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
///
/// `evaluators` (base, head), when given, are evaluators of the two sets
/// already built: witnesses are replayed on them.
pub fn analyze_change(
    base: &mut Checked,
    head: &mut Checked,
    opts: &analyze::Options,
    evaluators: Evaluators<'_>,
) -> (ChangeAnalysis, Option<analyze::DecisionDiff>) {
    let Some(mut h) = head.revision() else {
        return (ChangeAnalysis::None, None);
    };
    h.evaluator = evaluators.1;
    let Some(mut b) = base.revision() else {
        return match head.analyze(opts) {
            Some(head) => (ChangeAnalysis::Full { head }, None),
            None => (ChangeAnalysis::None, None),
        };
    };
    b.evaluator = evaluators.0;
    let report = analyze::analyze_change(b, h, opts);
    let decisions = report.decisions;
    let changed = report.changed;
    let Some(full) = report.head_full else {
        // Not incremental: both revisions were analysed in full.
        let (bs, hs) = (report.base.stats, report.head.stats);
        base.add_findings(report.base.findings);
        head.add_findings(report.head.findings);
        return (
            ChangeAnalysis::Both {
                changed,
                base: bs,
                head: hs,
            },
            decisions,
        );
    };
    // The head's findings no changed rule takes part in: the base's too.
    let shared = base::unmatched(full.findings.clone(), &report.head.findings);
    base.add_findings(report.base.findings);
    base.add_findings(shared);
    head.add_findings(full.findings);
    (
        ChangeAnalysis::Incremental {
            changed,
            base: report.base.stats,
            head: full.stats,
        },
        decisions,
    )
}

impl ChangeAnalysis {
    /// The rules and limits whose meaning changed (`policy.rule`); empty
    /// when the base has no set to compare with.
    pub fn changed(&self) -> &[String] {
        match self {
            ChangeAnalysis::None | ChangeAnalysis::Full { .. } => &[],
            ChangeAnalysis::Incremental { changed, .. } | ChangeAnalysis::Both { changed, .. } => {
                changed
            }
        }
    }
}

/// What the pull-request check reports ([`pull_request`]).
#[derive(Debug, Clone)]
pub struct PullRequest {
    /// Every finding of the head, each labelled `introduced` (false when
    /// the base had it too) — a new one anchored on the changed rule it
    /// involves —, the version checks and what the change does to
    /// decisions (introduced by definition).
    pub findings: Vec<Finding>,
    /// Findings the base already had (`introduced: false`).
    pub preexisting: usize,
    pub analysis: ChangeAnalysis,
    /// What the change does to decisions (its findings are in `findings`
    /// too); `None` when it was not computed (the head does not
    /// type-check, the base has no set, or the schemas differ).
    pub decisions: Option<analyze::DecisionDiff>,
}

/// The pull-request check of `head` against `base`, both from
/// [`check_unanalysed`](crate::pipeline::check_unanalysed): the conflict analysis of the change
/// ([`analyze_change`]), every head finding labelled with whether the change
/// introduced it (`base::label`, `base::anchor`) and the version checks
/// (`base::version_changes`). Both keep their findings, the analysis's
/// included.
pub fn pull_request(
    base: &mut Checked,
    head: &mut Checked,
    opts: &analyze::Options,
) -> PullRequest {
    pull_request_with(base, head, opts, (None, None))
}

/// [`pull_request`], with evaluators of the two sets already built (the
/// witnesses are replayed on them: no evaluator is built twice).
pub fn pull_request_with(
    base: &mut Checked,
    head: &mut Checked,
    opts: &analyze::Options,
    evaluators: Evaluators<'_>,
) -> PullRequest {
    let (analysis, decisions) = analyze_change(base, head, opts, evaluators);
    let changed: std::collections::BTreeSet<String> = analysis.changed().iter().cloned().collect();
    let mut findings = base::label(&base.findings, head.findings.clone());
    for f in &mut findings {
        base::anchor(f, &changed);
    }
    let preexisting = findings.iter().filter(|f| f.preexisting()).count();
    let mut new = base::version_changes(base.version_side(), head.version_side());
    if let Some(d) = &decisions {
        new.extend(d.findings.iter().cloned());
    }
    findings.extend(new.into_iter().map(|mut f| {
        f.introduced = Some(true);
        f
    }));
    findings.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    PullRequest {
        findings,
        preexisting,
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
