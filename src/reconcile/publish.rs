//! The status document ([`crate::api::status::Status`]) of one iteration:
//! the persisted state, the candidate's last stage decision, every engine as
//! last seen, pending reverts. Read-only: publishing changes nothing.

use std::time::Duration;

use super::runner::Holder;
use super::runner::Runner;
use crate::api::status::{CandidateStatus, EngineStatus, RevertStatus, Status};
use crate::rollout::{estimate, machine};

impl Runner {
    /// Publishes the status document of this iteration.
    pub(super) fn publish(&self) {
        let desired = self.desired();
        let s = &self.state;
        let candidate = s.rollout.as_ref().map(|r| {
            let plan = self.candidate_plan();
            let stage = plan.and_then(|p| p.stages.get(r.stage));
            let ms =
                |d: Option<Duration>| d.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            let d = self.decision.as_ref();
            CandidateStatus {
                commit: r.commit.clone(),
                summary: r.summary.clone(),
                artifact: r.artifact.clone(),
                stage: r.stage_name.clone(),
                stage_index: r.stage,
                stages: plan
                    .map(|p| p.stages.iter().map(|s| s.name.clone()).collect())
                    .unwrap_or_default(),
                kind: stage
                    .map(|s| s.kind.as_str().to_string())
                    .unwrap_or_default(),
                percent: stage.and_then(|s| s.percent),
                in_stage_ms: self.now_ms().saturating_sub(r.stage_started_ms),
                min_duration_ms: ms(stage.and_then(|s| s.min_duration)),
                max_duration_ms: ms(stage.and_then(|s| s.max_duration)),
                min_samples: stage.and_then(|s| s.min_samples),
                step: d.map(|d| d.step.clone()),
                gates: d.map(|d| d.readings.clone()).unwrap_or_default(),
                triggers: d.map(|d| d.triggers.clone()).unwrap_or_default(),
                samples_left: d.map(|d| d.samples_left),
                time_left_ms: d.map(|d| u64::try_from(d.time_left.as_millis()).unwrap_or(u64::MAX)),
                waits: match (d, &self.observed.figures) {
                    (Some(d), Some(obs)) if stage.is_some_and(|s| s.kind.is_live()) => {
                        let in_stage = self.now_ms().saturating_sub(r.stage_started_ms);
                        estimate::waits(&d.readings, obs, Duration::from_millis(in_stage))
                    }
                    _ => Vec::new(),
                },
                observed: self.observed.figures.clone(),
                replay: r.replay,
                notes: (!r.notes.is_empty()).then(|| r.notes.clone()),
                base: r.base.clone(),
                commits: r.commits.clone(),
            }
        });
        let engines = self
            .engines
            .iter()
            .map(|e| EngineStatus {
                url: e.client.name().to_string(),
                reachable: e.known,
                owner: match &e.holder {
                    Holder::Mine => Some(self.identity.clone()),
                    Holder::Other(o) => Some(o.clone()),
                    Holder::Free | Holder::Unknown => None,
                },
                on_route: e.known
                    && e.holder == Holder::Mine
                    && match (&e.route, &desired) {
                        (Some(r), Some(d)) => machine::same_route(r, d),
                        (None, None) => true,
                        _ => false,
                    },
                route: e.route.clone(),
                error: e.error.clone(),
            })
            .collect();
        let reverts = s
            .reverts
            .iter()
            .enumerate()
            .map(|(i, r)| RevertStatus {
                commit: r.commit.clone(),
                stage: r.stage.clone(),
                trigger: r.trigger.clone(),
                attempts: if i == 0 { self.revert_attempts } else { 0 },
                last_error: if i == 0 {
                    self.revert_error.clone()
                } else {
                    None
                },
                commits: r.commits.clone(),
                stuck: r.stuck.clone(),
            })
            .collect();
        let status = Status {
            identity: self.identity.clone(),
            fenced: self.fenced(),
            repo: self.config.repo.clone(),
            branch: self.config.branch.clone(),
            head: self.head.clone(),
            fetched: self.fetched_ms.map(machine::rfc3339),
            git_error: self.git_error.clone(),
            fetch_failures: self.fetch_failures,
            fetch_retry_ms: (self.fetch_failures > 0)
                .then(|| u64::try_from(self.fetch_wait.as_millis()).unwrap_or(u64::MAX)),
            phase: s.phase(),
            paused: s.paused.clone(),
            stable: s.stable.clone(),
            previous: s.previous.clone(),
            candidate,
            engines,
            reverts,
            quarantine: s.quarantine.clone(),
            refused: s.refused.clone(),
            waiting: self.waiting.clone(),
            last: s.last.clone(),
            error: self.error.clone(),
            rewrite: s.rewrite.clone(),
            branch_gone: s.branch_gone.map(machine::rfc3339),
            notifications: self.out.deliveries.as_ref().map(|d| d.get()),
        };
        self.out.status.send_replace(status);
    }
}
