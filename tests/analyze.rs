//! Conflict analysis tests: one fixture repository per finding code
//! (snapshotted report) and negative fixtures that must stay clean, SMT-LIB
//! snapshots of the encoding, solver verdicts against brute-force
//! evaluation over a small domain (proptest), and the planted conflicts of
//! the benchmark generator.

use std::path::Path;

use sluice::analyze::smt::Plan;
use sluice::analyze::{self, Options, Probe, Sat};
use sluice::diagnostic::{Finding, Sources, render_human};
use sluice::pipeline::{self, Checked};

/// Checks the fixture repository at `dir` (the whole pipeline, analysis
/// included).
fn check_repo(dir: &Path) -> Checked {
    let files = sluice::tree::fs::load(dir, sluice::tree::Traces::Skip).unwrap();
    pipeline::check_sources(&files.project, &files.policies)
}

fn codes(findings: &[Finding]) -> Vec<&str> {
    findings.iter().map(|f| f.code.as_str()).collect()
}

fn fixture_dirs(kind: &str) -> Vec<std::path::PathBuf> {
    let base = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/analyze")
        .join(kind);
    let mut dirs: Vec<_> = std::fs::read_dir(base)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

fn render(findings: &[Finding], sources: &Sources) -> String {
    render_human(findings, sources, false, 100)
}

#[test]
fn err_fixtures_snapshot() {
    let dirs = fixture_dirs("err");
    assert!(dirs.len() >= 6);
    for dir in dirs {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let checked = check_repo(&dir);
        assert!(!checked.findings.is_empty(), "{name}: no finding");
        // The code the fixture is named after (`approval_deadlock_cycle`:
        // `conflict::approval_deadlock`).
        let expected = [
            "approval_deadlock",
            "dead_rule",
            "modify",
            "overridden_allow",
            "shadowed",
        ]
        .into_iter()
        .find(|c| name.starts_with(c))
        .unwrap_or_else(|| panic!("{name}: named after no code"));
        // Every analysis finding is of that code (a check warning on the
        // same rule, e.g. `limit::optional_key`, may come with it).
        let analysis: Vec<&str> = codes(&checked.findings)
            .into_iter()
            .filter(|c| c.starts_with("conflict::") || c.starts_with("analyze::"))
            .collect();
        assert!(
            !analysis.is_empty() && analysis.iter().all(|c| c.ends_with(expected)),
            "{name}: {:?}\n{}",
            codes(&checked.findings),
            render(&checked.findings, &checked.sources)
        );
        for f in &checked.findings {
            assert!(!f.labels.is_empty(), "{name}: {} has no label", f.code);
            assert!(
                f.labels
                    .iter()
                    .all(|l| l.policy.is_some() && l.rule.is_some())
            );
            assert!(f.help.is_some());
        }
        insta::with_settings!({snapshot_path => "../snapshots/analyze", prepend_module_to_snapshot => false}, {
            insta::assert_snapshot!(name.clone(), render(&checked.findings, &checked.sources));
        });
    }
}

#[test]
fn ok_fixtures_stay_clean() {
    let dirs = fixture_dirs("ok");
    assert!(dirs.len() >= 7);
    for dir in dirs {
        let checked = check_repo(&dir);
        assert!(
            checked.findings.is_empty(),
            "{}:\n{}",
            dir.display(),
            render(&checked.findings, &checked.sources)
        );
        assert!(checked.set.is_some());
    }
}

/// A witness value for a snapshot: strings longer than 60 characters as
/// their length, head and tail (a witness of 100,001 characters is read by
/// its length).
fn compact(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::String(s) if s.chars().count() > 60 => {
            let head: String = s.chars().take(24).collect();
            let tail: String = s
                .chars()
                .rev()
                .take(24)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            Value::String(format!("{head}…{tail} ({} characters)", s.chars().count()))
        }
        Value::Array(a) if a.len() > 8 => {
            let mut out: Vec<Value> = a.iter().take(4).map(compact).collect();
            out.push(Value::String(format!("… ({} elements)", a.len())));
            Value::Array(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(compact).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), compact(v))).collect()),
        other => other.clone(),
    }
}

/// The held-out cases (`tests/data/analyze/held/`): each once gave a wrong
/// or missing finding, an `unknown`, or took seconds. Every case must be
/// decided (no `analyze::unknown`, `witness_mismatch` or `internal`), every
/// witness is replayed here through the evaluator of the fixture, and the
/// findings are snapshotted (long witness strings abbreviated).
#[test]
fn held_out_cases_are_decided() {
    let dirs = fixture_dirs("held");
    assert!(dirs.len() >= 4);
    for dir in dirs {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let checked = check_repo(&dir);
        let (project, set) = load_set(&dir);
        let artifact = sluice::compile::artifact::Artifact::new(
            "t",
            project.default,
            project.schema.clone(),
            set,
            None,
        )
        .unwrap();
        let ev = sluice::eval::Evaluator::new(&artifact).unwrap();
        let mut text = String::new();
        for f in &checked.findings {
            assert!(
                !matches!(
                    f.code.as_str(),
                    "analyze::unknown" | "analyze::witness_mismatch" | "analyze::internal"
                ),
                "{name}: {}",
                render(&checked.findings, &checked.sources)
            );
            let rules: Vec<String> = f
                .labels
                .iter()
                .filter_map(|l| Some(format!("{}.{}", l.policy.as_ref()?, l.rule.as_ref()?)))
                .collect();
            text.push_str(&format!(
                "{} {}\n  {}\n",
                f.code.as_str(),
                rules.join(" "),
                f.message
            ));
            if let Some(w) = &f.witness {
                let req = ev.decode(w).unwrap_or_else(|e| panic!("{name}: {e:?}"));
                let out = ev
                    .evaluate_dry_run(&req, 0, &sluice::eval::state::MemoryLimitStore::new())
                    .unwrap();
                let decisions = f.witness_decisions.as_ref().unwrap();
                assert_eq!(
                    decisions.get("final").map(String::as_str),
                    Some(out.decision().as_str()),
                    "{name}: {w}"
                );
                text.push_str(&format!(
                    "  witness {}\n  decisions {decisions:?}\n",
                    compact(w)
                ));
            }
        }
        insta::with_settings!({snapshot_path => "../snapshots/analyze", prepend_module_to_snapshot => false}, {
            insta::assert_snapshot!(format!("held_{name}"), text);
        });
    }
}

