//! Client commands of the `yunmo` binary: they talk to a running server's HTTP API (management API and
//! KServe V2), never to its database or files. `models push` streams the file with a progress bar.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::{Client, Response, StatusCode};
use serde_json::Value;

/// Writes a line to standard output; a closed pipe (`yunmo models ls | head -2`) ends the command quietly
/// (see [`is_closed_pipe`]) instead of panicking as `println!` does.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}

/// Writes to standard output, like [`outln!`] without the newline.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*)?
    }};
}

/// Whether `error` is standard output's reader having gone away (the command should end quietly).
pub fn is_closed_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| cause.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
}

mod jobs;
mod route;
mod tenancy;
pub use jobs::{CreateKind, FilesCommand, JobsCommand, OptimiseArgs, TrainArgs, files, jobs};
pub use tenancy::{AuditArgs, KeysCommand, TenantsCommand, UsageArgs, audit, keys, tenants, usage, whoami};

/// Where the server is.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// Base URL of the Yunmo server.
    #[arg(long, env = "YUNMO_URL", default_value = "http://127.0.0.1:8080", global = true)]
    pub url: String,
    /// API key (ym_...), sent as `Authorization: Bearer`. The server prints the bootstrap admin key on
    /// its first start and saves it to <data_dir>/bootstrap-admin.key.
    #[arg(long, env = "YUNMO_API_KEY", hide_env_values = true, global = true)]
    pub api_key: Option<String>,
    /// PEM file of a CA certificate to trust for an `https://` URL, besides the system's (for a server
    /// whose certificate comes from a private CA, as `server.tls` usually does).
    #[arg(long, env = "YUNMO_CA_FILE", global = true)]
    pub ca_file: Option<PathBuf>,
}

impl ServerArgs {
    /// The server's base URL, without a trailing slash. `host:port` without a scheme means `http://`, as
    /// for curl; anything that is not an http(s) URL is refused naming `--url`.
    pub fn base_url(&self) -> anyhow::Result<String> {
        let trimmed = self.url.trim().trim_end_matches('/');
        let url = if trimmed.contains("://") { trimmed.to_string() } else { format!("http://{trimmed}") };
        let parsed =
            reqwest::Url::parse(&url).map_err(|error| anyhow::anyhow!("--url (or YUNMO_URL) {:?} is not a URL: {error}", self.url))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            bail!("--url (or YUNMO_URL) must be http://HOST:PORT or https://HOST:PORT, got {:?}", self.url);
        }
        Ok(url)
    }

    /// An HTTP client that sends the API key on every request.
    pub fn client(&self) -> anyhow::Result<Client> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(key) = &self.api_key {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", key.trim()))
                .context("the API key has characters a header cannot carry")?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        install_tls_provider();
        let mut builder = Client::builder().default_headers(headers);
        if let Some(path) = &self.ca_file {
            let pem = std::fs::read(path).with_context(|| format!("cannot read the CA file {}", path.display()))?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("the CA file {} holds no PEM certificate", path.display()))?;
            if certificates.is_empty() {
                bail!("the CA file {} holds no PEM certificate", path.display());
            }
            builder = builder.tls_certs_merge(certificates);
        }
        Ok(builder.build()?)
    }
}

/// Makes rustls use ring (the provider the server uses too) in this process. reqwest is built without a
/// provider of its own, so every process that builds a reqwest client calls this first; calling it again
/// is harmless.
pub fn install_tls_provider() {
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
}

/// `yunmo models ...`
#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Upload a model file as a new version, creating the model if it does not exist.
    Push(PushArgs),
    /// List models and their versions.
    Ls,
    /// Show one model with its versions, signatures and config, as JSON.
    Show {
        /// Model name.
        name: String,
    },
    /// Delete a model (all versions) or one version.
    Rm {
        /// Model name.
        name: String,
        /// Delete only this version.
        #[arg(long)]
        version: Option<u64>,
    },
    /// Set who besides the owning tenant may see and call a model (replaces the current sharing).
    Share {
        /// Model name.
        name: String,
        /// Share with this tenant (repeat for several).
        #[arg(long = "tenant")]
        tenants: Vec<String>,
        /// Share with every tenant.
        #[arg(long, conflicts_with = "private")]
        public: bool,
        /// Share with nobody (no --tenant allowed).
        #[arg(long, conflicts_with = "tenants")]
        private: bool,
    },
    /// Load a version now (default: the one the model's version policy serves).
    Load(VersionArgs),
    /// Unload a version (default: every loaded version); it stays unloaded until loaded again.
    Unload(VersionArgs),
    /// Route the requests that name no version between versions by weight (canary, A/B), with an optional
    /// shadow, stickiness and a guard that rolls canaries back; without weights, show the route.
    /// E.g. `yunmo models route fraud v2=90 v3=10 --shadow v4 --sticky header:x-user --guard`.
    Route(route::RouteArgs),
    /// Send every request to one version (ends a route: the canary is promoted), e.g. `yunmo models promote fraud v3`.
    Promote {
        /// Model name.
        name: String,
        /// The version (`v3` or `3`).
        version: String,
    },
    /// Show a version's serving config, or replace it with --set.
    Config {
        #[command(flatten)]
        target: VersionArgs,
        /// New config: inline JSON or a path to a JSON file, e.g. '{"max_batch_size": 16, "instance_count": 2}'.
        #[arg(long)]
        set: Option<String>,
    },
}

