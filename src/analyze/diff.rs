//! What a change does to decisions (SPEC §3): for every rule or limit whose
//! meaning changed between two revisions, the classes of requests whose
//! **final** decision differs, each with a witness replayed at both
//! revisions.
//!
//! For a changed rule `c`, one question: is there a request that `c`
//! matches at the base or at the head whose final decision at the base
//! (`db`) differs from its final decision at the head (`dh`)? Each side's
//! final decision is encoded as the evaluator computes it: the most severe
//! effect of the rules that match and of the limits that are over their
//! count, else the project default. Every answer gives one transition
//! `db → dh`; the transition is blocked and the question asked again until
//! none is left (at most twelve transitions exist), so every class is found
//! and each is reported once per changed rule: `change::widened` when what
//! was denied or sent for approval goes through (`allow`, `modify`),
//! `change::decision` otherwise.
//!
//! A limit applies only past its count. Whether each limit's counter is
//! full is a free boolean of the question, shared by both revisions (a
//! limit keeps its counters across a change when its name stays), so a
//! change to a limit shows as the decisions of requests that exceed it; a
//! witness that needs full counters names them, and its replay fills them.
//!
//! Only rules that can meet a request of `c` take part (the others cannot
//! change these requests' decisions): their condition summaries overlap
//! `c`'s at either revision. Both revisions are encoded with one plan, so
//! an unchanged rule is one formula shared by both sides.
//!
//! Pure: no I/O; Z3 runs on the calling thread.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use z3::ast::{Bool, Int};

use super::index::{Summary, ToolIndex};
use super::lang;
use super::plan::{Item, TOOL};
use super::probe::step;
use super::smt::{Encoded, Encoder, Needs, Plan};
use super::solver::{Session, Verdict};
use super::witness::{Replay, label};
use crate::diagnostic::{Code, Finding};
use crate::model::ir::{DecisionKind, PolicySet};
use crate::model::schema::Schema;

/// At most this many transitions exist between two different decisions.
const MAX_TRANSITIONS: usize = 12;

/// One revision, planned: its set, items, default and the replay of its
/// witnesses.
pub(super) struct DiffSide<'a, 's> {
    pub(super) set: &'s PolicySet,
    pub(super) items: &'a [Item<'s>],
    pub(super) default: DecisionKind,
    pub(super) replay: &'a Result<Replay<'s>, String>,
}

/// Figures of a decision diff.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct DiffStats {
    pub(super) questions: u64,
    pub(super) seconds: f64,
}

/// Whether a transition lets through what was blocked.
pub fn widens(from: DecisionKind, to: DecisionKind) -> bool {
    matches!(from, DecisionKind::Deny | DecisionKind::RequireApproval)
        && matches!(to, DecisionKind::Allow | DecisionKind::Modify)
}

fn code_of(d: DecisionKind) -> i64 {
    match d {
        DecisionKind::Allow => 0,
        DecisionKind::Modify => 1,
        DecisionKind::RequireApproval => 2,
        DecisionKind::Deny => 3,
    }
}

fn kind_of(c: i64) -> Option<DecisionKind> {
    match c {
        0 => Some(DecisionKind::Allow),
        1 => Some(DecisionKind::Modify),
        2 => Some(DecisionKind::RequireApproval),
        3 => Some(DecisionKind::Deny),
        _ => None,
    }
}

/// A class found: the transition, the witness request and the limits whose
/// counters it needs full.
struct Class {
    from: DecisionKind,
    to: DecisionKind,
    request: Result<serde_json::Value, String>,
    full: BTreeSet<String>,
}

/// What one changed rule's questions gave.
enum Answer {
    Classes(Vec<Class>),
    /// Classes found before a question was left open, and why.
    Unknown(Vec<Class>, String),
    Unencodable(String),
}

