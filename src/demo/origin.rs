//! The demo's policy repository: its embedded content, its four commits,
//! and the bare repository the daemon watches, written with git2.
//!
//! The content lives next to this file (`repo/` for the first commit,
//! `good/` and `bad/` for the two shell changes, `enforce/` for the traces
//! of the third change, whose `sluice.toml` is the first commit's without
//! its `[governance]` table) and is compiled in. Commits are
//! written straight into the bare repository's object database and the
//! branch moved, as a push would: no `git` command line is needed. This
//! module writes and reads the repository only; it starts nothing and does
//! not talk to the daemon or the engines.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::facts::LogEntry;
use super::{BRANCH, DemoError};

const BRANCH_REF: &str = "refs/heads/main";

/// The `min_duration` and `max_duration` the embedded plan gives its live
/// stages; [`super::Options::stage_duration`] replaces them.
const PLAN_MIN: &str = "min_duration = \"4s\"";
const PLAN_MAX: &str = "max_duration = \"2m\"";
const PLAN_LIVE_STAGES: usize = 3;

const INITIAL_FILES: &[(&str, &str)] = &[
    ("sluice.toml", include_str!("repo/sluice.toml")),
    (
        "policies/approvals.policy",
        include_str!("repo/policies/approvals.policy"),
    ),
    (
        "policies/core.policy",
        include_str!("repo/policies/core.policy"),
    ),
    (
        "policies/email.policy",
        include_str!("repo/policies/email.policy"),
    ),
    (
        "policies/payments.policy",
        include_str!("repo/policies/payments.policy"),
    ),
    (
        "policies/search.policy",
        include_str!("repo/policies/search.policy"),
    ),
    (
        "policies/shell.policy",
        include_str!("repo/policies/shell.policy"),
    ),
    (
        "traces/email.jsonl",
        include_str!("repo/traces/email.jsonl"),
    ),
    (
        "traces/payments.jsonl",
        include_str!("repo/traces/payments.jsonl"),
    ),
    (
        "traces/search.jsonl",
        include_str!("repo/traces/search.jsonl"),
    ),
    (
        "traces/shell.jsonl",
        include_str!("repo/traces/shell.jsonl"),
    ),
];

const GOOD_FILES: &[(&str, &str)] = &[
    (
        "policies/shell.policy",
        include_str!("good/policies/shell.policy"),
    ),
    (
        "traces/shell.jsonl",
        include_str!("good/traces/shell.jsonl"),
    ),
];

const BAD_FILES: &[(&str, &str)] = &[
    (
        "policies/shell.policy",
        include_str!("bad/policies/shell.policy"),
    ),
    ("traces/shell.jsonl", include_str!("bad/traces/shell.jsonl")),
];

const ENFORCE_FILES: &[(&str, &str)] = &[(
    "traces/email.jsonl",
    include_str!("enforce/traces/email.jsonl"),
)];

/// Where the first commit's `sluice.toml` starts its `[governance]` table
/// (its comment): the third change deletes from there to the end.
const GOVERNANCE_FROM: &str = "\n# newco, acquired last month";

const INITIAL_MESSAGE: &str = "Guardrails for the agent fleet\n\n\
Six policies (core, approvals, search, email, payments, shell), their\n\
traces, and a rollout plan with stages of seconds.\n";

const GOOD_MESSAGE: &str = "shell: agents may not force-push\n\n\
A force-push rewrites history that others have pulled. Agents open a\n\
pull request instead.\n";

const BAD_MESSAGE: &str = "shell: catch the short form, git push -f\n\n\
no_force_push only knew --force; -f does the same. Trace added.\n";

const ENFORCE_MESSAGE: &str = "governance: enforce newco's support mail\n\n\
newco's support-bot has been observed since it joined: its mail was\n\
answered allow with the email policy's decision logged. The numbers are\n\
in; from now on the policy decides. Traces for its bulk mail and SSNs.\n";

/// One commit of the demo: its message and the files it writes.
#[derive(Debug, Clone)]
pub struct DemoCommit {
    pub message: &'static str,
    /// (path, text), written over the previous commit's tree.
    pub files: Vec<(&'static str, String)>,
}

impl DemoCommit {
    /// The message's first line.
    pub fn summary(&self) -> &'static str {
        self.message.lines().next().unwrap_or("")
    }
}

