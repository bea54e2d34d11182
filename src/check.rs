//! Stage 2: syntax trees + schema → typed IR, with every language and version
//! error of the whole set. Pure: no I/O.
//!
//! Every file that parsed is type-checked, and every problem is reported (not
//! just the first). The IR is produced only when there is no error at all.
//!
//! Two comparisons live here too, for the pull-request check: [`base`] (what
//! a change introduces against its base revision, and version bumps) and
//! [`live`] (what it does to an engine's live state).

pub(crate) mod types;
mod versions;

use crate::diagnostic::Finding;
use crate::model::ir;
use crate::model::schema::Schema;
use crate::parse::ast;
use crate::source::SourceFile;

/// The result of checking a whole policy set.
#[derive(Debug)]
pub struct CheckOutput {
    /// The typed set, sorted by policy name; `None` when any finding is an error.
    pub set: Option<ir::PolicySet>,
    pub findings: Vec<Finding>,
}

/// Checks the parsed policies of a set against the request schema.
///
/// `policies` pairs each file with its syntax tree; files that failed to parse
/// are simply absent (their findings come from `parse`).
pub fn check(policies: &[(SourceFile, ast::Policy)], schema: &Schema) -> CheckOutput {
    let mut findings = Vec::new();
    let mut typed = Vec::new();
    for (file, policy) in policies {
        let (p, mut errs) = types::check_policy(file, policy, schema);
        findings.append(&mut errs);
        typed.push((file, policy, p));
    }
    let graph_input: Vec<(&SourceFile, &ast::Policy)> =
        policies.iter().map(|(f, p)| (f, p)).collect();
    findings.extend(versions::check_versions(&graph_input));
    findings.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));

    let set = if findings.iter().any(Finding::is_error) {
        None
    } else {
        let mut policies: Vec<ir::Policy> = typed.into_iter().map(|(_, _, p)| p).collect();
        policies.sort_by(|a, b| a.name.cmp(&b.name));
        Some(ir::PolicySet { policies })
    };
    CheckOutput { set, findings }
}
