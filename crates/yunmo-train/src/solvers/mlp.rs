//! A multi-layer perceptron (dense layers, ReLU) trained by mini-batch Adam, as scikit-learn's
//! `MLPClassifier` / `MLPRegressor` with `solver = "adam"`, and structured pruning of its hidden units.
//!
//! Loss per mini-batch (what is differentiated and what the [`Step`]s report, averaged over the epoch
//! weighted by batch size, as scikit-learn's `loss_curve_`):
//! - classification: mean softmax cross-entropy over the batch (binary problems also use 2 logits);
//! - regression: mean squared error / 2;
//!
//! plus `0.5 · l2 · Σ||W||² / batch_len`, scikit-learn's `alpha` semantics: weight decay on the weights,
//! never on the biases. Training is deterministic for a seed: [`Rng`] draws the Glorot-uniform initial
//! weights (biases start at zero) and then shuffles the rows before every epoch.

use super::linear::Linear;
use super::logistic::{log_sum_exp, softmax_in_place};
use super::matrix::Matrix;
use super::rng::Rng;
use super::{Step, check_non_negative, check_positive, should_report};

/// What the network learns.
#[derive(Clone, Debug)]
pub enum MlpTask {
    /// Classes `0..n_classes`, one per row; the network has `n_classes` logits.
    Classify {
        /// The class of each row.
        labels: Vec<usize>,
        /// Number of classes (at least 2).
        n_classes: usize,
    },
    /// One real target per row; the network has one output.
    Regress {
        /// The target of each row.
        targets: Vec<f64>,
    },
}

/// Architecture and optimiser settings for [`train_mlp`].
#[derive(Clone, Debug)]
pub struct MlpConfig {
    /// Width of each hidden layer (each > 0); empty gives a linear model.
    pub hidden: Vec<usize>,
    /// Passes over the data (> 0).
    pub epochs: u32,
    /// Adam's step size (> 0).
    pub learning_rate: f64,
    /// Weight decay, scikit-learn's `alpha` (>= 0).
    pub l2: f64,
    /// Rows per mini-batch (> 0; more than the number of rows means full batch).
    pub batch_size: usize,
    /// Seed of the initial weights and the shuffles.
    pub seed: u64,
}

impl Default for MlpConfig {
    /// scikit-learn's defaults: one hidden layer of 100, 200 epochs, learning rate 0.001, alpha 0.0001,
    /// batches of 200.
    fn default() -> Self {
        MlpConfig { hidden: vec![100], epochs: 200, learning_rate: 0.001, l2: 0.0001, batch_size: 200, seed: 0 }
    }
}

/// Dense layers: ReLU after every hidden layer; the last layer is linear (regression: 1 output;
/// classification: n_classes logits, softmax cross-entropy; binary also uses 2 logits).
#[derive(Clone, Debug)]
pub struct Mlp {
    /// The layers in order; layer `l`'s weights are `inputs × outputs`.
    pub layers: Vec<Linear>,
}

impl Mlp {
    /// The last layer's raw outputs (logits or the regression value), `n × outputs`.
    ///
    /// # Panics
    /// When `x` does not have one column per network input.
    pub fn forward(&self, x: &Matrix) -> Matrix {
        let Some((first, rest)) = self.layers.split_first() else {
            return x.clone();
        };
        let mut activations = first.predict(x);
        for layer in rest {
            relu_in_place(&mut activations.data);
            activations = layer.predict(&activations);
        }
        activations
    }

    /// Class probabilities (the softmax of [`Mlp::forward`]) for a classification network.
    ///
    /// # Panics
    /// As [`Mlp::forward`].
    pub fn probabilities(&self, x: &Matrix) -> Matrix {
        let mut outputs = self.forward(x);
        for i in 0..outputs.rows {
            softmax_in_place(outputs.row_mut(i));
        }
        outputs
    }

    /// Number of hidden layers (layers minus one).
    pub fn n_hidden_layers(&self) -> usize {
        self.layers.len().saturating_sub(1)
    }
}

/// Adam's decay of the first moment.
const BETA1: f64 = 0.9;
/// Adam's decay of the second moment.
const BETA2: f64 = 0.999;
/// Adam's denominator guard.
const ADAM_EPSILON: f64 = 1e-8;

