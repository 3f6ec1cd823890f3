//! `gliznet serve`: flags into [`gliznet::serve::ServeOptions`], the listener, signals.

use crate::cli::model_args::ClassifierArgs;
use anyhow::{Context, Result};
use clap::Args;
use gliznet::classifier::{Classifier, Method};
use gliznet::error::input_error;
use gliznet::serve::{serve, BatchLimits, ServeOptions};
use std::time::Duration;

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    gliznet serve --port 8080\n  \
    curl -s localhost:8080/v1/classify -d '{\"text\": \"The match went to penalties\", \"labels\": [\"sports\", \"politics\"]}'\n\n\
    Routes: POST /v1/classify, GET /health, /info, /v1/models, /metrics, /openapi.json.\n\
    SIGTERM or Ctrl-C stops accepting, answers what is in flight (at most --shutdown-timeout-s) and exits 0.")]
pub struct ServeArgs {
    #[command(flatten)]
    classifier: ClassifierArgs,
    /// Address to listen on (0.0.0.0 to accept other machines)
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0: any free port; the address is printed on stderr)
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Most texts scored together (texts of concurrent requests are batched up to it)
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    max_batch_texts: u64,
    /// Sequences per encoder pass, as in predict (the texts scored together are sorted by
    /// length and run in passes of this size)
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=super::MAX_BATCH_SIZE))]
    batch_size: u32,
    /// Most tokens (texts and labels, before packing) in one encoder batch
    #[arg(long, default_value_t = 16384, value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    max_batch_tokens: u64,
    /// How long a request waits for others to fill its batch, in milliseconds
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    max_wait_ms: u64,
    /// Most texts accepted and not yet answered; beyond it requests get 503 and Retry-After
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_queue: u64,
    /// Largest request body in bytes (413 beyond; at once when Content-Length says so)
    #[arg(long, default_value_t = 1 << 20, value_parser = clap::value_parser!(u64).range(64..=1 << 30))]
    max_request_bytes: u64,
    /// Seconds a request's headers may take to arrive (the connection is then closed; an idle
    /// keep-alive connection too), and then its body (408)
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    request_timeout_s: u64,
    /// Most labels one text may be scored against (413 beyond)
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    max_labels: u64,
    /// Name of an environment variable holding an API key: every route but /health then needs
    /// `Authorization: Bearer <key>`
    #[arg(long, value_name = "NAME")]
    api_key_env: Option<String>,
    /// Seconds a shutdown waits for requests in flight
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=3600))]
    shutdown_timeout_s: u64,
}

pub fn run(args: ServeArgs) -> Result<()> {
    let api_key = match &args.api_key_env {
        None => None,
        Some(name) => match std::env::var(name) {
            Ok(key) if !key.is_empty() => Some(key),
            Ok(_) => {
                return Err(input_error(format!(
                    "--api-key-env {name}: the variable is empty"
                )))
            }
            Err(_) => {
                return Err(input_error(format!(
                    "--api-key-env {name}: no such environment variable (or not UTF-8)"
                )))
            }
        },
    };
    let options = ServeOptions {
        limits: BatchLimits {
            max_texts: args.max_batch_texts as usize,
            encoder_batch: args.batch_size as usize,
            max_tokens: args.max_batch_tokens as usize,
            max_wait: Duration::from_millis(args.max_wait_ms),
            max_queue: args.max_queue as usize,
        },
        max_request_bytes: args.max_request_bytes as usize,
        request_timeout: Duration::from_secs(args.request_timeout_s),
        max_labels: args.max_labels as usize,
        api_key,
        shutdown_timeout: Duration::from_secs(args.shutdown_timeout_s),
    };
    args.classifier.check()?;
    let classifier_args = args.classifier.clone();
    let load = move || -> Result<Classifier> {
        let classifier = classifier_args.open(Method::Gliznet)?;
        eprintln!("model loaded: {}", classifier.loaded.name);
        Ok(classifier)
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let address = format!("{}:{}", args.host, args.port);
        let listener = tokio::net::TcpListener::bind(&address)
            .await
            .map_err(|e| input_error(format!("--host/--port {address}: cannot listen: {e}")))?;
        let local = listener.local_addr()?;
        eprintln!("listening on http://{local}");
        serve(listener, load, options, shutdown_signal()).await?;
        eprintln!("stopped");
        Ok(())
    })
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
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
        () = ctrl_c => {}
        () = terminate => {}
    }
    eprintln!("shutting down: answering requests in flight");
}
