//! A pipeline as declared in a version's config: inputs, steps and outputs, in the spirit of Triton's
//! ensembles (`input_map`/`output_map`). Each step maps its own input names to pipeline values and its
//! own outputs to new pipeline values. [`PipelineSpec::plan`] checks the whole graph against the models it
//! names (every value produced once, no cycles, every step input produced, datatypes equal and shapes
//! compatible along every edge) and gives the order to run the steps in and the pipeline's signature.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use yunmo_types::{DataType, Signature, TensorSpec};

use crate::StepError;
use crate::entities::Entities;
use crate::post::TopK;
use crate::text::{Pool, Tokenize};
use crate::vision::{ImageLimits, ImageSteps, OutputType};

/// Most steps in one pipeline.
pub const MAX_STEPS: usize = 32;

/// A model a step calls.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelStep {
    /// The model's name (as the pipeline's creator names it).
    pub name: String,
    /// The version (default: the newest when the pipeline is created; the plan pins it).
    #[serde(default)]
    pub version: Option<u64>,
}

/// Settings of a step with none.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoSettings {}

/// What a step does.
#[derive(Clone, Debug, PartialEq)]
pub enum StepKind {
    /// Call a model (ONNX, with its own dynamic batching).
    Model(ModelStep),
    /// Decode and prepare images (BYTES `image` → `tensor`).
    Image(ImageSteps),
    /// Softmax over the last axis (`x` → `y`).
    Softmax(NoSettings),
    /// Logistic function (`x` → `y`).
    Sigmoid(NoSettings),
    /// The top k classes per row (`scores` → `scores`, `indices`, `labels`).
    TopK(TopK),
    /// Tokenise texts with the version's tokenizer (BYTES `text` → `input_ids`, `attention_mask`, `token_type_ids`).
    Tokenize(Tokenize),
    /// Pool token states into one vector per row (`hidden`, `attention_mask` → `embedding`).
    Pool(Pool),
    /// The element-wise mean of two or more FP32 values of one shape (any input names → `y`): an ensemble.
    Mean(NoSettings),
    /// Entity spans from a token classifier's scores (`logits`, `offsets`, `word_ids`, `text` → `entities`).
    Entities(Entities),
}

const KINDS: [&str; 9] = ["model", "image", "softmax", "sigmoid", "top_k", "tokenize", "pool", "mean", "entities"];

/// One step as declared.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// Unique within the pipeline.
    pub name: String,
    /// What it does.
    pub kind: StepKind,
    /// The step's input name → the pipeline value it reads.
    pub inputs: BTreeMap<String, String>,
    /// The step's output name → the pipeline value it writes.
    pub outputs: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct RawStep {
    name: String,
    #[serde(default)]
    inputs: BTreeMap<String, String>,
    #[serde(default)]
    outputs: BTreeMap<String, String>,
    #[serde(flatten)]
    rest: BTreeMap<String, serde_json::Value>,
}

/// A pipeline's declaration.
#[derive(Clone, Debug, PartialEq)]
pub struct PipelineSpec {
    /// What callers send (the first dimension of each is the batch, `-1`).
    pub inputs: Vec<TensorSpec>,
    /// The steps, in any order.
    pub steps: Vec<Step>,
    /// The values answered, by name.
    pub outputs: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    inputs: Vec<TensorSpec>,
    steps: Vec<RawStep>,
    outputs: Vec<String>,
}

/// What the plan knows of a model a step names.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelInfo {
    /// The version the step will call.
    pub version: u64,
    /// Its inputs and outputs.
    pub signature: Signature,
    /// Its class labels (from the version's config), if any.
    pub labels: Vec<String>,
}

/// A checked pipeline: the order to run its steps in, the pinned model versions and the signature.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Indices into `spec.steps`, producers before consumers.
    pub order: Vec<usize>,
    /// Pinned version per model step (by step index).
    pub versions: HashMap<usize, u64>,
    /// Labels per top-k step (by step index), when known.
    pub labels: HashMap<usize, Vec<String>>,
    /// The pipeline's inputs and outputs.
    pub signature: Signature,
}

