//! A deterministic generator of policy sets and requests for the evaluation
//! benchmarks.
//!
//! One seed gives one set of `policies × rules` rules and one list of
//! requests, emitted three ways with the same meaning:
//!
//! - sluice: `sluice.toml` (project default `deny`, the request schema) and
//!   one `.policy` file per policy;
//! - Cedar: one `permit` per `allow` rule and one `forbid` per `deny` rule
//!   (Cedar's default deny and forbid-overrides-permit are exactly sluice's
//!   "deny beats allow, no match gives the default" when the default is
//!   `deny` and rules only allow or deny);
//! - Rego: `allow_match` / `deny_match` rule bodies, one module per policy,
//!   and `allow if { allow_match; not deny_match }`.
//!
//! Conditions stay within what all three express the same way: equality and
//! `in` on the tool, the agent and the org, comparisons of the integer
//! `args.amount`, string equality, inequality and `in` on `args.country`, and
//! the optional string `args.channel` (equality, `has`). An atom that reads an
//! absent optional field is false in all three.
//!
//! [`Set::decide`] is a reference implementation of the semantics, used to
//! check each engine before it is timed.
//!
//! Randomness comes from `rand`'s `Xoshiro256PlusPlus`, a generator whose
//! output `rand` keeps the same across versions and platforms, so a seed
//! names one set. Beside the standard library, `rand` is the one
//! dependency: the file is `#[path]`-included by the main crate's bench and
//! by the peer-comparison crate, which both depend on it.

use std::fmt::Write as _;
use std::path::Path;

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt as _, SeedableRng as _};

/// Services a policy may govern are `svc0` … `svc{n-1}`, each with
/// [`ACTIONS`] tools `svc{i}.action{j}`.
pub const ACTIONS: usize = 8;
/// Agents are `agent-0` … `agent-{AGENTS-1}`.
pub const AGENTS: usize = 200;
/// Orgs are `org-0` … `org-{ORGS-1}` and `internal`.
pub const ORGS: usize = 20;
pub const COUNTRIES: [&str; 24] = [
    "DE", "FR", "US", "GB", "NL", "ES", "IT", "PL", "SE", "CH", "JP", "KR", "CN", "IN", "BR", "MX",
    "CA", "AU", "KP", "IR", "SY", "CU", "RU", "BY",
];
pub const CHANNELS: [&str; 5] = ["email", "slack", "sms", "web", "phone"];
const THRESHOLDS: [i64; 7] = [100, 500, 1_000, 2_500, 5_000, 10_000, 50_000];
const MAX_AMOUNT: i64 = 100_000;

/// The request schema, as `sluice.toml` declares it.
pub const SLUICE_TOML_SCHEMA: &str = r#"[schema]
tool = "string"
agent = "string"
org = "string"
session = "string"
"args.amount" = "int"
"args.country" = "string"
"args.channel?" = "string"
"#;

/// The generator's draws, from a seeded [`Xoshiro256PlusPlus`].
#[derive(Debug, Clone)]
pub struct Rng(Xoshiro256PlusPlus);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(Xoshiro256PlusPlus::seed_from_u64(seed))
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        self.0.random_range(0..n)
    }

    /// True with probability `percent / 100`.
    pub fn percent(&mut self, percent: u32) -> bool {
        self.0.random_ratio(percent, 100)
    }

    pub fn range_i64(&mut self, lo: i64, hi_inclusive: i64) -> i64 {
        self.0.random_range(lo..=hi_inclusive)
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// `k` distinct indices of `0..n`, in increasing order.
    pub fn distinct(&mut self, n: usize, k: usize) -> Vec<usize> {
        let mut out: Vec<usize> = Vec::with_capacity(k);
        while out.len() < k.min(n) {
            let i = self.below(n);
            if !out.contains(&i) {
                out.push(i);
            }
        }
        out.sort_unstable();
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

impl Effect {
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Allow => "allow",
            Effect::Deny => "deny",
        }
    }
}

/// A request field a condition can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Tool,
    Agent,
    Org,
    Amount,
    Country,
    /// Optional.
    Channel,
}

