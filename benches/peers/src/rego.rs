//! regorus: the Rego modules compiled to an RVM program (its virtual
//! machine), and, for reference, the same modules in its interpreter.

use std::sync::Arc;

use regorus::Value;
use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::program::Program;
use regorus::rvm::vm::{ExecutionMode, RegoVM};

use crate::Engine;
use crate::generator::{self, Set};

const ENTRY: &str = "data.sluice.allow";

fn engine(set: &Set) -> regorus::Engine {
    let mut engine = regorus::Engine::new();
    for (name, text) in set.rego_modules() {
        engine.add_policy(name, text).expect("Rego module parses");
    }
    engine
}

fn inputs(set: &Set) -> (Vec<Value>, Vec<String>) {
    let texts: Vec<String> = set.requests.iter().map(|r| r.to_json()).collect();
    let values = texts
        .iter()
        .map(|t| Value::from_json_str(t).expect("input"))
        .collect();
    (values, texts)
}

fn allowed(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        other => panic!("`{ENTRY}` gave {other}, not a boolean"),
    }
}

/// The entry point of one shard when the set needs several programs.
const SHARD_ENTRY: &str = "data.sluice.verdict";
const SHARD_MAIN: &str = "package sluice

default verdict := \"none\"

verdict := \"deny\" if {
\tdeny_match
} else := \"allow\" if {
\tallow_match
}
";

/// The RVM: `set_input` + `execute` on loaded programs.
///
/// An RVM program holds at most 65,535 instructions (its program counter is
/// 16 bits), about 5,000 of these rules, and 256 source files. A larger set
/// is split into shards of whole policies, one program each; every shard gives `deny`, `allow` or
/// `none` for its own rules, and they combine as the whole set would: the
/// first `deny` decides, otherwise any `allow` allows.
pub struct Rvm {
    vms: Vec<RegoVM>,
    inputs: Vec<Value>,
    texts: Vec<String>,
}

fn vm(program: Arc<Program>) -> RegoVM {
    let mut vm = RegoVM::new();
    vm.set_execution_mode(ExecutionMode::RunToCompletion);
    vm.set_execution_timer_config(None);
    // The default limit (25,000 executed instructions) is far below what a
    // set of thousands of rules executes.
    vm.set_max_instructions(usize::MAX);
    vm.load_program(program);
    vm
}

fn program(modules: Vec<(String, String)>, entry: &str) -> Result<Arc<Program>, String> {
    let mut engine = regorus::Engine::new();
    for (name, text) in modules {
        engine.add_policy(name, text).expect("Rego module parses");
    }
    let compiled = engine
        .compile_with_entrypoint(&entry.into())
        .expect("Rego compiles");
    Compiler::compile_from_policy(&compiled, &[entry]).map_err(|e| format!("{e:?}"))
}

impl Rvm {
    pub fn new(set: &Set) -> Rvm {
        let (inputs, texts) = inputs(set);
        let vms = match program(set.rego_modules(), ENTRY) {
            Ok(p) => vec![vm(p)],
            Err(e) if e.contains("exceeds max") => {
                let mut shards = 2;
                loop {
                    match shard_programs(set, shards) {
                        Some(programs) => break programs.into_iter().map(vm).collect(),
                        None => shards *= 2,
                    }
                }
            }
            Err(e) => panic!("RVM program: {e}"),
        };
        Rvm { vms, inputs, texts }
    }

    fn run(&mut self, input: Value) -> bool {
        if let [vm] = self.vms.as_mut_slice() {
            vm.set_input(input);
            return allowed(&vm.execute().expect("RVM executes"));
        }
        let mut allow = false;
        for vm in &mut self.vms {
            vm.set_input(input.clone());
            match vm.execute().expect("RVM executes") {
                Value::String(s) if &*s == "deny" => return false,
                Value::String(s) if &*s == "allow" => allow = true,
                Value::String(s) if &*s == "none" => {}
                other => panic!("`{SHARD_ENTRY}` gave {other}"),
            }
        }
        allow
    }
}

/// `shards` programs of consecutive policies, or `None` when one of them is
/// still too large.
fn shard_programs(set: &Set, shards: usize) -> Option<Vec<Arc<Program>>> {
    let per = set.policies.len().div_ceil(shards);
    set.policies
        .chunks(per.max(1))
        .map(|chunk| {
            let mut modules = vec![("main.rego".to_string(), SHARD_MAIN.to_string())];
            modules.extend(
                chunk
                    .iter()
                    .map(|p| (format!("{}.rego", p.name), generator::rego_policy(p))),
            );
            match program(modules, SHARD_ENTRY) {
                Ok(p) => Some(p),
                Err(e) if e.contains("exceeds max") => None,
                Err(e) => panic!("RVM program: {e}"),
            }
        })
        .collect()
}

impl Engine for Rvm {
    fn name(&self) -> String {
        match self.vms.len() {
            1 => "regorus RVM".to_string(),
            n => format!("regorus RVM ({n} programs)"),
        }
    }

    fn eval(&mut self, i: usize) -> bool {
        self.run(self.inputs[i].clone())
    }

    fn decode_eval(&mut self, i: usize) -> bool {
        self.run(Value::from_json_str(&self.texts[i]).expect("input"))
    }
}

/// The tree-walking interpreter: `set_input` + `eval_rule`.
pub struct Interpreter {
    engine: regorus::Engine,
    inputs: Vec<Value>,
    texts: Vec<String>,
}

impl Interpreter {
    pub fn new(set: &Set) -> Interpreter {
        let (inputs, texts) = inputs(set);
        Interpreter {
            engine: engine(set),
            inputs,
            texts,
        }
    }
}

impl Engine for Interpreter {
    fn name(&self) -> String {
        "regorus interpreter".to_string()
    }

    fn eval(&mut self, i: usize) -> bool {
        self.engine.set_input(self.inputs[i].clone());
        allowed(
            &self
                .engine
                .eval_rule(ENTRY.to_string())
                .expect("Rego evaluates"),
        )
    }

    fn decode_eval(&mut self, i: usize) -> bool {
        self.engine
            .set_input_json(&self.texts[i])
            .expect("input JSON");
        allowed(
            &self
                .engine
                .eval_rule(ENTRY.to_string())
                .expect("Rego evaluates"),
        )
    }
}
