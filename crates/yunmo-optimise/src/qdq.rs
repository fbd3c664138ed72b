//! Static int8 quantisation in ONNX's QDQ form, for CNNs. Weights of `Conv` (one scale per output
//! channel), `MatMul` and `Gemm` (one scale) are stored as int8 and read through `DequantizeLinear`; biases
//! as int32 at the input's scale times the weight's. The activations those ops read and write get a
//! `QuantizeLinear` → `DequantizeLinear` pair (uint8, one scale and zero point per tensor) whose range was
//! measured on a calibration sample: [`plan`] picks the tensors, [`calibration_model`] makes the model
//! that reports each one's minimum and maximum, [`static_int8`] writes the result. ONNX Runtime fuses
//! `DQ → Conv → Q` into its integer kernels; a `Relu` or `Clip` between an op and its `Q` is folded into
//! the quantised range, so the pair goes after the activation.

use std::collections::{HashMap, HashSet};

use yunmo_proto::onnx::{
    AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
    attribute_proto::AttributeType, tensor_proto::DataType, type_proto,
};

use crate::OptimiseError;
use crate::tensor::{Names, drop_unread_initializers, float_tensor, floats, initializer, int8_tensor, is_graph_input, node, opset};

/// Ops whose outputs stay float when their first input is (what the plan follows through the graph).
const FLOAT_OPS: [&str; 26] = [
    "Conv",
    "MatMul",
    "Gemm",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Relu",
    "Clip",
    "Sigmoid",
    "Tanh",
    "HardSigmoid",
    "HardSwish",
    "LeakyRelu",
    "AveragePool",
    "GlobalAveragePool",
    "MaxPool",
    "Reshape",
    "Flatten",
    "Transpose",
    "Squeeze",
    "Unsqueeze",
    "Softmax",
    "BatchNormalization",
    "Identity",
    "ReduceMean",
];

/// Ops quantised with their weights.
const WEIGHTED: [&str; 3] = ["Conv", "MatMul", "Gemm"];
/// Ops quantised on their activations only.
const POOLS: [&str; 3] = ["AveragePool", "GlobalAveragePool", "MaxPool"];

fn op(node: &NodeProto) -> &str {
    match node.domain.as_deref().unwrap_or("") {
        "" | "ai.onnx" => node.op_type.as_deref().unwrap_or(""),
        _ => "",
    }
}

/// What static quantisation changes in a graph.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The activations that get a QuantizeLinear → DequantizeLinear pair, in graph order.
    pub tensors: Vec<String>,
    /// Indices of the nodes whose weight is quantised.
    weighted: Vec<usize>,
}

fn graph_of(model: &ModelProto) -> Result<&GraphProto, OptimiseError> {
    model.graph.as_ref().ok_or_else(|| OptimiseError::Unreadable("the model has no graph".into()))
}

/// The weight of a `Conv`, `MatMul` or `Gemm` when it is a constant FP32 tensor (rank 2 for the matrix
/// ops, 3 or more for `Conv`) that no caller can replace.
fn weight<'a>(graph: &'a GraphProto, node: &NodeProto) -> Option<(&'a TensorProto, Vec<f32>)> {
    let name = node.input.get(1)?;
    let tensor = initializer(graph, name).filter(|_| !is_graph_input(graph, name))?;
    let rank_fits = match op(node) {
        "Conv" => tensor.dims.len() >= 3,
        _ => tensor.dims.len() == 2,
    };
    let values = floats(tensor).filter(|values| rank_fits && values.len() == crate::tensor::element_count(tensor))?;
    Some((tensor, values))
}

