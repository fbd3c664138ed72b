//! `yunmo files` and `yunmo jobs`: dataset uploads and background jobs (training), followed live with a
//! progress bar and the job's events.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::Client;
use serde_json::{Value, json};

use crate::{ServerArgs, check};

/// `yunmo files ...`
#[derive(Debug, Subcommand)]
pub enum FilesCommand {
    /// Upload a CSV file (a header row, then data rows) for training, or sample inputs for static
    /// quantisation (--purpose calibration: V2 inference requests in JSON, one or several as JSON Lines);
    /// prints its id.
    Upload {
        /// The file.
        path: PathBuf,
        /// `train`, `validation` or `calibration`.
        #[arg(long, default_value = "train")]
        purpose: String,
    },
    /// List the files of your tenant.
    Ls,
    /// Show a file's record (rows, columns, size, sha256).
    Show {
        /// File id (file-...).
        id: String,
    },
    /// Delete a file.
    Rm {
        /// File id (file-...).
        id: String,
    },
}

/// `yunmo jobs ...`
#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Create a job and follow it to its end with a progress bar (Ctrl-C stops following, not the job).
    Create {
        #[command(subcommand)]
        kind: CreateKind,
    },
    /// List jobs, newest first.
    Ls {
        /// Only jobs with this status (queued, running, succeeded, failed, cancelled).
        #[arg(long)]
        status: Option<String>,
    },
    /// Show a job: status, progress, options, the version it made and its metrics.
    Show {
        /// Job id (job-...).
        id: String,
    },
    /// Print a job's events; with --follow, keep printing until it ends.
    Logs {
        /// Job id (job-...).
        id: String,
        /// Follow until the job ends.
        #[arg(long, short)]
        follow: bool,
    },
    /// Cancel a job (a running one's process is stopped and it makes no version).
    Cancel {
        /// Job id (job-...).
        id: String,
    },
}

/// What kind of job to create.
#[derive(Debug, Subcommand)]
pub enum CreateKind {
    /// Train a model from a CSV file into a new version of --model (created if it does not exist).
    ///
    /// Example: yunmo jobs create train --model iris --file iris.csv --family logistic_regression --target species
    Train(TrainArgs),
    /// Make a smaller, faster version of --model from --version (default: its newest), with a report of
    /// size, latency and agreement with the parent (a result that agrees too little is refused unless
    /// --force).
    ///
    /// Example: yunmo jobs create optimise --model minilm --method dynamic_int8
    ///
    /// Example: yunmo jobs create optimise --model efficientnet --method static_int8 --calibration-file samples.json
    Optimise(OptimiseArgs),
}

/// `yunmo jobs create optimise` options.
#[derive(Debug, Args)]
pub struct OptimiseArgs {
    /// The model.
    #[arg(long)]
    pub model: String,
    /// The version to optimise (default: the newest).
    #[arg(long)]
    pub version: Option<u64>,
    /// dynamic_int8 (int8 MatMul weights and embedding tables), static_int8 (CNNs: int8 weights and
    /// activations at ranges measured on --calibration-file), prune (remove the least important hidden
    /// units of dense ReLU layers; --param keep_fraction=0.5), ort_optimize (ONNX Runtime's graph
    /// optimisations, saved) or requantize (GGUF, through llama.cpp; --param type=Q4_K_M).
    #[arg(long)]
    pub method: String,
    /// static_int8: sample inputs to calibrate with, a path (uploaded first) or a file id: V2 inference
    /// requests in JSON, as sent to /v2/models/NAME/infer (JSON Lines for several).
    #[arg(long)]
    pub calibration_file: Option<String>,
    /// More options as NAME=VALUE: keep_fraction, min_elements, min_cosine, min_top1, probe_batch (ONNX);
    /// type, max_perplexity_increase, text (GGUF).
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// Keep a result that breaks the agreement thresholds.
    #[arg(long)]
    pub force: bool,
    /// Print the job's id and return instead of following it.
    #[arg(long)]
    pub detach: bool,
}

