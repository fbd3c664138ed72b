//! `yunmo job-run SPEC`: the child process a job runs in. It reads the task the server wrote, does the
//! work, prints its progress and result as JSON lines (`yunmo_service::job_task::TaskMessage`) and writes
//! the result's file. It dies with its parent (PR_SET_PDEATHSIG), so a server killed outright leaves no
//! job running unseen.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use yunmo_service::job_task::{JobKind, TaskMessage, TaskSpec};

fn say(message: &TaskMessage) {
    let mut stdout = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut stdout, message);
    let _ = stdout.write_all(b"\n");
    let _ = stdout.flush();
}

/// Runs the task described in `spec_path`; the exit status is 0 when it printed `done` or `failed`.
pub fn run(spec_path: &Path) -> ExitCode {
    if let Err(error) = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL)) {
        eprintln!("Could not ask to die with the server: {error}.");
    }
    // A parent that died before the request above took effect would leave this child unsupervised.
    let parent = std::env::var(yunmo_service::job_runner::PARENT_VARIABLE).ok().and_then(|pid| pid.parse::<i32>().ok());
    let current = rustix::process::getppid().map_or(0, |pid| pid.as_raw_nonzero().get());
    if parent.is_some_and(|parent| parent != current) {
        eprintln!("The server that started this job is gone; exiting.");
        return ExitCode::FAILURE;
    }
    let result = std::fs::read(spec_path)
        .map_err(|error| format!("cannot read the task {}: {error}", spec_path.display()))
        .and_then(|bytes| serde_json::from_slice::<TaskSpec>(&bytes).map_err(|error| format!("the task is not valid: {error}")))
        .and_then(|spec| match spec.kind {
            JobKind::Train => train(&spec),
            JobKind::Optimise => optimise(&spec),
        });
    match result {
        Ok(message) => say(&message),
        Err(error) => say(&TaskMessage::Failed { error }),
    }
    ExitCode::SUCCESS
}

fn read_table(path: &Path, spec: &TaskSpec) -> Result<yunmo_train::Table, String> {
    let bytes = std::fs::read(path).map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    let limits = yunmo_train::CsvLimits { max_rows: spec.max_rows, max_columns: spec.max_columns };
    yunmo_train::parse_csv(&bytes, &limits).map_err(|error| error.to_string())
}

fn train(spec: &TaskSpec) -> Result<TaskMessage, String> {
    let params: yunmo_train::TrainParams = serde_json::from_value(spec.params.clone()).map_err(|error| format!("params: {error}"))?;
    let training = spec.training.as_deref().ok_or("a train job needs a training file")?;
    let table = read_table(training, spec).map_err(|error| format!("training_file: {error}"))?;
    let validation = match &spec.validation {
        Some(path) => Some(read_table(path, spec).map_err(|error| format!("validation_file: {error}"))?),
        None => None,
    };
    let dataset = yunmo_train::Dataset { table: &table, validation: validation.as_ref() };
    let mut progress = |step: yunmo_train::Progress| {
        say(&TaskMessage::Progress { fraction: step.fraction, message: step.message, loss: step.loss });
    };
    let trained = yunmo_train::train(&dataset, &params, &mut progress).map_err(|error| error.to_string())?;
    let artifact = "model.onnx";
    std::fs::write(spec.output.join(artifact), &trained.onnx).map_err(|error| format!("cannot write the model: {error}"))?;
    let mut details = serde_json::json!({
        "train_rows": trained.train_rows,
        "validation_rows": trained.validation_rows,
        "target": params.target,
    });
    if !trained.features.is_empty() {
        details["features"] = serde_json::json!(trained.features);
    }
    if let serde_json::Value::Object(extra) = trained.extra {
        details.as_object_mut().expect("an object").extend(extra);
    }
    // JSON has no NaN: a metric that is not a number (ROC AUC when a class is missing from the validation
    // rows) is left out rather than written as null.
    let metrics = trained.metrics.into_iter().filter(|(_, value)| value.is_finite()).collect();
    Ok(TaskMessage::Done { artifact: artifact.into(), metrics, labels: trained.labels, details, known_values: trained.known_values })
}