/// The activations to quantise and the ops whose weights are: every input and output of a `Conv`,
/// `MatMul` or `Gemm` with a constant weight, of an `Add` of two activations and of a pool, where the value
/// is a float activation (a graph input or computed from one). An output read only by a `Relu` or `Clip`
/// is quantised after that activation instead.
pub fn plan(model: &ModelProto) -> Result<Plan, OptimiseError> {
    let graph = graph_of(model)?;
    let constants: HashSet<&str> = graph
        .initializer
        .iter()
        .filter_map(|tensor| tensor.name.as_deref())
        .chain(graph.node.iter().filter(|node| op(node) == "Constant").flat_map(|node| node.output.iter().map(String::as_str)))
        .collect();
    let mut float: HashSet<&str> = graph
        .input
        .iter()
        .filter(|input| !constants.contains(input.name.as_deref().unwrap_or("")) && elem_type(input) == Some(DataType::Float as i32))
        .filter_map(|input| input.name.as_deref())
        .collect();
    let mut consumers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (index, node) in graph.node.iter().enumerate() {
        for input in &node.input {
            consumers.entry(input.as_str()).or_default().push(index);
        }
    }
    let outputs: HashSet<&str> = graph.output.iter().filter_map(|output| output.name.as_deref()).collect();
    // The value after a Relu or Clip that alone reads `name`.
    let after_activation = |name: &str| -> String {
        match consumers.get(name).map(Vec::as_slice) {
            Some([only]) if !outputs.contains(name) && matches!(op(&graph.node[*only]), "Relu" | "Clip") => {
                let node = &graph.node[*only];
                let constant_bounds = node.input.iter().skip(1).all(|bound| bound.is_empty() || constants.contains(bound.as_str()));
                if constant_bounds && node.input.first().map(String::as_str) == Some(name) {
                    return node.output[0].clone();
                }
                name.to_string()
            }
            _ => name.to_string(),
        }
    };
    let mut tensors: Vec<String> = Vec::new();
    let mut add = |name: String| {
        if !tensors.contains(&name) {
            tensors.push(name);
        }
    };
    let mut weighted = Vec::new();
    for (index, node) in graph.node.iter().enumerate() {
        let kind = op(node);
        let first_float = node.input.first().is_some_and(|input| float.contains(input.as_str()));
        if WEIGHTED.contains(&kind) && first_float && weight(graph, node).is_some() && node.output.len() == 1 {
            weighted.push(index);
            add(node.input[0].clone());
            add(after_activation(&node.output[0]));
        } else if kind == "Add" && node.input.len() == 2 && node.input.iter().all(|input| float.contains(input.as_str())) {
            add(node.input[0].clone());
            add(node.input[1].clone());
            add(after_activation(&node.output[0]));
        } else if POOLS.contains(&kind) && first_float && node.output.len() == 1 {
            add(node.input[0].clone());
            add(after_activation(&node.output[0]));
        }
        if FLOAT_OPS.contains(&kind) && first_float && !node.output.is_empty() {
            float.insert(node.output[0].as_str());
        }
    }
    if weighted.is_empty() {
        return Err(OptimiseError::NotApplicable(
            "no Conv, MatMul or Gemm with a constant FP32 weight reads a float activation: nothing to quantise statically".into(),
        ));
    }
    // A graph output nothing else reads stays float (its pair would be read by nothing).
    tensors.retain(|name| consumers.contains_key(name.as_str()));
    // Graph order: producers first (a graph input is produced before every node).
    let order: HashMap<&str, usize> = graph
        .input
        .iter()
        .filter_map(|input| input.name.as_deref().map(|name| (name, 0)))
        .chain(graph.node.iter().enumerate().flat_map(|(index, node)| node.output.iter().map(move |output| (output.as_str(), index + 1))))
        .collect();
    tensors.sort_by_key(|name| order.get(name.as_str()).copied().unwrap_or(usize::MAX));
    Ok(Plan { tensors, weighted })
}

fn elem_type(value: &ValueInfoProto) -> Option<i32> {
    match value.r#type.as_ref()?.value.as_ref()? {
        type_proto::Value::TensorType(tensor) => tensor.elem_type,
        _ => None,
    }
}

fn int_attribute(name: &str, value: i64) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(AttributeType::Int as i32), i: Some(value), ..Default::default() }
}

/// A float scalar graph output.
fn scalar_output(name: &str) -> ValueInfoProto {
    let tensor = type_proto::Tensor { elem_type: Some(DataType::Float as i32), shape: Some(TensorShapeProto { dim: Vec::new() }) };
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto { value: Some(type_proto::Value::TensorType(tensor)), ..Default::default() }),
        ..Default::default()
    }
}

