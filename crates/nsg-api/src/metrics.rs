//! Prometheus metrics at `/metrics`: requests by operation and status, their latency, and the
//! resources stored.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The operation, of low cardinality: `networkSecurityGroups`, `securityRules`,
    /// `ipFlowVerify`, `list`, …
    pub operation: String,
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub operation: String,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<OperationLabels, Histogram>,
    pub resources: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        // 50 µs to ~3 s, doubling.
        let latency = Family::<OperationLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.00005, 2.0, 16,
            ))
        });
        let resources = Gauge::default();
        registry.register(
            "opennsg_requests",
            "ARM requests by operation, method and status",
            requests.clone(),
        );
        registry.register(
            "opennsg_request_duration_seconds",
            "ARM request latency by operation",
            latency.clone(),
        );
        registry.register(
            "opennsg_resources",
            "Resources in the store (children inside their parents are not counted)",
            resources.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            resources,
        }
    }
}

impl Metrics {
    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}
