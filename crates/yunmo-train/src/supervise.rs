//! The training run: split the rows, plan the features on the training rows, fit the family, evaluate on
//! the validation rows and export the graph.

use std::collections::BTreeMap;

use prost::Message;

use crate::dataset::{self, Feature, PlanSpec, Table};
use crate::export::{self, Head};
use crate::solvers::kmeans::{self, KMeansConfig};
use crate::solvers::logistic::{self, LogisticConfig};
use crate::solvers::matrix::Matrix;
use crate::solvers::mlp::{self, MlpConfig, MlpTask};
use crate::solvers::rng::Rng;
use crate::solvers::{Step, linear, metrics};
use crate::{Dataset, Family, Progress, TrainError, TrainParams, Trained};

/// Which rows train and which validate.
pub(crate) struct Split<'a> {
    pub(crate) table: &'a Table,
    pub(crate) train_rows: Vec<usize>,
    validation: &'a Table,
    validation_rows: Vec<usize>,
}

impl Split<'_> {
    pub(crate) fn validation_len(&self) -> usize {
        self.validation_rows.len()
    }

    /// The table the validation rows are in (the training file, or the validation file).
    pub(crate) fn validation_table(&self) -> &Table {
        self.validation
    }

    /// The validation rows of [`Split::validation_table`].
    pub(crate) fn validation_rows(&self) -> &[usize] {
        &self.validation_rows
    }
}

/// Shuffles the rows with the seed and holds out `validation_fraction` of them (at least one row when the
/// fraction is above 0), unless a validation file is given.
pub(crate) fn split<'a>(dataset: &Dataset<'a>, params: &TrainParams) -> Result<Split<'a>, TrainError> {
    let rows = dataset.table.rows.len();
    if let Some(validation) = dataset.validation {
        return Ok(Split {
            table: dataset.table,
            train_rows: (0..rows).collect(),
            validation,
            validation_rows: (0..validation.rows.len()).collect(),
        });
    }
    let fraction = params.validation_fraction.unwrap_or(0.2);
    let mut order: Vec<usize> = (0..rows).collect();
    Rng::new(params.seed).shuffle(&mut order);
    let held = if fraction > 0.0 { ((rows as f64 * fraction).round() as usize).max(1) } else { 0 };
    if held >= rows {
        return Err(TrainError::param("params.validation_fraction", format!("{fraction} of {rows} rows leaves none to train on")));
    }
    let mut validation_rows = order[..held].to_vec();
    let mut train_rows = order[held..].to_vec();
    validation_rows.sort_unstable();
    train_rows.sort_unstable();
    Ok(Split { table: dataset.table, train_rows, validation: dataset.table, validation_rows })
}

/// Solver steps as job progress between 10% and 90%.
fn stepper<'a>(progress: &'a mut dyn FnMut(Progress), what: &'a str) -> impl FnMut(Step) + 'a {
    move |step: Step| {
        let share = if step.total == 0 { 1.0 } else { f64::from(step.done) / f64::from(step.total) };
        progress(Progress { fraction: 0.1 + 0.8 * share, message: format!("{what} {}/{}", step.done, step.total), loss: Some(step.loss) })
    }
}

struct Prepared {
    plan: Vec<Feature>,
    train: Matrix,
    /// Validation rows, or the training rows again when none are held out.
    check: Matrix,
    check_rows: Vec<usize>,
    check_table_is_validation: bool,
}

fn prepare(split: &Split<'_>, params: &TrainParams) -> Result<Prepared, TrainError> {
    let excluded: Vec<String> = params.target.iter().cloned().collect();
    let spec =
        PlanSpec { features: params.features.as_deref(), excluded: &excluded, categorical: &params.categorical, encoding: params.encoding };
    let plan = dataset::plan_features(split.table, &spec, &split.train_rows)?;
    let train = dataset::design(split.table, &plan, &split.train_rows)?;
    let (check, check_rows, check_table_is_validation) = if split.validation_rows.is_empty() {
        (train.clone(), split.train_rows.clone(), false)
    } else {
        (dataset::design(split.validation, &plan, &split.validation_rows)?, split.validation_rows.clone(), true)
    };
    Ok(Prepared { plan, train, check, check_rows, check_table_is_validation })
}

