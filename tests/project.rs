//! `sluice.toml` tests: the SPEC §1 example parses to the expected values,
//! every bad input is one located `schema::invalid` finding (table-driven),
//! and rendered reports of the `err/` fixtures are snapshotted.

use std::collections::BTreeMap;
use std::time::Duration;

use sluice::diagnostic::{Finding, Sources, render_human};
use sluice::model::ir::{DecisionKind, FieldDecl, Literal, Type};
use sluice::model::plan::{Gates, RollbackTriggers, RolloutPlan, Stage, StageKind};
use sluice::model::schema::Schema;
use sluice::project::{Project, parse};
use sluice::source::SourceFile;

const FILE: &str = "sluice.toml";

fn read(text: &str) -> (Result<Project, Vec<Finding>>, Sources) {
    let file = SourceFile::new(FILE, text);
    let mut sources = Sources::new();
    sources.add(file.clone());
    (parse(&file), sources)
}

#[track_caller]
fn parse_ok(text: &str) -> Project {
    match read(text) {
        (Ok(p), _) => p,
        (Err(findings), sources) => panic!("{}", render_human(&findings, &sources, false, 100)),
    }
}

/// Parses `text`, expects exactly the findings `expect` — each `(line,
/// column, message fragment)` of its first label — in that order, and checks
/// the shape every finding must have.
#[track_caller]
fn check(text: &str, expect: &[(usize, usize, &str)]) {
    let (result, sources) = read(text);
    let findings = match result {
        Ok(p) => panic!("expected findings, parsed {p:#?}"),
        Err(f) => f,
    };
    let rendered = render_human(&findings, &sources, false, 100);
    let got: Vec<(usize, usize, &str)> = findings
        .iter()
        .map(|f| {
            let (line, col) = f.labels.first().map_or((0, 0), |l| sources.line_col(l));
            (line, col, f.message.as_str())
        })
        .collect();
    assert_eq!(got.len(), expect.len(), "findings: {got:#?}\n{rendered}");
    for ((line, col, message), (el, ec, fragment)) in got.iter().zip(expect) {
        assert_eq!(
            (*line, *col),
            (*el, *ec),
            "position of `{message}`\n{rendered}"
        );
        assert!(
            message.contains(fragment),
            "`{message}` lacks `{fragment}`\n{rendered}"
        );
    }
    for f in &findings {
        assert_eq!(f.code, "schema::invalid");
        assert!(f.is_error());
        assert!(
            f.help.as_deref().is_some_and(|h| !h.is_empty()),
            "no help: {f:?}"
        );
        assert!(!f.labels.is_empty() && f.labels.iter().all(|l| l.file == FILE));
        assert!(!f.message.ends_with('.'), "final period: {}", f.message);
        assert!(
            f.message.chars().next().is_some_and(|c| !c.is_uppercase()),
            "capitalized: {}",
            f.message
        );
    }
}

/// Eleven lines: project and schema, every type. Cases append from line 12.
macro_rules! base {
    () => {
        r#"[project]
name = "t"

[schema]
tool = "string"
session = "string"
org = "string"
"args.amount" = "int"
"args.body?" = "string"
"args.tags" = "set<string>"
"args.urgent?" = "bool"
"#
    };
}

/// `base!()`, a rollout table and a valid replay stage: cases append from
/// line 17.
macro_rules! plan {
    () => {
        concat!(
            base!(),
            r#"[rollout]
hash_key = "session"
[[rollout.stage]]
name = "replay"
max_catastrophic = 0
"#
        )
    };
}

/// A schema field, for the tests that build a `Schema` by hand.
pub(crate) fn field(path: &str, ty: Type, optional: bool) -> FieldDecl {
    FieldDecl {
        path: path.into(),
        ty,
        optional,
    }
}

