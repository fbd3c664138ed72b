//! ONNX graphs of trained tabular models. Clients send raw column values: each feature column is an input
//! of shape `[batch, 1]` named after it (FP32 for numbers, BYTES for categories); the graph standardises
//! the numbers and encodes the categories as they were in training, then applies the model.
//!
//! Outputs: regressions `prediction` (FP32 `[batch, 1]`); classifiers `probabilities` (FP32
//! `[batch, classes]`, classes in the version's `labels` order) and `label` (BYTES `[batch, 1]`, the class
//! as written in the CSV); k-means `cluster` (INT64 `[batch, 1]`) and `distances` (FP32 squared distances
//! to each centroid, `[batch, clusters]`).

use yunmo_proto::onnx::ModelProto;

use crate::dataset::{Encoding, Feature};
use crate::graph::{Attr, Elem, GraphBuilder};
use crate::solvers::kmeans::KMeans;
use crate::solvers::linear::Linear;
use crate::solvers::matrix::Matrix;
use crate::solvers::mlp::Mlp;

/// What follows the encoded features.
pub enum Head<'a> {
    /// A linear regression.
    Regression(&'a Linear),
    /// A logistic regression (one column: binary; several: multinomial).
    Logistic {
        /// Weights over the encoded features.
        model: &'a Linear,
        /// Class labels by index.
        classes: &'a [String],
    },
    /// An MLP regressor.
    MlpRegression(&'a Mlp),
    /// An MLP classifier (softmax over its last layer).
    MlpClassifier {
        /// The network.
        mlp: &'a Mlp,
        /// Class labels by index.
        classes: &'a [String],
    },
    /// K-means cluster assignment.
    KMeans(&'a KMeans),
}

fn to_f32(values: &[f64]) -> Vec<f32> {
    values.iter().map(|&value| value as f32).collect()
}

/// The model's graph for `plan`'s inputs.
pub fn tabular(plan: &[Feature], head: Head<'_>, doc: &str) -> ModelProto {
    let mut graph = GraphBuilder::default();
    let features = encode(&mut graph, plan);
    match head {
        Head::Regression(linear) => {
            let prediction = dense(&mut graph, &features, linear);
            graph.op_into("Identity", &[&prediction], "prediction", vec![]);
            graph.output("prediction", Elem::F32, Some(1));
        }
        Head::Logistic { model, classes } => {
            let logits = dense(&mut graph, &features, model);
            if model.bias.len() == 1 {
                let positive = graph.op("Sigmoid", &[&logits], vec![]);
                let one = graph.floats("one", &[1], &[1.0]);
                let negative = graph.op("Sub", &[&one, &positive], vec![]);
                graph.op_into("Concat", &[&negative, &positive], "probabilities", vec![Attr::Int("axis", 1)]);
            } else {
                graph.op_into("Softmax", &[&logits], "probabilities", vec![Attr::Int("axis", 1)]);
            }
            class_outputs(&mut graph, classes);
        }
        Head::MlpRegression(mlp) => {
            let prediction = network(&mut graph, &features, mlp);
            graph.op_into("Identity", &[&prediction], "prediction", vec![]);
            graph.output("prediction", Elem::F32, Some(1));
        }
        Head::MlpClassifier { mlp, classes } => {
            let logits = network(&mut graph, &features, mlp);
            graph.op_into("Softmax", &[&logits], "probabilities", vec![Attr::Int("axis", 1)]);
            class_outputs(&mut graph, classes);
        }
        Head::KMeans(model) => clusters(&mut graph, &features, &model.centroids),
    }
    graph.finish(doc)
}

/// Declares the inputs and returns the name of the encoded `[batch, width]` FP32 tensor.
fn encode(graph: &mut GraphBuilder, plan: &[Feature]) -> String {
    let mut pieces = Vec::with_capacity(plan.len());
    for feature in plan {
        match feature {
            Feature::Numeric { name, mean, scale } => {
                graph.input(name, Elem::F32, Some(1));
                let mean = graph.floats("mean", &[1], &[*mean as f32]);
                let scale = graph.floats("scale", &[1], &[*scale as f32]);
                let centred = graph.op("Sub", &[name, &mean], vec![]);
                pieces.push(graph.op("Div", &[&centred, &scale], vec![]));
            }
            Feature::Categorical { name, categories, encoding: Encoding::OneHot } => {
                graph.input(name, Elem::Text, Some(1));
                let known = graph.strings("categories", categories);
                let equal = graph.op("Equal", &[name, &known], vec![]);
                pieces.push(graph.op("Cast", &[&equal], vec![Attr::Int("to", 1)]));
            }
            Feature::Categorical { name, categories, encoding: Encoding::Index } => {
                graph.input(name, Elem::Text, Some(1));
                let indices: Vec<f32> = (0..categories.len()).map(|index| index as f32).collect();
                pieces.push(graph.ml_op(
                    "LabelEncoder",
                    &[name],
                    vec![
                        Attr::Strings("keys_strings", categories.clone()),
                        Attr::Floats("values_floats", indices),
                        Attr::Float("default_float", -1.0),
                    ],
                ));
            }
        }
    }
    if pieces.len() == 1 {
        return pieces.remove(0);
    }
    let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
    graph.op("Concat", &refs, vec![Attr::Int("axis", 1)])
}

fn dense(graph: &mut GraphBuilder, input: &str, layer: &Linear) -> String {
    let weights = graph.floats("weights", &[layer.weights.rows as i64, layer.weights.cols as i64], &to_f32(&layer.weights.data));
    let bias = graph.floats("bias", &[layer.bias.len() as i64], &to_f32(&layer.bias));
    let product = graph.op("MatMul", &[input, &weights], vec![]);
    graph.op("Add", &[&product, &bias], vec![])
}

fn network(graph: &mut GraphBuilder, input: &str, mlp: &Mlp) -> String {
    let mut current = input.to_string();
    for (index, layer) in mlp.layers.iter().enumerate() {
        current = dense(graph, &current, layer);
        if index + 1 < mlp.layers.len() {
            current = graph.op("Relu", &[&current], vec![]);
        }
    }
    current
}

fn class_outputs(graph: &mut GraphBuilder, classes: &[String]) {
    graph.output("probabilities", Elem::F32, Some(classes.len() as i64));
    let index = graph.op("ArgMax", &["probabilities"], vec![Attr::Int("axis", 1), Attr::Int("keepdims", 1)]);
    let labels = graph.strings("classes", classes);
    graph.op_into("Gather", &[&labels, &index], "label", vec![Attr::Int("axis", 0)]);
    graph.output("label", Elem::Text, Some(1));
}

/// Squared distances `|x|² - 2 x·c + |c|²` to each centroid and the nearest one.
fn clusters(graph: &mut GraphBuilder, features: &str, centroids: &Matrix) {
    let squares = graph.op("Mul", &[features, features], vec![]);
    let axes = graph.ints("axes", &[1], &[1]);
    let norms = graph.op("ReduceSum", &[&squares, &axes], vec![Attr::Int("keepdims", 1)]);
    let transposed = centroids.transpose();
    let centres = graph.floats("centroids", &[transposed.rows as i64, transposed.cols as i64], &to_f32(&transposed.data));
    let cross = graph.op("MatMul", &[features, &centres], vec![]);
    let minus_two = graph.floats("minus_two", &[1], &[-2.0]);
    let scaled = graph.op("Mul", &[&cross, &minus_two], vec![]);
    let centre_norms: Vec<f64> = (0..centroids.rows).map(|row| centroids.row(row).iter().map(|v| v * v).sum()).collect();
    let centre_norms = graph.floats("centroid_norms", &[centroids.rows as i64], &to_f32(&centre_norms));
    let partial = graph.op("Add", &[&scaled, &norms], vec![]);
    let distances = graph.op("Add", &[&partial, &centre_norms], vec![]);
    graph.op_into("Relu", &[&distances], "distances", vec![]);
    graph.output("distances", Elem::F32, Some(centroids.rows as i64));
    graph.op_into("ArgMin", &["distances"], "cluster", vec![Attr::Int("axis", 1), Attr::Int("keepdims", 1)]);
    graph.output("cluster", Elem::I64, Some(1));
}