fn config(message: String) -> StepError {
    StepError::Config(message)
}

impl PipelineSpec {
    /// Parses a pipeline declaration; the message names the step and field at fault.
    pub fn parse(json: &[u8]) -> Result<PipelineSpec, StepError> {
        let raw: RawSpec = serde_json::from_slice(json).map_err(|error| config(format!("pipeline: {error}")))?;
        let mut steps = Vec::with_capacity(raw.steps.len());
        for (index, step) in raw.steps.into_iter().enumerate() {
            let owner = format!("steps[{index}] ('{}')", step.name);
            if let Some(unknown) = step.rest.keys().find(|key| !KINDS.contains(&key.as_str())) {
                return Err(config(format!(
                    "{owner}: unknown field '{unknown}' (a step has name, inputs, outputs and one of {})",
                    KINDS.join(", ")
                )));
            }
            let mut kinds = step.rest.into_iter();
            let (kind, settings) = match (kinds.next(), kinds.next()) {
                (Some(one), None) => one,
                (None, _) => return Err(config(format!("{owner}: names no kind; one of {}", KINDS.join(", ")))),
                (Some((first, _)), Some((second, _))) => {
                    return Err(config(format!("{owner}: names both '{first}' and '{second}'; a step is one of {}", KINDS.join(", "))));
                }
            };
            let field = |error: serde_json::Error| config(format!("{owner}.{kind}: {error}"));
            let kind = match kind.as_str() {
                "model" => StepKind::Model(serde_json::from_value(settings).map_err(field)?),
                "image" => StepKind::Image(serde_json::from_value(settings).map_err(field)?),
                "softmax" => StepKind::Softmax(serde_json::from_value(settings).map_err(field)?),
                "sigmoid" => StepKind::Sigmoid(serde_json::from_value(settings).map_err(field)?),
                "top_k" => StepKind::TopK(serde_json::from_value(settings).map_err(field)?),
                "tokenize" => StepKind::Tokenize(serde_json::from_value(settings).map_err(field)?),
                "pool" => StepKind::Pool(serde_json::from_value(settings).map_err(field)?),
                "mean" => StepKind::Mean(serde_json::from_value(settings).map_err(field)?),
                "entities" => StepKind::Entities(serde_json::from_value(settings).map_err(field)?),
                other => unreachable!("'{other}' was checked against the kinds"),
            };
            steps.push(Step { name: step.name, kind, inputs: step.inputs, outputs: step.outputs });
        }
        Ok(PipelineSpec { inputs: raw.inputs, steps, outputs: raw.outputs })
    }

    /// Whether a step tokenises text (the version then needs a `tokenizer.json`).
    pub fn needs_tokenizer(&self) -> bool {
        self.steps.iter().any(|step| matches!(step.kind, StepKind::Tokenize(_)))
    }

    /// The models the steps name, as `(name, version)`, to look up before [`PipelineSpec::plan`].
    pub fn models(&self) -> Vec<(String, Option<u64>)> {
        let mut models: Vec<(String, Option<u64>)> = self
            .steps
            .iter()
            .filter_map(|step| match &step.kind {
                StepKind::Model(model) => Some((model.name.clone(), model.version)),
                _ => None,
            })
            .collect();
        models.dedup();
        models
    }