/// A model and, optionally, one of its versions.
#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Model name.
    pub name: String,
    /// Version (default: see the command).
    #[arg(long)]
    pub version: Option<u64>,
}

/// `yunmo models push`
#[derive(Debug, Args)]
pub struct PushArgs {
    /// Model file: ONNX (`.onnx`), a GGUF large language model (`.gguf`) or a pipeline declaration (JSON, see
    /// docs/pipelines.md); the format is read from the file.
    pub file: PathBuf,
    /// Model name.
    #[arg(long)]
    pub name: String,
    /// Version number to create (default: the next one).
    #[arg(long)]
    pub version: Option<u64>,
    /// Version config: inline JSON or a path to a JSON file,
    /// e.g. '{"max_batch_size": 8, "instance_count": 2, "labels": ["cat", "dog"]}'.
    #[arg(long)]
    pub config: Option<String>,
    /// Description, used when the model is created.
    #[arg(long, default_value = "")]
    pub description: String,
    /// Task (classification, regression, embedding, …), used when the model is created.
    #[arg(long, default_value = "")]
    pub task: String,
    /// A Hugging Face `tokenizer.json` stored with the version, for ONNX encoders that serve
    /// `/v1/embeddings` (with `--config '{"embedding": {"pooling": "mean", "normalize": true}}'`).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
}

/// `yunmo infer`
#[derive(Debug, Args)]
pub struct InferArgs {
    /// Model name.
    pub name: String,
    /// Model version (default: the model's version policy).
    #[arg(long)]
    pub version: Option<u64>,
    /// KServe V2 request body: inline JSON or @FILE,
    /// e.g. '{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}'.
    #[arg(long)]
    pub input: String,
}

/// Turns a non-2xx answer into an error carrying the server's message.
pub(crate) async fn check(response: Response) -> anyhow::Result<Response> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let text = response.text().await.unwrap_or_default();
    let message = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|body| match &body["error"] {
            Value::String(message) => Some(message.clone()),
            Value::Object(error) => error.get("message").and_then(Value::as_str).map(str::to_string),
            _ => None,
        })
        .unwrap_or(text);
    if status == StatusCode::UNAUTHORIZED {
        bail!("{message} (HTTP {status}). Give an API key with --api-key KEY or the YUNMO_API_KEY environment variable");
    }
    bail!("{message} (HTTP {status})")
}

fn read_json_arg(text: &str, what: &str) -> anyhow::Result<String> {
    let json = match text.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("cannot read {what} file {path}"))?,
        None if text.trim_start().starts_with('{') => text.to_string(),
        None => std::fs::read_to_string(text).with_context(|| format!("{what} is neither JSON nor a readable file: {text}"))?,
    };
    serde_json::from_str::<Value>(&json).with_context(|| format!("{what} is not valid JSON"))?;
    Ok(json)
}

