//! The pure stages run in order over in-memory sources: `sluice.toml` →
//! parse every policy file → check the whole set → conflict analysis (on a
//! set that type-checks).
//!
//! Used by every command that needs a checked policy set (check, compile,
//! test, eval) and by anything that reads sources from somewhere other than
//! the working tree (a git revision). Pure: no I/O.

use std::collections::HashMap;

use crate::analyze;
use crate::check;
use crate::compile;
use crate::diagnostic::{Code, Finding, Label, Sources};
use crate::model::inventory::Inventory;
use crate::model::ir::PolicySet;
use crate::parse::{self, ast};
use crate::project::{self, Project};
use crate::source::{SourceFile, Span};

/// Everything known about a policy set after checking it.
#[derive(Debug)]
pub struct Checked {
    /// `None` when `sluice.toml` itself has errors.
    pub project: Option<Project>,
    /// The parsed policies (files with syntax errors are absent).
    pub parsed: Vec<(SourceFile, ast::Policy)>,
    /// The typed set; `None` when any finding is an error.
    pub set: Option<PolicySet>,
    /// The agent inventory (`agents/*.toml`); empty without one, or when it
    /// has errors (they are among the findings).
    pub inventory: Inventory,
    /// The agent files the inventory was read from.
    pub agent_files: Vec<SourceFile>,
    /// Every finding, sorted by file and position.
    pub findings: Vec<Finding>,
    /// Every file read, for rendering findings.
    pub sources: Sources,
    /// Number of policy files.
    pub files: usize,
}

impl Checked {
    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(Finding::is_error)
    }

    /// Number of rules and limits in the files that parsed.
    pub fn rule_count(&self) -> usize {
        self.parsed.iter().map(|(_, p)| p.items.len()).sum()
    }
}

/// Parses `sluice.toml` and every policy file, and checks the whole set,
/// conflict analysis included.
///
/// Every policy file is parsed even when `sluice.toml` is broken; the set is
/// only type-checked when there is a schema to check it against.
pub fn check_sources(project_file: &SourceFile, policy_files: &[SourceFile]) -> Checked {
    check_repo(project_file, policy_files, &[])
}

/// [`check_sources`] of a repository with an agent inventory
/// (`agent_files`: its `agents/*.toml`; none, no inventory): the inventory
/// is read, checked against the set (`inventory::*`) and carried by the
/// artifact.
pub fn check_repo(
    project_file: &SourceFile,
    policy_files: &[SourceFile],
    agent_files: &[SourceFile],
) -> Checked {
    let mut checked = check_reusing(project_file, policy_files, agent_files, None);
    checked.analyze(&analyze::Options::default());
    checked
}

/// [`check_sources`] without the conflict analysis: for the pull-request
/// check, which analyses two revisions together (`review::analyze_change`).
pub fn check_unanalysed(project_file: &SourceFile, policy_files: &[SourceFile]) -> Checked {
    check_reusing(project_file, policy_files, &[], None)
}

/// [`check_repo`] without the conflict analysis.
pub fn check_repo_unanalysed(
    project_file: &SourceFile,
    policy_files: &[SourceFile],
    agent_files: &[SourceFile],
) -> Checked {
    check_reusing(project_file, policy_files, agent_files, None)
}

/// [`check_unanalysed`] for the other revision of a pull request: a file
/// `known` parsed with the same name and text is not parsed again (the two
/// revisions share most of their files, and parsing is most of checking).
pub fn check_unanalysed_sharing(
    project_file: &SourceFile,
    policy_files: &[SourceFile],
    agent_files: &[SourceFile],
    known: &Checked,
) -> Checked {
    check_reusing(project_file, policy_files, agent_files, Some(known))
}

