//! Regex translation for the conflict analysis: a `regex`-crate pattern,
//! parsed by `regex-syntax` to HIR, becomes the SMT-LIB 2.6 text of the
//! *search* language — every string on which `Regex::is_match` is true.
//!
//! Part of the encoding (pure text, no solver). The text is parsed by Z3
//! later (see `smt`), because Z3 4.8.12's C API cannot build ranges over
//! characters outside printable ASCII (the crate passes range ends as UTF-8
//! bytes) and lacks `re.allchar`, while its SMT-LIB parser accepts both, with
//! `\u{…}` escapes.
//!
//! Search semantics. `is_match` looks for a match anywhere, so a pattern `R`
//! without anchors means `Σ* R Σ*`. `^` and `$` are zero-width assertions
//! that may sit anywhere, including inside alternations (`a|^b`) and
//! repetitions. Each sub-pattern is therefore translated into up to four
//! languages, one per combination of "this path asserted `^`" and "this path
//! asserted `$`". A path that asserts `^` may consume nothing before the
//! assertion and must start the match at position 0; a path that asserts `$`
//! may consume nothing after it and must end at the end of the input. The
//! concatenation rule enforces the "consume nothing" parts (using each
//! language's nullability), and the top level adds `Σ*` only on the sides that
//! are not anchored.
//!
//! Characters: Z3 4.8.12 knows code points up to U+2FFFF. Class ranges are
//! clipped to that; a class with nothing left is empty. Witnesses therefore
//! never contain characters above U+2FFFF.

use std::fmt::Write as _;

use regex_syntax::hir::{Class, Hir, HirKind, Look};

/// The largest code point Z3 4.8.12 represents in strings.
pub const MAX_CHAR: u32 = 0x2FFFF;

/// Repetitions of anchored sub-patterns are unrolled; past this many copies
/// the pattern is reported as too large to encode.
const MAX_UNROLL: u32 = 64;

/// Translations longer than this are refused (a pathological class or
/// repetition); the rule is then reported as not analysed.
const MAX_TEXT: usize = 1 << 20;

/// Why a pattern could not be translated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegexError {
    #[error("the pattern does not parse: {0}")]
    Parse(String),
    #[error("the pattern uses {0}, which the analysis cannot encode")]
    Unsupported(&'static str),
    #[error("the pattern is too large to encode")]
    TooLarge,
}

/// The SMT-LIB text of the language of strings `s` for which
/// `Regex::new(pattern)?.is_match(s)` holds.
pub fn search_language(pattern: &str) -> Result<String, RegexError> {
    let hir = regex_syntax::Parser::new()
        .parse(pattern)
        .map_err(|e| RegexError::Parse(e.to_string()))?;
    let v = translate(&hir)?;
    let all = "re.all";
    let mut parts = Vec::new();
    for (i, lang) in v.0.iter().enumerate() {
        let Some(lang) = lang else { continue };
        let (start, end) = (i & 1 != 0, i & 2 != 0);
        let mut seq = Vec::new();
        if !start {
            seq.push(all.to_string());
        }
        if !lang.is_eps() {
            seq.push(lang.re.clone());
        }
        if !end {
            seq.push(all.to_string());
        }
        parts.push(concat_all(seq));
    }
    let text = union_all(parts);
    if text.len() > MAX_TEXT {
        return Err(RegexError::TooLarge);
    }
    Ok(text)
}

/// An SMT-LIB string literal for `s`: printable ASCII as is (with `"`
/// doubled), everything else — and `\` — as `\u{…}`. `None` when `s` holds a
/// character above [`MAX_CHAR`].
pub fn smtlib_string(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\"\""),
            '\\' => out.push_str("\\u{5c}"),
            ' '..='~' => out.push(c),
            c if u32::from(c) <= MAX_CHAR => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            _ => return None,
        }
    }
    out.push('"');
    Some(out)
}

/// One language with its nullability (whether it holds the empty string).
#[derive(Debug, Clone)]
struct Lang {
    re: String,
    nullable: bool,
}

const EPS: &str = "(str.to_re \"\")";

impl Lang {
    fn eps() -> Lang {
        Lang {
            re: EPS.to_string(),
            nullable: true,
        }
    }

    fn is_eps(&self) -> bool {
        self.re == EPS
    }
}

/// The four languages of a sub-pattern, indexed by
/// `asserted_start as usize | (asserted_end as usize) << 1`; `None` is empty.
#[derive(Debug, Clone, Default)]
struct Variants([Option<Lang>; 4]);

impl Variants {
    fn free(lang: Lang) -> Variants {
        Variants([Some(lang), None, None, None])
    }

    fn only(index: usize, lang: Lang) -> Variants {
        let mut v = Variants::default();
        if let Some(slot) = v.0.get_mut(index) {
            *slot = Some(lang);
        }
        v
    }

    fn has_anchors(&self) -> bool {
        self.0.iter().skip(1).any(Option::is_some)
    }