/// Runs a `models` subcommand.
pub async fn models(server: &ServerArgs, command: ModelsCommand) -> anyhow::Result<()> {
    let client = server.client()?;
    let url = &server.base_url()?;
    match command {
        ModelsCommand::Push(args) => push(&client, url, args).await,
        ModelsCommand::Ls => {
            let response = check(client.get(format!("{url}/api/v1/models")).send().await?).await?;
            let body: Value = response.json().await?;
            outln!("{:<32} {:<10} {:<16} {:<8} {:>12}", "NAME", "VERSION", "TASK", "LOADED", "SIZE");
            for model in body["models"].as_array().into_iter().flatten() {
                let versions = model["versions"].as_array().cloned().unwrap_or_default();
                if versions.is_empty() {
                    outln!(
                        "{:<32} {:<10} {:<16} {:<8} {:>12}",
                        model["name"].as_str().unwrap_or(""),
                        "-",
                        model["task"].as_str().unwrap_or(""),
                        "-",
                        "-"
                    );
                }
                for version in versions {
                    outln!(
                        "{:<32} {:<10} {:<16} {:<8} {:>12}",
                        model["name"].as_str().unwrap_or(""),
                        // serde_json::Value's Display ignores width: format the numbers as strings.
                        version["version"].to_string(),
                        model["task"].as_str().unwrap_or(""),
                        if version["loaded"].as_bool() == Some(true) { "yes" } else { "no" },
                        version["size_bytes"].to_string(),
                    );
                }
            }
            Ok(())
        }
        ModelsCommand::Show { name } => {
            let response = check(client.get(format!("{url}/api/v1/models/{name}")).send().await?).await?;
            let body: Value = response.json().await?;
            outln!("{}", serde_json::to_string_pretty(&body)?);
            Ok(())
        }
        ModelsCommand::Rm { name, version } => {
            let target = match version {
                Some(version) => format!("{url}/api/v1/models/{name}/versions/{version}"),
                None => format!("{url}/api/v1/models/{name}"),
            };
            check(client.delete(target).send().await?).await?;
            match version {
                Some(version) => eprintln!("Deleted version {version} of model '{name}'."),
                None => eprintln!("Deleted model '{name}'."),
            }
            Ok(())
        }
        ModelsCommand::Share { name, tenants, public, private: _ } => {
            let body = serde_json::json!({ "public": public, "tenants": tenants });
            let response = check(client.put(format!("{url}/api/v1/models/{name}/sharing")).json(&body).send().await?).await?;
            let model: Value = response.json().await?;
            outln!("{}", serde_json::to_string_pretty(&model["sharing"])?);
            Ok(())
        }
        ModelsCommand::Load(target) => load_or_unload(&client, url, target, "load").await,
        ModelsCommand::Unload(target) => load_or_unload(&client, url, target, "unload").await,
        ModelsCommand::Config { target, set } => config(&client, url, target, set).await,
        ModelsCommand::Route(args) => route::route(&client, url, args).await,
        ModelsCommand::Promote { name, version } => route::promote(&client, url, &name, &version).await,
    }
}

/// Loads or unloads a version, or (without `--version`) what the V2 repository extension does: load the
/// policy's version, unload every loaded version.
async fn load_or_unload(client: &Client, url: &str, target: VersionArgs, action: &str) -> anyhow::Result<()> {
    let VersionArgs { name, version } = target;
    match version {
        Some(version) => {
            let response = check(client.post(format!("{url}/api/v1/models/{name}/versions/{version}/{action}")).send().await?).await?;
            let body: Value = response.json().await?;
            eprintln!("Model '{name}' version {version}: {}.", if body["loaded"] == Value::Bool(true) { "loaded" } else { "unloaded" });
        }
        None => {
            let path = format!("{url}/v2/repository/models/{name}/{action}");
            check(client.post(path).header(reqwest::header::CONTENT_TYPE, "application/json").body("{}").send().await?).await?;
            eprintln!("Model '{name}': {action}ed.");
        }
    }
    Ok(())
}

/// Prints a version's config, or replaces it.
async fn config(client: &Client, url: &str, target: VersionArgs, set: Option<String>) -> anyhow::Result<()> {
    let name = &target.name;
    let version = match target.version {
        Some(version) => version,
        None => {
            let response = check(client.get(format!("{url}/v2/models/{name}")).send().await?).await?;
            let metadata: Value = response.json().await?;
            let versions = metadata["versions"].as_array().cloned().unwrap_or_default();
            let last = versions.last().and_then(|v| v.as_str()?.parse::<u64>().ok());
            last.ok_or_else(|| anyhow::anyhow!("model '{name}' has no versions"))?
        }
    };
    let path = format!("{url}/api/v1/models/{name}/versions/{version}");
    let record: Value = match set {
        Some(text) => {
            let config = read_json_arg(&text, "--set")?;
            let request = client.put(format!("{path}/config")).header(reqwest::header::CONTENT_TYPE, "application/json").body(config);
            check(request.send().await?).await?.json().await?
        }
        None => check(client.get(path).send().await?).await?.json().await?,
    };
    outln!("{}", serde_json::to_string_pretty(&record["config"])?);
    Ok(())
}