/// The decision diff of the changed rules `changed` (by `policy.rule`)
/// between `base` and `head`, which share `schema`. Findings are sorted;
/// every witness is replayed at both revisions.
pub(super) fn decision_diff(
    base: &DiffSide<'_, '_>,
    head: &DiffSide<'_, '_>,
    schema: &Schema,
    changed: &BTreeSet<String>,
    timeout_ms: u32,
) -> (Vec<Finding>, DiffStats) {
    let started = Instant::now();
    let mut stats = DiffStats::default();
    let mut findings = Vec::new();
    let by_id = |items: &[Item<'_>]| -> HashMap<String, usize> {
        items
            .iter()
            .enumerate()
            .map(|(i, it)| (it.id.clone(), i))
            .collect()
    };
    let (bi, hi) = (by_id(base.items), by_id(head.items));
    let replays = (base.replay, head.replay);
    // Each side's rules by what they allow `tool` to be, built once: the
    // rules a changed rule can meet are looked up, not scanned for.
    let (ib, ih) = (tool_index(base.items), tool_index(head.items));
    let mut session = Session::new(timeout_ms);
    for id in changed {
        let b = bi.get(id).and_then(|&i| base.items.get(i));
        let h = hi.get(id).and_then(|&i| head.items.get(i));
        let Some(anchor) = h.or(b) else { continue };
        let relevant = |side: &DiffSide<'_, '_>, index: &ToolIndex| -> Vec<usize> {
            let mut candidates = BTreeSet::new();
            // An empty summary (no tool domain) meets nothing.
            for dom in [b, h]
                .into_iter()
                .flatten()
                .filter_map(|c| c.summary.strs(TOOL))
            {
                candidates.extend(index.candidates(&dom));
            }
            candidates
                .into_iter()
                .filter(|i| {
                    side.items.get(*i).is_some_and(|it| {
                        !it.summary.is_empty()
                            && [b, h]
                                .into_iter()
                                .flatten()
                                .any(|c| overlaps(&c.summary, &it.summary, schema))
                    })
                })
                .collect()
        };
        let (rb, rh) = (relevant(base, &ib), relevant(head, &ih));
        let q = Question {
            base,
            head,
            rb: &rb,
            rh: &rh,
            changed: (b, h),
            schema,
        };
        let answer = q.ask(&mut session);
        stats.questions = session.queries();
        let what = match (b, h) {
            (None, Some(_)) => "added",
            (Some(_), None) => "removed",
            _ => "changed",
        };
        let labelled = |f: Finding| -> Finding {
            let message = format!("this {} was {what}", anchor.what());
            match (h, b) {
                (Some(it), _) => f.with_label(label(it.origin, it.policy_name, it.name, message)),
                // Removed: anchored on its policy at head, when the policy
                // is still there.
                (None, Some(it)) => {
                    match head.set.policies.iter().find(|p| p.name == it.policy_name) {
                        Some(p) => f.with_label(
                            crate::diagnostic::Label::new(&p.origin.file, p.origin.span)
                                .in_rule(&p.name, Some(it.name.to_string()))
                                .with_message(message),
                        ),
                        None => f,
                    }
                }
                (None, None) => f,
            }
        };
        let (classes, open) = match answer {
            Answer::Classes(c) => (c, None),
            Answer::Unknown(c, r) => (c, Some(r)),
            Answer::Unencodable(e) => {
                findings.push(labelled(
                    Finding::new(
                        Code::AnalyzeUnencodable,
                        format!(
                            "what the change to {} `{id}` does to decisions is not analysed: {e}",
                            anchor.what()
                        ),
                    )
                    .with_help("the decisions it changes are not looked for; rewrite the condition within what the analysis handles"),
                ));
                continue;
            }
        };
        for class in classes {
            let f = class_finding(id, anchor.what(), what, &class);
            let f = labelled(f);
            findings.push(verify(f, &class, id, &replays));
        }
        if let Some(reason) = open {
            findings.push(labelled(
                Finding::new(
                    Code::AnalyzeUnknown,
                    format!(
                        "the solver could not decide what the change to {} `{id}` does to decisions: {reason}",
                        anchor.what()
                    ),
                )
                .with_help(
                    "other requests may change decision too; simplify the conditions or raise the solver timeout",
                ),
            ));
        }
    }
    findings.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    stats.seconds = started.elapsed().as_secs_f64();
    (findings, stats)
}

