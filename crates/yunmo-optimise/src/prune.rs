//! Structured pruning of dense ReLU layers: in each chain `MatMul(x, W1) → Add(·, b1) → Relu → MatMul(·, W2)`
//! with constant weights read nowhere else, the hidden units with the smallest importance
//! (`‖(W1[:, j], b1[j])‖ · ‖W2[j, :]‖`) are removed from `W1`, `b1` and `W2`, so the layer is narrower and
//! the graph stays dense.

use yunmo_proto::onnx::{GraphProto, ModelProto, NodeProto};

use crate::OptimiseError;
use crate::tensor::{float_tensor, floats, initializer, readers};

/// One prunable layer: the indices of its three nodes' weights.
struct Chain {
    w1: String,
    b1: String,
    w2: String,
}

fn is(node: &NodeProto, op: &str) -> bool {
    node.op_type.as_deref() == Some(op) && node.domain.as_deref().unwrap_or("").is_empty()
}

/// The only node reading `value`, if exactly one does and no graph output is it.
fn sole_reader<'a>(graph: &'a GraphProto, value: &str) -> Option<&'a NodeProto> {
    if readers(graph, value) != 1 {
        return None;
    }
    graph.node.iter().find(|node| node.input.iter().any(|input| input == value))
}

fn constant(graph: &GraphProto, name: &str, rank: usize) -> bool {
    initializer(graph, name).is_some_and(|tensor| tensor.dims.len() == rank && floats(tensor).is_some()) && readers(graph, name) == 1
}

fn chains(graph: &GraphProto) -> Vec<Chain> {
    let mut found = Vec::new();
    for first in graph.node.iter().filter(|node| is(node, "MatMul") && node.input.len() == 2) {
        let Some(add) = first.output.first().and_then(|out| sole_reader(graph, out)).filter(|node| is(node, "Add")) else { continue };
        let Some(bias) = add.input.iter().find(|input| *input != &first.output[0]) else { continue };
        let Some(relu) = add.output.first().and_then(|out| sole_reader(graph, out)).filter(|node| is(node, "Relu")) else { continue };
        let Some(second) = relu.output.first().and_then(|out| sole_reader(graph, out)).filter(|node| is(node, "MatMul")) else { continue };
        if second.input.first() != relu.output.first() || second.input.len() != 2 {
            continue;
        }
        if constant(graph, &first.input[1], 2) && constant(graph, bias, 1) && constant(graph, &second.input[1], 2) {
            found.push(Chain { w1: first.input[1].clone(), b1: bias.clone(), w2: second.input[1].clone() });
        }
    }
    found
}

fn replace(graph: &mut GraphProto, name: &str, dims: &[i64], values: &[f32]) {
    if let Some(tensor) = graph.initializer.iter_mut().find(|tensor| tensor.name.as_deref() == Some(name)) {
        *tensor = float_tensor(name, dims, values);
    }
}

