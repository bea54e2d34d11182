//! Agent identity (SPEC §5 "Agent identity", `--agent-keys FILE`): which
//! key speaks for which agent, so that no caller can spend another agent's
//! quota. And what a token or a secret must be to be accepted at all
//! ([`secret`]).
//!
//! The file is TOML, one `agent = "key"` line per agent:
//!
//! ```toml
//! payroll-bot = "k-2b7d0c4e9a1f5e3c"
//! "billing bot" = "k-8f1a6d2c7e0b9a4d"
//! ```
//!
//! Each key is a secret as [`secret`] takes it (trimmed, at least
//! [`MIN_SECRET_LEN`] printable ASCII bytes) and names one agent; a key
//! given to two agents is refused. Keys are held as SHA-256 digests only.
//! No HTTP here: [`crate::engine::http`] reads the bearer key and asks
//! [`AgentKeys::agent`].

use std::collections::HashMap;
use std::path::Path;

use sha2::{Digest, Sha256};

/// The fewest bytes a token or a secret may have.
pub const MIN_SECRET_LEN: usize = 16;

/// A token or secret as given on the command line, in the environment or
/// in a file: surrounding blanks (the newline a secret file ends with) are
/// trimmed; one shorter than [`MIN_SECRET_LEN`] bytes, or with a character
/// that is not printable ASCII (it could never be sent in a header), is
/// refused, naming `what` and never the value.
pub fn secret(what: &str, raw: &str) -> Result<String, String> {
    let s = raw.trim();
    if s.len() < MIN_SECRET_LEN {
        return Err(format!(
            "{what} is {} byte(s) long: it must have at least {MIN_SECRET_LEN}",
            s.len()
        ));
    }
    if !s.chars().all(|c| c.is_ascii_graphic()) {
        return Err(format!(
            "{what} may hold printable ASCII characters only, without blanks"
        ));
    }
    Ok(s.to_string())
}

/// The agents' keys, by digest.
#[derive(Clone, Default)]
pub struct AgentKeys {
    agents: HashMap<[u8; 32], String>,
}

impl std::fmt::Debug for AgentKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AgentKeys({} agents)", self.agents.len())
    }
}

impl AgentKeys {
    /// Reads the keys file at `path`; the error names the file, and the
    /// line or the agent at fault, never a key.
    pub fn read(path: &Path) -> Result<AgentKeys, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading --agent-keys `{}`: {e}", path.display()))?;
        AgentKeys::parse(&text).map_err(|e| format!("--agent-keys `{}`: {e}", path.display()))
    }

    /// Parses a keys file's text.
    pub fn parse(text: &str) -> Result<AgentKeys, String> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            // The message quotes the line; a key may be on it.
            let at = e.span().map(|s| line_of(text, s.start));
            match at {
                Some(line) => format!("line {line}: not an `agent = \"key\"` line"),
                None => "not TOML of `agent = \"key\"` lines".to_string(),
            }
        })?;
        let mut agents = HashMap::new();
        for (agent, value) in &table {
            let Some(raw) = value.as_str() else {
                return Err(format!("the key of agent `{agent}` must be a string"));
            };
            if agent.is_empty() {
                return Err("an agent name is empty".to_string());
            }
            let key = secret(&format!("the key of agent `{agent}`"), raw)?;
            let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
            if let Some(other) = agents.insert(digest, agent.clone()) {
                return Err(format!(
                    "agents `{other}` and `{agent}` have the same key: a key names one agent"
                ));
            }
        }
        if agents.is_empty() {
            return Err("no agent: the file lists none".to_string());
        }
        Ok(AgentKeys { agents })
    }

    /// The agent `key` speaks for.
    pub fn agent(&self, key: &str) -> Option<&str> {
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        self.agents.get(&digest).map(String::as_str)
    }

    /// How many agents have a key.
    pub fn len(&self) -> usize {
        self.agents.len()
    }

    /// No agent has a key.
    pub fn is_empty(&self) -> bool {
        self.agents.is_empty()
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).map_or(0, |t| t.matches('\n').count()) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_one_agent_each_and_never_appear_in_errors() {
        let keys = AgentKeys::parse(
            "payroll-bot = \"k-0123456789abcdef\"\n\"b c\" = \"k-fedcba9876543210 \"\n",
        )
        .unwrap_or_default();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys.agent("k-0123456789abcdef"), Some("payroll-bot"));
        assert_eq!(keys.agent("k-fedcba9876543210"), Some("b c"));
        assert_eq!(keys.agent("k-0123456789abcdeX"), None);
        let e = AgentKeys::parse("a = \"k-0123456789abcdef\"\nb = \"k-0123456789abcdef\"")
            .err()
            .unwrap_or_default();
        assert!(e.contains("same key") && !e.contains("k-0123"), "{e}");
        let e = AgentKeys::parse("a = \"short\"").err().unwrap_or_default();
        assert!(e.contains("agent `a`") && !e.contains("short\""), "{e}");
        let e = AgentKeys::parse("a = \"k-0123456789abcdef\"\nb k-secret-secret-1\n")
            .err()
            .unwrap_or_default();
        assert!(e.contains("line 2") && !e.contains("secret-1"), "{e}");
    }
}
