//! Evaluation of one generated policy set by sluice, Cedar and regorus, in
//! one process: every engine must give the reference decision for every
//! request before anything is timed; then the engines are timed in turns
//! (run 1: each engine, run 2: each engine, …) so that the machine's noise
//! falls on all of them alike, and the median of the runs is reported.
//!
//! ```text
//! peers [--sets 2x10,100x10,1000x10] [--requests 1000] [--max-requests N] [--runs 7] [--ms 300]
//!       [--seed 42] [--interpreter-max-rules 1000] [--repo DIR | --no-repo]
//!       [--tsv FILE] [--write DIR]
//! ```
//!
//! - `--sets`: generated sets, `POLICIESxRULES` each;
//! - `--requests`: requests generated per set (all are checked);
//!   `--max-requests`: time on the first N only;
//! - `--runs`: timed runs per engine; one run walks the requests in order,
//!   as many times as fit in `--ms` milliseconds (at least once);
//! - `--interpreter-max-rules`: the regorus interpreter (about 0.1 s per
//!   request at 10,000 rules) only runs on sets up to this size;
//! - `--repo`: a policy repository (default: the starter repository
//!   `policies/`) on whose trace requests sluice is timed alone first (no
//!   peer has its policies);
//! - `--tsv`: write the medians to FILE; `--write`: write each set (sluice
//!   repository, Cedar, Rego, requests with their decisions) below DIR.

#[path = "../../support/gen.rs"]
mod generator;

#[path = "../../support/load.rs"]
mod load;

mod cedar;
mod rego;
mod sluice;

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use generator::Effect;

/// One engine under test, loaded with one set.
pub trait Engine {
    fn name(&self) -> String;
    /// The decision for pre-decoded request `i`: true for allow.
    fn eval(&mut self, i: usize) -> bool;
    /// Decodes request `i` from its JSON text, then evaluates it.
    fn decode_eval(&mut self, i: usize) -> bool;

    /// Evaluates requests `0..n` in order, `passes` times; returns the wall
    /// and on-CPU time per evaluation in nanoseconds. Dispatch is static
    /// inside the loop.
    fn time(&mut self, n: usize, passes: usize, decode: bool) -> (f64, Option<f64>) {
        let cpu = thread_cpu_ns();
        let start = Instant::now();
        for _ in 0..passes {
            for i in 0..n {
                let allow = if decode {
                    self.decode_eval(black_box(i))
                } else {
                    self.eval(black_box(i))
                };
                black_box(allow);
            }
        }
        let wall = start.elapsed().as_nanos() as f64;
        let cpu = cpu
            .zip(thread_cpu_ns())
            .map(|(a, b)| b.saturating_sub(a) as f64);
        let count = (n * passes) as f64;
        (wall / count, cpu.map(|c| c / count))
    }
}

/// The time this thread has spent on a CPU, in nanoseconds (Linux: the
/// scheduler's account in `/proc/thread-self/schedstat`, current to within
/// a scheduler tick). On a busy machine it leaves out the time the thread
/// waited for a core, which wall-clock time counts.
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

struct Options {
    sets: Vec<(usize, usize)>,
    requests: usize,
    runs: usize,
    target: Duration,
    seed: u64,
    /// The regorus interpreter runs on sets of at most this many rules (it
    /// takes about 0.1 s per request at 10,000).
    interpreter_max_rules: usize,
    /// A policy repository to time sluice alone on, with its traces.
    repo: Option<PathBuf>,
    /// Time on the first this many requests only (all are checked).
    max_requests: Option<usize>,
    tsv: Option<PathBuf>,
    write: Option<PathBuf>,
}

