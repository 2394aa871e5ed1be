//! `kindred-predict`: the predict function, as an AWS Lambda or a local HTTP server.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use kindred_core::store::Store;
use kindred_predict::{api, cache::ModelCache};
use tracing::info;

/// Kindred's predict function: POST /predict {"user_handle": 1} answers with the most similar
/// customers, ranked by cosine similarity. Runs as an AWS Lambda when started by the Lambda
/// runtime (or `cargo lambda watch`), and as a local HTTP server with --listen.
#[derive(Parser, Debug)]
#[command(name = "kindred-predict", version, about, long_about = None)]
struct Cli {
    /// Model store: a folder or s3://bucket/prefix (S3 honours AWS_ENDPOINT_URL).
    #[arg(long, env = "KINDRED_STORE", default_value = "./trained_model")]
    store: String,
    /// Serve HTTP on this address instead of running as a Lambda (e.g. 127.0.0.1:5000).
    #[arg(long, env = "KINDRED_LISTEN")]
    listen: Option<SocketAddr>,
    /// Re-check the store for a newer model at most this often (seconds).
    #[arg(long, env = "KINDRED_REFRESH_SECONDS", default_value_t = 30)]
    refresh_seconds: u64,
    /// Log format on stderr (default: json under Lambda, text otherwise).
    #[arg(long, env = "KINDRED_LOG_FORMAT", value_parser = ["text", "json"])]
    log_format: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let in_lambda = std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some();
    let json = cli.log_format.as_deref().map_or(in_lambda, |f| f == "json");
    let filter = tracing_subscriber::EnvFilter::try_from_env("KINDRED_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        logs.json().without_time().init();
    } else {
        logs.init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, in_lambda)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, in_lambda: bool) -> anyhow::Result<()> {
    let store = Store::open(&cli.store).await?;
    let cache = ModelCache::new(store, Duration::from_secs(cli.refresh_seconds));
    let app = api::router(cache);
    match cli.listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            info!(address = %listener.local_addr()?, store = %cli.store, "serving");
            axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await?;
            info!("stopped");
            Ok(())
        }
        None if in_lambda => lambda_http::run(app).await.map_err(|e| anyhow::anyhow!(e)),
        None => anyhow::bail!("not running under AWS Lambda: pass --listen ADDRESS to serve HTTP locally"),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
