//! Who may do what on the daemon's control API: four separate powers, each
//! with its own credential.
//!
//! | power | credential | grants |
//! |---|---|---|
//! | read | `--read-token-file` (`SLUICE_READ_TOKEN`), or any below | `GET /v1/status` |
//! | operate | `--operator-token-file` (`SLUICE_OPERATOR_TOKEN`), or the engines' admin token | every command, the git hook, status |
//! | hook | `--webhook-secret-file`: a GitHub delivery signed with it (`X-Hub-Signature-256`), a GitLab delivery carrying it (`X-Gitlab-Token`) | `POST /v1/hooks/git` only |
//! | engine admin | `--admin-token` | the engines' admin API (the daemon's own calls), and operate |
//!
//! Handing a forge the webhook secret gives it no other power; handing a
//! dashboard the read token lets it read the status and nothing else.
//! Every credential is compared in constant time (a digest of it is kept,
//! never the credential), and none is ever printed.

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::engine::http::AdminToken;

pub use crate::engine::http::{MIN_SECRET_LEN, secret};

/// The webhook secret: the HMAC key of GitHub's signatures, and GitLab's
/// token.
#[derive(Clone)]
pub struct WebhookSecret {
    key: Vec<u8>,
    digest: [u8; 32],
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(…)")
    }
}

impl WebhookSecret {
    pub fn new(secret: &str) -> WebhookSecret {
        WebhookSecret {
            key: secret.as_bytes().to_vec(),
            digest: Sha256::digest(secret.as_bytes()).into(),
        }
    }

    /// Whether `signature` (`sha256=<hex>`, as GitHub sends it in
    /// `X-Hub-Signature-256`) is the HMAC-SHA256 of `body` under this
    /// secret; compared in constant time.
    pub fn signed(&self, body: &[u8], signature: &str) -> bool {
        let Some(hex_sig) = signature.trim().strip_prefix("sha256=") else {
            return false;
        };
        let Ok(given) = hex::decode(hex_sig) else {
            return false;
        };
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            return false;
        };
        mac.update(body);
        mac.verify_slice(&given).is_ok()
    }

    /// Whether `token` (GitLab's `X-Gitlab-Token`) is this secret.
    pub fn is(&self, token: &str) -> bool {
        let d: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
        bool::from(d.ct_eq(&self.digest))
    }

    /// The `X-Hub-Signature-256` header of `body`, as GitHub signs it
    /// (`None` only if the HMAC refused the key, which it never does).
    pub fn sign(&self, body: &[u8]) -> Option<String> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).ok()?;
        mac.update(body);
        Some(format!(
            "sha256={}",
            hex::encode(mac.finalize().into_bytes())
        ))
    }
}

/// The credentials the control API admits.
#[derive(Debug, Clone)]
pub struct Access {
    admin: AdminToken,
    operator: Option<AdminToken>,
    read: Option<AdminToken>,
    webhook: Option<WebhookSecret>,
}

/// What a request's credentials allow, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Power {
    None,
    Read,
    Operate,
}

impl Access {
    /// Access by the engines' admin token alone.
    pub fn new(admin_token: &str) -> Access {
        Access {
            admin: AdminToken::new(admin_token),
            operator: None,
            read: None,
            webhook: None,
        }
    }

    pub fn with_operator_token(mut self, token: Option<&str>) -> Access {
        self.operator = token.map(AdminToken::new);
        self
    }

    pub fn with_read_token(mut self, token: Option<&str>) -> Access {
        self.read = token.map(AdminToken::new);
        self
    }

    pub fn with_webhook_secret(mut self, secret: Option<&str>) -> Access {
        self.webhook = secret.map(WebhookSecret::new);
        self
    }

    /// What the bearer token of `headers` allows.
    pub fn power(&self, headers: &HeaderMap) -> Power {
        if self.admin.admits(headers) || self.operator.as_ref().is_some_and(|t| t.admits(headers)) {
            Power::Operate
        } else if self.read.as_ref().is_some_and(|t| t.admits(headers)) {
            Power::Read
        } else {
            Power::None
        }
    }

    /// The webhook secret, when one is set.
    pub fn webhook(&self) -> Option<&WebhookSecret> {
        self.webhook.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_signatures_are_checked_over_the_raw_body() {
        // GitHub's documented example: secret "It's a Secret to Everybody",
        // payload "Hello, World!".
        let s = WebhookSecret::new("It's a Secret to Everybody");
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(s.sign(b"Hello, World!").as_deref(), Some(sig));
        assert!(s.signed(b"Hello, World!", sig));
        assert!(!s.signed(b"Hello, World?", sig));
        assert!(!s.signed(b"Hello, World!", &sig.replace("sha256=", "sha1=")));
        assert!(!s.signed(b"Hello, World!", "sha256=zz"));
        assert!(!s.signed(b"Hello, World!", ""));
    }

    #[test]
    fn short_secrets_are_refused_and_newlines_trimmed() {
        assert_eq!(
            secret("the webhook secret", "0123456789abcdef\n").unwrap(),
            "0123456789abcdef"
        );
        let e = secret("the read token", " short \n").unwrap_err();
        assert!(e.contains("5 byte(s)") && !e.contains("short"), "{e}");
    }
}