/// Trains an [`Mlp`] on `x` (rows are samples, features standardised) for `task`.
///
/// One [`Step`] per epoch (every k-th epoch beyond 100 epochs) with the epoch's mean batch loss (see the
/// module docs). Fails, naming the field and value, on an invalid config or task, and when the loss stops
/// being finite (learning rate too large).
pub fn train_mlp(x: &Matrix, task: &MlpTask, config: &MlpConfig, progress: &mut dyn FnMut(Step)) -> Result<Mlp, String> {
    validate_config(config)?;
    validate_task(x, task)?;
    let n_outputs = match task {
        MlpTask::Classify { n_classes, .. } => *n_classes,
        MlpTask::Regress { .. } => 1,
    };
    let mut rng = Rng::new(config.seed);
    let mut sizes = vec![x.cols];
    sizes.extend_from_slice(&config.hidden);
    sizes.push(n_outputs);
    let mut mlp = Mlp { layers: sizes.windows(2).map(|pair| glorot_uniform_layer(pair[0], pair[1], &mut rng)).collect() };
    let mut optimiser = Adam::new(&mlp, config.learning_rate);
    let mut gradients = mlp.layers.clone();
    let batch_size = config.batch_size.min(x.rows);
    let mut order: Vec<usize> = (0..x.rows).collect();
    for epoch in 1..=config.epochs {
        rng.shuffle(&mut order);
        let mut weighted_loss = 0.0;
        for batch_rows in order.chunks(batch_size) {
            let batch = Batch { x, task, rows: batch_rows };
            let batch_loss = batch_gradients(&mlp, &batch, config.l2, &mut gradients);
            weighted_loss += batch_loss * batch_rows.len() as f64;
            optimiser.update(&mut mlp, &gradients);
        }
        let epoch_loss = weighted_loss / x.rows as f64;
        if !epoch_loss.is_finite() {
            return Err(format!(
                "training diverged in epoch {epoch}: the loss is {epoch_loss}; lower learning_rate (now {})",
                config.learning_rate
            ));
        }
        if should_report(epoch, config.epochs) {
            progress(Step { done: epoch, total: config.epochs, loss: epoch_loss });
        }
    }
    Ok(mlp)
}

/// Removes hidden units of hidden layer `layer` (0-based: the outputs of `mlp.layers[layer]`), keeping the
/// units `keep` in that order: drops the other columns of that layer's weights and biases and the matching
/// rows of the next layer's weights. Fails when `layer` is not a hidden layer, or `keep` is empty, names a
/// unit that does not exist, or names one twice.
pub fn prune_hidden(mlp: &Mlp, layer: usize, keep: &[usize]) -> Result<Mlp, String> {
    let n_hidden = mlp.n_hidden_layers();
    if layer >= n_hidden {
        return Err(format!("layer {layer} is not a hidden layer; the network has {n_hidden} hidden layers"));
    }
    let pruned_layer = &mlp.layers[layer];
    let width = pruned_layer.weights.cols;
    if keep.is_empty() {
        return Err(format!("keep is empty; at least one of the {width} units of hidden layer {layer} must stay"));
    }
    let mut seen = vec![false; width];
    for &unit in keep {
        if unit >= width {
            return Err(format!("keep names unit {unit} but hidden layer {layer} has {width} units"));
        }
        if std::mem::replace(&mut seen[unit], true) {
            return Err(format!("keep names unit {unit} twice"));
        }
    }
    let mut kept_weights = Matrix::zeros(pruned_layer.weights.rows, keep.len());
    for i in 0..pruned_layer.weights.rows {
        let source_row = pruned_layer.weights.row(i);
        for (target, &unit) in kept_weights.row_mut(i).iter_mut().zip(keep) {
            *target = source_row[unit];
        }
    }
    let kept_bias = keep.iter().map(|&unit| pruned_layer.bias[unit]).collect();
    let next_layer = &mlp.layers[layer + 1];
    let mut layers = mlp.layers.clone();
    layers[layer] = Linear { weights: kept_weights, bias: kept_bias };
    layers[layer + 1] = Linear { weights: next_layer.weights.select_rows(keep), bias: next_layer.bias.clone() };
    Ok(Mlp { layers })
}