#[test]
fn spec_example_parses_to_expected_values() {
    let p = parse_ok(include_str!("data/project/ok/spec_example.toml"));
    let stage = |name: &str, kind| Stage {
        name: name.into(),
        kind,
        percent: None,
        matches: BTreeMap::new(),
        min_duration: None,
        max_duration: None,
        min_samples: None,
        gates: Gates::default(),
    };
    let mins = |m: u64| Some(Duration::from_secs(60 * m));
    let expected = Project {
        name: "acme-agents".into(),
        default: DecisionKind::Deny,
        traces: "traces".into(),
        schema: Schema::new(vec![
            field("tool", Type::Str, false),
            field("agent", Type::Str, false),
            field("org", Type::Str, false),
            field("session", Type::Str, false),
            field("args.amount", Type::Int, false),
            field("args.country", Type::Str, false),
            field("args.recipients", Type::StrSet, false),
            field("args.body", Type::Str, true),
            field("args.urgent", Type::Bool, true),
        ]),
        rollout: Some(RolloutPlan {
            hash_key: "session".into(),
            stages: vec![
                Stage {
                    gates: Gates {
                        max_catastrophic: Some(0),
                        max_false_positive_rate: Some(0.01),
                        ..Gates::default()
                    },
                    ..stage("replay", StageKind::Replay)
                },
                Stage {
                    min_duration: mins(10),
                    max_duration: mins(40),
                    min_samples: Some(1000),
                    gates: Gates {
                        max_divergence: Some(0.02),
                        ..Gates::default()
                    },
                    ..stage("shadow", StageKind::Shadow)
                },
                Stage {
                    percent: Some(5),
                    matches: BTreeMap::from([(
                        "org".to_owned(),
                        vec![Literal::Str("internal".into())],
                    )]),
                    min_duration: mins(30),
                    max_duration: mins(120),
                    min_samples: Some(500),
                    gates: Gates {
                        max_error_rate: Some(0.001),
                        max_deny_rate_delta: Some(0.02),
                        max_latency_p99_delta_ms: Some(5.0),
                        ..Gates::default()
                    },
                    ..stage("canary", StageKind::Split)
                },
                Stage {
                    percent: Some(50),
                    min_duration: mins(60),
                    max_duration: mins(240),
                    gates: Gates {
                        max_deny_rate_delta: Some(0.02),
                        ..Gates::default()
                    },
                    ..stage("broad", StageKind::Split)
                },
                Stage {
                    percent: Some(100),
                    ..stage("full", StageKind::Split)
                },
            ],
            rollback: RollbackTriggers {
                error_rate: Some(0.01),
                deny_rate_delta: Some(0.15),
                latency_p99_ms: Some(100.0),
            },
        }),
        governance: Default::default(),
    };
    assert_eq!(p, expected);
    let plan = p.rollout.as_ref().unwrap();
    assert_eq!(plan.stage("canary").map(|s| s.kind), Some(StageKind::Split));
    assert!(plan.stage("nope").is_none());
    assert!(!StageKind::Replay.is_live() && StageKind::Shadow.is_live());
}

#[test]
fn spec_example_serializes() {
    let p = parse_ok(include_str!("data/project/ok/spec_example.toml"));
    insta::with_settings!({snapshot_path => "../snapshots/project", prepend_module_to_snapshot => false}, {
        insta::assert_json_snapshot!("spec_example_json", p);
    });
}

