//! The operator commands: `sluice status`, `pause`, `resume`, `promote`,
//! `rollback`, `unquarantine` and `revert skip|done`, through the daemon's control client
//! ([`crate::reconcile::control`]); and the status rendered for humans.
//! Decides nothing: the daemon answers, this prints.

use std::time::Duration;

use anyhow::Context as _;

use super::{Exit, Format};
use crate::model::short;
use crate::reconcile::api::Status;
use crate::reconcile::control::{Answer, ControlClient, Operation};

/// How the operator commands reach the daemon.
#[derive(Debug, clap::Args)]
pub struct DaemonArgs {
    /// The daemon's control API.
    #[arg(long, env = "SLUICE_DAEMON", default_value = "http://127.0.0.1:7474")]
    pub daemon: String,
    /// The daemon's operator token (`--operator-token-file`), or its read
    /// token for `status` alone.
    #[arg(long, env = "SLUICE_DAEMON_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The engines' admin token, which the daemon also admits (used when
    /// `--token` is not given).
    #[arg(long, env = "SLUICE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Who gives the command, for the audit log's `by`.
    #[arg(long = "as", value_name = "NAME", env = "SLUICE_OPERATOR")]
    pub by: Option<String>,
}

/// `sluice revert skip|done`.
#[derive(Debug, clap::Subcommand)]
pub enum RevertCommand {
    /// Drop the pending revert: the branch is left as it is (the rolled-back
    /// artifact stays quarantined).
    Skip {
        #[command(flatten)]
        daemon: DaemonArgs,
        /// Why, for the audit log.
        #[arg(long)]
        reason: Option<String>,
    },
    /// The pending revert was made by hand: settle it.
    Done {
        #[command(flatten)]
        daemon: DaemonArgs,
        /// Why, for the audit log.
        #[arg(long)]
        reason: Option<String>,
    },
}

pub(super) fn cmd_revert(c: RevertCommand) -> anyhow::Result<Exit> {
    match c {
        RevertCommand::Skip { daemon, reason } => {
            cmd_operator(&daemon, Operation::RevertSkip { reason })
        }
        RevertCommand::Done { daemon, reason } => {
            cmd_operator(&daemon, Operation::RevertDone { reason })
        }
    }
}

/// A client of the daemon the flags name.
fn client(d: &DaemonArgs) -> anyhow::Result<ControlClient> {
    let Some(token) = d.token.as_deref().or(d.admin_token.as_deref()) else {
        anyhow::bail!(
            "the daemon needs a token: `--token` or SLUICE_DAEMON_TOKEN (its operator or read \
             token), or `--admin-token` or SLUICE_ADMIN_TOKEN"
        );
    };
    Ok(
        ControlClient::new(&d.daemon, token.trim(), Duration::from_secs(30))?
            .given_by(d.by.clone()),
    )
}

pub(super) fn cmd_operator(d: &DaemonArgs, op: Operation) -> anyhow::Result<Exit> {
    let client = client(d)?;
    match super::runtime(false)?.block_on(client.run(&op))? {
        Answer::Done(message) => {
            println!("{message}");
            Ok(Exit::Ok)
        }
        Answer::Refused(why) => {
            eprintln!("{} refused: {why}", op.name());
            Ok(Exit::Findings)
        }
    }
}

pub(super) fn cmd_status(d: &DaemonArgs, format: Format) -> anyhow::Result<Exit> {
    let client = client(d)?;
    let status = match super::runtime(false)?.block_on(client.status())? {
        Answer::Done(status) => status,
        Answer::Refused(why) => anyhow::bail!("status refused: {why}"),
    };
    match format {
        Format::Json => {
            let s = serde_json::to_string_pretty(&status).context("rendering the status")?;
            println!("{s}");
        }
        Format::Human => print!("{}", render_status(&status)),
    }
    Ok(Exit::Ok)
}

fn ms_text(ms: u64) -> String {
    let d = std::time::Duration::from_millis(ms / 100 * 100);
    humantime::format_duration(d).to_string()
}

/// A figure of a gate reading; one with no number (JSON `null`, an open
/// end of an interval) shows as `-`.
fn num(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.4}")
    } else {
        "-".to_string()
    }
}

