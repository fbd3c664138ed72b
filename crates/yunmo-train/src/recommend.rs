//! Recommenders from (user, item, rating) rows: biased matrix factorisation trained by SGD
//! ([`crate::solvers::factorise`]), evaluated by RMSE and MAE on the validation rows, exported as a graph
//! that answers a user's predicted rating of an item and the user's top-k items.
//!
//! The served version takes `user` and `item` (BYTES `[batch, 1]`, ids as written in the CSV) and answers
//! `rating` (FP32 `[batch, 1]`), `top_items` (BYTES `[batch, k]`) and `top_scores` (FP32 `[batch, k]`),
//! predictions clipped to the training ratings' range. Ids are checked against the training ids before
//! the graph runs (the version's `known_values`), so an unknown one is a 400 naming it.

use std::collections::{BTreeMap, HashMap};

use prost::Message;

use crate::dataset::Table;
use crate::graph::{Attr, Elem, GraphBuilder};
use crate::solvers::factorise::{self, FactorConfig, Factors, Rating};
use crate::solvers::{Step, metrics};
use crate::supervise::Split;
use crate::{Progress, TrainError, TrainParams, Trained};

/// Ids in order of first appearance in the training rows, and the index of each.
struct Ids {
    names: Vec<String>,
    index: HashMap<String, usize>,
}

impl Ids {
    fn new() -> Ids {
        Ids { names: Vec::new(), index: HashMap::new() }
    }

    fn add(&mut self, id: &str) -> usize {
        if let Some(&index) = self.index.get(id) {
            return index;
        }
        self.names.push(id.to_string());
        self.index.insert(id.to_string(), self.names.len() - 1);
        self.names.len() - 1
    }
}

struct Columns {
    user: usize,
    item: usize,
    rating: usize,
}

fn columns(table: &Table, params: &TrainParams) -> Result<Columns, TrainError> {
    Ok(Columns {
        user: table.column(params.user_column.as_deref().unwrap_or("user"), "params.user_column")?,
        item: table.column(params.item_column.as_deref().unwrap_or("item"), "params.item_column")?,
        rating: table.column(params.target.as_deref().unwrap_or("rating"), "params.target")?,
    })
}

pub(crate) fn fit(split: &Split<'_>, params: &TrainParams, progress: &mut dyn FnMut(Progress)) -> Result<Trained, TrainError> {
    let table = split.table;
    let at = columns(table, params)?;
    let (mut users, mut items) = (Ids::new(), Ids::new());
    let mut ratings = Vec::with_capacity(split.train_rows.len());
    let (mut low, mut high) = (f64::INFINITY, f64::NEG_INFINITY);
    for &row in &split.train_rows {
        let user = users.add(table.text(row, at.user)?);
        let item = items.add(table.text(row, at.item)?);
        let value = table.number(row, at.rating)?;
        low = low.min(value);
        high = high.max(value);
        ratings.push(Rating { user, item, value });
    }
    let config = FactorConfig {
        factors: params.factors.unwrap_or(100),
        epochs: params.epochs.unwrap_or(20),
        learning_rate: params.learning_rate.unwrap_or(0.005),
        l2: params.l2.unwrap_or(0.02),
        seed: params.seed,
        init_std: 0.1,
    };
    let mut report = |step: Step| {
        let share = if step.total == 0 { 1.0 } else { f64::from(step.done) / f64::from(step.total) };
        progress(Progress { fraction: 0.1 + 0.8 * share, message: format!("Epoch {}/{}", step.done, step.total), loss: Some(step.loss) })
    };
    let model = factorise::factorise(&ratings, users.names.len(), items.names.len(), &config, &mut report).map_err(TrainError::Failed)?;
    let (check, on_validation) = match split.validation_len() {
        0 => (split.table, false),
        _ => (split.validation_table(), true),
    };
    let check_rows = if on_validation { split.validation_rows() } else { &split.train_rows };
    let (mut truth, mut predicted, mut cold) = (Vec::new(), Vec::new(), 0usize);
    let check_at = columns(check, params)?;
    for &row in check_rows {
        let user = users.index.get(check.text(row, check_at.user)?).copied();
        let item = items.index.get(check.text(row, check_at.item)?).copied();
        truth.push(check.number(row, check_at.rating)?);
        predicted.push(match (user, item) {
            (Some(user), Some(item)) => model.predict_clipped(user, item, (low, high)),
            (user, item) => {
                cold += 1;
                let bias = user.map_or(0.0, |u| model.user_bias[u]) + item.map_or(0.0, |i| model.item_bias[i]);
                (model.global_mean + bias).clamp(low, high)
            }
        });
    }
    let prefix = if on_validation { "" } else { "train_" };
    let mut scores = BTreeMap::new();
    scores.insert(format!("{prefix}rmse"), metrics::rmse(&truth, &predicted));
    scores.insert(format!("{prefix}mae"), metrics::mae(&truth, &predicted));
    let mean = ratings.iter().map(|rating| rating.value).sum::<f64>() / ratings.len().max(1) as f64;
    scores.insert(format!("{prefix}rmse_of_the_mean"), metrics::rmse(&truth, &vec![mean; truth.len()]));
    let top_k = params.top_k.unwrap_or(10).min(items.names.len());
    let graph = export(&model, (&users.names, &items.names), top_k, (low, high));
    progress(Progress { fraction: 0.95, message: "Evaluated and exported.".into(), loss: None });
    let mut known_values = BTreeMap::new();
    known_values.insert("user".to_string(), users.names.clone());
    known_values.insert("item".to_string(), items.names.clone());
    Ok(Trained {
        onnx: graph.encode_to_vec(),
        metrics: scores,
        labels: Vec::new(),
        features: Vec::new(),
        train_rows: split.train_rows.len(),
        validation_rows: if on_validation { check_rows.len() } else { 0 },
        known_values,
        extra: serde_json::json!({ "users": users.names.len(), "items": items.names.len(), "cold_start_rows": cold, "top_k": top_k,
            "rating_range": [low, high] }),
    })
}