fn named(metrics: Vec<(&str, f64)>, on_validation: bool) -> BTreeMap<String, f64> {
    let prefix = if on_validation { "" } else { "train_" };
    metrics.into_iter().map(|(name, value)| (format!("{prefix}{name}"), value)).collect()
}

pub(crate) fn fit(split: &Split<'_>, params: &TrainParams, progress: &mut dyn FnMut(Progress)) -> Result<Trained, TrainError> {
    let prepared = prepare(split, params)?;
    let check_table = if prepared.check_table_is_validation { split.validation } else { split.table };
    let doc = format!("Trained by Yunmo: {} on {} rows.", params.family.as_str(), split.train_rows.len());
    let (model, metrics, labels) = if params.family.classifies() {
        let target = split.table.column(params.target.as_deref().unwrap_or_default(), "params.target")?;
        let classes = dataset::classes(split.table, target, &split.train_rows)?;
        let train_labels = dataset::labels(split.table, target, &split.train_rows, &classes)?;
        let check_labels = dataset::labels(check_table, target, &prepared.check_rows, &classes)?;
        let (model, probabilities) = classify(&prepared, params, (&train_labels, classes.len()), progress)?;
        let model = match &model {
            Classifier::Logistic(linear) => export::tabular(&prepared.plan, Head::Logistic { model: linear, classes: &classes }, &doc),
            Classifier::Mlp(network) => export::tabular(&prepared.plan, Head::MlpClassifier { mlp: network, classes: &classes }, &doc),
        };
        let predicted: Vec<usize> = (0..probabilities.rows).map(|row| argmax(probabilities.row(row))).collect();
        let scores = vec![
            ("accuracy", metrics::accuracy(&check_labels, &predicted)),
            ("f1", metrics::f1(&check_labels, &predicted, classes.len())),
            ("roc_auc", metrics::roc_auc(&check_labels, &probabilities)),
            ("log_loss", metrics::log_loss(&check_labels, &probabilities)),
        ];
        (model, named(scores, prepared.check_table_is_validation), classes)
    } else if params.family == Family::Kmeans {
        let config = KMeansConfig {
            clusters: params.clusters.unwrap_or(8),
            max_iter: params.max_iter.unwrap_or(300),
            seed: params.seed,
            restarts: params.restarts.unwrap_or(4),
        };
        let model = kmeans::kmeans(&prepared.train, &config, &mut stepper(progress, "Lloyd iteration")).map_err(TrainError::Failed)?;
        let (_, distances) = kmeans::assign(&model, &prepared.check);
        let scores =
            vec![("inertia", model.inertia), ("mean_squared_distance", distances.iter().sum::<f64>() / distances.len().max(1) as f64)];
        (export::tabular(&prepared.plan, Head::KMeans(&model), &doc), named(scores, prepared.check_table_is_validation), Vec::new())
    } else {
        let target = split.table.column(params.target.as_deref().unwrap_or_default(), "params.target")?;
        let train_targets = dataset::numeric_target(split.table, target, &split.train_rows)?;
        let check_targets = dataset::numeric_target(check_table, target, &prepared.check_rows)?;
        let (model, predictions) = regress(&prepared, params, &train_targets, progress, &doc)?;
        let scores = vec![
            ("r2", metrics::r2(&check_targets, &predictions)),
            ("rmse", metrics::rmse(&check_targets, &predictions)),
            ("mae", metrics::mae(&check_targets, &predictions)),
        ];
        (model, named(scores, prepared.check_table_is_validation), Vec::new())
    };
    progress(Progress { fraction: 0.95, message: "Evaluated and exported.".into(), loss: None });
    Ok(Trained {
        onnx: model.encode_to_vec(),
        metrics,
        labels,
        features: prepared.plan,
        train_rows: split.train_rows.len(),
        validation_rows: if prepared.check_table_is_validation { prepared.check_rows.len() } else { 0 },
        known_values: BTreeMap::new(),
        extra: serde_json::Value::Null,
    })
}

