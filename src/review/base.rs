//! The pull-request comparison: what a change introduces against its base
//! revision. Pure: both revisions' sources are already read and checked.
//!
//! - [`label`]: every head finding, labelled with whether the change
//!   introduced it (`introduced: false` when the base had it too). Findings
//!   are matched by [`identity`] (code, the file, policy and rule of each
//!   label, and the message), never by line numbers, which shift whenever
//!   lines above move; a finding that occurs `n` times at base labels at
//!   most `n` identical ones at head as old. [`anchor`] puts a new
//!   finding's label on a changed rule first.
//! - [`version_changes`]: `version::not_bumped` (a policy's content changed,
//!   its version did not) and `version::regressed` (its version went down).
//!   Policies are matched by name, whatever file holds them; a policy's
//!   content is its IR — tier, requirements, rules and limits as compiled —
//!   so layout, comments and moving the file are not changes. When a policy
//!   has type errors on either side its syntax tree is compared instead
//!   (spans and comments are not part of it either).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use semver::Version;

use crate::check;
use crate::compile;
use crate::diagnostic::{Code, Finding, Label, identity};
use crate::model::ir;
use crate::model::schema::Schema;
use crate::parse::ast;
use crate::source::SourceFile;

/// Every finding of `head`, in head order, each labelled with whether the
/// change introduced it: `introduced` is `false` when `base` has a finding
/// of the same [`identity`] (matched as many times as it occurs there).
pub fn label(base: &[Finding], head: Vec<Finding>) -> Vec<Finding> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for f in base {
        *seen.entry(identity(f)).or_default() += 1;
    }
    head.into_iter()
        .map(|mut f| {
            let known = match seen.get_mut(&identity(&f)) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    true
                }
                _ => false,
            };
            f.introduced = Some(!known);
            f
        })
        .collect()
}

/// Puts first the label of a finding the change introduced that is on a
/// changed rule (`policy.rule` in `changed`), when the first one is not:
/// the finding is then shown where the change is (the diff's lines, for
/// GitHub's annotations and code scanning). The other labels keep their
/// order; [`identity`] does not depend on it.
pub fn anchor(f: &mut Finding, changed: &BTreeSet<String>) {
    if f.introduced != Some(true) {
        return;
    }
    let on_changed = |l: &Label| match (&l.policy, &l.rule) {
        (Some(p), Some(r)) => changed.contains(&format!("{p}.{r}")),
        _ => false,
    };
    if f.labels.first().is_none_or(&on_changed) {
        return;
    }
    if let Some(i) = f.labels.iter().position(on_changed) {
        let l = f.labels.remove(i);
        f.labels.insert(0, l);
    }
}

/// The findings of `from` that `minus` does not have, matched by
/// [`identity`] as many times as they occur.
pub fn unmatched(from: Vec<Finding>, minus: &[Finding]) -> Vec<Finding> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for f in minus {
        *seen.entry(identity(f)).or_default() += 1;
    }
    from.into_iter()
        .filter(|f| match seen.get_mut(&identity(f)) {
            Some(n) if *n > 0 => {
                *n -= 1;
                false
            }
            _ => true,
        })
        .collect()
}

/// One side of the comparison: the parsed policies of a revision and its
/// schema (`None` when its `sluice.toml` does not check).
#[derive(Debug, Clone, Copy)]
pub struct Side<'a> {
    pub parsed: &'a [(SourceFile, ast::Policy)],
    pub schema: Option<&'a Schema>,
}

