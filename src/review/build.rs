//! One build of a checked policy set: the artifact, the evaluator over it,
//! and the state checks ([`super::live`]) against each engine's live state.
//! `sluice check --state/--engine` and the reconcile daemon (for each new
//! commit) both build through [`build`], so a change is held to the same
//! rules by hand and in the pipeline. Pure: the set is already checked and
//! the live states already read; this module reads nothing and decides no
//! refusal (callers decide what an error finding means to them).

use crate::api::state::LiveState;
use crate::compile::artifact::{Artifact, ArtifactError};
use crate::diagnostic::Finding;
use crate::eval::{Evaluator, LoadError};
use crate::model::ir::PolicySet;
use crate::pipeline::Checked;
use crate::tree::PROJECT_FILE;

/// The live state a set is checked against.
#[derive(Debug, Clone, Copy)]
pub struct Live<'a> {
    /// Each engine's name (a URL, or the file the state was read from) and
    /// live state.
    pub engines: &'a [(String, LiveState)],
    /// The set being replaced (the base revision's, the stable artifact's):
    /// what the change is compared with.
    pub base: Option<&'a PolicySet>,
}

/// The state checks' findings against one engine.
#[derive(Debug, Clone)]
pub struct EngineFindings {
    pub engine: String,
    /// Sorted by location.
    pub findings: Vec<Finding>,
}

/// A set built.
#[derive(Debug)]
pub struct Built {
    pub artifact: Artifact,
    pub evaluator: Evaluator,
    /// One entry per engine of [`Live::engines`], in its order; empty
    /// without live state.
    pub live: Vec<EngineFindings>,
}

/// A set that checked clean and still does not build.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("building the artifact")]
    Artifact(#[source] ArtifactError),
    #[error("loading the artifact")]
    Load(#[source] LoadError),
}

/// Builds a checked set, recording `source_commit` in the artifact, and runs
/// the state checks of every engine in `live`. `Ok(None)` when the set has
/// errors: there is nothing to build.
pub fn build(
    checked: &Checked,
    source_commit: Option<String>,
    live: Option<Live<'_>>,
) -> Result<Option<Built>, BuildError> {
    let (Some(set), Some(artifact)) = (checked.set.as_ref(), checked.artifact(source_commit))
    else {
        return Ok(None);
    };
    let artifact = artifact.map_err(BuildError::Artifact)?;
    let evaluator = Evaluator::new(&artifact).map_err(BuildError::Load)?;
    let live = live.map_or_else(Vec::new, |live| {
        live.engines
            .iter()
            .map(|(engine, state)| EngineFindings {
                engine: engine.clone(),
                findings: super::live::check_live(&super::live::LiveInputs {
                    state,
                    head: set,
                    head_parsed: &checked.parsed,
                    evaluator: &evaluator,
                    base: live.base,
                    project_file: PROJECT_FILE,
                }),
            })
            .collect()
    });
    Ok(Some(Built {
        artifact,
        evaluator,
        live,
    }))
}

/// The live states of a fleet with every shared state once: engines whose
/// states name the same shared state ([`LiveState::shared`]) answered the
/// same state, so it is checked once, under the first engine's name (in
/// the order given) followed by the others'. Engines with a state of their
/// own keep theirs.
pub fn distinct_states(engines: Vec<(String, LiveState)>) -> Vec<(String, LiveState)> {
    let mut out: Vec<(String, LiveState)> = Vec::new();
    let mut sharing: Vec<Vec<String>> = Vec::new();
    for (name, state) in engines {
        let same = state
            .shared
            .as_ref()
            .and_then(|s| out.iter().position(|(_, o)| o.shared.as_ref() == Some(s)));
        match same.and_then(|i| sharing.get_mut(i)) {
            Some(names) => names.push(name),
            None => {
                out.push((name, state));
                sharing.push(Vec::new());
            }
        }
    }
    for ((name, state), others) in out.iter_mut().zip(sharing) {
        if !others.is_empty() {
            let shared = state.shared.as_deref().unwrap_or_default();
            *name = format!(
                "{name} (state `{shared}`, shared with {})",
                others.join(", ")
            );
        }
    }
    out
}
