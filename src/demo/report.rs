//! The demo's report: what happened, read back from facts (the repository,
//! the daemon's audit log, the engines' routes and the traffic counters),
//! what of it did not go as the demo promises, and its summary for people.
//!
//! It reads what the run hands it; it starts nothing and waits on nothing.

use std::path::PathBuf;

use serde::Serialize;

use super::facts::{EngineRoute, LogEntry, PhaseTime, Pushed};
use super::origin::DemoCommit;
use super::traffic::TrafficFigures;
use super::{BRANCH, CHECKOUT_DIR, ORIGIN_DIR, STATE_DIR, SUMMARY_FILE};
use crate::model::short;
use crate::rollout::machine::{Cause, Transition};

/// How long a candidate spent in one stage and how it left it.
#[derive(Debug, Clone, Serialize)]
pub struct StageTime {
    pub stage: String,
    pub seconds: f64,
    /// The audit event that ended it (`advance`, `complete`, `rollback`…).
    pub event: String,
    pub reason: String,
}

/// A change pushed by the demo, as the audit log tells it.
#[derive(Debug, Clone, Serialize)]
pub struct ChangeFacts {
    pub sha: String,
    pub summary: String,
    /// Its artifact, once built.
    pub artifact: Option<String>,
    /// Every stage it went through.
    pub stages: Vec<StageTime>,
    /// The event that ended its rollout (`install`, `complete`, `rollback`).
    pub outcome: Option<String>,
    /// Who or what caused that event.
    pub cause: Option<Cause>,
    /// Why it was rolled back, when it was.
    pub trigger: Option<String>,
    /// From push to the end of its rollout.
    pub seconds: f64,
}

/// The revert commit the daemon pushed.
#[derive(Debug, Clone, Serialize)]
pub struct RevertFacts {
    pub sha: String,
    pub summary: String,
    pub message: String,
    /// The daemon's answer to it (`unchanged`: nothing to roll out).
    pub acted_on: Option<String>,
}

/// What happened, read back from the repository, the audit log, the
/// engines and the traffic counters.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The kept folder, when `--keep` was given.
    pub dir: Option<PathBuf>,
    pub phases: Vec<PhaseTime>,
    pub total_seconds: f64,
    pub initial: ChangeFacts,
    pub good: ChangeFacts,
    pub bad: ChangeFacts,
    pub revert: Option<RevertFacts>,
    /// The change that moves newco's support mail from observe to enforce.
    pub enforce: ChangeFacts,
    /// The traffic's figures when it was pushed: what observing had seen.
    pub observed_before_enforce: TrafficFigures,
    pub traffic: TrafficFigures,
    pub traffic_seconds: f64,
    /// The first few failed requests.
    pub traffic_errors: Vec<String>,
    /// `git log` of the branch, newest first.
    pub log: Vec<LogEntry>,
    pub engines: Vec<EngineRoute>,
    /// The audit log: `event from > to (commit)`.
    pub audit: Vec<String>,
}

