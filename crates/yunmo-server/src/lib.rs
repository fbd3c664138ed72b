//! The Yunmo server: [`Settings`], wiring of registry, runtimes, service and transports, telemetry and
//! graceful shutdown. [`run`] takes already-bound listeners and a shutdown future, so tests can start a
//! server on port 0 in-process or through the `yunmo` binary.

mod alerting;
mod calibrate;
mod conn;
mod http;
mod measure;
pub mod settings;
pub mod task;
pub mod tls;

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use yunmo_api::{ApiConfig, AppState};
use yunmo_backend::BackendFactory;
use yunmo_registry::{Registry, RegistryConfig};
use yunmo_service::{InferenceService, ServiceConfig, WorkerConfig};

pub use settings::{FlagOverrides, Settings};

/// Listeners the server runs on.
pub struct Listeners {
    /// HTTP (KServe V2 REST, management API, metrics).
    pub http: TcpListener,
    /// gRPC (KServe V2 gRPC, grpc.health.v1).
    pub grpc: TcpListener,
}

impl Listeners {
    /// Binds the addresses in `settings`.
    pub async fn bind(settings: &Settings) -> anyhow::Result<Listeners> {
        let address = format!("{}:{}", settings.server.host, settings.server.http_port);
        let http = TcpListener::bind(&address).await.with_context(|| format!("cannot bind HTTP to {address}"))?;
        let address = format!("{}:{}", settings.server.host, settings.server.grpc_port);
        let grpc = TcpListener::bind(&address).await.with_context(|| format!("cannot bind gRPC to {address}"))?;
        Ok(Listeners { http, grpc })
    }
}

/// Installs the process-wide Prometheus recorder once.
fn prometheus() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let mut builder = PrometheusBuilder::new().set_buckets(&yunmo_service::metrics::SECONDS_BUCKETS).ok()?;
            for (name, buckets) in yunmo_service::metrics::BUCKETS {
                let matcher = metrics_exporter_prometheus::Matcher::Full(name.to_string());
                builder = builder.set_buckets_for_metric(matcher, buckets).ok()?;
            }
            builder.install_recorder().map_err(|error| tracing::warn!(%error, "Metrics recorder not installed.")).ok()
        })
        .clone()
}

/// Starts the ONNX runtime factory. A missing library is logged, not fatal: the server still serves the
/// registry and health, and ONNX requests answer 503 naming the missing file.
fn backends(settings: &Settings) -> anyhow::Result<Vec<Arc<dyn BackendFactory>>> {
    let mut factories: Vec<Arc<dyn BackendFactory>> = Vec::new();
    let library = settings.onnx_library();
    match yunmo_backend_onnx::OnnxFactory::new(&library) {
        Ok(factory) => {
            tracing::info!(library = %library.display(), "ONNX Runtime loaded.");
            factories.push(Arc::new(factory));
        }
        Err(error) => {
            tracing::error!(%error, "ONNX Runtime is unavailable; run scripts/fetch-assets.sh ort or set backends.onnx.library_path.");
        }
    }
    let gguf = &settings.backends.gguf;
    let config = yunmo_backend_gguf::GgufConfig {
        threads: gguf.threads,
        max_sequences: gguf.max_sequences,
        context_per_sequence: gguf.context_per_sequence,
        batch_tokens: gguf.batch_tokens,
        queue_capacity: settings.scheduler.queue_capacity,
        gpu_layers: gguf.gpu_layers,
        prefix_cache: gguf.prefix_cache,
        prefill_chunk: gguf.prefill_chunk,
        options: Default::default(),
    };
    factories.push(Arc::new(yunmo_backend_gguf::GgufFactory::new(config)?));
    Ok(factories)
}

