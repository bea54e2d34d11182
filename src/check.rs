//! Stage 2: syntax trees + schema → a checked set, with every language and
//! version error of the whole set. Pure: no I/O.
//!
//! Every file that parsed is type-checked, and every problem is reported (not
//! just the first). What the check proves is handed on as a [`Checked`] set:
//! the syntax trees together with the schema that types every field they
//! read. Only this module makes one, and only when there is no error at all;
//! `compile::lower` turns it into IR. This module builds no IR itself.

mod types;
mod versions;

use crate::diagnostic::Finding;
use crate::model::schema::Schema;
use crate::parse::ast;
use crate::source::SourceFile;

/// The result of checking a whole policy set.
#[derive(Debug)]
pub struct CheckOutput<'a> {
    /// The checked set; `None` when any finding is an error.
    pub checked: Option<Checked<'a>>,
    pub findings: Vec<Finding>,
}

/// A policy set with no language or version error: its policies sorted by
/// name, each proved against the schema.
#[derive(Debug, Clone)]
pub struct Checked<'a> {
    policies: Vec<CheckedPolicy<'a>>,
}

impl<'a> Checked<'a> {
    /// The policies, sorted by name.
    pub fn policies(&self) -> &[CheckedPolicy<'a>] {
        &self.policies
    }
}

/// One policy that type-checks: every field it reads is declared in
/// [`CheckedPolicy::schema`], every operator fits the types of its operands,
/// every regex compiles and is encodable, and its names are unique.
#[derive(Debug, Clone, Copy)]
pub struct CheckedPolicy<'a> {
    file: &'a SourceFile,
    policy: &'a ast::Policy,
    schema: &'a Schema,
}

impl<'a> CheckedPolicy<'a> {
    /// The file the policy was read from.
    pub fn file(&self) -> &'a SourceFile {
        self.file
    }

    /// The policy's syntax tree.
    pub fn ast(&self) -> &'a ast::Policy {
        self.policy
    }

    /// The schema that types every field the policy reads.
    pub fn schema(&self) -> &'a Schema {
        self.schema
    }
}

/// Type-checks one policy against the schema: the checked policy, or every
/// language error it has. Version errors are whole-set ones ([`check`]).
pub fn check_policy<'a>(
    file: &'a SourceFile,
    policy: &'a ast::Policy,
    schema: &'a Schema,
) -> Result<CheckedPolicy<'a>, Vec<Finding>> {
    let errors = types::check_policy(file, policy, schema);
    if !errors.iter().any(Finding::is_error) {
        Ok(CheckedPolicy {
            file,
            policy,
            schema,
        })
    } else {
        Err(errors)
    }
}

/// Checks the parsed policies of a set against the request schema.
///
/// `policies` pairs each file with its syntax tree; files that failed to parse
/// are simply absent (their findings come from `parse`).
pub fn check<'a>(policies: &'a [(SourceFile, ast::Policy)], schema: &'a Schema) -> CheckOutput<'a> {
    let mut findings = Vec::new();
    for (file, policy) in policies {
        findings.extend(types::check_policy(file, policy, schema));
    }
    let graph_input: Vec<(&SourceFile, &ast::Policy)> =
        policies.iter().map(|(f, p)| (f, p)).collect();
    findings.extend(versions::check_versions(&graph_input));
    findings.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));

    let checked = if findings.iter().any(Finding::is_error) {
        None
    } else {
        let mut policies: Vec<CheckedPolicy<'a>> = policies
            .iter()
            .map(|(file, policy)| CheckedPolicy {
                file,
                policy,
                schema,
            })
            .collect();
        policies.sort_by(|a, b| a.policy.name.node.cmp(&b.policy.name.node));
        Some(Checked { policies })
    };
    CheckOutput { checked, findings }
}