impl Field {
    pub fn sluice_path(self) -> &'static str {
        match self {
            Field::Tool => "tool",
            Field::Agent => "agent",
            Field::Org => "org",
            Field::Amount => "args.amount",
            Field::Country => "args.country",
            Field::Channel => "args.channel",
        }
    }

    fn rego_path(self) -> &'static str {
        match self {
            Field::Tool => "input.tool",
            Field::Agent => "input.agent",
            Field::Org => "input.org",
            Field::Amount => "input.args.amount",
            Field::Country => "input.args.country",
            Field::Channel => "input.args.channel",
        }
    }

    /// The Cedar entity type when the field is the principal, action or
    /// resource of the Cedar request.
    fn cedar_entity(self) -> Option<(&'static str, &'static str)> {
        match self {
            Field::Tool => Some(("action", "Action")),
            Field::Agent => Some(("principal", "Agent")),
            Field::Org => Some(("resource", "Org")),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Lt,
    Le,
    Gt,
    Ge,
}

impl Cmp {
    pub fn as_str(self) -> &'static str {
        match self {
            Cmp::Lt => "<",
            Cmp::Le => "<=",
            Cmp::Gt => ">",
            Cmp::Ge => ">=",
        }
    }

    fn holds(self, a: i64, b: i64) -> bool {
        match self {
            Cmp::Lt => a < b,
            Cmp::Le => a <= b,
            Cmp::Gt => a > b,
            Cmp::Ge => a >= b,
        }
    }
}

/// One atom of a rule's condition; a condition is a conjunction of atoms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Atom {
    Eq(Field, String),
    Ne(Field, String),
    In(Field, Vec<String>),
    Amount(Cmp, i64),
    /// `has(args.channel)`.
    HasChannel,
}

impl Atom {
    pub fn field(&self) -> Field {
        match self {
            Atom::Eq(f, _) | Atom::Ne(f, _) | Atom::In(f, _) => *f,
            Atom::Amount(..) => Field::Amount,
            Atom::HasChannel => Field::Channel,
        }
    }