fn check_reusing(
    project_file: &SourceFile,
    policy_files: &[SourceFile],
    agent_files: &[SourceFile],
    known: Option<&Checked>,
) -> Checked {
    let known: HashMap<&str, &(SourceFile, ast::Policy)> = known
        .map(|k| k.parsed.iter().map(|p| (p.0.name.as_str(), p)).collect())
        .unwrap_or_default();
    let mut sources = Sources::new();
    sources.add(project_file.clone());
    let mut findings = Vec::new();
    let (project, mut warnings) = project::parse_reporting(project_file);
    findings.append(&mut warnings);
    let project = match project {
        Ok(p) => Some(p),
        Err(mut e) => {
            findings.append(&mut e);
            None
        }
    };
    let mut parsed = Vec::new();
    for file in policy_files {
        sources.add(file.clone());
        if let Some((known_file, policy)) = known.get(file.name.as_str())
            && known_file.text == file.text
        {
            parsed.push((file.clone(), policy.clone()));
            continue;
        }
        match parse::parse_policy(file) {
            Ok(p) => parsed.push((file.clone(), p)),
            Err(mut e) => findings.append(&mut e),
        }
    }
    for file in agent_files {
        sources.add(file.clone());
    }
    let inventory = match crate::project::parse_inventory(agent_files) {
        Ok(i) => i,
        Err(mut e) => {
            findings.append(&mut e);
            Inventory::default()
        }
    };
    let mut set = None;
    if project.is_some() && !inventory.agents.iter().any(|a| a.cost.is_some()) {
        findings.extend(cost_without_envelope(project_file, &inventory));
    }
    if let Some(project) = &project {
        let out = check::check(&parsed, &project.schema);
        findings.extend(out.findings);
        set = out.checked.as_ref().map(compile::lower);
        if let (Some(set), Some(observe)) = (&set, project::observe_span(&project_file.text)) {
            findings.extend(analyze::governance::observes_security(
                project_file,
                observe,
                &project.governance,
                set,
            ));
        }
        if let Some(set) = set.as_ref().filter(|_| !inventory.is_empty()) {
            findings.extend(analyze::inventory::check(&parsed, &inventory));
            findings.extend(analyze::inventory::uncovered_tools(
                set,
                &project.schema,
                project.default,
                &inventory,
                agent_files,
            ));
        }
    }
    findings.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    if findings.iter().any(Finding::is_error) {
        set = None;
    }
    Checked {
        project,
        parsed,
        set,
        inventory,
        agent_files: agent_files.to_vec(),
        findings,
        sources,
        files: policy_files.len(),
    }
}

/// `plan::cost_without_envelope`: every stage gating on `max_cost_ratio`
/// in a repository whose inventory gives no agent a cost envelope (or that
/// has none): the gate reads no agent, so it waits, and the stage pauses at
/// its `max_duration`.
fn cost_without_envelope(project_file: &SourceFile, inventory: &Inventory) -> Vec<Finding> {
    let why = if inventory.is_empty() {
        "the repository has no agent inventory (agents/*.toml)"
    } else {
        "no agent of agents/*.toml has a `cost` envelope"
    };
    project::cost_gate_spans(&project_file.text)
        .into_iter()
        .map(|(stage, span)| {
            Finding::new(
                Code::PlanCostWithoutEnvelope,
                format!(
                    "stage `{stage}` gates on `max_cost_ratio`, but {why}: the gate reads no agent, \
                     so it waits and the stage pauses at its `max_duration`"
                ),
            )
            .with_label(
                Label::new(
                    project_file.name.clone(),
                    Span::new(span.start, span.end),
                )
                .with_message("reads each agent's calls against its `cost.calls_per_day`"),
            )
            .with_help(
                "give the agents `cost = { calls_per_day = N }` in agents/*.toml, or remove `max_cost_ratio`",
            )
        })
        .collect()
}

impl Checked {
    /// The revision the conflict analysis runs on: a set that type-checks.
    pub(crate) fn revision(&self) -> Option<analyze::Revision<'_>> {
        let (project, set) = (self.project.as_ref()?, self.set.as_ref()?);
        Some(analyze::Revision {
            set,
            schema: &project.schema,
            default: project.default,
            evaluator: None,
        })
    }

    /// Runs the whole-set conflict analysis, when the set type-checks, and
    /// adds its findings.
    pub fn analyze(&mut self, opts: &analyze::Options) -> Option<analyze::Stats> {
        let r = self.revision()?;
        let report = analyze::analyze(r.set, r.schema, r.default, opts);
        self.add_findings(report.findings);
        self.analyze_inventory(opts);
        Some(report.stats)
    }

    /// Asks the solver whether the set lets an inventoried agent call a
    /// tool outside its inventory (`inventory::excess_privilege`), when the
    /// set type-checks and has an inventory; adds the findings.
    pub fn analyze_inventory(&mut self, opts: &analyze::Options) {
        let Some(r) = self.revision() else {
            return;
        };
        let found = analyze::excess_privilege(
            r.set,
            r.schema,
            r.default,
            &self.inventory,
            &self.agent_files,
            opts.timeout_ms,
        );
        self.add_findings(found);
    }

    /// Adds findings (kept sorted); an error among them leaves no set.
    pub(crate) fn add_findings(&mut self, findings: Vec<Finding>) {
        if findings.iter().any(Finding::is_error) {
            self.set = None;
        }
        self.findings.extend(findings);
        self.findings
            .sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    }

    /// The artifact of a set that checked without errors; `None` otherwise.
    pub fn artifact(
        &self,
        source_commit: Option<String>,
    ) -> Option<Result<crate::compile::artifact::Artifact, crate::compile::artifact::ArtifactError>>
    {
        let (project, set) = (self.project.as_ref()?, self.set.as_ref()?);
        Some(
            crate::compile::artifact::Artifact::new(
                project.name.clone(),
                project.default,
                project.schema.clone(),
                set.clone(),
                source_commit,
            )
            .and_then(|a| a.with_governance(project.governance.clone()))
            .and_then(|a| a.with_inventory(self.inventory.clone())),
        )
    }
}
