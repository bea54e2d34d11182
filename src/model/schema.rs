//! The request schema: the fields a request carries and their types.
//!
//! Built from `[schema]` in `sluice.toml` (see `project`). Pure data, no I/O.

use serde::{Deserialize, Serialize};

use crate::model::ir::{FieldDecl, Type};

/// The declared request fields, sorted by path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    pub fields: Vec<FieldDecl>,
}

impl Schema {
    /// Builds a schema; fields are sorted by path.
    pub fn new(mut fields: Vec<FieldDecl>) -> Self {
        fields.sort_by(|a, b| a.path.cmp(&b.path));
        Schema { fields }
    }

    pub fn get(&self, path: &str) -> Option<&FieldDecl> {
        self.fields
            .binary_search_by(|f| f.path.as_str().cmp(path))
            .ok()
            .and_then(|i| self.fields.get(i))
    }

    pub fn type_of(&self, path: &str) -> Option<Type> {
        self.get(path).map(|f| f.ty)
    }

    /// The declared field closest to `path` (for "did you mean" help), if any
    /// is close enough to be a plausible typo.
    pub fn closest(&self, path: &str) -> Option<&str> {
        closest(path, self.fields.iter().map(|f| f.path.as_str()))
    }
}

/// The candidate closest to `word` by edit distance (Levenshtein, counted in
/// characters), when it is close enough to be a plausible typo; the first of
/// equally close candidates wins.
pub fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = strsim::levenshtein(word, c);
        if best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    let limit = (word.chars().count() / 3).max(2);
    best.filter(|(d, _)| *d <= limit).map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_finds_typos_only() {
        let fields = ["tool", "agent", "args.amount", "args.country"];
        assert_eq!(
            closest("args.amout", fields.iter().copied()),
            Some("args.amount")
        );
        assert_eq!(closest("tol", fields.iter().copied()), Some("tool"));
        assert_eq!(closest("zzzzzzzz", fields.iter().copied()), None);
    }
}
