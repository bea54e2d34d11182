//! The demo's progress: the [`Progress`] trait the run reports to, the
//! live view it hands over a few times a second, the [`Console`] that
//! renders both on standard output (indicatif bars on a terminal, plain
//! lines elsewhere), and the words that narrate each transition of the
//! daemon.
//!
//! It only turns what the run tells it into text: it starts nothing, waits
//! on nothing, and reads the daemon's untyped figures only through
//! [`super::figures`].

use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use super::BRANCH;
use super::figures::{failed_triggers, gate_text, gates_of, has_gates, observed_of, revert_commit};
use super::traffic::TrafficFigures;
use crate::model::short;
use crate::reconcile::api::Status;
use crate::rollout::machine::Transition;

/// Receives the demo's progress as it happens.
pub trait Progress {
    /// A phase begins.
    fn phase(&mut self, title: &str);
    /// Something happened (a transition, a commit pushed, …): one line.
    fn event(&mut self, text: &str);
    /// The live figures, a few times a second.
    fn live(&mut self, view: &LiveView);
    /// The run is over: take down anything drawn.
    fn finish(&mut self);
}

/// What the live display shows.
#[derive(Debug, Clone, Default)]
pub struct LiveView {
    pub traffic: TrafficFigures,
    /// Requests per second, over the last two seconds.
    pub rate: f64,
    /// The stage in flight, if any.
    pub stage: Option<StageView>,
    /// What is waited for, when no stage is in flight.
    pub waiting: String,
}

/// The stage in flight, as the daemon's status shows it.
#[derive(Debug, Clone, Default)]
pub struct StageView {
    pub stage: String,
    /// `replay`, `shadow` or `split`.
    pub kind: String,
    /// 0-based.
    pub index: usize,
    pub count: usize,
    pub in_stage: Duration,
    pub min_duration: Option<Duration>,
    /// Candidate requests seen in this stage.
    pub samples: u64,
    pub min_samples: Option<u64>,
    /// Each gate, formatted.
    pub gates: Vec<String>,
}

/// How [`Console`] shows progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleMode {
    /// indicatif bars for the live figures, events printed above them.
    Live,
    /// Events as lines, and the live figures every two seconds.
    Plain,
    /// Nothing (the caller prints the summary).
    Quiet,
}

/// Progress on standard output: bars on a terminal, plain lines elsewhere.
pub struct Console {
    mode: ConsoleMode,
    multi: Option<indicatif::MultiProgress>,
    traffic: Option<indicatif::ProgressBar>,
    stage: Option<indicatif::ProgressBar>,
    staged: bool,
    last_plain: Option<Instant>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console").field("mode", &self.mode).finish()
    }
}

const PLAIN_EVERY: Duration = Duration::from_secs(2);

impl Console {
    /// `Live` falls back to `Plain` when standard output is not a terminal.
    pub fn new(mode: ConsoleMode) -> Console {
        let mode = if mode == ConsoleMode::Live && !std::io::stdout().is_terminal() {
            ConsoleMode::Plain
        } else {
            mode
        };
        let mut c = Console {
            mode,
            multi: None,
            traffic: None,
            stage: None,
            staged: false,
            last_plain: None,
        };
        if mode == ConsoleMode::Live {
            let multi = indicatif::MultiProgress::with_draw_target(
                indicatif::ProgressDrawTarget::stdout_with_hz(8),
            );
            let traffic = multi.add(indicatif::ProgressBar::new_spinner());
            traffic.set_style(
                indicatif::ProgressStyle::with_template("   {spinner:.green} {wide_msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            traffic.enable_steady_tick(Duration::from_millis(120));
            let stage = multi.add(indicatif::ProgressBar::new(1));
            stage.set_style(idle_style());
            c.multi = Some(multi);
            c.traffic = Some(traffic);
            c.stage = Some(stage);
        }
        c
    }

    /// The mode in force.
    pub fn mode(&self) -> ConsoleMode {
        self.mode
    }

    fn line(&self, text: &str) {
        match (&self.mode, &self.multi) {
            (ConsoleMode::Live, Some(m)) => {
                if m.println(text).is_err() {
                    println!("{text}");
                }
            }
            (ConsoleMode::Quiet, _) => {}
            _ => println!("{text}"),
        }
    }
}

fn idle_style() -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template("     {wide_msg}")
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
}

fn stage_style() -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template("     {prefix:<12} [{bar:20.cyan/blue}] {wide_msg}")
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> ")
}

fn traffic_text(v: &LiveView) -> String {
    if v.traffic.requests == 0 {
        return "traffic: not started yet".to_string();
    }
    format!(
        "traffic {:.0} req/s · {} requests · {} failed · {}",
        v.rate,
        indicatif::HumanCount(v.traffic.requests),
        v.traffic.failed,
        v.traffic.mix()
    )
}

fn stage_text(s: &StageView) -> String {
    if s.kind == "replay" {
        return "replaying the traces".to_string();
    }
    let mut parts = vec![format!("{:.1}s", s.in_stage.as_secs_f64())];
    match s.min_samples {
        Some(m) => parts.push(format!(
            "{} of {} samples",
            indicatif::HumanCount(s.samples),
            indicatif::HumanCount(m)
        )),
        None => parts.push(format!("{} samples", indicatif::HumanCount(s.samples))),
    }
    parts.extend(s.gates.iter().cloned());
    parts.join(" · ")
}

impl Progress for Console {
    fn phase(&mut self, title: &str) {
        self.line("");
        self.line(&format!("▶ {title}"));
    }

    fn event(&mut self, text: &str) {
        self.line(&format!("   {text}"));
    }