fn parse_args() -> Options {
    let mut o = Options {
        sets: vec![(2, 10), (100, 10), (1000, 10)],
        requests: 1000,
        runs: 7,
        target: Duration::from_millis(300),
        seed: 42,
        interpreter_max_rules: 1000,
        max_requests: None,
        repo: Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies")),
        tsv: None,
        write: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{a} needs a value")))
        };
        match a.as_str() {
            "--sets" => {
                o.sets = value()
                    .split(',')
                    .map(|s| {
                        let (p, r) = s.split_once('x').unwrap_or_else(|| usage("--sets PxR,…"));
                        (number(p), number(r))
                    })
                    .collect();
            }
            "--requests" => o.requests = number(&value()),
            "--max-requests" => o.max_requests = Some(number(&value())),
            "--repo" => o.repo = Some(value().into()),
            "--no-repo" => o.repo = None,
            "--runs" => o.runs = number(&value()).max(1),
            "--ms" => o.target = Duration::from_millis(number(&value()) as u64),
            "--seed" => o.seed = number(&value()) as u64,
            "--interpreter-max-rules" => o.interpreter_max_rules = number(&value()),
            "--tsv" => o.tsv = Some(value().into()),
            "--write" => o.write = Some(value().into()),
            "-h" | "--help" => usage(""),
            other => usage(&format!("unknown argument `{other}`")),
        }
    }
    o
}

fn number(s: &str) -> usize {
    s.trim()
        .parse()
        .unwrap_or_else(|_| usage(&format!("`{s}` is not a number")))
}

fn usage(msg: &str) -> ! {
    if !msg.is_empty() {
        eprintln!("error: {msg}");
    }
    eprintln!(
        "usage: peers [--sets 2x10,100x10,1000x10] [--requests 1000] [--max-requests N] [--runs 7] [--ms 300] \
         [--seed 42] [--interpreter-max-rules 1000] [--repo DIR | --no-repo] [--tsv FILE] [--write DIR]"
    );
    std::process::exit(2)
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The one-minute load average, when the system says.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_string())
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1_000_000.0 {
        format!("{:.2} ms", ns / 1_000_000.0)
    } else if ns >= 1_000.0 {
        format!("{:.2} µs", ns / 1_000.0)
    } else {
        format!("{ns:.0} ns")
    }
}

/// Per-run times of one engine, nanoseconds per evaluation.
#[derive(Default)]
struct Samples {
    wall: Vec<f64>,
    cpu: Vec<f64>,
}

impl Samples {
    fn push(&mut self, (wall, cpu): (f64, Option<f64>)) {
        self.wall.push(wall);
        self.cpu.extend(cpu);
    }

    fn wall(&self) -> Option<f64> {
        (!self.wall.is_empty()).then(|| median(&self.wall))
    }

    /// The on-CPU median, when every run has one.
    fn cpu(&self) -> Option<f64> {
        (!self.cpu.is_empty() && self.cpu.len() == self.wall.len()).then(|| median(&self.cpu))
    }

    /// What ratios and the summary use: on-CPU time when known.
    fn best(&self) -> Option<f64> {
        self.cpu().or(self.wall())
    }

    fn spread(&self) -> String {
        let v = if self.cpu().is_some() {
            &self.cpu
        } else {
            &self.wall
        };
        let min = v.iter().copied().fold(f64::INFINITY, f64::min);
        let max = v.iter().copied().fold(0.0, f64::max);
        format!("({} … {})", fmt_ns(min), fmt_ns(max))
    }
}

struct Loaded {
    engine: Box<dyn Engine>,
    load: Duration,
    /// Time of one pass over all requests during the agreement check.
    pass: Duration,
    requests: usize,
    eval: Samples,
    decode_eval: Samples,
}

/// Engines slower than this per evaluation are not timed with decoding:
/// decoding a request is well under 1% of their time.
const DECODE_TIMED_BELOW: Duration = Duration::from_micros(100);

impl Loaded {
    /// Time per evaluation during the agreement check, in seconds.
    fn per_eval(&self) -> f64 {
        self.pass.as_secs_f64() / self.requests as f64
    }

    fn timed_decode(&self) -> bool {
        self.per_eval() < DECODE_TIMED_BELOW.as_secs_f64()
    }
}

fn loaded(f: impl FnOnce() -> Box<dyn Engine>) -> Loaded {
    let start = Instant::now();
    let engine = f();
    Loaded {
        engine,
        load: start.elapsed(),
        pass: Duration::ZERO,
        requests: 1,
        eval: Samples::default(),
        decode_eval: Samples::default(),
    }
}