/// Writes the bound addresses as JSON, atomically (temp file, then rename).
fn write_ready_file(path: &Path, http: std::net::SocketAddr, grpc: std::net::SocketAddr) -> anyhow::Result<()> {
    let text = serde_json::json!({ "http": http.to_string(), "grpc": grpc.to_string(), "pid": std::process::id() }).to_string();
    let temp = path.with_extension("tmp");
    std::fs::write(&temp, text).with_context(|| format!("cannot write {}", temp.display()))?;
    std::fs::rename(&temp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Options of one run beyond the settings.
#[derive(Debug, Default, Clone)]
pub struct RunOptions {
    /// Where to write the bound addresses once ready.
    pub ready_file: Option<std::path::PathBuf>,
}

/// Runs the server until `shutdown` completes, then lets in-flight requests finish (up to the grace period).
pub async fn run(
    listeners: Listeners,
    settings: Settings,
    options: RunOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    tracing::info!(settings = %serde_json::to_string(&settings).unwrap_or_default(), "Effective configuration.");
    let read_key = |file: &str| yunmo_registry::EncryptionKey::from_file(std::path::Path::new(file)).map(std::sync::Arc::new);
    let encryption_key = match settings.storage.encryption_key_file.as_str() {
        "" => None,
        file => Some(read_key(file).map_err(anyhow::Error::msg)?),
    };
    let previous_encryption_keys = settings
        .storage
        .previous_encryption_key_files
        .iter()
        .map(|file| read_key(file))
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?;
    if let Some(key) = &encryption_key {
        tracing::info!(key_file = %settings.storage.encryption_key_file, key_id = %key.id(), "Model files are encrypted at rest (AES-256-GCM).");
    }
    let registry_config = RegistryConfig {
        data_dir: settings.storage.data_dir.clone(),
        encryption_key,
        previous_encryption_keys,
        orphan_grace: std::time::Duration::from_secs(settings.storage.orphan_grace_s),
        postgres: postgres_options(&settings.storage),
        s3: s3_options(&settings.storage.s3),
    };
    let registry = Registry::open(&registry_config).await.with_context(|| match &registry_config.postgres {
        Some(options) => format!("cannot open the registry in PostgreSQL at {}", yunmo_registry::redact_url(&options.url)),
        None => format!("cannot open the registry in {}", settings.storage.data_dir.display()),
    })?;
    let registry_changes = registry.changes();
    let gate = gate(&settings, registry.clone()).await?;
    let service = InferenceService::new(
        registry,
        backends(&settings)?,
        ServiceConfig {
            workers: WorkerConfig {
                queue_capacity: settings.scheduler.queue_capacity,
                intra_op_threads: settings.backends.onnx.intra_op_threads,
                memory_budget_bytes: settings.scheduler.memory_budget_bytes,
                idle_unload: Duration::from_secs(settings.scheduler.idle_unload_seconds),
            },
            request_timeout: Duration::from_millis(settings.scheduler.request_timeout_ms),
            drift: settings.drift.clone(),
            alerts: alerting::rules(&settings.alerts),
            jobs: jobs_config(&settings)?,
            image_limits: yunmo_service::ImageLimits {
                max_bytes: settings.pipelines.max_image_bytes,
                max_pixels: settings.pipelines.max_image_pixels,
                max_side: settings.pipelines.max_image_side,
            },
            responses_retention: Duration::from_secs(settings.responses.retention_s),
        },
        gate.clone(),
    );
    if let Err(error) = service.apply_desired_states().await {
        tracing::warn!(error = %error.message, "Could not read which versions the cluster keeps loaded; continuing.");
    }
    watch_changes(registry_changes, &service);
    let alert_service = service.clone();
    let shutting_down = Arc::new(AtomicBool::new(false));
    let state = AppState::new(yunmo_api::AppParts {
        service,
        gate: gate.clone(),
        config: Arc::new(ApiConfig {
            max_body_bytes: settings.server.max_body_bytes,
            max_upload_bytes: settings.server.max_upload_bytes,
            max_tensor_elements: settings.server.max_tensor_elements,
            max_header_bytes: settings.server.max_header_bytes,
            max_headers: settings.server.max_headers,
            max_json_bytes: settings.server.max_json_bytes,
        }),
        budget: yunmo_api::body::InflightBudget::new(settings.server.max_inflight_bytes),
        prometheus: if settings.telemetry.metrics { prometheus() } else { None },
        shutting_down: shutting_down.clone(),
        ollama_key: ollama_binding(&settings, &gate).await?,
    });
    let grpc_service = yunmo_api::grpc::GrpcService::server(state.clone());
    let app = match settings.server.cors.layer().map_err(anyhow::Error::msg)? {
        // Outside authentication: a browser's preflight carries no key.
        Some(cors) => yunmo_api::router(state).layer(cors),
        None => yunmo_api::router(state),
    };
    let http_limits = http::HttpLimits {
        max_headers: settings.server.max_headers,
        max_header_bytes: settings.server.max_header_bytes,
        header_read_timeout: Duration::from_secs(settings.server.header_read_timeout_seconds),
    };
    let slots = connection_slots(&settings);
    let tls = match (&settings.server.tls.cert_file, &settings.server.tls.key_file) {
        (cert, key) if !cert.is_empty() => Some(tls::TlsFiles::read(Path::new(cert), Path::new(key))?),
        _ => None,
    };
    let http_address = listeners.http.local_addr()?;
    let grpc_address = listeners.grpc.local_addr()?;
    alerting::start(&settings.alerts, alert_service.clone(), http_address, tls.is_some());
    let job_runner = yunmo_service::JobRunner::start(&alert_service, &replica_name(http_address));
    let stop_jobs = job_runner.stopper();
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<yunmo_api::grpc::GrpcInferenceServiceServer<yunmo_api::grpc::GrpcService>>().await;

    let (stop_sender, stop_receiver) = tokio::sync::watch::channel(false);
    let grace = Duration::from_secs(settings.server.shutdown_grace_seconds);
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("Shutting down: finishing in-flight requests.");
        shutting_down.store(true, Ordering::Relaxed);
        let _ = stop_sender.send(true);
        // Running jobs are handed back at once, not after the requests' grace period.
        let _ = stop_jobs.send(true);
    });
    let mut stop = stop_receiver.clone();
    let http_stopped = async move {
        let _ = stop.wait_for(|stopped| *stopped).await;
    };
    // Every connection is accepted with TCP_NODELAY (small replies must not wait for the peer's delayed ACK).
    let http_server: std::pin::Pin<Box<dyn Future<Output = ()> + Send>> = match &tls {
        Some(files) => Box::pin(http::serve(files.http_listener(listeners.http, slots.clone())?, app, http_limits, http_stopped)),
        None => {
            let listener = http::PlainListener { listener: listeners.http, slots: slots.clone() };
            Box::pin(http::serve(listener, app, http_limits, http_stopped))
        }
    };
    let mut stop = stop_receiver.clone();
    let mut grpc_builder = tonic::transport::Server::builder()
        .http2_max_header_list_size(settings.server.max_header_bytes as u32)
        .http2_keepalive_interval(Some(http::HTTP2_KEEPALIVE))
        .http2_keepalive_timeout(Some(http::HTTP2_KEEPALIVE));
    if let Some(files) = &tls {
        grpc_builder = grpc_builder.tls_config(files.grpc()).context("invalid TLS settings for gRPC")?;
    }
    let grpc_incoming = futures::stream::unfold((listeners.grpc, slots), |(listener, slots)| async move {
        let (io, _) = slots.accept(&listener, "grpc").await;
        Some((Ok::<_, std::io::Error>(io), (listener, slots)))
    });
    let (reflection, reflection_v1alpha) = grpc_reflection()?;
    let grpc_server = grpc_builder
        .layer(conn::TrackCallsLayer)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .add_service(grpc_service)
        .serve_with_incoming_shutdown(grpc_incoming, async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
            health_reporter.set_not_serving::<yunmo_api::grpc::GrpcInferenceServiceServer<yunmo_api::grpc::GrpcService>>().await;
        });
    if let Some(path) = &options.ready_file {
        write_ready_file(path, http_address, grpc_address)?;
    }
    let console = format!("{}://{http_address}{}", if tls.is_some() { "https" } else { "http" }, yunmo_console::PREFIX);
    tracing::info!(http = %http_address, grpc = %grpc_address, tls = tls.is_some(), %console, "Yunmo is ready.");
    let servers = async {
        let ((), grpc) = tokio::join!(http_server, grpc_server);
        grpc.context("the gRPC server failed")?;
        anyhow::Ok(())
    };
    let mut stop = stop_receiver;
    tokio::select! {
        result = servers => result?,
        _ = async {
            let _ = stop.wait_for(|stopped| *stopped).await;
            tokio::time::sleep(grace).await;
        } => tracing::warn!(seconds = grace.as_secs(), "Grace period over; closing remaining connections."),
    }
    job_runner.stop().await;
    flush_usage(&gate).await;
    tracing::info!("Stopped.");
    Ok(())
}