/// `yunmo jobs create train` options.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The model that gets the new version.
    #[arg(long)]
    pub model: String,
    /// The training data: a CSV path (uploaded first) or the id of an uploaded file (file-...).
    #[arg(long)]
    pub file: String,
    /// Validation data (path or file id); default: --validation-fraction of the training rows.
    #[arg(long)]
    pub validation_file: Option<String>,
    /// linear_regression, logistic_regression, mlp_classifier, mlp_regressor or kmeans.
    #[arg(long)]
    pub family: String,
    /// The column to predict (not for kmeans).
    #[arg(long)]
    pub target: Option<String>,
    /// Feature columns, comma-separated (default: every column but the target).
    #[arg(long, value_delimiter = ',')]
    pub features: Option<Vec<String>>,
    /// Columns to treat as categories, comma-separated (text columns are anyway).
    #[arg(long, value_delimiter = ',')]
    pub categorical: Vec<String>,
    /// More options as NAME=VALUE (VALUE read as JSON when it parses), e.g. --param epochs=50
    /// --param hidden_layers=[64,32] --param l2=0.1 (docs/lifecycle.md lists them).
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// Print the job's id and return instead of following it.
    #[arg(long)]
    pub detach: bool,
}

/// Runs a `files` subcommand.
pub async fn files(server: &ServerArgs, command: FilesCommand) -> anyhow::Result<()> {
    let client = server.client()?;
    let url = &server.base_url()?;
    let body: Value = match command {
        FilesCommand::Upload { path, purpose } => upload(&client, url, &path, &purpose).await?,
        FilesCommand::Ls => {
            let body: Value = check(client.get(format!("{url}/api/v1/files")).send().await?).await?.json().await?;
            outln!("{:<30} {:>10} {:>6} {:<10} {}", "ID", "ROWS", "COLS", "PURPOSE", "FILENAME");
            for file in body["data"].as_array().into_iter().flatten() {
                let columns = file["columns"].as_array().map_or(0, Vec::len);
                outln!(
                    "{:<30} {:>10} {:>6} {:<10} {}",
                    text(&file["id"]),
                    file["rows"],
                    columns,
                    text(&file["purpose"]),
                    text(&file["filename"])
                );
            }
            return Ok(());
        }
        FilesCommand::Show { id } => check(client.get(format!("{url}/api/v1/files/{id}")).send().await?).await?.json().await?,
        FilesCommand::Rm { id } => check(client.delete(format!("{url}/api/v1/files/{id}")).send().await?).await?.json().await?,
    };
    outln!("{}", serde_json::to_string_pretty(&body)?);
    Ok(())
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or("-")
}

/// Uploads a file with a progress bar; returns the file's record.
async fn upload(client: &Client, url: &str, path: &Path, purpose: &str) -> anyhow::Result<Value> {
    let file = tokio::fs::File::open(path).await.with_context(|| format!("cannot open {}", path.display()))?;
    let size = file.metadata().await?.len();
    let progress = ProgressBar::new(size);
    progress.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec}")
            .expect("the template is valid. This is a bug.")
            .progress_chars("=> "),
    );
    progress.set_message(format!("Uploading {}", path.display()));
    let bar = progress.clone();
    let stream = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20).inspect(move |chunk| {
        if let Ok(chunk) = chunk {
            bar.inc(chunk.len() as u64);
        }
    });
    let filename = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_else(|| "upload.csv".into());
    let request = client
        .post(format!("{url}/api/v1/files"))
        .query(&[("filename", filename.as_str()), ("purpose", purpose)])
        .header(reqwest::header::CONTENT_TYPE, if purpose == "calibration" { "application/json" } else { "text/csv" })
        .header(reqwest::header::CONTENT_LENGTH, size)
        .body(reqwest::Body::wrap_stream(stream));
    let answer = check(request.send().await?).await;
    progress.finish_and_clear();
    let record: Value = answer?.json().await?;
    eprintln!("Uploaded {} as {} ({} rows).", path.display(), text(&record["id"]), record["rows"]);
    Ok(record)
}

