//! What an optimisation job measures: the parent and the result side by side on the same probe inputs
//! (made from the signature: normal floats, small ids, masks of ones), in this one process and thread —
//! file size, latency at batch 1 and at a larger batch (median of repeated runs after a warm-up), and the
//! agreement of every output (cosine, largest absolute difference, top-1 agreement of class scores,
//! exact matches of labels and indices).

use std::path::Path;
use std::time::{Duration, Instant};

use yunmo_backend::{BackendFactory, BatchBackend, LoadOptions};
use yunmo_types::{DataType, Tensor, TensorData};

/// What the job compares.
pub struct Comparison<'a> {
    /// The ONNX Runtime library.
    pub library: &'a Path,
    /// The parent's file.
    pub parent: &'a Path,
    /// The result's file.
    pub result: &'a Path,
    /// Rows of the larger probe batch.
    pub batch: usize,
    /// Rows to probe with (the data the parent was trained on), when its inputs are that file's columns.
    pub rows: Option<&'a yunmo_train::Table>,
    /// The column of `rows` the parent learnt to predict: its accuracy (`label` output) or R² (`prediction`
    /// output) is measured for both models on those rows.
    pub target: Option<&'a str>,
    /// Sample inputs (a calibration file's requests): agreement is judged on them when given.
    pub samples: Option<&'a [Vec<Tensor>]>,
}

/// Most sample rows agreement is judged on.
const MAX_SAMPLE_ROWS: usize = 256;

/// Accuracy of a `label` output or R² of a `prediction` output against `target`'s cells of the probe rows.
fn evaluate(outputs: &[Tensor], table: &yunmo_train::Table, column: usize, rows: usize) -> Option<(&'static str, f64)> {
    let truth: Vec<&str> = (0..rows).map(|index| table.rows[probe_row(index, rows, table.rows.len())][column].as_str()).collect();
    if let Some(label) = outputs.iter().find(|tensor| tensor.name() == "label")
        && let TensorData::Bytes(values) = label.data()
    {
        let right = values.iter().zip(&truth).filter(|(value, truth)| value.as_ref() == truth.as_bytes()).count();
        return Some(("accuracy", right as f64 / truth.len().max(1) as f64));
    }
    let prediction = floats(outputs.iter().find(|tensor| tensor.name() == "prediction")?)?;
    let actual: Vec<f64> = truth.iter().map(|cell| cell.parse::<f64>().unwrap_or(f64::NAN)).collect();
    let mean = actual.iter().sum::<f64>() / actual.len().max(1) as f64;
    let total: f64 = actual.iter().map(|value| (value - mean).powi(2)).sum();
    let residual: f64 = actual.iter().zip(&prediction).map(|(value, predicted)| (value - predicted).powi(2)).sum();
    (total > 0.0).then(|| ("r2", 1.0 - residual / total))
}

/// A deterministic generator for probe values (the same inputs for both models).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f32 {
        let (u, v) = (self.next().max(1e-12), self.next());
        ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
    }
}

/// The file row that probe row `index` of `rows` is: rows spread over the whole file (files are often
/// sorted, by class for one), wrapping around when the file is shorter.
fn probe_row(index: usize, rows: usize, count: usize) -> usize {
    if rows <= count { index * count / rows } else { index % count }
}

/// `batch` rows of `table` (spread over it, see [`probe_row`]) as the model's inputs, when every input is a
/// column of it with shape `[batch, 1]`.
fn rows_probe(backend: &dyn BatchBackend, table: &yunmo_train::Table, batch: usize) -> Option<Vec<Tensor>> {
    let mut tensors = Vec::new();
    for spec in &backend.signature().inputs {
        let column = table.columns.iter().position(|name| name == &spec.name)?;
        if spec.shape.len() != 2 || spec.shape[0] != -1 || spec.shape[1] != 1 {
            return None;
        }
        let cells = (0..batch).map(|index| table.rows[probe_row(index, batch, table.rows.len())][column].as_str());
        let data = match spec.datatype {
            DataType::Fp32 => {
                TensorData::Fixed(cells.flat_map(|cell| cell.parse::<f32>().unwrap_or(f32::NAN).to_le_bytes()).collect::<Vec<u8>>().into())
            }
            DataType::Bytes => TensorData::Bytes(cells.map(|cell| bytes::Bytes::from(cell.to_string())).collect()),
            _ => return None,
        };
        tensors.push(Tensor::new(spec.name.clone(), spec.datatype, vec![batch as i64, 1], data).ok()?);
    }
    Some(tensors)
}