/// `n` allows and `n` denies on one tool, each `ends_with` a suffix of its
/// own (none a suffix of another): the set of the "1,000 rules on one
/// tool" benchmark.
pub(crate) fn suffix_set(n: usize) -> (sluice::project::Project, sluice::model::ir::PolicySet) {
    let toml = std::fs::read_to_string(data("held/2.1_long_length/sluice.toml")).unwrap();
    let mut app = String::from("policy app version 1.0.0 {\n");
    let mut guard = String::from("policy guard version 1.0.0 {\n");
    for i in 0..n {
        app.push_str(&format!(
            "  rule a{i} {{\n    when tool == \"files.write\" and args.body ends_with \".a{i}\"\n    allow\n  }}\n"
        ));
        guard.push_str(&format!(
            "  rule d{i} {{\n    when tool == \"files.write\" and args.body ends_with \".d{i}\"\n    deny D \"d\"\n  }}\n"
        ));
    }
    app.push_str("}\n");
    guard.push_str("}\n");
    let toml = sluice::source::SourceFile::new("sluice.toml", toml.as_str());
    let project = sluice::project::parse(&toml).unwrap();
    let parsed: Vec<_> = [("app.policy", app), ("guard.policy", guard)]
        .into_iter()
        .map(|(name, text)| {
            let f = sluice::source::SourceFile::new(name, text.as_str());
            let p = sluice::parse::parse_policy(&f).unwrap();
            (f, p)
        })
        .collect();
    let out = sluice::check::check(&parsed, &project.schema);
    let set = sluice::compile::lower(&out.checked.unwrap());
    (project, set)
}

/// Held-out case 2.5: `ends_with` tests on one tool are summarised by
/// their suffixes, so pairs of disjoint suffixes never reach the solver
/// (they once all did: 40,000 queries for 200 × 200 rules).
#[test]
fn disjoint_suffixes_are_pruned_without_the_solver() {
    let (project, set) = suffix_set(200);
    let report = analyze::analyze(&set, &project.schema, project.default, &Options::default());
    assert!(report.findings.is_empty(), "{:?}", codes(&report.findings));
    assert!(report.stats.pruned >= 200 * 200, "{:?}", report.stats);
    // Each rule's own question at most (is it dead?), no pair.
    assert!(report.stats.queries <= 400, "{:?}", report.stats);
}

/// The typed set and project of a fixture repository that type-checks.
fn load_set(dir: &Path) -> (sluice::project::Project, sluice::model::ir::PolicySet) {
    let files = sluice::tree::fs::load(dir, sluice::tree::Traces::Skip).unwrap();
    let project = sluice::project::parse(&files.project).unwrap();
    let parsed: Vec<_> = files
        .policies
        .iter()
        .map(|f| (f.clone(), sluice::parse::parse_policy(f).unwrap()))
        .collect();
    let out = sluice::check::check(&parsed, &project.schema);
    let set = sluice::compile::lower(&out.checked.unwrap());
    (project, set)
}

fn data(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/analyze")
        .join(rel)
}

#[test]
fn smtlib_of_each_representation() {
    let (project, set) = load_set(&data("smt/encoding"));
    let rules: Vec<_> = set.policies.iter().flat_map(|p| &p.rules).collect();
    let plan = Plan::new(&project.schema, rules.iter().map(|r| &r.when), &[]);
    let mut probe = Probe::new(&plan, 5_000);
    for r in &rules {
        let text = probe.smtlib(&[&r.when]).unwrap();
        insta::with_settings!({snapshot_path => "../snapshots/analyze", prepend_module_to_snapshot => false}, {
            insta::assert_snapshot!(format!("smtlib_{}", r.name), text);
        });
        // The solver agrees that each is satisfiable, and the witness
        // matches the rule in the real evaluator.
        let Sat::Yes(req) = probe.satisfiable(&[&r.when]).unwrap() else {
            panic!("{} should be satisfiable", r.name);
        };
        let json = req.to_json(&project.schema);
        assert!(
            matches_rule(&project, &set, &json, &r.name),
            "{}: {json}",
            r.name
        );
    }
}

/// Does rule `rule` (of any policy) match `request` in the evaluator?
fn matches_rule(
    project: &sluice::project::Project,
    set: &sluice::model::ir::PolicySet,
    request: &serde_json::Value,
    rule: &str,
) -> bool {
    let artifact = sluice::compile::artifact::Artifact::new(
        "t",
        project.default,
        project.schema.clone(),
        set.clone(),
        None,
    )
    .unwrap();
    let ev = sluice::eval::Evaluator::new(&artifact).unwrap();
    let req = ev.decode(request).unwrap();
    let out = ev
        .evaluate_dry_run(&req, 0, &sluice::eval::state::MemoryLimitStore::new())
        .unwrap();
    ev.reasons(&out).any(|r| r.rule == rule)
}

#[test]
fn an_undecided_query_is_reported_not_dropped() {
    let (project, set) = load_set(&data("unknown"));
    let opts = Options {
        timeout_ms: 200,
        threads: 1,
        ..Options::default()
    };
    let report = analyze::analyze(&set, &project.schema, project.default, &opts);
    assert_eq!(
        codes(&report.findings),
        ["analyze::unknown"],
        "{:?}",
        report.findings
    );
    let f = &report.findings[0];
    assert!(
        f.message.contains("`hard.keys_in_long_bodies`"),
        "{}",
        f.message
    );
    assert!(f.message.contains("200 ms"), "{}", f.message);
    assert_eq!(report.stats.unknown, 1);
    // Held-out case 2.10: the message is part of the finding's identity,
    // so it names the timeout only, never the solver's reason (`timeout`,
    // `canceled`), which varies from run to run.
    assert!(
        f.message.ends_with("no answer within 200 ms"),
        "{}",
        f.message
    );
    for _ in 0..3 {
        let again = analyze::analyze(&set, &project.schema, project.default, &opts);
        let messages: Vec<&str> = again.findings.iter().map(|f| f.message.as_str()).collect();
        assert_eq!(messages, [f.message.as_str()]);
    }
}