fn opt_ns(ns: Option<f64>) -> String {
    ns.map_or_else(|| "–".to_string(), fmt_ns)
}

fn opt_ratio(a: Option<f64>, b: Option<f64>) -> String {
    a.zip(b).map_or_else(
        || "–".to_string(),
        |(a, b)| {
            let r = a / b;
            if r >= 100.0 {
                format!("{r:.0}")
            } else {
                format!("{r:.1}")
            }
        },
    )
}

fn opt_tsv(ns: Option<f64>) -> String {
    ns.map_or_else(String::new, |v| format!("{v:.1}"))
}

/// Runs of `engines` (interleaved), each walking requests `0..m` for
/// about `target`.
fn time_runs(engines: &mut [Loaded], m: usize, runs: usize, target: Duration) {
    for _ in 0..runs {
        for l in engines.iter_mut() {
            let passes = (target.as_secs_f64() / (l.per_eval() * m as f64))
                .round()
                .max(1.0) as usize;
            let t = l.engine.time(m, passes, false);
            l.eval.push(t);
            if l.timed_decode() {
                let t = l.engine.time(m, passes, true);
                l.decode_eval.push(t);
            }
        }
    }
}

/// sluice alone on a policy repository's trace requests.
fn repository(o: &Options, root: &Path, tsv: &mut String) {
    let root = &root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    let start = Instant::now();
    let Some((engine, rules)) = sluice::Sluice::repository(root) else {
        println!(
            "\n== {}: not a policy repository with traces; skipped",
            root.display()
        );
        return;
    };
    let load = start.elapsed();
    let n = engine.len();
    println!(
        "\n== {}: {rules} rules and limits, {n} trace requests (each got its expected decision)",
        root.display()
    );
    let mut l = Loaded {
        load,
        ..loaded(|| Box::new(engine))
    };
    let start = Instant::now();
    for i in 0..n {
        black_box(l.engine.eval(i));
    }
    l.pass = start.elapsed();
    l.requests = n.max(1);
    let mut engines = [l];
    time_runs(&mut engines, n, o.runs, o.target);
    let l = &engines[0];
    println!(
        "sluice: eval median {} wall, {} on-CPU {}; decode+eval {}",
        opt_ns(l.eval.wall()),
        opt_ns(l.eval.cpu()),
        l.eval.spread(),
        opt_ns(l.decode_eval.best())
    );
    let _ = writeln!(
        tsv,
        "policies\t{rules}\tsluice\t{}\t{}\t{}\t{}\t{:.1}",
        opt_tsv(l.eval.wall()),
        opt_tsv(l.eval.cpu()),
        opt_tsv(l.decode_eval.wall()),
        opt_tsv(l.decode_eval.cpu()),
        l.load.as_secs_f64() * 1000.0
    );
}