    pub fn holds(&self, r: &Request) -> bool {
        match self {
            Atom::Eq(f, v) => r.str_field(*f).is_some_and(|x| x == v),
            Atom::Ne(f, v) => r.str_field(*f).is_some_and(|x| x != v),
            Atom::In(f, vs) => r.str_field(*f).is_some_and(|x| vs.iter().any(|v| v == x)),
            Atom::Amount(op, t) => op.holds(r.amount, *t),
            Atom::HasChannel => r.channel.is_some(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub effect: Effect,
    pub atoms: Vec<Atom>,
}

impl Rule {
    pub fn matches(&self, r: &Request) -> bool {
        self.atoms.iter().all(|a| a.holds(r))
    }
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    pub rules: Vec<Rule>,
}

/// What a request was generated to exercise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Built to satisfy a random `deny` rule.
    MatchDeny,
    /// Built to satisfy a random `allow` rule.
    MatchAllow,
    /// A tool no policy governs.
    NoMatch,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub kind: Kind,
    pub session: String,
    pub agent: String,
    pub org: String,
    pub tool: String,
    pub amount: i64,
    pub country: String,
    pub channel: Option<String>,
}

impl Request {
    pub fn str_field(&self, f: Field) -> Option<&str> {
        match f {
            Field::Tool => Some(&self.tool),
            Field::Agent => Some(&self.agent),
            Field::Org => Some(&self.org),
            Field::Country => Some(&self.country),
            Field::Channel => self.channel.as_deref(),
            Field::Amount => None,
        }
    }

    /// The `args` object as JSON.
    pub fn args_json(&self) -> String {
        let mut s = format!(
            "{{\"amount\":{},\"country\":{}",
            self.amount,
            json_str(&self.country)
        );
        if let Some(c) = &self.channel {
            let _ = write!(s, ",\"channel\":{}", json_str(c));
        }
        s.push('}');
        s
    }

    /// The request as sluice (and Rego's `input`) read it.
    pub fn to_json(&self) -> String {
        format!(
            "{{\"session\":{},\"agent\":{},\"org\":{},\"tool\":{},\"args\":{}}}",
            json_str(&self.session),
            json_str(&self.agent),
            json_str(&self.org),
            json_str(&self.tool),
            self.args_json()
        )
    }

    /// The Cedar context: everything that is not principal, action or
    /// resource.
    pub fn cedar_context_json(&self) -> String {
        format!(
            "{{\"session\":{},\"args\":{}}}",
            json_str(&self.session),
            self.args_json()
        )
    }
}

/// A generated set: policies, requests and their reference decisions.
#[derive(Debug, Clone)]
pub struct Set {
    pub seed: u64,
    pub policies: Vec<Policy>,
    pub requests: Vec<Request>,
}

/// Generates `policies` policies of `rules` rules each and `requests`
/// requests, deterministically from `seed`.
pub fn generate(policies: usize, rules: usize, requests: usize, seed: u64) -> Set {
    let mut rng = Rng::new(seed);
    let services = policies.max(1);
    let policies: Vec<Policy> = (0..policies)
        .map(|p| gen_policy(&mut rng, p, rules, services))
        .collect();
    let mut by_effect: [Vec<(usize, usize)>; 2] = [Vec::new(), Vec::new()];
    for (p, policy) in policies.iter().enumerate() {
        for (r, rule) in policy.rules.iter().enumerate() {
            by_effect[usize::from(rule.effect == Effect::Deny)].push((p, r));
        }
    }
    let requests = (0..requests)
        .map(|i| {
            let roll = rng.below(10);
            let kind = if roll < 4 {
                Kind::MatchDeny
            } else if roll < 8 {
                Kind::MatchAllow
            } else {
                Kind::NoMatch
            };
            let mut req = random_request(&mut rng, i, services);
            let pool: &[(usize, usize)] = match kind {
                Kind::MatchDeny => &by_effect[1],
                Kind::MatchAllow => &by_effect[0],
                Kind::NoMatch => &[],
            };
            if pool.is_empty() {
                req.kind = Kind::NoMatch;
                // A service no policy governs.
                req.tool = format!(
                    "svc{}.action{}",
                    services + rng.below(100),
                    rng.below(ACTIONS)
                );
            } else {
                req.kind = kind;
                let (p, r) = *rng.pick(pool);
                for atom in &policies[p].rules[r].atoms {
                    satisfy(&mut rng, &mut req, atom);
                }
                debug_assert!(policies[p].rules[r].matches(&req));
            }
            req
        })
        .collect();
    Set {
        seed,
        policies,
        requests,
    }
}

fn gen_policy(rng: &mut Rng, p: usize, rules: usize, services: usize) -> Policy {
    let svc = rng.below(services);
    let rules = (0..rules)
        .map(|r| {
            let name = format!("r{r:02}");
            // One policy in a hundred starts with a rule for every tool: a
            // blocklist of agents.
            let global = p.is_multiple_of(100) && r == 0;
            if global {
                let agents = rng
                    .distinct(AGENTS, 3)
                    .into_iter()
                    .map(agent_name)
                    .collect();
                return Rule {
                    name,
                    effect: Effect::Deny,
                    atoms: vec![Atom::In(Field::Agent, agents)],
                };
            }
            let effect = if rng.percent(45) {
                Effect::Deny
            } else {
                Effect::Allow
            };
            let mut atoms = Vec::new();
            if rng.percent(80) {
                atoms.push(Atom::Eq(Field::Tool, tool_name(svc, rng.below(ACTIONS))));
            } else {
                let k = 2 + rng.below(2);
                let tools = rng
                    .distinct(ACTIONS, k)
                    .into_iter()
                    .map(|a| tool_name(svc, a))
                    .collect();
                atoms.push(Atom::In(Field::Tool, tools));
            }
            let extra = rng.below(3);
            let fields = [
                Field::Agent,
                Field::Org,
                Field::Amount,
                Field::Country,
                Field::Channel,
            ];
            for f in rng.distinct(fields.len(), extra) {
                atoms.push(gen_atom(rng, fields[f]));
            }
            Rule {
                name,
                effect,
                atoms,
            }
        })
        .collect();
    Policy {
        name: format!("p{p:04}"),
        rules,
    }
}

fn gen_atom(rng: &mut Rng, field: Field) -> Atom {
    let roll = rng.below(100);
    match field {
        Field::Agent if roll < 60 => Atom::Eq(field, agent_name(rng.below(AGENTS))),
        Field::Agent => Atom::In(field, pick_n(rng, AGENTS, agent_name)),
        Field::Org if roll < 50 => Atom::Eq(field, org_name(rng.below(ORGS + 1))),
        Field::Org if roll < 80 => Atom::In(field, pick_n(rng, ORGS + 1, org_name)),
        Field::Org => Atom::Ne(field, org_name(ORGS)),
        Field::Amount => {
            let op = *rng.pick(&[Cmp::Lt, Cmp::Le, Cmp::Gt, Cmp::Ge]);
            Atom::Amount(op, *rng.pick(&THRESHOLDS))
        }
        Field::Country if roll < 60 => Atom::In(
            field,
            pick_n(rng, COUNTRIES.len(), |i| COUNTRIES[i].to_string()),
        ),
        Field::Country if roll < 80 => Atom::Eq(field, rng.pick(&COUNTRIES).to_string()),
        Field::Country => Atom::Ne(field, rng.pick(&COUNTRIES).to_string()),
        Field::Channel if roll < 70 => Atom::Eq(field, rng.pick(&CHANNELS).to_string()),
        Field::Channel => Atom::HasChannel,
        Field::Tool => unreachable!("tool atoms are generated apart"),
    }
}

/// Two to four distinct names of `0..n`.
fn pick_n(rng: &mut Rng, n: usize, name: impl Fn(usize) -> String) -> Vec<String> {
    let k = 2 + rng.below(3);
    rng.distinct(n, k).into_iter().map(name).collect()
}

pub fn tool_name(svc: usize, action: usize) -> String {
    format!("svc{svc}.action{action}")
}

pub fn agent_name(i: usize) -> String {
    format!("agent-{i}")
}

/// `org-{i}`, and `internal` for `i == ORGS`.
pub fn org_name(i: usize) -> String {
    if i == ORGS {
        "internal".to_string()
    } else {
        format!("org-{i}")
    }
}

fn random_request(rng: &mut Rng, i: usize, services: usize) -> Request {
    Request {
        kind: Kind::NoMatch,
        session: format!("s-{i:05}"),
        agent: agent_name(rng.below(AGENTS)),
        org: org_name(rng.below(ORGS + 1)),
        tool: tool_name(rng.below(services), rng.below(ACTIONS)),
        amount: rng.range_i64(0, MAX_AMOUNT),
        country: rng.pick(&COUNTRIES).to_string(),
        channel: if rng.percent(50) {
            Some(rng.pick(&CHANNELS).to_string())
        } else {
            None
        },
    }
}

/// Changes `req` so that `atom` holds.
fn satisfy(rng: &mut Rng, req: &mut Request, atom: &Atom) {
    match atom {
        Atom::Eq(f, v) => set_str(req, *f, v.clone()),
        Atom::In(f, vs) => set_str(req, *f, rng.pick(vs).clone()),
        Atom::Ne(f, v) => {
            while req.str_field(*f) == Some(v.as_str()) {
                let other = match f {
                    Field::Org => org_name(rng.below(ORGS + 1)),
                    Field::Country => rng.pick(&COUNTRIES).to_string(),
                    _ => unreachable!("`!=` is generated on org and country only"),
                };
                set_str(req, *f, other);
            }
        }
        Atom::Amount(op, t) => {
            req.amount = match op {
                Cmp::Lt => rng.range_i64(0, t - 1),
                Cmp::Le => rng.range_i64(0, *t),
                Cmp::Gt => rng.range_i64(t + 1, MAX_AMOUNT),
                Cmp::Ge => rng.range_i64(*t, MAX_AMOUNT),
            }
        }
        Atom::HasChannel => {
            if req.channel.is_none() {
                req.channel = Some(rng.pick(&CHANNELS).to_string());
            }
        }
    }
}

fn set_str(req: &mut Request, f: Field, v: String) {
    match f {
        Field::Tool => req.tool = v,
        Field::Agent => req.agent = v,
        Field::Org => req.org = v,
        Field::Country => req.country = v,
        Field::Channel => req.channel = Some(v),
        Field::Amount => unreachable!("amount is an int"),
    }
}

/// Counts of a request list, for the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mix {
    pub match_deny: usize,
    pub match_allow: usize,
    pub no_match: usize,
    pub final_allow: usize,
    pub final_deny: usize,
}

impl Set {
    pub fn rule_count(&self) -> usize {
        self.policies.iter().map(|p| p.rules.len()).sum()
    }