/// A file id as given, or the id of the file at that path once uploaded.
async fn file_id(client: &Client, url: &str, given: &str, purpose: &str) -> anyhow::Result<String> {
    let path = Path::new(given);
    if given.starts_with("file-") && !path.exists() {
        return Ok(given.to_string());
    }
    let record = upload(client, url, path, purpose).await?;
    Ok(text(&record["id"]).to_string())
}

/// Adds NAME=VALUE options (VALUE read as JSON when it parses) to `params`.
fn add_params(params: &mut Value, given: &[String]) -> anyhow::Result<()> {
    for param in given {
        let Some((name, value)) = param.split_once('=') else { bail!("--param {param:?} is not NAME=VALUE") };
        params[name.trim()] = serde_json::from_str(value).unwrap_or_else(|_| json!(value));
    }
    Ok(())
}

fn train_params(args: &TrainArgs) -> anyhow::Result<Value> {
    let mut params = json!({ "family": args.family });
    if let Some(target) = &args.target {
        params["target"] = json!(target);
    }
    if let Some(features) = &args.features {
        params["features"] = json!(features);
    }
    if !args.categorical.is_empty() {
        params["categorical"] = json!(args.categorical);
    }
    add_params(&mut params, &args.params)?;
    Ok(params)
}

/// Creates a job and follows it (or prints its id with `detach`).
async fn start(client: &Client, url: &str, body: &Value, detach: bool) -> anyhow::Result<()> {
    let job: Value = check(client.post(format!("{url}/api/v1/jobs")).json(body).send().await?).await?.json().await?;
    let id = text(&job["id"]).to_string();
    if detach {
        outln!("{id}");
        return Ok(());
    }
    eprintln!("Job {id} queued; following it (Ctrl-C stops following, not the job).");
    follow(client, url, &id).await
}