enum Classifier {
    Logistic(crate::solvers::linear::Linear),
    Mlp(mlp::Mlp),
}

fn argmax(values: &[f64]) -> usize {
    values.iter().enumerate().fold(0, |best, (index, value)| if *value > values[best] { index } else { best })
}

fn softmax_rows(mut logits: Matrix) -> Matrix {
    for row in 0..logits.rows {
        let values = &mut logits.data[row * logits.cols..(row + 1) * logits.cols];
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mut sum = 0.0;
        for value in values.iter_mut() {
            *value = (*value - max).exp();
            sum += *value;
        }
        for value in values.iter_mut() {
            *value /= sum;
        }
    }
    logits
}

fn mlp_config(params: &TrainParams, rows: usize) -> MlpConfig {
    MlpConfig {
        hidden: params.hidden_layers.clone().unwrap_or_else(|| vec![100]),
        epochs: params.epochs.unwrap_or(200),
        learning_rate: params.learning_rate.unwrap_or(0.001),
        l2: params.l2.unwrap_or(1e-4),
        batch_size: params.batch_size.unwrap_or(rows.min(200)),
        seed: params.seed,
    }
}

fn classify(
    prepared: &Prepared,
    params: &TrainParams,
    (labels, n_classes): (&[usize], usize),
    progress: &mut dyn FnMut(Progress),
) -> Result<(Classifier, Matrix), TrainError> {
    if params.family == Family::LogisticRegression {
        let config = LogisticConfig { l2: params.l2.unwrap_or(1.0), max_iter: params.max_iter.unwrap_or(200), tolerance: 1e-6 };
        let model = logistic::logistic(&prepared.train, labels, n_classes, &config, &mut stepper(progress, "L-BFGS iteration"))
            .map_err(TrainError::Failed)?;
        let probabilities = logistic::probabilities(&model, &prepared.check);
        return Ok((Classifier::Logistic(model), probabilities));
    }
    let task = MlpTask::Classify { labels: labels.to_vec(), n_classes };
    let network = mlp::train_mlp(&prepared.train, &task, &mlp_config(params, labels.len()), &mut stepper(progress, "Epoch"))
        .map_err(TrainError::Failed)?;
    let probabilities = softmax_rows(network.forward(&prepared.check));
    Ok((Classifier::Mlp(network), probabilities))
}

fn regress(
    prepared: &Prepared,
    params: &TrainParams,
    targets: &[f64],
    progress: &mut dyn FnMut(Progress),
    doc: &str,
) -> Result<(yunmo_proto::onnx::ModelProto, Vec<f64>), TrainError> {
    if params.family == Family::LinearRegression {
        progress(Progress { fraction: 0.1, message: "Solving the normal equations.".into(), loss: None });
        let model = linear::ridge(&prepared.train, targets, params.l2.unwrap_or(1.0)).map_err(TrainError::Failed)?;
        let predictions = model.predict(&prepared.check).data;
        return Ok((export::tabular(&prepared.plan, Head::Regression(&model), doc), predictions));
    }
    let task = MlpTask::Regress { targets: targets.to_vec() };
    let network = mlp::train_mlp(&prepared.train, &task, &mlp_config(params, targets.len()), &mut stepper(progress, "Epoch"))
        .map_err(TrainError::Failed)?;
    let predictions = network.forward(&prepared.check).data;
    Ok((export::tabular(&prepared.plan, Head::MlpRegression(&network), doc), predictions))
}
