//! `gliznet serve`: the classifier over HTTP (axum on tokio). Requests are validated and
//! tokenized on the async runtime; scoring happens on the batching thread
//! ([`batcher`]), which packs texts from concurrent requests into one encoder call. The
//! answer to `POST /v1/classify` is byte for byte what `predict --format json` prints for the
//! same texts scored in the same batch.

pub mod batcher;
mod conn;
mod metrics;
mod request;

use crate::classifier::Classifier;
use crate::model::Quantization;
use crate::results::{Format, ResultWriter};
use anyhow::Result;
use axum::body::{Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
pub use batcher::BatchLimits;
use batcher::{Batcher, Job, Refused};
use metrics::Metrics;
use serde_json::json;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// Every route the server answers (metrics label requests by these, others as "other").
pub const ROUTES: [&str; 6] = [
    "/v1/classify",
    "/health",
    "/info",
    "/v1/models",
    "/metrics",
    "/openapi.json",
];

/// The OpenAPI description served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub limits: BatchLimits,
    /// Largest request body accepted (413 beyond: at once when `Content-Length` says so).
    pub max_request_bytes: usize,
    /// How long a request's headers, and then its body, may take to arrive (the connection is
    /// closed, or the request answered 408).
    pub request_timeout: Duration,
    /// Most labels one text may be scored against.
    pub max_labels: usize,
    /// When set, every route but `/health` needs `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
    /// How long a shutdown waits for requests in flight.
    pub shutdown_timeout: Duration,
}

/// What a loaded server knows about its model (`GET /info`).
struct Engine {
    classifier: Arc<Classifier>,
    batcher: Batcher,
    info: serde_json::Value,
}

struct AppState {
    engine: OnceLock<Arc<Engine>>,
    metrics: Arc<Metrics>,
    options: ServeOptions,
}

/// Serves on `listener` until `shutdown` completes, then stops accepting, answers what is in
/// flight (at most `shutdown_timeout`), and returns. The model is loaded by `load` on a
/// blocking thread after the listener is up; `/health` says "loading" until then. A model
/// that fails to load ends the server with that error.
pub async fn serve<L, S>(
    listener: tokio::net::TcpListener,
    load: L,
    options: ServeOptions,
    shutdown: S,
) -> Result<()>
where
    L: FnOnce() -> Result<Classifier> + Send + 'static,
    S: Future<Output = ()> + Send + 'static,
{
    let state = Arc::new(AppState {
        engine: OnceLock::new(),
        metrics: Arc::new(Metrics::new()?),
        options,
    });
    let app = router(Arc::clone(&state));

    let (load_failed_tx, load_failed_rx) = tokio::sync::oneshot::channel::<anyhow::Error>();
    let loader_state = Arc::clone(&state);
    tokio::task::spawn_blocking(move || match load() {
        Ok(classifier) => {
            let engine = start_engine(classifier, &loader_state);
            let _ = loader_state.engine.set(Arc::new(engine));
        }
        Err(e) => {
            let _ = load_failed_tx.send(e);
        }
    });

    let stopping = Arc::new(tokio::sync::Notify::new());
    let stop_signal = Arc::clone(&stopping);
    let load_error: Arc<std::sync::Mutex<Option<anyhow::Error>>> = Arc::default();
    let load_error_slot = Arc::clone(&load_error);
    let server =
        conn::serve_connections(listener, app, state.options.request_timeout, async move {
            tokio::select! {
                () = shutdown => {}
                Ok(e) = load_failed_rx => {
                    *load_error_slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                }
            }
            stop_signal.notify_one();
        });
    let timeout = state.options.shutdown_timeout;
    tokio::select! {
        () = server => {}
        () = async { stopping.notified().await; tokio::time::sleep(timeout).await } => {}
    }
    if let Some(e) = load_error.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(e);
    }
    if let Some(engine) = state.engine.get() {
        let engine = Arc::clone(engine);
        tokio::task::spawn_blocking(move || engine.batcher.stop()).await?;
    }
    Ok(())
}

fn start_engine(classifier: Classifier, state: &Arc<AppState>) -> Engine {
    let config = &classifier.loaded.config;
    let info = json!({
        "model": classifier.loaded.name,
        "version": env!("CARGO_PKG_VERSION"),
        "method": "gliznet",
        "threshold": config.default_threshold(),
        "max_length": config.max_length,
        "max_label_tokens": config.max_label_tokens,
        "label_template": config.label_template,
        "quantized": classifier.quantization == Some(Quantization::Int8),
        "precision": classifier.quantization.map_or("f32", Quantization::name),
        "subtract_label_prior": classifier.subtract_label_prior,
        "device": if classifier.device.is_cpu() { "cpu" } else { "cuda" },
        "limits": {
            "max_batch_texts": state.options.limits.max_texts,
            "batch_size": state.options.limits.encoder_batch,
            "max_batch_tokens": state.options.limits.max_tokens,
            "max_wait_ms": state.options.limits.max_wait.as_millis() as u64,
            "max_queue": state.options.limits.max_queue,
            "max_request_bytes": state.options.max_request_bytes,
            "request_timeout_s": state.options.request_timeout.as_secs_f64(),
            "max_labels": state.options.max_labels,
        },
    });
    let classifier = Arc::new(classifier);
    let batcher = Batcher::start(
        Arc::clone(&classifier),
        state.options.limits,
        Arc::clone(&state.metrics),
    );
    Engine {
        classifier,
        batcher,
        info,
    }
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/classify", post(classify))
        .route("/health", get(health))
        .route("/info", get(info))
        .route("/v1/models", get(models))
        .route("/metrics", get(metrics_text))
        .route("/openapi.json", get(openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            authorize,
        ))
        .layer(middleware::from_fn_with_state(Arc::clone(&state), count))
        .with_state(state)
}