    /// The reference decision: deny beats allow; no match gives the project
    /// default, `deny`.
    pub fn decide(&self, req: &Request) -> Effect {
        let mut allowed = false;
        for rule in self.policies.iter().flat_map(|p| &p.rules) {
            if rule.matches(req) {
                match rule.effect {
                    Effect::Deny => return Effect::Deny,
                    Effect::Allow => allowed = true,
                }
            }
        }
        if allowed { Effect::Allow } else { Effect::Deny }
    }

    pub fn mix(&self) -> Mix {
        let mut m = Mix::default();
        for r in &self.requests {
            match r.kind {
                Kind::MatchDeny => m.match_deny += 1,
                Kind::MatchAllow => m.match_allow += 1,
                Kind::NoMatch => m.no_match += 1,
            }
            match self.decide(r) {
                Effect::Allow => m.final_allow += 1,
                Effect::Deny => m.final_deny += 1,
            }
        }
        m
    }

    // ---- sluice ----------------------------------------------------------

    pub fn sluice_toml(&self) -> String {
        format!("[project]\nname = \"generated\"\ndefault = \"deny\"\n\n{SLUICE_TOML_SCHEMA}")
    }

    /// `(path relative to the repository root, text)` of every policy file.
    pub fn sluice_policies(&self) -> Vec<(String, String)> {
        self.policies
            .iter()
            .map(|p| (format!("policies/{}.policy", p.name), self.sluice_policy(p)))
            .collect()
    }