impl Report {
    /// What did not go as the demo promises; empty when all did.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.initial.outcome.as_deref() != Some("install") {
            out.push("the first commit was not installed as stable".to_string());
        }
        for (what, c) in [("good", &self.good), ("enforce", &self.enforce)] {
            let walked: Vec<&str> = c.stages.iter().map(|s| s.stage.as_str()).collect();
            if c.outcome.as_deref() != Some("complete") {
                out.push(format!(
                    "the {what} change did not reach full (it ended with {:?})",
                    c.outcome
                ));
            } else if walked != ["replay", "shadow", "canary", "broad", "full"] {
                out.push(format!(
                    "the {what} change did not walk every stage: {}",
                    walked.join(", ")
                ));
            }
        }
        let o = &self.observed_before_enforce;
        if o.observed == 0 || o.observed_deny == 0 {
            out.push(format!(
                "before the enforce change, no observed decision (or no observed deny) was answered: {}",
                o.observed_text()
            ));
        }
        if self.bad.outcome.as_deref() != Some("rollback") || self.bad.cause != Some(Cause::Trigger)
        {
            out.push(format!(
                "the bad change was not rolled back by a trigger (it ended with {:?}, cause {:?})",
                self.bad.outcome, self.bad.cause
            ));
        }
        match &self.revert {
            None => out.push("no revert commit of the bad change on the branch".to_string()),
            Some(r) => {
                if !r
                    .message
                    .contains(&format!("This reverts commit {}.", self.bad.sha))
                {
                    out.push(format!(
                        "the revert commit {} does not name the bad commit",
                        short::commit(&r.sha)
                    ));
                }
                match &self.bad.trigger {
                    Some(t) if r.message.contains(&format!("Trigger: {t}")) => {}
                    _ => out.push(format!(
                        "the revert commit {} does not name the trigger",
                        short::commit(&r.sha)
                    )),
                }
                let top: Vec<&str> = self.log.iter().take(2).map(|e| e.sha.as_str()).collect();
                if top != [self.enforce.sha.as_str(), r.sha.as_str()] {
                    out.push(
                        "the branch does not end with the revert commit and the enforce change"
                            .to_string(),
                    );
                }
                if r.acted_on.as_deref() != Some("unchanged") {
                    out.push(format!(
                        "the daemon did not take the revert commit as unchanged ({:?})",
                        r.acted_on
                    ));
                }
            }
        }
        for e in &self.engines {
            if e.stable.is_none() || e.stable != self.enforce.artifact || e.candidate.is_some() {
                out.push(format!(
                    "engine {} is on stable {:?} with candidate {:?}, not on the enforce change's artifact alone",
                    e.url, e.stable, e.candidate
                ));
            }
        }
        if self.traffic.requests == 0 {
            out.push("no traffic was served".to_string());
        }
        if self.traffic.failed > 0 {
            out.push(format!(
                "{} request(s) failed: {}",
                self.traffic.failed,
                self.traffic_errors.join("; ")
            ));
        }
        out
    }

    /// The summary for humans.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut o = String::new();
        let secs = |s: f64| format!("{s:.1}s");
        let _ = writeln!(o, "Summary");
        let phases: Vec<String> = self
            .phases
            .iter()
            .map(|p| format!("{} {}", p.name, secs(p.seconds)))
            .collect();
        let _ = writeln!(
            o,
            "  phases       {} · total {}",
            phases.join(" · "),
            secs(self.total_seconds)
        );
        let stages = |c: &ChangeFacts| {
            c.stages
                .iter()
                .map(|s| format!("{} {}", s.stage, secs(s.seconds)))
                .collect::<Vec<_>>()
                .join(" → ")
        };
        let g = &self.good;
        let _ = writeln!(
            o,
            "  good change  {} \"{}\": {} in {}",
            short::commit(&g.sha),
            g.summary,
            match g.outcome.as_deref() {
                Some("complete") => "reached full, now stable",
                Some(other) => other,
                None => "did not finish",
            },
            secs(g.seconds)
        );
        let _ = writeln!(o, "               {}", stages(g));
        let b = &self.bad;
        let at = b.stages.last().map_or("?", |s| s.stage.as_str());
        let _ = writeln!(
            o,
            "  bad change   {} \"{}\": {} in {}",
            short::commit(&b.sha),
            b.summary,
            match b.outcome.as_deref() {
                Some("rollback") => format!("rolled back at stage {at}"),
                Some(other) => other.to_string(),
                None => "did not finish".to_string(),
            },
            secs(b.seconds)
        );
        if let Some(t) = &b.trigger {
            let _ = writeln!(o, "               {t}");
        }
        if let Some(r) = &self.revert {
            let _ = writeln!(
                o,
                "  revert       {} \"{}\" on {BRANCH}",
                short::commit(&r.sha),
                r.summary
            );
        }
        let e = &self.enforce;
        let _ = writeln!(
            o,
            "  enforce      {} \"{}\": {} in {}",
            short::commit(&e.sha),
            e.summary,
            match e.outcome.as_deref() {
                Some("complete") => "reached full, now stable",
                Some(other) => other,
                None => "did not finish",
            },
            secs(e.seconds)
        );
        let _ = writeln!(o, "               {}", stages(e));
        let _ = writeln!(
            o,
            "               before it, newco's support mail was {}",
            self.observed_before_enforce.observed_text()
        );
        let t = &self.traffic;
        let _ = writeln!(
            o,
            "  traffic      {} requests in {} ({:.0} req/s), {} failed",
            indicatif::HumanCount(t.requests),
            secs(self.traffic_seconds),
            t.requests as f64 / self.traffic_seconds.max(0.001),
            t.failed
        );
        let _ = writeln!(o, "               {}", t.mix());
        let _ = writeln!(o, "  git log --oneline {BRANCH}");
        for e in &self.log {
            let _ = writeln!(o, "               {} {}", short::commit(&e.sha), e.summary);
        }
        let _ = writeln!(o, "  engines");
        for e in &self.engines {
            let stable = e.stable.as_deref().map_or("none", short::hash);
            let mark = if e.stable == self.enforce.artifact {
                " (the enforce change)"
            } else {
                ""
            };
            let cand = e
                .candidate
                .as_deref()
                .map_or("no candidate".to_string(), |c| {
                    format!("candidate {}", short::hash(c))
                });
            let _ = writeln!(
                o,
                "               {} stable {stable}{mark}, {cand}, {} routes set",
                e.url, e.routes_set
            );
        }
        if let Some(d) = &self.dir {
            let _ = writeln!(
                o,
                "  kept in      {} ({ORIGIN_DIR}: the bare repository, {CHECKOUT_DIR}: a checkout, {STATE_DIR}: the daemon's state and audit log, {SUMMARY_FILE})",
                d.display()
            );
        }
        o
    }
}

