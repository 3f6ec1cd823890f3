//! The server's Prometheus metrics (`GET /metrics`, text format).

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    /// Requests answered, by route and HTTP status.
    pub requests: IntCounterVec,
    /// Seconds from a request's arrival to its answer (classify requests).
    pub latency: Histogram,
    /// Texts in each encoder call.
    pub batch_texts: Histogram,
    /// Tokens (estimated before packing) in each encoder call.
    pub batch_tokens: Histogram,
    /// Texts accepted and not yet answered.
    pub queue_texts: IntGauge,
    /// Texts scored since the start (its rate is texts/s).
    pub texts_scored: IntCounter,
    /// Texts per second of the last encoder call.
    pub texts_per_second: Gauge,
    /// Texts dropped before scoring because their client went away.
    pub cancelled_texts: IntCounter,
}

impl Metrics {
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new_custom(Some("gliznet".into()), None)?;
        let requests = IntCounterVec::new(
            Opts::new(
                "requests_total",
                "HTTP requests answered, by route and status",
            ),
            &["route", "status"],
        )?;
        let latency = Histogram::with_opts(
            HistogramOpts::new(
                "request_duration_seconds",
                "Seconds from a classify request's arrival to its answer",
            )
            .buckets(prometheus::exponential_buckets(0.001, 2.0, 16)?),
        )?;
        let batch_texts = Histogram::with_opts(
            HistogramOpts::new("batch_texts", "Texts in each encoder call")
                .buckets(prometheus::exponential_buckets(1.0, 2.0, 11)?),
        )?;
        let batch_tokens = Histogram::with_opts(
            HistogramOpts::new("batch_tokens", "Tokens (estimated) in each encoder call")
                .buckets(prometheus::exponential_buckets(16.0, 2.0, 14)?),
        )?;
        let queue_texts = IntGauge::new("queue_texts", "Texts accepted and not yet answered")?;
        let texts_scored = IntCounter::new("texts_scored_total", "Texts scored (rate: texts/s)")?;
        let texts_per_second = Gauge::new(
            "last_batch_texts_per_second",
            "Texts per second of the last encoder call",
        )?;
        let cancelled_texts = IntCounter::new(
            "cancelled_texts_total",
            "Texts dropped before scoring because their client went away",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(batch_texts.clone()))?;
        registry.register(Box::new(batch_tokens.clone()))?;
        registry.register(Box::new(queue_texts.clone()))?;
        registry.register(Box::new(texts_scored.clone()))?;
        registry.register(Box::new(texts_per_second.clone()))?;
        registry.register(Box::new(cancelled_texts.clone()))?;
        Ok(Self {
            registry,
            requests,
            latency,
            batch_texts,
            batch_tokens,
            queue_texts,
            texts_scored,
            texts_per_second,
            cancelled_texts,
        })
    }

    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let encoder = TextEncoder::new();
        // Encoding our own well-formed families into memory cannot fail.
        let _ = encoder.encode(&self.registry.gather(), &mut buffer);
        String::from_utf8_lossy(&buffer).into_owned()
    }
}