    pub fn sluice_policy(&self, policy: &Policy) -> String {
        let mut s = format!(
            "// Generated (seed {}).\npolicy {} version 1.0.0 {{\n",
            self.seed, policy.name
        );
        for rule in &policy.rules {
            let cond: Vec<String> = rule.atoms.iter().map(sluice_atom).collect();
            let _ = writeln!(s, "  rule {} {{", rule.name);
            let _ = writeln!(s, "    when {}", cond.join(" and "));
            match rule.effect {
                Effect::Allow => s.push_str("    allow\n"),
                Effect::Deny => {
                    let _ = writeln!(
                        s,
                        "    deny BLOCKED \"{}.{} blocks this request\"",
                        policy.name, rule.name
                    );
                }
            }
            s.push_str("  }\n");
        }
        s.push_str("}\n");
        s
    }

    // ---- Cedar -----------------------------------------------------------

    /// Every rule as one Cedar policy: `permit` for allow, `forbid` for deny.
    pub fn cedar_policies(&self) -> String {
        let mut s = String::new();
        for policy in &self.policies {
            for rule in &policy.rules {
                s.push_str(&cedar_rule(policy, rule));
            }
        }
        s
    }

    // ---- Rego ------------------------------------------------------------

    /// `(file name, module)`: the entry point `data.sluice.allow` first,
    /// then one module per policy.
    pub fn rego_modules(&self) -> Vec<(String, String)> {
        let mut out = vec![("main.rego".to_string(), REGO_MAIN.to_string())];
        out.extend(
            self.policies
                .iter()
                .map(|p| (format!("{}.rego", p.name), rego_policy(p))),
        );
        out
    }

    /// Writes the set in all three forms below `dir`: `sluice.toml` and
    /// `policies/*.policy` (a sluice repository), `peers/policies.cedar`,
    /// `peers/rego/*.rego`, and `requests.jsonl` with the reference decision
    /// of each request.
    pub fn write_to(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir.join("policies"))?;
        std::fs::create_dir_all(dir.join("peers/rego"))?;
        std::fs::write(dir.join("sluice.toml"), self.sluice_toml())?;
        for (path, text) in self.sluice_policies() {
            std::fs::write(dir.join(path), text)?;
        }
        std::fs::write(dir.join("peers/policies.cedar"), self.cedar_policies())?;
        for (name, text) in self.rego_modules() {
            std::fs::write(dir.join("peers/rego").join(name), text)?;
        }
        let mut lines = String::new();
        for r in &self.requests {
            let _ = writeln!(
                lines,
                "{{\"request\":{},\"expect\":\"{}\"}}",
                r.to_json(),
                self.decide(r).as_str()
            );
        }
        std::fs::write(dir.join("requests.jsonl"), lines)
    }
}

fn sluice_list(vs: &[String]) -> String {
    let items: Vec<String> = vs.iter().map(|v| json_str(v)).collect();
    format!("[{}]", items.join(", "))
}

fn sluice_atom(atom: &Atom) -> String {
    match atom {
        Atom::Eq(f, v) => format!("{} == {}", f.sluice_path(), json_str(v)),
        Atom::Ne(f, v) => format!("{} != {}", f.sluice_path(), json_str(v)),
        Atom::In(f, vs) => format!("{} in {}", f.sluice_path(), sluice_list(vs)),
        Atom::Amount(op, t) => format!("args.amount {} {t}", op.as_str()),
        Atom::HasChannel => "has(args.channel)".to_string(),
    }
}

fn cedar_uid(ty: &str, v: &str) -> String {
    format!("{ty}::{}", json_str(v))
}

