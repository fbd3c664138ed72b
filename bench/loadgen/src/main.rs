//! `yunmo-loadgen`: closed-loop load for KServe V2 servers, and the in-process floor.
//!
//! `http`: N concurrent connections each send the same request back to back for a duration (after a
//! warm-up) and record every latency. `grpc`: the same over `ModelInfer`, with the request built from a V2
//! JSON body (tensors sent as raw_input_contents). `floor`: the same model and input through ONNX Runtime
//! in-process (no server), one session on this thread. Each prints one JSON line:
//! `{"requests", "errors", "seconds", "rps", "p50_ms", "p90_ms", "p99_ms"}`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Closed-loop load generator for KServe V2 servers, and the in-process ONNX Runtime floor")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Load {
    /// Concurrent requests in flight.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Warm-up seconds (not measured).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
}

#[derive(Subcommand)]
enum Command {
    /// POST a body to a URL.
    Http {
        /// Full infer URL.
        #[arg(long)]
        url: String,
        /// Request body file.
        #[arg(long)]
        body: PathBuf,
        /// Extra header `Name: value` (repeatable).
        #[arg(long)]
        header: Vec<String>,
        /// HTTP method (GET ignores the body: for a transport-only baseline such as /v2/health/live).
        #[arg(long, default_value = "POST")]
        method: String,
        #[command(flatten)]
        load: Load,
    },
    /// ModelInfer over gRPC, the request built from a V2 JSON body.
    Grpc {
        /// host:port.
        #[arg(long)]
        address: String,
        /// Model name.
        #[arg(long)]
        model: String,
        /// V2 JSON request body file.
        #[arg(long)]
        body: PathBuf,
        /// Extra metadata `name: value` on every call (repeatable), e.g. `authorization: Bearer ym_...`.
        #[arg(long)]
        metadata: Vec<String>,
        #[command(flatten)]
        load: Load,
    },
    /// Write the binary (Triton extension) form of a V2 JSON body; prints the header length.
    Binary {
        /// V2 JSON request body file.
        #[arg(long)]
        body: PathBuf,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Time Yunmo's V2 request decoding alone (JSON, and the same tensors in Triton's binary form).
    Decode {
        /// V2 JSON request body file.
        #[arg(long)]
        body: PathBuf,
        /// Iterations.
        #[arg(long, default_value_t = 50)]
        iterations: usize,
    },
    /// The same model and input through ONNX Runtime in-process, no server.
    Floor {
        /// ONNX file.
        #[arg(long)]
        model: PathBuf,
        /// V2 JSON request body file.
        #[arg(long)]
        body: PathBuf,
        /// Repeat the request's rows this many times along the first dimension.
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// libonnxruntime path.
        #[arg(long, env = "ORT_DYLIB_PATH")]
        library: PathBuf,
        /// ONNX Runtime intra-op threads (0: its default).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        #[command(flatten)]
        load: Load,
    },
}

struct Report {
    latencies_us: Vec<u64>,
    errors: u64,
    seconds: f64,
}

impl Report {
    fn print(mut self, rows_per_request: usize) {
        self.latencies_us.sort_unstable();
        let n = self.latencies_us.len();
        let pct = |p: f64| {
            if n == 0 { 0.0 } else { self.latencies_us[((n as f64 * p) as usize).min(n - 1)] as f64 / 1000.0 }
        };
        let line = serde_json::json!({
            "requests": n, "errors": self.errors, "seconds": self.seconds,
            "rps": n as f64 / self.seconds, "rows_per_second": (n * rows_per_request) as f64 / self.seconds,
            "p50_ms": pct(0.50), "p90_ms": pct(0.90), "p99_ms": pct(0.99),
        });
        println!("{line}");
    }
}

