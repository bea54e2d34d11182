//! The finding codes: one [`Code`] per kind of finding, carrying its stable
//! text (`type::mismatch`), its severity (fixed per code by SPEC §3, never
//! chosen where a finding is made), and the description and help that reports
//! describing their rules (SARIF) show.
//!
//! The catalogue only: no rendering and no knowledge of the stages that
//! report these codes.

use std::fmt;

use serde::{Serialize, Serializer};

use super::Severity;

/// The table of codes: variant, text, severity, then the one-line
/// description and help of the catalogue (`None` for the analysis' own
/// codes, which SPEC does not list: reports describe them generically).
macro_rules! codes {
    ($(
        $(#[$doc:meta])*
        $variant:ident = $text:literal, $severity:ident, $about:expr;
    )*) => {
        /// A stable finding code. Serialized (and displayed) as its text.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Code {
            $($(#[$doc])* $variant,)*
        }

        impl Code {
            /// Every code, in catalogue order.
            pub const ALL: &'static [Code] = &[$(Code::$variant),*];

            /// The stable text, e.g. `type::mismatch`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $text,)*
                }
            }

            /// The severity SPEC §3 fixes for the code.
            pub const fn severity(self) -> Severity {
                match self {
                    $(Code::$variant => Severity::$severity,)*
                }
            }

            /// The code's one-line description and its help, for a code of
            /// the catalogue.
            pub const fn about(self) -> Option<(&'static str, &'static str)> {
                match self {
                    $(Code::$variant => $about,)*
                }
            }
        }
    };
}

