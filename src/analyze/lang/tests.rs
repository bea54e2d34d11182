//! Unit tests of the automata: search semantics, products, lengths,
//! characters above U+2FFFF, a card-number regex searched lazily.

use super::*;

fn table(atoms: Vec<Atom>) -> Table {
    Table::new(atoms)
}

#[test]
fn search_semantics_and_anchors() {
    let l = Lang::new(&Atom::Matches("x|^y".into())).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(l.accepts("axb"), Some(true));
    assert_eq!(l.accepts("yb"), Some(true));
    assert_eq!(l.accepts("ay"), Some(false));
    let l = Lang::new(&Atom::Matches("^a$".into())).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(l.accepts("a"), Some(true));
    assert_eq!(l.accepts("ba"), Some(false));
}

#[test]
fn products() {
    let t = table(vec![
        Atom::Matches("^[a-z][a-z0-9-]*$".into()),
        Atom::In(vec!["billing-bot".into(), "payroll-bot".into()]),
        Atom::Matches("sk_live_[A-Za-z0-9]{8,}".into()),
    ]);
    let mut m = Memo::default();
    let d = Deadline::none();
    assert_eq!(
        m.field(&t, &[(1, true), (0, false)], None, d, "f"),
        FieldCheck::Unsat(vec![(0, false), (1, true)])
    );
    let FieldCheck::Sat(s) = m.field(&t, &[(2, true)], None, d, "f") else {
        panic!("satisfiable");
    };
    assert!(
        regex::Regex::new("sk_live_[A-Za-z0-9]{8,}")
            .unwrap_or_else(|e| panic!("{e}"))
            .is_match(&s),
        "{s}"
    );
    // Lengths: any length from 16 on, exactly.
    let FieldCheck::Sat(s) = m.field(&t, &[(2, true)], Some(1025), d, "f") else {
        panic!("satisfiable at 1025");
    };
    assert_eq!(s.chars().count(), 1025);
    let FieldCheck::Lengths(core, set) = m.field(&t, &[(2, true)], Some(15), d, "f") else {
        panic!("not at 15");
    };
    assert_eq!(core, [(2, true)]);
    assert!(!set.contains(15) && set.contains(16) && set.contains(1 << 40));
}

#[test]
fn characters_above_the_solvers_are_searched() {
    let t = table(vec![Atom::Matches("[\\x{E0000}-\\x{E007F}]".into())]);
    let mut m = Memo::default();
    let FieldCheck::Sat(s) = m.field(&t, &[(0, true)], None, Deadline::none(), "f") else {
        panic!("satisfiable");
    };
    assert!(
        s.chars().any(|c| ('\u{E0000}'..='\u{E007F}').contains(&c)),
        "{s:?}"
    );
}

#[test]
fn a_card_number_regex_is_searched_lazily() {
    let card = "(?:4[0-9]{12}(?:[0-9]{3})?|5[1-5][0-9]{14})";
    let t = table(vec![
        Atom::Matches(card.into()),
        Atom::Matches("[0-9]{13}".into()),
    ]);
    let mut m = Memo::default();
    let d = Deadline::none();
    let got = m.field(&t, &[(0, true)], None, d, "f");
    let FieldCheck::Sat(s) = got else {
        panic!("satisfiable: {got:?}");
    };
    assert_eq!(s, "4000000000000");
    // Every card number holds 13 digits in a row.
    assert_eq!(
        m.field(&t, &[(0, true), (1, false)], None, d, "f"),
        FieldCheck::Unsat(vec![(0, true), (1, false)])
    );
}
