//! The gateway: an MCP server (rmcp's [`ServerHandler`]) whose tools are the
//! union of its upstreams' tools, named `UPSTREAM.tool`. Each `tools/call`
//! becomes a policy request ([`crate::gateway::request`]), is decided
//! ([`Decider`]) and then forwarded, forwarded with the modified arguments,
//! or answered with an error result (`isError: true`) naming the codes and
//! texts, or the approval id to wait for.
//!
//! The caller: `agent` and `org` from the gateway's flags, else from the
//! client's `X-Sluice-Agent` / `X-Sluice-Org` headers; `session` from the
//! MCP session (`Mcp-Session-Id`), else `X-Sluice-Session`, else the
//! gateway's own id (one `--stdio` client is one session).
//!
//! Nothing is forwarded without a decision: an engine that does not answer
//! is an MCP error, as is an upstream that fails or does not answer in
//! time.

use std::collections::BTreeMap;
use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ListToolsResult,
    PaginatedRequestParams, ResultType, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::{ErrorData, ServerHandler};
use serde_json::{Map, Value};

use crate::compile::artifact::Artifact;
use crate::eval::outright::{self, Known};
use crate::gateway::decide::{DecideError, Decider};
use crate::gateway::hook::reasons_text;
use crate::gateway::request::{self, Caller};
use crate::gateway::upstream::Upstream;
use crate::model::ir::DecisionKind;
use crate::model::schema::Schema;

/// What the gateway is started with.
#[derive(Debug)]
pub struct Config {
    pub decider: Decider,
    pub schema: Schema,
    /// `--agent`, `--org`: they win over the client's headers.
    pub agent: Option<String>,
    pub org: Option<String>,
    /// The session of calls that carry none.
    pub session: String,
    /// `--hide-denied`: the policies by which `tools/list` leaves out the
    /// tools they deny the caller outright ([`crate::eval::outright`]).
    pub hide_denied: Option<Arc<Artifact>>,
}

/// The gateway's MCP server; cheap to clone (one per HTTP session).
#[derive(Debug, Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    upstreams: BTreeMap<String, Arc<Upstream>>,
}

impl Gateway {
    pub fn new(config: Config, upstreams: Vec<Upstream>) -> Gateway {
        let upstreams = upstreams
            .into_iter()
            .map(|u| (u.name.clone(), Arc::new(u)))
            .collect();
        Gateway {
            inner: Arc::new(Inner { config, upstreams }),
        }
    }

    /// The tools `caller` is offered: the union of the upstreams' tools,
    /// with `--hide-denied`, less those the policies deny it outright.
    pub async fn tools_for(&self, caller: &Caller) -> Vec<Tool> {
        let mut tools = self.tools().await;
        if let Some(artifact) = &self.inner.config.hide_denied {
            let schema = &self.inner.config.schema;
            tools.retain(|t| {
                let mut known = Known::new();
                known.insert("tool", t.name.as_ref());
                for (field, value) in [("agent", &caller.agent), ("org", &caller.org)] {
                    if let Some(v) = value {
                        known.insert(field, v.as_str());
                    }
                }
                known.retain(|field, _| schema.get(field).is_some());
                match outright::denied_outright(artifact, &known) {
                    Some((policy, rule)) => {
                        tracing::debug!(tool = %t.name, %policy, %rule, "tools/list: denied outright, hidden");
                        false
                    }
                    None => true,
                }
            });
        }
        tools
    }