async fn push(client: &Client, url: &str, args: PushArgs) -> anyhow::Result<()> {
    let config = args.config.as_deref().map(|text| read_json_arg(text, "config")).transpose()?;
    let file = tokio::fs::File::open(&args.file).await.with_context(|| format!("cannot open {}", args.file.display()))?;
    let size = file.metadata().await?.len();
    let tokenizer = match &args.tokenizer {
        Some(path) => Some(std::fs::read_to_string(path).with_context(|| format!("cannot read the tokenizer {}", path.display()))?),
        None => None,
    };
    let existing = client.get(format!("{url}/api/v1/models/{}", args.name)).send().await?;
    let created = if existing.status() == StatusCode::NOT_FOUND {
        let body = serde_json::json!({ "name": args.name, "description": args.description, "task": args.task });
        check(client.post(format!("{url}/api/v1/models")).json(&body).send().await?).await?;
        true
    } else {
        check(existing).await?;
        false
    };
    let upload = Upload { file, size, config, tokenizer };
    match upload_version(client, url, &args, upload).await {
        Ok(version) => {
            if created {
                eprintln!("Created model '{}'.", args.name);
            }
            eprintln!(
                "Pushed {} as model '{}' version {} (sha256 {}).",
                args.file.display(),
                args.name,
                version["version"],
                version["sha256"].as_str().unwrap_or("")
            );
            outln!("{}", serde_json::to_string_pretty(&version)?);
            Ok(())
        }
        Err(error) if created => {
            // A push that fails leaves nothing behind: the model made for it goes too.
            match client.delete(format!("{url}/api/v1/models/{}", args.name)).send().await {
                Ok(response) if response.status().is_success() => Err(error),
                _ => Err(error.context(format!("the model '{}' created for this push could not be removed", args.name))),
            }
        }
        Err(error) => Err(error),
    }
}

/// What `models push` uploads.
struct Upload {
    file: tokio::fs::File,
    size: u64,
    config: Option<String>,
    tokenizer: Option<String>,
}

/// Streams the file (with a progress bar) as a new version; returns the version's JSON.
async fn upload_version(client: &Client, url: &str, args: &PushArgs, upload: Upload) -> anyhow::Result<Value> {
    let progress = ProgressBar::new(upload.size);
    progress.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} {eta}")
            .expect("the template is valid. This is a bug.")
            .progress_chars("=> "),
    );
    progress.set_message(format!("Uploading {}", args.file.display()));
    let bar = progress.clone();
    let stream = tokio_util::io::ReaderStream::with_capacity(upload.file, 1 << 20).inspect(move |chunk| {
        if let Ok(chunk) = chunk {
            bar.inc(chunk.len() as u64);
        }
    });
    let file_name = args.file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    let part = reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(stream), upload.size)
        .file_name(file_name)
        .mime_str("application/octet-stream")?;
    let mut form = reqwest::multipart::Form::new().part("file", part);
    if let Some(config) = upload.config {
        form = form.text("config", config);
    }
    if let Some(text) = upload.tokenizer {
        form = form.text("tokenizer", text);
    }
    let mut request = client.post(format!("{url}/api/v1/models/{}/versions", args.name)).multipart(form);
    if let Some(version) = args.version {
        request = request.query(&[("version", version)]);
    }
    let response = request.send().await;
    progress.finish_and_clear();
    let response = check(response?).await?;
    Ok(response.json().await?)
}

/// The header that names the model a request is for, so that a load balancer can route by it (see
/// docs/routing.md); the server itself ignores it.
pub const MODEL_HEADER: &str = "x-yunmo-model";

/// Runs `infer`: sends a KServe V2 request and prints the response JSON.
pub async fn infer(server: &ServerArgs, args: InferArgs) -> anyhow::Result<()> {
    let body = read_json_arg(&args.input, "input")?;
    let url = &server.base_url()?;
    let target = match args.version {
        Some(version) => format!("{url}/v2/models/{}/versions/{version}/infer", args.name),
        None => format!("{url}/v2/models/{}/infer", args.name),
    };
    let request = server.client()?.post(target).header(reqwest::header::CONTENT_TYPE, "application/json");
    // A load balancer in front of several replicas (deploy/haproxy/yunmo.cfg) routes by this header to the
    // replicas that have the model loaded.
    let response = request.header(MODEL_HEADER, args.name.as_str()).body(body).send().await?;
    let response = check(response).await?;
    let body: Value = response.json().await?;
    outln!("{}", serde_json::to_string_pretty(&body)?);
    Ok(())
}
