//! Prometheus metrics of the operator. Labels are low-cardinality: controller, result, error
//! category, kind and condition, never object names.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The operator's metrics, registered in their own registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    reconciles: IntCounterVec,
    errors: IntCounterVec,
    duration: HistogramVec,
    objects: IntGaugeVec,
    api_calls: IntCounterVec,
    queue_probes: IntCounterVec,
    worker_scalings: IntCounterVec,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let reconciles = IntCounterVec::new(
            Opts::new(
                "verity_operator_reconcile_total",
                "Reconciles by controller and result (success, error).",
            ),
            &["controller", "result"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                "verity_operator_reconcile_errors_total",
                "Failed reconciles by controller and error category.",
            ),
            &["controller", "category"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "verity_operator_reconcile_duration_seconds",
                "Reconcile duration by controller.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0,
            ]),
            &["controller"],
        )?;
        let objects = IntGaugeVec::new(
            Opts::new(
                "verity_operator_objects",
                "Custom resources by kind and Ready condition status, as last reconciled.",
            ),
            &["kind", "ready"],
        )?;
        let api_calls = IntCounterVec::new(
            Opts::new(
                "verity_operator_api_calls_total",
                "Kubernetes API calls the operator made for children, by kind and verb.",
            ),
            &["kind", "verb"],
        )?;
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(objects.clone()))?;
        let queue_probes = IntCounterVec::new(
            Opts::new(
                "verity_operator_queue_probes_total",
                "Reads of tenant queues by the worker autoscaler, by result (ok or error category).",
            ),
            &["result"],
        )?;
        let worker_scalings = IntCounterVec::new(
            Opts::new(
                "verity_operator_worker_scalings_total",
                "Worker pool size changes decided by the autoscaler, by queue and direction.",
            ),
            &["queue", "direction"],
        )?;
        registry.register(Box::new(api_calls.clone()))?;
        registry.register(Box::new(queue_probes.clone()))?;
        registry.register(Box::new(worker_scalings.clone()))?;
        Ok(Self {
            registry,
            reconciles,
            errors,
            duration,
            objects,
            api_calls,
            queue_probes,
            worker_scalings,
        })
    }

    /// Records one finished reconcile.
    pub fn reconciled(&self, controller: &str, seconds: f64, error_category: Option<&str>) {
        self.duration
            .with_label_values(&[controller])
            .observe(seconds);
        let result = if error_category.is_some() {
            "error"
        } else {
            "success"
        };
        self.reconciles
            .with_label_values(&[controller, result])
            .inc();
        if let Some(c) = error_category {
            self.errors.with_label_values(&[controller, c]).inc();
        }
    }

    /// Records one API call.
    pub fn api_call(&self, kind: &str, verb: &str) {
        self.api_calls.with_label_values(&[kind, verb]).inc();
    }

    /// Records one read of a tenant's queues (`None`: it worked).
    pub fn queue_probe(&self, error_category: Option<&str>) {
        self.queue_probes
            .with_label_values(&[error_category.unwrap_or("ok")])
            .inc();
    }

    /// Records one change of a worker pool's size.
    pub fn worker_scaled(&self, queue: &str, up: bool) {
        self.worker_scalings
            .with_label_values(&[queue, if up { "up" } else { "down" }])
            .inc();
    }

    /// Sets how many objects of a kind are in each Ready state.
    pub fn set_objects(&self, kind: &str, ready_true: i64, ready_false: i64) {
        self.objects
            .with_label_values(&[kind, "True"])
            .set(ready_true);
        self.objects
            .with_label_values(&[kind, "False"])
            .set(ready_false);
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}
