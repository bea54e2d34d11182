//! Parser tests: fixtures under `tests/data/parse/{ok,err}`. `ok` files must
//! parse without findings; every `err` file's rendered diagnostic is a
//! snapshot.

use sluice::diagnostic::{Sources, render_human};
use sluice::parse::parse_policy;
use sluice::source::SourceFile;

fn load(path: &std::path::Path) -> SourceFile {
    let text = std::fs::read_to_string(path).unwrap();
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    SourceFile::new(name, text)
}

#[test]
fn ok_fixtures_parse() {
    insta::glob!("data/parse/ok/*.policy", |path| {
        let file = load(path);
        if let Err(findings) = parse_policy(&file) {
            let mut sources = Sources::new();
            sources.add(file.clone());
            panic!(
                "{} should parse:\n{}",
                file.name,
                render_human(&findings, &sources, false, 100)
            );
        }
    });
}

#[test]
fn err_fixtures_snapshot() {
    insta::with_settings!({snapshot_path => "../snapshots/parse", prepend_module_to_snapshot => false}, {
        insta::glob!("data/parse/err/*.policy", |path| {
            let file = load(path);
            let findings = parse_policy(&file).expect_err("err fixture must not parse");
            assert!(findings.iter().all(|f| f.code == "parse::syntax"));
            let mut sources = Sources::new();
            sources.add(file.clone());
            insta::assert_snapshot!(render_human(&findings, &sources, false, 100));
        });
    });
}

#[test]
fn spec_example_shape() {
    let file = load(std::path::Path::new(
        "tests/data/parse/ok/0001_spec_example.policy",
    ));
    let p = parse_policy(&file).unwrap();
    assert_eq!(p.name.node, "payments");
    assert_eq!(p.version.node.to_string(), "1.4.0");
    assert_eq!(p.requires.len(), 1);
    assert_eq!(p.items.len(), 5);
    println!("{p:#?}");
}

#[test]
fn chain_spans_cover_their_operands_only() {
    use sluice::parse::ast::{ExprKind, Item};
    let text =
        "policy a version 1.0.0 { rule r { when tool == \"a\" or tool == \"b\" // x\n allow } }";
    let p = parse_policy(&SourceFile::new("a.policy", text)).unwrap();
    let Item::Rule(r) = &p.items[0] else {
        panic!("a rule")
    };
    let when = r.when.as_ref().unwrap();
    assert!(matches!(when.node, ExprKind::Or(_)));
    assert_eq!(
        &text[when.span.start..when.span.end],
        "tool == \"a\" or tool == \"b\""
    );
}

#[test]
fn a_byte_order_mark_is_accepted() {
    let text = "\u{feff}policy a version 1.0.0 { }\n";
    assert!(parse_policy(&SourceFile::new("a.policy", text)).is_ok());
}

/// A rule whose condition nests `depth` levels, alternating `not` and
/// parenthesised `and`/`or` chains (the deepest JSON per level).
fn nested_policy(depth: usize) -> String {
    let mut cond = "args.amount > 1".to_string();
    for i in 0..depth {
        cond = if i % 2 == 0 {
            format!("not {cond}")
        } else {
            format!("(agent == \"a{i}\" and {cond} or org == \"o{i}\")")
        };
    }
    format!(
        "policy deep version 1.0.0 {{\n  rule r {{\n    when tool == \"t\" and {cond}\n    deny D \"d\"\n  }}\n}}\n"
    )
}

/// Held-out case 2.11: one nesting limit. At the limit a set checks,
/// compiles, and its artifact loads in the engine (the JSON reader's
/// recursion limit); one level deeper is a located `parse::syntax` error,
/// and a pathological depth is that error too, not a stack overflow.
#[test]
fn nesting_is_bounded_by_one_limit() {
    let max = sluice::parse::MAX_NESTING;
    let at = SourceFile::new("deep.policy", nested_policy(max));
    let policy = parse_policy(&at).unwrap_or_else(|e| panic!("{e:?}"));
    let toml = SourceFile::new(
        "sluice.toml",
        "[project]\nname = \"p\"\ndefault = \"allow\"\n\n[schema]\ntool = \"string\"\nagent = \"string\"\norg = \"string\"\n\"args.amount?\" = \"int\"\n",
    );
    let project = sluice::project::parse(&toml).unwrap();
    let parsed = [(at.clone(), policy)];
    let out = sluice::check::check(&parsed, &project.schema);
    let set = sluice::compile::lower(&out.checked.unwrap());
    let artifact = sluice::compile::artifact::Artifact::new(
        "p",
        project.default,
        project.schema.clone(),
        set,
        None,
    )
    .unwrap();
    let json = serde_json::to_string(&artifact).unwrap();
    let loaded: sluice::compile::artifact::Artifact =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("the engine refuses it: {e}"));
    sluice::eval::Evaluator::new(&loaded).unwrap();

    let over = SourceFile::new("deep.policy", nested_policy(max + 1));
    let errs = parse_policy(&over).unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].code.as_str(), "parse::syntax");
    assert!(
        errs[0].message.contains(&max.to_string()),
        "{}",
        errs[0].message
    );
    assert!(!errs[0].labels.is_empty());

    for text in [
        format!(
            "policy p version 1.0.0 {{\n  rule r {{\n    when {}x{}\n    allow\n  }}\n}}\n",
            "(".repeat(5000),
            ")".repeat(5000)
        ),
        format!(
            "policy p version 1.0.0 {{\n  rule r {{\n    when {}x\n    allow\n  }}\n}}\n",
            "not ".repeat(5000)
        ),
    ] {
        let errs = parse_policy(&SourceFile::new("p.policy", text)).unwrap_err();
        assert_eq!(errs[0].code.as_str(), "parse::syntax");
    }
}