fn floats(values: &[f64]) -> Vec<f32> {
    values.iter().map(|&value| value as f32).collect()
}

/// The recommender's graph.
fn export(model: &Factors, (users, items): (&[String], &[String]), top_k: usize, (low, high): (f64, f64)) -> yunmo_proto::onnx::ModelProto {
    let mut graph = GraphBuilder::default();
    graph.input("user", Elem::Text, Some(1));
    graph.input("item", Elem::Text, Some(1));
    let index = |graph: &mut GraphBuilder, input: &str, keys: &[String]| {
        let values: Vec<i64> = (0..keys.len() as i64).collect();
        graph.ml_op(
            "LabelEncoder",
            &[input],
            vec![Attr::Strings("keys_strings", keys.to_vec()), Attr::Ints("values_int64s", values), Attr::Int("default_int64", 0)],
        )
    };
    let user = index(&mut graph, "user", users);
    let item = index(&mut graph, "item", items);
    let factors = model.user_factors.cols as i64;
    let user_factors = graph.floats("user_factors", &[users.len() as i64, factors], &floats(&model.user_factors.data));
    let item_factors_t = model.item_factors.transpose();
    let item_factors = graph.floats("item_factors", &[items.len() as i64, factors], &floats(&model.item_factors.data));
    let item_factors_by_column = graph.floats("item_factors_t", &[factors, items.len() as i64], &floats(&item_factors_t.data));
    let user_bias = graph.floats("user_bias", &[users.len() as i64], &floats(&model.user_bias));
    let item_bias = graph.floats("item_bias", &[items.len() as i64], &floats(&model.item_bias));
    let mean = graph.floats("global_mean", &[1], &[model.global_mean as f32]);
    let (low, high) = (graph.floats("low", &[], &[low as f32]), graph.floats("high", &[], &[high as f32]));
    let one = graph.ints("axis_one", &[1], &[1]);
    // [batch, 1] indices -> [batch] rows of factors and biases.
    let user_flat = graph.op("Squeeze", &[&user, &one], vec![]);
    let item_flat = graph.op("Squeeze", &[&item, &one], vec![]);
    let p = graph.op("Gather", &[&user_factors, &user_flat], vec![Attr::Int("axis", 0)]);
    let q = graph.op("Gather", &[&item_factors, &item_flat], vec![Attr::Int("axis", 0)]);
    let bu = graph.op("Gather", &[&user_bias, &user], vec![Attr::Int("axis", 0)]);
    let bi = graph.op("Gather", &[&item_bias, &item], vec![Attr::Int("axis", 0)]);
    // rating = mean + b_u + b_i + p·q, clipped.
    let product = graph.op("Mul", &[&p, &q], vec![]);
    let dot = graph.op("ReduceSum", &[&product, &one], vec![Attr::Int("keepdims", 1)]);
    let biases = graph.op("Add", &[&bu, &bi], vec![]);
    let centred = graph.op("Add", &[&biases, &dot], vec![]);
    let raw = graph.op("Add", &[&centred, &mean], vec![]);
    graph.op_into("Clip", &[&raw, &low, &high], "rating", vec![]);
    graph.output("rating", Elem::F32, Some(1));
    // Every item's score for the user, then the top k.
    let all = graph.op("MatMul", &[&p, &item_factors_by_column], vec![]);
    let with_items = graph.op("Add", &[&all, &item_bias], vec![]);
    let with_user = graph.op("Add", &[&with_items, &bu], vec![]);
    let scores = graph.op("Add", &[&with_user, &mean], vec![]);
    let k = graph.ints("k", &[1], &[top_k as i64]);
    let top = graph.fresh("top_values");
    let top_index = graph.fresh("top_indices");
    graph.op_multi(
        "TopK",
        &[&scores, &k],
        &[&top, &top_index],
        vec![Attr::Int("axis", 1), Attr::Int("largest", 1), Attr::Int("sorted", 1)],
    );
    graph.op_into("Clip", &[&top, &low, &high], "top_scores", vec![]);
    graph.output("top_scores", Elem::F32, Some(top_k as i64));
    let names = graph.strings("item_ids", items);
    graph.op_into("Gather", &[&names, &top_index], "top_items", vec![Attr::Int("axis", 0)]);
    graph.output("top_items", Elem::Text, Some(top_k as i64));
    graph.finish("Trained by Yunmo: matrix_factorization.")
}
