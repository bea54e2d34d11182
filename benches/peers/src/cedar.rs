//! Cedar: every rule as one `permit` or `forbid`, evaluated by
//! `Authorizer::is_authorized` (default deny, forbid overrides permit).

use std::str::FromStr;

use cedar_policy::{Authorizer, Context, Decision, Entities, EntityUid, PolicySet, Request};

use crate::Engine;
use crate::generator::{self, Set, json_str};

pub struct Cedar {
    authorizer: Authorizer,
    policies: PolicySet,
    entities: Entities,
    requests: Vec<Request>,
    texts: Vec<String>,
}

impl Cedar {
    pub fn new(set: &Set) -> Cedar {
        let policies = PolicySet::from_str(&set.cedar_policies()).expect("Cedar policies parse");
        assert_eq!(policies.policies().count(), set.rule_count());
        Cedar {
            authorizer: Authorizer::new(),
            policies,
            entities: Entities::empty(),
            requests: set.requests.iter().map(request).collect(),
            texts: set
                .requests
                .iter()
                .map(generator::Request::to_json)
                .collect(),
        }
    }
}

fn uid(ty: &str, id: &str) -> EntityUid {
    EntityUid::from_str(&format!("{ty}::{}", json_str(id))).expect("entity uid")
}

/// The Cedar request of a generated request: the agent is the principal, the
/// tool the action, the org the resource; the rest is the context.
fn request(r: &generator::Request) -> Request {
    let context = Context::from_json_str(&r.cedar_context_json(), None).expect("context");
    Request::new(
        uid("Agent", &r.agent),
        uid("Action", &r.tool),
        uid("Org", &r.org),
        context,
        None,
    )
    .expect("request")
}

/// The same, from the request's JSON text, as an engine receives it.
fn decode(text: &str) -> Request {
    let mut v: serde_json::Value = serde_json::from_str(text).expect("request JSON");
    let field = |v: &serde_json::Value, k: &str| v[k].as_str().expect("string field").to_owned();
    let (agent, tool, org) = (field(&v, "agent"), field(&v, "tool"), field(&v, "org"));
    let context = serde_json::json!({"session": v["session"].take(), "args": v["args"].take()});
    let context = Context::from_json_value(context, None).expect("context");
    Request::new(
        uid("Agent", &agent),
        uid("Action", &tool),
        uid("Org", &org),
        context,
        None,
    )
    .expect("request")
}

impl Engine for Cedar {
    fn name(&self) -> String {
        "cedar is_authorized".to_string()
    }

    fn eval(&mut self, i: usize) -> bool {
        let response =
            self.authorizer
                .is_authorized(&self.requests[i], &self.policies, &self.entities);
        debug_assert!(response.diagnostics().errors().next().is_none());
        response.decision() == Decision::Allow
    }

    fn decode_eval(&mut self, i: usize) -> bool {
        let request = decode(&self.texts[i]);
        self.authorizer
            .is_authorized(&request, &self.policies, &self.entities)
            .decision()
            == Decision::Allow
    }
}
