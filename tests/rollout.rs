//! Rollout decisions. Gate statistics are checked against a reference
//! implementation: statsmodels 0.15 (`proportion_confint(method="wilson")` and
//! `confint_proportions_2indep(method="newcomb", compare="diff")`, alpha 0.05).
//! `scripts/gate-reference.py` regenerates the figures and `--check`s them.

use sluice::rollout::gate::{
    Interval, Verdict, Z95, at_most, combine, newcombe_diff, poisson, quantile_bounds, wilson,
    within,
};

#[track_caller]
fn close(got: Interval, lo: f64, hi: f64) {
    assert!(
        (got.lo - lo).abs() < 2e-6 && (got.hi - hi).abs() < 2e-6,
        "got {got:?}, want [{lo}, {hi}]"
    );
}

#[test]
fn wilson_matches_statsmodels() {
    for (k, n, lo, hi) in [
        (0, 10, 0.0, 0.277533),
        (1, 10, 0.017876, 0.40415),
        (5, 10, 0.236593, 0.763407),
        (10, 10, 0.722467, 1.0),
        (3, 1000, 0.001021, 0.008783),
        (50, 500, 0.076678, 0.129422),
        (0, 1000, 0.0, 0.003827),
    ] {
        close(wilson(k, n, Z95), lo, hi);
    }
}

#[test]
fn newcombe_matches_statsmodels() {
    for (a, n, b, m, lo, hi) in [
        (56, 70, 48, 80, 0.052431, 0.333873),
        (9, 10, 3, 10, 0.170523, 0.809018),
        (6, 7, 2, 7, 0.058228, 0.80625),
        (5, 56, 0, 29, -0.038137, 0.19256),
        (0, 10, 0, 20, -0.161125, 0.277533),
        (0, 10, 0, 10, -0.277533, 0.277533),
        (10, 10, 0, 20, 0.679086, 1.0),
        (10, 10, 0, 10, 0.607509, 1.0),
        (30, 1000, 20, 1000, -0.003914, 0.024338),
        (120, 5000, 100, 5000, -0.001773, 0.009814),
        (3, 500, 0, 500, -0.00259, 0.01749),
    ] {
        close(newcombe_diff(a, n, b, m, Z95), lo, hi);
    }
}

/// The Poisson score interval solves `(k − λ)² = z²·λ`: both ends lie on
/// it, and they bracket `k`.
#[test]
fn poisson_score_interval_solves_its_equation() {
    let z2 = Z95 * Z95;
    for k in [1u64, 2, 10, 100, 1234, 1_000_000] {
        let iv = poisson(k, Z95);
        let kf = k as f64;
        assert!(iv.lo < kf && kf < iv.hi, "{k}: {iv:?}");
        for end in [iv.lo, iv.hi] {
            let gap = ((kf - end).powi(2) - z2 * end).abs();
            assert!(gap < 1e-6 * kf.max(1.0), "{k}: {end} off by {gap}");
        }
    }
    // No event: [0, z²], about 3.84 calls.
    let none = poisson(0, Z95);
    assert_eq!(none.lo, 0.0);
    assert!((none.hi - z2).abs() < 1e-12);
    // Figures: 100 calls give about [82.2, 121.6].
    close(poisson(100, Z95), 82.227_200, 121.614_258);
}

#[test]
fn no_data_waits_never_passes() {
    assert_eq!(at_most(0.01, wilson(0, 0, Z95)), Verdict::Wait);
    assert_eq!(within(0.02, newcombe_diff(0, 0, 0, 0, Z95)), Verdict::Wait);
}