fn main() {
    let o = parse_args();
    let mut tsv = String::from(
        "set\trules\tengine\teval_wall_ns\teval_cpu_ns\tdecode_eval_wall_ns\tdecode_eval_cpu_ns\tload_ms\n",
    );
    println!(
        "machine: {} cores, load average {}; {} requests per set, seed {}, median of {} runs",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average(),
        o.requests,
        o.seed,
        o.runs
    );
    if let Some(root) = &o.repo {
        repository(&o, root, &mut tsv);
    }
    for &(np, nr) in &o.sets {
        let set = generator::generate(np, nr, o.requests, o.seed);
        if let Some(dir) = &o.write {
            set.write_to(&dir.join(format!("{np}x{nr}")))
                .expect("write the generated set");
        }
        let mix = set.mix();
        println!();
        println!(
            "== {np} policies × {nr} rules = {} rules; requests: {} built to match a deny, \
             {} to match an allow, {} matching nothing; reference: {} allow, {} deny",
            set.rule_count(),
            mix.match_deny,
            mix.match_allow,
            mix.no_match,
            mix.final_allow,
            mix.final_deny
        );

        // sluice first: the ratios are against it.
        let mut engines: Vec<Loaded> = vec![
            loaded(|| Box::new(sluice::Sluice::new(&set))),
            loaded(|| Box::new(cedar::Cedar::new(&set))),
            loaded(|| Box::new(rego::Rvm::new(&set))),
        ];
        if set.rule_count() <= o.interpreter_max_rules {
            engines.push(loaded(|| Box::new(rego::Interpreter::new(&set))));
        }

        // Agreement first: every engine gives the reference decision for
        // every request, pre-decoded; and decoded from JSON, for every
        // request (fast engines) or the first 50 (slow ones, whose
        // decode+eval is not timed).
        let expected: Vec<bool> = set
            .requests
            .iter()
            .map(|r| set.decide(r) == Effect::Allow)
            .collect();
        let n = expected.len();
        for l in &mut engines {
            let start = Instant::now();
            for (i, &want) in expected.iter().enumerate() {
                let got = l.engine.eval(i);
                assert_eq!(
                    got,
                    want,
                    "{} disagrees with the reference on request {i}: {}",
                    l.engine.name(),
                    set.requests[i].to_json()
                );
            }
            l.pass = start.elapsed();
            l.requests = n.max(1);
            let decoded = if l.timed_decode() { n } else { n.min(50) };
            for (i, &want) in expected.iter().enumerate().take(decoded) {
                assert_eq!(
                    l.engine.decode_eval(i),
                    want,
                    "{} (decoding) disagrees with the reference on request {i}",
                    l.engine.name()
                );
            }
        }
        println!(
            "agreement: {} engines × {n} requests give the reference decision",
            engines.len(),
        );

        // Every engine is timed on the same requests: all of them (or the
        // first `--max-requests`), in the order generated.
        let m = o.max_requests.map_or(n, |k| k.clamp(1, n));
        if m < n {
            println!("timing on the first {m} requests");
        }
        time_runs(&mut engines, m, o.runs, o.target);

        let (base, base_decode) = (engines[0].eval.best(), engines[0].decode_eval.best());
        let mut table = String::new();
        let _ = writeln!(
            table,
            "{:<24} {:>8} {:>10} {:>10} {:>22} {:>9} {:>12} {:>9}",
            "engine",
            "load",
            "eval wall",
            "eval cpu",
            "(min … max)",
            "× sluice",
            "decode+eval",
            "× sluice"
        );
        for l in &engines {
            let _ = writeln!(
                table,
                "{:<24} {:>8} {:>10} {:>10} {:>22} {:>9} {:>12} {:>9}",
                l.engine.name(),
                format!("{:.0} ms", l.load.as_secs_f64() * 1000.0),
                opt_ns(l.eval.wall()),
                opt_ns(l.eval.cpu()),
                l.eval.spread(),
                opt_ratio(l.eval.best(), base),
                opt_ns(l.decode_eval.best()),
                opt_ratio(l.decode_eval.best(), base_decode),
            );
            let _ = writeln!(
                tsv,
                "{np}x{nr}\t{}\t{}\t{}\t{}\t{}\t{}\t{:.1}",
                set.rule_count(),
                l.engine.name(),
                opt_tsv(l.eval.wall()),
                opt_tsv(l.eval.cpu()),
                opt_tsv(l.decode_eval.wall()),
                opt_tsv(l.decode_eval.cpu()),
                l.load.as_secs_f64() * 1000.0
            );
        }
        print!("{table}");
        let ratio = |prefix: &str| {
            engines
                .iter()
                .find(|l| l.engine.name().starts_with(prefix))
                .map_or_else(|| "–".to_string(), |l| opt_ratio(l.eval.best(), base))
        };
        println!(
            "sluice: median {} per evaluation ({}); {}× faster than Cedar, {}× faster than the regorus RVM",
            opt_ns(base),
            if engines[0].eval.cpu().is_some() {
                "on-CPU time; ratios too"
            } else {
                "wall-clock time"
            },
            ratio("cedar"),
            ratio("regorus RVM")
        );
    }
    if let Some(path) = &o.tsv {
        std::fs::write(path, tsv).expect("write the TSV file");
    }
}
