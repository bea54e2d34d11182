//! The compiled artifact: the policy set as one canonical JSON document with a
//! sha256 content hash. Pure: bytes in, bytes out, no I/O.
//!
//! Canonical JSON here is compact `serde_json` output of the artifact's
//! structs: field order is fixed by the type definitions, no maps with
//! arbitrary key order are involved, and policies are sorted by name. So the
//! same IR always gives byte-identical bytes.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::governance::Governance;
use crate::model::inventory::Inventory;
use crate::model::ir::{DecisionKind, Policy, PolicySet};
use crate::model::schema::Schema;

/// The artifact format this build writes and accepts.
pub const FORMAT_VERSION: u32 = 1;

/// A compiled policy set, as engines load it.
///
/// `hash` is the hex sha256 of the canonical JSON of every field but `hash`
/// and `source_commit`: format version, project, default, schema,
/// policies, governance and the agent inventory (each left out of the JSON,
/// and so of the hash, when empty: an artifact without `[governance]` or
/// `agents/` keeps the hash it had before they existed). The source commit is provenance, not content: a commit that
/// changes no policy (a README edit, a reformatting — the IR carries no
/// source locations) keeps the hash, so engines see the same artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    pub format_version: u32,
    pub project: String,
    /// The decision when no rule matches.
    pub default: DecisionKind,
    pub schema: Schema,
    /// Sorted by name.
    pub policies: Vec<Policy>,
    /// `[governance]` of `sluice.toml`: the observe scope.
    #[serde(default, skip_serializing_if = "Governance::is_empty")]
    pub governance: Governance,
    /// The agent inventory of `agents/*.toml`.
    #[serde(default, skip_serializing_if = "Inventory::is_empty")]
    pub inventory: Inventory,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_commit: Option<String>,
    pub hash: String,
}

/// The hashed part of an artifact, in canonical field order.
#[derive(Serialize)]
struct Content<'a> {
    format_version: u32,
    project: &'a str,
    default: DecisionKind,
    schema: &'a Schema,
    policies: &'a [Policy],
    #[serde(skip_serializing_if = "Governance::is_empty")]
    governance: &'a Governance,
    #[serde(skip_serializing_if = "Inventory::is_empty")]
    inventory: &'a Inventory,
}

impl Artifact {
    /// Builds an artifact: policies sorted by name (stable, so duplicates keep
    /// their order) and the hash computed.
    pub fn new(
        project: impl Into<String>,
        default: DecisionKind,
        schema: Schema,
        set: PolicySet,
        source_commit: Option<String>,
    ) -> Result<Artifact, ArtifactError> {
        let mut policies = set.policies;
        policies.sort_by(|a, b| a.name.cmp(&b.name));
        let mut artifact = Artifact {
            format_version: FORMAT_VERSION,
            project: project.into(),
            default,
            schema,
            policies,
            governance: Governance::default(),
            inventory: Inventory::default(),
            source_commit,
            hash: String::new(),
        };
        artifact.hash = artifact.compute_hash()?;
        Ok(artifact)
    }

    /// The artifact with the agent inventory, its hash computed anew.
    pub fn with_inventory(mut self, inventory: Inventory) -> Result<Artifact, ArtifactError> {
        self.inventory = inventory;
        self.hash = self.compute_hash()?;
        Ok(self)
    }

    /// The artifact with `governance` in force, its hash computed anew.
    pub fn with_governance(mut self, governance: Governance) -> Result<Artifact, ArtifactError> {
        self.governance = governance;
        self.hash = self.compute_hash()?;
        Ok(self)
    }

    /// The hex sha256 of the canonical content (everything but `hash` and
    /// `source_commit`).
    pub fn compute_hash(&self) -> Result<String, ArtifactError> {
        let content = Content {
            format_version: self.format_version,
            project: &self.project,
            default: self.default,
            schema: &self.schema,
            policies: &self.policies,
            governance: &self.governance,
            inventory: &self.inventory,
        };
        let bytes = serde_json::to_vec(&content).map_err(|e| ArtifactError::Encode {
            message: e.to_string(),
        })?;
        Ok(hex::encode(Sha256::digest(&bytes)))
    }

    /// Checks that `hash` matches the content.
    pub fn verify(&self) -> Result<(), ArtifactError> {
        let actual = self.compute_hash()?;
        if actual == self.hash {
            Ok(())
        } else {
            Err(ArtifactError::HashMismatch {
                expected: self.hash.clone(),
                actual,
            })
        }
    }