fn cedar_rule(policy: &Policy, rule: &Rule) -> String {
    let mut scope = [
        "principal".to_string(),
        "action".to_string(),
        "resource".to_string(),
    ];
    let mut when: Vec<String> = Vec::new();
    for atom in &rule.atoms {
        let entity = atom.field().cedar_entity();
        match (atom, entity) {
            // Equality on principal, action or resource goes in the scope, as
            // a Cedar author would write it; so does `action in [..]`.
            (Atom::Eq(_, v), Some((var, ty))) => {
                let slot = scope.iter_mut().find(|s| s.as_str() == var).expect("slot");
                *slot = format!("{var} == {}", cedar_uid(ty, v));
            }
            (Atom::In(Field::Tool, vs), Some((var, ty))) => {
                let uids: Vec<String> = vs.iter().map(|v| cedar_uid(ty, v)).collect();
                scope[1] = format!("{var} in [{}]", uids.join(", "));
            }
            (Atom::In(_, vs), Some((var, ty))) => {
                let uids: Vec<String> = vs.iter().map(|v| cedar_uid(ty, v)).collect();
                when.push(format!("{var} in [{}]", uids.join(", ")));
            }
            (Atom::Ne(_, v), Some((var, ty))) => {
                when.push(format!("{var} != {}", cedar_uid(ty, v)));
            }
            (Atom::Eq(Field::Channel, v), None) => when.push(format!(
                "context.args has channel && context.args.channel == {}",
                json_str(v)
            )),
            (Atom::Eq(f, v), None) => {
                when.push(format!("{} == {}", cedar_path(*f), json_str(v)));
            }
            (Atom::Ne(f, v), None) => {
                when.push(format!("{} != {}", cedar_path(*f), json_str(v)));
            }
            (Atom::In(f, vs), None) => {
                when.push(format!("{}.contains({})", sluice_list(vs), cedar_path(*f)));
            }
            (Atom::Amount(op, t), _) => {
                when.push(format!("context.args.amount {} {t}", op.as_str()));
            }
            (Atom::HasChannel, _) => when.push("context.args has channel".to_string()),
        }
    }
    let verb = match rule.effect {
        Effect::Allow => "permit",
        Effect::Deny => "forbid",
    };
    let mut s = format!(
        "@id(\"{}.{}\")\n{verb} ({}, {}, {})",
        policy.name, rule.name, scope[0], scope[1], scope[2]
    );
    if !when.is_empty() {
        let _ = write!(s, "\nwhen {{ {} }}", when.join(" && "));
    }
    s.push_str(";\n\n");
    s
}

fn cedar_path(f: Field) -> &'static str {
    match f {
        Field::Amount => "context.args.amount",
        Field::Country => "context.args.country",
        Field::Channel => "context.args.channel",
        _ => unreachable!("entity fields are principal, action or resource"),
    }
}

/// The Rego entry point `data.sluice.allow`: deny beats allow; no match
/// gives the default, deny.
pub const REGO_MAIN: &str = "package sluice

default allow := false

# Deny beats allow; no match gives the default, deny.
allow if {
\tallow_match
\tnot deny_match
}
";

/// One policy as a Rego module: an `allow_match` or `deny_match` body per
/// rule.
pub fn rego_policy(policy: &Policy) -> String {
    let mut s = String::from("package sluice\n");
    for rule in &policy.rules {
        let head = match rule.effect {
            Effect::Allow => "allow_match",
            Effect::Deny => "deny_match",
        };
        let _ = write!(s, "\n# {}.{}\n{head} if {{\n", policy.name, rule.name);
        for atom in &rule.atoms {
            let _ = writeln!(s, "\t{}", rego_atom(atom));
        }
        s.push_str("}\n");
    }
    s
}

fn rego_atom(atom: &Atom) -> String {
    match atom {
        Atom::Eq(f, v) => format!("{} == {}", f.rego_path(), json_str(v)),
        Atom::Ne(f, v) => format!("{} != {}", f.rego_path(), json_str(v)),
        Atom::In(f, vs) => {
            let items: Vec<String> = vs.iter().map(|v| json_str(v)).collect();
            format!("{} in {{{}}}", f.rego_path(), items.join(", "))
        }
        Atom::Amount(op, t) => format!("input.args.amount {} {t}", op.as_str()),
        Atom::HasChannel => "input.args.channel".to_string(),
    }
}

/// A JSON (and sluice, Cedar and Rego) string literal.
pub fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