/// Runs `concurrency` loops of `call` for warm-up then duration; collects latencies of the measured part.
async fn drive<F, Fut>(load: &Load, call: F) -> Report
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let call = Arc::new(call);
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(load.warmup);
    let end = measure_from + Duration::from_secs_f64(load.duration);
    let mut tasks = Vec::new();
    for _ in 0..load.concurrency {
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let ok = call().await;
                if sent >= measure_from {
                    if ok {
                        latencies.push(sent.elapsed().as_micros() as u64);
                    } else {
                        errors += 1;
                    }
                }
            }
            (latencies, errors)
        }));
    }
    let mut report = Report { latencies_us: Vec::new(), errors: 0, seconds: load.duration };
    for task in tasks {
        let (latencies, errors) = task.await.expect("load task");
        report.latencies_us.extend(latencies);
        report.errors += errors;
    }
    report
}

fn v2_input(body: &PathBuf) -> anyhow::Result<yunmo_types::InferInput> {
    let bytes = Bytes::from(std::fs::read(body).with_context(|| format!("reading {}", body.display()))?);
    let limits = yunmo_api::kserve::decode::DecodeLimits { max_tensor_elements: usize::MAX };
    let input = yunmo_api::kserve::decode::decode_request(bytes, None, limits).map_err(|e| anyhow::anyhow!(e.message))?.input;
    Ok(input)
}