    /// The canonical bytes: compact JSON, deterministic.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ArtifactError> {
        serde_json::to_vec(self).map_err(|e| ArtifactError::Encode {
            message: e.to_string(),
        })
    }

    /// Reads an artifact, accepting it only if its format is supported and
    /// its hash verifies.
    pub fn from_bytes(bytes: &[u8]) -> Result<Artifact, ArtifactError> {
        let artifact: Artifact =
            serde_json::from_slice(bytes).map_err(|e| ArtifactError::Decode {
                message: e.to_string(),
            })?;
        if artifact.format_version != FORMAT_VERSION {
            return Err(ArtifactError::UnsupportedFormat {
                found: artifact.format_version,
                supported: FORMAT_VERSION,
            });
        }
        artifact.verify()?;
        artifact.validate()?;
        Ok(artifact)
    }

    /// Checks what `sluice compile` guarantees of every artifact it writes
    /// and a hash cannot: a default of `allow` or `deny`; schema fields
    /// sorted without duplicates; policies sorted by name without
    /// duplicates, semantic versions and version requirements; rule and
    /// limit names unique within a policy. (Types, fields and regexes are
    /// checked when an evaluator is built.)
    pub fn validate(&self) -> Result<(), ArtifactError> {
        let invalid = |reason: String| Err(ArtifactError::Invalid { reason });
        if !matches!(self.default, DecisionKind::Allow | DecisionKind::Deny) {
            return invalid(format!(
                "`default` must be `allow` or `deny`, found `{}`",
                self.default.as_str()
            ));
        }
        for pair in self.schema.fields.windows(2) {
            if let [a, b] = pair
                && a.path >= b.path
            {
                return invalid(format!(
                    "schema fields must be sorted and unique: `{}` before `{}`",
                    a.path, b.path
                ));
            }
        }
        for pair in self.policies.windows(2) {
            if let [a, b] = pair
                && a.name >= b.name
            {
                let why = if a.name == b.name {
                    format!("policy `{}` appears twice", a.name)
                } else {
                    format!(
                        "policies must be sorted by name: `{}` before `{}`",
                        a.name, b.name
                    )
                };
                return invalid(why);
            }
        }
        for p in &self.policies {
            if let Err(e) = semver::Version::parse(&p.version) {
                return invalid(format!(
                    "policy `{}`: version `{}` is not a semantic version: {e}",
                    p.name, p.version
                ));
            }
            for r in &p.requires {
                if let Err(e) = semver::VersionReq::parse(&r.req) {
                    return invalid(format!(
                        "policy `{}`: requirement `{} {}` is not a version requirement: {e}",
                        p.name, r.policy, r.req
                    ));
                }
            }
            let mut names = std::collections::HashSet::new();
            let items = p.rules.iter().map(|r| r.name.as_str());
            for name in items.chain(p.limits.iter().map(|l| l.name.as_str())) {
                if !names.insert(name) {
                    return invalid(format!(
                        "policy `{}`: `{name}` is defined twice (rule and limit names are unique)",
                        p.name
                    ));
                }
            }
        }
        Ok(())
    }
}

/// An artifact that cannot be written or accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
#[non_exhaustive]
pub enum ArtifactError {
    #[error("artifact is not valid: {message}")]
    #[diagnostic(code(artifact::decode))]
    Decode { message: String },

    #[error("artifact could not be encoded: {message}")]
    #[diagnostic(code(artifact::encode))]
    Encode { message: String },

    #[error("artifact format {found} is not supported (this build reads format {supported})")]
    #[diagnostic(code(artifact::format))]
    UnsupportedFormat { found: u32, supported: u32 },

    #[error("artifact hash does not verify: expected `{expected}`, content hashes to `{actual}`")]
    #[diagnostic(
        code(artifact::hash_mismatch),
        help(
            "the artifact was modified after it was compiled; recompile it with `sluice compile`"
        )
    )]
    HashMismatch { expected: String, actual: String },

    #[error("artifact content is not valid: {reason}")]
    #[diagnostic(
        code(artifact::invalid),
        help("`sluice compile` never writes this: the artifact was made by other means")
    )]
    Invalid { reason: String },
}
