//! regorus: the Rego modules compiled to an RVM program (its virtual
//! machine), and, for reference, the same modules in its interpreter.

use std::sync::Arc;

use regorus::Value;
use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::program::Program;
use regorus::rvm::vm::{ExecutionMode, RegoVM};

use crate::Engine;
use crate::generator::Set;

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

/// The RVM: `set_input` + `execute` on one loaded program.
pub struct Rvm {
    vm: RegoVM,
    inputs: Vec<Value>,
    texts: Vec<String>,
}

impl Rvm {
    pub fn new(set: &Set) -> Rvm {
        let mut engine = engine(set);
        let compiled = engine
            .compile_with_entrypoint(&ENTRY.into())
            .expect("Rego compiles");
        let program: Arc<Program> =
            Compiler::compile_from_policy(&compiled, &[ENTRY]).expect("RVM program");
        let mut vm = RegoVM::new();
        vm.set_execution_mode(ExecutionMode::RunToCompletion);
        vm.set_execution_timer_config(None);
        // The default limit (25,000 instructions) is far below what a set of
        // thousands of rules executes.
        vm.set_max_instructions(usize::MAX);
        vm.load_program(program);
        let (inputs, texts) = inputs(set);
        Rvm { vm, inputs, texts }
    }
}

impl Engine for Rvm {
    fn name(&self) -> &'static str {
        "regorus RVM"
    }

    fn eval(&mut self, i: usize) -> bool {
        self.vm.set_input(self.inputs[i].clone());
        allowed(&self.vm.execute().expect("RVM executes"))
    }

    fn decode_eval(&mut self, i: usize) -> bool {
        let input = Value::from_json_str(&self.texts[i]).expect("input");
        self.vm.set_input(input);
        allowed(&self.vm.execute().expect("RVM executes"))
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
    fn name(&self) -> &'static str {
        "regorus interpreter"
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