/// The service's `[jobs]` settings; children run this very binary.
fn jobs_config(settings: &Settings) -> anyhow::Result<yunmo_service::JobsConfig> {
    let jobs = &settings.jobs;
    Ok(yunmo_service::JobsConfig {
        workers: jobs.workers,
        lease: Duration::from_secs(jobs.lease_s.max(1)),
        max_attempts: jobs.max_attempts.max(1),
        max_runtime: Duration::from_secs(jobs.max_runtime_s.max(1)),
        max_file_bytes: jobs.max_file_bytes,
        max_rows: jobs.max_rows,
        max_columns: jobs.max_columns,
        work_dir: settings.storage.data_dir.join("jobs"),
        onnx_library: Some(settings.onnx_library()),
        // The running binary itself, even after an upgrade replaced the file on disk.
        program: match std::path::Path::new("/proc/self/exe") {
            path if path.exists() => path.to_path_buf(),
            _ => std::env::current_exe().context("cannot find this program's path to run jobs with")?,
        },
    })
}

/// How this replica names itself in job leases: host name, process id and HTTP address.
/// gRPC server reflection (v1, and v1alpha for older grpcurl): the inference and health services, described
/// without the proto files. Open like health: it tells the protocol, nothing of models or tenants.
type Reflection<T> = tonic_reflection::server::v1::ServerReflectionServer<T>;
type ReflectionAlpha<T> = tonic_reflection::server::v1alpha::ServerReflectionServer<T>;