/// Held-out case 2.10 through the pull-request check: the same undecided
/// question at both revisions (both analysed in full: the schema gained a
/// field) is the same finding, labelled as the base's, run after run.
#[test]
fn an_undecided_query_the_base_had_is_never_new() {
    use sluice::source::SourceFile;
    let dir = data("unknown");
    let toml = std::fs::read_to_string(dir.join("sluice.toml")).unwrap();
    let policy = SourceFile::new(
        "hard.policy",
        std::fs::read_to_string(dir.join("hard.policy")).unwrap(),
    );
    let base_toml = SourceFile::new("sluice.toml", toml.clone());
    let head_toml = SourceFile::new(
        "sluice.toml",
        format!("{toml}\"args.note?\" = \"string\"\n"),
    );
    let opts = Options {
        timeout_ms: 200,
        threads: 1,
        ..Options::default()
    };
    for _ in 0..3 {
        let policies = std::slice::from_ref(&policy);
        let mut h = pipeline::check_unanalysed(&head_toml, policies);
        let mut b = pipeline::check_unanalysed_sharing(&base_toml, policies, &[], &h);
        let pr = sluice::review::pull_request(&mut b, &mut h, &opts);
        assert!(
            matches!(pr.analysis, sluice::review::ChangeAnalysis::Both { .. }),
            "{:?}",
            pr.analysis
        );
        let unknown: Vec<&Finding> = pr
            .findings
            .iter()
            .filter(|f| f.code.as_str() == "analyze::unknown")
            .collect();
        assert_eq!(unknown.len(), 1, "{:?}", pr.findings);
        assert_eq!(unknown[0].introduced, Some(false), "{}", unknown[0].message);
    }
}

// ---------------------------------------------------------------------------
// Differential tests: solver verdicts against brute-force evaluation.
//
// Requests range over a small finite domain; every query also asserts that
// domain (as IR, `domain()`), so the solver's answer must equal what the
// real evaluator finds by trying every request of the domain.

mod differential {
    use std::cell::RefCell;

    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    use serde_json::{Value, json};
    use sluice::analyze::Probe;
    use sluice::analyze::Sat;
    use sluice::analyze::index::{summarize, trivially_sat};
    use sluice::analyze::smt::Plan;
    use sluice::analyze::solver::Session;
    use sluice::compile::artifact::Artifact;
    use sluice::eval::request::Request;
    use sluice::eval::state::MemoryLimitStore;
    use sluice::eval::{Evaluator, LimitMode, Outcome};
    use sluice::model::ir::{
        CmpOp, DecisionKind, Effect, Expr, Literal, Policy, PolicySet, Rule, Term, Tier, Type,
    };
    use sluice::model::schema::Schema;