/// The demo's four commits: the initial repository (its plan's live stages
/// lasting at least `stage_duration`, newco's support mail observed), the
/// good change, the bad change, and the change that enforces newco.
pub fn commits(stage_duration: Duration) -> [DemoCommit; 4] {
    let files = |list: &[(&'static str, &'static str)]| {
        list.iter()
            .map(|(p, t)| (*p, (*t).to_string()))
            .collect::<Vec<_>>()
    };
    let mut initial = files(INITIAL_FILES);
    let mut enforced_toml = String::new();
    for (path, text) in &mut initial {
        if *path == "sluice.toml" {
            *text = plan_with(text, stage_duration);
            enforced_toml = without_governance(text);
        }
    }
    let mut enforce = files(ENFORCE_FILES);
    enforce.push(("sluice.toml", enforced_toml));
    [
        DemoCommit {
            message: INITIAL_MESSAGE,
            files: initial,
        },
        DemoCommit {
            message: GOOD_MESSAGE,
            files: files(GOOD_FILES),
        },
        DemoCommit {
            message: BAD_MESSAGE,
            files: files(BAD_FILES),
        },
        DemoCommit {
            message: ENFORCE_MESSAGE,
            files: enforce,
        },
    ]
}

/// `toml` without its `[governance]` table (from its comment to the end of
/// the file).
fn without_governance(toml: &str) -> String {
    debug_assert_eq!(toml.matches(GOVERNANCE_FROM).count(), 1);
    match toml.split_once(GOVERNANCE_FROM) {
        Some((before, _)) => format!("{}\n", before.trim_end()),
        None => toml.to_string(),
    }
}

/// The embedded `sluice.toml` with every live stage's `min_duration` set to
/// `stage` and its `max_duration` to the larger of two minutes and four
/// times `stage`.
fn plan_with(toml: &str, stage: Duration) -> String {
    debug_assert_eq!(toml.matches(PLAN_MIN).count(), PLAN_LIVE_STAGES);
    debug_assert_eq!(toml.matches(PLAN_MAX).count(), PLAN_LIVE_STAGES);
    let max = stage.saturating_mul(4).max(Duration::from_secs(120));
    toml.replace(
        PLAN_MIN,
        &format!(
            "min_duration = \"{}\"",
            humantime::format_duration(round_ms(stage))
        ),
    )
    .replace(
        PLAN_MAX,
        &format!(
            "max_duration = \"{}\"",
            humantime::format_duration(round_ms(max))
        ),
    )
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

// ---------------------------------------------------------------------------
// The repository, through git2

/// The bare repository the daemon watches; commits are written straight
/// into its object database and its branch moved, as a push would.
pub(super) struct Origin {
    repo: git2::Repository,
    pub(super) path: PathBuf,
}

impl Origin {
    pub(super) fn create(path: &Path) -> Result<Origin, DemoError> {
        let mut opts = git2::RepositoryInitOptions::new();
        opts.bare(true).initial_head(BRANCH);
        let repo = git2::Repository::init_opts(path, &opts)?;
        Ok(Origin {
            repo,
            path: path.to_path_buf(),
        })
    }

    /// Writes `files` over the branch head's tree and moves the branch to
    /// the new commit (which fails if the branch moved meanwhile). A few
    /// small blobs and one ref update: short enough to run on the async
    /// runtime's thread.
    pub(super) fn commit(&self, c: &DemoCommit) -> Result<String, DemoError> {
        let parent = self
            .repo
            .find_reference(BRANCH_REF)
            .ok()
            .and_then(|r| r.peel_to_commit().ok());
        let base = match &parent {
            Some(p) => p.tree()?,
            None => {
                let empty = self.repo.treebuilder(None)?.write()?;
                self.repo.find_tree(empty)?
            }
        };
        let mut update = git2::build::TreeUpdateBuilder::new();
        for (path, text) in &c.files {
            let blob = self.repo.blob(text.as_bytes())?;
            update.upsert(*path, blob, git2::FileMode::Blob);
        }
        let tree = self
            .repo
            .find_tree(update.create_updated(&self.repo, &base)?)?;
        let sig = git2::Signature::now("Policy Author", "author@example.com")?;
        let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
        let oid = self
            .repo
            .commit(Some(BRANCH_REF), &sig, &sig, c.message, &tree, &parents)?;
        Ok(oid.to_string())
    }

    /// The branch, newest first.
    pub(super) fn log(&self) -> Result<Vec<LogEntry>, DemoError> {
        let mut walk = self.repo.revwalk()?;
        walk.push_ref(BRANCH_REF)?;
        walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::TIME)?;
        let mut out = Vec::new();
        for oid in walk {
            let c = self.repo.find_commit(oid?)?;
            out.push(LogEntry {
                sha: c.id().to_string(),
                summary: c.summary().ok().flatten().unwrap_or("").to_string(),
            });
        }
        Ok(out)
    }

    /// The full message of commit `sha`.
    pub(super) fn message(&self, sha: &str) -> Result<String, DemoError> {
        let c = self.repo.find_commit(git2::Oid::from_str(sha)?)?;
        Ok(c.message().unwrap_or("").to_string())
    }
}