#[test]
fn defaults_and_other_forms() {
    // No rollout; `default` and `traces` left out; nested tables for paths.
    let p = parse_ok(
        r#"
[project]
name = "n"

[schema]
tool = "string"
args = { amount = "int", "note?" = "string" }

[schema.ctx]
"user?" = "string"
"#,
    );
    assert_eq!(p.default, DecisionKind::Deny);
    assert_eq!(p.traces, "traces");
    assert_eq!(p.rollout, None);
    assert_eq!(
        p.schema,
        Schema::new(vec![
            field("tool", Type::Str, false),
            field("args.amount", Type::Int, false),
            field("args.note", Type::Str, true),
            field("ctx.user", Type::Str, true),
        ])
    );

    let p = parse_ok(concat!(
        r#"[project]
name = "n"
default = "allow"
traces = "replay/cases"
"#,
        r#"[schema]
tool = "string"
"args.amount" = "int"
"args.ok" = "bool"
[rollout]
hash_key = "args.amount"
[[rollout.stage]]
name = "canary-1"
percent = 0
match = { args.amount = [1, 0x10], "args.ok" = [true] }
min_duration = "1h30m"
max_duration = "2h"
max_latency_p99_delta_ms = 2.5
max_cost_ratio = 1.2
[[rollout.stage]]
name = "shadow"
max_deny_rate_delta = 0
"#
    ));
    assert_eq!(p.default, DecisionKind::Allow);
    assert_eq!(p.traces, "replay/cases");
    let plan = p.rollout.unwrap();
    assert_eq!(plan.hash_key, "args.amount");
    assert_eq!(plan.rollback, RollbackTriggers::default());
    let canary = &plan.stages[0];
    assert_eq!(canary.percent, Some(0));
    assert_eq!(
        canary.matches,
        BTreeMap::from([
            (
                "args.amount".to_owned(),
                vec![Literal::Int(1), Literal::Int(16)]
            ),
            ("args.ok".to_owned(), vec![Literal::Bool(true)]),
        ])
    );
    assert_eq!(canary.min_duration, Some(Duration::from_secs(5400)));
    assert_eq!(canary.max_duration, Some(Duration::from_secs(7200)));
    assert_eq!(canary.gates.max_latency_p99_delta_ms, Some(2.5));
    assert_eq!(canary.gates.max_cost_ratio, Some(1.2));
    let shadow = &plan.stages[1];
    assert_eq!(shadow.kind, StageKind::Shadow);
    assert_eq!((shadow.min_duration, shadow.max_duration), (None, None));
    assert_eq!(shadow.gates.max_deny_rate_delta, Some(0.0));
}

