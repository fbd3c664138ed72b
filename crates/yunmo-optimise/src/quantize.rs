//! Dynamic int8 quantisation of MatMul weights: each constant 2-D weight of a `MatMul` is stored as int8
//! with one scale per output column (symmetric, zero point 0); its input is quantised to uint8 when the
//! model runs (`DynamicQuantizeLinear`), multiplied in integers (`MatMulInteger`) and scaled back to float.
//! ONNX Runtime fuses the pattern into `MatMulIntegerToFloat`. Constant embedding tables read by `Gather`
//! are stored as int8 with one scale per row; a call gathers the rows and their scales.

use std::collections::HashMap;

use yunmo_proto::onnx::{AttributeProto, ModelProto, NodeProto, attribute_proto::AttributeType, tensor_proto::DataType};

use crate::OptimiseError;
use crate::tensor::{Names, drop_unread_initializers, float_tensor, floats, initializer, int8_tensor, is_graph_input, node, opset};

fn cast_to_float(input: &str, output: &str) -> NodeProto {
    let to = AttributeProto {
        name: Some("to".into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(DataType::Float as i64),
        ..Default::default()
    };
    node("Cast", &[input], &[output], vec![to])
}

/// Per-column symmetric int8: the scales (max |w| / 127 of each column) and the rounded values.
pub fn quantize_columns(values: &[f32], rows: usize, columns: usize) -> (Vec<f32>, Vec<i8>) {
    let mut scales = vec![0f32; columns];
    for row in 0..rows {
        for (column, scale) in scales.iter_mut().enumerate() {
            *scale = scale.max(values[row * columns + column].abs());
        }
    }
    for scale in &mut scales {
        *scale = if *scale > 0.0 { *scale / 127.0 } else { 1.0 };
    }
    let quantized =
        values.iter().enumerate().map(|(index, &value)| (value / scales[index % columns]).round().clamp(-127.0, 127.0) as i8).collect();
    (scales, quantized)
}

/// Quantises every MatMul whose second input is a constant FP32 matrix of at least `min_elements`
/// elements; returns what it did.
pub fn dynamic_int8(model: &mut ModelProto, min_elements: usize) -> Result<serde_json::Value, OptimiseError> {
    let version = opset(model);
    if version < 11 {
        return Err(OptimiseError::NotApplicable(format!("the model imports opset {version}; dynamic quantisation needs 11 or later")));
    }
    let graph = model.graph.as_mut().ok_or_else(|| OptimiseError::Unreadable("the model has no graph".into()))?;
    let mut names = Names::of(graph);
    let nodes = std::mem::take(&mut graph.node);
    let mut rewritten = Vec::with_capacity(nodes.len());
    let mut quantized_inputs: HashMap<String, [String; 3]> = HashMap::new();
    let (mut count, mut bytes_before, mut bytes_after) = (0usize, 0usize, 0usize);
    let mut gathers = 0usize;
    let mut replaced: Vec<String> = Vec::new();
    // A weight read by several MatMuls is quantised once.
    let mut quantized_weights: HashMap<String, [String; 3]> = HashMap::new();
    for original in nodes {
        // Unsqueeze takes its axes as an input from opset 13 on.
        if let Some((table, values)) = gather_table(graph, &original, min_elements).filter(|_| version >= 13) {
            // An embedding table: int8 with one scale per row; a call gathers rows and their scales.
            let dims = initializer(graph, &table).map(|tensor| tensor.dims.clone()).unwrap_or_default();
            let (rows, width) = (dims[0] as usize, dims[1] as usize);
            let mut scales = Vec::with_capacity(rows);
            let mut quantized = Vec::with_capacity(values.len());
            for row in values.chunks(width) {
                let scale = row.iter().fold(0f32, |max, value| max.max(value.abs()));
                let scale = if scale > 0.0 { scale / 127.0 } else { 1.0 };
                quantized.extend(row.iter().map(|&value| (value / scale).round().clamp(-127.0, 127.0) as i8));
                scales.push(scale);
            }
            let output = original.output[0].clone();
            let [q_name, scale_name, axes, gathered, as_float, row_scales, column] = [
                format!("{table}/int8"),
                format!("{table}/scale"),
                format!("{table}/axes"),
                format!("{output}/int8"),
                format!("{output}/float"),
                format!("{output}/scale"),
                format!("{output}/scale_column"),
            ]
            .map(|stem| names.fresh(&stem));
            graph.initializer.push(int8_tensor(&q_name, &dims, &quantized));
            graph.initializer.push(float_tensor(&scale_name, &[rows as i64], &scales));
            graph.initializer.push(yunmo_proto::onnx::TensorProto {
                name: Some(axes.clone()),
                dims: vec![1],
                data_type: Some(DataType::Int64 as i32),
                int64_data: vec![-1],
                ..Default::default()
            });
            replaced.push(table.clone());
            let indices = original.input[1].clone();
            rewritten.push(node("Gather", &[&q_name, &indices], &[&gathered], Vec::new()));
            rewritten.push(cast_to_float(&gathered, &as_float));
            rewritten.push(node("Gather", &[&scale_name, &indices], &[&row_scales], Vec::new()));
            rewritten.push(node("Unsqueeze", &[&row_scales, &axes], &[&column], Vec::new()));
            rewritten.push(node("Mul", &[&as_float, &column], &[&output], Vec::new()));
            bytes_before += values.len() * 4;
            bytes_after += quantized.len() + rows * 4;
            gathers += 1;
            continue;
        }
        let is_matmul = original.op_type.as_deref() == Some("MatMul") && original.domain.as_deref().unwrap_or("").is_empty();
        let weight = match is_matmul && original.input.len() == 2 {
            true => initializer(graph, &original.input[1]).filter(|tensor| tensor.dims.len() == 2).and_then(|tensor| {
                let values = floats(tensor)?;
                (values.len() >= min_elements && values.len() == (tensor.dims[0] * tensor.dims[1]) as usize)
                    .then(|| (values, tensor.dims[0] as usize, tensor.dims[1] as usize))
            }),
            false => None,
        };
        let Some((values, rows, columns)) = weight.filter(|_| !is_graph_input(graph, &original.input[1])) else {
            rewritten.push(original);
            continue;
        };
        let stem = original.input[1].clone();
        let [q_name, scale_name, zero_name] = match quantized_weights.get(&stem) {
            Some(names) => names.clone(),
            None => {
                let (scales, quantized) = quantize_columns(&values, rows, columns);
                let new_names =
                    [names.fresh(&format!("{stem}/int8")), names.fresh(&format!("{stem}/scale")), names.fresh(&format!("{stem}/zero"))];
                graph.initializer.push(int8_tensor(&new_names[0], &[rows as i64, columns as i64], &quantized));
                graph.initializer.push(float_tensor(&new_names[1], &[columns as i64], &scales));
                graph.initializer.push(int8_tensor(&new_names[2], &[columns as i64], &vec![0; columns]));
                bytes_before += values.len() * 4;
                bytes_after += quantized.len() + columns * 5;
                replaced.push(stem.clone());
                quantized_weights.insert(stem.clone(), new_names.clone());
                new_names
            }
        };
        let input = original.input[0].clone();
        let [a_q, a_scale, a_zero] = match quantized_inputs.get(&input) {
            Some(names) => names.clone(),
            None => {
                let names =
                    [names.fresh(&format!("{input}/uint8")), names.fresh(&format!("{input}/scale")), names.fresh(&format!("{input}/zero"))];
                rewritten.push(node("DynamicQuantizeLinear", &[&input], &[&names[0], &names[1], &names[2]], Vec::new()));
                quantized_inputs.insert(input.clone(), names.clone());
                names
            }
        };
        let output = &original.output[0];
        let (product, as_float, scale) =
            (names.fresh(&format!("{output}/int32")), names.fresh(&format!("{output}/float")), names.fresh(&format!("{output}/scale")));
        rewritten.push(node("MatMulInteger", &[&a_q, &q_name, &a_zero, &zero_name], &[&product], Vec::new()));
        rewritten.push(cast_to_float(&product, &as_float));
        rewritten.push(node("Mul", &[&a_scale, &scale_name], &[&scale], Vec::new()));
        rewritten.push(node("Mul", &[&as_float, &scale], &[output], Vec::new()));
        count += 1;
        // Names of the rewritten nodes are kept unique by ONNX Runtime; the original's name is dropped.
    }
    graph.node = rewritten;
    if count + gathers == 0 {
        return Err(OptimiseError::NotApplicable(format!(
            "no MatMul weight or Gather table that is a constant FP32 matrix of at least {min_elements} elements to quantise"
        )));
    }
    drop_unread_initializers(graph, &replaced);
    Ok(serde_json::json!({
        "matmuls_quantized": count,
        "gathers_quantized": gathers,
        "weight_bytes_before": bytes_before,
        "weight_bytes_after": bytes_after,
    }))
}

/// The name and values of a `Gather`'s constant FP32 table (rank 2, gathered along axis 0, at least
/// `min_elements`), when it is one.
fn gather_table(graph: &yunmo_proto::onnx::GraphProto, node: &NodeProto, min_elements: usize) -> Option<(String, Vec<f32>)> {
    if node.op_type.as_deref() != Some("Gather") || !node.domain.as_deref().unwrap_or("").is_empty() || node.input.len() != 2 {
        return None;
    }
    let axis =
        node.attribute.iter().find(|attribute| attribute.name.as_deref() == Some("axis")).and_then(|attribute| attribute.i).unwrap_or(0);
    if is_graph_input(graph, &node.input[0]) {
        return None;
    }
    let tensor = initializer(graph, &node.input[0]).filter(|tensor| tensor.dims.len() == 2 && axis == 0)?;
    let values = floats(tensor)?;
    (values.len() >= min_elements && values.len() == (tensor.dims[0] * tensor.dims[1]) as usize).then(|| (node.input[0].clone(), values))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::readers;
    use yunmo_proto::onnx::{GraphProto, OperatorSetIdProto, ValueInfoProto};

    fn model(graph: GraphProto) -> ModelProto {
        ModelProto {
            graph: Some(graph),
            opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(17) }],
            ..Default::default()
        }
    }

    fn matmul(input: &str, weight: &str, output: &str) -> NodeProto {
        node("MatMul", &[input, weight], &[output], Vec::new())
    }

    #[test]
    fn a_shared_weight_is_quantised_once_and_one_read_elsewhere_is_kept() {
        let weight = float_tensor("w", &[2, 2], &[1.0, -2.0, 0.5, 0.25]);
        let branch = GraphProto { node: vec![node("Identity", &["w"], &["w_copy"], Vec::new())], ..Default::default() };
        let nested = AttributeProto { name: Some("then_branch".into()), g: Some(branch), ..Default::default() };
        let graph = GraphProto {
            node: vec![matmul("x", "w", "y1"), matmul("x", "w", "y2"), node("If", &["cond"], &["z"], vec![nested])],
            initializer: vec![weight],
            ..Default::default()
        };
        let mut model = model(graph);
        let summary = dynamic_int8(&mut model, 1).unwrap();
        let graph = model.graph.unwrap();
        assert_eq!(summary["matmuls_quantized"], 2);
        let int8: Vec<_> =
            graph.initializer.iter().filter(|tensor| tensor.data_type == Some(DataType::Int8 as i32) && tensor.dims.len() == 2).collect();
        assert_eq!(int8.len(), 1, "one int8 copy for both readers");
        assert!(initializer(&graph, "w").is_some() && readers(&graph, "w") == 1, "the If body still reads the float weight");
        let quantizers = graph.node.iter().filter(|node| node.op_type.as_deref() == Some("DynamicQuantizeLinear")).count();
        assert_eq!(quantizers, 1, "the shared input is quantised once");
    }

    #[test]
    fn an_initializer_that_is_also_a_graph_input_stays_float() {
        let graph = GraphProto {
            node: vec![matmul("x", "w", "y")],
            initializer: vec![float_tensor("w", &[2, 2], &[1.0, 2.0, 3.0, 4.0])],
            input: vec![ValueInfoProto { name: Some("w".into()), ..Default::default() }],
            ..Default::default()
        };
        let error = dynamic_int8(&mut model(graph), 1).unwrap_err();
        assert!(error.to_string().contains("no MatMul weight or Gather table"), "{error}");
    }

    #[test]
    fn columns_get_their_own_scale_and_round_to_the_nearest_step() {
        // Column 0 spans ±2.54, column 1 ±0.127: steps 0.02 and 0.001.
        let (scales, quantized) = quantize_columns(&[2.54, 0.001, -1.0, -0.127, 0.011, 0.0], 3, 2);
        assert!((scales[0] - 0.02).abs() < 1e-7 && (scales[1] - 0.001).abs() < 1e-9, "{scales:?}");
        assert_eq!(quantized, [127, 1, -50, -127, 1, 0]);
        let (scales, quantized) = quantize_columns(&[0.0, 0.0], 2, 1);
        assert_eq!((scales, quantized), (vec![1.0], vec![0, 0]), "an all-zero column keeps a usable scale");
    }
}
