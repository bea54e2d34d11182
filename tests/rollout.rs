//! Rollout decisions. Gate statistics are checked against a reference
//! implementation: statsmodels 0.15 (`proportion_confint(method="wilson")` and
//! `confint_proportions_2indep(method="newcomb", compare="diff")`, alpha 0.05).

use sluice::rollout::gate::{Interval, Verdict, Z95, at_most, combine, newcombe_diff, quantile_bounds, wilson, within};

#[track_caller]
fn close(got: Interval, lo: f64, hi: f64) {
    assert!((got.lo - lo).abs() < 2e-6 && (got.hi - hi).abs() < 2e-6, "got {got:?}, want [{lo}, {hi}]");
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

#[test]
fn no_data_waits_never_passes() {
    assert_eq!(at_most(0.01, wilson(0, 0, Z95)), Verdict::Wait);
    assert_eq!(within(0.02, newcombe_diff(0, 0, 0, 0, Z95)), Verdict::Wait);
}

#[test]
fn gates_pass_fail_and_wait() {
    // 120/5000 vs 100/5000 denies: delta in [-0.0018, 0.0098], inside ±0.02.
    assert_eq!(within(0.02, newcombe_diff(120, 5000, 100, 5000, Z95)), Verdict::Pass);
    // 30/1000 vs 20/1000: upper bound 0.0243 is over 0.02, lower is under it.
    assert_eq!(within(0.02, newcombe_diff(30, 1000, 20, 1000, Z95)), Verdict::Wait);
    // 400/1000 vs 100/1000: clearly worse.
    assert_eq!(within(0.02, newcombe_diff(400, 1000, 100, 1000, Z95)), Verdict::Fail);
    // A candidate that denies far less is clearly different too.
    assert_eq!(within(0.02, newcombe_diff(100, 1000, 400, 1000, Z95)), Verdict::Fail);
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
    assert!((lo - 0.9880).abs() < 1e-4 && (hi - 0.9920).abs() < 1e-4, "{lo} {hi}");
    assert_eq!(quantile_bounds(0, 0.99, Z95), (0.0, 1.0));
    let (lo, hi) = quantile_bounds(50, 0.99, Z95);
    assert!(lo < 0.99 && hi == 1.0);
}
