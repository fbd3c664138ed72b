//! `yunmo`: the server (`yunmo serve`) and the client commands, in one binary.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use yunmo_server::{FlagOverrides, Listeners, RunOptions, Settings};

/// Yunmo (云模): a self-hostable model-as-a-service platform.
///
/// Run `yunmo serve` to start a server on the embedded defaults (SQLite and a local folder under
/// ./yunmo-data, HTTP on 127.0.0.1:8080), then push models and call them with the commands below or any
/// KServe V2 client (tritonclient, the KServe SDK).
#[derive(Debug, Parser)]
#[command(name = "yunmo", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Manage models on a running server.
    Models {
        #[command(flatten)]
        server: yunmo_cli::ServerArgs,
        #[command(subcommand)]
        command: yunmo_cli::ModelsCommand,
    },
    /// Run one inference request (KServe V2 JSON) and print the response.
    Infer {
        #[command(flatten)]
        server: yunmo_cli::ServerArgs,
        #[command(flatten)]
        args: yunmo_cli::InferArgs,
    },
    /// Manage tenants (admin key).
    Tenants {
        #[command(flatten)]
        server: yunmo_cli::ServerArgs,
        #[command(subcommand)]
        command: yunmo_cli::TenantsCommand,
    },
    /// Create, list and revoke API keys (admin key).
    Keys {
        #[command(flatten)]
        server: yunmo_cli::ServerArgs,
        #[command(subcommand)]
        command: yunmo_cli::KeysCommand,
    },
    /// Report usage and cost per tenant, grouped by model, key or day (table or CSV).
    Usage {
        #[command(flatten)]
        server: yunmo_cli::ServerArgs,
        #[command(flatten)]
        args: yunmo_cli::UsageArgs,
    },
    /// Show the newest management actions (who did what, when, from where, with what status).
    Audit {
        #[command(flatten)]
        server: yunmo_cli::ServerArgs,
        #[command(flatten)]
        args: yunmo_cli::AuditArgs,
    },
    /// Show the key in use: its id, tenant, scopes and model allow-list.
    Whoami {
        #[command(flatten)]
        server: yunmo_cli::ServerArgs,
    },
    /// Print the management API's OpenAPI description.
    Openapi,
    /// Apply the metadata store's pending migrations and exit (a Kubernetes pre-upgrade Job runs this).
    ///
    /// Reads the configuration as `yunmo serve` does (defaults, --config FILE, YUNMO__* variables) and opens
    /// only the metadata store: PostgreSQL at storage.postgres_url under the same advisory lock replicas take
    /// at start, or SQLite in storage.data_dir. Touches no model files and no keys. Fails, changing nothing,
    /// on a database newer than this binary or a migration edited after it was applied.
    Migrate {
        /// TOML config file layered over the defaults.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Upload, list and delete dataset files (CSV) for training jobs.
    Files {
        #[command(flatten)]
        server: yunmo_cli::ServerArgs,
        #[command(subcommand)]
        command: yunmo_cli::FilesCommand,
    },
    /// Create, follow and cancel background jobs (training a model from a CSV file).
    Jobs {
        #[command(flatten)]
        server: yunmo_cli::ServerArgs,
        #[command(subcommand)]
        command: yunmo_cli::JobsCommand,
    },
    /// Run one job's work (the server starts this in a child process; not for people).
    #[command(hide = true)]
    JobRun {
        /// The task file the server wrote.
        spec: PathBuf,
    },
}

/// `yunmo serve`: configuration comes from the compiled-in defaults (config/default.toml), then
/// --config FILE, then YUNMO__SECTION__KEY environment variables, then these flags.
#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// TOML config file layered over the defaults.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Bind address (server.host).
    #[arg(long)]
    host: Option<String>,
    /// HTTP port; 0 picks a free one (server.http_port).
    #[arg(long)]
    http_port: Option<u16>,
    /// gRPC port; 0 picks a free one (server.grpc_port).
    #[arg(long)]
    grpc_port: Option<u16>,
    /// Data directory for the database and model files (storage.data_dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Log filter, e.g. info or yunmo=debug (telemetry.log_level).
    #[arg(long)]
    log_level: Option<String>,
    /// Once ready, write the bound addresses here as JSON ({"http": "127.0.0.1:P1", "grpc": "127.0.0.1:P2"}).
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Print the effective configuration as TOML-equivalent JSON and exit.
    #[arg(long)]
    print_config: bool,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Migrate { config } => migrate(config),
        Command::JobRun { spec } => return yunmo_server::task::run(&spec),
        command => client(command),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // The reader of standard output went away (`yunmo models ls | head`): not an error.
        Err(error) if yunmo_cli::is_closed_pipe(&error) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // The error and its causes, never a backtrace (whatever RUST_BACKTRACE says).
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn client(command: Command) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        match command {
            Command::Serve(_) | Command::Migrate { .. } | Command::JobRun { .. } => unreachable!("run by main"),
            Command::Files { server, command } => yunmo_cli::files(&server, command).await,
            Command::Jobs { server, command } => yunmo_cli::jobs(&server, command).await,
            Command::Models { server, command } => yunmo_cli::models(&server, command).await,
            Command::Infer { server, args } => yunmo_cli::infer(&server, args).await,
            Command::Tenants { server, command } => yunmo_cli::tenants(&server, command).await,
            Command::Keys { server, command } => yunmo_cli::keys(&server, command).await,
            Command::Usage { server, args } => yunmo_cli::usage(&server, args).await,
            Command::Audit { server, args } => yunmo_cli::audit(&server, args).await,
            Command::Whoami { server } => yunmo_cli::whoami(&server).await,
            Command::Openapi => {
                use std::io::Write as _;
                write!(std::io::stdout().lock(), "{}", yunmo_api::openapi::document_json())?;
                Ok(())
            }
        }
    })
}

fn migrate(config: Option<PathBuf>) -> anyhow::Result<()> {
    let settings = Settings::load(config.as_deref(), std::env::vars(), &FlagOverrides::default()).map_err(anyhow::Error::msg)?;
    yunmo_server::init_tracing(&settings.telemetry);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (store, version) = runtime.block_on(yunmo_server::migrate(&settings))?;
    use std::io::Write as _;
    writeln!(std::io::stdout().lock(), "{store} is at schema version {version}")?;
    Ok(())
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let flags = FlagOverrides {
        host: args.host,
        http_port: args.http_port,
        grpc_port: args.grpc_port,
        data_dir: args.data_dir,
        log_level: args.log_level,
    };
    let settings = Settings::load(args.config.as_deref(), std::env::vars(), &flags).map_err(anyhow::Error::msg)?;
    if args.print_config {
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), "{}", serde_json::to_string_pretty(&settings)?)?;
        return Ok(());
    }
    yunmo_server::init_tracing(&settings.telemetry);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if settings.server.worker_threads > 0 {
        builder.worker_threads(settings.server.worker_threads);
    }
    let served = builder.enable_all().build()?.block_on(async move {
        let listeners = Listeners::bind(&settings).await?;
        let options = RunOptions { ready_file: args.ready_file };
        yunmo_server::run(listeners, settings, options, yunmo_server::shutdown_signal()).await
    });
    // The async runtime is gone, and with it every loaded model: wait for their runtime threads to finish
    // (a load in flight, a session being dropped) before exit runs the native runtimes' static destructors.
    let left = yunmo_backend::threads::wait_idle(std::time::Duration::from_secs(60));
    if left > 0 {
        eprintln!("yunmo: {left} runtime threads still running after 60 s; exiting anyway");
    }
    served
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