    /// Cases per test, scaled by `SLUICE_ANALYZE_CASES` (a multiplier,
    /// default 1; the defaults add up to 10,000 cases).
    fn cases(base: u32) -> u32 {
        let k: u32 = std::env::var("SLUICE_ANALYZE_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        base * k.max(1)
    }

    fn schema() -> Schema {
        use crate::project::field;
        Schema::new(vec![
            field("tool", Type::Str, false),
            field("u", Type::Str, false),
            field("n", Type::Int, false),
            field("s", Type::Str, true),
            field("f", Type::Bool, true),
            field("tags", Type::StrSet, true),
        ])
    }

    const TOOLS: [&str; 2] = ["a", "b"];
    const US: [&str; 2] = ["ab", "b"];
    const NS: [i64; 3] = [-1, 0, 5];
    const SS: [&str; 4] = ["", "ab", "ba", "b"];

    fn s(v: &str) -> Literal {
        Literal::Str(v.into())
    }

    fn cmp(field: &str, op: CmpOp, lit: Literal) -> Expr {
        let ty = match lit {
            Literal::Int(_) => Type::Int,
            Literal::Str(_) => Type::Str,
            Literal::Bool(_) => Type::Bool,
        };
        Expr::Cmp {
            op,
            lhs: Term::Field(field.into()),
            rhs: Term::Lit(lit),
            ty,
        }
    }

    fn len_cmp(field: &str, op: CmpOp, k: i64) -> Expr {
        Expr::Cmp {
            op,
            lhs: Term::Len(field.into()),
            rhs: Term::Lit(Literal::Int(k)),
            ty: Type::Int,
        }
    }

    fn not(e: Expr) -> Expr {
        Expr::Not(Box::new(e))
    }

    /// The domain, as a condition every query also asserts.
    fn domain() -> Expr {
        let contains = |v: &str| Expr::SetContains {
            field: "tags".into(),
            value: v.into(),
        };
        let tags = |n: i64, x: bool, y: bool| {
            Expr::And(vec![
                len_cmp("tags", CmpOp::Eq, n),
                if x { contains("x") } else { not(contains("x")) },
                if y { contains("y") } else { not(contains("y")) },
            ])
        };
        Expr::And(vec![
            Expr::In {
                lhs: Term::Field("tool".into()),
                values: TOOLS.iter().map(|v| s(v)).collect(),
            },
            Expr::In {
                lhs: Term::Field("u".into()),
                values: US.iter().map(|v| s(v)).collect(),
            },
            Expr::In {
                lhs: Term::Field("n".into()),
                values: NS.iter().map(|v| Literal::Int(*v)).collect(),
            },
            Expr::Or(vec![
                not(Expr::Has("s".into())),
                Expr::In {
                    lhs: Term::Field("s".into()),
                    values: SS.iter().map(|v| s(v)).collect(),
                },
            ]),
            Expr::Or(vec![
                not(Expr::Has("tags".into())),
                tags(0, false, false),
                tags(1, true, false),
                tags(2, true, true),
            ]),
        ])
    }

    /// Every request of the domain (2 × 2 × 3 × 5 × 3 × 4 = 720).
    fn requests(schema: &Schema) -> Vec<Request> {
        let mut out = Vec::new();
        let ss: Vec<Option<&str>> = std::iter::once(None)
            .chain(SS.iter().map(|v| Some(*v)))
            .collect();
        let fs = [None, Some(true), Some(false)];
        let tagss: [Option<Vec<&str>>; 4] =
            [None, Some(vec![]), Some(vec!["x"]), Some(vec!["x", "y"])];
        for tool in TOOLS {
            for u in US {
                for n in NS {
                    for sv in &ss {
                        for fv in fs {
                            for tv in &tagss {
                                let mut top = json!({"tool": tool, "u": u, "n": n});
                                if let Some(v) = sv {
                                    top["s"] = json!(v);
                                }
                                if let Some(v) = fv {
                                    top["f"] = json!(v);
                                }
                                if let Some(v) = tv {
                                    top["tags"] = json!(v);
                                }
                                out.push(Request::from_json(&top, schema).unwrap());
                            }
                        }
                    }
                }
            }
        }
        out
    }

    const PATTERNS: [&str; 10] = [
        "^a", "b$", "a|^b", "^(ab)+$", "^$", "[a-c]{2}", "x?b", "(^|a)b", "^b|a$", "ab|^$",
    ];
    const LITS: [&str; 6] = ["", "a", "b", "ab", "ba", "c"];

    fn atom() -> impl Strategy<Value = Expr> {
        let op = prop::sample::select(vec![
            CmpOp::Eq,
            CmpOp::Ne,
            CmpOp::Lt,
            CmpOp::Le,
            CmpOp::Gt,
            CmpOp::Ge,
        ]);
        let eq = prop::sample::select(vec![CmpOp::Eq, CmpOp::Ne]);
        let lit = prop::sample::select(LITS.to_vec());
        let lits = prop::collection::vec(prop::sample::select(LITS.to_vec()), 0..3);
        prop_oneof![
            (eq.clone(), prop::sample::select(vec!["a", "b", "c"])).prop_map(|(op, v)| cmp(
                "tool",
                op,
                s(v)
            )),
            prop::sample::select(vec!["a", "b", "c"]).prop_map(|v| Expr::StartsWith {
                field: "tool".into(),
                value: v.into()
            }),
            (op.clone(), -2i64..7).prop_map(|(op, k)| cmp("n", op, Literal::Int(k))),
            prop::collection::vec(-2i64..7, 0..3).prop_map(|v| Expr::In {
                lhs: Term::Field("n".into()),
                values: v.into_iter().map(Literal::Int).collect()
            }),
            Just(Expr::Has("s".into())),
            (eq, lit.clone()).prop_map(|(op, v)| cmp("s", op, s(v))),
            lits.prop_map(|v| Expr::In {
                lhs: Term::Field("s".into()),
                values: v.into_iter().map(s).collect()
            }),
            lit.clone().prop_map(|v| Expr::StartsWith {
                field: "s".into(),
                value: v.into()
            }),
            lit.clone().prop_map(|v| Expr::EndsWith {
                field: "s".into(),
                value: v.into()
            }),
            lit.prop_map(|v| Expr::Contains {
                field: "s".into(),
                value: v.into()
            }),
            prop::sample::select(PATTERNS.to_vec()).prop_map(|p| Expr::Matches {
                field: "s".into(),
                pattern: p.into()
            }),
            (op.clone(), -1i64..4).prop_map(|(op, k)| len_cmp("s", op, k)),
            Just(Expr::Truthy("f".into())),
            any::<bool>().prop_map(|b| cmp("f", CmpOp::Eq, Literal::Bool(b))),
            Just(Expr::Has("f".into())),
            prop::sample::select(vec!["x", "y", "z"]).prop_map(|v| Expr::SetContains {
                field: "tags".into(),
                value: v.into()
            }),
            (op, 0i64..3).prop_map(|(op, k)| len_cmp("tags", op, k)),
            Just(Expr::Has("tags".into())),
            Just(cmp("u", CmpOp::Eq, s("ab"))),
        ]
    }

    /// Conditions; one in sixteen also compares `s` with `u` (a field with a
    /// field: Z3's strings instead of automata).
    fn cond() -> impl Strategy<Value = Expr> {
        let tree = atom().prop_recursive(3, 10, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::And),
                prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::Or),
                inner.prop_map(not),
            ]
        });
        (tree, 0..16u8).prop_map(|(e, k)| {
            if k == 0 {
                Expr::And(vec![
                    e,
                    Expr::Cmp {
                        op: CmpOp::Eq,
                        lhs: Term::Field("s".into()),
                        rhs: Term::Field("u".into()),
                        ty: Type::Str,
                    },
                ])
            } else {
                e
            }
        })
    }

    /// A set with the conditions as rules `p0.r0`, `p0.r1`, … (deny, so
    /// that every match is a reason).
    fn set_of(conds: &[Expr]) -> PolicySet {
        let rules = conds
            .iter()
            .enumerate()
            .map(|(i, c)| Rule {
                name: format!("r{i}"),
                when: c.clone(),
                effect: Effect::Deny {
                    code: "X".into(),
                    text: "x".into(),
                },
                origin: Default::default(),
            })
            .collect();
        PolicySet {
            policies: vec![Policy {
                name: "p0".into(),
                version: "1.0.0".into(),
                tier: Tier::Operational,
                requires: vec![],
                rules,
                limits: vec![],
                origin: Default::default(),
            }],
        }
    }

    /// For each domain request, which rules match (by index).
    fn brute(schema: &Schema, conds: &[Expr], reqs: &[Request]) -> Vec<Vec<bool>> {
        let artifact = Artifact::new(
            "t",
            DecisionKind::Allow,
            schema.clone(),
            set_of(conds),
            None,
        )
        .unwrap();
        let ev = Evaluator::new(&artifact).unwrap();
        let store = MemoryLimitStore::new();
        let mut out = Outcome::default();
        reqs.iter()
            .map(|r| {
                ev.evaluate_into(r, 0, &store, LimitMode::DryRun, &mut out)
                    .unwrap();
                let mut row = vec![false; conds.len()];
                for reason in ev.reasons(&out) {
                    let i: usize = reason.rule[1..].parse().unwrap();
                    row[i] = true;
                }
                row
            })
            .collect()
    }

    /// The domain's requests with their JSON text, to find a witness.
    pub struct Domain {
        pub reqs: Vec<Request>,
        index: std::collections::HashMap<String, usize>,
    }

    impl Domain {
        pub fn new(schema: &Schema) -> Domain {
            let reqs = requests(schema);
            let index = reqs
                .iter()
                .enumerate()
                .map(|(i, r)| (r.to_json(schema).to_string(), i))
                .collect();
            Domain { reqs, index }
        }

        /// The row of `table` for the witness `json`; `None` when the
        /// witness is not a request of the domain.
        pub fn row<'t>(&self, table: &'t [Vec<bool>], json: &Value) -> Option<&'t [bool]> {
            let i = self.index.get(&json.to_string())?;
            table.get(*i).map(Vec::as_slice)
        }
    }

    thread_local! {
        static SESSION: RefCell<Option<Session>> = const { RefCell::new(None) };
    }

    /// Runs `f` with a probe over `conds` + the domain, on this thread's
    /// solver.
    fn with_probe<T>(conds: &[Expr], f: impl FnOnce(&mut Probe<'_>) -> T) -> T {
        let schema = schema();
        let dom = domain();
        let plan = Plan::new(&schema, conds.iter().chain(std::iter::once(&dom)), &[]);
        let session = SESSION
            .with(|s| s.borrow_mut().take())
            .unwrap_or_else(|| Session::new(10_000));
        let mut probe = Probe::with_session(&plan, session);
        let out = f(&mut probe);
        let session = probe.into_session();
        SESSION.with(|s| *s.borrow_mut() = Some(session));
        out
    }

    fn runner(cases: u32) -> TestRunner {
        TestRunner::new(Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        })
    }

    /// Satisfiability of a condition (dead rules): solver and brute force
    /// agree; every witness is in the domain and matches.
    #[test]
    fn dead_verdicts_match_brute_force() {
        let schema = schema();
        let dom_reqs = Domain::new(&schema);
        let reqs = &dom_reqs.reqs;
        runner(cases(4_000))
            .run(&cond(), |c| {
                let conds = [c];
                let table = brute(&schema, &conds, reqs);
                let truth = table.iter().any(|row| row[0]);
                // The shortcuts that spare the solver are sound: an empty
                // summary matches nothing, an obviously satisfiable
                // condition is satisfiable (outside the domain too).
                let summary = summarize(&conds[0], true, &schema);
                prop_assert!(
                    !(summary.is_empty() && truth),
                    "empty summary of a live condition\n{conds:?}"
                );
                let trivial = trivially_sat(&conds[0], &schema);
                with_probe(&conds, |probe| {
                    if trivial {
                        let alone = probe.satisfiable(&[&conds[0]]).unwrap();
                        prop_assert!(
                            matches!(alone, Sat::Yes(_)),
                            "trivially sat but {alone:?}\n{conds:?}"
                        );
                    }
                    let dom = domain();
                    match probe.satisfiable(&[&conds[0], &dom]).unwrap() {
                        Sat::Yes(req) => {
                            prop_assert!(truth, "solver: sat, brute force: unsat\n{conds:?}");
                            let json = req.to_json(&schema);
                            let row = dom_reqs.row(&table, &json);
                            prop_assert!(row.is_some_and(|m| m[0]), "witness {json} of {conds:?}");
                        }
                        Sat::No => {
                            prop_assert!(!truth, "solver: unsat, brute force: sat\n{conds:?}")
                        }
                        Sat::Unknown(r) => prop_assert!(false, "unknown: {r}\n{conds:?}"),
                    }
                    Ok(())
                })
            })
            .unwrap();
    }

    /// Overlap of two conditions: solver and brute force agree.
    #[test]
    fn overlap_verdicts_match_brute_force() {
        let schema = schema();
        let dom_reqs = Domain::new(&schema);
        let reqs = &dom_reqs.reqs;
        runner(cases(4_000))
            .run(&(cond(), cond()), |(a, b)| {
                let conds = [a, b];
                let table = brute(&schema, &conds, reqs);
                let truth = table.iter().any(|row| row[0] && row[1]);
                let (sa, sb) = (
                    summarize(&conds[0], true, &schema),
                    summarize(&conds[1], true, &schema),
                );
                prop_assert!(
                    sa.overlaps(&sb, &schema) || !truth,
                    "summaries say disjoint\n{conds:?}"
                );
                with_probe(&conds, |probe| {
                    let dom = domain();
                    match probe.satisfiable(&[&conds[0], &conds[1], &dom]).unwrap() {
                        Sat::Yes(req) => {
                            prop_assert!(truth, "solver: overlap, brute force: none\n{conds:?}");
                            let json = req.to_json(&schema);
                            let row = dom_reqs.row(&table, &json);
                            prop_assert!(row.is_some_and(|m| m[0] && m[1]), "witness {json}");
                        }
                        Sat::No => {
                            prop_assert!(!truth, "solver: none, brute force: overlap\n{conds:?}")
                        }
                        Sat::Unknown(r) => prop_assert!(false, "unknown: {r}\n{conds:?}"),
                    }
                    Ok(())
                })
            })
            .unwrap();
    }

    /// Shadowing: is every request of the first condition matched by one of
    /// the others? Solver and brute force agree, and the covers the solver
    /// names suffice.
    #[test]
    fn cover_verdicts_match_brute_force() {
        let schema = schema();
        let dom_reqs = Domain::new(&schema);
        let reqs = &dom_reqs.reqs;
        runner(cases(2_000))
            .run(&prop::collection::vec(cond(), 3), |conds| {
                let table = brute(&schema, &conds, reqs);
                let covered_by = |which: &[usize]| {
                    table
                        .iter()
                        .filter(|row| row[0])
                        .all(|row| which.iter().any(|w| row[w + 1]))
                };
                let truth = covered_by(&[0, 1]);
                with_probe(&conds, |probe| {
                    let dom = domain();
                    let got = probe
                        .covered(&[&conds[0], &dom], &[&conds[1], &conds[2]])
                        .unwrap();
                    match got {
                        Ok(Some(used)) => {
                            prop_assert!(truth, "solver: covered, brute force: not\n{conds:?}");
                            prop_assert!(covered_by(&used), "the covers {used:?} do not suffice");
                        }
                        Ok(None) => prop_assert!(
                            !truth,
                            "solver: not covered, brute force: covered\n{conds:?}"
                        ),
                        Err(r) => prop_assert!(false, "unknown: {r}\n{conds:?}"),
                    }
                    Ok(())
                })
            })
            .unwrap();
    }
}

