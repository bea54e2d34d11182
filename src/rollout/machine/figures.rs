//! The figures behind a transition: the stage decision read against what
//! was observed, as typed figures for the audit line and as text for a
//! revert commit's message. Pure.

use std::time::Duration;

use super::{Ctx, Figures, State};
use crate::model::plan::StageKind;
use crate::rollout::stage::{self, Observation, StageDecision};

/// Reads the stage in flight against the observation, without deciding
/// anything: `None` outside a rollout or without figures.
pub fn current_decision(state: &State, ctx: &Ctx<'_>) -> Option<StageDecision> {
    let r = state.rollout.as_ref()?;
    let plan = ctx.plan?;
    let st = plan.stages.get(r.stage)?;
    if st.kind == StageKind::Replay {
        return Some(stage::decide_replay(st, &r.replay));
    }
    let obs = ctx.observed.figures.as_ref()?;
    let elapsed = Duration::from_millis(ctx.now_ms.saturating_sub(r.stage_started_ms));
    Some(stage::decide(st, &plan.rollback, elapsed, obs))
}

/// The figures of a decision, for audit lines.
pub fn figures(decision: Option<&StageDecision>, obs: Option<&Observation>) -> Figures {
    let mut out = Figures {
        observed: obs.cloned(),
        ..Figures::default()
    };
    if let Some(d) = decision {
        out.gates = Some(d.readings.clone());
        out.triggers.clone_from(&d.triggers);
        out.samples_left = Some(d.samples_left);
        out.time_left_ms = Some(u64::try_from(d.time_left.as_millis()).unwrap_or(u64::MAX));
    }
    out
}

/// Renders the figures of an observation as text for a commit message.
pub fn figures_text(d: Option<&StageDecision>, obs: Option<&Observation>) -> String {
    let mut lines = Vec::new();
    if let Some(o) = obs {
        let c = &o.candidate;
        let s = &o.stable;
        lines.push(format!(
            "candidate: {} requests, {} errors, {} denied; stable: {} requests, {} errors, {} denied",
            c.requests, c.errors, c.denies, s.requests, s.errors, s.denies
        ));
        if o.compared > 0 {
            lines.push(format!(
                "shadow: {} of {} decisions differ",
                o.diverged, o.compared
            ));
        }
    }
    if let Some(d) = d {
        for g in d.triggers.iter().chain(&d.readings) {
            lines.push(format!(
                "{} = {:.4} (95% interval {:.4}..{:.4}, limit {}): {}",
                g.gate, g.estimate, g.interval.lo, g.interval.hi, g.limit, g.verdict
            ));
        }
    }
    lines.join("\n")
}