/// For each unit of hidden layer `layer`: the L2 norm of its outgoing weights times the L2 norm of its
/// incoming weights (biases excluded), the score for structured pruning (a unit scoring 0 can go without
/// changing anything when its outgoing weights are zero). Empty when `layer` is not a hidden layer.
pub fn unit_importance(mlp: &Mlp, layer: usize) -> Vec<f64> {
    if layer >= mlp.n_hidden_layers() {
        return Vec::new();
    }
    let incoming = &mlp.layers[layer].weights;
    let outgoing = &mlp.layers[layer + 1].weights;
    (0..incoming.cols)
        .map(|unit| {
            let incoming_norm = (0..incoming.rows).map(|i| incoming.get(i, unit).powi(2)).sum::<f64>().sqrt();
            let outgoing_norm = outgoing.row(unit).iter().map(|weight| weight * weight).sum::<f64>().sqrt();
            incoming_norm * outgoing_norm
        })
        .collect()
}

/// Sets negative values (and NaN) to zero.
fn relu_in_place(values: &mut [f64]) {
    for value in values {
        if value.is_nan() || *value <= 0.0 {
            *value = 0.0;
        }
    }
}

/// A layer with Glorot-uniform weights in `±sqrt(6 / (inputs + outputs))`, drawn row by row, and zero biases.
fn glorot_uniform_layer(n_inputs: usize, n_outputs: usize, rng: &mut Rng) -> Linear {
    let limit = (6.0 / (n_inputs + n_outputs) as f64).sqrt();
    let mut weights = Matrix::zeros(n_inputs, n_outputs);
    for weight in &mut weights.data {
        *weight = (2.0 * rng.next_f64() - 1.0) * limit;
    }
    Linear { weights, bias: vec![0.0; n_outputs] }
}

/// Checks the config, naming the field and value at fault.
fn validate_config(config: &MlpConfig) -> Result<(), String> {
    if let Some(position) = config.hidden.iter().position(|&width| width == 0) {
        return Err(format!("hidden[{position}] must be > 0, got 0"));
    }
    if config.epochs == 0 {
        return Err("epochs must be > 0, got 0".to_string());
    }
    if config.batch_size == 0 {
        return Err("batch_size must be > 0, got 0".to_string());
    }
    check_positive("learning_rate", config.learning_rate)?;
    check_non_negative("l2", config.l2)
}

/// Checks the data against the task, naming the field and value at fault.
fn validate_task(x: &Matrix, task: &MlpTask) -> Result<(), String> {
    x.validate("x")?;
    if x.rows == 0 {
        return Err("x has no rows; training needs samples".to_string());
    }
    match task {
        MlpTask::Classify { labels, n_classes } => {
            if *n_classes < 2 {
                return Err(format!("n_classes must be at least 2, got {n_classes}"));
            }
            if labels.len() != x.rows {
                return Err(format!("labels has {} values but x has {} rows", labels.len(), x.rows));
            }
            if let Some(position) = labels.iter().position(|label| label >= n_classes) {
                return Err(format!("labels[{position}] is {} but n_classes is {n_classes}; labels must be < n_classes", labels[position]));
            }
        }
        MlpTask::Regress { targets } => {
            if targets.len() != x.rows {
                return Err(format!("targets has {} values but x has {} rows", targets.len(), x.rows));
            }
            if let Some(position) = targets.iter().position(|target| !target.is_finite()) {
                return Err(format!("targets[{position}] is {}; every target must be finite", targets[position]));
            }
        }
    }
    Ok(())
}

/// The rows of one mini-batch and what they are to learn.
struct Batch<'a> {
    x: &'a Matrix,
    task: &'a MlpTask,
    /// Row indices into `x` and the task's labels or targets.
    rows: &'a [usize],
}

