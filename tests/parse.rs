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