/// `version::not_bumped` and `version::regressed` for every policy present at
/// both revisions. Labels point at the head version (and at the head rules
/// and limits that changed).
pub fn version_changes(base: Side<'_>, head: Side<'_>) -> Vec<Finding> {
    let base_by_name = by_name(base.parsed);
    let mut findings = Vec::new();
    for (name, (hfile, hpolicy)) in by_name(head.parsed) {
        let Some((bfile, bpolicy)) = base_by_name.get(name) else {
            continue;
        };
        let (bv, hv) = (&bpolicy.version.node, &hpolicy.version.node);
        let version_label = |msg: String| {
            Label::new(&hfile.name, hpolicy.version.span)
                .with_message(msg)
                .in_rule(name, None)
        };
        if hv < bv {
            findings.push(
                Finding::new(
                    Code::VersionRegressed,
                    format!("policy `{name}` goes from version {bv} down to {hv}"),
                )
                .with_label(version_label(format!("was {bv} at the base revision")))
                .with_help(format!(
                    "versions only go up: set a version above {bv}, e.g. `{}`",
                    bumps(bv).0
                )),
            );
            continue;
        }
        if hv != bv {
            continue;
        }
        let Some(changes) = changes(bfile, bpolicy, base.schema, hfile, hpolicy, head.schema)
        else {
            continue;
        };
        let (patch, minor, major) = bumps(bv);
        let what = if changes.is_empty() {
            "its content changed".to_string()
        } else {
            changes
                .iter()
                .map(|c| c.what.clone())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut f = Finding::new(
            Code::VersionNotBumped,
            format!("policy `{name}` changed ({what}) but its version is still {hv}"),
        )
        .with_label(version_label("version unchanged".to_string()))
        .with_help(format!(
            "raise the version above {bv}: `{patch}` for a fix, `{minor}` for new behaviour, \
             `{major}` for a breaking change"
        ));
        for c in changes {
            if let Some((span, rule)) = c.at {
                f = f.with_label(
                    Label::new(&hfile.name, span)
                        .with_message(c.what)
                        .in_rule(name, Some(rule)),
                );
            }
        }
        findings.push(f);
    }
    findings.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    findings
}

/// The next patch, minor and major versions.
fn bumps(v: &Version) -> (Version, Version, Version) {
    (
        Version::new(v.major, v.minor, v.patch.saturating_add(1)),
        Version::new(v.major, v.minor.saturating_add(1), 0),
        Version::new(v.major.saturating_add(1), 0, 0),
    )
}

/// Each policy by name; with duplicates, the first file by path keeps the
/// name (as `version::duplicate` decides).
fn by_name(parsed: &[(SourceFile, ast::Policy)]) -> BTreeMap<&str, (&SourceFile, &ast::Policy)> {
    let mut sorted: Vec<&(SourceFile, ast::Policy)> = parsed.iter().collect();
    sorted.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    let mut out = BTreeMap::new();
    for (file, policy) in sorted {
        out.entry(policy.name.node.as_str())
            .or_insert((file, policy));
    }
    out
}

/// One difference between two revisions of a policy, and where it is at head.
struct Change {
    what: String,
    at: Option<(crate::source::Span, String)>,
}

/// The policy's IR as data (locations are not serialized), with the version
/// left out; `None` when it has type errors or there is no schema.
fn content(file: &SourceFile, policy: &ast::Policy, schema: Option<&Schema>) -> Option<ir::Policy> {
    let checked = check::check_policy(file, policy, schema?).ok()?;
    let mut p = compile::lower_policy(&checked);
    p.version = String::new();
    Some(p)
}

fn json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

/// What differs between the base and head revisions of a policy, ignoring
/// its version: `None` when nothing does; an empty list when something does
/// but it can only be told from the syntax tree.
fn changes(
    bfile: &SourceFile,
    bpolicy: &ast::Policy,
    bschema: Option<&Schema>,
    hfile: &SourceFile,
    hpolicy: &ast::Policy,
    hschema: Option<&Schema>,
) -> Option<Vec<Change>> {
    // The same syntax tree (spans and comments are not part of it) against
    // the same schema lowers to the same IR: no need to lower it.
    let same_tree = bpolicy.name == hpolicy.name
        && bpolicy.tier == hpolicy.tier
        && bpolicy.requires == hpolicy.requires
        && bpolicy.items == hpolicy.items;
    if same_tree && bschema == hschema {
        return None;
    }
    let (Some(b), Some(h)) = (
        content(bfile, bpolicy, bschema),
        content(hfile, hpolicy, hschema),
    ) else {
        let mut same_version = hpolicy.clone();
        same_version.version = bpolicy.version.clone();
        return (same_version != *bpolicy).then(Vec::new);
    };
    if json(&b) == json(&h) {
        return None;
    }
    let mut out = Vec::new();
    if b.tier != h.tier {
        out.push(Change {
            what: format!("tier {} → {}", b.tier.as_str(), h.tier.as_str()),
            at: None,
        });
    }
    if json(&b.requires) != json(&h.requires) {
        out.push(Change {
            what: "requirements".to_string(),
            at: None,
        });
    }
    let items =
        |p: &ir::Policy| -> BTreeMap<(String, &'static str), (serde_json::Value, ir::Origin)> {
            let rules = p
                .rules
                .iter()
                .map(|r| ((r.name.clone(), "rule"), (json(r), r.origin.clone())));
            let limits = p
                .limits
                .iter()
                .map(|l| ((l.name.clone(), "limit"), (json(l), l.origin.clone())));
            rules.chain(limits).collect()
        };
    let (bi, hi) = (items(&b), items(&h));
    for ((name, kind), (value, origin)) in &hi {
        let what = match bi.get(&(name.clone(), *kind)) {
            None => format!("{kind} `{name}` added"),
            Some((old, _)) if old != value => format!("{kind} `{name}` changed"),
            Some(_) => continue,
        };
        out.push(Change {
            what,
            at: Some((origin.span, name.clone())),
        });
    }
    for (name, kind) in bi.keys() {
        if !hi.contains_key(&(name.clone(), *kind)) {
            out.push(Change {
                what: format!("{kind} `{name}` removed"),
                at: None,
            });
        }
    }
    if out.is_empty() {
        // Same rules and limits, in another order: order decides how
        // modifications compose, so it is a change.
        out.push(Change {
            what: "order of rules or limits".to_string(),
            at: None,
        });
    }
    Some(out)
}