    fn live(&mut self, v: &LiveView) {
        match self.mode {
            ConsoleMode::Quiet => {}
            ConsoleMode::Live => {
                if let Some(t) = &self.traffic {
                    t.set_message(traffic_text(v));
                }
                let Some(bar) = &self.stage else { return };
                match &v.stage {
                    Some(s) => {
                        if !self.staged {
                            bar.set_style(stage_style());
                            self.staged = true;
                        }
                        let len = s.min_duration.map_or(1, |d| d.as_millis().max(1) as u64);
                        bar.set_length(len);
                        bar.set_position((s.in_stage.as_millis() as u64).min(len));
                        bar.set_prefix(format!("{} {}/{}", s.stage, s.index + 1, s.count));
                        bar.set_message(stage_text(s));
                    }
                    None => {
                        if self.staged {
                            bar.set_style(idle_style());
                            self.staged = false;
                        }
                        bar.set_message(v.waiting.clone());
                    }
                }
            }
            ConsoleMode::Plain => {
                if self.last_plain.is_some_and(|t| t.elapsed() < PLAIN_EVERY) {
                    return;
                }
                self.last_plain = Some(Instant::now());
                match &v.stage {
                    Some(s) => self.line(&format!(
                        "     [{} {}/{}] {} | {}",
                        s.stage,
                        s.index + 1,
                        s.count,
                        stage_text(s),
                        traffic_text(v)
                    )),
                    None => self.line(&format!("     {} | {}", v.waiting, traffic_text(v))),
                }
            }
        }
    }

    fn finish(&mut self) {
        if let Some(t) = self.traffic.take() {
            t.finish_and_clear();
        }
        if let Some(s) = self.stage.take() {
            s.finish_and_clear();
        }
        if let Some(m) = self.multi.take() {
            let _ = m.clear();
        }
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        self.finish();
    }
}

// ---------------------------------------------------------------------------
// Narration

/// The lines that tell a transition as it happens. `since` is the time
/// since the previous transition of the same commit; `revert_message` the
/// message of the revert commit a `reverted` transition names.
pub(super) fn transition_lines(
    t: &Transition,
    since: Option<f64>,
    revert_message: Option<&str>,
) -> Vec<String> {
    let after = since.map(|s| format!(" after {s:.1}s")).unwrap_or_default();
    let commit = t.commit.as_deref().map(short::commit).unwrap_or("");
    let artifact = t.artifact.as_deref().map(short::hash).unwrap_or("");
    let mut lines = Vec::new();
    match t.event.as_str() {
        "install" => lines.push(format!(
            "✓ commit {commit} installed as stable: artifact {artifact} (first clean commit, nothing to compare it with)"
        )),
        "start" => lines.push(format!(
            "→ commit {commit} checks clean: candidate artifact {artifact}, stage {}",
            t.to
        )),
        "advance" => {
            lines.push(format!("✓ {} passed{after} → {}", t.from, t.to));
            if t.from == "replay" {
                lines.push(format!("    {}", t.reason));
            }
        }
        "complete" => lines.push(format!(
            "✓ {} passed{after}: candidate {artifact} is stable on every engine",
            t.from
        )),
        "rollback" => lines.push(format!(
            "✗ ROLLBACK at stage {}{after}: {}",
            t.from,
            t.reason.split_once(": ").map_or(t.reason.as_str(), |(_, w)| w)
        )),
        "reverted" => match revert_commit(&t.figures) {
            Some(revert) => {
                lines.push(format!("↩ revert commit {} pushed to {BRANCH}:", short::commit(revert)));
                lines.extend(
                    revert_message
                        .unwrap_or("")
                        .trim_end()
                        .lines()
                        .map(|l| format!("    │ {l}").trim_end().to_string()),
                );
            }
            None => lines.push(format!("↩ {}", t.reason)),
        },
        "unchanged" => lines.push(format!(
            "= commit {commit}: {} (nothing rolled out again)",
            t.reason
        )),
        "refuse" => lines.push(format!("✗ commit {commit} refused: {}", t.reason)),
        _ => lines.push(format!("{} {} → {}: {}", t.event, t.from, t.to, t.reason)),
    }
    if matches!(t.event.as_str(), "advance" | "complete" | "rollback") {
        for g in gates_of(&t.figures) {
            lines.push(format!("    {g}"));
        }
        for g in failed_triggers(&t.figures) {
            lines.push(format!("    trigger {g}"));
        }
        if let Some(o) = observed_of(&t.figures).filter(|_| has_gates(&t.figures)) {
            lines.push(format!("    {o}"));
        }
    }
    lines
}

/// The daemon's status in one line, for a timeout's message.
pub(super) fn describe_status(s: &Status) -> String {
    let mut parts = vec![format!("phase {}", s.phase)];
    if let Some(c) = &s.candidate {
        parts.push(format!(
            "candidate {} in stage {} for {:.1}s, {} samples left",
            short::commit(&c.commit),
            c.stage,
            c.in_stage_ms as f64 / 1000.0,
            c.samples_left.unwrap_or(0)
        ));
        let gates: Vec<String> = c.gates.iter().map(gate_text).collect();
        if !gates.is_empty() {
            parts.push(gates.join(", "));
        }
    }
    if let Some(p) = &s.paused {
        parts.push(format!("paused: {}", p.reason));
    }
    if let Some(w) = &s.waiting {
        parts.push(w.clone());
    }
    let on = s.engines.iter().filter(|e| e.on_route).count();
    parts.push(format!("{on} of {} engines on route", s.engines.len()));
    if let Some(e) = &s.error {
        parts.push(format!("error: {e}"));
    }
    parts.join("; ")
}
