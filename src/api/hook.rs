//! What the daemon reads of a forge's push delivery (`POST /v1/hooks/git`):
//! the ref pushed, in GitHub's and GitLab's payloads alike. Every other
//! field is ignored; the body is read only after its signature is checked.
//!
//! ```json
//! {"ref": "refs/heads/main", "before": "…", "after": "…", "commits": […]}
//! ```

use serde::Deserialize;

/// A push delivery.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Push {
    /// `refs/heads/<branch>`; absent in an operator's own call.
    #[serde(default, rename = "ref")]
    pub git_ref: Option<String>,
}