    /// Checks the pipeline against `models` (what [`PipelineSpec::models`] named, looked up).
    pub fn plan(&self, models: &HashMap<(String, Option<u64>), ModelInfo>, limits: &ImageLimits) -> Result<Plan, StepError> {
        if self.steps.is_empty() || self.steps.len() > MAX_STEPS {
            return Err(config(format!("steps: a pipeline has 1 to {MAX_STEPS} steps, got {}", self.steps.len())));
        }
        // Every value: its spec and who makes it (None: a pipeline input).
        let mut values: HashMap<&str, (TensorSpec, Option<usize>)> = HashMap::new();
        for input in &self.inputs {
            if input.shape.first() != Some(&-1) {
                return Err(config(format!(
                    "inputs: '{}' must have a variable first (batch) dimension, -1; got {:?}",
                    input.name, input.shape
                )));
            }
            if values.insert(&input.name, (input.clone(), None)).is_some() {
                return Err(config(format!("inputs: '{}' is declared twice", input.name)));
            }
        }
        let mut step_names = std::collections::HashSet::new();
        let mut versions = HashMap::new();
        let mut labels = HashMap::new();
        let mut wants: Vec<Vec<TensorSpec>> = Vec::with_capacity(self.steps.len());
        for (index, step) in self.steps.iter().enumerate() {
            let owner = format!("steps[{index}] ('{}')", step.name);
            if step.name.is_empty() || !step_names.insert(step.name.as_str()) {
                return Err(config(format!("{owner}: step names must be unique and not empty")));
            }
            let (takes, gives) = self.step_signature(step, &owner, models, limits)?;
            if let StepKind::Model(model) = &step.kind {
                versions.insert(index, models[&(model.name.clone(), model.version)].version);
            }
            let named = match &step.kind {
                StepKind::TopK(top) => Some(("top_k", &top.labels, &top.labels_from)),
                StepKind::Entities(entities) => Some(("entities", &entities.labels, &entities.labels_from)),
                _ => None,
            };
            if let Some((kind, given, from)) = named {
                let known = match (given, from) {
                    (Some(given), _) => Some(given.clone()),
                    (None, Some(from)) => Some(self.labels_of(from, models).ok_or_else(|| {
                        config(format!("{owner}.{kind}.labels_from: '{from}' is not a model step whose version has labels"))
                    })?),
                    (None, None) if kind == "entities" => {
                        return Err(config(format!("{owner}.entities: give the class names in labels or labels_from")));
                    }
                    (None, None) => None,
                };
                if let Some(known) = known {
                    labels.insert(index, known);
                }
            }
            for own in step.inputs.keys() {
                if !takes.iter().any(|spec| &spec.name == own) {
                    let names: Vec<&str> = takes.iter().map(|spec| spec.name.as_str()).collect();
                    return Err(config(format!("{owner}.inputs: the step has no input '{own}' (it takes {names:?})")));
                }
            }
            for spec in &takes {
                if !step.inputs.contains_key(&spec.name) {
                    return Err(config(format!("{owner}.inputs: input '{}' is not mapped to a pipeline value", spec.name)));
                }
            }
            for (own, value) in &step.outputs {
                let Some(spec) = gives.iter().find(|spec| &spec.name == own) else {
                    let names: Vec<&str> = gives.iter().map(|spec| spec.name.as_str()).collect();
                    return Err(config(format!("{owner}.outputs: the step has no output '{own}' (it gives {names:?})")));
                };
                let produced = TensorSpec { name: value.clone(), ..spec.clone() };
                if values.insert(value, (produced, Some(index))).is_some() {
                    return Err(config(format!("{owner}.outputs: the value '{value}' is produced twice")));
                }
            }
            wants.push(takes);
        }
        // Edges: every step input is produced, with an equal datatype and a compatible shape.
        let mut after: Vec<Vec<usize>> = vec![Vec::new(); self.steps.len()];
        for (index, step) in self.steps.iter().enumerate() {
            let owner = format!("steps[{index}] ('{}')", step.name);
            for spec in &wants[index] {
                let value = &step.inputs[&spec.name];
                let (produced, maker) = values
                    .get(value.as_str())
                    .ok_or_else(|| config(format!("{owner}.inputs.{}: no input or step produces '{value}'", spec.name)))?;
                check_edge(produced, spec, &format!("{owner}.inputs.{}", spec.name))?;
                if let Some(maker) = maker {
                    after[*maker].push(index);
                }
            }
        }
        let order = topological(&after).ok_or_else(|| config("steps: the steps form a cycle".into()))?;
        let mut outputs = Vec::with_capacity(self.outputs.len());
        for name in &self.outputs {
            let (spec, _) = values.get(name.as_str()).ok_or_else(|| config(format!("outputs: no step produces '{name}'")))?;
            outputs.push(spec.clone());
        }
        if outputs.is_empty() {
            return Err(config("outputs: a pipeline answers at least one value".into()));
        }
        Ok(Plan { order, versions, labels, signature: Signature { inputs: self.inputs.clone(), outputs } })
    }