/// One bad input, one finding: `(what, text, line, column, fragment)`.
const BAD: &[(&str, &str, usize, usize, &str)] = &[
    (
        "unknown key in a stage",
        concat!(
            plan!(),
            "[[rollout.stage]]\nname = \"canary\"\npercent = 5\nmin_duraton = \"1m\"\n"
        ),
        20,
        1,
        "unknown key `min_duraton` in stage `canary`",
    ),
    (
        "percent above 100",
        concat!(
            plan!(),
            "[[rollout.stage]]\nname = \"canary\"\npercent = 150\n"
        ),
        19,
        11,
        "`percent` in stage `canary` must be between 0 and 100, found `150`",
    ),
    (
        "negative percent",
        concat!(
            plan!(),
            "[[rollout.stage]]\nname = \"canary\"\npercent = -1\n"
        ),
        19,
        11,
        "between 0 and 100, found `-1`",
    ),
    (
        "percent as a float",
        concat!(
            plan!(),
            "[[rollout.stage]]\nname = \"canary\"\npercent = 5.5\n"
        ),
        19,
        11,
        "`percent` in stage `canary` must be an integer, not a float",
    ),
    (
        "bad duration",
        concat!(
            plan!(),
            "[[rollout.stage]]\nname = \"shadow\"\nmin_duration = \"10 mins and a bit\"\n"
        ),
        19,
        16,
        "`min_duration` in stage `shadow` is not a valid duration: `10 mins and a bit`",
    ),
    (
        "duration as a number",
        concat!(
            plan!(),
            "[[rollout.stage]]\nname = \"shadow\"\nmin_duration = 600\n"
        ),
        19,
        16,
        "must be a duration string, not an integer",
    ),
    (
        "max_duration shorter than min_duration",
        concat!(
            plan!(),
            "[[rollout.stage]]\nname = \"shadow\"\nmin_duration = \"1h\"\nmax_duration = \"30m\"\n"
        ),
        20,
        16,
        "`max_duration` in stage `shadow` is shorter than its `min_duration`",
    ),
    (
        "unknown type",
        concat!(base!(), "\"args.note\" = \"integer\"\n"),
        12,
        15,
        "unknown type `integer` for field `args.note`",
    ),
    (
        "type not a string",
        concat!(base!(), "agent = 3\n"),
        12,
        9,
        "the type of `agent` must be a string, not an integer",
    ),
    (
        "invalid field path",
        concat!(base!(), "\"Args.note\" = \"string\"\n"),
        12,
        1,
        "invalid field path `Args.note`",
    ),
    (
        "question mark inside a path",
        concat!(base!(), "\"args?.note\" = \"string\"\n"),
        12,
        1,
        "invalid field path `args?.note`",
    ),
    (
        "duplicate field, once optional",
        concat!(base!(), "\"org?\" = \"string\"\n"),
        12,
        1,
        "field `org` is declared twice",
    ),
    (
        "duplicate field, once as a nested table",
        concat!(base!(), "args = { amount = \"int\" }\n"),
        12,
        10,
        "field `args.amount` is declared twice",
    ),
    (
        "a field and a field nested under it",
        concat!(base!(), "\"org.unit\" = \"string\"\n"),
        12,
        1,
        "field `org.unit` is nested under `org`, which is declared as a `string` field",
    ),
    (
        "tool missing",
        "[project]\nname = \"t\"\n\n[schema]\nsession = \"string\"\n",
        4,
        1,
        "field `tool` is not declared in `[schema]`",
    ),
    (
        "tool not a string",
        "[project]\nname = \"t\"\n[schema]\ntool = \"int\"\n",
        4,
        1,
        "field `tool` must be a `string`, not `int`",
    ),
    (
        "tool optional",
        "[project]\nname = \"t\"\n[schema]\n\"tool?\" = \"string\"\n",
        4,
        1,
        "field `tool` cannot be optional",
    ),
    (
        "schema missing",
        "[project]\nname = \"t\"\n",
        1,
        1,
        "missing table `[schema]`",
    ),
    (
        "project missing",
        "[schema]\ntool = \"string\"\n",
        1,
        1,
        "missing table `[project]`",
    ),
    (
        "project name missing",
        "[project]\ndefault = \"allow\"\n[schema]\ntool = \"string\"\n",
        1,
        1,
        "`[project]` has no `name`",
    ),
    (
        "project name empty",
        "[project]\nname = \"\"\n[schema]\ntool = \"string\"\n",
        2,
        8,
        "`name` in `[project]` must not be empty",
    ),
    (
        "bad default decision",
        "[project]\nname = \"t\"\ndefault = \"modify\"\n[schema]\ntool = \"string\"\n",
        3,
        11,
        "`default` in `[project]` must be `allow` or `deny`, found `modify`",
    ),
    (
        "unknown key in project",
        "[project]\nname = \"t\"\ntrace = \"x\"\n[schema]\ntool = \"string\"\n",
        3,
        1,
        "unknown key `trace` in `[project]`",
    ),
    (
        "unknown table",
        concat!(base!(), "[rolout]\nhash_key = \"session\"\n"),
        12,
        2,
        "unknown key `rolout` at the top level",
    ),
    (
        "hash_key not a field",
        concat!(
            base!(),
            "[rollout]\nhash_key = \"sesion\"\n[[rollout.stage]]\nname = \"full\"\npercent = 100\n"
        ),
        13,
        12,
        "`hash_key` names `sesion`, which is not a field in `[schema]`",
    ),
    (
        "hash_key optional",
        concat!(
            base!(),
            "[rollout]\nhash_key = \"args.body\"\n[[rollout.stage]]\nname = \"full\"\npercent = 100\n"
        ),
        13,
        12,
        "`hash_key` names `args.body`, an optional field",
    ),
    (
        "hash_key a set",
        concat!(
            base!(),
            "[rollout]\nhash_key = \"args.tags\"\n[[rollout.stage]]\nname = \"full\"\npercent = 100\n"
        ),
        13,
        12,
        "`hash_key` names `args.tags`, a `set<string>` field",
    ),
    (
        "hash_key missing",
        concat!(
            base!(),
            "[rollout]\n[[rollout.stage]]\nname = \"full\"\npercent = 100\n"
        ),
        12,
        1,
        "`[rollout]` has no `hash_key`",
    ),
    (
        "rollout without stages",
        concat!(base!(), "[rollout]\nhash_key = \"session\"\n"),
        12,
        1,
        "`[rollout]` has no stages",
    ),
    (
        "stage as a table, not an array of tables",
        concat!(
            base!(),
            "[rollout]\nhash_key = \"session\"\n[rollout.stage]\nname = \"full\"\n"
        ),
        14,
        1,
        "`rollout.stage` must be an array of tables, not a table",
    ),
    (
        "match on an unknown field",
        concat!(
            plan!(),
            "[[rollout.stage]]\nname = \"canary\"\npercent = 5\nmatch = { orgg = [\"internal\"] }\n"
        ),
        20,
        11,
        "`match` in stage `canary` names `orgg`, which is not a field in `[schema]`",
    ),
    (
        "match value of the wrong type",
        concat!(
            plan!(),
            "[[rollout.stage]]\nname = \"canary\"\npercent = 5\nmatch = { org = [\"a\", 7] }\n"
        ),
        20,
        23,
        "`match` value `7` for `org` in stage `canary` is not a string",
    ),
    (
        "match value not an array",
        concat!(
            plan!(),
            "[[rollout.stage]]\nname = \"canary\"\npercent = 5\nmatch = { org = \"internal\" }\n"
        ),
        20,
        17,
        "`match` values for `org` in stage `canary` must be an array, not a string",
    ),
    (
        "match with no values",
        concat!(
            plan!(),
            "[[rollout.stage]]\nname = \"canary\"\npercent = 5\nmatch = { org = [] }\n"
        ),
        20,
        17,
        "`match` values for `org` in stage `canary` are empty",
    ),
    (
        "match on a set field",
        concat!(
            plan!(),
            "[[rollout.stage]]\nname = \"canary\"\npercent = 5\nmatch = { \"args.tags\" = [\"x\"] }\n"
        ),
        20,
        11,
        "`match` in stage `canary` names `args.tags`, a `set<string>` field",
    ),
    (
        "rate above 1",
        concat!(plan!(), "max_false_positive_rate = 1.5\n"),
        17,
        27,
        "`max_false_positive_rate` in stage `replay` must be between 0 and 1, found `1.5`",
    ),
    (
        "negative rate",
        concat!(
            plan!(),
            "[[rollout.stage]]\nname = \"shadow\"\nmax_divergence = -0.1\n"
        ),
        19,
        18,
        "`max_divergence` in stage `shadow` must be between 0 and 1, found `-0.1`",
    ),
    (
        "rate as a string",
        concat!(
            plan!(),
            "[[rollout.stage]]\nname = \"shadow\"\nmax_error_rate = \"1%\"\n"
        ),
        19,
        18,
        "`max_error_rate` in stage `shadow` must be a number, not a string",
    ),
    (
        "cost ratio not positive",
        concat!(
            plan!(),
            "[[rollout.stage]]\nname = \"shadow\"\nmax_cost_ratio = 0\n"
        ),
        19,
        18,
        "`max_cost_ratio` in stage `shadow` must be above 0, found `0`",
    ),
    (
        "cost ratio as a string",
        concat!(
            plan!(),
            "[[rollout.stage]]\nname = \"canary\"\npercent = 5\nmax_cost_ratio = \"120%\"\n"
        ),
        20,
        18,
        "`max_cost_ratio` in stage `canary` must be a number, not a string",
    ),
    (
        "negative count",
        concat!(
            plan!(),
            "[[rollout.stage]]\nname = \"shadow\"\nmin_samples = -5\n"
        ),
        19,
        15,
        "`min_samples` in stage `shadow` must not be negative, found `-5`",
    ),
    (
        "duplicate stage",
        concat!(
            plan!(),
            "[[rollout.stage]]\nname = \"canary\"\npercent = 5\n[[rollout.stage]]\nname = \"canary\"\npercent = 10\n"
        ),
        21,
        8,
        "stage `canary` is defined twice",
    ),
    (
        "replay not first",
        concat!(
            base!(),
            "[rollout]\nhash_key = \"session\"\n[[rollout.stage]]\nname = \"shadow\"\n[[rollout.stage]]\nname = \"replay\"\n"
        ),
        17,
        8,
        "stage `replay` must come first",
    ),
    (
        "invalid stage name",
        concat!(
            plan!(),
            "[[rollout.stage]]\nname = \"Canary\"\npercent = 5\n"
        ),
        18,
        8,
        "invalid stage name `Canary`",
    ),
    (
        "stage without a name",
        concat!(plan!(), "[[rollout.stage]]\npercent = 5\n"),
        17,
        1,
        "stage has no `name`",
    ),
    (
        "split stage without percent",
        concat!(
            plan!(),
            "[[rollout.stage]]\nname = \"canary\"\nmin_samples = 5\n"
        ),
        17,
        1,
        "split stage `canary` has no `percent`",
    ),
    (
        "divergence gate on a split stage",
        concat!(
            plan!(),
            "[[rollout.stage]]\nname = \"canary\"\npercent = 5\nmax_divergence = 0.1\n"
        ),
        20,
        1,
        "`max_divergence` does not apply to split stage `canary`",
    ),
    (
        "percent on the shadow stage",
        concat!(
            plan!(),
            "[[rollout.stage]]\nname = \"shadow\"\npercent = 5\n"
        ),
        19,
        1,
        "`percent` does not apply to the `shadow` stage",
    ),
    (
        "durations on the replay stage",
        concat!(plan!(), "min_duration = \"1m\"\n"),
        17,
        1,
        "`min_duration` does not apply to the `replay` stage",
    ),
    (
        "cost gate on the replay stage",
        concat!(plan!(), "max_cost_ratio = 1.2\n"),
        17,
        1,
        "`max_cost_ratio` does not apply to the `replay` stage",
    ),
    (
        "replay gate on the shadow stage",
        concat!(
            plan!(),
            "[[rollout.stage]]\nname = \"shadow\"\nmax_catastrophic = 0\n"
        ),
        19,
        1,
        "`max_catastrophic` does not apply to the `shadow` stage",
    ),
    (
        "unknown key in rollback",
        concat!(
            plan!(),
            "[rollout.rollback]\nerror_rate = 0.01\nlatency_p99 = 100\n"
        ),
        19,
        1,
        "unknown key `latency_p99` in `[rollout.rollback]`",
    ),
    (
        "rollback latency not positive",
        concat!(plan!(), "[rollout.rollback]\nlatency_p99_ms = 0\n"),
        18,
        18,
        "`latency_p99_ms` in `[rollout.rollback]` must be above 0, found `0`",
    ),
    (
        "rollback rate above 1",
        concat!(plan!(), "[rollout.rollback]\ndeny_rate_delta = 15\n"),
        18,
        19,
        "`deny_rate_delta` in `[rollout.rollback]` must be between 0 and 1, found `15`",
    ),
    (
        "unknown key in rollout",
        concat!(
            base!(),
            "[rollout]\nhash_key = \"session\"\nstages = []\n[[rollout.stage]]\nname = \"full\"\npercent = 100\n"
        ),
        14,
        1,
        "unknown key `stages` in `[rollout]`",
    ),
    (
        "table given a scalar",
        "project = \"x\"\n[schema]\ntool = \"string\"\n",
        1,
        11,
        "`project` must be a table, not a string",
    ),
    (
        "TOML syntax error",
        concat!(base!(), "[rollout\nhash_key = \"session\"\n"),
        12,
        9,
        "invalid TOML: unclosed table",
    ),
    (
        "TOML duplicate key",
        concat!(base!(), "tool = \"string\"\n"),
        12,
        1,
        "invalid TOML: duplicate key `tool`",
    ),
];