/// The batch loss (see the module docs) at `mlp`'s weights; writes its gradient, layer by layer, into
/// `gradients` (shaped like `mlp.layers`).
fn batch_gradients(mlp: &Mlp, batch: &Batch<'_>, l2: f64, gradients: &mut [Linear]) -> f64 {
    let n_layers = mlp.layers.len();
    let batch_len = batch.rows.len() as f64;
    // activations[l] is the input of layer l (after ReLU for l > 0).
    let mut activations = Vec::with_capacity(n_layers + 1);
    activations.push(batch.x.select_rows(batch.rows));
    for (layer_idx, layer) in mlp.layers.iter().enumerate() {
        let mut outputs = layer.predict(&activations[layer_idx]);
        if layer_idx + 1 < n_layers {
            relu_in_place(&mut outputs.data);
        }
        activations.push(outputs);
    }
    let mut delta = activations.pop().expect("the input is always among the activations. This is a bug.");
    // Turn the outputs into d (batch loss) / d output.
    let mut data_loss = 0.0;
    for (batch_idx, &row_idx) in batch.rows.iter().enumerate() {
        let outputs = delta.row_mut(batch_idx);
        match batch.task {
            MlpTask::Classify { labels, .. } => {
                let label = labels[row_idx];
                data_loss += log_sum_exp(outputs) - outputs[label];
                softmax_in_place(outputs);
                outputs[label] -= 1.0;
            }
            MlpTask::Regress { targets } => {
                let difference = outputs[0] - targets[row_idx];
                data_loss += 0.5 * difference * difference;
                outputs[0] = difference;
            }
        }
        for value in outputs.iter_mut() {
            *value /= batch_len;
        }
    }
    let mut squared_weights = 0.0;
    for layer_idx in (0..n_layers).rev() {
        let layer = &mlp.layers[layer_idx];
        let layer_input = &activations[layer_idx];
        let gradient = &mut gradients[layer_idx];
        gradient.weights = layer_input.transpose_matmul(&delta);
        for (gradient_value, weight) in gradient.weights.data.iter_mut().zip(&layer.weights.data) {
            *gradient_value += l2 * weight / batch_len;
            squared_weights += weight * weight;
        }
        gradient.bias.iter_mut().for_each(|value| *value = 0.0);
        for i in 0..delta.rows {
            for (bias_gradient, value) in gradient.bias.iter_mut().zip(delta.row(i)) {
                *bias_gradient += value;
            }
        }
        if layer_idx > 0 {
            let mut previous_delta = delta.matmul_transpose(&layer.weights);
            for (value, activation) in previous_delta.data.iter_mut().zip(&layer_input.data) {
                if *activation <= 0.0 {
                    *value = 0.0;
                }
            }
            delta = previous_delta;
        }
    }
    data_loss / batch_len + 0.5 * l2 * squared_weights / batch_len
}

/// Adam's first and second moment estimates for one block of parameters.
struct Moments {
    first: Vec<f64>,
    second: Vec<f64>,
}

impl Moments {
    fn zeros(len: usize) -> Moments {
        Moments { first: vec![0.0; len], second: vec![0.0; len] }
    }
}

/// The Adam optimiser in scikit-learn's form: `θ -= lr · sqrt(1 - β2^t) / (1 - β1^t) · m / (sqrt(v) + ε)`.
struct Adam {
    learning_rate: f64,
    /// `β1^t` and `β2^t`, kept as running products (bit-identical everywhere, unlike `powf`).
    beta1_power: f64,
    beta2_power: f64,
    /// Two blocks per layer: its weights, then its biases.
    moments: Vec<Moments>,
}

impl Adam {
    fn new(mlp: &Mlp, learning_rate: f64) -> Adam {
        let moments =
            mlp.layers.iter().flat_map(|layer| [Moments::zeros(layer.weights.data.len()), Moments::zeros(layer.bias.len())]).collect();
        Adam { learning_rate, beta1_power: 1.0, beta2_power: 1.0, moments }
    }

    /// One step against `gradients` (shaped like `mlp.layers`).
    fn update(&mut self, mlp: &mut Mlp, gradients: &[Linear]) {
        self.beta1_power *= BETA1;
        self.beta2_power *= BETA2;
        let step_size = self.learning_rate * (1.0 - self.beta2_power).sqrt() / (1.0 - self.beta1_power);
        let mut moments = self.moments.iter_mut();
        for (layer, gradient) in mlp.layers.iter_mut().zip(gradients) {
            let blocks = [(&mut layer.weights.data, &gradient.weights.data), (&mut layer.bias, &gradient.bias)];
            for (parameters, parameter_gradients) in blocks {
                let block = moments.next().expect("Adam holds two moment blocks per layer. This is a bug.");
                adam_step(parameters, parameter_gradients, block, step_size);
            }
        }
    }
}