    fn labels_of(&self, step: &str, models: &HashMap<(String, Option<u64>), ModelInfo>) -> Option<Vec<String>> {
        let found = self.steps.iter().find(|candidate| candidate.name == step)?;
        match &found.kind {
            StepKind::Model(model) => {
                models.get(&(model.name.clone(), model.version)).map(|info| info.labels.clone()).filter(|labels| !labels.is_empty())
            }
            _ => None,
        }
    }

    /// What a step takes and gives, by its own names.
    fn step_signature(
        &self,
        step: &Step,
        owner: &str,
        models: &HashMap<(String, Option<u64>), ModelInfo>,
        limits: &ImageLimits,
    ) -> Result<(Vec<TensorSpec>, Vec<TensorSpec>), StepError> {
        let spec = |name: &str, datatype: DataType, shape: Vec<i64>| TensorSpec { name: name.into(), datatype, shape };
        Ok(match &step.kind {
            StepKind::Model(model) => {
                let info = models
                    .get(&(model.name.clone(), model.version))
                    .ok_or_else(|| config(format!("{owner}.model: '{}' was not looked up", model.name)))?;
                (info.signature.inputs.clone(), info.signature.outputs.clone())
            }
            StepKind::Image(image) => {
                image.validate(limits).map_err(|error| config(format!("{owner}.image.{error}")))?;
                let datatype = if image.datatype == OutputType::Uint8 { DataType::Uint8 } else { DataType::Fp32 };
                let mut shape = vec![-1];
                shape.extend(image.fixed_shape().map_or([-1, -1, -1], |dims| dims.map(|dim| dim as i64)));
                (vec![spec("image", DataType::Bytes, vec![-1])], vec![spec("tensor", datatype, shape)])
            }
            StepKind::Softmax(_) | StepKind::Sigmoid(_) => {
                (vec![spec("x", DataType::Fp32, vec![-1, -1])], vec![spec("y", DataType::Fp32, vec![-1, -1])])
            }
            StepKind::TopK(top) => {
                if !(1..=1000).contains(&top.k) {
                    return Err(config(format!("{owner}.top_k.k: must be 1 to 1000, got {}", top.k)));
                }
                let mut gives = vec![spec("scores", DataType::Fp32, vec![-1, -1]), spec("indices", DataType::Int64, vec![-1, -1])];
                if top.labels.is_some() || top.labels_from.is_some() {
                    gives.push(spec("labels", DataType::Bytes, vec![-1, -1]));
                }
                (vec![spec("scores", DataType::Fp32, vec![-1, -1])], gives)
            }
            StepKind::Tokenize(tokenize) => {
                tokenize.validate().map_err(|error| config(format!("{owner}.tokenize.{error}")))?;
                let ids = |name: &str| spec(name, DataType::Int64, vec![-1, -1]);
                let gives = vec![
                    ids("input_ids"),
                    ids("attention_mask"),
                    ids("token_type_ids"),
                    ids("word_ids"),
                    spec("offsets", DataType::Int64, vec![-1, -1, 2]),
                ];
                (vec![spec("text", DataType::Bytes, vec![-1])], gives)
            }
            StepKind::Entities(_) => {
                let takes = vec![
                    spec("logits", DataType::Fp32, vec![-1, -1, -1]),
                    spec("offsets", DataType::Int64, vec![-1, -1, 2]),
                    spec("word_ids", DataType::Int64, vec![-1, -1]),
                    spec("text", DataType::Bytes, vec![-1]),
                ];
                (takes, vec![spec("entities", DataType::Bytes, vec![-1])])
            }
            StepKind::Mean(_) => {
                if step.inputs.len() < 2 || step.inputs.len() > 16 {
                    return Err(config(format!("{owner}.inputs: mean averages 2 to 16 values, got {}", step.inputs.len())));
                }
                let takes = step.inputs.keys().map(|own| spec(own, DataType::Fp32, vec![-1, -1])).collect();
                (takes, vec![spec("y", DataType::Fp32, vec![-1, -1])])
            }
            StepKind::Pool(pool) => {
                pool.validate().map_err(|error| config(format!("{owner}.pool.{error}")))?;
                let takes = vec![spec("hidden", DataType::Fp32, vec![-1, -1, -1]), spec("attention_mask", DataType::Int64, vec![-1, -1])];
                (takes, vec![spec("embedding", DataType::Fp32, vec![-1, -1])])
            }
        })
    }
}