#[test]
fn gates_pass_fail_and_wait() {
    // 120/5000 vs 100/5000 denies: delta in [-0.0018, 0.0098], inside ±0.02.
    assert_eq!(
        within(0.02, newcombe_diff(120, 5000, 100, 5000, Z95)),
        Verdict::Pass
    );
    // 30/1000 vs 20/1000: upper bound 0.0243 is over 0.02, lower is under it.
    assert_eq!(
        within(0.02, newcombe_diff(30, 1000, 20, 1000, Z95)),
        Verdict::Wait
    );
    // 400/1000 vs 100/1000: clearly worse.
    assert_eq!(
        within(0.02, newcombe_diff(400, 1000, 100, 1000, Z95)),
        Verdict::Fail
    );
    // A candidate that denies far less is clearly different too.
    assert_eq!(
        within(0.02, newcombe_diff(100, 1000, 400, 1000, Z95)),
        Verdict::Fail
    );
    // Error rate 0/1000 under 0.01 passes; 50/500 over 0.01 fails.
    assert_eq!(at_most(0.01, wilson(0, 1000, Z95)), Verdict::Pass);
    assert_eq!(at_most(0.01, wilson(50, 500, Z95)), Verdict::Fail);
    assert_eq!(at_most(0.01, wilson(1, 100, Z95)), Verdict::Wait);
}

#[test]
fn combine_fail_beats_wait_beats_pass() {
    use Verdict::*;
    assert_eq!(combine([Pass, Pass]), Pass);
    assert_eq!(combine([Pass, Wait]), Wait);
    assert_eq!(combine([Wait, Fail, Pass]), Fail);
    assert_eq!(combine([]), Pass);
}

#[test]
fn quantile_bounds_bracket_the_quantile() {
    let (lo, hi) = quantile_bounds(10_000, 0.99, Z95);
    assert!(lo < 0.99 && hi > 0.99);
    assert!(
        (lo - 0.9880).abs() < 1e-4 && (hi - 0.9920).abs() < 1e-4,
        "{lo} {hi}"
    );
    assert_eq!(quantile_bounds(0, 0.99, Z95), (0.0, 1.0));
    let (lo, hi) = quantile_bounds(50, 0.99, Z95);
    assert!(lo < 0.99 && hi == 1.0);
}

#[test]
fn the_fewest_samples_to_pass_are_where_the_gate_first_passes() {
    use sluice::model::plan::fewest_samples_to_pass;
    // The count `sluice check` names is exactly where a flawless
    // candidate's gate turns from wait to pass, for the error rate, the
    // divergence, and the deny-rate delta against a stable cohort known
    // (nearly) exactly.
    for limit in [0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5] {
        let n = fewest_samples_to_pass(limit).unwrap();
        assert_eq!(at_most(limit, wilson(0, n, Z95)), Verdict::Pass, "{limit}");
        assert_eq!(
            at_most(limit, wilson(0, n - 1, Z95)),
            Verdict::Wait,
            "{limit}"
        );
        let delta = newcombe_diff(0, n, 0, 1_000_000_000, Z95);
        assert_eq!(within(limit, delta), Verdict::Pass, "{limit}");
        let delta = newcombe_diff(0, n - 1, 0, 1_000_000_000, Z95);
        assert_eq!(within(limit, delta), Verdict::Wait, "{limit}");
    }
    assert_eq!(fewest_samples_to_pass(0.001), Some(3838));
    assert_eq!(fewest_samples_to_pass(0.0), None);
    assert_eq!(fewest_samples_to_pass(1.0), Some(0));
}

