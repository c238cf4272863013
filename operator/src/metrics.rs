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
        registry.register(Box::new(api_calls.clone()))?;
        Ok(Self {
            registry,
            reconciles,
            errors,
            duration,
            objects,
            api_calls,
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
