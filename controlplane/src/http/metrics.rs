//! Prometheus metrics of the HTTP server and the database pool. Route labels are the matched
//! route templates (bounded), never raw paths.

use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// The metrics of one process.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    /// Requests being served.
    pub in_flight: IntGauge,
    pool: IntGaugeVec,
    /// Job queue metrics (`verity_jobs_*`).
    pub jobs: crate::jobs::worker::JobMetrics,
    /// Storage proxy metrics (`verity_storage_proxy_*`).
    pub proxy: crate::proxy::ProxyMetrics,
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "verity_http_requests_total",
                "HTTP requests by method, route and status",
            ),
            &["method", "route", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "verity_http_request_duration_seconds",
                "HTTP request latency by method and route",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["method", "route"],
        )?;
        let in_flight = IntGauge::new(
            "verity_http_requests_in_flight",
            "HTTP requests being served",
        )?;
        let pool = IntGaugeVec::new(
            Opts::new(
                "verity_db_pool_connections",
                "Database pool connections by state",
            ),
            &["state"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(pool.clone()))?;
        let jobs = crate::jobs::worker::JobMetrics::new(&registry)?;
        let proxy = crate::proxy::ProxyMetrics::new(&registry)?;
        Ok(Self {
            proxy,
            jobs,
            registry,
            requests,
            latency,
            in_flight,
            pool,
        })
    }

    /// Records one served request.
    pub fn observe(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        self.requests
            .with_label_values(&[method, route, &status.to_string()])
            .inc();
        self.latency
            .with_label_values(&[method, route])
            .observe(elapsed.as_secs_f64());
    }

    /// Renders the text exposition format, with the pool gauges refreshed.
    pub fn render(&self, pool: (u32, u32)) -> String {
        let (open, idle) = pool;
        self.pool.with_label_values(&["open"]).set(i64::from(open));
        self.pool.with_label_values(&["idle"]).set(i64::from(idle));
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}