#[test]
fn a_waiting_gate_says_how_many_requests_it_needs() {
    use sluice::api::gate::{Cohort, Gate, GateReading, Observation};
    use sluice::rollout::estimate::waits;
    use std::time::Duration;

    let cohort = |requests, errors, denies| Cohort {
        requests,
        errors,
        denies,
        p99_ms: None,
    };
    let reading = |gate, limit| GateReading {
        gate,
        limit,
        estimate: 0.0,
        interval: Interval { lo: 0.0, hi: 1.0 },
        verdict: Verdict::Wait,
        subject: None,
    };
    // 600 error-free candidate requests in 10 minutes: 3838 needed, the
    // 3238 missing at one a second.
    let obs = Observation {
        candidate: cohort(600, 0, 60),
        stable: cohort(11_400, 0, 1140),
        compared: 0,
        diverged: 0,
        agents: Vec::new(),
    };
    let w = waits(
        &[reading(Gate::MaxErrorRate, 0.001)],
        &obs,
        Duration::from_secs(600),
    );
    assert_eq!(w[0].needed, Some(3838));
    assert_eq!(w[0].seen, 600);
    assert_eq!(w[0].eta_ms, Some(3_238_000));
    assert!(w[0].reason.contains("needs ~3838"), "{}", w[0].reason);
    // A deny-rate delta of 0 at 10% on both sides: the count from which
    // Newcombe's interval is inside ±0.02, the stable cohort growing 19:1.
    let w = waits(
        &[reading(Gate::MaxDenyRateDelta, 0.02)],
        &obs,
        Duration::from_secs(600),
    );
    let n = w[0].needed.unwrap();
    let at = |m: u64| within(0.02, newcombe_diff(m / 10, m, 19 * m / 10, 19 * m, Z95));
    assert!(n > 600 && at(n) == Verdict::Pass, "{n}");
    // At or past its limit, a gate has no count that passes.
    let errors = Observation {
        candidate: cohort(600, 6, 0),
        ..obs.clone()
    };
    let w = waits(
        &[reading(Gate::MaxErrorRate, 0.01)],
        &errors,
        Duration::from_secs(60),
    );
    assert_eq!(w[0].needed, None);
    assert!(w[0].reason.contains("does not pass"), "{}", w[0].reason);
    // Passing gates wait for nothing.
    let mut pass = reading(Gate::MaxErrorRate, 0.5);
    pass.verdict = Verdict::Pass;
    assert!(waits(&[pass], &obs, Duration::from_secs(1)).is_empty());
}

mod stage {
    use std::time::Duration;

    use sluice::api::replay::ReplayReport;
    use sluice::model::plan::{Gates, RollbackTriggers, Stage, StageKind};
    use sluice::rollout::gate::Verdict;
    use sluice::rollout::stage::{
        Cohort, MIN_FAIL_SAMPLES, Observation, Quantile, Step, decide, decide_replay,
    };

    fn canary() -> Stage {
        Stage {
            name: "canary".into(),
            kind: StageKind::Split,
            percent: Some(5),
            matches: Default::default(),
            min_duration: Some(Duration::from_secs(1800)),
            max_duration: Some(Duration::from_secs(7200)),
            min_samples: Some(500),
            gates: Gates {
                max_error_rate: Some(0.001),
                max_deny_rate_delta: Some(0.02),
                max_latency_p99_delta_ms: Some(5.0),
                ..Gates::default()
            },
        }
    }

    fn triggers() -> RollbackTriggers {
        RollbackTriggers {
            error_rate: Some(0.01),
            deny_rate_delta: Some(0.15),
            latency_p99_ms: Some(100.0),
        }
    }

    fn cohort(requests: u64, errors: u64, denies: u64, p99: f64) -> Cohort {
        Cohort {
            requests,
            errors,
            denies,
            p99_ms: Some(Quantile {
                estimate: p99,
                lo: p99 - 0.2,
                hi: p99 + 0.2,
            }),
        }
    }

    fn obs(c: Cohort, s: Cohort) -> Observation {
        Observation {
            candidate: c,
            stable: s,
            compared: 0,
            diverged: 0,
            agents: Vec::new(),
        }
    }

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn waits_for_min_duration_even_with_good_data() {
        let d = decide(
            &canary(),
            &triggers(),
            10 * MIN,
            &obs(cohort(5000, 0, 120, 2.0), cohort(5000, 0, 100, 2.0)),
        );
        assert_eq!(d.step, Step::Wait);
        assert_eq!(d.time_left, 20 * MIN);
        assert_eq!(d.samples_left, 0);
    }

    #[test]
    fn waits_for_min_samples() {
        let d = decide(
            &canary(),
            &triggers(),
            40 * MIN,
            &obs(cohort(200, 0, 4, 2.0), cohort(200, 0, 4, 2.0)),
        );
        assert_eq!(d.step, Step::Wait);
        assert_eq!(d.samples_left, 300);
    }

    #[test]
    fn advances_when_every_gate_passes() {
        let d = decide(
            &canary(),
            &triggers(),
            31 * MIN,
            &obs(cohort(5000, 0, 120, 2.0), cohort(5000, 0, 100, 2.0)),
        );
        assert_eq!(d.step, Step::Advance, "{d:#?}");
        assert_eq!(d.readings.len(), 3);
    }

