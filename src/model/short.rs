//! Hashes abbreviated for people: an artifact's hash or a commit's sha in a
//! status line, a log message or a reason. Display only: an abbreviation is
//! never used to look anything up.

/// A hash (an artifact's, or a commit's in the daemon's lines) cut to its
/// first 12 characters; a shorter one whole.
pub fn hash(s: &str) -> &str {
    s.get(..12).unwrap_or(s)
}

/// A commit's sha cut to 7 characters, as `git log --oneline` shows it; a
/// shorter one whole.
pub fn commit(s: &str) -> &str {
    s.get(..7).unwrap_or(s)
}