// ---------------------------------------------------------------------------
// The benchmark generator's planted conflicts.

#[path = "../benches/support/conflicts.rs"]
mod conflicts;

/// Parses and type-checks a generated repository (no analysis).
fn typed(g: &conflicts::Generated) -> (sluice::project::Project, sluice::model::ir::PolicySet) {
    let toml = sluice::source::SourceFile::new("sluice.toml", g.toml.as_str());
    let project = sluice::project::parse(&toml).unwrap();
    let parsed: Vec<_> = g
        .files
        .iter()
        .map(|(name, text)| {
            let f = sluice::source::SourceFile::new(name.as_str(), text.as_str());
            let p = sluice::parse::parse_policy(&f).unwrap();
            (f, p)
        })
        .collect();
    let out = sluice::check::check(&parsed, &project.schema);
    assert!(out.findings.is_empty(), "{:?}", out.findings);
    let set = sluice::compile::lower(&out.checked.unwrap());
    (project, set)
}

#[test]
fn every_planted_conflict_is_found_and_nothing_else() {
    let g = conflicts::generate(60);
    assert_eq!(g.planted.len(), 6);
    let (project, set) = typed(&g);
    let report = analyze::analyze(&set, &project.schema, project.default, &Options::default());
    let found: Vec<(String, Vec<String>)> = report
        .findings
        .iter()
        .map(|f| {
            let rules = f
                .labels
                .iter()
                .map(|l| {
                    format!(
                        "{}.{}",
                        l.policy.as_deref().unwrap(),
                        l.rule.as_deref().unwrap()
                    )
                })
                .collect();
            (f.code.to_string(), rules)
        })
        .collect();
    for p in &g.planted {
        assert!(
            found
                .iter()
                .any(|(code, rules)| code == p.code && p.rules.iter().all(|r| rules.contains(r))),
            "planted {p:?} not found in {found:#?}"
        );
    }
    assert_eq!(
        found.len(),
        g.planted.len(),
        "findings where nothing was planted: {found:#?}"
    );
    // Every finding with a witness has its decisions from the evaluator.
    for f in &report.findings {
        assert_eq!(f.witness.is_some(), f.witness_decisions.is_some());
        assert!(f.code != "conflict::dead_rule" || f.witness.is_none());
    }
    assert_eq!(report.stats.unknown, 0);
}

