//! The agent inventory (SPEC §9): `agents/*.toml` read from the repository
//! with located `inventory::invalid` errors (fixtures snapshotted), carried
//! by the artifact and its hash, and checked against the set:
//! `inventory::unknown_tool` and `inventory::unknown_agent` (a fixture
//! repository, snapshotted, and through the built `sluice check`). Without
//! `agents/`, none of it applies.

use std::path::{Path, PathBuf};

use sluice::diagnostic::{Sources, render_human};
use sluice::pipeline::{Checked, check_repo};
use sluice::project::parse_inventory;
use sluice::source::SourceFile;
use sluice::tree::Traces;

fn repo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/inventory/repo")
}

/// The fixture repository read from disk and checked.
fn checked_fixture() -> Checked {
    let files = sluice::tree::fs::load(&repo_dir(), Traces::Skip).unwrap();
    check_repo(&files.project, &files.policies, &files.agents)
}

fn codes<'a>(c: &'a Checked, code: &str) -> Vec<&'a sluice::diagnostic::Finding> {
    c.findings
        .iter()
        .filter(|f| f.code.as_str() == code)
        .collect()
}

#[test]
fn agents_are_read_from_the_repository_into_the_inventory() {
    let files = sluice::tree::fs::load(&repo_dir(), Traces::Skip).unwrap();
    let names: Vec<&str> = files.agents.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["agents/invoice-bot.toml", "agents/ops-bot.toml"]);
    let inventory = parse_inventory(&files.agents).unwrap();
    let ids: Vec<&str> = inventory.agents.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["invoice-bot", "ops-bot"]);
    let bot = inventory.agent("invoice-bot").unwrap();
    assert_eq!(bot.owner, "finance-platform");
    assert_eq!(bot.data, ["payment", "pii"]);
    assert_eq!(bot.credentials, ["stripe-restricted-key"]);
    assert_eq!(bot.triggers, ["schedule:daily"]);
    assert_eq!(bot.cost.map(|c| c.calls_per_day), Some(400));
    assert_eq!(inventory.agent("ops-bot").unwrap().cost, None);
    assert_eq!(
        inventory.tools(),
        [
            "approvals.request",
            "email.send",
            "payments.transfer",
            "shell.exec"
        ]
    );
}

#[test]
fn invalid_agent_files_are_located_errors() {
    insta::with_settings!({snapshot_path => "../snapshots/inventory", prepend_module_to_snapshot => false}, {
        insta::glob!("data/inventory/err/*.toml", |path| {
            let name = format!("agents/{}", path.file_name().unwrap().to_string_lossy());
            let file = SourceFile::new(name, std::fs::read_to_string(path).unwrap());
            let findings = parse_inventory(std::slice::from_ref(&file)).unwrap_err();
            assert!(findings.iter().all(|f| f.code.as_str() == "inventory::invalid" && f.is_error()));
            assert!(findings.iter().all(|f| f.labels.iter().all(|l| l.file == file.name)));
            let mut sources = Sources::new();
            sources.add(file);
            insta::assert_snapshot!(render_human(&findings, &sources, false, 80));
        });
    });
}

#[test]
fn an_agent_inventoried_twice_is_an_error_naming_both_files() {
    let a = SourceFile::new(
        "agents/a.toml",
        "id = \"bot\"\nowner = \"x\"\ntools = [\"t\"]\n",
    );
    let b = SourceFile::new(
        "agents/b.toml",
        "owner = \"y\"\nid = \"bot\"\ntools = [\"u\"]\n",
    );
    let findings = parse_inventory(&[a, b]).unwrap_err();
    assert_eq!(findings.len(), 1, "{findings:#?}");
    let f = &findings[0];
    assert!(
        f.message.contains("`bot` is inventoried twice"),
        "{}",
        f.message
    );
    let files: Vec<&str> = f.labels.iter().map(|l| l.file.as_str()).collect();
    assert_eq!(files, ["agents/b.toml", "agents/a.toml"]);
}