    /// The union of the upstreams' tools, each named `UPSTREAM.tool`; an
    /// upstream that fails to list is left out (and logged), so one broken
    /// upstream does not hide the others.
    pub async fn tools(&self) -> Vec<Tool> {
        let mut lists = tokio::task::JoinSet::new();
        for u in self.inner.upstreams.values() {
            let u = Arc::clone(u);
            lists.spawn(async move {
                let tools = match u.tools().await {
                    Ok(tools) => tools,
                    Err(e) => {
                        tracing::warn!(error = %e, "tools/list: upstream left out");
                        Vec::new()
                    }
                };
                let named: Vec<Tool> = tools
                    .into_iter()
                    .map(|mut t| {
                        t.name = format!("{}.{}", u.name, t.name).into();
                        t
                    })
                    .collect();
                named
            });
        }
        let mut all = Vec::new();
        while let Some(done) = lists.join_next().await {
            if let Ok(tools) = done {
                all.extend(tools);
            }
        }
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    fn caller(&self, cx: &RequestContext<RoleServer>) -> Caller {
        let parts = cx.extensions.get::<axum::http::request::Parts>();
        let header = |name: &str| {
            parts
                .and_then(|p| p.headers.get(name))
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let c = &self.inner.config;
        Caller {
            agent: c.agent.clone().or_else(|| header("x-sluice-agent")),
            org: c.org.clone().or_else(|| header("x-sluice-org")),
            session: Some(
                header("mcp-session-id")
                    .or_else(|| header("x-sluice-session"))
                    .unwrap_or_else(|| c.session.clone()),
            ),
        }
    }

    /// One call, decided then forwarded or answered; `request_id` names
    /// its decision in the decision log.
    pub async fn call(
        &self,
        params: CallToolRequestParams,
        caller: &Caller,
        request_id: Option<&str>,
    ) -> Result<CallToolResponse, ErrorData> {
        let full = params.name.to_string();
        let Some((upstream, tool)) = full
            .split_once('.')
            .and_then(|(u, t)| Some((self.inner.upstreams.get(u)?, t)))
        else {
            let names: Vec<&str> = self.inner.upstreams.keys().map(String::as_str).collect();
            return Err(ErrorData::invalid_params(
                format!(
                    "no tool `{full}`: tools are named UPSTREAM.tool, with UPSTREAM one of {}",
                    names.join(", ")
                ),
                None,
            ));
        };
        let arguments = params.arguments.clone().unwrap_or_default();
        let req = request::build(&full, caller, &arguments, &self.inner.config.schema);
        let response = match self.inner.config.decider.decide(&req, request_id).await {
            Ok(r) => r,
            Err(DecideError::Refused(why)) => {
                return Ok(refused(format!(
                    "sluice refused the call to `{full}`: {why}"
                )));
            }
            Err(e) => return Err(ErrorData::internal_error(e.to_string(), None)),
        };
        let reasons = reasons_text(&response);
        let forward_with = |arguments: Map<String, Value>| {
            let mut p = CallToolRequestParams::new(tool.to_string());
            p.arguments = Some(arguments);
            p
        };
        let forward = match response.decision {
            DecisionKind::Allow => forward_with(arguments),
            DecisionKind::Modify => match &response.request {
                Some(modified) => forward_with(request::apply_modified(&arguments, modified)),
                None => forward_with(arguments),
            },
            DecisionKind::Deny => {
                return Ok(refused(format!("denied by policy{reasons}")));
            }
            DecisionKind::RequireApproval => {
                let id = response.approval_id.as_deref().unwrap_or("(no id)");
                return Ok(refused(format!(
                    "approval {id} is required{reasons}; make the same call again once it is approved"
                )));
            }
        };
        let mut answer = upstream
            .call(forward)
            .await
            .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        // An upstream on an older protocol version leaves the result type
        // out; the client may speak a version that requires it.
        if let CallToolResponse::Complete(result) = &mut answer {
            result.result_type.get_or_insert(ResultType::COMPLETE);
        }
        Ok(answer)
    }
}

/// The decision log's `request_id` of a call: `mcp-SESSION-ID`, the MCP
/// session and the JSON-RPC request id, at most 128 visible characters
/// (what an engine accepts as `X-Request-Id`).
fn request_id(session: Option<&str>, id: &rmcp::model::RequestId) -> String {
    let raw = format!("mcp-{}-{id}", session.unwrap_or("-"));
    raw.chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .take(128)
        .collect()
}

/// A tool result with `isError: true`.
fn refused(text: String) -> CallToolResponse {
    CallToolResult::error(vec![ContentBlock::text(text)]).into()
}

impl ServerHandler for Gateway {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        cx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let caller = self.caller(&cx);
        Ok(ListToolsResult::with_all_items(
            self.tools_for(&caller).await,
        ))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let caller = self.caller(&cx);
        let id = request_id(caller.session.as_deref(), &cx.id);
        self.call(request, &caller, Some(&id)).await
    }
}