codes! {
    /// A policy file does not parse.
    ParseSyntax = "parse::syntax", Error, Some((
        "A policy file does not parse.",
        "Fix the syntax at the marked place; the message says what was expected there.",
    ));
    /// A policy reads a field the schema does not declare.
    TypeUnknownField = "type::unknown_field", Error, Some((
        "A policy reads a field the request schema does not declare.",
        "Use a field declared in `[schema]` of sluice.toml, or declare it there.",
    ));
    /// An operator does not fit the types of its operands.
    TypeMismatch = "type::mismatch", Error, Some((
        "An operator does not fit the types of its operands.",
        "Compare values of the field's declared type; the message names both types.",
    ));
    /// A regex does not compile, or cannot be encoded by the analysis.
    TypeBadRegex = "type::bad_regex", Error, Some((
        "A regex does not compile, or uses what the conflict analysis cannot encode.",
        "Write the pattern in the `regex` crate's syntax without word boundaries or line anchors.",
    ));
    /// Two rules or limits of one policy share a name.
    TypeDuplicateName = "type::duplicate_name", Error, Some((
        "Two rules or limits of one policy share a name.",
        "Rule and limit names are unique within a policy: rename one of them.",
    ));
    /// `sluice.toml` is invalid.
    SchemaInvalid = "schema::invalid", Error, Some((
        "sluice.toml is invalid.",
        "Fix the marked setting; the message says what is allowed there.",
    ));
    /// An upstream tool takes arguments the request schema does not
    /// declare (`sluice check --upstream-schemas`).
    SchemaUpstreamField = "schema::upstream_field", Warning, Some((
        "An upstream MCP tool takes arguments the request schema does not declare: the gateway forwards them unevaluated.",
        "Declare the arguments a policy should read under [schema] in sluice.toml (the message gives the lines), or leave them unevaluated on purpose.",
    ));
    /// A limit counted by an optional field: requests without it are never
    /// limited.
    LimitOptionalKey = "limit::optional_key", Warning, Some((
        "A limit counts by an optional field: requests that do not carry it are never limited.",
        "Count by a required field, or add `has(field)` to the limit's condition to say that requests without it are meant to go unlimited.",
    ));
    /// A `requires` that no policy of the set satisfies.
    VersionUnsatisfied = "version::unsatisfied", Error, Some((
        "A `requires` names a policy that is absent or at a version that does not match.",
        "Change the requirement, or the required policy's version.",
    ));
    /// Policies that require each other in a cycle.
    VersionCycle = "version::cycle", Error, Some((
        "Policies require each other in a cycle.",
        "Break the cycle: one of the `requires` in it must go.",
    ));
    /// Two files define the same policy.
    VersionDuplicate = "version::duplicate", Error, Some((
        "Two files define the same policy.",
        "Each policy lives in exactly one file: rename one or merge the two.",
    ));
    /// A policy changed since the base revision, its version did not.
    VersionNotBumped = "version::not_bumped", Error, Some((
        "A policy's content changed since the base revision but its version did not.",
        "Raise the version: patch for a fix, minor for new behaviour, major for a breaking change.",
    ));
    /// A policy's version went down since the base revision.
    VersionRegressed = "version::regressed", Error, Some((
        "A policy's version went down since the base revision.",
        "Versions only go up: set a version above the base revision's.",
    ));
    /// An allow that a stricter rule of another policy overrides somewhere.
    ConflictOverriddenAllow = "conflict::overridden_allow", Warning, Some((
        "An explicit allow overlaps a deny or require_approval of another policy: there it never takes effect.",
        "Narrow the allow so it does not overlap, or accept that the stricter rule wins.",
    ));
    /// Two policies modify one field differently on one request.
    ConflictModify = "conflict::modify", Error, Some((
        "Two policies modify the same field differently on one request.",
        "Make one rule's condition exclude the other's, or make both modify the field the same way.",
    ));
    /// A rule or limit that no valid request reaches.
    ConflictDeadRule = "conflict::dead_rule", Warning, Some((
        "A rule or limit whose condition no valid request satisfies.",
        "Fix the condition (it contradicts itself or the schema) or remove the rule.",
    ));
    /// An allow that is denied everywhere it matches.
    ConflictShadowed = "conflict::shadowed", Error, Some((
        "An allow whose every matching request is denied elsewhere.",
        "Remove the allow, or narrow the deny that shadows it.",
    ));
    /// An approval tool that itself needs approval, or is denied.
    ConflictApprovalDeadlock = "conflict::approval_deadlock", Error, Some((
        "The tool that grants an approval itself needs approval, or is denied, for the same requests.",
        "Exempt the approval tool from the rules that block it.",
    ));
    /// A limit lowered below live counters without `on_decrease`.
    StateLimitDecrease = "state::limit_decrease", Error, Some((
        "A limit's max is lowered below live counters and the limit has no on_decrease.",
        "Add `on_decrease next_window` or `on_decrease freeze` to say how live counters migrate.",
    ));
    /// A limit's window changes, which resets its live counters.
    StateWindowChange = "state::window_change", Warning, Some((
        "A limit's window changes: its live counters are reset.",
        "Expect every key of the limit to start counting afresh when the change rolls out.",
    ));
    /// An approval rule removed or narrowed while requests wait.
    StatePendingApprovals = "state::pending_approvals", Error, Some((
        "An approval rule is removed or narrowed while requests wait in its queue.",
        "Resolve the waiting requests first, or keep the rule covering them until they are.",
    ));
    /// A limit removed while it has live counters.
    StateLimitRemoved = "state::limit_removed", Error, Some((
        "A limit disappears while it has live counters.",
        "Keep the limit (under the same name) until its window ends, or accept losing its counts.",
    ));
    /// A stage whose gate cannot pass on the stage's `min_samples`.
    PlanUnderpowered = "plan::underpowered", Warning, Some((
        "A rollout stage's gate cannot pass on the stage's min_samples requests, even for a flawless candidate.",
        "Raise the stage's `min_samples` to the count the message gives, or loosen the gate.",
    ));
    /// A `max_cost_ratio` gate with no cost envelope in the inventory.
    PlanCostWithoutEnvelope = "plan::cost_without_envelope", Warning, Some((
        "A rollout stage gates on max_cost_ratio, but no agent of the inventory has a cost envelope: the gate can only wait.",
        "Give the agents `cost = { calls_per_day = N }` in agents/*.toml, or remove `max_cost_ratio`.",
    ));
    /// An observe scope of `[governance]` that covers a `security`-tier
    /// policy.
    GovernanceObservesSecurity = "governance::observes_security", Warning, Some((
        "The observe scope of `[governance]` in sluice.toml covers a security-tier policy: its denials there are answered allow.",
        "Narrow `observe` so the security policy's rules cannot match it, or enforce the scope by removing `observe`.",
    ));
    /// An `agents/*.toml` of the agent inventory that is not valid.
    InventoryInvalid = "inventory::invalid", Error, Some((
        "A file of the agent inventory (agents/*.toml) is not valid.",
        "Write one agent per file with `id`, `owner` and `tools`, as the message says.",
    ));
    /// A rule compares `tool` with a name no inventoried agent declares.
    InventoryUnknownTool = "inventory::unknown_tool", Warning, Some((
        "A rule names a tool that no agent of the inventory declares: a typo, or a rule for a tool nothing calls.",
        "Correct the tool's name, or add the tool to the agent that calls it in agents/*.toml.",
    ));
    /// A rule names an agent the inventory lacks.
    InventoryUnknownAgent = "inventory::unknown_agent", Warning, Some((
        "A rule names an agent that the inventory (agents/*.toml) lacks.",
        "Correct the agent's id, or inventory the agent in agents/<id>.toml.",
    ));
    /// An inventoried tool that only the project default decides.
    InventoryUncoveredTool = "inventory::uncovered_tool", Warning, Some((
        "A tool some agent of the inventory declares is matched by no rule or limit: only the project default decides its calls.",
        "Write the rules for the tool, or remove it from the agents that list it.",
    ));
    /// An inventoried agent can call a tool outside its inventory.
    InventoryExcessPrivilege = "inventory::excess_privilege", Warning, Some((
        "The set lets an inventoried agent call a tool its inventory does not list.",
        "Narrow the permissive rule to the agents that list the tool, or add the tool to the agent's `tools`.",
    ));
    /// A trace line that is not a valid replay case.
    TraceInvalid = "trace::invalid", Error, Some((
        "A trace line is not a valid replay case.",
        "Write `{\"request\": {…}, \"expect\": \"deny\"}` on one line.",
    ));
    /// What a change does to decisions: requests whose final decision
    /// differs between the base and the head.
    ChangeDecision = "change::decision", Note, Some((
        "A changed rule or limit changes the final decision of some requests between the base and the head.",
        "Read the witness: it is one of those requests, decided as stated at both revisions; check that the change is meant to do this.",
    ));
    /// A change that lets through what was denied or sent for approval.
    ChangeWidened = "change::widened", Warning, Some((
        "A changed rule or limit lets through requests that were denied or needed approval at the base.",
        "Make sure the change is meant to let these requests through; the witness is one of them, decided as stated at both revisions.",
    ));
    /// The solver could not decide a question (timeout or unknown).
    AnalyzeUnknown = "analyze::unknown", Warning, None;
    /// A rule or limit the analysis cannot encode, left out of it.
    AnalyzeUnencodable = "analyze::unencodable", Warning, None;
    /// The analysis did not finish (a worker stopped, questions unanswered).
    AnalyzeInternal = "analyze::internal", Error, None;
    /// A witness that does not reproduce through the real evaluator.
    AnalyzeWitnessMismatch = "analyze::witness_mismatch", Error, None;
}