fn grpc_reflection() -> anyhow::Result<(
    Reflection<impl tonic_reflection::server::v1::ServerReflection>,
    ReflectionAlpha<impl tonic_reflection::server::v1alpha::ServerReflection>,
)> {
    let builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(yunmo_proto::GRPC_FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let v1 = builder().build_v1().context("gRPC reflection (v1)")?;
    let v1alpha = builder().build_v1alpha().context("gRPC reflection (v1alpha)")?;
    Ok((v1, v1alpha))
}

/// The key keyless requests to the Ollama routes act as (`ollama.key`): checked now, so a wrong key stops
/// the start, and the binding is written to the audit log.
async fn ollama_binding(settings: &Settings, gate: &yunmo_auth::Gate) -> anyhow::Result<Option<axum::http::HeaderValue>> {
    let key = settings.ollama.key.expose();
    if key.is_empty() {
        return Ok(None);
    }
    let bearer = format!("Bearer {key}");
    let credentials = yunmo_auth::Credentials { authorization: Some(&bearer), api_key: None };
    let principal = gate.authenticate(credentials).await.map_err(|error| anyhow::anyhow!("ollama.key: {}", error.message))?;
    gate.audit(yunmo_registry::AuditEntry {
        at_ms: yunmo_types::calendar::now_ms(),
        key_id: principal.key_id.clone(),
        tenant: principal.tenant.clone(),
        action: "BIND ollama.key".into(),
        target: "/api/* (Ollama routes, requests without a key)".into(),
        remote: "-".into(),
        outcome: "bound".into(),
    })
    .await;
    tracing::warn!(key = %principal.key_id, tenant = %principal.tenant, "Requests to the Ollama routes without a key act as this key (ollama.key).");
    let mut value = axum::http::HeaderValue::from_str(&bearer).context("ollama.key holds characters a header cannot")?;
    value.set_sensitive(true);
    Ok(Some(value))
}

fn replica_name(http: std::net::SocketAddr) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|name| name.trim().to_string()).unwrap_or_default();
    format!("{host}:{}:{http}", std::process::id())
}

