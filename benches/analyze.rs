//! Conflict-analysis benchmark.
//!
//! 1. Full checks: `analyze::analyze` on generated sets of N policies × 10
//!    rules with planted conflicts (`benches/support/conflicts.rs`), for
//!    N = 100, 1,000 and 5,000. Each size is parsed and type-checked once,
//!    then analysed several times; the report gives the median, the fastest
//!    and the slowest run, and the first run apart (it compiles the regex
//!    automata, later runs take them from the process-wide cache). Before
//!    timing, the first run must find every planted conflict and nothing
//!    else.
//! 2. The pull-request check: a git repository (`benches/support/pr_repo.rs`)
//!    whose base commit holds N = 1,000 generated policies and whose head
//!    commit changes one, planting one new conflict. Timed as `sluice check
//!    --base HEAD~1 --head HEAD` does it — both revisions read from the
//!    object database, checked, the change analysed, compared — and, for
//!    reference, with both revisions analysed in full. Before timing, both
//!    must report exactly the planted conflict.
//!
//! Environment: `SLUICE_BENCH_SIZES` (default `100,1000,5000,10000`),
//! `SLUICE_BENCH_RUNS` (default 5; 3 above 2,000 policies),
//! `SLUICE_BENCH_THREADS` (default 2), `SLUICE_BENCH_PR_SIZE` (default
//! `1000,10000`; 0 skips the pull-request check; each timed with the
//! decision diff and, as the same run's baseline, without it),
//! `SLUICE_BENCH_PR_REPO` (where to write its repositories, `<path>-<N>`,
//! kept for timing the binary; default a temporary folder). A timing harness of its own (`harness = false`): one run takes
//! seconds, criterion's sampling would take an hour.

#![expect(
    clippy::indexing_slicing,
    reason = "a test or benchmark that cannot go on fails by panicking"
)]

#[path = "support/conflicts.rs"]
mod conflicts;
#[path = "support/pr_repo.rs"]
mod pr_repo;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use sluice::analyze::{self, Options, Report};
use sluice::diagnostic::{Finding, identity};
use sluice::model::ir::PolicySet;
use sluice::pipeline::{self, Checked};
use sluice::project::Project;
use sluice::review::base::{Side, label, version_changes};
use sluice::review::{self, ChangeAnalysis};
use sluice::source::SourceFile;
use sluice::tree::git::GitRepo;

fn env_list(name: &str, default: &[usize]) -> Vec<usize> {
    std::env::var(name)
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| default.to_vec())
}

fn typed(g: &conflicts::Generated) -> Result<(Project, PolicySet), String> {
    let toml = SourceFile::new("sluice.toml", g.toml.as_str());
    let project = sluice::project::parse(&toml).map_err(|e| format!("{e:?}"))?;
    let mut parsed = Vec::new();
    for (name, text) in &g.files {
        let f = SourceFile::new(name.as_str(), text.as_str());
        let p = sluice::parse::parse_policy(&f).map_err(|e| format!("{name}: {e:?}"))?;
        parsed.push((f, p));
    }
    let out = sluice::check::check(&parsed, &project.schema);
    let set = out
        .checked
        .as_ref()
        .map(sluice::compile::lower)
        .ok_or_else(|| format!("the generated set has errors: {:?}", out.findings))?;
    Ok((project, set))
}

/// The `policy.rule` of each label of a finding.
fn rules_of(f: &Finding) -> Vec<String> {
    f.labels
        .iter()
        .map(|l| {
            format!(
                "{}.{}",
                l.policy.as_deref().unwrap_or(""),
                l.rule.as_deref().unwrap_or("")
            )
        })
        .collect()
}

/// The planted conflicts the report misses, and how many findings nothing
/// planted.
fn compare(g: &conflicts::Generated, report: &Report) -> (Vec<String>, usize) {
    let found: Vec<(&str, Vec<String>)> = report
        .findings
        .iter()
        .map(|f| (f.code.as_str(), rules_of(f)))
        .collect();
    let missed: Vec<String> = g
        .planted
        .iter()
        .filter(|p| {
            !found
                .iter()
                .any(|(code, rules)| *code == p.code && p.rules.iter().all(|r| rules.contains(r)))
        })
        .map(|p| format!("{} {:?}", p.code, p.rules))
        .collect();
    let extra = found.len().saturating_sub(g.planted.len() - missed.len());
    (missed, extra)
}