    #[test]
    fn a_failing_gate_rolls_back_before_min_duration() {
        let d = decide(
            &canary(),
            &triggers(),
            5 * MIN,
            &obs(cohort(1000, 0, 400, 2.0), cohort(1000, 0, 300, 2.0)),
        );
        let Step::Rollback { trigger } = &d.step else {
            panic!("{d:#?}")
        };
        assert!(trigger.starts_with("gate max_deny_rate_delta"), "{trigger}");
    }

    #[test]
    fn a_gate_does_not_fail_before_min_samples() {
        // One denied request of three against stable's 2%: the lower bound
        // of the delta (about 0.07) is past the 0.02 gate, but three
        // requests are not evidence enough to fail on.
        let early = decide(
            &canary(),
            &triggers(),
            MIN,
            &obs(cohort(3, 0, 1, 2.0), cohort(5000, 0, 100, 2.0)),
        );
        assert_eq!(early.step, Step::Wait, "{early:#?}");
        let gate = early
            .readings
            .iter()
            .find(|r| r.gate.as_str() == "max_deny_rate_delta")
            .unwrap();
        assert!(gate.interval.lo > 0.02, "{gate:#?}");
        assert_eq!(gate.verdict, Verdict::Wait);
        // 12% denied on min_samples requests fails the gate (not the 0.15
        // trigger), before min_duration.
        let enough = decide(
            &canary(),
            &triggers(),
            MIN,
            &obs(cohort(501, 0, 60, 2.0), cohort(5000, 0, 100, 2.0)),
        );
        let Step::Rollback { trigger } = &enough.step else {
            panic!("{enough:#?}")
        };
        assert!(trigger.starts_with("gate max_deny_rate_delta"), "{trigger}");
    }

    #[test]
    fn a_trigger_needs_the_sample_floor() {
        // Every one of the first requests denied: the trigger's lower bound
        // is past 0.15 long before the floor, and it fires at the floor.
        let below = MIN_FAIL_SAMPLES - 1;
        let d = decide(
            &canary(),
            &triggers(),
            MIN,
            &obs(cohort(below, 0, below, 2.0), cohort(5000, 0, 100, 2.0)),
        );
        assert_eq!(d.step, Step::Wait, "{d:#?}");
        assert!(d.triggers.iter().all(|t| t.verdict != Verdict::Fail));
        let at = MIN_FAIL_SAMPLES;
        let d = decide(
            &canary(),
            &triggers(),
            MIN,
            &obs(cohort(at, 0, at, 2.0), cohort(5000, 0, 100, 2.0)),
        );
        let Step::Rollback { trigger } = &d.step else {
            panic!("{d:#?}")
        };
        assert!(trigger.starts_with("trigger deny_rate_delta"), "{trigger}");
    }

    #[test]
    fn a_trigger_uses_the_lower_bound() {
        // 1 error in 500 (0.2%): neither the 0.1% gate nor the 1% trigger is
        // clearly past (lower bound 0.035%): no rollback.
        let noisy = decide(
            &canary(),
            &triggers(),
            5 * MIN,
            &obs(cohort(500, 1, 10, 2.0), cohort(500, 0, 10, 2.0)),
        );
        assert_eq!(noisy.step, Step::Wait, "{noisy:#?}");
        // 50 errors in 500: the trigger's lower bound (7.7%) is past 1%.
        let bad = decide(
            &canary(),
            &triggers(),
            5 * MIN,
            &obs(cohort(500, 50, 10, 2.0), cohort(500, 0, 10, 2.0)),
        );
        let Step::Rollback { trigger } = &bad.step else {
            panic!("{bad:#?}")
        };
        assert!(trigger.starts_with("trigger error_rate"), "{trigger}");
    }