/// The connection slots both servers share, within the process's open-file limit (raised to its maximum).
fn connection_slots(settings: &Settings) -> conn::Slots {
    let mut max_connections = settings.server.max_connections;
    if let Some(open_files) = conn::raise_open_file_limit() {
        // Leave room for the database, model files, log and the runtimes' own descriptors.
        let room = usize::try_from(open_files.saturating_sub(256)).unwrap_or(usize::MAX).max(16);
        if max_connections > room {
            tracing::warn!(
                max_connections,
                open_files,
                lowered_to = room,
                "server.max_connections is above what the open-file limit allows; lowered (raise `ulimit -n` to allow more)."
            );
            max_connections = room;
        }
    }
    conn::Slots::new(conn::ConnectionLimits { max_connections, idle_timeout: Duration::from_secs(settings.server.idle_timeout_seconds) })
}

/// Writes the last usage events at shutdown, retrying a failing database a few times; says how many are lost.
async fn flush_usage(gate: &yunmo_auth::Gate) {
    const ATTEMPTS: u32 = 5;
    for attempt in 1..=ATTEMPTS {
        match gate.flush().await {
            Ok(()) => {
                tracing::info!("Usage events written.");
                return;
            }
            Err(unwritten) if attempt < ATTEMPTS => {
                tracing::warn!(unwritten, attempt, "Cannot write usage events yet; retrying.");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(unwritten) => tracing::error!(unwritten, "Usage events could not be written and are lost."),
        }
    }
}

/// The gate, with the bootstrap admin key installed on a database without keys.
async fn gate(settings: &Settings, registry: Registry) -> anyhow::Result<yunmo_auth::Gate> {
    let auth = &settings.auth;
    let config = yunmo_auth::AuthConfig {
        enabled: auth.enabled,
        open_paths: auth.open_paths.clone(),
        flush_interval: Duration::from_millis(auth.usage_flush_ms),
        key_cache_ttl: Duration::from_millis(auth.key_cache_ms),
        limits: limit_store(&settings.limits),
        key_outage_ttl: Duration::from_millis(auth.key_outage_ms),
    };
    let gate = yunmo_auth::Gate::new(registry, config)?;
    if !auth.enabled {
        tracing::warn!("auth.enabled = false: every caller is an admin of tenant 'default'. Use this only on a trusted machine.");
        return Ok(gate);
    }
    let key_file = match auth.bootstrap_key_file.as_str() {
        "" => settings.storage.data_dir.join("bootstrap-admin.key"),
        path => std::path::PathBuf::from(path),
    };
    let configured = (!auth.bootstrap_key.is_empty()).then_some(auth.bootstrap_key.expose());
    match gate.bootstrap(configured, &key_file).await.map_err(|error| anyhow::anyhow!("bootstrap key: {}", error.message))? {
        Some((path, key)) => {
            // Printed once, on the terminal only (never in the log).
            eprintln!("\nBootstrap admin key (shown once; also saved to {}):\n\n    {key}\n", path.display());
            tracing::info!(file = %path.display(), "Created the bootstrap admin key of tenant 'default'.");
        }
        None if configured.is_some() => tracing::info!("Keys exist; auth.bootstrap_key is not installed again."),
        None => {}
    }
    Ok(gate)
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {},
        _ = terminate => {},
    }
}

