//! The whole check of a policy repository, as `sluice check` runs it: the
//! head (the working tree, or a revision), with `--base` the pull-request
//! comparison with another revision ([`super::pull_request`]), and with a
//! live state the state checks ([`super::build`]). Reads the sources through
//! [`crate::tree`]; the live state is read by the caller. Prints nothing:
//! what the user should know beyond findings comes back as notes.

use std::path::Path;

use super::build::{self, BuildError, Live};
use super::{ChangeAnalysis, pull_request_with};
use crate::analyze;
use crate::api::state::LiveState;
use crate::compile::artifact::Artifact;
use crate::diagnostic::{Finding, Sources};
use crate::eval::Evaluator;
use crate::model::short;
use crate::pipeline::{self, Checked};
use crate::tree::git::GitRepo;
use crate::tree::{self, Origin, Traces, TreeError};

/// What to check.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The policy repository (a folder of a working tree, or a bare
    /// repository with `head`).
    pub dir: &'a Path,
    /// Compare with this revision: report what the change introduces.
    pub base: Option<&'a str>,
    /// Check this revision instead of the working tree.
    pub head: Option<&'a str>,
    /// Check against this live state, named (a file or an engine's URL).
    pub live: Option<(&'a str, &'a LiveState)>,
    /// Whether paths should be relative to the git repository's root when
    /// there is one (SARIF, GitHub annotations).
    pub git_paths: bool,
}

/// What the check found.
#[derive(Debug)]
pub struct Report {
    /// Sorted by file and position.
    pub findings: Vec<Finding>,
    /// Every file read, for rendering findings.
    pub sources: Sources,
    /// What the user should know beside the findings, one sentence each.
    pub notes: Vec<String>,
    /// The policy repository's folder inside the git repository (`/`
    /// separators), or empty.
    pub prefix: String,
    /// Number of policy files of the head.
    pub policies: usize,
    /// Number of rules and limits of the head.
    pub rules: usize,
    /// With a base: the head's trace files (to replay at both revisions).
    pub traces: Vec<crate::source::SourceFile>,
    /// With a base whose set and the head's type-check under one schema:
    /// an evaluator of each (base, head), for the replay of requests.
    pub evaluators: Option<(Evaluator, Evaluator)>,
    /// Solver questions and seconds of what the change does to decisions.
    pub decisions: Option<(u64, f64)>,
    /// With a base: how to name it where findings it already had are
    /// labelled ("already on main"): the branch the user named or whose tip
    /// the base commit is, else the revision as given (`HEAD~1`), or "the
    /// base" for a bare commit hash.
    pub base_name: Option<String>,
}

/// Why the check could not run.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Tree(#[from] TreeError),
    #[error(transparent)]
    Build(#[from] BuildError),
}

/// Checks a policy repository.
pub fn check(req: &Request<'_>) -> Result<Report, CheckError> {
    let git = if req.base.is_some() || req.head.is_some() {
        Some(GitRepo::open(req.dir)?)
    } else if req.git_paths {
        GitRepo::open(req.dir).ok()
    } else {
        None
    };
    let prefix = git.as_ref().map_or("", GitRepo::prefix).to_string();
    // The pull-request check replays the head's traces at both revisions.
    let traces = if req.base.is_some() {
        Traces::Read
    } else {
        Traces::Skip
    };
    let files = match (&git, req.head) {
        (Some(git), Some(rev)) => git.load_with(rev, traces)?.sources,
        _ => tree::fs::load(req.dir, traces)?,
    };
    let mut checked = pipeline::check_unanalysed(&files.project, &files.policies);
    let mut notes = Vec::new();
    let mut base = match (&git, req.base) {
        (Some(git), Some(rev)) => check_base(git, rev, &checked, &mut notes)?,
        _ => None,
    };
    let opts = analyze::Options::default();
    // One evaluator per revision, built before the analysis (which drops
    // the set of a revision with a conflict error): the analysis replays
    // its witnesses on them, and the traces are replayed on them after.
    let (base_evaluator, head_evaluator) = match &base {
        Some((_, b)) => (evaluator(b), evaluator(&checked)),
        None => (None, None),
    };
    let schemas_differ = base.as_ref().is_some_and(|(_, b)| {
        matches!((&b.project, &checked.project), (Some(b), Some(h)) if b.schema != h.schema)
    });
    let mut decisions = None;
    let base_name = match (&git, req.base, &base) {
        (Some(git), Some(rev), Some((commit, _))) => Some(base_name(git, rev, commit)),
        (_, Some(rev), _) => Some(rev.to_string()),
        _ => None,
    };
    let mut findings = match &mut base {
        Some((commit, base)) => {
            let pr = pull_request_with(
                base,
                &mut checked,
                &opts,
                (base_evaluator.as_ref(), head_evaluator.as_ref()),
            );
            decisions = pr.decisions.as_ref().map(|d| (d.questions, d.seconds));
            notes.extend(analysis_note(&pr.analysis));
            if schemas_differ {
                notes.push(
                    "what the change does to decisions is not analysed: the request schema \
                     changed, so no request is the same at both revisions"
                        .to_string(),
                );
            }
            let name = base_name.as_deref().unwrap_or("the base");
            notes.push(if pr.preexisting == 0 {
                format!(
                    "compared with base {} ({name}): every finding is new",
                    short::hash(commit)
                )
            } else {
                format!(
                    "compared with base {}: {} finding(s) the base already had, labelled \
                     \"already on {name}\"",
                    short::hash(commit),
                    pr.preexisting
                )
            });
            pr.findings
        }
        None => {
            checked.analyze(&opts);
            let mut findings = std::mem::take(&mut checked.findings);
            // A base without a policy repository: everything is new.
            if req.base.is_some() {
                for f in &mut findings {
                    f.introduced = Some(true);
                }
            }
            findings
        }
    };
    if let Some((name, state)) = req.live {
        let base_set = base.as_ref().and_then(|(_, b)| b.set.as_ref());
        let engines = [(name.to_string(), state.clone())];
        let live = Live {
            engines: &engines,
            base: base_set,
        };
        match build::build(&checked, None, Some(live))? {
            Some(built) => {
                if req.base.is_some() && base_set.is_none() {
                    notes.push(
                        "the base revision has no policy set that checks clean: state checks compare with the live state alone"
                            .to_string(),
                    );
                }
                // With a base, the state checks report what the change
                // does (a `max` the base already had is not reported).
                let introduced = req.base.is_some().then_some(true);
                findings.extend(
                    built
                        .live
                        .into_iter()
                        .flat_map(|e| e.findings)
                        .map(|mut f| {
                            f.introduced = introduced;
                            f
                        }),
                );
            }
            None => notes
                .push("state checks skipped: the policy set has errors to fix first".to_string()),
        }
    }
    findings.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    let evaluators = base_evaluator
        .zip(head_evaluator)
        .filter(|(b, h)| b.schema() == h.schema());
    Ok(Report {
        traces: if req.base.is_some() {
            files.traces
        } else {
            Vec::new()
        },
        evaluators,
        decisions,
        base_name,
        findings,
        policies: checked.files,
        rules: checked.rule_count(),
        sources: checked.sources,
        notes,
        prefix,
    })
}

