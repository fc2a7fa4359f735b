//! The live observer: every service's queues in one pipeline against a real redis-server filled by bullmq, sums per
//! service, and a failing source leaving only its own metrics unavailable without stalling the tick.

mod common;

use std::sync::Arc;
use std::time::Duration;

use ballast::autoscaler::Observer;
use ballast::export::Metrics;
use ballast::sources::bullmq::{BullmqSource, ConnectOptions};
use ballast::sources::live::LiveObserver;
use ballast::sources::prometheus::{PrometheusConfig, PrometheusSource};
use ballast::spec::{PluginRef, PrometheusMetrics, QueueRef, ScalingPolicySpec, ServiceKey, TargetRef};
use common::*;

fn service(name: &str, queues: &[&str]) -> (ServiceKey, ScalingPolicySpec) {
    let spec = ScalingPolicySpec {
        target: TargetRef { api_version: "apps/v1".into(), kind: "Deployment".into(), name: name.into() },
        min_replicas: 1,
        max_replicas: 4,
        plugin: PluginRef { builtin: Some("hpa".into()), config_map: None, path: None, sha256: None, oci: None },
        config: serde_json::Value::Null,
        metrics: ballast::spec::MetricsSpec {
            queues: queues.iter().map(|q| QueueRef { name: q.to_string(), prefix: None }).collect(),
            prometheus: Some(PrometheusMetrics::default()),
            resources: false,
        },
        behavior: None,
        fallback: Default::default(),
        shadow: None,
        paused: false,
        decision_interval_seconds: 1,
        limits: None,
    };
    (ServiceKey { namespace: "ai-models".into(), name: name.into() }, spec)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_are_summed_per_service_and_a_dead_source_only_blanks_its_own_metrics() {
    let mut redis = RedisServer::start();
    let url = redis.url("", 0);
    let expected = fixture("populate", &url, "bull", &[], &["stt-queue", "stt-priority", "mt-queue"]);
    let services = [service("stt", &["stt-queue", "stt-priority"]), service("mt", &["mt-queue"]), service("cpu", &[])];
    let list: Vec<_> = services.iter().map(|(k, s)| (k, s)).collect();
    let metrics = Arc::new(Metrics::new().unwrap());
    let options = ConnectOptions { timeout: Duration::from_secs(1), ca_cert_pem: None };
    let bullmq = BullmqSource::new(&url, options).unwrap();
    // A Prometheus nobody listens on: its metrics are unavailable, the queue metrics are not.
    let prometheus = PrometheusSource::new(PrometheusConfig::new(format!("http://127.0.0.1:{}", free_port()))).unwrap();
    let mut observer = LiveObserver::new(
        Some(bullmq),
        Some(prometheus),
        Duration::from_millis(100),
        Duration::from_secs(60),
        metrics.clone(),
    );

    // The first tick tells the Prometheus refresh task what to query; let it fail a few times.
    observer.observe(&list, 0).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let observed = observer.observe(&list, 0).await;
    let mut stt = expected["stt-queue"].0;
    stt.add(&expected["stt-priority"].0);
    // One observation per service, in the order of `list`.
    assert_eq!(observed.len(), 3);
    assert_eq!(observed[0].queue, Some(stt));
    assert_eq!(observed[1].queue, Some(expected["mt-queue"].0));
    assert_eq!(observed[2].queue, None, "a service without queues has no queue metric");
    assert!(observed.iter().all(|o| o.gpu_duty_cycle_percent.is_none()), "dead Prometheus is unavailable, not 0");
    let text = metrics.encode();
    assert!(text.contains(r#"ballast_source_errors_total{source="prometheus"}"#), "{text}");
    assert!(text.contains(r#"redis_queue_depth{queue_name="mt-queue",queue_type="waiting"}"#), "{text}");

    // Redis goes away: queue metrics become unavailable (never 0) and the tick still completes.
    redis.stop();
    let observed = tokio::time::timeout(Duration::from_secs(5), observer.observe(&list, 1000))
        .await
        .expect("a dead Redis must not stall the tick");
    assert!(observed.len() == 3 && observed.iter().all(|o| o.queue.is_none()), "{observed:?}");
    let text = metrics.encode();
    assert!(!text.contains(r#"queue_name="mt-queue""#), "series of an unreadable queue are dropped: {text}");
    assert!(text.contains(r#"ballast_source_errors_total{source="redis"}"#), "{text}");
}