/// 1,000 rules on one tool: 500 allows and 500 denies, each `ends_with` a
/// suffix of its own (no overlap, nothing to report). Every pair shares the
/// tool; the suffix summaries must keep the 250,000 pairs from the solver.
fn one_tool(quick: bool, opts: &Options) {
    let each = if quick { 20 } else { 500 };
    let mut g = conflicts::generate(2);
    let mut app = String::from("policy onetool_app version 1.0.0 {\n");
    let mut guard = String::from("policy onetool_guard version 1.0.0 {\n");
    for i in 0..each {
        app.push_str(&format!(
            "  rule a{i} {{\n    when tool == \"files.write\" and args.body ends_with \".a{i}\"\n    allow\n  }}\n"
        ));
        guard.push_str(&format!(
            "  rule d{i} {{\n    when tool == \"files.write\" and args.body ends_with \".d{i}\"\n    deny D \"d\"\n  }}\n"
        ));
    }
    app.push_str("}\n");
    guard.push_str("}\n");
    g.files = vec![
        ("policies/onetool_app.policy".to_string(), app),
        ("policies/onetool_guard.policy".to_string(), guard),
    ];
    let (project, set) = match typed(&g) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("one tool: {e}");
            std::process::exit(1);
        }
    };
    let runs = if quick { 1 } else { 5 };
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        let report = analyze::analyze(&set, &project.schema, project.default, opts);
        times.push(t.elapsed().as_secs_f64());
        last = Some(report);
    }
    let Some(report) = last else { return };
    if !report.findings.is_empty() {
        eprintln!("one tool: {} unexpected finding(s)", report.findings.len());
        std::process::exit(1);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{} rules on one tool (ends_with): median {:.3} s (min {:.3}, max {:.3}), {} queries, {} pairs, {} pruned",
        set.rule_count(),
        times.get(times.len() / 2).copied().unwrap_or(0.0),
        times.first().copied().unwrap_or(0.0),
        times.last().copied().unwrap_or(0.0),
        report.stats.queries,
        report.stats.pairs,
        report.stats.pruned
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing
    // of the kind and expects a quick run.
    let quick = !std::env::args().any(|a| a == "--bench");
    let sizes = if quick {
        vec![20]
    } else {
        env_list("SLUICE_BENCH_SIZES", &[100, 1_000, 5_000, 10_000])
    };
    let threads = env_list("SLUICE_BENCH_THREADS", &[2])
        .first()
        .copied()
        .unwrap_or(2);
    let opts = Options {
        threads,
        ..Options::default()
    };
    println!(
        "conflict analysis, {threads} thread(s), {} core(s), Z3 {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        z3::full_version()
    );
    println!(
        "{:>6} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>7} {:>7} {:>8}",
        "N",
        "rules",
        "first s",
        "median s",
        "min s",
        "max s",
        "check s",
        "queries",
        "pairs",
        "pruned",
        "planted"
    );
    let mut phases = Vec::new();
    let mut medians = Vec::new();
    for n in sizes {
        let runs = if quick {
            1
        } else {
            env_list("SLUICE_BENCH_RUNS", &[if n > 2_000 { 3 } else { 5 }])
                .first()
                .copied()
                .unwrap_or(5)
        };
        let g = conflicts::generate(n);
        let started = Instant::now();
        let (project, set) = match typed(&g) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("N = {n}: {e}");
                std::process::exit(1);
            }
        };
        let check_s = started.elapsed().as_secs_f64();
        let mut times = Vec::new();
        let mut first: Option<Report> = None;
        for _ in 0..runs {
            let t = Instant::now();
            let report = analyze::analyze(&set, &project.schema, project.default, &opts);
            times.push(t.elapsed().as_secs_f64());
            if first.is_none() {
                first = Some(report);
            }
        }
        let Some(report) = first else { continue };
        let (missed, extra) = compare(&g, &report);
        if !missed.is_empty() || extra > 0 {
            eprintln!("N = {n}: missed {missed:?}, {extra} finding(s) nothing planted");
            std::process::exit(1);
        }
        let first_s = times.first().copied().unwrap_or(0.0);
        let mut sorted = times.clone();
        sorted.sort_by(f64::total_cmp);
        let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
        let min = sorted.first().copied().unwrap_or(0.0);
        let max = sorted.last().copied().unwrap_or(0.0);
        medians.push((n, median));
        let st = &report.stats;
        phases.push(format!(
            "N = {n}, first run: plan {:.3} s, solve {:.3} s, replay {:.3} s",
            st.plan_seconds, st.solve_seconds, st.replay_seconds
        ));
        println!(
            "{:>6} {:>7} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>8} {:>7} {:>7} {:>8}",
            n,
            set.rule_count(),
            first_s,
            median,
            min,
            max,
            check_s,
            report.stats.queries,
            report.stats.pairs,
            report.stats.pruned,
            g.planted.len()
        );
    }
    for p in phases {
        println!("{p}");
    }
    for pair in medians.windows(2) {
        if let [(n1, t1), (n2, t2)] = pair
            && *t1 > 0.0
        {
            println!(
                "growth N = {n1} → {n2} ({:.1}× the policies): {:.2}× the median time",
                *n2 as f64 / *n1 as f64,
                t2 / t1
            );
        }
    }

    one_tool(quick, &opts);

    let pr_sizes = if quick {
        vec![20]
    } else {
        env_list("SLUICE_BENCH_PR_SIZE", &[1_000, 10_000])
    };
    for pr_size in pr_sizes.into_iter().filter(|n| *n > 0) {
        let runs = if quick {
            1
        } else {
            env_list("SLUICE_BENCH_RUNS", &[5])
                .first()
                .copied()
                .unwrap_or(5)
        };
        if let Err(e) = pull_request_bench(pr_size, runs, &opts) {
            eprintln!("pull-request check, N = {pr_size}: {e}");
            std::process::exit(1);
        }
    }
}