/// Runs a `jobs` subcommand.
pub async fn jobs(server: &ServerArgs, command: JobsCommand) -> anyhow::Result<()> {
    let client = server.client()?;
    let url = &server.base_url()?;
    match command {
        JobsCommand::Create { kind: CreateKind::Train(args) } => {
            let params = train_params(&args)?;
            let training_file = file_id(&client, url, &args.file, "train").await?;
            let validation_file = match &args.validation_file {
                Some(given) => Some(file_id(&client, url, given, "validation").await?),
                None => None,
            };
            let body = json!({ "kind": "train", "model": args.model, "training_file": training_file,
                "validation_file": validation_file, "params": params });
            start(&client, url, &body, args.detach).await
        }
        JobsCommand::Create { kind: CreateKind::Optimise(args) } => {
            let mut params = json!({ "method": args.method });
            if args.force {
                params["force"] = json!(true);
            }
            add_params(&mut params, &args.params)?;
            let calibration_file = match &args.calibration_file {
                Some(given) => Some(file_id(&client, url, given, "calibration").await?),
                None => None,
            };
            let body = json!({ "kind": "optimise", "model": args.model, "version": args.version,
                "calibration_file": calibration_file, "params": params });
            start(&client, url, &body, args.detach).await
        }
        JobsCommand::Ls { status } => {
            let mut request = client.get(format!("{url}/api/v1/jobs"));
            if let Some(status) = &status {
                request = request.query(&[("status", status)]);
            }
            let body: Value = check(request.send().await?).await?.json().await?;
            outln!("{:<29} {:<10} {:<6} {:>5} {:>7} {}", "ID", "STATUS", "KIND", "DONE", "VERSION", "MODEL");
            for job in body["data"].as_array().into_iter().flatten() {
                let done = format!("{:.0}%", job["progress"].as_f64().unwrap_or(0.0) * 100.0);
                let version = job["result_version"].as_u64().map_or("-".to_string(), |v| v.to_string());
                outln!(
                    "{:<29} {:<10} {:<6} {:>5} {:>7} {}",
                    text(&job["id"]),
                    text(&job["status"]),
                    text(&job["kind"]),
                    done,
                    version,
                    text(&job["model"])
                );
            }
            Ok(())
        }
        JobsCommand::Show { id } => {
            let body: Value = check(client.get(format!("{url}/api/v1/jobs/{id}")).send().await?).await?.json().await?;
            outln!("{}", serde_json::to_string_pretty(&body)?);
            Ok(())
        }
        JobsCommand::Logs { id, follow: keep } => {
            let mut after = 0;
            loop {
                for event in events(&client, url, &id, &mut after).await? {
                    outln!("{event}");
                }
                if !keep {
                    return Ok(());
                }
                let job: Value = check(client.get(format!("{url}/api/v1/jobs/{id}")).send().await?).await?.json().await?;
                if ended(&job) {
                    for event in events(&client, url, &id, &mut after).await? {
                        outln!("{event}");
                    }
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        JobsCommand::Cancel { id } => {
            let body: Value = check(client.post(format!("{url}/api/v1/jobs/{id}/cancel")).send().await?).await?.json().await?;
            eprintln!("Job {id}: {}{}.", text(&body["status"]), if body["cancel_requested"] == json!(true) { " (stopping)" } else { "" });
            Ok(())
        }
    }
}

fn ended(job: &Value) -> bool {
    matches!(text(&job["status"]), "succeeded" | "failed" | "cancelled")
}

/// The job's events after `after`, as lines; moves `after` on.
async fn events(client: &Client, url: &str, id: &str, after: &mut u64) -> anyhow::Result<Vec<String>> {
    let page: Value =
        check(client.get(format!("{url}/api/v1/jobs/{id}/events")).query(&[("after", *after)]).send().await?).await?.json().await?;
    let mut lines = Vec::new();
    for event in page["data"].as_array().into_iter().flatten() {
        *after = event["id"].as_u64().unwrap_or(*after);
        let data = if event["data"].is_null() { String::new() } else { format!(" {}", event["data"]) };
        lines.push(format!("{:<7} {}{data}", text(&event["level"]), text(&event["message"])));
    }
    Ok(lines)
}

/// Follows a job with a progress bar and its events until it ends; fails unless it succeeded.
async fn follow(client: &Client, url: &str, id: &str) -> anyhow::Result<()> {
    let bar = ProgressBar::new(1000);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg:<10} [{bar:40}] {percent:>3}% {elapsed_precise}")
            .expect("the template is valid. This is a bug.")
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let mut after = 0;
    let job = loop {
        for line in events(client, url, id, &mut after).await? {
            bar.println(line);
        }
        let job: Value = check(client.get(format!("{url}/api/v1/jobs/{id}")).send().await?).await?.json().await?;
        bar.set_message(text(&job["status"]).to_string());
        bar.set_position((job["progress"].as_f64().unwrap_or(0.0) * 1000.0) as u64);
        if ended(&job) {
            for line in events(client, url, id, &mut after).await? {
                bar.println(line);
            }
            break job;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    bar.finish_and_clear();
    match text(&job["status"]) {
        "succeeded" => {
            outln!("Job {id} succeeded: version {} of model '{}'.", job["result_version"], text(&job["model"]));
            if let Some(parent) = job["parent_version"].as_u64() {
                outln!("  made from version {parent}");
            }
            if let Some(metrics) = job["metrics"].as_object() {
                for (name, value) in metrics {
                    outln!("  {name:<22} {}", value.as_f64().map_or(value.to_string(), |v| format!("{v:.6}")));
                }
            }
            Ok(())
        }
        "failed" => bail!("job {id} failed: {}", text(&job["error"])),
        other => bail!("job {id} ended {other}"),
    }
}
