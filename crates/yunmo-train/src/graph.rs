//! A small builder for ONNX graphs: constants, nodes and typed inputs and outputs, written as prost messages
//! from `onnx.proto` (opset 19 with `ai.onnx.ml` 3, IR version 9, which ONNX Runtime 1.16 and later run).

use yunmo_proto::onnx::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto,
};

/// The ONNX IR version written.
pub const IR_VERSION: i64 = 9;
/// The default-domain opset written.
pub const OPSET: i64 = 19;

/// One attribute of a node.
pub enum Attr<'a> {
    /// An integer.
    Int(&'a str, i64),
    /// A list of integers.
    Ints(&'a str, Vec<i64>),
    /// A float.
    Float(&'a str, f32),
    /// A list of floats.
    Floats(&'a str, Vec<f32>),
    /// A list of strings.
    Strings(&'a str, Vec<String>),
    /// A string.
    Text(&'a str, &'a str),
}

impl Attr<'_> {
    fn proto(self) -> AttributeProto {
        let mut attribute = AttributeProto::default();
        match self {
            Attr::Int(name, value) => {
                attribute.name = Some(name.into());
                attribute.r#type = Some(AttributeType::Int as i32);
                attribute.i = Some(value);
            }
            Attr::Ints(name, values) => {
                attribute.name = Some(name.into());
                attribute.r#type = Some(AttributeType::Ints as i32);
                attribute.ints = values;
            }
            Attr::Float(name, value) => {
                attribute.name = Some(name.into());
                attribute.r#type = Some(AttributeType::Float as i32);
                attribute.f = Some(value);
            }
            Attr::Floats(name, values) => {
                attribute.name = Some(name.into());
                attribute.r#type = Some(AttributeType::Floats as i32);
                attribute.floats = values;
            }
            Attr::Strings(name, values) => {
                attribute.name = Some(name.into());
                attribute.r#type = Some(AttributeType::Strings as i32);
                attribute.strings = values.into_iter().map(String::into_bytes).collect();
            }
            Attr::Text(name, value) => {
                attribute.name = Some(name.into());
                attribute.r#type = Some(AttributeType::String as i32);
                attribute.s = Some(value.as_bytes().to_vec());
            }
        }
        attribute
    }
}

/// Element types the builder writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Elem {
    /// 32-bit float.
    F32,
    /// 64-bit signed integer.
    I64,
    /// UTF-8 text (KServe `BYTES`).
    Text,
}

impl Elem {
    fn code(self) -> i32 {
        match self {
            Elem::F32 => DataType::Float as i32,
            Elem::I64 => DataType::Int64 as i32,
            Elem::Text => DataType::String as i32,
        }
    }
}

/// Builds one graph; names of intermediate values are made unique by [`GraphBuilder::fresh`].
#[derive(Default)]
pub struct GraphBuilder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    counter: usize,
}

fn value_info(name: &str, elem: Elem, width: Option<i64>) -> ValueInfoProto {
    let batch =
        tensor_shape_proto::Dimension { value: Some(tensor_shape_proto::dimension::Value::DimParam("batch".into())), ..Default::default() };
    let mut dim = vec![batch];
    if let Some(width) = width {
        dim.push(tensor_shape_proto::Dimension {
            value: Some(tensor_shape_proto::dimension::Value::DimValue(width)),
            ..Default::default()
        });
    }
    let tensor = type_proto::Tensor { elem_type: Some(elem.code()), shape: Some(TensorShapeProto { dim }) };
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto { value: Some(type_proto::Value::TensorType(tensor)), ..Default::default() }),
        ..Default::default()
    }
}

impl GraphBuilder {
    /// A new name no other value of this graph has, starting with `stem`.
    pub fn fresh(&mut self, stem: &str) -> String {
        self.counter += 1;
        format!("yunmo/{stem}/{}", self.counter)
    }

    /// Declares an input of shape `[batch, width]` (`[batch]` without a width).
    pub fn input(&mut self, name: &str, elem: Elem, width: Option<i64>) {
        self.inputs.push(value_info(name, elem, width));
    }

    /// Declares an output of shape `[batch, width]` (`[batch]` without a width).
    pub fn output(&mut self, name: &str, elem: Elem, width: Option<i64>) {
        self.outputs.push(value_info(name, elem, width));
    }

