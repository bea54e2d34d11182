//! A deterministic generator of policy sets for the conflict-analysis
//! benchmark, with *planted* conflicts of every kind.
//!
//! `generate(n)` gives `n` policies of 10 rules each (plus two shared
//! policies, `core` and `approvals`), as `sluice.toml` and `.policy` texts,
//! and the list of conflicts planted in them. Everything else is free of
//! conflicts by construction, but not trivially so: each policy has near
//! misses with its neighbour that only the solver can dismiss (a regex
//! against its complement, exact numeric boundaries, disjoint agent lists,
//! absent optional fields), rules that apply to every tool, approvals that
//! go through a shared tool, sets, lengths, regexes and limits.
//!
//! Policy `p{i}` governs the tools `svc{i}.read`, `.write`, `.export` and
//! `.admin`. Every [`PLANT_EVERY`]-th policy plants one conflict against its
//! successor (or itself), cycling through the kinds:
//!
//! | kind | planted in `p{i}` | expected finding |
//! |---|---|---|
//! | 0 | deny of `svc{i+1}.read` for an agent `p{i+1}.read_allow` allows | `conflict::overridden_allow` |
//! | 1 | deny of all of `svc{i+1}.read` | `conflict::shadowed` |
//! | 2 | `args.amount > 500 and args.amount < 100` | `conflict::dead_rule` |
//! | 3 | `redact(args.body)` where `p{i+1}.export_redact` redacts a pattern | `conflict::modify` |
//! | 4 | approval via a tool that another of its rules denies | `conflict::approval_deadlock` |
//! | 5 | two approvals via each other's tool | `conflict::approval_deadlock` |
//!
//! Standard library only, so that tests and benches can `#[path]`-include it.

use std::fmt::Write as _;

/// One policy in this many plants a conflict.
pub const PLANT_EVERY: usize = 10;

/// Regexes shared by the policies (a real set reuses a few patterns), as
/// written in a policy (`\\` is one backslash there).
const SUBJECT_FLAGS: [&str; 4] = [
    "^URGENT",
    "^\\\\[ALERT\\\\]",
    "^(RE|FW): URGENT",
    "^P[0-9]:",
];
const PII: [&str; 3] = [
    "[0-9]{3}-[0-9]{2}-[0-9]{4}",
    "[0-9]{4}[ -]?[0-9]{4}[ -]?[0-9]{4}[ -]?[0-9]{4}",
    "[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}",
];
const THRESHOLDS: [i64; 5] = [500, 1_000, 2_500, 5_000, 10_000];

/// The project file: settings and the request schema.
pub const SLUICE_TOML: &str = r#"[project]
name = "conflict-bench"
default = "deny"

[schema]
tool = "string"
agent = "string"
org = "string"
session = "string"
"args.amount?" = "int"
"args.body?" = "string"
"args.subject?" = "string"
"args.recipients?" = "set<string>"
"args.urgent?" = "bool"
"#;

/// A conflict the generator planted: the finding code, and the rules
/// (`policy.rule`) the finding must label; the first is the rule the
/// finding is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planted {
    pub code: &'static str,
    pub rules: Vec<String>,
}

/// A generated policy repository.
#[derive(Debug, Clone)]
pub struct Generated {
    /// `sluice.toml`.
    pub toml: String,
    /// (path, text) of every policy file, sorted by path.
    pub files: Vec<(String, String)>,
    pub planted: Vec<Planted>,
}

/// The name of policy `i`.
pub fn policy(i: usize) -> String {
    format!("p{i:05}")
}

fn agents(i: usize) -> [String; 2] {
    [
        format!("agent-{}", i % 97),
        format!("agent-{}", (i + 1) % 97),
    ]
}

/// `n` generated policies (at least 2) with their planted conflicts.
pub fn generate(n: usize) -> Generated {
    let n = n.max(2);
    let mut files = vec![
        (
            "policies/approvals.policy".to_string(),
            APPROVALS.to_string(),
        ),
        ("policies/core.policy".to_string(), CORE.to_string()),
    ];
    let mut planted = Vec::new();
    for i in 0..n {
        let j = (i + 1) % n;
        let mut text = base_policy(i, j);
        if i % PLANT_EVERY == 0 {
            let kind = (i / PLANT_EVERY) % 6;
            plant(kind, i, j, &mut text, &mut planted);
        }
        text.push_str("}\n");
        files.push((format!("policies/{}.policy", policy(i)), text));
    }
    files.sort();
    Generated {
        toml: SLUICE_TOML.to_string(),
        files,
        planted,
    }
}

const CORE: &str = r#"policy core version 1.0.0 {
  tier security

  // Applies to every tool but the approval tools.
  rule quarantined {
    when agent starts_with "quarantine-" and not tool starts_with "approvals."
    deny QUARANTINED "Quarantined agents may only ask for help"
  }
}
"#;

const APPROVALS: &str = r#"policy approvals version 1.0.0 {
  rule ask {
    when tool == "approvals.request"
    allow
  }

  rule tidy_reason {
    when tool == "approvals.request" and args.body matches "(sk|rk)_live_[A-Za-z0-9]{8,}"
    modify args.body = redact(args.body, "(sk|rk)_live_[A-Za-z0-9]{8,}") SECRET "Keys removed"
  }
}
"#;