/// The model to calibrate with: `model` plus two scalar outputs per planned activation, its minimum and
/// maximum over the whole call. Returns it and, per activation, the names of those two outputs.
pub fn calibration_model(model: &ModelProto, plan: &Plan) -> Result<(ModelProto, Vec<[String; 2]>), OptimiseError> {
    let mut calibrating = model.clone();
    let graph = calibrating.graph.as_mut().ok_or_else(|| OptimiseError::Unreadable("the model has no graph".into()))?;
    let mut names = Names::of(graph);
    let mut pairs = Vec::with_capacity(plan.tensors.len());
    for tensor in &plan.tensors {
        let pair = [names.fresh(&format!("{tensor}/min")), names.fresh(&format!("{tensor}/max"))];
        for (reduce, output) in ["ReduceMin", "ReduceMax"].iter().zip(&pair) {
            graph.node.push(node(reduce, &[tensor], &[output], vec![int_attribute("keepdims", 0)]));
            graph.output.push(scalar_output(output));
        }
        pairs.push(pair);
    }
    Ok((calibrating, pairs))
}

/// A uint8 scale and zero point covering `[low, high]` (widened to hold 0), and no wider than `ceiling`
/// when one is given (a `Clip`'s upper bound, which ONNX Runtime folds only when the range stays within it).
pub fn activation_params(low: f32, high: f32, ceiling: Option<f32>) -> (f32, u8) {
    let (low, high) = (low.min(0.0), high.max(0.0));
    if high <= low || !low.is_finite() || !high.is_finite() {
        return (1.0, 0);
    }
    let mut scale = (high - low) / 255.0;
    let zero = (-low / scale).round().clamp(0.0, 255.0) as u8;
    if let Some(ceiling) = ceiling {
        while scale > f32::MIN_POSITIVE && (255.0 - f32::from(zero)) * scale > ceiling {
            scale = f32::from_bits(scale.to_bits() - 1);
        }
    }
    (scale, zero)
}

/// Per-channel symmetric int8 along the first axis: the scales (max |w| / 127 of each channel, 1 for an
/// all-zero one) and the rounded values.
pub fn quantize_channels(values: &[f32], channels: usize) -> (Vec<f32>, Vec<i8>) {
    let width = values.len() / channels.max(1);
    let mut scales = Vec::with_capacity(channels);
    let mut quantized = Vec::with_capacity(values.len());
    for channel in values.chunks(width.max(1)) {
        let largest = channel.iter().fold(0f32, |max, value| max.max(value.abs()));
        let scale = if largest > 0.0 { largest / 127.0 } else { 1.0 };
        quantized.extend(channel.iter().map(|&value| (value / scale).round().clamp(-127.0, 127.0) as i8));
        scales.push(scale);
    }
    (scales, quantized)
}

fn typed_tensor(name: &str, dims: &[i64], kind: DataType, raw: Vec<u8>) -> TensorProto {
    TensorProto { name: Some(name.into()), dims: dims.to_vec(), data_type: Some(kind as i32), raw_data: Some(raw), ..Default::default() }
}

/// Measured ranges: each planned activation's minimum and maximum over the calibration sample.
pub type Ranges = HashMap<String, (f32, f32)>;

/// What one rewrite keeps track of.
struct Rewrite<'a> {
    names: Names,
    initializers: Vec<TensorProto>,
    /// Activation → (its dequantised name, scale).
    activations: HashMap<String, (String, f32)>,
    /// Weight name → (its dequantised name, scales) for weights read by several nodes.
    weights: HashMap<String, (String, Vec<f32>)>,
    replaced: Vec<String>,
    bytes: (usize, usize),
    graph: &'a GraphProto,
}

