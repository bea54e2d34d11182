//! The route every engine must be on in a state, and whether an engine's
//! route is that one. Pure.

use serde_json::Value;

use super::State;
use crate::api::route::{Mode, RouteSpec};
use crate::model::ir::Literal;
use crate::model::plan::{RolloutPlan, StageKind};

/// Whether an engine on `observed` is on `desired`, both read as the engine
/// normalizes them (defaults filled in); without a candidate only the stable
/// artifact and the stage matter. A route the engine would refuse is on
/// nothing.
pub fn same_route(observed: &RouteSpec, desired: &RouteSpec) -> bool {
    let (Ok(a), Ok(b)) = (observed.clone().normalize(), desired.clone().normalize()) else {
        return false;
    };
    if a.candidate.is_none() && b.candidate.is_none() {
        return a.stable == b.stable && a.stage == b.stage;
    }
    a == b
}

fn literal(l: &Literal) -> Value {
    match l {
        Literal::Int(i) => Value::from(*i),
        Literal::Str(s) => Value::from(s.as_str()),
        Literal::Bool(b) => Value::from(*b),
    }
}

/// The route every engine must be on in this state; `None` before a stable
/// artifact exists. `plan` is the candidate's.
pub fn desired_route(state: &State, plan: Option<&RolloutPlan>) -> Option<RouteSpec> {
    let stable = state.stable.as_ref()?;
    let base = RouteSpec::stable(&stable.artifact);
    let (Some(r), Some(plan)) = (&state.rollout, plan) else {
        return Some(base);
    };
    let Some(st) = plan.stages.get(r.stage) else {
        return Some(base);
    };
    let mode = match st.kind {
        StageKind::Replay => return Some(base),
        StageKind::Shadow => Mode::Shadow,
        StageKind::Split => Mode::Split,
    };
    Some(RouteSpec {
        candidate: Some(r.artifact.clone()),
        mode: Some(mode),
        percent: Some(match mode {
            Mode::Shadow => 100.0,
            Mode::Split => f64::from(st.percent.unwrap_or(0)),
        }),
        match_: st
            .matches
            .iter()
            .map(|(k, v)| (k.clone(), v.iter().map(literal).collect()))
            .collect(),
        hash_key: plan.hash_key.clone(),
        stage: Some(st.name.clone()),
        ..base
    })
}