/// Updates one block of parameters and its moments.
fn adam_step(parameters: &mut [f64], gradients: &[f64], moments: &mut Moments, step_size: f64) {
    let moment_pairs = moments.first.iter_mut().zip(moments.second.iter_mut());
    for ((parameter, gradient), (first, second)) in parameters.iter_mut().zip(gradients).zip(moment_pairs) {
        *first = BETA1 * *first + (1.0 - BETA1) * gradient;
        *second = BETA2 * *second + (1.0 - BETA2) * gradient * gradient;
        *parameter -= step_size * *first / (second.sqrt() + ADAM_EPSILON);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::solvers::test_support::close;

    /// 2 inputs, 3 hidden units, 2 outputs; hidden unit 1 has all-zero outgoing weights.
    fn hand_made_network() -> Mlp {
        let hidden = Linear { weights: Matrix::from_rows(&[vec![1.0, -1.0, 0.5], vec![2.0, 0.5, -1.0]]), bias: vec![0.1, 0.2, -0.3] };
        let output = Linear { weights: Matrix::from_rows(&[vec![1.0, 2.0], vec![0.0, 0.0], vec![-1.0, 0.5]]), bias: vec![0.05, -0.05] };
        Mlp { layers: vec![hidden, output] }
    }

    fn accuracy(mlp: &Mlp, x: &Matrix, labels: &[usize]) -> usize {
        let outputs = mlp.forward(x);
        (0..x.rows).filter(|&i| crate::solvers::logistic::argmax(outputs.row(i)) == labels[i]).count()
    }

    #[test]
    fn forward_matches_a_hand_computation() {
        // x = [1, 1]: hidden pre-activations [3.1, -0.3, -0.8], after ReLU [3.1, 0, 0];
        // outputs [3.1 · 1 + 0.05, 3.1 · 2 - 0.05] = [3.15, 6.15].
        let outputs = hand_made_network().forward(&Matrix::from_rows(&[vec![1.0, 1.0]]));
        assert!(close(outputs.get(0, 0), 3.15, 1e-12) && close(outputs.get(0, 1), 6.15, 1e-12), "{outputs:?}");
    }

    #[test]
    fn pruning_a_unit_without_outgoing_weights_changes_nothing() {
        let network = hand_made_network();
        let pruned = prune_hidden(&network, 0, &[0, 2]).unwrap();
        assert_eq!((pruned.layers[0].weights.rows, pruned.layers[0].weights.cols), (2, 2));
        assert_eq!(pruned.layers[0].bias, vec![0.1, -0.3]);
        assert_eq!((pruned.layers[1].weights.rows, pruned.layers[1].weights.cols), (2, 2));
        // Inputs chosen so that unit 1 is active for some of them (its output is then dropped harmlessly).
        let x = Matrix::from_rows(&[vec![1.0, 1.0], vec![-2.0, 3.0], vec![0.5, -1.5], vec![-1.0, -1.0]]);
        assert_eq!(network.forward(&x), pruned.forward(&x));
        // Dropping unit 0, which does carry signal, changes the outputs.
        let damaged = prune_hidden(&network, 0, &[1, 2]).unwrap();
        assert_ne!(network.forward(&x), damaged.forward(&x));
    }

    #[test]
    fn pruning_rejects_bad_requests() {
        let network = hand_made_network();
        assert!(prune_hidden(&network, 1, &[0]).unwrap_err().contains("not a hidden layer"));
        assert!(prune_hidden(&network, 0, &[3]).unwrap_err().contains("unit 3"));
        assert!(prune_hidden(&network, 0, &[0, 0]).unwrap_err().contains("twice"));
        assert!(prune_hidden(&network, 0, &[]).unwrap_err().contains("empty"));
    }

    #[test]
    fn unit_importance_is_the_product_of_norms() {
        // Unit 0: |in| = sqrt(1 + 4), |out| = sqrt(1 + 4), product 5. Unit 1: |out| = 0.
        // Unit 2: |in| = sqrt(0.25 + 1), |out| = sqrt(1 + 0.25), product 1.25.
        let importance = unit_importance(&hand_made_network(), 0);
        assert_eq!(importance.len(), 3);
        assert!(close(importance[0], 5.0, 1e-12) && importance[1] == 0.0 && close(importance[2], 1.25, 1e-12), "{importance:?}");
        assert!(unit_importance(&hand_made_network(), 1).is_empty());
    }

    fn random_network(sizes: &[usize], rng: &mut Rng) -> Mlp {
        let layers = sizes
            .windows(2)
            .map(|pair| {
                let mut layer = glorot_uniform_layer(pair[0], pair[1], rng);
                for bias in &mut layer.bias {
                    *bias = 0.1 * rng.normal();
                }
                layer
            })
            .collect();
        Mlp { layers }
    }

    fn check_gradient(task: &MlpTask, n_outputs: usize) {
        let mut rng = Rng::new(21);
        let mut x = Matrix::zeros(6, 3);
        for value in &mut x.data {
            *value = rng.normal();
        }
        let mut network = random_network(&[3, 4, 3, n_outputs], &mut rng);
        let rows = [0, 2, 3, 5];
        let batch = Batch { x: &x, task, rows: &rows };
        let l2 = 0.2;
        let mut gradients = network.layers.clone();
        batch_gradients(&network, &batch, l2, &mut gradients);
        let mut scratch = network.layers.clone();
        let step = 1e-6;
        for layer_idx in 0..network.layers.len() {
            let n_weights = network.layers[layer_idx].weights.data.len();
            for param_idx in 0..n_weights + network.layers[layer_idx].bias.len() {
                let analytic = if param_idx < n_weights {
                    gradients[layer_idx].weights.data[param_idx]
                } else {
                    gradients[layer_idx].bias[param_idx - n_weights]
                };
                let mut loss_at = |offset: f64, network: &mut Mlp| {
                    let layer = &mut network.layers[layer_idx];
                    let parameter =
                        if param_idx < n_weights { &mut layer.weights.data[param_idx] } else { &mut layer.bias[param_idx - n_weights] };
                    *parameter += offset;
                    let loss = batch_gradients(network, &batch, l2, &mut scratch);
                    let layer = &mut network.layers[layer_idx];
                    let parameter =
                        if param_idx < n_weights { &mut layer.weights.data[param_idx] } else { &mut layer.bias[param_idx - n_weights] };
                    *parameter -= offset;
                    loss
                };
                let numeric = (loss_at(step, &mut network) - loss_at(-step, &mut network)) / (2.0 * step);
                assert!(close(numeric, analytic, 1e-6), "layer {layer_idx} param {param_idx}: numeric {numeric}, analytic {analytic}");
            }
        }
    }

    #[test]
    fn classification_gradient_matches_finite_differences() {
        let task = MlpTask::Classify { labels: vec![0, 1, 2, 1, 0, 2], n_classes: 3 };
        check_gradient(&task, 3);
    }

    #[test]
    fn regression_gradient_matches_finite_differences() {
        let task = MlpTask::Regress { targets: vec![0.5, -1.0, 2.0, 0.0, 1.5, -0.5] };
        check_gradient(&task, 1);
    }

    #[test]
    fn learns_xor() {
        // XOR on {-1, 1}²: not linearly separable, so this needs the hidden layer.
        let x = Matrix::from_rows(&[vec![-1.0, -1.0], vec![-1.0, 1.0], vec![1.0, -1.0], vec![1.0, 1.0]]);
        let labels = vec![0, 1, 1, 0];
        let task = MlpTask::Classify { labels: labels.clone(), n_classes: 2 };
        let config = MlpConfig { hidden: vec![16], epochs: 300, learning_rate: 0.05, l2: 0.0, batch_size: 4, seed: 0 };
        let mut reports = Vec::new();
        let network = train_mlp(&x, &task, &config, &mut |step| reports.push(step)).unwrap();
        assert_eq!(accuracy(&network, &x, &labels), 4);
        // 300 epochs report every third. A reference port of this trainer goes from about 0.41 after
        // epoch 3 to about 4e-5 after epoch 300.
        let (first, last) = (reports.first().unwrap(), reports.last().unwrap());
        assert_eq!(first.done, 3);
        assert!(last.loss < 0.01 && first.loss > 0.2, "{first:?} {last:?}");
        assert_eq!((last.done, last.total), (300, 300));
        assert!(reports.len() <= 101);
        let probabilities = network.probabilities(&x);
        assert!(close(probabilities.get(0, 0) + probabilities.get(0, 1), 1.0, 1e-12));
    }

    #[test]
    fn separates_three_far_clusters() {
        let centres = [(-5.0, 0.0), (5.0, 0.0), (0.0, 5.0)];
        let offsets = [(0.0, 0.0), (0.5, 0.3), (-0.4, 0.2), (0.1, -0.5), (-0.3, -0.3)];
        let mut rows = Vec::new();
        let mut labels = Vec::new();
        for (class_idx, (centre_x, centre_y)) in centres.iter().enumerate() {
            for (offset_x, offset_y) in offsets {
                rows.push(vec![centre_x + offset_x, centre_y + offset_y]);
                labels.push(class_idx);
            }
        }
        let x = Matrix::from_rows(&rows);
        let task = MlpTask::Classify { labels: labels.clone(), n_classes: 3 };
        let config = MlpConfig { hidden: vec![8], epochs: 50, learning_rate: 0.01, l2: 0.0001, batch_size: 4, seed: 0 };
        let network = train_mlp(&x, &task, &config, &mut |_| {}).unwrap();
        assert_eq!(accuracy(&network, &x, &labels), 15);
    }

    #[test]
    fn fits_a_parabola() {
        // y = x² on 40 points of [-1, 1]; the reference port reaches a mean squared error near 2e-4.
        let inputs: Vec<f64> = (0..40).map(|i| -1.0 + 2.0 * i as f64 / 39.0).collect();
        let x = Matrix::from_rows(&inputs.iter().map(|&value| vec![value]).collect::<Vec<_>>());
        let targets: Vec<f64> = inputs.iter().map(|value| value * value).collect();
        let task = MlpTask::Regress { targets: targets.clone() };
        let config = MlpConfig { hidden: vec![16], epochs: 300, learning_rate: 0.01, l2: 0.0, batch_size: 10, seed: 0 };
        let network = train_mlp(&x, &task, &config, &mut |_| {}).unwrap();
        let outputs = network.forward(&x);
        assert_eq!(outputs.cols, 1);
        let mean_squared_error = targets.iter().enumerate().map(|(i, target)| (outputs.get(i, 0) - target).powi(2)).sum::<f64>() / 40.0;
        assert!(mean_squared_error < 0.005, "mse {mean_squared_error}");
    }

    #[test]
    fn training_is_deterministic_for_a_seed() {
        let x = Matrix::from_rows(&[vec![0.0, 1.0], vec![1.0, 0.0], vec![2.0, 2.0], vec![3.0, 1.0], vec![-1.0, 0.5]]);
        let task = MlpTask::Regress { targets: vec![1.0, 2.0, 0.0, -1.0, 0.5] };
        let config = MlpConfig { hidden: vec![5, 4], epochs: 20, learning_rate: 0.01, l2: 0.001, batch_size: 2, seed: 3 };
        let first = train_mlp(&x, &task, &config, &mut |_| {}).unwrap();
        let second = train_mlp(&x, &task, &config, &mut |_| {}).unwrap();
        assert_eq!(first.forward(&x), second.forward(&x));
        let other_seed = MlpConfig { seed: 4, ..config };
        let third = train_mlp(&x, &task, &other_seed, &mut |_| {}).unwrap();
        assert_ne!(first.forward(&x), third.forward(&x));
    }

    #[test]
    fn bad_config_and_task_are_named() {
        let x = Matrix::from_rows(&[vec![0.0], vec![1.0]]);
        let task = MlpTask::Classify { labels: vec![0, 1], n_classes: 2 };
        let base = MlpConfig::default();
        let cases = [
            (MlpConfig { hidden: vec![4, 0], ..base.clone() }, "hidden[1]"),
            (MlpConfig { epochs: 0, ..base.clone() }, "epochs"),
            (MlpConfig { batch_size: 0, ..base.clone() }, "batch_size"),
            (MlpConfig { learning_rate: 0.0, ..base.clone() }, "learning_rate"),
            (MlpConfig { l2: -0.5, ..base.clone() }, "l2"),
        ];
        for (config, field) in cases {
            let error = train_mlp(&x, &task, &config, &mut |_| {}).unwrap_err();
            assert!(error.contains(field), "{field}: {error}");
        }
        let bad_label = MlpTask::Classify { labels: vec![0, 2], n_classes: 2 };
        assert!(train_mlp(&x, &bad_label, &base, &mut |_| {}).unwrap_err().contains("labels[1] is 2"));
        let short = MlpTask::Regress { targets: vec![1.0] };
        assert!(train_mlp(&x, &short, &base, &mut |_| {}).unwrap_err().contains("targets has 1 values"));
    }

    #[test]
    fn divergence_is_an_error_naming_the_learning_rate() {
        // Inputs of 1e200 make the first squared error overflow to infinity.
        let x = Matrix::from_rows(&[vec![1e200], vec![-1e200]]);
        let task = MlpTask::Regress { targets: vec![0.0, 1.0] };
        let config = MlpConfig { hidden: vec![4], epochs: 5, learning_rate: 0.1, l2: 0.0, batch_size: 2, seed: 0 };
        let error = train_mlp(&x, &task, &config, &mut |_| {}).unwrap_err();
        assert!(error.contains("diverged") && error.contains("learning_rate"), "{error}");
    }
}