fn probe(backend: &dyn BatchBackend, batch: usize, rows: Option<&yunmo_train::Table>) -> Result<Vec<Tensor>, String> {
    if let Some(table) = rows
        && let Some(tensors) = rows_probe(backend, table, batch)
    {
        return Ok(tensors);
    }
    let mut random = Lcg(7);
    let mut tensors = Vec::new();
    for spec in &backend.signature().inputs {
        let shape: Vec<i64> = spec
            .shape
            .iter()
            .enumerate()
            .map(|(axis, &dim)| {
                if dim >= 0 {
                    dim
                } else if axis == 0 {
                    batch as i64
                } else {
                    16
                }
            })
            .collect();
        let count = shape.iter().product::<i64>().max(0) as usize;
        let name = spec.name.to_ascii_lowercase();
        let data = match spec.datatype {
            DataType::Fp32 => TensorData::Fixed((0..count).flat_map(|_| random.normal().to_le_bytes()).collect::<Vec<u8>>().into()),
            DataType::Int64 => {
                let value = |random: &mut Lcg| match () {
                    _ if name.contains("mask") => 1i64,
                    _ if name.contains("type") || name.contains("segment") => 0,
                    // Small ids: valid in any vocabulary of at least 100 entries.
                    _ => 1 + (random.next() * 99.0) as i64,
                };
                TensorData::Fixed((0..count).flat_map(|_| value(&mut random).to_le_bytes()).collect::<Vec<u8>>().into())
            }
            DataType::Int32 => TensorData::Fixed((0..count).flat_map(|_| 1i32.to_le_bytes()).collect::<Vec<u8>>().into()),
            DataType::Bytes => TensorData::Bytes(vec![bytes::Bytes::new(); count]),
            other => return Err(format!("no probe can be made for input '{}' of datatype {other}", spec.name)),
        };
        tensors.push(Tensor::new(spec.name.clone(), spec.datatype, shape, data).map_err(|error| error.to_string())?);
    }
    Ok(tensors)
}

fn outputs(backend: &dyn BatchBackend) -> Vec<String> {
    backend.signature().outputs.iter().map(|spec| spec.name.clone()).collect()
}

/// Median milliseconds of a call with `inputs`, after one warm-up, over up to 50 runs or one second.
fn latency(backend: &mut dyn BatchBackend, inputs: &[Tensor]) -> Result<f64, String> {
    let names = outputs(backend);
    backend.infer(inputs.to_vec(), &names).map_err(|error| error.to_string())?;
    let mut times = Vec::new();
    let started = Instant::now();
    while times.len() < 50 && (times.len() < 5 || started.elapsed() < Duration::from_secs(1)) {
        let call = Instant::now();
        backend.infer(inputs.to_vec(), &names).map_err(|error| error.to_string())?;
        times.push(call.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

fn floats(tensor: &Tensor) -> Option<Vec<f64>> {
    match (tensor.datatype(), tensor.data()) {
        (DataType::Fp32, TensorData::Fixed(bytes)) => {
            Some(bytes.chunks_exact(4).map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))).collect())
        }
        _ => None,
    }
}