    /// Adds `lang` to the variant at `index` (union).
    fn add(&mut self, index: usize, lang: Lang) {
        let Some(slot) = self.0.get_mut(index) else {
            return;
        };
        *slot = Some(match slot.take() {
            None => lang,
            Some(old) => Lang {
                re: union_all(vec![old.re, lang.re]),
                nullable: old.nullable || lang.nullable,
            },
        });
    }

    fn union(mut self, other: Variants) -> Variants {
        for (i, lang) in other.0.into_iter().enumerate() {
            if let Some(lang) = lang {
                self.add(i, lang);
            }
        }
        self
    }

    /// `self` followed by `other`.
    fn concat(&self, other: &Variants) -> Result<Variants, RegexError> {
        let mut out = Variants::default();
        for (i, a) in self.0.iter().enumerate() {
            let Some(a) = a else { continue };
            for (j, b) in other.0.iter().enumerate() {
                let Some(b) = b else { continue };
                let (a_end, b_start) = (i & 2 != 0, j & 1 != 0);
                // `^` in `b`: `a` must have consumed nothing.
                let a = if b_start {
                    if !a.nullable {
                        continue;
                    }
                    Lang::eps()
                } else {
                    a.clone()
                };
                // `$` in `a`: `b` must consume nothing.
                let b = if a_end {
                    if !b.nullable {
                        continue;
                    }
                    Lang::eps()
                } else {
                    b.clone()
                };
                let lang = Lang {
                    nullable: a.nullable && b.nullable,
                    re: concat_all(vec![a.re, b.re]),
                };
                if lang.re.len() > MAX_TEXT {
                    return Err(RegexError::TooLarge);
                }
                out.add(i | j, lang);
            }
        }
        Ok(out)
    }
}

fn translate(hir: &Hir) -> Result<Variants, RegexError> {
    match hir.kind() {
        HirKind::Empty => Ok(Variants::free(Lang::eps())),
        HirKind::Literal(lit) => {
            let text = std::str::from_utf8(&lit.0)
                .map_err(|_| RegexError::Unsupported("bytes that are not UTF-8"))?;
            let lit = smtlib_string(text).ok_or(RegexError::Unsupported(
                "characters above U+2FFFF in a literal",
            ))?;
            Ok(Variants::free(Lang {
                re: format!("(str.to_re {lit})"),
                nullable: text.is_empty(),
            }))
        }
        HirKind::Class(class) => Ok(match class_text(class)? {
            Some(re) => Variants::free(Lang {
                re,
                nullable: false,
            }),
            None => Variants::default(),
        }),
        HirKind::Look(look) => match look {
            Look::Start => Ok(Variants::only(1, Lang::eps())),
            Look::End => Ok(Variants::only(2, Lang::eps())),
            Look::StartLF | Look::EndLF | Look::StartCRLF | Look::EndCRLF => {
                Err(RegexError::Unsupported("line anchors"))
            }
            _ => Err(RegexError::Unsupported("word boundaries")),
        },
        HirKind::Capture(c) => translate(&c.sub),
        HirKind::Concat(parts) => {
            let mut acc = Variants::free(Lang::eps());
            for p in parts {
                acc = acc.concat(&translate(p)?)?;
            }
            Ok(acc)
        }
        HirKind::Alternation(alts) => {
            let mut acc = Variants::default();
            for a in alts {
                acc = acc.union(translate(a)?);
            }
            Ok(acc)
        }
        HirKind::Repetition(rep) => {
            let sub = translate(&rep.sub)?;
            if sub.has_anchors() {
                repeat_anchored(&sub, rep.min, rep.max)
            } else {
                Ok(match &sub.0[0] {
                    None if rep.min == 0 => Variants::free(Lang::eps()),
                    None => Variants::default(),
                    Some(lang) => Variants::free(repeat(lang, rep.min, rep.max)),
                })
            }
        }
    }
}

/// `lang{min,max}` for an anchor-free language.
fn repeat(lang: &Lang, min: u32, max: Option<u32>) -> Lang {
    let nullable = min == 0 || lang.nullable;
    let r = &lang.re;
    let re = match (min, max) {
        (_, Some(0)) => EPS.to_string(),
        (0, None) => format!("(re.* {r})"),
        (1, None) => format!("(re.+ {r})"),
        (0, Some(1)) => format!("(re.opt {r})"),
        (1, Some(1)) => r.clone(),
        (n, None) => format!("(re.++ ((_ re.loop {n} {n}) {r}) (re.* {r}))"),
        (n, Some(m)) => format!("((_ re.loop {n} {m}) {r})"),
    };
    Lang { re, nullable }
}