#[test]
fn bad_inputs_are_located() {
    for (what, text, line, col, fragment) in BAD {
        eprintln!("case: {what}");
        check(text, &[(*line, *col, fragment)]);
    }
}

#[test]
fn unknown_keys_suggest_the_closest() {
    let help = |text: &str| match read(text).0 {
        Err(f) => f
            .iter()
            .map(|f| f.help.clone().unwrap_or_default())
            .collect::<Vec<_>>(),
        Ok(_) => Vec::new(),
    };
    assert_eq!(
        help(concat!(
            plan!(),
            "[[rollout.stage]]\nname = \"canary\"\npercent = 5\nmin_duraton = \"1m\"\n"
        )),
        ["did you mean `min_duration`?"]
    );
    assert_eq!(
        help(concat!(base!(), "\"args.n\" = \"integer\"\n")),
        ["did you mean `int`? the types are `int`, `string`, `bool` and `set<string>`"]
    );
    assert_eq!(
        help(concat!(
            base!(),
            "[rollout]\nhash_key = \"sesion\"\n[[rollout.stage]]\nname = \"f\"\npercent = 1\n"
        )),
        ["did you mean `session`?"]
    );
    // A key of another kind of stage says where it applies.
    let h = help(concat!(
        plan!(),
        "[[rollout.stage]]\nname = \"canary\"\npercent = 5\nmax_divergence = 0.1\n"
    ));
    assert!(
        h[0].starts_with("`max_divergence` applies to the `shadow` stage"),
        "{h:?}"
    );
}