#[test]
fn rules_are_checked_against_the_inventory() {
    let c = checked_fixture();
    assert!(!c.has_errors(), "warnings only: {:#?}", c.findings);
    let tools: Vec<(&str, Option<&str>)> = codes(&c, "inventory::unknown_tool")
        .iter()
        .map(|f| (f.message.as_str(), f.labels[0].rule.as_deref()))
        .collect();
    assert_eq!(
        tools,
        [
            (
                "no inventoried agent declares the tool `payments.refund`",
                Some("refunds")
            ),
            (
                "no inventoried agent declares the tool `shel.exec`",
                Some("no_rm")
            ),
        ]
    );
    let typo = codes(&c, "inventory::unknown_tool")[1];
    assert!(
        typo.help
            .as_deref()
            .unwrap()
            .contains("did you mean `shell.exec`?")
    );
    let agents: Vec<&str> = codes(&c, "inventory::unknown_agent")
        .iter()
        .map(|f| f.message.as_str())
        .collect();
    assert_eq!(agents, ["the agent `invoicebot` is not in the inventory"]);
    insta::with_settings!({snapshot_path => "../snapshots/inventory", prepend_module_to_snapshot => false}, {
        insta::assert_snapshot!("repo_findings", render_human(&c.findings, &c.sources, false, 100));
    });
}

#[test]
fn a_tool_only_the_default_decides_is_reported_with_a_replayed_witness() {
    let c = checked_fixture();
    let found = codes(&c, "inventory::uncovered_tool");
    // `email.send` (invoice-bot) has no rule; every other tool has one.
    assert_eq!(found.len(), 1, "{:#?}", c.findings);
    let f = found[0];
    assert!(f.message.contains("`email.send`"), "{}", f.message);
    assert!(f.message.contains("(`deny`)"), "{}", f.message);
    assert_eq!(f.labels[0].file, "agents/invoice-bot.toml");
    let witness = f.witness.clone().unwrap();
    assert_eq!(witness["tool"], "email.send");
    assert_eq!(witness["agent"], "invoice-bot");
    assert_eq!(f.witness_decisions.as_ref().unwrap()["final"], "deny");
    // The witness, replayed on the compiled artifact: no reason, the default.
    let a = c.artifact(None).unwrap().unwrap();
    let ev = sluice::eval::Evaluator::new(&a).unwrap();
    let req = ev.decode(&witness).unwrap();
    let out = ev
        .evaluate(&req, 0, &sluice::eval::state::MemoryLimitStore::new())
        .unwrap();
    assert!(out.is_default());
    assert_eq!(out.decision(), sluice::model::ir::DecisionKind::Deny);

    // A rule for the tool covers it.
    let files = sluice::tree::fs::load(&repo_dir(), Traces::Skip).unwrap();
    let mut policies = files.policies.clone();
    policies.push(SourceFile::new(
        "policies/email.policy",
        "policy email version 1.0.0 {\n  rule send {\n    when tool == \"email.send\"\n    allow\n  }\n}\n",
    ));
    let covered = check_repo(&files.project, &policies, &files.agents);
    assert!(codes(&covered, "inventory::uncovered_tool").is_empty());
}

#[test]
fn the_inventory_is_part_of_the_artifact_and_its_hash() {
    let c = checked_fixture();
    let a = c.artifact(None).unwrap().unwrap();
    assert_eq!(a.inventory.agents.len(), 2);
    let bytes = a.to_bytes().unwrap();
    let read = sluice::compile::artifact::Artifact::from_bytes(&bytes).unwrap();
    assert_eq!(read.inventory, a.inventory);
    // The same set without the inventory: another hash, and no findings of it.
    let files = sluice::tree::fs::load(&repo_dir(), Traces::Skip).unwrap();
    let bare = check_repo(&files.project, &files.policies, &[]);
    let b = bare.artifact(None).unwrap().unwrap();
    assert_ne!(a.hash, b.hash);
    assert!(b.inventory.is_empty());
    assert!(
        !String::from_utf8(b.to_bytes().unwrap())
            .unwrap()
            .contains("inventory")
    );
    assert!(
        !bare
            .findings
            .iter()
            .any(|f| f.code.as_str().starts_with("inventory::")),
        "without agents/ no inventory check applies: {:#?}",
        bare.findings
    );
}