/// Agreement of one output: cosine and largest difference for floats (and top-1 for class scores), the
/// share of equal elements otherwise.
fn agreement(parent: &Tensor, result: &Tensor) -> serde_json::Value {
    match (floats(parent), floats(result)) {
        (Some(a), Some(b)) if a.len() == b.len() => {
            let shape = parent.shape();
            // One value per row (a regression): centred, so that a result stuck near the mean does not
            // score well only because all values share a sign.
            let centre = if shape.len() == 2 && shape[1] == 1 { a.iter().sum::<f64>() / a.len().max(1) as f64 } else { 0.0 };
            let dot: f64 = a.iter().zip(&b).map(|(x, y)| (x - centre) * (y - centre)).sum();
            let (norm_a, norm_b) =
                (a.iter().map(|x| (x - centre).powi(2)).sum::<f64>().sqrt(), b.iter().map(|y| (y - centre).powi(2)).sum::<f64>().sqrt());
            let cosine = match (norm_a > 0.0, norm_b > 0.0) {
                (true, true) => dot / (norm_a * norm_b),
                (false, false) => 1.0,
                _ => 0.0,
            };
            // Not a number (NaN or infinite values) agrees with nothing.
            let cosine = if cosine.is_finite() { cosine } else { 0.0 };
            let max_abs_diff = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, |max: f64, diff| if diff.is_nan() { f64::INFINITY } else { max.max(diff) });
            let mut value = serde_json::json!({ "cosine": cosine, "max_abs_diff": if max_abs_diff.is_finite() { serde_json::json!(max_abs_diff) } else { serde_json::json!("not finite") } });
            // Top-1 agreement only where rows are class probabilities (non-negative, summing to 1).
            let probabilities = shape.len() == 2
                && shape[1] > 1
                && a.chunks(shape[1] as usize).all(|row| row.iter().all(|p| *p >= 0.0) && (row.iter().sum::<f64>() - 1.0).abs() < 1e-3);
            // Scores with no such sum (logits) get the same figure as `argmax_agreement`, reported, not judged.
            if shape.len() == 2 && shape[1] > 1 {
                let width = shape[1] as usize;
                let argmax = |row: &[f64]| row.iter().enumerate().fold(0, |best, (i, v)| if *v > row[best] { i } else { best });
                let rows = a.len() / width;
                let same = (0..rows).filter(|&r| argmax(&a[r * width..(r + 1) * width]) == argmax(&b[r * width..(r + 1) * width])).count();
                value[if probabilities { "top1" } else { "argmax_agreement" }] = serde_json::json!(same as f64 / rows.max(1) as f64);
            }
            value
        }
        _ => {
            let share = match (parent.data(), result.data()) {
                (TensorData::Bytes(a), TensorData::Bytes(b)) if a.len() == b.len() => {
                    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / a.len().max(1) as f64
                }
                (TensorData::Fixed(a), TensorData::Fixed(b)) if a.len() == b.len() && parent.shape() == result.shape() => {
                    let width = parent.datatype().element_size().unwrap_or(1).max(1);
                    let same = a.chunks(width).zip(b.chunks(width)).filter(|(x, y)| x == y).count();
                    same as f64 / (a.len() / width).max(1) as f64
                }
                _ => 0.0,
            };
            serde_json::json!({ "top1": share })
        }
    }
}

fn load(factory: &dyn BackendFactory, path: &Path) -> Result<Box<dyn BatchBackend>, String> {
    factory.load(path, &LoadOptions { intra_op_threads: 1 }).map_err(|error| format!("loading {}: {error}", path.display()))
}