    #[test]
    fn latency_trigger_and_gate() {
        let d = decide(
            &canary(),
            &triggers(),
            5 * MIN,
            &obs(cohort(500, 0, 10, 150.0), cohort(500, 0, 10, 2.0)),
        );
        let Step::Rollback { trigger } = &d.step else {
            panic!("{d:#?}")
        };
        assert!(trigger.starts_with("trigger latency_p99_ms"), "{trigger}");
        let d = decide(
            &canary(),
            &triggers(),
            40 * MIN,
            &obs(cohort(5000, 0, 100, 9.0), cohort(5000, 0, 100, 2.0)),
        );
        let Step::Rollback { trigger } = &d.step else {
            panic!("{d:#?}")
        };
        assert!(
            trigger.starts_with("gate max_latency_p99_delta_ms"),
            "{trigger}"
        );
    }

    #[test]
    fn pauses_after_max_duration_when_still_unsure() {
        let d = decide(
            &canary(),
            &triggers(),
            121 * MIN,
            &obs(cohort(1000, 0, 30, 2.0), cohort(1000, 0, 20, 2.0)),
        );
        let Step::Pause { reason } = &d.step else {
            panic!("{d:#?}")
        };
        assert!(
            reason.contains("max_error_rate") && reason.contains("max_deny_rate_delta"),
            "{reason}"
        );
    }

    #[test]
    fn shadow_divergence_gate() {
        let mut shadow = canary();
        shadow.kind = StageKind::Shadow;
        shadow.percent = None;
        shadow.gates = sluice::model::plan::Gates {
            max_divergence: Some(0.02),
            ..Default::default()
        };
        let mut o = obs(cohort(5000, 0, 100, 2.0), cohort(5000, 0, 100, 2.0));
        o.compared = 5000;
        o.diverged = 10;
        assert_eq!(
            decide(&shadow, &triggers(), 31 * MIN, &o).step,
            Step::Advance
        );
        o.diverged = 500;
        assert!(matches!(
            decide(&shadow, &triggers(), 31 * MIN, &o).step,
            Step::Rollback { .. }
        ));
    }

    /// `max_cost_ratio`: an agent whose envelope is 144,000 calls a day
    /// (1000 per 10 minutes) is expected to make 200 calls in a 20% canary
    /// cohort over 10 minutes, 1000 in shadow.
    mod cost {
        use super::*;
        use sluice::api::gate::{AgentCalls, Gate};

        fn stage(kind: StageKind, percent: Option<u32>) -> Stage {
            Stage {
                name: "canary".into(),
                kind,
                percent,
                matches: Default::default(),
                min_duration: Some(10 * MIN),
                max_duration: Some(60 * MIN),
                min_samples: Some(100),
                gates: Gates {
                    max_cost_ratio: Some(1.2),
                    ..Gates::default()
                },
            }
        }

        fn calls(agent: &str, calls: u64, calls_per_day: u64) -> AgentCalls {
            AgentCalls {
                agent: agent.into(),
                calls,
                calls_per_day,
            }
        }

        fn with(agents: Vec<AgentCalls>) -> Observation {
            Observation {
                agents,
                ..obs(cohort(5000, 0, 0, 2.0), cohort(20_000, 0, 0, 2.0))
            }
        }

        const PER_DAY: u64 = 144_000; // 1000 per 10 minutes

        #[test]
        fn within_the_envelope_advances_past_it_rolls_back() {
            let canary = stage(StageKind::Split, Some(20));
            // 20% of an agent's 1000 calls per 10 minutes: 200 expected.
            let d = decide(
                &canary,
                &triggers(),
                10 * MIN,
                &with(vec![calls("a", 190, PER_DAY)]),
            );
            assert_eq!(d.step, Step::Advance, "{d:#?}");
            let r = &d.readings[0];
            assert_eq!(r.gate, Gate::MaxCostRatio);
            assert!((r.estimate - 0.95).abs() < 1e-9, "{r:?}");
            assert_eq!(r.subject.as_deref(), Some("a"));
            // Twice the envelope: the lower bound is past 1.2.
            let d = decide(
                &canary,
                &triggers(),
                10 * MIN,
                &with(vec![calls("a", 190, PER_DAY), calls("b", 400, PER_DAY)]),
            );
            let Step::Rollback { trigger } = &d.step else {
                panic!("{d:#?}")
            };
            assert!(trigger.contains("max_cost_ratio of `b`"), "{trigger}");
            assert!((d.readings[0].estimate - 2.0).abs() < 1e-9);
            // Near the limit, the interval straddles it: wait.
            let d = decide(
                &canary,
                &triggers(),
                10 * MIN,
                &with(vec![calls("a", 240, PER_DAY)]),
            );
            assert_eq!(d.step, Step::Wait, "{d:#?}");
            assert_eq!(d.readings[0].verdict, Verdict::Wait);
        }