/// The base revision checked (without the conflict analysis, which
/// [`pull_request_with`] runs on both revisions; the files it shares with `head`
/// are not parsed again), with its commit; `None` when it has no policy
/// repository (the change adds it: every finding is new, which a note says).
fn check_base(
    git: &GitRepo,
    rev: &str,
    head: &Checked,
    notes: &mut Vec<String>,
) -> Result<Option<(String, Checked)>, TreeError> {
    match git.load(rev) {
        Ok(files) => Ok(Some((
            files.commit,
            pipeline::check_unanalysed_sharing(
                &files.sources.project,
                &files.sources.policies,
                head,
            ),
        ))),
        Err(TreeError::NoProject {
            origin: Origin::Rev { prefix, .. },
        }) => {
            notes.push(format!(
                "the base revision `{rev}` has no `{}`: every finding is new",
                tree::git::project_path(&prefix)
            ));
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// How to name the base revision `rev` (commit `commit`) in labels: a
/// branch name as given (`main`, `origin/main` → `main`), else a branch
/// whose tip the commit is (a pull request's base commit is its target
/// branch's tip), else `rev` itself unless it is a bare hash.
fn base_name(git: &GitRepo, rev: &str, commit: &str) -> String {
    let branch = |name: &str| {
        let name = name
            .strip_prefix("refs/heads/")
            .or_else(|| name.strip_prefix("refs/remotes/"))
            .unwrap_or(name);
        name.split_once('/')
            .filter(|(remote, _)| git.is_remote(remote))
            .map_or(name, |(_, branch)| branch)
            .to_string()
    };
    let hashlike = rev.len() >= 4 && rev.chars().all(|c| c.is_ascii_hexdigit());
    if let Some(b) = git.branch_named(rev).filter(|_| !hashlike) {
        return branch(&b);
    }
    if let Some(b) = git.branch_at(commit) {
        return branch(&b);
    }
    if hashlike {
        "the base".to_string()
    } else {
        rev.to_string()
    }
}

/// What the conflict analysis of a change looked at, for the notes.
fn analysis_note(a: &ChangeAnalysis) -> Option<String> {
    let run = |s: &analyze::Stats| s.jobs - s.unchanged;
    match a {
        ChangeAnalysis::None | ChangeAnalysis::Full { .. } => None,
        ChangeAnalysis::Incremental {
            changed,
            base,
            head,
        } => Some(format!(
            "conflict analysis of the change: {} rule(s) and limit(s) changed; head analysed in \
             full ({} solver job(s)), base only where the change can matter ({} of {} job(s))",
            changed.len(),
            run(head),
            run(base),
            base.jobs
        )),
        ChangeAnalysis::Both { .. } => Some(
            "conflict analysis of the change: the schema, the default decision or the encoding \
             of a field changed, so both revisions were analysed in full"
                .to_string(),
        ),
    }
}

/// An evaluator of a revision whose set type-checks (conflict errors or
/// not: the replay shows what it decides).
fn evaluator(c: &Checked) -> Option<Evaluator> {
    let (project, set) = (c.project.as_ref()?, c.set.as_ref()?);
    let artifact = Artifact {
        format_version: crate::compile::artifact::FORMAT_VERSION,
        project: project.name.clone(),
        default: project.default,
        schema: project.schema.clone(),
        policies: set.policies.clone(),
        source_commit: None,
        hash: String::new(),
    };
    Evaluator::new(&artifact).ok()
}