fn base_policy(i: usize, j: usize) -> String {
    let name = policy(i);
    let [a0, a1] = agents(i);
    let flag = SUBJECT_FLAGS[i % SUBJECT_FLAGS.len()];
    let flag_j = SUBJECT_FLAGS[j % SUBJECT_FLAGS.len()];
    let pii = PII[i % PII.len()];
    let t = THRESHOLDS[i % THRESHOLDS.len()];
    let t_j = THRESHOLDS[j % THRESHOLDS.len()];
    let org = format!("org-{}", i % 13);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"policy {name} version 1.{minor}.0 {{
  requires core ^1.0

  rule read_allow {{
    when tool == "svc{i}.read" and agent in ["{a0}", "{a1}"]
      and not args.subject matches "{flag}"
    allow
  }}

  rule write_approval {{
    when tool == "svc{i}.write" and args.amount > {t}
    require_approval "team-{i}" via "approvals.request" BIG_WRITE "Large writes need approval"
  }}

  rule write_allow {{
    when tool == "svc{i}.write" and args.amount >= 1 and args.amount <= {t} and org == "{org}"
      and not agent starts_with "quarantine-"
    allow
  }}

  rule write_invalid {{
    when tool == "svc{i}.write" and (not has(args.amount) or args.amount < 1)
    deny INVALID "A write needs a positive amount"
  }}

  rule export_redact {{
    when tool == "svc{i}.export" and args.body matches "{pii}"
    modify args.body = redact(args.body, "{pii}") PII "Personal data removed"
  }}

  rule export_broadcast {{
    when tool == "svc{i}.export" and args.recipients contains "all@corp.io"
    deny BROADCAST "No exports to everyone"
  }}

  rule export_allow {{
    when tool == "svc{i}.export" and not args.recipients contains "all@corp.io"
      and len(args.recipients) >= 1 and len(args.recipients) <= 10
      and not agent starts_with "quarantine-"
    allow
  }}

  rule admin_guard {{
    when tool == "svc{i}.admin" and not agent matches "^admin-[a-z]+$"
    deny NOT_ADMIN "Admin tools are for admin agents"
  }}

  // Near misses with the next policy: its read allow leaves flagged
  // subjects out, its write allow stops at its threshold.
  rule flagged_reads_{j} {{
    when tool == "svc{j}.read" and args.subject matches "{flag_j}"
    deny FLAGGED "Flagged subjects are not read"
  }}

  rule capped_writes_{j} {{
    when tool == "svc{j}.write" and args.amount > {t_j} and org == "org-{j13}" and args.urgent
    deny CAPPED "Urgent large writes are refused"
  }}

"#,
        minor = i % 7,
        j13 = j % 13,
    );
    s
}

fn plant(kind: usize, i: usize, j: usize, text: &mut String, planted: &mut Vec<Planted>) {
    let me = policy(i);
    let next = policy(j);
    match kind {
        0 => {
            let [a0, _] = agents(j);
            let _ = write!(
                text,
                r#"  rule x_block_agent {{
    when tool == "svc{j}.read" and agent == "{a0}"
    deny BLOCKED "This agent is blocked"
  }}

"#
            );
            planted.push(Planted {
                code: "conflict::overridden_allow",
                rules: vec![format!("{next}.read_allow"), format!("{me}.x_block_agent")],
            });
        }
        1 => {
            let _ = write!(
                text,
                r#"  rule x_close_reads {{
    when tool == "svc{j}.read"
    deny CLOSED "Reads are closed"
  }}

"#
            );
            planted.push(Planted {
                code: "conflict::shadowed",
                rules: vec![format!("{next}.read_allow"), format!("{me}.x_close_reads")],
            });
        }
        2 => {
            let _ = write!(
                text,
                r#"  rule x_impossible {{
    when tool == "svc{i}.write" and args.amount > 500 and args.amount < 100
    deny NEVER "Never fires"
  }}

"#
            );
            planted.push(Planted {
                code: "conflict::dead_rule",
                rules: vec![format!("{me}.x_impossible")],
            });
        }
        3 => {
            let pii = PII[j % PII.len()];
            let _ = write!(
                text,
                r#"  rule x_redact_all {{
    when tool == "svc{j}.export" and args.body matches "{pii}"
    modify args.body = redact(args.body) REDACT_ALL "The whole body goes"
  }}

"#
            );
            planted.push(Planted {
                code: "conflict::modify",
                rules: vec![
                    format!("{me}.x_redact_all"),
                    format!("{next}.export_redact"),
                ],
            });
        }
        4 => {
            let _ = write!(
                text,
                r#"  rule x_special {{
    when tool == "svc{i}.special" and args.urgent
    require_approval "team-{i}" via "approvals.special{i}" SPECIAL "Special calls need approval"
  }}

  rule x_no_special_approvals {{
    when tool == "approvals.special{i}"
    deny NO_SPECIAL "Special approvals are closed"
  }}

"#
            );
            planted.push(Planted {
                code: "conflict::approval_deadlock",
                rules: vec![
                    format!("{me}.x_special"),
                    format!("{me}.x_no_special_approvals"),
                ],
            });
        }
        _ => {
            let _ = write!(
                text,
                r#"  rule x_ping {{
    when tool == "approvals.ping{i}"
    require_approval "a" via "approvals.pong{i}" PING "Pings need a pong"
  }}

  rule x_pong {{
    when tool == "approvals.pong{i}"
    require_approval "b" via "approvals.ping{i}" PONG "Pongs need a ping"
  }}

"#
            );
            planted.push(Planted {
                code: "conflict::approval_deadlock",
                rules: vec![format!("{me}.x_ping"), format!("{me}.x_pong")],
            });
        }
    }
}