/// Reads a change's story from the audit log.
pub(super) fn change_facts(c: &DemoCommit, pushed: &Pushed, audit: &[Transition]) -> ChangeFacts {
    let sha = pushed.sha.as_str();
    let mine: Vec<&Transition> = audit
        .iter()
        .filter(|t| t.commit.as_deref() == Some(sha))
        .collect();
    let mut stages = Vec::new();
    let mut outcome = None;
    let mut cause = None;
    let mut trigger = None;
    let mut ended_ms = None;
    let mut previous: Option<&Transition> = None;
    for t in mine.iter().copied() {
        let leaves_stage = matches!(
            t.event.as_str(),
            "advance" | "complete" | "rollback" | "promote"
        );
        if let Some(p) = previous.filter(|_| leaves_stage) {
            stages.push(StageTime {
                stage: t.from.clone(),
                seconds: t.time_ms.saturating_sub(p.time_ms) as f64 / 1000.0,
                event: t.event.clone(),
                reason: t.reason.clone(),
            });
        }
        if matches!(
            t.event.as_str(),
            "install" | "complete" | "rollback" | "refuse"
        ) {
            outcome = Some(t.event.clone());
            cause = Some(t.cause);
            ended_ms = Some(t.time_ms);
            if t.event == "rollback" {
                trigger = t.reason.split_once(": ").map(|(_, why)| why.to_string());
            }
        }
        previous = Some(t);
    }
    ChangeFacts {
        sha: sha.to_string(),
        summary: c.summary().to_string(),
        artifact: mine.iter().find_map(|t| t.artifact.clone()),
        stages,
        outcome,
        cause,
        trigger,
        seconds: ended_ms.map_or(0.0, |e| e.saturating_sub(pushed.at_ms) as f64 / 1000.0),
    }
}

/// The revert commit `sha`, its `message`, and what the daemon made of it.
pub(super) fn revert_facts(sha: &str, message: String, audit: &[Transition]) -> RevertFacts {
    RevertFacts {
        sha: sha.to_string(),
        summary: message.lines().next().unwrap_or("").to_string(),
        message,
        acted_on: audit
            .iter()
            .find(|t| t.commit.as_deref() == Some(sha))
            .map(|t| t.event.clone()),
    }
}

/// The audit log, one line a transition: `event from > to (commit)`.
pub(super) fn audit_lines(audit: &[Transition]) -> Vec<String> {
    audit
        .iter()
        .map(|t| {
            format!(
                "{} {} > {}{}",
                t.event,
                t.from,
                t.to,
                t.commit
                    .as_deref()
                    .map(|c| format!(" ({})", short::commit(c)))
                    .unwrap_or_default()
            )
        })
        .collect()
}