/// The items of a side by what their summaries allow `tool` to be (a
/// schema without `tool` leaves every item in `any`).
fn tool_index(items: &[Item<'_>]) -> ToolIndex {
    ToolIndex::new(
        items
            .iter()
            .enumerate()
            .map(|(i, it)| (i, it.summary.strs(TOOL)))
            .collect::<Vec<_>>()
            .iter()
            .map(|(i, d)| (*i, d.as_ref())),
    )
}

/// Whether two summaries can meet (a summary without `tool` meets any).
fn overlaps(a: &Summary, b: &Summary, schema: &Schema) -> bool {
    a.overlaps(b, schema)
}

fn class_finding(id: &str, kind: &str, what: &str, class: &Class) -> Finding {
    let code = if widens(class.from, class.to) {
        Code::ChangeWidened
    } else {
        Code::ChangeDecision
    };
    let mut f = Finding::new(
        code,
        format!(
            "{kind} `{id}` {what}: requests it matches that were `{}` are now `{}`",
            class.from.as_str(),
            class.to.as_str()
        ),
    );
    let mut help = if code == Code::ChangeWidened {
        "this change lets through requests that were blocked; make sure that is intended (the \
         witness is one of them, decided as stated at both revisions)"
            .to_string()
    } else {
        "the witness is one of these requests, decided as stated at both revisions".to_string()
    };
    if !class.full.is_empty() {
        let names: Vec<String> = class.full.iter().map(|l| format!("`{l}`")).collect();
        help.push_str(&format!(
            "; it is decided so once {} {} over its count",
            names.join(", "),
            if names.len() == 1 { "is" } else { "are" }
        ));
    }
    f = f.with_help(help);
    if let Ok(r) = &class.request {
        f.witness = Some(r.clone());
    }
    f
}

/// Replays the class's witness at both revisions: a witness decided
/// otherwise, or that the changed rule does not meet, is a mismatch.
fn verify(
    mut f: Finding,
    class: &Class,
    id: &str,
    replays: &(&Result<Replay<'_>, String>, &Result<Replay<'_>, String>),
) -> Finding {
    let request = match &class.request {
        Ok(r) => r,
        Err(e) => {
            return super::witness::mismatch(
                &f,
                &format!("no witness could be read from the model: {e}"),
            );
        }
    };
    let run = |r: &Result<Replay<'_>, String>| -> Result<super::witness::Run, String> {
        r.as_ref()
            .map_err(Clone::clone)?
            .run_full(request, &class.full)
    };
    let (b, h) = match (run(replays.0), run(replays.1)) {
        (Ok(b), Ok(h)) => (b, h),
        (Err(e), _) => return super::witness::mismatch(&f, &format!("at the base: {e}")),
        (_, Err(e)) => return super::witness::mismatch(&f, &format!("at the head: {e}")),
    };
    let mut decisions = BTreeMap::new();
    decisions.insert("base".to_string(), b.decision.as_str().to_string());
    decisions.insert("head".to_string(), h.decision.as_str().to_string());
    f.witness_decisions = Some(decisions);
    let why = if b.decision != class.from {
        Some(format!(
            "the base decides `{}`, not `{}`",
            b.decision.as_str(),
            class.from.as_str()
        ))
    } else if h.decision != class.to {
        Some(format!(
            "the head decides `{}`, not `{}`",
            h.decision.as_str(),
            class.to.as_str()
        ))
    } else if !b.matches(id) && !h.matches(id) {
        Some(format!("`{id}` decides it at neither revision"))
    } else {
        None
    };
    match why {
        Some(why) => super::witness::mismatch(&f, &why),
        None => f,
    }
}

/// The question about one changed rule.
struct Question<'q, 'a, 's> {
    base: &'q DiffSide<'a, 's>,
    head: &'q DiffSide<'a, 's>,
    /// The items of each side that can meet the changed rule's requests.
    rb: &'q [usize],
    rh: &'q [usize],
    /// The changed rule at each side.
    changed: (Option<&'q Item<'s>>, Option<&'q Item<'s>>),
    schema: &'q Schema,
}