/// Sets up logging from the telemetry settings.
pub fn init_tracing(settings: &settings::TelemetrySettings) {
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.log_level).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if settings.log_format == "json" { builder.json().try_init() } else { builder.try_init() };
}

/// The metadata store in PostgreSQL, when configured.
fn postgres_options(storage: &settings::StorageSettings) -> Option<yunmo_registry::PgStoreOptions> {
    let url = storage.postgres_url.expose();
    (!url.is_empty()).then(|| yunmo_registry::PgStoreOptions {
        max_connections: storage.postgres_max_connections,
        ..yunmo_registry::PgStoreOptions::new(url)
    })
}

/// Applies the configured metadata store's pending migrations (`yunmo migrate`); returns which store it is
/// (its URL without the password) and its schema version.
pub async fn migrate(settings: &Settings) -> anyhow::Result<(String, u32)> {
    use yunmo_registry::MetadataStore as _;
    match postgres_options(&settings.storage) {
        Some(options) => {
            let store = yunmo_registry::PgStore::connect(&options).await?;
            let version = store.schema_version().await?;
            store.close().await;
            Ok((format!("PostgreSQL {}", yunmo_registry::redact_url(&options.url)), version))
        }
        None => {
            let path = settings.storage.data_dir.join("yunmo.db");
            std::fs::create_dir_all(&settings.storage.data_dir)?;
            let store = yunmo_registry::SqliteStore::open(&path).await?;
            let version = store.schema_version().await?;
            store.close().await;
            Ok((format!("SQLite {}", path.display()), version))
        }
    }
}

/// Where limits are counted.
fn limit_store(limits: &settings::LimitSettings) -> yunmo_auth::LimitStore {
    match limits.store.as_str() {
        "redis" => yunmo_auth::LimitStore::Redis(yunmo_auth::RedisLimits {
            url: limits.redis_url.expose().to_string(),
            timeout: Duration::from_millis(limits.store_timeout_ms),
            on_failure: if limits.on_store_failure == "allow" { yunmo_auth::OnFailure::Allow } else { yunmo_auth::OnFailure::Deny },
        }),
        _ => yunmo_auth::LimitStore::Local,
    }
}

/// Model files in S3, when configured, with this replica's cache budget.
fn s3_options(s3: &settings::S3Settings) -> Option<(yunmo_registry::S3Options, u64)> {
    let set = |value: &str| (!value.is_empty()).then(|| value.to_string());
    let options = yunmo_registry::S3Options {
        bucket: s3.bucket.clone(),
        prefix: s3.prefix.clone(),
        endpoint: set(&s3.endpoint),
        region: set(&s3.region),
        access_key_id: set(&s3.access_key_id),
        secret_access_key: set(s3.secret_access_key.expose()),
        path_style: s3.path_style,
    };
    (!s3.bucket.is_empty()).then_some((options, s3.cache_max_bytes))
}

/// Applies what other replicas commit to the shared metadata store as it commits (a store that is not
/// shared reports nothing). `changes` was subscribed before the start read the store, so nothing committed
/// since is missed. A receiver that fell behind missed changes: it resyncs. A change that could not be
/// applied (the store unreachable) is tried again every second.
fn watch_changes(changes: Option<tokio::sync::broadcast::Receiver<yunmo_registry::Change>>, service: &InferenceService) {
    let Some(mut changes) = changes else { return };
    let service = service.clone();
    tokio::spawn(async move {
        loop {
            let change = match changes.recv().await {
                Ok(change) => change,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => yunmo_registry::Change::Resync,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            // A change that could not be read (the store unreachable) changed nothing here: try again.
            while let Err(error) = service.apply_change(change).await {
                tracing::warn!(error = %error.message, ?change, "Could not apply a change from another replica; retrying in 1 s.");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    });
}