    /// A float constant of the given shape (row-major values).
    pub fn floats(&mut self, stem: &str, dims: &[i64], values: &[f32]) -> String {
        let name = self.fresh(stem);
        let raw: Vec<u8> = values.iter().flat_map(|value| value.to_le_bytes()).collect();
        self.initializers.push(TensorProto {
            name: Some(name.clone()),
            dims: dims.to_vec(),
            data_type: Some(DataType::Float as i32),
            raw_data: Some(raw),
            ..Default::default()
        });
        name
    }

    /// An int64 constant of the given shape.
    pub fn ints(&mut self, stem: &str, dims: &[i64], values: &[i64]) -> String {
        let name = self.fresh(stem);
        self.initializers.push(TensorProto {
            name: Some(name.clone()),
            dims: dims.to_vec(),
            data_type: Some(DataType::Int64 as i32),
            int64_data: values.to_vec(),
            ..Default::default()
        });
        name
    }

    /// A string constant (one dimension).
    pub fn strings(&mut self, stem: &str, values: &[String]) -> String {
        let name = self.fresh(stem);
        self.initializers.push(TensorProto {
            name: Some(name.clone()),
            dims: vec![values.len() as i64],
            data_type: Some(DataType::String as i32),
            string_data: values.iter().map(|value| value.as_bytes().to_vec()).collect(),
            ..Default::default()
        });
        name
    }

    /// Adds a default-domain node with one output, named from `op`, and returns that output's name.
    pub fn op(&mut self, op: &str, inputs: &[&str], attrs: Vec<Attr<'_>>) -> String {
        let output = self.fresh(&op.to_ascii_lowercase());
        self.node_into(NodeSpec { op, domain: "", inputs, output: &output }, attrs);
        output
    }

    /// Adds a node whose output takes the given name (graph outputs are named so).
    pub fn op_into(&mut self, op: &str, inputs: &[&str], output: &str, attrs: Vec<Attr<'_>>) {
        self.node_into(NodeSpec { op, domain: "", inputs, output }, attrs);
    }

    /// Adds a default-domain node with several outputs, named by the caller.
    pub fn op_multi(&mut self, op: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<Attr<'_>>) {
        let name = self.fresh(op);
        self.nodes.push(NodeProto {
            name: Some(name),
            op_type: Some(op.into()),
            domain: Some(String::new()),
            input: inputs.iter().map(|input| input.to_string()).collect(),
            output: outputs.iter().map(|output| output.to_string()).collect(),
            attribute: attrs.into_iter().map(Attr::proto).collect(),
            ..Default::default()
        });
    }

    /// Adds an `ai.onnx.ml` node with one output and returns its name.
    pub fn ml_op(&mut self, op: &str, inputs: &[&str], attrs: Vec<Attr<'_>>) -> String {
        let output = self.fresh(&op.to_ascii_lowercase());
        self.node_into(NodeSpec { op, domain: "ai.onnx.ml", inputs, output: &output }, attrs);
        output
    }

    fn node_into(&mut self, spec: NodeSpec<'_>, attrs: Vec<Attr<'_>>) {
        let name = self.fresh(spec.op);
        self.nodes.push(NodeProto {
            name: Some(name),
            op_type: Some(spec.op.into()),
            domain: Some(spec.domain.into()),
            input: spec.inputs.iter().map(|input| input.to_string()).collect(),
            output: vec![spec.output.to_string()],
            attribute: attrs.into_iter().map(Attr::proto).collect(),
            ..Default::default()
        });
    }

    /// The finished model, with `doc` as its description.
    pub fn finish(self, doc: &str) -> ModelProto {
        let graph = GraphProto {
            name: Some("yunmo".into()),
            node: self.nodes,
            initializer: self.initializers,
            input: self.inputs,
            output: self.outputs,
            ..Default::default()
        };
        let opset = |domain: &str, version: i64| OperatorSetIdProto { domain: Some(domain.into()), version: Some(version) };
        ModelProto {
            ir_version: Some(IR_VERSION),
            opset_import: vec![opset("", OPSET), opset("ai.onnx.ml", 3)],
            producer_name: Some("yunmo".into()),
            producer_version: Some(env!("CARGO_PKG_VERSION").into()),
            doc_string: Some(doc.into()),
            graph: Some(graph),
            ..Default::default()
        }
    }
}

struct NodeSpec<'a> {
    op: &'a str,
    domain: &'a str,
    inputs: &'a [&'a str],
    output: &'a str,
}