// ---------------------------------------------------------------------------
// The pull-request check.

/// Seconds spent in each phase of one pull-request check.
#[derive(Debug, Clone, Copy, Default)]
struct PrTimes {
    read: f64,
    check: f64,
    analyse: f64,
    total: f64,
}

/// One pull-request check of `HEAD` against `HEAD~1` in the repository at
/// `dir`, as `sluice check --base HEAD~1 --head HEAD` runs it; `incremental:
/// false` analyses both revisions in full instead.
fn pr_check(
    dir: &Path,
    incremental: bool,
    opts: &Options,
) -> Result<(Vec<Finding>, Option<ChangeAnalysis>, PrTimes), String> {
    let t = Instant::now();
    let git = GitRepo::open(dir).map_err(|e| e.to_string())?;
    let head = git.load("HEAD").map_err(|e| e.to_string())?.sources;
    let base = git.load("HEAD~1").map_err(|e| e.to_string())?.sources;
    let read = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut h = pipeline::check_unanalysed(&head.project, &head.policies);
    let mut b = pipeline::check_unanalysed_sharing(&base.project, &base.policies, &h);
    let check = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let (findings, analysis) = if incremental {
        let pr = review::pull_request(&mut b, &mut h, opts);
        (pr.findings, Some(pr.analysis))
    } else {
        b.analyze(opts);
        h.analyze(opts);
        fn side(c: &Checked) -> Side<'_> {
            Side {
                parsed: &c.parsed,
                schema: c.project.as_ref().map(|p| &p.schema),
            }
        }
        let mut f = label(&b.findings, h.findings.clone());
        f.extend(version_changes(side(&b), side(&h)));
        (f, None)
    };
    let analyse = t.elapsed().as_secs_f64();
    let times = PrTimes {
        read,
        check,
        analyse,
        total: read + check + analyse,
    };
    Ok((findings, analysis, times))
}

/// Whether the repository outlives the benchmark (written where
/// `SLUICE_BENCH_PR_REPO` says).
fn tmp_kept(dir: &Path) -> bool {
    let _ = dir;
    std::env::var_os("SLUICE_BENCH_PR_REPO").is_some()
}