/// `examples/conflict-approval-deadlock`: an approval whose tool itself
/// needs approval for the same requests (no cycle) is a deadlock; the
/// approval rule on the approval tool, whose own tool is allowed, is not.
#[test]
fn the_approval_deadlock_example_reports_one_deadlock() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/conflict-approval-deadlock");
    let checked = check_repo(&dir);
    assert_eq!(codes(&checked.findings), ["conflict::approval_deadlock"]);
    let f = &checked.findings[0];
    let rules: Vec<&str> = f.labels.iter().filter_map(|l| l.rule.as_deref()).collect();
    assert_eq!(rules, ["large_transfer", "large_amounts_need_a_lead"]);
    let decisions = f.witness_decisions.as_ref().unwrap();
    assert_eq!(decisions["final"], "require_approval");
    assert_eq!(f.witness.as_ref().unwrap()["tool"], "approvals.request");
}

// ---------------------------------------------------------------------------
// The analysis of a change (`check --base`): only what a change can affect
// is analysed, and the pull-request comparison reads exactly as with two
// full analyses.

mod change {
    use sluice::diagnostic::{Finding, identity};
    use sluice::pipeline::{self, Checked};
    use sluice::review::base::{label, unmatched};
    use sluice::review::{self, ChangeAnalysis};
    use sluice::source::SourceFile;

    use super::conflicts;

    type Files = Vec<(String, String)>;

    fn sources(toml: &str, files: &Files) -> (SourceFile, Vec<SourceFile>) {
        let mut sorted = files.clone();
        sorted.sort();
        (
            SourceFile::new("sluice.toml", toml),
            sorted
                .iter()
                .map(|(n, t)| SourceFile::new(n.as_str(), t.as_str()))
                .collect(),
        )
    }

    fn full(toml: &str, files: &Files) -> Checked {
        let (t, f) = sources(toml, files);
        pipeline::check_sources(&t, &f)
    }

