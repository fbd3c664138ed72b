//! Reading and writing initializers (`TensorProto`), and the graph queries the rewrites share.

use yunmo_proto::onnx::{AttributeProto, GraphProto, NodeProto, TensorProto, tensor_proto::DataType};

/// A float initializer's values (from `float_data` or little-endian `raw_data`), or None when it is not
/// FP32 or stored outside the file.
pub fn floats(tensor: &TensorProto) -> Option<Vec<f32>> {
    if tensor.data_type != Some(DataType::Float as i32) || !tensor.external_data.is_empty() {
        return None;
    }
    if let Some(raw) = &tensor.raw_data {
        if raw.len() % 4 != 0 {
            return None;
        }
        return Some(raw.chunks_exact(4).map(|bytes| f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])).collect());
    }
    Some(tensor.float_data.clone())
}

/// A node of the default domain.
pub fn node(op: &str, inputs: &[&str], outputs: &[&str], attribute: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: Some(op.into()),
        domain: Some(String::new()),
        input: inputs.iter().map(|name| name.to_string()).collect(),
        output: outputs.iter().map(|name| name.to_string()).collect(),
        attribute,
        ..Default::default()
    }
}

/// The number of elements its dimensions give.
pub fn element_count(tensor: &TensorProto) -> usize {
    tensor.dims.iter().map(|&dim| dim.max(0) as usize).product()
}

/// A float tensor with raw little-endian data.
pub fn float_tensor(name: &str, dims: &[i64], values: &[f32]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(DataType::Float as i32),
        raw_data: Some(values.iter().flat_map(|value| value.to_le_bytes()).collect()),
        ..Default::default()
    }
}

/// An int8 tensor with raw data.
pub fn int8_tensor(name: &str, dims: &[i64], values: &[i8]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(DataType::Int8 as i32),
        raw_data: Some(values.iter().map(|&value| value as u8).collect()),
        ..Default::default()
    }
}

/// The initializer named `name`, if any.
pub fn initializer<'a>(graph: &'a GraphProto, name: &str) -> Option<&'a TensorProto> {
    graph.initializer.iter().find(|tensor| tensor.name.as_deref() == Some(name))
}

/// How many times the value `name` is read: by nodes (also inside the subgraphs of If, Loop and Scan
/// nodes, which may read the outer graph's values), by the graph's outputs, and as a graph input (an
/// initializer that is also an input can be replaced by the caller, so it counts as read elsewhere).
pub fn readers(graph: &GraphProto, name: &str) -> usize {
    let by_outputs = graph.output.iter().filter(|output| output.name.as_deref() == Some(name)).count();
    let as_input = graph.input.iter().filter(|input| input.name.as_deref() == Some(name)).count();
    by_outputs + as_input + node_reads(graph, name)
}

fn node_reads(graph: &GraphProto, name: &str) -> usize {
    graph
        .node
        .iter()
        .map(|node| {
            let direct = node.input.iter().filter(|input| *input == name).count();
            let nested: usize = node
                .attribute
                .iter()
                .flat_map(|attribute| attribute.g.iter().chain(attribute.graphs.iter()))
                .map(|subgraph| {
                    node_reads(subgraph, name) + subgraph.output.iter().filter(|output| output.name.as_deref() == Some(name)).count()
                })
                .sum();
            direct + nested
        })
        .sum()
}

/// Removes the initializers among `replaced` that nothing reads any more.
pub fn drop_unread_initializers(graph: &mut GraphProto, replaced: &[String]) {
    let unread: Vec<String> = replaced.iter().filter(|name| readers(graph, name) == 0).cloned().collect();
    graph.initializer.retain(|tensor| tensor.name.as_ref().is_none_or(|name| !unread.contains(name)));
}

/// Whether the initializer `name` is also a graph input (then a caller may replace it, and it must stay).
pub fn is_graph_input(graph: &GraphProto, name: &str) -> bool {
    graph.input.iter().any(|input| input.name.as_deref() == Some(name))
}

/// The default-domain opset version the model imports (0 when none).
pub fn opset(model: &yunmo_proto::onnx::ModelProto) -> i64 {
    model
        .opset_import
        .iter()
        .find(|opset| opset.domain.as_deref().unwrap_or("").is_empty() || opset.domain.as_deref() == Some("ai.onnx"))
        .and_then(|opset| opset.version)
        .unwrap_or(0)
}

/// Every value name of a graph, to make new ones that clash with none.
pub struct Names {
    taken: std::collections::HashSet<String>,
}

impl Names {
    /// The names `graph` uses now (nodes' inputs and outputs, initializers, graph inputs and outputs).
    pub fn of(graph: &GraphProto) -> Names {
        let mut taken = std::collections::HashSet::new();
        fn collect(graph: &GraphProto, taken: &mut std::collections::HashSet<String>) {
            for node in &graph.node {
                taken.extend(node.input.iter().chain(node.output.iter()).cloned());
                for subgraph in node.attribute.iter().flat_map(|attribute| attribute.g.iter().chain(attribute.graphs.iter())) {
                    collect(subgraph, taken);
                }
            }
        }
        collect(graph, &mut taken);
        taken.extend(graph.initializer.iter().filter_map(|tensor| tensor.name.clone()));
        taken.extend(graph.input.iter().chain(graph.output.iter()).filter_map(|value| value.name.clone()));
        Names { taken }
    }

    /// A new name starting with `stem`.
    pub fn fresh(&mut self, stem: &str) -> String {
        let name = (0..).map(|index| format!("{stem}/{index}")).find(|candidate| !self.taken.contains(candidate)).expect("a free name");
        self.taken.insert(name.clone());
        name
    }
}