/// An error answer: `{"error": {"message", "type"}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }

    /// The answer, and the connection closed after it: what is left of the request's body is
    /// not read.
    fn closing(self) -> Response {
        let mut response = self.into_response();
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        response
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"message": self.message, "type": self.kind}});
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

fn engine(state: &AppState) -> Result<Arc<Engine>, ApiError> {
    state.engine.get().cloned().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "loading",
            "the model is still loading",
        )
    })
}

/// A request's body, up to `--max-request-bytes`: refused unread when its `Content-Length` says
/// it is longer (413 at once), refused as soon as it grows past the limit (413, a chunked body),
/// and cut with 408 when it has not all arrived within `--request-timeout-s`.
async fn read_body(request: Request, options: &ServeOptions) -> Result<Bytes, ApiError> {
    let limit = options.max_request_bytes;
    let too_large = || {
        ApiError::too_large(format!(
            "the request body is larger than {limit} bytes (--max-request-bytes)"
        ))
    };
    // hyper has answered 400 to a Content-Length that is not a number.
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    let mut body = request.into_body();
    let mut bytes = Vec::with_capacity(declared.map_or(0, |length| length as usize));
    let read = async {
        while let Some(frame) =
            std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
        {
            let frame = frame.map_err(|e| {
                ApiError::invalid(format!("the request body could not be read: {e}"))
            })?;
            if let Ok(data) = frame.into_data() {
                if bytes.len() + data.len() > limit {
                    return Err(too_large());
                }
                bytes.extend_from_slice(&data);
            }
        }
        Ok(())
    };
    match tokio::time::timeout(options.request_timeout, read).await {
        Ok(read) => read?,
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!(
                    "the request body did not arrive within {} s (--request-timeout-s)",
                    options.request_timeout.as_secs_f64()
                ),
            ))
        }
    }
    Ok(Bytes::from(bytes))
}

async fn classify(
    State(state): State<Arc<AppState>>,
    request: Request,
) -> Result<Response, ApiError> {
    let start = Instant::now();
    let body = match read_body(request, &state.options).await {
        Ok(body) => body,
        Err(e) => return Ok(e.closing()),
    };
    let engine = engine(&state)?;
    let request = request::parse(&body, &engine.classifier, &state.options)?;
    let (reply, answer) = tokio::sync::oneshot::channel();
    let job = Job {
        texts: request.texts,
        text_tokens: request.text_tokens,
        tokens: request.tokens,
        mode: request.mode,
        reply,
    };
    match engine.batcher.submit(job) {
        Ok(()) => {}
        Err(Refused::QueueFull) => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                format!(
                    "the queue is full ({} texts waiting, --max-queue {}); retry later",
                    engine.batcher.queued_texts(),
                    state.options.limits.max_queue
                ),
            ))
        }
        Err(Refused::Stopped) => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the server is shutting down",
            ))
        }
    }
    state
        .metrics
        .queue_texts
        .set(engine.batcher.queued_texts() as i64);
    let answer = answer.await.map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the server stopped before scoring",
        )
    })?;
    let scores = answer
        .scores
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e))?;
    let mut out = Vec::new();
    let mut writer = ResultWriter::new(
        &mut out,
        Format::Json,
        engine.classifier.loaded.name.clone(),
    );
    for ((text, labels), text_scores) in answer.texts.iter().zip(&scores) {
        writer
            .write(text, &labels.names, text_scores)
            .map_err(|e| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            })?;
    }
    writer
        .finish()
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    state.metrics.latency.observe(start.elapsed().as_secs_f64());
    Ok(([(header::CONTENT_TYPE, "application/json")], out).into_response())
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    match state.engine.get() {
        Some(_) => axum::Json(json!({"status": "ready"})).into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "loading"})),
        )
            .into_response(),
    }
}

async fn info(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    Ok(axum::Json(engine(&state)?.info.clone()).into_response())
}

async fn models(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let engine = engine(&state)?;
    let mut model = engine.info.clone();
    model["id"] = engine.info["model"].clone();
    Ok(axum::Json(json!({"object": "list", "data": [model]})).into_response())
}

async fn metrics_text(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such route; see /openapi.json",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method; see /openapi.json",
    )
}

/// `--api-key-env`: every route but `/health` needs the key, compared in constant time.
async fn authorize(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let Some(key) = &state.options.api_key else {
        return next.run(request).await;
    };
    if request.uri().path() == "/health" {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(key.as_bytes())) {
        next.run(request).await
    } else {
        let mut response = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong API key (Authorization: Bearer <key>)",
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        response
    }
}

/// The token of an `Authorization: Bearer <token>` value. The scheme is matched without
/// regard to case (RFC 7235: `bearer`, `BEARER`), and one or more spaces may follow it.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start_matches(' '))
}

/// Counts every answer by route and status.
async fn count(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let route = ROUTES
        .iter()
        .find(|r| **r == request.uri().path())
        .copied()
        .unwrap_or("other");
    let response = next.run(request).await;
    state
        .metrics
        .requests
        .with_label_values(&[route, response.status().as_str()])
        .inc();
    response
}