impl Code {
    /// The family of the code: what comes before `::` (`type`, `conflict`, …).
    pub fn family(self) -> &'static str {
        let text = self.as_str();
        text.split_once("::").map_or(text, |(family, _)| family)
    }
}

/// Where the documentation of the finding codes lives: `SLUICE_DOCS_URL`
/// when set at build time (whoever publishes `docs/` sets it), else the
/// `docs/` folder of the source sluice was built from, as a `file://` URL.
pub const DOCS_URL: &str = match option_env!("SLUICE_DOCS_URL") {
    Some(url) => url,
    None => concat!("file://", env!("CARGO_MANIFEST_DIR"), "/docs"),
};

impl Code {
    /// The code's anchor in the catalogue `docs/codes.md`:
    /// `type::unknown_field` → `type-unknown_field`.
    pub fn anchor(self) -> String {
        self.as_str().replace("::", "-")
    }

    /// The address of the code's entry in the catalogue.
    pub fn doc_url(self) -> String {
        format!("{DOCS_URL}/codes.md#{}", self.anchor())
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Code {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl PartialEq<str> for Code {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Code {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn texts_are_unique_and_name_their_family() {
        let texts: BTreeSet<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(texts.len(), Code::ALL.len());
        for c in Code::ALL {
            assert!(c.as_str().starts_with(&format!("{}::", c.family())));
            assert_eq!(c.to_string(), c.as_str());
        }
    }

    #[test]
    fn severities_follow_spec() {
        // SPEC §3: `version::*`, `conflict::modify`, `conflict::shadowed`,
        // `conflict::approval_deadlock` and `state::*` but
        // `state::window_change` are errors; the other conflicts and
        // `state::window_change` are warnings; language errors are errors.
        // Issue 16: `schema::upstream_field` warns.
        for c in Code::ALL {
            let expected = match c.as_str() {
                "conflict::overridden_allow"
                | "conflict::dead_rule"
                | "limit::optional_key"
                | "state::window_change"
                | "analyze::unknown"
                | "analyze::unencodable"
                | "plan::underpowered"
                | "plan::cost_without_envelope"
                | "governance::observes_security"
                | "inventory::unknown_tool"
                | "inventory::unknown_agent"
                | "inventory::uncovered_tool"
                | "inventory::excess_privilege"
                | "change::widened"
                | "schema::upstream_field" => Severity::Warning,
                "change::decision" => Severity::Note,
                _ => Severity::Error,
            };
            assert_eq!(c.severity(), expected, "{c}");
        }
    }

    #[test]
    fn every_code_of_spec_is_catalogued() {
        for c in Code::ALL {
            assert_eq!(c.about().is_none(), c.family() == "analyze", "{c}");
        }
    }
}