/// The same request in Triton's binary form: JSON header with binary_data_size, then raw tensors.
fn binary_body(input: &yunmo_types::InferInput) -> (Bytes, usize) {
    let specs: Vec<serde_json::Value> = input
        .inputs
        .iter()
        .map(|t| {
            serde_json::json!({"name": t.name(), "shape": t.shape(), "datatype": t.datatype().as_str(),
                                   "parameters": {"binary_data_size": t.binary_size()}})
        })
        .collect();
    let header = serde_json::to_vec(&serde_json::json!({ "inputs": specs })).expect("JSON");
    let mut body = header.clone();
    for tensor in &input.inputs {
        if let yunmo_types::TensorData::Fixed(bytes) = tensor.data() {
            body.extend_from_slice(bytes);
        }
    }
    (Bytes::from(body), header.len())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Http { url, body, header, method, load } => {
                let method = reqwest::Method::from_bytes(method.as_bytes())?;
                yunmo_cli::install_tls_provider();
                let client = reqwest::Client::builder().pool_max_idle_per_host(load.concurrency).build()?;
                let body = Bytes::from(std::fs::read(&body)?);
                let mut headers = reqwest::header::HeaderMap::new();
                headers.insert("content-type", "application/json".parse()?);
                for h in header {
                    let (name, value) = h.split_once(':').context("--header takes 'Name: value'")?;
                    headers.insert(reqwest::header::HeaderName::from_bytes(name.trim().as_bytes())?, value.trim().parse()?);
                }
                let report = drive(&load, move || {
                    let request = if method == reqwest::Method::GET {
                        client.get(&url)
                    } else {
                        client.request(method.clone(), &url).headers(headers.clone()).body(body.clone())
                    };
                    async move {
                        match request.send().await {
                            Ok(response) => response.status().is_success() && response.bytes().await.is_ok(),
                            Err(_) => false,
                        }
                    }
                })
                .await;
                report.print(1);
            }
            Command::Grpc { address, model, body, metadata, load } => {
                let mut extra = tonic::metadata::MetadataMap::new();
                for entry in metadata {
                    let (name, value) = entry.split_once(':').context("--metadata takes 'name: value'")?;
                    extra.insert(tonic::metadata::MetadataKey::from_bytes(name.trim().as_bytes())?, value.trim().parse()?);
                }
                let input = v2_input(&body)?;
                let mut request = yunmo_proto::inference::ModelInferRequest { model_name: model, ..Default::default() };
                for tensor in input.inputs {
                    request.inputs.push(yunmo_proto::inference::model_infer_request::InferInputTensor {
                        name: tensor.name().to_string(),
                        datatype: tensor.datatype().as_str().to_string(),
                        shape: tensor.shape().to_vec(),
                        ..Default::default()
                    });
                    let yunmo_types::TensorData::Fixed(bytes) = tensor.data().clone() else {
                        anyhow::bail!("BYTES inputs are not supported by the gRPC load mode");
                    };
                    request.raw_input_contents.push(bytes);
                }
                // One HTTP/2 connection per concurrent stream, as independent clients would have.
                let mut clients = Vec::new();
                for _ in 0..load.concurrency.clamp(1, 64) {
                    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))?.connect().await?;
                    clients.push(
                        yunmo_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient::new(channel)
                            .max_decoding_message_size(1 << 30),
                    );
                }
                let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
                let report = drive(&load, move || {
                    let index = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % clients.len();
                    let mut client = clients[index].clone();
                    let mut request = tonic::Request::new(request.clone());
                    *request.metadata_mut() = extra.clone();
                    async move { client.model_infer(request).await.is_ok() }
                })
                .await;
                report.print(1);
            }
            Command::Binary { body, out } => {
                let (binary, header_length) = binary_body(&v2_input(&body)?);
                std::fs::write(&out, &binary)?;
                println!("{header_length}");
            }
            Command::Decode { body, iterations } => {
                let json = Bytes::from(std::fs::read(&body)?);
                let input = v2_input(&body)?;
                let (binary, header_length) = binary_body(&input);
                let limits = yunmo_api::kserve::decode::DecodeLimits { max_tensor_elements: usize::MAX };
                let elements: usize = input.inputs.iter().map(|t| t.element_count()).sum();
                let time = |body: &Bytes, header: Option<usize>| {
                    let start = Instant::now();
                    for _ in 0..iterations {
                        yunmo_api::kserve::decode::decode_request(body.clone(), header, limits).expect("decodes");
                    }
                    start.elapsed().as_secs_f64() / iterations as f64
                };
                let json_s = time(&json, None);
                let binary_s = time(&binary, Some(header_length));
                println!(
                    "{}",
                    serde_json::json!({
                        "elements": elements, "json_bytes": json.len(), "binary_bytes": binary.len(),
                        "json_ms": json_s * 1e3, "binary_ms": binary_s * 1e3,
                        "json_mb_per_s": json.len() as f64 / json_s / 1e6, "json_elements_per_us": elements as f64 / json_s / 1e6,
                    })
                );
            }
            Command::Floor { model, body, batch, library, threads, load } => {
                use yunmo_backend::BackendFactory;
                let input = v2_input(&body)?;
                let rows = input.inputs.first().and_then(|t| t.shape().first()).map_or(1, |d| *d as usize);
                let inputs = if batch > 1 { yunmo_scheduler::merge(vec![input.inputs; batch], rows * batch) } else { input.inputs };
                let factory = yunmo_backend_onnx::OnnxFactory::new(&library).map_err(|e| anyhow::anyhow!(e.to_string()))?;
                let mut backend = factory
                    .load(&model, &yunmo_backend::LoadOptions { intra_op_threads: threads })
                    .map_err(|e| anyhow::anyhow!(e.to_string()))?;
                let outputs: Vec<String> = backend.signature().outputs.iter().map(|o| o.name.clone()).collect();
                let warm_end = Instant::now() + Duration::from_secs_f64(load.warmup);
                while Instant::now() < warm_end {
                    backend.infer(inputs.clone(), &outputs).map_err(|e| anyhow::anyhow!(e.to_string()))?;
                }
                let mut report = Report { latencies_us: Vec::new(), errors: 0, seconds: 0.0 };
                let start = Instant::now();
                let end = start + Duration::from_secs_f64(load.duration);
                while Instant::now() < end {
                    let sent = Instant::now();
                    match backend.infer(inputs.clone(), &outputs) {
                        Ok(_) => report.latencies_us.push(sent.elapsed().as_micros() as u64),
                        Err(_) => report.errors += 1,
                    }
                }
                report.seconds = start.elapsed().as_secs_f64();
                report.print(rows * batch);
            }
        }
        anyhow::Ok(())
    })
}