#[test]
fn every_error_is_collected() {
    // One error per section, and a field error that must not cascade: the
    // match on `agent` (declared with a bad type) is not reported again.
    check(
        concat!(
            "[project]\nname = \"t\"\ndefault = \"maybe\"\n",
            "[schema]\ntool = \"string\"\nsession = \"string\"\nagent = \"text\"\n",
            "[rollout]\nhash_key = \"session\"\n",
            "[[rollout.stage]]\nname = \"shadow\"\nmax_divergence = 2\npercent = 3\n",
            "[[rollout.stage]]\nname = \"canary\"\npercent = 500\nmatch = { agent = [\"a\"] }\n",
            "[[rollout.stage]]\nname = \"canary\"\npercent = 10\n",
            "[[rollout.stage]]\nname = \"replay\"\n",
            "[rollout.rollback]\nerror_rate = 1.01\n",
        ),
        &[
            (3, 11, "`default` in `[project]` must be `allow` or `deny`"),
            (7, 9, "unknown type `text` for field `agent`"),
            (
                12,
                18,
                "`max_divergence` in stage `shadow` must be between 0 and 1",
            ),
            (13, 1, "`percent` does not apply to the `shadow` stage"),
            (
                16,
                11,
                "`percent` in stage `canary` must be between 0 and 100",
            ),
            (19, 8, "stage `canary` is defined twice"),
            (22, 8, "stage `replay` must come first"),
            (
                24,
                14,
                "`error_rate` in `[rollout.rollback]` must be between 0 and 1",
            ),
        ],
    );
}

