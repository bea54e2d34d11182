//! Conflict-analysis benchmark: full `analyze::analyze` on generated sets of
//! N policies × 10 rules with planted conflicts (`benches/support/conflicts.rs`),
//! for N = 100, 1,000 and 5,000.
//!
//! Each size is parsed and type-checked once, then analysed several times;
//! the report gives the median, the fastest and the slowest run, and the
//! first run apart (it compiles the regex automata, later runs take them
//! from the process-wide cache). Before timing, the first run must find every
//! planted conflict and nothing else.
//!
//! Environment: `SLUICE_BENCH_SIZES` (default `100,1000,5000`),
//! `SLUICE_BENCH_RUNS` (default 5; 3 above 2,000 policies),
//! `SLUICE_BENCH_THREADS` (default 2). A timing harness of its own
//! (`harness = false`): one run takes seconds, criterion's sampling would
//! take an hour.

#[path = "support/conflicts.rs"]
mod conflicts;

use std::time::Instant;

use sluice::analyze::{self, Options, Report};
use sluice::compile::ir::PolicySet;
use sluice::project::Project;
use sluice::source::SourceFile;

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
        .set
        .ok_or_else(|| format!("the generated set has errors: {:?}", out.findings))?;
    Ok((project, set))
}

/// The planted conflicts the report misses, and how many findings nothing
/// planted.
fn compare(g: &conflicts::Generated, report: &Report) -> (Vec<String>, usize) {
    let found: Vec<(&str, Vec<String>)> = report
        .findings
        .iter()
        .map(|f| {
            let rules = f
                .labels
                .iter()
                .map(|l| {
                    format!(
                        "{}.{}",
                        l.policy.as_deref().unwrap_or(""),
                        l.rule.as_deref().unwrap_or("")
                    )
                })
                .collect();
            (f.code, rules)
        })
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

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing
    // of the kind and expects a quick run.
    let quick = !std::env::args().any(|a| a == "--bench");
    let sizes = if quick {
        vec![20]
    } else {
        env_list("SLUICE_BENCH_SIZES", &[100, 1_000, 5_000])
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
}