#[test]
fn sluice_check_reports_the_inventory_findings() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["check", "--format", "json", "--repo"])
        .arg(repo_dir())
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    let codes: Vec<&str> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["code"].as_str())
        .filter(|c| c.starts_with("inventory::"))
        .collect();
    assert_eq!(
        codes,
        [
            "inventory::uncovered_tool",
            "inventory::excess_privilege",
            "inventory::unknown_tool",
            "inventory::unknown_agent",
            "inventory::unknown_tool"
        ],
        "{doc:#}"
    );

    // A broken agent file fails the check with its location.
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo_dir(), dir.path());
    std::fs::write(
        dir.path().join("agents/ops-bot.toml"),
        "id = \"ops-bot\"\ntools = []\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["check", "--format", "json", "--repo"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let invalid: Vec<(&str, &str)> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == "inventory::invalid")
        .map(|f| {
            (
                f["locations"][0]["file"].as_str().unwrap(),
                f["message"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        invalid,
        [
            ("agents/ops-bot.toml", "the agent has no `owner`"),
            ("agents/ops-bot.toml", "`tools` is empty"),
        ],
        "{doc:#}"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

#[test]
fn the_engine_counts_each_agents_calls_against_its_envelope() {
    let dir = tempfile::tempdir().unwrap();
    let a = checked_fixture().artifact(None).unwrap().unwrap();
    let path = dir.path().join("a.json");
    std::fs::write(&path, a.to_bytes().unwrap()).unwrap();
    let engine = crate::hardening::engine(&["--artifact", path.to_str().unwrap()]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (stats, metrics) = rt.block_on(async {
        let client = reqwest::Client::new();
        let base = format!("http://{}", engine.addr);
        for agent in [
            "invoice-bot",
            "invoice-bot",
            "invoice-bot",
            "ops-bot",
            "stranger",
        ] {
            let req = serde_json::json!({"tool": "payments.transfer", "agent": agent,
                                         "org": "acme", "session": "s", "args": {"amount": 5}});
            let r = client
                .post(format!("{base}/v1/evaluate"))
                .json(&req)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
        let stats: serde_json::Value = client
            .get(format!("{base}/v1/stats"))
            .bearer_auth(crate::engine::TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let metrics = client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        (stats, metrics)
    });
    drop(engine);
    let agents = stats["agents"].as_array().unwrap();
    let figures: Vec<(&str, u64, Option<u64>, Option<f64>)> = agents
        .iter()
        .map(|a| {
            (
                a["agent"].as_str().unwrap(),
                a["calls"].as_u64().unwrap(),
                a["calls_per_day"].as_u64(),
                a["cost_ratio"].as_f64(),
            )
        })
        .collect();
    // The stranger is not inventoried: counted nowhere.
    assert_eq!(
        figures,
        [
            ("invoice-bot", 3, Some(400), Some(3.0 / 400.0)),
            ("ops-bot", 1, None, None)
        ],
        "{stats:#}"
    );
    let day = agents[0]["day_start"].as_u64().unwrap();
    assert_eq!(day % 86_400, 0);
    assert!(
        metrics.contains("sluice_agent_calls_today{agent=\"invoice-bot\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sluice_agent_calls_today{agent=\"ops-bot\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sluice_agent_calls_per_day{agent=\"invoice-bot\"} 400"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("sluice_agent_calls_per_day{agent=\"ops-bot\"}"),
        "{metrics}"
    );
    assert!(!metrics.contains("stranger"), "{metrics}");
}

#[test]
fn an_agents_calls_start_afresh_each_utc_day() {
    use sluice::engine::cost::AgentCalls;
    let files = sluice::tree::fs::load(&repo_dir(), Traces::Skip).unwrap();
    let inventory = parse_inventory(&files.agents).unwrap();
    let calls = AgentCalls::default();
    let day = 20_000 * 86_400;
    for t in [day, day + 10, day + 86_399] {
        calls.record(&inventory, Some("invoice-bot"), t);
    }
    calls.record(&inventory, Some("nobody"), day);
    calls.record(&inventory, None, day);
    let today = calls.report(&inventory, day + 100);
    assert_eq!(
        (today[0].agent.as_str(), today[0].calls),
        ("invoice-bot", 3)
    );
    assert_eq!(today[0].day_start, day);
    // The next day: nothing yet, then counting from 1.
    assert_eq!(calls.report(&inventory, day + 86_400)[0].calls, 0);
    calls.record(&inventory, Some("invoice-bot"), day + 86_400);
    let next = calls.report(&inventory, day + 86_401);
    assert_eq!(next[0].calls, 1);
    assert_eq!(next[0].cost_ratio, Some(1.0 / 400.0));
    assert_eq!(next.len(), 2, "every inventoried agent, called or not");
}

#[test]
fn excess_privilege_is_reported_with_a_witness_the_set_lets_through() {
    let c = checked_fixture();
    let found = codes(&c, "inventory::excess_privilege");
    // ops-bot lists only `shell.exec`, but `payments.approvals` allows
    // `approvals.request` for every agent; invoice-bot's permissive rules
    // all stay within its tools.
    assert_eq!(found.len(), 1, "{:#?}", c.findings);
    let f = found[0];
    let witness = f.witness.clone().unwrap();
    assert_eq!(witness["agent"], "ops-bot");
    assert_eq!(witness["tool"], "approvals.request");
    assert_eq!(f.labels[0].rule.as_deref(), Some("approvals"));
    assert_eq!(f.labels[1].file, "agents/ops-bot.toml");
    let a = c.artifact(None).unwrap().unwrap();
    let ev = sluice::eval::Evaluator::new(&a).unwrap();
    let out = ev
        .evaluate(
            &ev.decode(&witness).unwrap(),
            0,
            &sluice::eval::state::MemoryLimitStore::new(),
        )
        .unwrap();
    assert_eq!(out.decision(), sluice::model::ir::DecisionKind::Allow);
}

/// On small domains (two agents, three tools, rules over `tool` and
/// `agent` only), `inventory::excess_privilege` reports an agent exactly
/// when some request by it for a tool outside its inventory is allowed —
/// decided by trying every request of the domain in the evaluator (a tool
/// no rule names behaves as `zz`).
#[test]
fn excess_privilege_agrees_with_brute_force_on_small_domains() {
    use sluice::model::ir::DecisionKind;
    let toml = "[project]\nname = \"d\"\ndefault = \"DEFAULT\"\n[schema]\ntool = \"string\"\nagent = \"string\"\n";
    let agents = [
        SourceFile::new(
            "agents/a1.toml",
            "id = \"a1\"\nowner = \"o\"\ntools = [\"t1\"]\n",
        ),
        SourceFile::new(
            "agents/a2.toml",
            "id = \"a2\"\nowner = \"o\"\ntools = [\"t2\", \"t3\"]\n",
        ),
    ];
    let inventory = parse_inventory(&agents).unwrap();
    let tools = ["t1", "t2", "t3", "zz"];
    let mut seed: u64 = 0x5eed;
    let mut next = |n: u64| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % n
    };
    let (mut reported, mut checked_sets) = (0, 0);
    for case in 0..60 {
        let default = if next(2) == 0 { "allow" } else { "deny" };
        let mut text = String::from("policy p version 1.0.0 {\n");
        for r in 0..=next(4) {
            let mut conj = Vec::new();
            match next(3) {
                0 => conj.push(format!("tool == \"{}\"", tools[next(3) as usize])),
                1 => conj.push(format!(
                    "tool in [\"{}\", \"{}\"]",
                    tools[next(3) as usize],
                    tools[next(3) as usize]
                )),
                _ => {}
            }
            match next(3) {
                0 => conj.push(format!("agent == \"a{}\"", 1 + next(2))),
                1 => conj.push(format!("agent != \"a{}\"", 1 + next(2))),
                _ => {}
            }
            let effect = if next(2) == 0 {
                "allow"
            } else {
                "deny D \"d\""
            };
            let when = if conj.is_empty() {
                String::new()
            } else {
                format!("when {} ", conj.join(" and "))
            };
            text.push_str(&format!("  rule r{r} {{ {when}{effect} }}\n"));
        }
        text.push_str("}\n");
        let project = SourceFile::new("sluice.toml", toml.replace("DEFAULT", default));
        let policy = SourceFile::new("policies/p.policy", text.clone());
        let c = sluice::pipeline::check_repo_unanalysed(&project, &[policy], &agents);
        let Some(set) = c.set.as_ref() else {
            panic!("case {case} does not check: {:#?}\n{text}", c.findings);
        };
        let p = c.project.as_ref().unwrap();
        let findings = sluice::analyze::excess_privilege(
            set, &p.schema, p.default, &inventory, &agents, 10_000,
        );
        let flagged: Vec<String> = findings
            .iter()
            .map(|f| {
                f.witness.as_ref().unwrap()["agent"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        let a = c.artifact(None).unwrap().unwrap();
        let ev = sluice::eval::Evaluator::new(&a).unwrap();
        let store = sluice::eval::state::MemoryLimitStore::new();
        let mut expected = Vec::new();
        for agent in &inventory.agents {
            let outside = tools
                .iter()
                .filter(|t| !agent.tools.iter().any(|x| x == *t));
            let allowed = outside.into_iter().any(|t| {
                let req = serde_json::json!({"tool": t, "agent": agent.id});
                let d = ev
                    .evaluate(&ev.decode(&req).unwrap(), 0, &store)
                    .unwrap()
                    .decision();
                matches!(d, DecisionKind::Allow | DecisionKind::Modify)
            });
            if allowed {
                expected.push(agent.id.clone());
            }
        }
        assert_eq!(flagged, expected, "case {case}, default {default}:\n{text}");
        reported += flagged.len();
        checked_sets += 1;
    }
    assert_eq!(checked_sets, 60);
    assert!(
        reported > 10,
        "the domain exercises both answers ({reported} reported)"
    );
}

/// `plan::cost_without_envelope`: a stage gating on `max_cost_ratio` in a
/// repository whose inventory gives no agent a `cost` (or that has none)
/// is warned of at the key; one envelope is enough to read.
#[test]
fn a_cost_gate_without_an_envelope_is_warned_of() {
    let toml = "[project]\nname = \"p\"\ndefault = \"allow\"\n\n[schema]\ntool = \"string\"\nagent = \"string\"\nsession = \"string\"\n\n[rollout]\nhash_key = \"session\"\n\n[[rollout.stage]]\nname = \"canary\"\npercent = 5\nmax_cost_ratio = 1.2\n\n[[rollout.stage]]\nname = \"full\"\npercent = 100\n";
    let project = SourceFile::new("sluice.toml", toml);
    let policy = SourceFile::new(
        "policies/p.policy",
        "policy p version 1.0.0 {\n  rule r {\n    when tool == \"shell.exec\"\n    deny NO \"no\"\n  }\n}\n",
    );
    let agent = |cost: &str| {
        SourceFile::new(
            "agents/ops-bot.toml",
            format!("id = \"ops-bot\"\nowner = \"sre\"\ntools = [\"shell.exec\"]\n{cost}"),
        )
    };
    let warned = |agents: &[SourceFile]| {
        let c = check_repo(&project, std::slice::from_ref(&policy), agents);
        assert!(!c.has_errors(), "{:#?}", c.findings);
        codes(&c, "plan::cost_without_envelope")
            .into_iter()
            .map(|f| {
                let l = &f.labels[0];
                assert_eq!(l.file, "sluice.toml");
                assert_eq!(&toml[l.span.start..l.span.end], "max_cost_ratio");
                f.message.clone()
            })
            .collect::<Vec<_>>()
    };
    let none = warned(&[]);
    assert_eq!(none.len(), 1);
    assert!(
        none[0].contains("stage `canary`") && none[0].contains("no agent inventory"),
        "{none:?}"
    );
    let no_cost = warned(&[agent("")]);
    assert_eq!(no_cost.len(), 1);
    assert!(
        no_cost[0].contains("no agent of agents/*.toml has a `cost`"),
        "{no_cost:?}"
    );
    assert!(warned(&[agent("cost = { calls_per_day = 100 }\n")]).is_empty());
    // Without the gate, nothing to say.
    let plain = SourceFile::new("sluice.toml", toml.replace("max_cost_ratio = 1.2\n", ""));
    let c = check_repo(&plain, std::slice::from_ref(&policy), &[]);
    assert!(codes(&c, "plan::cost_without_envelope").is_empty());
}