impl Question<'_, '_, '_> {
    fn ask(&self, session: &mut Session) -> Answer {
        let conds = self
            .rb
            .iter()
            .filter_map(|i| self.base.items.get(*i))
            .chain(self.rh.iter().filter_map(|i| self.head.items.get(*i)))
            .map(|it| it.when.as_ref());
        let plan = Plan::new(self.schema, conds, &[]);
        let mut encoder = Encoder::new(&plan);
        let mut enc = Applies {
            encoder: &mut encoder,
            cache: HashMap::new(),
            needs: Needs::default(),
            full: BTreeMap::new(),
        };
        let built = (|| -> Result<(Int, Int, Bool), String> {
            let db = enc.decision(self.base, self.rb)?;
            let dh = enc.decision(self.head, self.rh)?;
            let mut matched = Vec::new();
            for it in [self.changed.0, self.changed.1].into_iter().flatten() {
                matched.push(enc.applies(it)?);
            }
            Ok((db, dh, Bool::or(&matched)))
        })();
        let Applies { needs, full, .. } = enc;
        let (db, dh, matched) = match built {
            Ok(x) => x,
            Err(e) => return Answer::Unencodable(e),
        };
        let domain = encoder.domain(&needs);
        let differs = db.eq(&dh).not();
        let mut blocks: Vec<Bool> = Vec::new();
        let mut classes = Vec::new();
        let mut memo = lang::Memo::default();
        for _ in 0..MAX_TRANSITIONS {
            let mut formulas: Vec<&Bool> = vec![&matched, &differs];
            formulas.extend(domain.iter());
            formulas.extend(blocks.iter());
            let deadline = session.begin();
            let mut strings = BTreeMap::new();
            let mut refine =
                |m: &z3::Model| step(encoder.refine(m, &needs, &mut memo, deadline), &mut strings);
            let model = match session.solve(&formulas, &mut refine) {
                Verdict::Sat(m) => m,
                Verdict::Unsat => return Answer::Classes(classes),
                Verdict::Unknown(r) => return Answer::Unknown(classes, r),
            };
            let read = |d: &Int| {
                model
                    .eval(d, true)
                    .and_then(|v| v.as_i64())
                    .and_then(kind_of)
            };
            let (Some(from), Some(to)) = (read(&db), read(&dh)) else {
                return Answer::Unknown(classes, "the model has no decision".into());
            };
            let request = encoder
                .witness(&model, None, &strings)
                .map(|r| r.to_json(self.schema));
            let full_now: BTreeSet<String> = full
                .iter()
                .filter(|(_, b)| {
                    model
                        .eval(*b, true)
                        .and_then(|v| v.as_bool())
                        .unwrap_or(false)
                })
                .map(|(id, _)| id.clone())
                .collect();
            blocks.push(
                Bool::and(&[
                    db.eq(Int::from_i64(code_of(from))),
                    dh.eq(Int::from_i64(code_of(to))),
                ])
                .not(),
            );
            classes.push(Class {
                from,
                to,
                request,
                full: full_now,
            });
        }
        Answer::Classes(classes)
    }
}

/// Items into formulas, for one question.
struct Applies<'e, 'p, 'x> {
    encoder: &'e mut Encoder<'p>,
    cache: HashMap<&'x crate::model::ir::Expr, Encoded>,
    needs: Needs,
    /// "This limit's counter is full", by `policy.limit`.
    full: BTreeMap<String, Bool>,
}

impl<'x> Applies<'_, '_, 'x> {
    /// Whether `it` applies: its condition, and for a limit its counter
    /// full.
    fn applies(&mut self, it: &'x Item<'_>) -> Result<Bool, String> {
        let e = match self.cache.get(it.when.as_ref()) {
            Some(e) => e.clone(),
            None => {
                let e = self
                    .encoder
                    .encode(&it.when, None)
                    .map_err(|e| format!("{} `{}`: {e}", it.what(), it.id))?;
                self.cache.insert(it.when.as_ref(), e.clone());
                e
            }
        };
        self.needs.merge(&e.needs);
        if it.limit {
            let f = self
                .full
                .entry(it.id.clone())
                .or_insert_with(|| Bool::new_const(format!("full!{}", it.id)))
                .clone();
            Ok(Bool::and(&[e.formula, f]))
        } else {
            Ok(e.formula)
        }
    }

    /// A side's final decision over `ids`, as a decision code.
    fn decision(&mut self, side: &'x DiffSide<'_, '_>, ids: &[usize]) -> Result<Int, String> {
        let mut by_kind: BTreeMap<DecisionKind, Vec<Bool>> = BTreeMap::new();
        for i in ids {
            let Some(it) = side.items.get(*i) else {
                continue;
            };
            by_kind
                .entry(it.kind())
                .or_default()
                .push(self.applies(it)?);
        }
        let mut d = Int::from_i64(code_of(side.default));
        for (kind, conds) in by_kind {
            // Least severe first: the most severe ends up outermost.
            d = Bool::or(&conds).ite(&Int::from_i64(code_of(kind)), &d);
        }
        Ok(d)
    }
}
