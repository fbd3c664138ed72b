//! Running a built-in (non-model) step on its inputs. The caller runs it off the async runtime, in the
//! plan's order, and calls models itself.

use std::collections::HashMap;

use yunmo_types::Tensor;

use crate::StepError;
use crate::spec::{Step, StepKind};
use crate::vision::ImageLimits;

/// What built-in steps use besides their inputs: the image limits and the version's tokenizer.
#[derive(Default)]
pub struct Resources {
    /// Bounds on the images an image step decodes.
    pub limits: ImageLimits,
    /// The pipeline version's `tokenizer.json`, for tokenize steps.
    pub tokenizer: Option<yunmo_text::embed::EmbedTokenizer>,
}

fn input<'a>(step: &Step, inputs: &'a HashMap<String, Tensor>, own: &str) -> Result<&'a Tensor, StepError> {
    let value = step.inputs.get(own).ok_or_else(|| StepError::Config(format!("step '{}': input '{own}' is not mapped", step.name)))?;
    inputs.get(value).ok_or_else(|| StepError::Invalid(format!("step '{}': the value '{value}' was not produced", step.name)))
}

/// Runs `step` (any step but a model's) on the pipeline values in `inputs`; returns the outputs it maps,
/// named as the pipeline values they become. `labels` are the plan's labels for a top-k step. A model step
/// is the caller's to run.
pub fn run_builtin(
    step: &Step,
    labels: Option<&[String]>,
    inputs: &HashMap<String, Tensor>,
    resources: &Resources,
) -> Result<Vec<Tensor>, StepError> {
    let owner = format!("step '{}'", step.name);
    let made: Vec<(&str, Tensor)> = match &step.kind {
        StepKind::Model(_) => return Err(StepError::Config(format!("{owner}: a model step is run by the caller"))),
        StepKind::Image(image) => vec![("tensor", image.run(input(step, inputs, "image")?, "tensor", &resources.limits)?)],
        StepKind::Softmax(_) => vec![("y", crate::post::softmax(input(step, inputs, "x")?, "y", &owner)?)],
        StepKind::Sigmoid(_) => vec![("y", crate::post::sigmoid(input(step, inputs, "x")?, "y", &owner)?)],
        StepKind::TopK(top) => {
            let [scores, indices, names] = crate::post::top_k(input(step, inputs, "scores")?, top.k, labels, &owner)?;
            [("scores", scores), ("indices", indices), ("labels", names)]
                .into_iter()
                .filter_map(|(own, tensor)| tensor.map(|tensor| (own, tensor)))
                .collect()
        }
        StepKind::Tokenize(tokenize) => {
            let tokenizer = resources
                .tokenizer
                .as_ref()
                .ok_or_else(|| StepError::Config(format!("{owner}: the pipeline version has no tokenizer.json")))?;
            let [ids, mask, types, words, offsets] = tokenize.run(input(step, inputs, "text")?, tokenizer, &owner)?;
            vec![("input_ids", ids), ("attention_mask", mask), ("token_type_ids", types), ("word_ids", words), ("offsets", offsets)]
        }
        StepKind::Entities(entities) => {
            let labels = labels.ok_or_else(|| StepError::Config(format!("{owner}: no labels were planned")))?;
            let inputs = [
                input(step, inputs, "logits")?,
                input(step, inputs, "offsets")?,
                input(step, inputs, "word_ids")?,
                input(step, inputs, "text")?,
            ];
            vec![("entities", entities.run(inputs, labels, &owner)?)]
        }
        StepKind::Mean(_) => {
            let values = step.inputs.keys().map(|own| input(step, inputs, own)).collect::<Result<Vec<_>, _>>()?;
            vec![("y", crate::post::mean(&values, "y", &owner)?)]
        }
        StepKind::Pool(pool) => {
            vec![("embedding", pool.run(input(step, inputs, "hidden")?, input(step, inputs, "attention_mask")?, &owner)?)]
        }
    };
    let mut outputs = Vec::with_capacity(step.outputs.len());
    for (own, tensor) in made {
        if let Some(value) = step.outputs.get(own) {
            outputs.push(tensor.with_name(value));
        }
    }
    Ok(outputs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::PipelineSpec;

    #[test]
    fn softmax_then_top_k_name_their_outputs_as_the_pipeline_values() {
        let spec = PipelineSpec::parse(
            br#"{"inputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 3]}],
                 "steps": [{"name": "p", "softmax": {}, "inputs": {"x": "logits"}, "outputs": {"y": "probabilities"}},
                           {"name": "t", "top_k": {"k": 1, "labels": ["a", "b", "c"]}, "inputs": {"scores": "probabilities"}, "outputs": {"labels": "best"}}],
                 "outputs": ["best"]}"#,
        )
        .unwrap();
        let plan = spec.plan(&HashMap::new(), &ImageLimits::default()).unwrap();
        let mut values = HashMap::new();
        values.insert("logits".to_string(), crate::post::fp32_tensor("logits", vec![1, 3], &[0.0, 5.0, 1.0]).unwrap());
        for &index in &plan.order {
            let step = &spec.steps[index];
            for tensor in run_builtin(step, plan.labels.get(&index).map(Vec::as_slice), &values, &Resources::default()).unwrap() {
                values.insert(tensor.name().to_string(), tensor);
            }
        }
        let best = &values["best"];
        assert_eq!(best.data(), &yunmo_types::TensorData::Bytes(vec![bytes::Bytes::from("b")]));
        assert!(!values.contains_key("scores"), "an output the step does not map is dropped");
    }
}