impl Rewrite<'_> {
    /// The Q → DQ pair of `tensor`.
    fn pair(&mut self, tensor: &str, ranges: &Ranges, ceiling: Option<f32>) -> Result<Vec<NodeProto>, OptimiseError> {
        let (low, high) =
            *ranges.get(tensor).ok_or_else(|| OptimiseError::NotApplicable(format!("the calibration measured no range for '{tensor}'")))?;
        let (scale, zero) = activation_params(low, high, ceiling);
        let [scale_name, zero_name, quantized, dequantized] =
            ["scale", "zero", "uint8", "dq"].map(|suffix| self.names.fresh(&format!("{tensor}/{suffix}")));
        self.initializers.push(float_tensor(&scale_name, &[], &[scale]));
        self.initializers.push(typed_tensor(&zero_name, &[], DataType::Uint8, vec![zero]));
        self.activations.insert(tensor.to_string(), (dequantized.clone(), scale));
        Ok(vec![
            node("QuantizeLinear", &[tensor, &scale_name, &zero_name], &[&quantized], Vec::new()),
            node("DequantizeLinear", &[&quantized, &scale_name, &zero_name], &[&dequantized], Vec::new()),
        ])
    }

    /// DequantizeLinear nodes for a weighted node's weight (and bias); rewires the node to read them.
    fn weight(&mut self, original: &mut NodeProto, emitted: &mut Vec<NodeProto>) -> Result<(), OptimiseError> {
        let (tensor, values) = weight(self.graph, original).ok_or_else(|| OptimiseError::NotApplicable("weight moved".into()))?;
        let name = original.input[1].clone();
        let per_channel = op(original) == "Conv";
        let (dequantized, scales) = match self.weights.get(&name) {
            Some(known) => known.clone(),
            None => {
                let channels = if per_channel { tensor.dims[0] as usize } else { 1 };
                let (scales, quantized) = quantize_channels(&values, channels);
                let [q_name, scale_name, zero_name, dq_name] =
                    ["int8", "scale", "zero", "dq"].map(|suffix| self.names.fresh(&format!("{name}/{suffix}")));
                let scale_dims: Vec<i64> = if per_channel { vec![channels as i64] } else { Vec::new() };
                self.initializers.push(int8_tensor(&q_name, &tensor.dims, &quantized));
                self.initializers.push(float_tensor(&scale_name, &scale_dims, &scales));
                self.initializers.push(int8_tensor(&zero_name, &scale_dims, &vec![0; scales.len()]));
                let attributes = if per_channel { vec![int_attribute("axis", 0)] } else { Vec::new() };
                emitted.push(node("DequantizeLinear", &[&q_name, &scale_name, &zero_name], &[&dq_name], attributes));
                self.bytes.0 += values.len() * 4;
                self.bytes.1 += quantized.len() + scales.len() * 5;
                self.replaced.push(name.clone());
                self.weights.insert(name.clone(), (dq_name.clone(), scales.clone()));
                (dq_name, scales)
            }
        };
        original.input[1] = dequantized;
        // The bias, in int32 at the input's scale times each channel's weight scale.
        let gemm_plain = op(original) != "Gemm"
            || original.attribute.iter().all(|attribute| match attribute.name.as_deref() {
                Some("alpha" | "beta") => attribute.f.unwrap_or(1.0) == 1.0,
                _ => true,
            });
        let bias = original.input.get(2).filter(|name| !name.is_empty() && !is_graph_input(self.graph, name)).cloned();
        let input_scale = self.activations.get(&original.input[0]).map(|(_, scale)| *scale);
        if let (Some(bias), Some(input_scale), true) = (bias, input_scale, gemm_plain)
            && let Some(values) = initializer(self.graph, &bias).filter(|tensor| tensor.dims.len() == 1).and_then(floats)
            && (scales.len() == 1 || values.len() == scales.len())
        {
            let bias_scales: Vec<f32> = (0..values.len()).map(|index| input_scale * scales[index % scales.len()]).collect();
            let quantized: Vec<u8> = values
                .iter()
                .zip(&bias_scales)
                .flat_map(|(value, scale)| {
                    let step = if *scale > 0.0 { (value / scale).round() } else { 0.0 };
                    (step.clamp(i32::MIN as f32, i32::MAX as f32) as i32).to_le_bytes()
                })
                .collect();
            let [q_name, scale_name, dq_name] = ["int32", "scale", "dq"].map(|suffix| self.names.fresh(&format!("{bias}/{suffix}")));
            self.initializers.push(typed_tensor(&q_name, &[values.len() as i64], DataType::Int32, quantized));
            self.initializers.push(float_tensor(&scale_name, &[values.len() as i64], &bias_scales));
            emitted.push(node("DequantizeLinear", &[&q_name, &scale_name], &[&dq_name], vec![int_attribute("axis", 0)]));
            self.replaced.push(bias.clone());
            original.input[2] = dq_name;
        }
        Ok(())
    }
}