        #[test]
        fn the_share_is_the_stage_s_percent_or_all_in_shadow() {
            // 1000 calls in 10 minutes: the whole envelope in shadow, five
            // times it for a 20% cohort.
            let o = with(vec![calls("a", 1000, PER_DAY)]);
            let shadow = stage(StageKind::Shadow, None);
            let d = decide(&shadow, &triggers(), 10 * MIN, &o);
            assert!((d.readings[0].estimate - 1.0).abs() < 1e-9, "{d:#?}");
            assert_eq!(d.step, Step::Advance);
            let d = decide(
                &stage(StageKind::Split, Some(20)),
                &triggers(),
                10 * MIN,
                &o,
            );
            assert!((d.readings[0].estimate - 5.0).abs() < 1e-9, "{d:#?}");
            assert!(matches!(d.step, Step::Rollback { .. }));
        }

        #[test]
        fn no_agent_read_waits_never_passes() {
            let canary = stage(StageKind::Split, Some(20));
            // No inventoried agent called in the cohort (or none has an
            // envelope): nothing to judge the cost by.
            for o in [with(Vec::new()), with(vec![calls("a", 0, PER_DAY)])] {
                let d = decide(&canary, &triggers(), 10 * MIN, &o);
                assert_eq!(d.step, Step::Wait, "{d:#?}");
                assert_eq!(d.readings[0].verdict, Verdict::Wait);
                assert_eq!(d.readings[0].subject, None);
            }
            // ... and pauses for an operator after max_duration.
            let d = decide(&canary, &triggers(), 61 * MIN, &with(Vec::new()));
            assert!(matches!(d.step, Step::Pause { .. }), "{d:#?}");
            // A 0% split sees no candidate traffic: no share to project by.
            let d = decide(
                &stage(StageKind::Split, Some(0)),
                &triggers(),
                10 * MIN,
                &with(vec![calls("a", 5, PER_DAY)]),
            );
            assert_eq!(d.readings[0].verdict, Verdict::Wait);
        }

        #[test]
        fn a_passing_agent_does_not_hide_a_waiting_one() {
            // `a` passes, `b` is too close to call: the gate waits, and
            // shows `b`, the one with the highest upper bound.
            let d = decide(
                &stage(StageKind::Split, Some(20)),
                &triggers(),
                10 * MIN,
                &with(vec![calls("a", 100, PER_DAY), calls("b", 230, PER_DAY)]),
            );
            assert_eq!(d.step, Step::Wait, "{d:#?}");
            assert_eq!(d.readings[0].subject.as_deref(), Some("b"));
        }
    }

    #[test]
    fn replay_passes_or_fails_at_once() {
        let replay = Stage {
            name: "replay".into(),
            kind: StageKind::Replay,
            percent: None,
            matches: Default::default(),
            min_duration: None,
            max_duration: None,
            min_samples: None,
            gates: sluice::model::plan::Gates {
                max_catastrophic: Some(0),
                max_false_positive_rate: Some(0.01),
                ..Default::default()
            },
        };
        let mut report = ReplayReport {
            cases: 100,
            passed: 100,
            expected_permissive: 50,
            ..Default::default()
        };
        assert_eq!(decide_replay(&replay, &report.totals()).step, Step::Advance);
        report.catastrophic = 1;
        let Step::Rollback { trigger } = decide_replay(&replay, &report.totals()).step else {
            panic!()
        };
        assert!(trigger.contains("max_catastrophic"), "{trigger}");
        report.catastrophic = 0;
        report.false_positives = 1; // 1 of 50 = 2% > 1%
        assert!(matches!(
            decide_replay(&replay, &report.totals()).step,
            Step::Rollback { .. }
        ));
    }
}