/// `sub{min,max}` when `sub` contains anchors: unrolled with the
/// concatenation rule; an unbounded tail uses the closed form of the star
/// (an iteration that asserts `^` is preceded only by empty ones, one that
/// asserts `$` is followed only by empty ones).
fn repeat_anchored(sub: &Variants, min: u32, max: Option<u32>) -> Result<Variants, RegexError> {
    let copies = max.unwrap_or(min);
    if copies > MAX_UNROLL {
        return Err(RegexError::TooLarge);
    }
    let mut acc = Variants::free(Lang::eps());
    for _ in 0..min {
        acc = acc.concat(sub)?;
    }
    match max {
        Some(m) => {
            let optional = sub.clone().union(Variants::free(Lang::eps()));
            for _ in min..m {
                acc = acc.concat(&optional)?;
            }
        }
        None => acc = acc.concat(&star_anchored(sub))?,
    }
    Ok(acc)
}

fn star_anchored(sub: &Variants) -> Variants {
    let free = sub.0[0].as_ref().map_or_else(Lang::eps, |l| Lang {
        re: format!("(re.* {})", l.re),
        nullable: true,
    });
    let mut out = Variants::free(free.clone());
    let seq = |parts: Vec<&Lang>| Lang {
        nullable: parts.iter().all(|l| l.nullable),
        re: concat_all(parts.iter().map(|l| l.re.clone()).collect()),
    };
    if let Some(s) = &sub.0[1] {
        out.add(1, seq(vec![s, &free]));
    }
    if let Some(e) = &sub.0[2] {
        out.add(2, seq(vec![&free, e]));
    }
    if let Some(both) = &sub.0[3] {
        out.add(3, both.clone());
    }
    if let (Some(s), Some(e)) = (&sub.0[1], &sub.0[2]) {
        out.add(3, seq(vec![s, &free, e]));
    }
    out
}

/// The text of a character class, clipped to [`MAX_CHAR`]; `None` when empty.
fn class_text(class: &Class) -> Result<Option<String>, RegexError> {
    let ranges: Vec<(u32, u32)> = match class {
        Class::Unicode(c) => c
            .ranges()
            .iter()
            .map(|r| (u32::from(r.start()), u32::from(r.end())))
            .collect(),
        Class::Bytes(c) => {
            let mut out = Vec::new();
            for r in c.ranges() {
                if r.end() > 0x7F {
                    return Err(RegexError::Unsupported("byte classes beyond ASCII"));
                }
                out.push((u32::from(r.start()), u32::from(r.end())));
            }
            out
        }
    };
    let mut parts = Vec::new();
    for (lo, hi) in ranges {
        if lo > MAX_CHAR {
            continue;
        }
        let hi = hi.min(MAX_CHAR);
        let (Some(l), Some(h)) = (char::from_u32(lo), char::from_u32(hi)) else {
            continue;
        };
        let (Some(ls), Some(hs)) = (smtlib_string(&l.to_string()), smtlib_string(&h.to_string()))
        else {
            continue;
        };
        parts.push(if lo == hi {
            format!("(str.to_re {ls})")
        } else {
            format!("(re.range {ls} {hs})")
        });
    }
    if parts.is_empty() {
        return Ok(None);
    }
    let text = union_all(parts);
    if text.len() > MAX_TEXT {
        return Err(RegexError::TooLarge);
    }
    Ok(Some(text))
}

fn concat_all(parts: Vec<String>) -> String {
    let mut parts: Vec<String> = parts.into_iter().filter(|p| p != EPS).collect();
    match parts.len() {
        0 => EPS.to_string(),
        1 => parts.pop().unwrap_or_default(),
        _ => format!("(re.++ {})", parts.join(" ")),
    }
}

fn union_all(mut parts: Vec<String>) -> String {
    match parts.len() {
        0 => "re.none".to_string(),
        1 => parts.pop().unwrap_or_default(),
        _ => format!("(re.union {})", parts.join(" ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unanchored_literal_is_surrounded() {
        assert_eq!(
            search_language("ab").as_deref(),
            Ok("(re.++ re.all (str.to_re \"ab\") re.all)")
        );
    }

    #[test]
    fn anchors_drop_the_open_sides() {
        assert_eq!(search_language("^ab$").as_deref(), Ok("(str.to_re \"ab\")"));
        assert_eq!(
            search_language("^a").as_deref(),
            Ok("(re.++ (str.to_re \"a\") re.all)")
        );
    }

    #[test]
    fn anchor_after_consumption_is_empty() {
        assert_eq!(search_language("a^b").as_deref(), Ok("re.none"));
        assert_eq!(search_language("a$b").as_deref(), Ok("re.none"));
    }

    #[test]
    fn anchor_inside_alternation() {
        let t = search_language("x|^y").unwrap_or_default();
        assert!(t.contains("(re.++ re.all (str.to_re \"x\") re.all)"), "{t}");
        assert!(t.contains("(re.++ (str.to_re \"y\") re.all)"), "{t}");
    }

    #[test]
    fn escapes() {
        assert_eq!(
            smtlib_string("a\"b\\é").as_deref(),
            Some("\"a\"\"b\\u{5c}\\u{e9}\"")
        );
        assert_eq!(smtlib_string("\u{30000}"), None);
    }
}