#[test]
fn a_broken_declaration_still_counts_as_declared() {
    check(
        concat!(
            base!(),
            "\"x\" = \"intt\"\n\"x?\" = \"int\"\n",
            "[rollout]\nhash_key = \"x\"\n[[rollout.stage]]\nname = \"c\"\npercent = 1\nmatch = { x = [1] }\n",
        ),
        &[
            (12, 7, "unknown type `intt` for field `x`"),
            (13, 1, "field `x` is declared twice"),
        ],
    );
}

#[test]
fn duplicates_point_at_both_places() {
    let (result, sources) = read(concat!(base!(), "\"org?\" = \"string\"\n"));
    let findings = result.unwrap_err();
    let places: Vec<_> = findings[0]
        .labels
        .iter()
        .map(|l| sources.line_col(l))
        .collect();
    assert_eq!(places, [(12, 1), (7, 1)]);
}

#[test]
fn err_fixtures_snapshot() {
    insta::with_settings!({snapshot_path => "../snapshots/project", prepend_module_to_snapshot => false}, {
        insta::glob!("data/project/err/*.toml", |path| {
            let text = std::fs::read_to_string(path).unwrap();
            let (result, sources) = read(&text);
            let findings = result.unwrap_err();
            insta::assert_snapshot!(render_human(&findings, &sources, false, 80));
        });
    });
}