/// Keeps `keep` (0 < keep ≤ 1) of each prunable layer's hidden units; returns what it did.
pub fn prune_mlp(model: &mut ModelProto, keep: f64) -> Result<serde_json::Value, OptimiseError> {
    let graph = model.graph.as_mut().ok_or_else(|| OptimiseError::Unreadable("the model has no graph".into()))?;
    let found = chains(graph);
    if found.is_empty() {
        return Err(OptimiseError::NotApplicable(
            "no dense ReLU layer to prune (MatMul → Add → Relu → MatMul with constant weights read nowhere else)".into(),
        ));
    }
    let mut layers = Vec::new();
    for chain in found {
        let w1_tensor = initializer(graph, &chain.w1).expect("checked");
        let (inputs, hidden) = (w1_tensor.dims[0] as usize, w1_tensor.dims[1] as usize);
        let w1 = floats(w1_tensor).expect("checked");
        let b1 = floats(initializer(graph, &chain.b1).expect("checked")).expect("checked");
        let w2_tensor = initializer(graph, &chain.w2).expect("checked");
        let outputs = w2_tensor.dims[1] as usize;
        let w2 = floats(w2_tensor).expect("checked");
        if b1.len() != hidden || w2_tensor.dims[0] as usize != hidden || w1.len() != inputs * hidden || w2.len() != hidden * outputs {
            continue;
        }
        let importance: Vec<f64> = (0..hidden)
            .map(|unit| {
                let incoming: f64 =
                    (0..inputs).map(|row| f64::from(w1[row * hidden + unit]).powi(2)).sum::<f64>() + f64::from(b1[unit]).powi(2);
                let outgoing: f64 = (0..outputs).map(|column| f64::from(w2[unit * outputs + column]).powi(2)).sum();
                incoming.sqrt() * outgoing.sqrt()
            })
            .collect();
        let kept_count = ((hidden as f64 * keep).round() as usize).clamp(1, hidden);
        let mut order: Vec<usize> = (0..hidden).collect();
        order.sort_by(|&a, &b| importance[b].total_cmp(&importance[a]).then(a.cmp(&b)));
        let mut kept: Vec<usize> = order[..kept_count].to_vec();
        kept.sort_unstable();
        let new_w1: Vec<f32> =
            (0..inputs).flat_map(|row| kept.iter().map(move |&unit| (row, unit))).map(|(row, unit)| w1[row * hidden + unit]).collect();
        let new_b1: Vec<f32> = kept.iter().map(|&unit| b1[unit]).collect();
        let new_w2: Vec<f32> = kept.iter().flat_map(|&unit| w2[unit * outputs..(unit + 1) * outputs].iter().copied()).collect();
        replace(graph, &chain.w1, &[inputs as i64, kept_count as i64], &new_w1);
        replace(graph, &chain.b1, &[kept_count as i64], &new_b1);
        replace(graph, &chain.w2, &[kept_count as i64, outputs as i64], &new_w2);
        let removed_importance: f64 = order[kept_count..].iter().map(|&unit| importance[unit]).sum();
        let total_importance: f64 = importance.iter().sum();
        layers.push(serde_json::json!({
            "weights": chain.w1,
            "hidden": hidden,
            "kept": kept_count,
            "importance_removed": if total_importance > 0.0 { removed_importance / total_importance } else { 0.0 },
        }));
    }
    if layers.is_empty() {
        return Err(OptimiseError::NotApplicable(
            "the dense ReLU layers found have weights of mismatched shapes; nothing was pruned".into(),
        ));
    }
    // Shapes recorded for intermediate values may name the old widths; they are optional, so drop them.
    graph.value_info.clear();
    Ok(serde_json::json!({ "layers": layers }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use yunmo_proto::onnx::{GraphProto, ModelProto, NodeProto};

    fn node(op: &str, inputs: &[&str], output: &str) -> NodeProto {
        NodeProto {
            op_type: Some(op.into()),
            input: inputs.iter().map(|name| name.to_string()).collect(),
            output: vec![output.into()],
            ..Default::default()
        }
    }

    /// x[1×2] · W1[2×3] + b1 → Relu → · W2[3×1]; unit 1 has no outgoing weight, unit 2 the least incoming.
    fn mlp() -> ModelProto {
        let graph = GraphProto {
            node: vec![
                node("MatMul", &["x", "w1"], "h"),
                node("Add", &["h", "b1"], "a"),
                node("Relu", &["a"], "r"),
                node("MatMul", &["r", "w2"], "y"),
            ],
            initializer: vec![
                float_tensor("w1", &[2, 3], &[1.0, 5.0, 0.1, 1.0, 5.0, 0.1]),
                float_tensor("b1", &[3], &[0.0, 0.0, 0.0]),
                float_tensor("w2", &[3, 1], &[2.0, 0.0, 3.0]),
            ],
            ..Default::default()
        };
        ModelProto { graph: Some(graph), ..Default::default() }
    }

    #[test]
    fn the_least_important_units_go_and_the_rest_keep_their_weights() {
        let mut model = mlp();
        let summary = prune_mlp(&mut model, 0.34).unwrap();
        assert_eq!(summary["layers"][0]["kept"], 1);
        let graph = model.graph.unwrap();
        // Importance: unit 0 = √2·2 ≈ 2.83, unit 1 = 0 (no outgoing weight), unit 2 = √0.02·3 ≈ 0.42.
        assert_eq!(floats(initializer(&graph, "w1").unwrap()).unwrap(), [1.0, 1.0]);
        assert_eq!(initializer(&graph, "w1").unwrap().dims, [2, 1]);
        assert_eq!(floats(initializer(&graph, "w2").unwrap()).unwrap(), [2.0]);
        let mut model = mlp();
        prune_mlp(&mut model, 0.67).unwrap();
        assert_eq!(floats(initializer(model.graph.as_ref().unwrap(), "w2").unwrap()).unwrap(), [2.0, 3.0], "units 0 and 2 stay, in order");
    }

    #[test]
    fn a_graph_without_a_dense_relu_layer_is_refused_by_name() {
        let mut model = mlp();
        model.graph.as_mut().unwrap().node[2].op_type = Some("Sigmoid".into());
        assert!(prune_mlp(&mut model, 0.5).unwrap_err().to_string().contains("no dense ReLU layer"));
    }
}