/// Compares parent and result; the report's figures, and the smallest cosine and top-1 agreement.
pub fn compare(comparison: &Comparison<'_>) -> Result<(serde_json::Value, f64, f64), String> {
    let factory = yunmo_backend_onnx::OnnxFactory::new(comparison.library).map_err(|error| error.to_string())?;
    let started = Instant::now();
    let mut parent = load(&factory, comparison.parent)?;
    let parent_load_ms = started.elapsed().as_secs_f64() * 1000.0;
    let started = Instant::now();
    let mut result = load(&factory, comparison.result)?;
    let result_load_ms = started.elapsed().as_secs_f64() * 1000.0;
    if parent.signature().inputs != result.signature().inputs {
        return Err("the result's inputs differ from the parent's".into());
    }
    let batched = parent.signature().inputs.iter().all(|spec| spec.shape.first() == Some(&-1));
    let mut batches = vec![1];
    if batched && comparison.batch > 1 {
        batches.push(comparison.batch);
    }
    // Agreement is judged on every probe row (up to 4096) when the parent's own data is at hand.
    let from_rows = comparison.rows.filter(|table| batched && rows_probe(parent.as_ref(), table, 1).is_some());
    let agreement_rows = match from_rows {
        Some(table) => table.rows.len().min(4096),
        None => *batches.last().expect("one batch"),
    };
    let mut latency_report = serde_json::Map::new();
    let mut outputs_report = serde_json::Map::new();
    let (mut min_cosine, mut min_top1) = (1.0f64, 1.0f64);
    let joined = comparison.samples.and_then(|samples| crate::calibrate::join(samples, MAX_SAMPLE_ROWS));
    let sample_rows = joined.as_ref().and_then(|tensors| tensors.first()).and_then(|tensor| tensor.shape().first().copied());
    let inputs = match joined {
        Some(tensors) => tensors,
        None => probe(parent.as_ref(), agreement_rows, comparison.rows)?,
    };
    let names = outputs(parent.as_ref());
    let expected = parent.infer(inputs.clone(), &names).map_err(|error| error.to_string())?;
    let got = result.infer(inputs, &names).map_err(|error| error.to_string())?;
    let metric = match (from_rows.filter(|_| sample_rows.is_none()), comparison.target) {
        (Some(table), Some(target)) => table.columns.iter().position(|name| name == target).and_then(|column| {
            let (name, before) = evaluate(&expected, table, column, agreement_rows)?;
            let (_, after) = evaluate(&got, table, column, agreement_rows)?;
            Some(serde_json::json!({ "name": name, "parent": before, "result": after, "rows": agreement_rows, "column": target }))
        }),
        _ => None,
    };
    for (a, b) in expected.iter().zip(&got) {
        let value = agreement(a, b);
        min_cosine = min_cosine.min(value["cosine"].as_f64().unwrap_or(1.0));
        min_top1 = min_top1.min(value["top1"].as_f64().unwrap_or(1.0));
        outputs_report.insert(a.name().to_string(), value);
    }
    for &batch in &batches {
        let inputs = probe(parent.as_ref(), batch, comparison.rows)?;
        let (before, after) = (latency(parent.as_mut(), &inputs)?, latency(result.as_mut(), &inputs)?);
        latency_report.insert(
            format!("batch_{batch}"),
            serde_json::json!({ "parent_ms": before, "result_ms": after, "speedup": before / after.max(1e-9) }),
        );
    }
    let size = |path: &Path| std::fs::metadata(path).map(|meta| meta.len()).unwrap_or(0);
    let (parent_bytes, result_bytes) = (size(comparison.parent), size(comparison.result));
    let report = serde_json::json!({
        "parent_bytes": parent_bytes,
        "result_bytes": result_bytes,
        "size_ratio": result_bytes as f64 / parent_bytes.max(1) as f64,
        "load_ms": { "parent": parent_load_ms, "result": result_load_ms },
        "metric": metric,
        "latency": latency_report,
        "agreement": outputs_report,
        "probe": match (sample_rows, from_rows) {
            (Some(rows), _) => format!("agreement on {rows} rows of the calibration sample; latency at batches {batches:?} on inputs made from the signature, one thread"),
            (None, Some(_)) => format!("{agreement_rows} rows of the data the parent was trained on; latency at batches {batches:?}, one thread"),
            (None, None) => format!("inputs made from the signature (normal floats, ids below 100, masks of ones), {agreement_rows} rows; latency at batches {batches:?}, one thread"),
        },
    });
    Ok((report, min_cosine, min_top1))
}