/// `sluice status` for humans.
pub fn render_status(s: &Status) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let head = s.head.as_deref().map_or("unknown", short::hash);
    let _ = writeln!(o, "branch {} of {} at {head}", s.branch, s.repo);
    if !s.identity.is_empty() {
        let _ = writeln!(o, "daemon: {}", s.identity);
    }
    if let Some(f) = &s.fenced {
        let _ = writeln!(o, "FENCED: {f}");
    }
    if let Some(e) = &s.git_error {
        let _ = writeln!(o, "  git: {e}");
        if s.fetch_failures > 0 {
            let retry = s
                .fetch_retry_ms
                .map(|ms| format!("; next attempt in {:.1} s", ms as f64 / 1000.0))
                .unwrap_or_default();
            let _ = writeln!(
                o,
                "  git: {} failed fetches in a row{retry}",
                s.fetch_failures
            );
        }
    }
    if let Some(since) = &s.branch_gone {
        let _ = writeln!(o, "  branch GONE from the remote since {since}");
    }
    if let Some(r) = &s.rewrite {
        let _ = writeln!(
            o,
            "  history REWRITTEN: head {} does not descend from {}",
            short::hash(&r.to),
            r.from.as_deref().map_or("none", short::hash)
        );
    }
    let _ = write!(o, "phase: {}", s.phase);
    if let Some(p) = &s.paused {
        let _ = write!(o, " (PAUSED: {})", p.reason);
    }
    o.push('\n');
    if let Some(st) = &s.stable {
        let commit = st.commit.as_deref().map_or("adopted", short::hash);
        let _ = writeln!(
            o,
            "stable:    {} (commit {commit})",
            short::hash(&st.artifact)
        );
    }
    if let Some(c) = &s.candidate {
        let _ = writeln!(
            o,
            "candidate: {} (commit {} \"{}\")",
            short::hash(&c.artifact),
            short::hash(&c.commit),
            c.summary
        );
        if c.commits.len() > 1 {
            let _ = writeln!(
                o,
                "  commits: {} since stable ({}..{})",
                c.commits.len(),
                c.base.as_deref().map_or("?", short::hash),
                short::hash(&c.commit)
            );
        }
        match &c.base {
            Some(b) => {
                let _ = writeln!(
                    o,
                    "  gated by the plan and traces of stable commit {}",
                    short::hash(b)
                );
            }
            None => {
                let _ = writeln!(
                    o,
                    "  gated by its own plan (the stable artifact has no commit)"
                );
            }
        }
        let path: Vec<String> = c
            .stages
            .iter()
            .enumerate()
            .map(|(i, n)| {
                if i == c.stage_index {
                    format!("[{n}]")
                } else {
                    n.clone()
                }
            })
            .collect();
        let _ = writeln!(
            o,
            "  stage {} of {}: {}",
            c.stage_index + 1,
            c.stages.len(),
            path.join(" → ")
        );
        let mut line = format!("  in stage {}", ms_text(c.in_stage_ms));
        if let Some(m) = c.min_duration_ms {
            let _ = write!(line, ", min {}", ms_text(m));
        }
        if let Some(m) = c.max_duration_ms {
            let _ = write!(line, ", max {}", ms_text(m));
        }
        if let Some(t) = c.time_left_ms {
            let _ = write!(line, "; time left {}", ms_text(t));
        }
        if let Some(n) = c.samples_left {
            let _ = write!(line, "; samples left {n}");
            if let Some(m) = c.min_samples {
                let _ = write!(line, " (of {m})");
            }
        }
        let _ = writeln!(o, "{line}");
        if let Some(step) = &c.step {
            let what = step.as_str();
            let why = step.why().map(|r| format!(": {r}")).unwrap_or_default();
            let _ = writeln!(o, "  decision: {what}{why}");
        }
        if !c.gates.is_empty() || !c.triggers.is_empty() {
            let _ = writeln!(
                o,
                "  {:<9} {:<26} {:>10}  {:<23} {:>8}  verdict",
                "", "gate", "estimate", "95% interval", "limit"
            );
            for (kind, list) in [("gate", &c.gates), ("trigger", &c.triggers)] {
                for g in list {
                    let _ = writeln!(
                        o,
                        "  {:<9} {:<26} {:>10}  {:<23} {:>8}  {}",
                        kind,
                        match &g.subject {
                            Some(s) => format!("{} ({s})", g.gate.as_str()),
                            None => g.gate.as_str().to_string(),
                        },
                        num(g.estimate),
                        format!("[{}, {}]", num(g.interval.lo), num(g.interval.hi)),
                        num(g.limit),
                        g.verdict.as_str(),
                    );
                }
            }
        }
        if !c.waits.is_empty() {
            let _ = writeln!(o, "  waiting on:");
            for w in &c.waits {
                let _ = writeln!(o, "    {}: {}", w.gate.as_str(), w.reason);
            }
        }
        let r = &c.replay;
        let _ = writeln!(
            o,
            "  replay: {} of {} trace cases passed, {} catastrophic, {} false positive(s)",
            r.passed, r.cases, r.catastrophic, r.false_positives
        );
        let notes = c.notes.clone().unwrap_or_default();
        if let Some(log) = &notes.decision_log {
            let _ = writeln!(
                o,
                "  decision log: {} of {} decisions flip",
                log.flipped, log.evaluated
            );
            for f in log.flips.iter().take(10) {
                let _ = writeln!(
                    o,
                    "    {} × {} → {}: {}",
                    f.count,
                    f.from.as_str(),
                    f.to.as_str(),
                    f.rule
                );
            }
        }
        for w in notes.state_checks.iter().flat_map(|s| &s.warnings) {
            let _ = writeln!(o, "  state: {w}");
        }
    }
    let on = s.engines.iter().filter(|e| e.on_route).count();
    let _ = writeln!(o, "engines: {on} of {} on route", s.engines.len());
    for e in &s.engines {
        let what = if !e.reachable {
            format!("unreachable: {}", e.error.as_deref().unwrap_or("no answer"))
        } else if let Some(owner) = e.owner.as_ref().filter(|o| **o != s.identity) {
            format!("held by daemon {owner}")
        } else if e.on_route {
            "on route".to_string()
        } else {
            "moving to the route".to_string()
        };
        let _ = writeln!(o, "  {} {what}", e.url);
    }
    for r in &s.reverts {
        let what = match r.commits.len() {
            0 | 1 => format!("commit {}", short::hash(&r.commit)),
            n => format!(
                "{n} commits {}..{}",
                r.commits.first().map_or("", |c| short::hash(c)),
                short::hash(&r.commit)
            ),
        };
        let _ = writeln!(
            o,
            "revert pending: {what} (stage {}: {}), {} attempt(s){}",
            r.stage,
            r.trigger,
            r.attempts,
            r.last_error
                .as_deref()
                .map(|e| format!(", last error: {e}"))
                .unwrap_or_default()
        );
        if let Some(why) = &r.stuck {
            let _ = writeln!(
                o,
                "  STOPPED: {why}\n  settle it: `sluice revert skip` or `sluice revert done`; \
                 `sluice resume` tries again"
            );
        }
    }
    for q in &s.quarantine {
        let _ = writeln!(
            o,
            "quarantined: commit {} ({})",
            short::hash(&q.commit),
            q.reason
        );
    }
    if let Some(r) = &s.refused {
        let _ = writeln!(
            o,
            "refused: commit {}: {}",
            short::hash(&r.commit),
            r.reason
        );
    }
    if let Some(w) = &s.waiting {
        let _ = writeln!(o, "waiting: {w}");
    }
    if let Some(n) = &s.notifications {
        let _ = write!(
            o,
            "notifications: {} delivered, {} failed",
            n.delivered, n.failed
        );
        match &n.last_error {
            Some(e) => {
                let _ = writeln!(o, " (last: {e})");
            }
            None => {
                let _ = writeln!(o);
            }
        }
    }
    if let Some(e) = &s.error {
        let _ = writeln!(o, "error: {e}");
    }
    if let Some(t) = &s.last {
        let _ = writeln!(
            o,
            "last: #{} {} {} → {} ({}, {}): {}",
            t.seq,
            t.event,
            t.from,
            t.to,
            t.cause.as_str(),
            t.time,
            t.reason
        );
    }
    o
}
