//! The live observer: every service's queues in one pipeline against a real redis-server filled by bullmq, sums per
//! service, and a failing or stalled source leaving only its own metrics unavailable without stalling the tick.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ballast::autoscaler::Observer;
use ballast::config::RedisSettings;
use ballast::export::Metrics;
use ballast::observation::Observation;
use ballast::sources::bullmq::{BullmqSource, ConnectOptions};
use ballast::sources::live::{LiveObserver, REDIS};
use ballast::sources::prometheus::{PrometheusConfig, PrometheusSource};
use ballast::spec::{PluginRef, PrometheusMetrics, QueueRef, ScalingPolicySpec, ServiceKey, TargetRef};
use common::*;

/// Queue counts older than this are unavailable (the host's default).
fn redis_max_age() -> Duration {
    RedisSettings::default().max_age
}

fn service(name: &str, queues: &[&str]) -> (ServiceKey, ScalingPolicySpec) {
    let spec = ScalingPolicySpec {
        target: TargetRef { api_version: "apps/v1".into(), kind: "Deployment".into(), name: name.into() },
        min_replicas: 1,
        max_replicas: 4,
        plugin: PluginRef { builtin: Some("hpa".into()), config_map: None, path: None, sha256: None, oci: None },
        config: serde_json::Value::Null,
        metrics: ballast::spec::MetricsSpec {
            redis: None,
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
        wait_objective_seconds: None,
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
    observe_until(&mut observer, &list, |o| o[0].queue.is_some()).await;
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

    // Redis goes away: the tick still completes; the last counts serve while young enough, then the queue
    // metrics become unavailable (never 0), saying why.
    redis.stop();
    let observed = tokio::time::timeout(Duration::from_secs(5), observer.observe(&list, 1000))
        .await
        .expect("a dead Redis must not stall the tick");
    assert_eq!(observed.len(), 3);
    tokio::time::sleep(redis_max_age()).await;
    let observed = observer.observe(&list, 2000).await;
    assert!(observed.iter().all(|o| o.queue.is_none()), "{observed:?}");
    let reason = &observed[1].unavailable["queue"];
    assert!(reason.contains("bull:mt-queue") && reason.contains("old"), "{reason}");
    let text = metrics.encode();
    assert!(!text.contains(r#"queue_name="mt-queue""#), "series of an unreadable queue are dropped: {text}");
    assert!(text.contains(r#"ballast_source_errors_total{source="redis"}"#), "{text}");
}

/// Observes until `done` holds (the first collections of a new observer may finish after a tick's deadline).
async fn observe_until(
    observer: &mut LiveObserver,
    list: &[(&ServiceKey, &ScalingPolicySpec)],
    done: impl Fn(&[Observation]) -> bool,
) -> Vec<Observation> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let observed = observer.observe(list, 0).await;
        if done(&observed) {
            return observed;
        }
        assert!(Instant::now() < deadline, "not there after 20 s: {observed:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn observer_of(url: &str, timeout: Duration) -> LiveObserver {
    let bullmq = BullmqSource::new(url, ConnectOptions { timeout, ca_cert_pem: None }).unwrap();
    let metrics = Arc::new(Metrics::new().unwrap());
    LiveObserver::new(Some(bullmq), None, Duration::from_secs(60), Duration::from_secs(60), metrics)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_redis_never_holds_up_the_tick() {
    let redis = RedisServer::start();
    let url = redis.url("", 0);
    let expected = fixture("populate", &url, "bull", &[], &["stt-queue"]);
    let services = [service("stt", &["stt-queue"])];
    let list: Vec<_> = services.iter().map(|(k, s)| (k, s)).collect();
    // The collection's own bound is far longer than a tick.
    let mut observer = observer_of(&url, Duration::from_secs(30));
    let first = observe_until(&mut observer, &list, |o| o[0].queue.is_some()).await;
    assert_eq!(first[0].queue, Some(expected["stt-queue"].0));

    redis.signal("-STOP");
    // A tick a second, as the controller runs them: each must come at once, on counts that age and then are
    // unavailable. The bound per tick is generous for a loaded CI machine, and far below the 30 s timeout.
    let stalled_since = Instant::now();
    let mut seen: Vec<(Duration, Observation)> = Vec::new();
    while stalled_since.elapsed() < redis_max_age() + Duration::from_secs(3) {
        let (started, at) = (Instant::now(), stalled_since.elapsed());
        let observed = observer.observe(&list, 0).await.remove(0);
        let took = started.elapsed();
        assert!(took < Duration::from_secs(2), "a tick waited {took:?} on a stalled Redis");
        seen.push((at, observed));
        tokio::time::sleep(Duration::from_secs(1).saturating_sub(took)).await;
    }
    redis.signal("-CONT");
    assert!(seen.len() >= 7, "{} ticks in {:?}", seen.len(), stalled_since.elapsed());
    let (young, old): (Vec<_>, Vec<_>) =
        seen.iter().partition(|(at, _)| *at < redis_max_age() - Duration::from_secs(1));
    for (at, obs) in &young {
        assert_eq!(obs.queue, Some(expected["stt-queue"].0), "at {at:?}");
        assert!(obs.sample_age_ms[REDIS] >= at.as_millis() as u64, "the age shows: {:?} at {at:?}", obs.sample_age_ms);
    }
    let last = &old.last().expect("ticks after the bound").1;
    assert_eq!(last.queue, None, "counts older than {:?} are unavailable", redis_max_age());
    assert!(last.unavailable["queue"].contains("bull:stt-queue"), "{:?}", last.unavailable);

    // Once Redis answers again, the counts are fresh again.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let observed = observer.observe(&list, 0).await.remove(0);
        if observed.queue.is_some() {
            assert!(observed.sample_age_ms[REDIS] < 5_000, "{:?}", observed.sample_age_ms);
            break;
        }
        assert!(Instant::now() < deadline, "no fresh counts 20 s after SIGCONT: {observed:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_queue_is_unavailable_and_named_and_a_paused_queue_says_so() {
    let redis = RedisServer::start();
    let url = redis.url("", 0);
    let expected = fixture("populate", &url, "bull", &["paused-queue"], &["live-queue", "paused-queue"]);
    let services = [
        service("typo", &["live-queue", "liev-queue"]),
        service("paused", &["paused-queue"]),
        service("live", &["live-queue"]),
    ];
    let list: Vec<_> = services.iter().map(|(k, s)| (k, s)).collect();
    let mut observer = observer_of(&url, Duration::from_secs(5));
    let observed = observe_until(&mut observer, &list, |o| o[2].queue.is_some()).await;
    assert_eq!(observed[0].queue, None, "one missing queue of two: no partial sum, and never 0");
    let reason = &observed[0].unavailable["queue"];
    assert!(reason.contains("bull:liev-queue") && reason.contains("does not exist"), "{reason}");
    assert_eq!(observed[1].queue, Some(expected["paused-queue"].0));
    assert_eq!(observed[1].queue_paused, Some(true), "bullmq's queue.pause()");
    assert!(observed[1].queue.unwrap().waiting > 0, "BullMQ 6 keeps a paused queue's jobs under wait");
    assert_eq!(observed[2].queue, Some(expected["live-queue"].0));
    assert_eq!(observed[2].queue_paused, Some(false));

    // What the built-in hpa (a 0.2 plugin) makes of it: the paused queue's jobs hold the fleet, the live one's
    // count as backlog.
    let engine = ballast::testing::engine(ballast::runtime::RuntimeLimits {
        deadline: Duration::from_secs(1),
        ..Default::default()
    });
    let hpa = engine.load("hpa", ballast::runtime::builtin("hpa").unwrap()).unwrap();
    let config = r#"{"jobsPerPod": 1}"#;
    let at = ballast::decision::Moment { now_ms: 0, current: 1, ready: 1 };
    let reasons: Vec<String> = [1, 2]
        .map(|i| {
            let (key, spec) = &services[i];
            let memory = ballast::decision::ServiceMemory::default();
            let input = ballast::decision::policy_input(key, spec, config, &memory, &observed[i], at);
            assert_eq!(input.observations.queue.unwrap().is_paused, i == 1);
            let mut plugin = ballast::runtime::Plugin::new(engine.clone(), hpa.clone());
            plugin.decide(&input).result.unwrap().reason
        })
        .into();
    assert!(reasons[0].starts_with("queue-paused proposes 1"), "{reasons:?}");
    assert!(reasons[1].starts_with("queue proposes"), "{reasons:?}");

    // Another database: every queue is missing there.
    let mut elsewhere = observer_of(&redis.url("", 4), Duration::from_secs(5));
    let observed = observe_until(&mut elsewhere, &list, |o| !o[2].unavailable["queue"].contains("not been read")).await;
    assert!(observed.iter().all(|o| o.queue.is_none() && o.unavailable["queue"].contains("/4")), "{observed:?}");
}