    /// What the pull-request check reports of the analysis, as comparable
    /// text: identity, severity and where each label points.
    fn shown(findings: &[Finding]) -> Vec<String> {
        let mut out: Vec<String> = findings
            .iter()
            .map(|f| {
                // The pull-request check puts a new finding's changed rule
                // first: the order of labels is not compared.
                let mut spans: Vec<String> = f
                    .labels
                    .iter()
                    .map(|l| format!("{}@{}..{}", l.file, l.span.start, l.span.end))
                    .collect();
                spans.sort();
                format!(
                    "{:?} {:?} {} [{}]",
                    f.severity,
                    f.introduced,
                    identity(f),
                    spans.join(", ")
                )
            })
            .collect();
        out.sort();
        out
    }

    /// The rules each finding labels, as `code policy.rule …`.
    fn rules(findings: &[Finding]) -> Vec<String> {
        findings
            .iter()
            .map(|f| {
                let mut s = f.code.to_string();
                for l in &f.labels {
                    s.push_str(&format!(
                        " {}.{}",
                        l.policy.as_deref().unwrap_or(""),
                        l.rule.as_deref().unwrap_or("")
                    ));
                }
                s
            })
            .collect()
    }

    /// The pull-request check's findings with two full analyses (`full_base`
    /// is the base checked in full) and with the analysis of the change;
    /// asserts they are the same and returns them with how the analysis ran.
    fn compare(
        name: &str,
        (base_toml, base): (&str, &Files),
        full_base: &Checked,
        (head_toml, head): (&str, &Files),
    ) -> (Vec<Finding>, ChangeAnalysis) {
        let full_head = full(head_toml, head);
        let head_errors: Vec<Finding> = full_head
            .findings
            .iter()
            .filter(|f| f.is_error())
            .cloned()
            .collect();
        let expected = label(&full_base.findings, full_head.findings);
        let (bt, bf) = sources(base_toml, base);
        let (ht, hf) = sources(head_toml, head);
        let mut h = pipeline::check_unanalysed(&ht, &hf);
        let mut b = pipeline::check_unanalysed_sharing(&bt, &bf, &[], &h);
        let pr = review::pull_request(&mut b, &mut h, &sluice::analyze::Options::default());
        let analysis = pr.analysis;
        // The version checks are the same either way: left out here.
        let got: Vec<Finding> = pr
            .findings
            .into_iter()
            .filter(|f| !f.code.as_str().starts_with("version::"))
            // What the change does to decisions is not a finding of either
            // revision.
            .filter(|f| f.code.family() != "change")
            .collect();
        assert_eq!(
            shown(&got),
            shown(&expected),
            "{name}: the analysis of the change differs from two full analyses"
        );
        // Every error of the head is reported, old ones included.
        let errors = |f: &[Finding]| {
            let e: Vec<Finding> = f
                .iter()
                .filter(|f| f.is_error())
                .map(|f| Finding {
                    introduced: None,
                    ..f.clone()
                })
                .collect();
            shown(&e)
        };
        assert_eq!(
            errors(&got),
            errors(&head_errors),
            "{name}: an error of the head is missing"
        );
        // What the change brings: the findings the base did not have.
        (unmatched(got, &full_base.findings), analysis)
    }

    fn edit(files: &mut Files, path: &str, f: impl FnOnce(&mut String)) {
        let (_, text) = files
            .iter_mut()
            .find(|(p, _)| p == path)
            .unwrap_or_else(|| panic!("no {path}"));
        f(text);
    }

    /// Adds a rule before the policy's closing brace.
    fn add_rule(files: &mut Files, policy: &str, rule: &str) {
        edit(files, &format!("policies/{policy}.policy"), |t| {
            let end = t.rfind("}\n").unwrap();
            t.insert_str(end, rule);
        });
    }

    /// Removes the rule `name` (up to its closing brace and blank line).
    fn remove_rule(files: &mut Files, policy: &str, name: &str) {
        edit(files, &format!("policies/{policy}.policy"), |t| {
            let start = t.find(&format!("  rule {name} {{")).unwrap();
            let len = t[start..].find("  }\n\n").unwrap() + "  }\n\n".len();
            t.replace_range(start..start + len, "");
        });
    }

    fn incremental(a: &ChangeAnalysis) -> (&[String], usize, usize) {
        match a {
            ChangeAnalysis::Incremental {
                changed,
                base,
                head,
            } => (
                changed.as_slice(),
                base.jobs - base.unchanged,
                head.jobs - head.unchanged,
            ),
            other => panic!("not incremental: {other:?}"),
        }
    }