/// The upper bound of a `Clip` that produces `tensor` from constant bounds, if one does.
fn clip_ceiling(graph: &GraphProto, tensor: &str) -> Option<f32> {
    let producer = graph.node.iter().find(|node| node.output.first().map(String::as_str) == Some(tensor) && op(node) == "Clip")?;
    let bound = producer.input.get(2).filter(|name| !name.is_empty())?;
    initializer(graph, bound).and_then(floats).and_then(|values| values.first().copied())
}

/// Quantises `model` as [`plan`] says, with the activations' `ranges` from calibration; returns what it did.
pub fn static_int8(model: &mut ModelProto, ranges: &Ranges) -> Result<serde_json::Value, OptimiseError> {
    let version = opset(model);
    if version < 13 {
        return Err(OptimiseError::NotApplicable(format!(
            "the model imports opset {version}; static quantisation (per-channel DequantizeLinear) needs 13 or later"
        )));
    }
    let plan = plan(model)?;
    let graph = model.graph.take().ok_or_else(|| OptimiseError::Unreadable("the model has no graph".into()))?;
    let planned: HashSet<&str> = plan.tensors.iter().map(String::as_str).collect();
    let mut rewrite = Rewrite {
        names: Names::of(&graph),
        initializers: Vec::new(),
        activations: HashMap::new(),
        weights: HashMap::new(),
        replaced: Vec::new(),
        bytes: (0, 0),
        graph: &graph,
    };
    let mut nodes = Vec::with_capacity(graph.node.len() * 2);
    for input in &graph.input {
        if let Some(name) = input.name.as_deref().filter(|name| planned.contains(name)) {
            nodes.extend(rewrite.pair(name, ranges, None)?);
        }
    }
    for (index, original) in graph.node.iter().enumerate() {
        let mut rewritten = original.clone();
        if plan.weighted.contains(&index) {
            // Before the inputs are renamed: the bias scale is looked up by the input's own name.
            rewrite.weight(&mut rewritten, &mut nodes)?;
        }
        for input in &mut rewritten.input {
            if let Some((dequantized, _)) = rewrite.activations.get(input.as_str()) {
                *input = dequantized.clone();
            }
        }
        nodes.push(rewritten);
        for output in &original.output {
            if planned.contains(output.as_str()) {
                nodes.extend(rewrite.pair(output, ranges, clip_ceiling(&graph, output))?);
            }
        }
    }
    let Rewrite { initializers, replaced, bytes, activations, .. } = rewrite;
    let convs = plan.weighted.iter().filter(|&&index| op(&graph.node[index]) == "Conv").count();
    let mut graph = graph;
    graph.node = nodes;
    graph.initializer.extend(initializers);
    drop_unread_initializers(&mut graph, &replaced);
    model.graph = Some(graph);
    Ok(serde_json::json!({
        "convs_quantized": convs,
        "matmuls_quantized": plan.weighted.len() - convs,
        "activations_quantized": activations.len(),
        "weight_bytes_before": bytes.0,
        "weight_bytes_after": bytes.1,
        "weights": "int8, symmetric, one scale per output channel (Conv) or per tensor (MatMul, Gemm); biases int32",
        "activations": "uint8, one scale and zero point per tensor, from the minimum and maximum over the calibration sample",
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use yunmo_proto::onnx::OperatorSetIdProto;

    fn float_input(name: &str) -> ValueInfoProto {
        let tensor = type_proto::Tensor { elem_type: Some(DataType::Float as i32), shape: None };
        ValueInfoProto {
            name: Some(name.into()),
            r#type: Some(TypeProto { value: Some(type_proto::Value::TensorType(tensor)), ..Default::default() }),
            ..Default::default()
        }
    }

    /// x → Conv(w, b) → Clip(0, 6) → Conv(w2) → Add(with the first Clip) → GlobalAveragePool → y.
    fn cnn() -> ModelProto {
        let graph = GraphProto {
            node: vec![
                node("Conv", &["x", "w", "b"], &["c1"], Vec::new()),
                node("Clip", &["c1", "lo", "hi"], &["a1"], Vec::new()),
                node("Conv", &["a1", "w2"], &["c2"], Vec::new()),
                node("Add", &["c2", "a1"], &["s"], Vec::new()),
                node("GlobalAveragePool", &["s"], &["y"], Vec::new()),
            ],
            initializer: vec![
                float_tensor("w", &[2, 1, 1, 1], &[0.5, -2.0]),
                float_tensor("b", &[2], &[0.1, -0.3]),
                float_tensor("w2", &[2, 2, 1, 1], &[1.0, 0.0, 0.0, 0.0]),
                float_tensor("lo", &[], &[0.0]),
                float_tensor("hi", &[], &[6.0]),
            ],
            input: vec![float_input("x")],
            output: vec![float_input("y")],
            ..Default::default()
        };
        ModelProto {
            graph: Some(graph),
            opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(13) }],
            ..Default::default()
        }
    }

    #[test]
    fn the_plan_quantises_after_activations_and_around_adds_and_pools() {
        let plan = plan(&cnn()).unwrap();
        assert_eq!(plan.tensors, ["x", "a1", "c2", "s"], "c1 is quantised after its Clip; the graph output y stays float");
        assert_eq!(plan.weighted, [0, 2]);
    }

    #[test]
    fn weights_biases_and_activations_are_rewritten() {
        let mut model = cnn();
        let ranges: Ranges = [("x", (-1.0, 1.0)), ("a1", (0.0, 6.0)), ("c2", (-2.0, 3.0)), ("s", (0.0, 8.0)), ("y", (0.0, 4.0))]
            .into_iter()
            .map(|(name, range)| (name.to_string(), range))
            .collect();
        let summary = static_int8(&mut model, &ranges).unwrap();
        assert_eq!(summary["convs_quantized"], 2);
        assert_eq!(summary["activations_quantized"], 4);
        let graph = model.graph.unwrap();
        assert!(initializer(&graph, "w").is_none() && initializer(&graph, "b").is_none(), "the float weights are gone");
        let conv = graph.node.iter().find(|node| op(node) == "Conv").unwrap();
        assert!(conv.input.iter().all(|input| input.contains("/dq/")), "{:?}", conv.input);
        // The bias: 0.1 / (input scale 2/255 × weight scale 0.5/127) and -0.3 / (2/255 × 2/127).
        let bias = graph.initializer.iter().find(|tensor| tensor.data_type == Some(DataType::Int32 as i32)).unwrap();
        let values: Vec<i32> =
            bias.raw_data.as_ref().unwrap().chunks(4).map(|bytes| i32::from_le_bytes(bytes.try_into().unwrap())).collect();
        let input_scale = 2.0f32 / 255.0;
        assert_eq!(values, [(0.1 / (input_scale * 0.5 / 127.0)).round() as i32, (-0.3 / (input_scale * 2.0 / 127.0)).round() as i32]);
        let quantizers = graph.node.iter().filter(|node| op(node) == "QuantizeLinear").count();
        assert_eq!(quantizers, 4);
        // The Clip output's range stays within the Clip (ONNX Runtime folds the Clip into it).
        let (scale, zero) = activation_params(0.0, 6.0, Some(6.0));
        assert!(zero == 0 && 255.0 * scale <= 6.0, "{scale}");
    }

    #[test]
    fn calibration_adds_a_minimum_and_maximum_per_activation() {
        let model = cnn();
        let plan = plan(&model).unwrap();
        let (calibrating, pairs) = calibration_model(&model, &plan).unwrap();
        let graph = calibrating.graph.unwrap();
        assert_eq!(pairs.len(), 4);
        assert_eq!(graph.output.len(), 9);
        assert_eq!(graph.node.iter().filter(|node| op(node) == "ReduceMin").count(), 4);
    }

    #[test]
    fn ranges_hold_zero_and_an_empty_range_gets_a_usable_scale() {
        assert_eq!(activation_params(1.0, 1.0, None), (1.0 / 255.0, 0));
        let (scale, zero) = activation_params(-1.0, 3.0, None);
        assert!((scale - 4.0 / 255.0).abs() < 1e-9 && zero == 64, "{scale} {zero}");
        assert_eq!(activation_params(0.0, 0.0, None), (1.0, 0));
    }
}