fn optimise(spec: &TaskSpec) -> Result<TaskMessage, String> {
    let params: yunmo_optimise::OptimiseParams = serde_json::from_value(spec.params.clone()).map_err(|error| format!("params: {error}"))?;
    let parent = spec.parent.as_deref().ok_or("an optimise job needs the parent version's file")?;
    let library = spec.onnx_library.as_deref().ok_or("ONNX Runtime is not available to this server (backends.onnx.library_path)")?;
    say(&TaskMessage::Progress { fraction: 0.05, message: format!("Applying {}.", params.method.as_str()), loss: None });
    if params.method == yunmo_optimise::Method::Requantize {
        return requantize(spec, &params, parent);
    }
    let artifact = "model.onnx";
    let result = spec.output.join(artifact);
    let samples = match &spec.calibration {
        Some(path) => Some(crate::calibrate::read_samples(path)?),
        None => None,
    };
    let rewrite = if params.method == yunmo_optimise::Method::OrtOptimize {
        let factory = yunmo_backend_onnx::OnnxFactory::new(library).map_err(|error| error.to_string())?;
        factory.optimise_graph(parent, &result).map_err(|error| error.to_string())?;
        serde_json::json!({ "level": "extended" })
    } else if params.method == yunmo_optimise::Method::StaticInt8 {
        let samples = samples.as_deref().ok_or("static_int8 needs a calibration file")?;
        say(&TaskMessage::Progress { fraction: 0.1, message: "Measuring activation ranges on the calibration sample.".into(), loss: None });
        crate::calibrate::quantize(library, parent, &result, samples)?
    } else {
        let bytes = std::fs::read(parent).map_err(|error| format!("cannot read the parent version: {error}"))?;
        let (optimised, rewrite) = yunmo_optimise::optimise(&bytes, &params).map_err(|error| error.to_string())?;
        std::fs::write(&result, &optimised).map_err(|error| format!("cannot write the model: {error}"))?;
        rewrite
    };
    say(&TaskMessage::Progress { fraction: 0.3, message: "Measuring the result against its parent.".into(), loss: None });
    // The parent's data, when it can be read; otherwise the probes are made from the signature.
    let rows = spec.probe.as_deref().and_then(|path| read_table(path, spec).ok());
    let comparison = crate::measure::Comparison {
        library,
        parent,
        result: &result,
        batch: params.probe_batch.unwrap_or(32),
        rows: rows.as_ref(),
        target: spec.probe_target.as_deref(),
        samples: samples.as_deref(),
    };
    let (mut report, min_cosine, min_top1) = crate::measure::compare(&comparison)?;
    report["rewrite"] = rewrite;
    let (want_cosine, want_top1) = (params.min_cosine.unwrap_or(0.99), params.min_top1.unwrap_or(0.95));
    let passes = min_cosine >= want_cosine && min_top1 >= want_top1;
    report["thresholds"] =
        serde_json::json!({ "min_cosine": want_cosine, "min_top1": want_top1, "passed": passes, "forced": params.force });
    if !passes && !params.force {
        return Err(format!(
            "the result agrees too little with its parent (cosine {min_cosine:.4}, wanted {want_cosine}; top-1 {min_top1:.4}, wanted {want_top1}); \
             nothing was registered (force: true keeps it anyway). Report: {report}"
        ));
    }
    let mut metrics = std::collections::BTreeMap::new();
    metrics.insert("size_ratio".to_string(), report["size_ratio"].as_f64().unwrap_or(f64::NAN));
    metrics.insert("min_cosine".to_string(), min_cosine);
    metrics.insert("min_top1".to_string(), min_top1);
    if let Some(score) = report["metric"].as_object() {
        let name = score.get("name").and_then(|name| name.as_str()).unwrap_or("metric").to_string();
        for side in ["parent", "result"] {
            if let Some(value) = score.get(side).and_then(|value| value.as_f64()) {
                metrics.insert(format!("{side}_{name}"), value);
            }
        }
    }
    if let Some(latency) = report["latency"].as_object() {
        for (batch, figures) in latency {
            metrics.insert(format!("speedup_{batch}"), figures["speedup"].as_f64().unwrap_or(f64::NAN));
        }
    }
    let metrics = metrics.into_iter().filter(|(_, value)| value.is_finite()).collect();
    Ok(TaskMessage::Done { artifact: artifact.into(), metrics, labels: Vec::new(), details: report, known_values: Default::default() })
}