/// Whether a value made as `produced` can feed an input declared as `wanted`.
fn check_edge(produced: &TensorSpec, wanted: &TensorSpec, owner: &str) -> Result<(), StepError> {
    if produced.datatype != wanted.datatype {
        return Err(config(format!("{owner}: '{}' is {}, the step takes {}", produced.name, produced.datatype, wanted.datatype)));
    }
    let fits = produced.shape.len() == wanted.shape.len()
        && produced.shape.iter().zip(&wanted.shape).all(|(made, want)| *made < 0 || *want < 0 || made == want);
    if !fits {
        return Err(config(format!("{owner}: '{}' has shape {:?}, the step takes {:?}", produced.name, produced.shape, wanted.shape)));
    }
    Ok(())
}

/// An order of the steps where every step comes after those it reads from (`after[i]`: steps that read
/// from step i), or None when they form a cycle. Among ready steps the declared order is kept.
fn topological(after: &[Vec<usize>]) -> Option<Vec<usize>> {
    let mut waiting = vec![0usize; after.len()];
    for readers in after {
        for &reader in readers {
            waiting[reader] += 1;
        }
    }
    let mut order = Vec::with_capacity(after.len());
    let mut ready: std::collections::BTreeSet<usize> = (0..after.len()).filter(|&index| waiting[index] == 0).collect();
    while let Some(next) = ready.pop_first() {
        order.push(next);
        for &reader in &after[next] {
            waiting[reader] -= 1;
            if waiting[reader] == 0 {
                ready.insert(reader);
            }
        }
    }
    (order.len() == after.len()).then_some(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    const IMAGE_PIPELINE: &str = r#"{
        "inputs": [{"name": "image", "datatype": "BYTES", "shape": [-1]}],
        "steps": [
            {"name": "top5", "top_k": {"k": 5, "labels_from": "classify"}, "inputs": {"scores": "probabilities"},
             "outputs": {"labels": "labels", "scores": "scores"}},
            {"name": "probabilities", "softmax": {}, "inputs": {"x": "logits"}, "outputs": {"y": "probabilities"}},
            {"name": "classify", "model": {"name": "efficientnet"}, "inputs": {"input": "pixels"}, "outputs": {"logits": "logits"}},
            {"name": "preprocess", "image": {"resize": {"shorter_side": 256}, "center_crop": [224, 224]},
             "inputs": {"image": "image"}, "outputs": {"tensor": "pixels"}}
        ],
        "outputs": ["labels", "scores"]
    }"#;

    fn efficientnet() -> HashMap<(String, Option<u64>), ModelInfo> {
        let spec = |name: &str, shape: Vec<i64>| TensorSpec { name: name.into(), datatype: DataType::Fp32, shape };
        let signature = Signature { inputs: vec![spec("input", vec![-1, 3, 224, 224])], outputs: vec![spec("logits", vec![-1, 1000])] };
        let labels = (0..1000).map(|index| format!("class {index}")).collect();
        HashMap::from([(("efficientnet".to_string(), None), ModelInfo { version: 3, signature, labels })])
    }

    fn plan(json: &str) -> Result<Plan, String> {
        let spec = PipelineSpec::parse(json.as_bytes()).map_err(|error| error.to_string())?;
        spec.plan(&efficientnet(), &ImageLimits::default()).map_err(|error| error.to_string())
    }

    #[test]
    fn steps_in_any_order_are_run_producers_first_with_versions_pinned() {
        let plan = plan(IMAGE_PIPELINE).unwrap();
        assert_eq!(plan.order, [3, 2, 1, 0]);
        assert_eq!(plan.versions[&2], 3);
        assert_eq!(plan.labels[&0].len(), 1000);
        let outputs: Vec<(&str, DataType)> = plan.signature.outputs.iter().map(|spec| (spec.name.as_str(), spec.datatype)).collect();
        assert_eq!(outputs, [("labels", DataType::Bytes), ("scores", DataType::Fp32)]);
    }

    #[test]
    fn broken_graphs_are_refused_with_the_step_and_field_named() {
        let with = |from: &str, to: &str| plan(&IMAGE_PIPELINE.replace(from, to)).unwrap_err();
        assert_eq!(
            with(r#""center_crop": [224, 224]"#, r#""center_crop": [200, 200]"#),
            "steps[2] ('classify').inputs.input: 'pixels' has shape [-1, 3, 200, 200], the step takes [-1, 3, 224, 224]"
        );
        assert_eq!(
            with(r#""outputs": {"y": "probabilities"}"#, r#""outputs": {"y": "logits"}"#),
            "steps[2] ('classify').outputs: the value 'logits' is produced twice"
        );
        assert_eq!(
            with(r#""inputs": {"x": "logits"}"#, r#""inputs": {"x": "labels"}"#),
            "steps[1] ('probabilities').inputs.x: 'labels' is BYTES, the step takes FP32"
        );
        assert!(with(r#""softmax": {}"#, r#""softmax": {}, "sigmoid": {}"#).contains("names both"));
        assert!(with(r#""softmax": {}"#, r#""softmax": {"axis": 1}"#).starts_with("steps[1] ('probabilities').softmax: unknown field"));
        assert!(with(r#""softmax": {}"#, r#""softmax": {}, "input": {}"#).starts_with("steps[1] ('probabilities'): unknown field 'input'"));
        assert_eq!(
            with(r#""inputs": {"input": "pixels"}"#, r#""inputs": {"input": "pixel"}"#),
            "steps[2] ('classify').inputs.input: no input or step produces 'pixel'"
        );
        assert_eq!(with(r#""outputs": ["labels", "scores"]"#, r#""outputs": ["nope"]"#), "outputs: no step produces 'nope'");
        assert!(
            with(r#""labels_from": "classify""#, r#""labels_from": "preprocess""#).contains("is not a model step whose version has labels")
        );
    }

    #[test]
    fn a_cycle_is_refused() {
        let cyclic = r#"{
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
            "steps": [
                {"name": "a", "softmax": {}, "inputs": {"x": "b_out"}, "outputs": {"y": "a_out"}},
                {"name": "b", "sigmoid": {}, "inputs": {"x": "a_out"}, "outputs": {"y": "b_out"}}
            ],
            "outputs": ["a_out"]
        }"#;
        assert_eq!(plan(cyclic).unwrap_err(), "steps: the steps form a cycle");
    }
}
