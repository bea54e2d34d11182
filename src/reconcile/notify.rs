//! Notifications: each audit event of the kinds chosen (`--notify-on`) is
//! POSTed as an [`api::notify::Notification`](crate::api::notify) to every
//! `--notify URL`, signed when a secret is set, and retried with backoff.
//!
//! Deliveries run on their own tasks, fed by the loop's event broadcast: a
//! slow or dead receiver never delays a transition. At most
//! [`MAX_IN_FLIGHT`] deliveries are pending at once; past that, or once
//! every retry failed, a notification counts as failed, with the reason, in
//! `sluice status` and the log.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use tokio::sync::{Semaphore, broadcast, watch};

use super::access::WebhookSecret;
use crate::api::audit::Transition;
use crate::api::notify::{Deliveries, Notification};
use crate::model::short;

/// Deliveries pending at once, retries included.
pub const MAX_IN_FLIGHT: usize = 256;

/// Where and what to notify.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    pub urls: Vec<String>,
    /// The audit events notified.
    pub on: BTreeSet<String>,
    /// The key of `X-Sluice-Signature-256`.
    pub secret: Option<String>,
    /// The first wait before a retry (doubling from there).
    pub first_retry: Duration,
    /// Attempts after the first.
    pub retries: usize,
    /// How long one attempt may take.
    pub timeout: Duration,
}

impl NotifyConfig {
    /// Notifications of the default events to `urls`: 5 retries from 1 s,
    /// 5 s per attempt.
    pub fn new(urls: Vec<String>) -> NotifyConfig {
        NotifyConfig {
            urls,
            on: crate::api::notify::DEFAULT_EVENTS
                .iter()
                .map(|e| (*e).to_string())
                .collect(),
            secret: None,
            first_retry: Duration::from_secs(1),
            retries: 5,
            timeout: Duration::from_secs(5),
        }
    }
}

/// A URL as it may be shown: its scheme, host and port, then `/…` and the
/// first 8 hex digits of its SHA-256 to tell two apart. Webhook URLs carry
/// their secret in the path (`https://hooks.slack.com/services/T…/B…/SECRET`)
/// or the query as often as in a user and password: none of them is shown.
pub fn redacted(url: &str) -> String {
    use sha2::Digest;
    match reqwest::Url::parse(url) {
        Ok(u) => {
            let digest = sha2::Sha256::digest(url.as_bytes());
            let tag: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
            let host = u.host_str().unwrap_or_default();
            match u.port() {
                Some(port) => format!("{}://{host}:{port}/… [{tag}]", u.scheme()),
                None => format!("{}://{host}/… [{tag}]", u.scheme()),
            }
        }
        Err(_) => "<not a URL>".to_string(),
    }
}

/// The notification of `t` on `branch`.
pub fn notification(t: &Transition, branch: &str) -> Notification {
    let mut text = format!("sluice: {}", t.event);
    if let Some(c) = &t.commit {
        text.push_str(&format!(" of {}", short::commit(c)));
    }
    text.push_str(&format!(
        " on {branch} ({} → {}, {}",
        t.from,
        t.to,
        t.cause.as_str()
    ));
    if let Some(by) = &t.by {
        text.push_str(&format!(" by {by}"));
    }
    text.push_str("): ");
    text.push_str(&t.reason);
    let text = text.replace(['\n', '\r'], " ");
    Notification {
        event: t.event.clone(),
        seq: t.seq,
        time: t.time.clone(),
        commit: t.commit.clone(),
        artifact: t.artifact.clone(),
        from: t.from.clone(),
        to: t.to.clone(),
        cause: t.cause,
        reason: t.reason.clone(),
        by: t.by.clone(),
        figures: t.figures.clone(),
        branch: branch.to_string(),
        text,
    }
}

/// The deliveries' counts, shared with the status.
#[derive(Debug, Default)]
pub struct Health(Mutex<Deliveries>);

impl Health {
    pub fn get(&self) -> Deliveries {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn delivered(&self) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .delivered += 1;
    }

    fn failed(&self, why: String) {
        tracing::warn!("notification failed: {why}");
        let mut d = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        d.failed += 1;
        d.last_error = Some(why);
    }
}

/// Delivers the events of `events` until `shutdown`.
pub async fn run(
    config: NotifyConfig,
    branch: String,
    mut events: broadcast::Receiver<Transition>,
    health: Arc<Health>,
    mut shutdown: watch::Receiver<bool>,
) {
    let http = match reqwest::Client::builder()
        .timeout(config.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(h) => h,
        Err(e) => {
            health.failed(format!("no HTTP client: {e}"));
            return;
        }
    };
    let secret = config.secret.as_deref().map(WebhookSecret::new);
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    loop {
        let t = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            t = events.recv() => t,
        };
        let t = match t {
            Ok(t) => t,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                health.failed(format!("{n} event(s) lost: the notifier fell behind"));
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if !config.on.contains(&t.event) {
            continue;
        }
        let n = notification(&t, &branch);
        let Ok(body) = serde_json::to_vec(&n) else {
            continue;
        };
        let signature = secret.as_ref().and_then(|s| s.sign(&body));
        for url in &config.urls {
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                health.failed(format!(
                    "{}: `{}` dropped: {MAX_IN_FLIGHT} deliveries already pending",
                    redacted(url),
                    n.event
                ));
                continue;
            };
            let (http, url, body, signature) =
                (http.clone(), url.clone(), body.clone(), signature.clone());
            let (health, event, backoff) = (
                health.clone(),
                n.event.clone(),
                ExponentialBuilder::default()
                    .with_min_delay(config.first_retry)
                    .with_max_times(config.retries)
                    .with_jitter(),
            );
            tokio::spawn(async move {
                let send = || async {
                    let mut req = http
                        .post(&url)
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(body.clone());
                    if let Some(sig) = &signature {
                        req = req.header("x-sluice-signature-256", sig);
                    }
                    let resp = req.send().await.map_err(|e| {
                        // reqwest's errors name the URL: keep only the kind.
                        if e.is_timeout() {
                            "timed out".to_string()
                        } else if e.is_connect() {
                            "cannot connect".to_string()
                        } else {
                            "request failed".to_string()
                        }
                    })?;
                    if resp.status().is_success() {
                        Ok(())
                    } else {
                        Err(format!("answered {}", resp.status()))
                    }
                };
                match send.retry(backoff).sleep(tokio::time::sleep).await {
                    Ok(()) => health.delivered(),
                    Err(why) => health.failed(format!(
                        "{}: `{event}` not delivered after retries: {why}",
                        redacted(&url)
                    )),
                }
                drop(slot);
            });
        }
    }
}