/// A passage of plain English prose perplexity is measured on by default (written for Yunmo).
const SAMPLE_TEXT: &str = "The river runs through the old town before it reaches the sea. In the morning the market opens \
on the square by the bridge, and people come from the villages to sell bread, cheese, fruit and fish. Children walk to \
school along the water, and the bells of the church ring at eight. In the afternoon the streets are quiet, because most \
shops close for lunch and many people rest at home. When the sun goes down, families sit outside, talk with their \
neighbours and watch the boats come back from the harbour. The town has changed slowly over the centuries, but its \
people still say that the river is the heart of the place, and that a day without a walk by the water is a day lost.";

fn requantize(spec: &TaskSpec, params: &yunmo_optimise::OptimiseParams, parent: &std::path::Path) -> Result<TaskMessage, String> {
    use yunmo_backend_gguf::requantize as gguf;
    let kind = params.gguf_type.as_deref().unwrap_or("Q8_0");
    let artifact = "model.gguf";
    let result = spec.output.join(artifact);
    say(&TaskMessage::Progress { fraction: 0.05, message: format!("Re-quantising to {kind} with llama.cpp."), loss: None });
    gguf::requantize(parent, &result, kind, 0).map_err(|error| error.to_string())?;
    let text = params.text.as_deref().unwrap_or(SAMPLE_TEXT);
    say(&TaskMessage::Progress { fraction: 0.6, message: "Measuring perplexity of the parent and the result.".into(), loss: None });
    let (before, tokens) = gguf::perplexity(parent, text, 512).map_err(|error| format!("the parent's perplexity: {error}"))?;
    let (after, _) = gguf::perplexity(&result, text, 512).map_err(|error| format!("the result's perplexity: {error}"))?;
    let size = |path: &std::path::Path| std::fs::metadata(path).map(|meta| meta.len()).unwrap_or(0);
    let (parent_bytes, result_bytes) = (size(parent), size(&result));
    let rise = after / before - 1.0;
    let allowed = params.max_perplexity_increase.unwrap_or(0.25);
    let report = serde_json::json!({
        "type": kind,
        "parent_bytes": parent_bytes,
        "result_bytes": result_bytes,
        "size_ratio": result_bytes as f64 / parent_bytes.max(1) as f64,
        "perplexity": { "parent": before, "result": after, "increase": rise, "tokens": tokens,
            "text": if params.text.is_some() { "given" } else { "built-in passage" } },
        "thresholds": { "max_perplexity_increase": allowed, "passed": rise <= allowed, "forced": params.force },
        "note": "perplexity on at most 512 tokens of one text, one window: a comparison of the two files, not a benchmark score",
    });
    // A perplexity that is not a number fails the check too.
    if (rise.is_nan() || rise > allowed) && !params.force {
        return Err(format!(
            "the result's perplexity rose by {:.1}% (from {before:.3} to {after:.3}), more than max_perplexity_increase {allowed}; \
             nothing was registered (force: true keeps it anyway). Report: {report}",
            rise * 100.0
        ));
    }
    let mut metrics = std::collections::BTreeMap::new();
    metrics.insert("size_ratio".to_string(), result_bytes as f64 / parent_bytes.max(1) as f64);
    metrics.insert("perplexity_parent".to_string(), before);
    metrics.insert("perplexity_result".to_string(), after);
    let metrics = metrics.into_iter().filter(|(_, value)| value.is_finite()).collect();
    Ok(TaskMessage::Done { artifact: artifact.into(), metrics, labels: Vec::new(), details: report, known_values: Default::default() })
}