    #[test]
    fn the_analysis_of_a_change_reads_as_two_full_analyses() {
        let g = conflicts::generate(60);
        let toml = g.toml.as_str();
        let base = g.files.clone();
        let full_base = full(toml, &base);
        let planned = match &full_base.findings[..] {
            [] => panic!("the generated set has its planted conflicts"),
            f => f.len(),
        };
        assert_eq!(planned, g.planted.len());

        // A new deny covering every write an allow of the next policy lets
        // through: a new `shadowed` error.
        let mut head = base.clone();
        add_rule(
            &mut head,
            "p00003",
            "  rule x_new_block {\n    when tool == \"svc4.write\" and args.amount > 0\n    deny NEW \"Writes are closed\"\n  }\n\n",
        );
        let (got, a) = compare("a conflict added", (toml, &base), &full_base, (toml, &head));
        assert_eq!(
            rules(&got),
            // Anchored on the rule the change added.
            ["conflict::shadowed p00003.x_new_block p00004.write_allow"]
        );
        let (changed, run_base, _) = incremental(&a);
        assert_eq!(changed, ["p00003.x_new_block"]);
        let total = full_base.rule_count();
        assert!(run_base < 20, "{run_base} of {total}");

        // A reformatted policy: nothing changed, nothing asked.
        let mut head = base.clone();
        edit(&mut head, "policies/p00007.policy", |t| {
            *t = t
                .replace(
                    "  rule read_allow {",
                    "  // Reads.\n\n  rule   read_allow {",
                )
                .replace(" and agent in", "\n      and agent in");
        });
        let (got, a) = compare(
            "a reformatted policy",
            (toml, &base),
            &full_base,
            (toml, &head),
        );
        assert_eq!(rules(&got), Vec::<String>::new());
        let (changed, run_base, _) = incremental(&a);
        assert_eq!((changed, run_base), (&[][..], 0));

        // A rule renamed, a policy moved to another file: their findings
        // name another place, so they are new.
        let mut head = base.clone();
        edit(&mut head, "policies/p00020.policy", |t| {
            *t = t.replace("rule x_impossible", "rule x_never");
        });
        let moved = head
            .iter_mut()
            .find(|(p, _)| p == "policies/p00030.policy")
            .unwrap();
        moved.0 = "policies/moved/p00030.policy".to_string();
        let (got, a) = compare("a rename", (toml, &base), &full_base, (toml, &head));
        assert_eq!(
            rules(&got),
            [
                "conflict::modify p00030.x_redact_all p00031.export_redact",
                "conflict::dead_rule p00020.x_never",
            ]
        );
        assert_eq!(got[0].labels[0].file, "policies/moved/p00030.policy");
        assert!(
            incremental(&a)
                .0
                .contains(&"p00020.x_impossible".to_string())
        );

        // Deleted policies: the deadlocks they held are gone, nothing new.
        let mut head = base.clone();
        head.retain(|(p, _)| p != "policies/p00040.policy" && p != "policies/p00050.policy");
        let (got, a) = compare("deleted policies", (toml, &base), &full_base, (toml, &head));
        assert_eq!(rules(&got), Vec::<String>::new());
        let (changed, run_base, _) = incremental(&a);
        assert!(changed.contains(&"p00050.x_ping".to_string()));
        assert!(run_base > 0);

        // A shared policy denies large approval requests: every large write
        // that needs approval now deadlocks (many findings, the approval
        // components of every policy merged through one rule).
        let mut head = base.clone();
        add_rule(
            &mut head,
            "core",
            "  rule x_no_big_approvals {\n    when tool == \"approvals.request\" and args.amount > 5000\n    deny BIG \"Too big to approve\"\n  }\n",
        );
        let (got, _) = compare(
            "a shared rule added",
            (toml, &base),
            &full_base,
            (toml, &head),
        );
        let deadlocks = got
            .iter()
            .filter(|f| f.code == "conflict::approval_deadlock")
            .count();
        assert!(deadlocks > 50, "{:#?}", rules(&got));

        // Another schema: both revisions analysed in full.
        let head_toml = format!("{toml}\"args.extra?\" = \"string\"\n");
        let (_, a) = compare(
            "another schema",
            (toml, &base),
            &full_base,
            (&head_toml, &base),
        );
        assert!(matches!(a, ChangeAnalysis::Both { .. }), "{a:?}");
    }

    /// A conflict removed reveals a warning it hid: an allow no longer
    /// shadowed gets its `overridden_allow` warnings back, although neither
    /// rule of the warning changed.
    #[test]
    fn a_conflict_removed_reveals_what_it_hid() {
        let g = conflicts::generate(60);
        let toml = g.toml.as_str();
        let mut base = g.files.clone();
        // p00010 shadows p00011.read_allow; p00005 also blocks one of its
        // agents, which the shadow hides.
        add_rule(
            &mut base,
            "p00005",
            "  rule x_block_11 {\n    when tool == \"svc11.read\" and agent == \"agent-11\"\n    deny BLOCKED \"Blocked\"\n  }\n\n",
        );
        let full_base = full(toml, &base);
        assert!(
            !rules(&full_base.findings)
                .iter()
                .any(|r| r.contains("x_block_11")),
            "{:#?}",
            rules(&full_base.findings)
        );
        let mut head = base.clone();
        remove_rule(&mut head, "p00010", "x_close_reads");
        let (got, a) = compare(
            "a conflict removed",
            (toml, &base),
            &full_base,
            (toml, &head),
        );
        assert_eq!(
            rules(&got),
            ["conflict::overridden_allow p00011.read_allow p00005.x_block_11"]
        );
        assert_eq!(incremental(&a).0, ["p00010.x_close_reads"]);
    }

    /// Rules once left out of the analysis (a character above U+2FFFF in
    /// a field whose lengths are compared) are analysed at both revisions:
    /// nothing is unencodable, and the change is analysed like any other.
    #[test]
    fn rules_beyond_the_solvers_characters_are_analysed_at_both_revisions() {
        let toml = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data/analyze/ok/beyond_u2ffff/sluice.toml"),
        )
        .unwrap();
        // Both hold U+30000; `echo` compares lengths.
        let ext = "policy ext version 1.0.0 {\n  \
            rule echo {\n    when tool == \"email.send\" and len(args.body) > len(args.subject) and args.body contains \"\u{30000}\"\n    deny ECHO \"e\"\n  }\n  \
            rule loose {\n    when tool == \"email.send\" and args.body contains \"\u{30000}\"\n    deny LOOSE \"l\"\n  }\n}\n";
        let base: Files = vec![("policies/ext.policy".to_string(), ext.to_string())];
        let full_base = full(&toml, &base);
        assert_eq!(rules(&full_base.findings), Vec::<String>::new());
        let mut head = base.clone();
        head.push((
            "policies/mail.policy".to_string(),
            "policy mail version 1.0.0 {\n  rule send {\n    when tool == \"email.send\" and agent == \"x\"\n    allow\n  }\n}\n".to_string(),
        ));
        let (got, a) = compare(
            "an allow next to denies on characters above U+2FFFF",
            (&toml, &base),
            &full_base,
            (&toml, &head),
        );
        let got = rules(&got);
        assert!(
            got.iter()
                .any(|r| r.starts_with("conflict::overridden_allow") && r.contains("mail.send")),
            "{got:?}"
        );
        assert!(got.iter().all(|r| !r.starts_with("analyze::")), "{got:?}");
        assert_eq!(incremental(&a).0, ["mail.send"]);
    }
}