fn median_by(runs: &[PrTimes], f: impl Fn(&PrTimes) -> f64) -> f64 {
    let mut v: Vec<f64> = runs.iter().map(f).collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn pull_request_bench(n: usize, runs: usize, opts: &Options) -> Result<(), String> {
    let g = conflicts::generate(n);
    let tmp;
    let dir: PathBuf = match std::env::var_os("SLUICE_BENCH_PR_REPO") {
        // One repository per size: `<SLUICE_BENCH_PR_REPO>-<N>`.
        Some(p) => PathBuf::from(format!("{}-{n}", p.to_string_lossy())),
        None => {
            tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
            tmp.path().join("policy")
        }
    };
    if dir.exists() {
        return Err(format!(
            "`{}` already exists: remove it, the benchmark writes a new repository there",
            dir.display()
        ));
    }
    let change = pr_repo::write(&dir, &g)?;
    // Both ways must report the same findings: every error of the head (the
    // generated set's planted conflicts among them) and, as new, exactly the
    // planted change.
    let base_ids: HashSet<String> = {
        let git = GitRepo::open(&dir).map_err(|e| e.to_string())?;
        let base = git.load("HEAD~1").map_err(|e| e.to_string())?.sources;
        let checked = pipeline::check_sources(&base.project, &base.policies);
        checked.findings.iter().map(identity).collect()
    };
    // Labels as a set: the pull-request check puts the changed rule first.
    let sorted = |mut r: Vec<String>| {
        r.sort();
        r.join(" ")
    };
    let expected = vec![format!("{} {}", change.code, sorted(change.rules.clone()))];
    let mut reported = Vec::new();
    for incremental in [true, false] {
        let (findings, _, _) = pr_check(&dir, incremental, opts)?;
        // What the change does to decisions is reported beside.
        let got: Vec<String> = findings
            .iter()
            .filter(|f| f.code.family() != "change")
            .filter(|f| !base_ids.contains(&identity(f)))
            .map(|f| format!("{} {}", f.code, sorted(rules_of(f))))
            .collect();
        if got != expected {
            return Err(format!(
                "{} check reported {got:?} as new, expected {expected:?}",
                if incremental { "the" } else { "the full" }
            ));
        }
        let mut ids: Vec<String> = findings
            .iter()
            .filter(|f| f.code.family() != "change")
            .map(identity)
            .collect();
        ids.sort();
        reported.push(ids);
    }
    if reported.first() != reported.last() {
        return Err("the incremental and the full check differ".into());
    }
    // Timed in turns: incremental with the decision diff, without it,
    // full, incremental, …
    let without = Options {
        decisions: false,
        ..opts.clone()
    };
    let (mut inc, mut plain, mut full) = (Vec::new(), Vec::new(), Vec::new());
    let mut last = None;
    let mut changes = 0;
    for _ in 0..runs {
        let (findings, analysis, t) = pr_check(&dir, true, opts)?;
        inc.push(t);
        last = analysis;
        changes = findings
            .iter()
            .filter(|f| f.code.family() == "change")
            .count();
        plain.push(pr_check(&dir, true, &without)?.2);
        full.push(pr_check(&dir, false, &without)?.2);
    }
    println!();
    println!(
        "pull-request check: {n} policies, {} changed (one new conflict), HEAD~1 → HEAD read \
         from the object database; median of {runs} run(s)",
        change.policy
    );
    println!(
        "{:>22} {:>8} {:>8} {:>10} {:>8} {:>8} {:>8}",
        "", "read s", "check s", "analyse s", "total s", "min s", "max s"
    );
    for (what, t) in [
        ("with decision diff", &inc),
        ("without decision diff", &plain),
        ("two full analyses", &full),
    ] {
        println!(
            "{what:>22} {:>8.3} {:>8.3} {:>10.3} {:>8.3} {:>8.3} {:>8.3}",
            median_by(t, |x| x.read),
            median_by(t, |x| x.check),
            median_by(t, |x| x.analyse),
            median_by(t, |x| x.total),
            t.iter().map(|x| x.total).fold(f64::INFINITY, f64::min),
            t.iter().map(|x| x.total).fold(0.0, f64::max),
        );
    }
    println!("decision diff: {changes} change finding(s)");
    if let Some(ChangeAnalysis::Incremental {
        changed,
        base,
        head,
    }) = &last
    {
        println!(
            "incremental: {} rule(s) changed; solver jobs run: head {} (in full), base {} of {}; \
             queries: head {}, base {}",
            changed.len(),
            head.jobs - head.unchanged,
            base.jobs - base.unchanged,
            base.jobs,
            head.queries,
            base.queries
        );
    }
    if tmp_kept(&dir) {
        println!("repository: {}", dir.display());
    }
    Ok(())
}
