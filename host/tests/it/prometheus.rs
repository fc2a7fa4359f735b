//! The Prometheus source against a real `prometheus` server (Debian package `prometheus`) scraping an in-process
//! endpoint that serves dcgm-exporter series, a latency histogram and a request counter for several services.
//! Also `ballast trace`: a backtest trace from Prometheus scraping `ballast exporter` over real bullmq jobs.

use crate::common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ballast::sources::prometheus::{
    Credential, DEFAULT_GPU_TEMPLATE, PromCollection, PromError, PromTarget, PrometheusAuth, PrometheusConfig,
    PrometheusSource,
};
use ballast::spec::{PrometheusMetrics, ServiceKey};

const HISTOGRAM: &str = "inference_request_duration_seconds";
const COUNTER: &str = "inference_requests_total";
const BUCKETS: [&str; 6] = ["0.1", "0.25", "0.5", "1", "2.5", "+Inf"];
/// Cumulative bucket counts added per second (the +Inf bucket is the request count).
const STT_BUCKETS_PER_SECOND: [f64; 6] = [10.0, 30.0, 60.0, 80.0, 95.0, 100.0];
const MT_BUCKETS_PER_SECOND: [f64; 6] = [50.0, 90.0, 98.0, 100.0, 100.0, 100.0];
const STT_POD_1: &str = "whisper-pyannote-stt-7d9f8b6c5-x2k4p";
const STT_POD_2: &str = "whisper-pyannote-stt-7d9f8b6c5-q8w7e";
const MT_POD: &str = "marian-mt-6b8c9d7f5-m3n4b";

struct ExporterState {
    started: Instant,
    /// Unix milliseconds 120 s before the start: the explicit timestamp of wav2lip's stale series.
    stale_timestamp_ms: u128,
    serve_vanishing: bool,
    authorizations: Vec<Option<String>>,
}

/// A loopback HTTP endpoint: `/metrics` in Prometheus text format; `/api/v1/query` answers an empty vector and
/// records the Authorization header (Prometheus itself cannot check bearer tokens); anything else is 404.
struct Exporter {
    port: u16,
    state: Arc<Mutex<ExporterState>>,
}

impl Exporter {
    fn start() -> Exporter {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the exporter");
        let port = listener.local_addr().unwrap().port();
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis();
        let state = Arc::new(Mutex::new(ExporterState {
            started: Instant::now(),
            stale_timestamp_ms: now_ms - 120_000,
            serve_vanishing: true,
            authorizations: Vec::new(),
        }));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || serve(stream, &shared));
            }
        });
        Exporter { port, state }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

fn serve(mut stream: TcpStream, state: &Mutex<ExporterState>) {
    let mut request = Vec::new();
    let mut buffer = [0u8; 4096];
    let head_end = loop {
        let Ok(n) = stream.read(&mut buffer) else { return };
        if n == 0 {
            return;
        }
        request.extend_from_slice(&buffer[..n]);
        if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
    };
    let head = String::from_utf8_lossy(&request[..head_end]).to_string();
    let header = |name: &str| {
        head.lines()
            .find(|line| line.to_ascii_lowercase().starts_with(&format!("{name}:")))
            .map(|line| line[name.len() + 1..].trim().to_string())
    };
    let body_length: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    while request.len() < head_end + body_length {
        let Ok(n) = stream.read(&mut buffer) else { return };
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buffer[..n]);
    }
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    let (status, content_type, body) = if path.starts_with("/metrics") {
        ("200 OK", "text/plain; version=0.0.4", exposition(&state.lock().unwrap()))
    } else if path == "/api/v1/query" {
        state.lock().unwrap().authorizations.push(header("authorization"));
        ("200 OK", "application/json", r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#.into())
    } else {
        ("404 Not Found", "text/plain", "404 page not found\n".to_string())
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes());
}

fn dcgm(namespace: &str, pod: &str, container: &str, gpu: u32, value: &str) -> String {
    format!(
        "DCGM_FI_DEV_GPU_UTIL{{gpu=\"{gpu}\",UUID=\"GPU-5a2b6c1d-0e3f-4a5b-8c7d-{gpu:012}\",device=\"nvidia{gpu}\",\
         modelName=\"NVIDIA A10G\",Hostname=\"node-1\",DCGM_FI_DRIVER_VERSION=\"535.104.05\",\
         container=\"{container}\",namespace=\"{namespace}\",pod=\"{pod}\"}} {value}\n"
    )
}

fn exposition(state: &ExporterState) -> String {
    let elapsed = state.started.elapsed().as_secs_f64();
    let mut text =
        String::from("# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).\n# TYPE DCGM_FI_DEV_GPU_UTIL gauge\n");
    text += &dcgm("ai-models", STT_POD_1, "stt", 0, "40");
    text += &dcgm("ai-models", STT_POD_2, "stt", 1, "60");
    text += &dcgm("ai-models", MT_POD, "mt", 2, "20");
    text += &dcgm("ai-models", MT_POD, "mt", 3, "30");
    // Same Deployment name in another namespace.
    text += &dcgm("other", MT_POD, "mt", 0, "90");
    // A Deployment whose name prefixes another's.
    text += &dcgm("ai-models", "whisper-5c6d7e8f9-abcde", "whisper", 4, "70");
    text += &dcgm("ai-models", "xtts-8f7e6d5c4-zz9yy", "xtts", 5, "NaN");
    let stale = dcgm("ai-models", "wav2lip-4a3b2c1d0-k1l2m", "wav2lip", 6, "55");
    text += &format!("{} {}\n", stale.trim_end(), state.stale_timestamp_ms);
    if state.serve_vanishing {
        text += &dcgm("ai-models", "vanishing-7c6b5a4f3-p0o9i", "vanishing", 7, "80");
    }

    text += &format!("# TYPE {HISTOGRAM} histogram\n");
    for (pod, per_second, scale) in [
        (STT_POD_1, &STT_BUCKETS_PER_SECOND, 1.0),
        (STT_POD_2, &STT_BUCKETS_PER_SECOND, 2.0),
        (MT_POD, &MT_BUCKETS_PER_SECOND, 1.0),
    ] {
        let labels = format!("namespace=\"ai-models\",pod=\"{pod}\"");
        for (le, count) in BUCKETS.iter().zip(per_second) {
            text += &format!("{HISTOGRAM}_bucket{{{labels},le=\"{le}\"}} {}\n", count * scale * elapsed);
        }
        text += &format!("{HISTOGRAM}_sum{{{labels}}} {}\n", 40.0 * scale * elapsed);
        text += &format!("{HISTOGRAM}_count{{{labels}}} {}\n", per_second[5] * scale * elapsed);
    }
    // One series per namespace, and one without: a tenant's query may read only its own.
    text += "# TYPE tenant_secret gauge\n";
    text += "tenant_secret{namespace=\"kube-system\"} 42\n";
    text += "tenant_secret{namespace=\"ai-models\"} 7\n";
    text += "tenant_secret{node=\"node-1\"} 1000\n";
    text += &format!("# TYPE {COUNTER} counter\n");
    for (pod, per_second) in [(STT_POD_1, 3.0), (STT_POD_2, 2.0), (MT_POD, 1.0)] {
        text += &format!("{COUNTER}{{namespace=\"ai-models\",pod=\"{pod}\"}} {}\n", per_second * elapsed);
    }
    text
}

/// A `prometheus` process with its own config and TSDB in a temp dir; killed on drop.
struct PrometheusServer {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_prometheus(scrape_port: u16) -> PrometheusServer {
    start_prometheus_with(scrape_port, None)
}

/// Prometheus with a `--web.config.file` of this text (TLS, basic auth), when given.
fn start_prometheus_with(scrape_port: u16, web_config: Option<&str>) -> PrometheusServer {
    common::require("prometheus", "apt-get install -y prometheus, or source .ci/prometheus.sh && install_prometheus");
    let dir = std::env::temp_dir().join(format!("ballast-prometheus-test-{}-{scrape_port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: dcgm-exporter\n    honor_labels: true\n    static_configs:\n      \
             - targets: ['127.0.0.1:{scrape_port}']\n"
        ),
    )
    .unwrap();
    let port = common::free_port();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let mut command = Command::new("prometheus");
    if let Some(web_config) = web_config {
        let path = dir.join("web.yml");
        std::fs::write(&path, web_config).unwrap();
        command.arg(format!("--web.config.file={}", path.display()));
    }
    let child = command
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start prometheus");
    PrometheusServer { child, port, dir }
}

fn key(namespace: &str, name: &str) -> ServiceKey {
    ServiceKey { namespace: namespace.into(), name: name.into() }
}

fn target(namespace: &str, deployment: &str, metrics: &PrometheusMetrics) -> PromTarget {
    PromTarget {
        key: key(namespace, deployment),
        namespace: namespace.into(),
        deployment: deployment.into(),
        metrics: metrics.clone(),
    }
}

fn inference_metrics() -> PrometheusMetrics {
    PrometheusMetrics {
        latency_histogram: Some(HISTOGRAM.into()),
        request_counter: Some(COUNTER.into()),
        ..PrometheusMetrics::default()
    }
}

/// histogram_quantile's interpolation over cumulative buckets (+Inf last), in milliseconds.
fn expected_quantile_ms(quantile: f64, cumulative: &[f64; 6]) -> f64 {
    let bounds: Vec<f64> = BUCKETS[..5].iter().map(|b| b.parse().unwrap()).collect();
    let rank = quantile * cumulative[5];
    let bucket = cumulative.iter().position(|&c| c >= rank).unwrap();
    if bucket == 5 {
        return bounds[4] * 1000.0;
    }
    let (lower, below) = if bucket == 0 { (0.0, 0.0) } else { (bounds[bucket - 1], cumulative[bucket - 1]) };
    (lower + (bounds[bucket] - lower) * (rank - below) / (cumulative[bucket] - below)) * 1000.0
}

fn assert_close(what: &str, actual: Option<f64>, expected: f64, relative: f64) {
    let actual = actual.unwrap_or_else(|| panic!("{what}: unavailable, expected {expected}"));
    assert!((actual - expected).abs() <= expected.abs() * relative, "{what}: {actual}, expected {expected}");
}

fn failures_text(collection: &PromCollection) -> String {
    collection.failures.iter().map(|f| f.error.to_string()).collect::<Vec<_>>().join("\n")
}

/// Waits until Prometheus has scraped enough for rate() over the served counters.
async fn wait_for_data(source: &PrometheusSource, server: &mut PrometheusServer) {
    let mut ready = PrometheusMetrics::default();
    // Samples spanning the whole rate window, or rate() reads low.
    ready.custom.insert("window".into(), format!("min(count_over_time({COUNTER}[5s])) >= 5"));
    ready.custom.insert("gpus".into(), "count(DCGM_FI_DEV_GPU_UTIL)".into());
    let probe = [target("ai-models", "probe", &ready)];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let collection = source.collect(&probe).await;
        if collection.values[&key("ai-models", "probe")].custom.len() == 2 {
            return;
        }
        if let Ok(Some(status)) = server.child.try_wait() {
            let log = std::fs::read_to_string(server.dir.join("prometheus.log")).unwrap_or_default();
            panic!("prometheus exited with {status}:\n{log}");
        }
        assert!(Instant::now() < deadline, "no data from Prometheus after 30 s: {}", failures_text(&collection));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_queries_against_real_prometheus() {
    let exporter = Exporter::start();
    let mut server = start_prometheus(exporter.port);
    let mut config = PrometheusConfig::new(format!("http://127.0.0.1:{}", server.port));
    config.max_sample_age = Duration::from_secs(30);
    config.rate_window = Duration::from_secs(4);
    let source = PrometheusSource::new(config).unwrap();
    wait_for_data(&source, &mut server).await;

    let metrics = inference_metrics();
    let mut wav2lip_metrics = metrics.clone();
    let raw_gpu = "avg by (namespace, pod) (DCGM_FI_DEV_GPU_UTIL{namespace=~\"{namespace}\", pod=~\"{pod_regex}\"})";
    wav2lip_metrics.custom.insert("gpu_without_age_filter".into(), raw_gpu.into());
    let mut targets = vec![
        target("ai-models", "whisper-pyannote-stt", &metrics),
        target("ai-models", "marian-mt", &metrics),
        target("other", "marian-mt", &metrics),
        target("ai-models", "whisper", &metrics),
        target("ai-models", "xtts", &metrics),
        target("ai-models", "wav2lip", &wav2lip_metrics),
        target("ai-models", "vanishing", &metrics),
        target("tts", "styletts", &metrics),
    ];
    targets.extend((0..16).map(|i| target(&format!("filler-{i}"), &format!("service-{i}"), &metrics)));

    let before = source.queries_issued();
    let collection = source.collect(&targets).await;
    assert!(collection.failures.is_empty(), "{}", failures_text(&collection));
    // GPU, p50, p95, p99, request rate, and wav2lip's custom query: one each for 24 services.
    assert_eq!(collection.queries, 6);
    assert_eq!(source.queries_issued() - before, 6);
    assert_eq!(collection.values.len(), targets.len());

    let values = |namespace: &str, name: &str| collection.values[&key(namespace, name)].clone();
    let gpu = |namespace: &str, name: &str| values(namespace, name).gpu_duty_cycle_percent.map(|s| s.value);
    assert_eq!(gpu("ai-models", "whisper-pyannote-stt"), Some(50.0), "average of two pods at 40 and 60");
    assert_eq!(gpu("ai-models", "marian-mt"), Some(25.0), "one pod with two GPUs at 20 and 30");
    assert_eq!(gpu("other", "marian-mt"), Some(90.0), "same Deployment name, other namespace");
    assert_eq!(gpu("ai-models", "whisper"), Some(70.0), "a Deployment whose name prefixes another's");
    assert_eq!(gpu("ai-models", "xtts"), None, "NaN is unavailable");
    assert_eq!(gpu("ai-models", "wav2lip"), None, "a sample 120 s old is older than the 30 s maximum");
    assert_eq!(
        values("ai-models", "wav2lip").custom.iter().map(|(n, s)| (n.as_str(), s.value)).collect::<Vec<_>>(),
        [("gpu_without_age_filter", 55.0)],
        "the stale series is there; only the age filter hides it"
    );
    assert_eq!(gpu("ai-models", "vanishing"), Some(80.0));
    assert_eq!(gpu("tts", "styletts"), None, "no series is unavailable, not 0");
    for i in 0..16 {
        assert_eq!(values(&format!("filler-{i}"), &format!("service-{i}")), Default::default());
    }
    let stt = values("ai-models", "whisper-pyannote-stt");
    assert!(stt.gpu_duty_cycle_percent.unwrap().age < Duration::from_secs(5), "{:?}", stt.gpu_duty_cycle_percent);

    for (name, cumulative) in [("whisper-pyannote-stt", STT_BUCKETS_PER_SECOND), ("marian-mt", MT_BUCKETS_PER_SECOND)] {
        let service = values("ai-models", name);
        for (q, sample) in
            [(0.5, service.latency_p50_ms), (0.95, service.latency_p95_ms), (0.99, service.latency_p99_ms)]
        {
            assert_close(
                &format!("{name} p{}", q * 100.0),
                sample.map(|s| s.value),
                expected_quantile_ms(q, &cumulative),
                0.01,
            );
        }
    }
    assert_close("stt request rate", stt.request_rate.map(|s| s.value), 5.0, 0.05);
    assert_close("mt request rate", values("ai-models", "marian-mt").request_rate.map(|s| s.value), 1.0, 0.05);
    assert_eq!(values("ai-models", "xtts").latency_p95_ms, None, "no histogram is unavailable, not 0");
    assert_eq!(values("ai-models", "xtts").request_rate, None);

    let before = source.queries_issued();
    source.collect(&targets).await;
    assert_eq!(source.queries_issued() - before, 6, "one query per template on every collect");

    // PromQL that Prometheus rejects fails alone: the error names the query; the other metrics stay available.
    let mut broken = metrics.clone();
    broken.custom.insert("broken".into(), format!("sum(rate({COUNTER}{{namespace=~\"{{namespace}}\"}}[1m]"));
    let collection = source.collect(&[target("ai-models", "whisper-pyannote-stt", &broken)]).await;
    assert_eq!(collection.failures.len(), 1, "{}", failures_text(&collection));
    let failure = &collection.failures[0];
    assert!(matches!(failure.error, PromError::Refused { .. }), "{:?}", failure.error);
    let message = failure.error.to_string();
    assert!(message.contains("sum(rate(inference_requests_total{namespace=~\"ai-models\"}[1m]"), "{message}");
    assert!(message.contains("ScalingPolicy ai-models/whisper-pyannote-stt") && message.contains("not valid PromQL"));
    assert_eq!(failure.services, [key("ai-models", "whisper-pyannote-stt")]);
    let stt = &collection.values[&key("ai-models", "whisper-pyannote-stt")];
    assert!(stt.custom.is_empty());
    assert_eq!(stt.gpu_duty_cycle_percent.map(|s| s.value), Some(50.0));

    // A series the exporter stops serving is marked stale by Prometheus at the next scrape.
    exporter.state.lock().unwrap().serve_vanishing = false;
    let deadline = Instant::now() + Duration::from_secs(20);
    let vanishing = [target("ai-models", "vanishing", &metrics)];
    loop {
        let collection = source.collect(&vanishing).await;
        assert!(collection.failures.is_empty(), "{}", failures_text(&collection));
        if collection.values[&key("ai-models", "vanishing")].gpu_duty_cycle_percent.is_none() {
            break;
        }
        assert!(Instant::now() < deadline, "the vanished series is still reported after 20 s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn unreachable_prometheus_is_an_error_naming_the_url() {
    let url = format!("http://127.0.0.1:{}", common::free_port());
    let source = PrometheusSource::new(PrometheusConfig::new(url.clone())).unwrap();
    let collection = source.collect(&[target("ai-models", "marian-mt", &inference_metrics())]).await;
    assert_eq!(collection.failures.len(), 5, "GPU, three quantiles, request rate");
    for failure in &collection.failures {
        let message = failure.error.to_string();
        assert!(matches!(failure.error, PromError::Unreachable { .. }), "{message}");
        assert!(message.contains(&url) && message.contains(&failure.query), "{message}");
        assert!(message.contains("check the Prometheus URL"), "{message}");
    }
    assert_eq!(collection.values[&key("ai-models", "marian-mt")], Default::default());
}

#[tokio::test]
async fn a_silent_server_times_out_with_an_error_naming_the_url_and_query() {
    // Connections complete in the backlog but nothing ever answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}", silent.local_addr().unwrap().port());
    let mut config = PrometheusConfig::new(url.clone());
    config.timeout = Duration::from_millis(300);
    let source = PrometheusSource::new(config).unwrap();
    let collection = source.collect(&[target("ai-models", "xtts", &PrometheusMetrics::default())]).await;
    assert_eq!(collection.failures.len(), 1);
    let failure = &collection.failures[0];
    assert!(matches!(failure.error, PromError::Timeout { .. }), "{:?}", failure.error);
    let message = failure.error.to_string();
    assert!(message.contains(&url) && message.contains("DCGM_FI_DEV_GPU_UTIL"), "{message}");
    assert_eq!(collection.values[&key("ai-models", "xtts")].gpu_duty_cycle_percent, None);
}

#[tokio::test]
async fn http_errors_name_the_url_and_the_bearer_token_file_is_reread() {
    let exporter = Exporter::start();
    let wrong_path = format!("{}/not-prometheus", exporter.url());
    let source = PrometheusSource::new(PrometheusConfig::new(wrong_path.clone())).unwrap();
    let collection = source.collect(&[target("ai-models", "xtts", &PrometheusMetrics::default())]).await;
    let message = collection.failures[0].error.to_string();
    assert!(matches!(collection.failures[0].error, PromError::Http { status: 404, .. }), "{message}");
    assert!(message.contains(&wrong_path), "{message}");

    let token_file = std::env::temp_dir().join(format!("ballast-prometheus-token-{}", std::process::id()));
    std::fs::write(&token_file, "first-token\n").unwrap();
    let mut config = PrometheusConfig::new(exporter.url());
    config.auth = PrometheusAuth::Bearer(Credential::File(token_file.clone()));
    let source = PrometheusSource::new(config).unwrap();
    let only_gpu = [target("ai-models", "xtts", &PrometheusMetrics::default())];
    assert!(source.collect(&only_gpu).await.failures.is_empty());
    std::fs::write(&token_file, "rotated-token").unwrap();
    assert!(source.collect(&only_gpu).await.failures.is_empty());
    std::fs::remove_file(&token_file).unwrap();
    let collection = source.collect(&only_gpu).await;
    let message = collection.failures[0].error.to_string();
    assert!(message.contains(&token_file.display().to_string()), "{message}");
    assert_eq!(
        exporter.state.lock().unwrap().authorizations,
        [Some("Bearer first-token".to_string()), Some("Bearer rotated-token".to_string())]
    );
}

/// bcrypt (cost 4) of "queue-secret", as Prometheus's web config wants its basic-auth passwords.
const BASIC_AUTH_HASH: &str = "$2b$04$3fcDfAtg5DVsbC/wH1.nEeu6xjAuMjYx1Dib3LezNVguDh1sGFKoS";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_and_a_private_ca_reach_a_prometheus_that_requires_them() {
    let exporter = Exporter::start();
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, private_key) = common::test_certificates(dir.path());
    let web = format!(
        "tls_server_config:\n  cert_file: {}\n  key_file: {}\nbasic_auth_users:\n  ballast: {BASIC_AUTH_HASH}\n",
        cert.display(),
        private_key.display()
    );
    let mut server = start_prometheus_with(exporter.port, Some(&web));
    let url = format!("https://127.0.0.1:{}", server.port);
    let password = dir.path().join("password");
    std::fs::write(&password, "queue-secret\n").unwrap();
    let config = |user: &str, ca_file: Option<&PathBuf>| {
        let mut config = PrometheusConfig::new(url.clone());
        config.auth = PrometheusAuth::Basic { user: user.into(), password: Credential::File(password.clone()) };
        config.ca_file = ca_file.cloned();
        config.max_sample_age = Duration::from_secs(30);
        config.rate_window = Duration::from_secs(4);
        config
    };
    let source = PrometheusSource::new(config("ballast", Some(&ca))).unwrap();
    wait_for_data(&source, &mut server).await;
    let gpu = [target("ai-models", "whisper-pyannote-stt", &PrometheusMetrics::default())];
    let collection = source.collect(&gpu).await;
    assert!(collection.failures.is_empty(), "{}", failures_text(&collection));
    assert!(collection.values[&key("ai-models", "whisper-pyannote-stt")].gpu_duty_cycle_percent.is_some());

    // A wrong user is a 401 that names the flags to fix; a server certificate from an unknown CA is refused.
    let wrong = PrometheusSource::new(config("someone", Some(&ca))).unwrap().collect(&gpu).await;
    let message = wrong.failures[0].error.to_string();
    assert!(matches!(wrong.failures[0].error, PromError::Http { status: 401, .. }), "{message}");
    assert!(message.contains("--prometheus-basic-auth-password-file"), "{message}");
    let untrusted = PrometheusSource::new(config("ballast", None)).unwrap().collect(&gpu).await;
    let message = untrusted.failures[0].error.to_string();
    assert!(matches!(untrusted.failures[0].error, PromError::Unreachable { .. }), "{message}");
    assert!(message.to_lowercase().contains("certificate"), "{message}");
    // An empty password file is refused when the source is made, naming it.
    std::fs::write(&password, "\n").unwrap();
    let error = PrometheusSource::new(config("ballast", Some(&ca))).err().unwrap().to_string();
    assert!(error.contains("basic-auth password file") && error.contains("empty"), "{error}");
}

#[test]
fn bad_configuration_is_refused_with_the_fix() {
    let error = PrometheusSource::new(PrometheusConfig::new("ftp://127.0.0.1:9090")).err().unwrap().to_string();
    assert!(error.contains("ftp://127.0.0.1:9090") && error.contains("http://"), "{error}");
    let mut config = PrometheusConfig::new("https://127.0.0.1:9090");
    config.ca_file = Some(PathBuf::from("/nonexistent/ca.pem"));
    let error = PrometheusSource::new(config).err().unwrap().to_string();
    assert!(error.contains("/nonexistent/ca.pem") && error.contains("CA file"), "{error}");
    assert!(DEFAULT_GPU_TEMPLATE.contains("DCGM_FI_DEV_GPU_UTIL"));
}

/// An instant query straight to Prometheus, unconfined: what the host's identity could read.
fn raw_query(port: u16, query: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let body = format!("query={}", query.bytes().map(|b| format!("%{b:02X}")).collect::<String>());
    write!(
        stream,
        "POST /api/v1/query HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policys_promql_reads_only_its_own_namespace() {
    let exporter = Exporter::start();
    let mut server = start_prometheus(exporter.port);
    let source = PrometheusSource::new(PrometheusConfig::new(format!("http://127.0.0.1:{}", server.port))).unwrap();
    wait_for_data(&source, &mut server).await;
    // The data is there: unconfined, the host's identity reads every namespace's series.
    let everything = raw_query(server.port, "sum(tenant_secret)");
    assert!(everything.contains("\"1049\""), "{everything}");

    // Confinement: the same text in two namespaces' policies gives each its own namespace's series only.
    let mut reads = PrometheusMetrics::default();
    reads.custom.insert("sum".into(), "sum(tenant_secret)".into());
    reads.custom.insert("own_placeholder".into(), "sum(tenant_secret{namespace=~\"{namespace}\"})".into());
    reads.custom.insert("subquery".into(), "max_over_time(sum by (namespace) (tenant_secret)[10s:1s])".into());
    reads.custom.insert("selector_only".into(), "{__name__=\"tenant_secret\"}".into());
    let targets = [target("ai-models", "tenant-a", &reads), target("kube-system", "tenant-b", &reads)];
    let collection = source.collect(&targets).await;
    assert!(collection.failures.is_empty(), "{}", failures_text(&collection));
    let custom = |namespace: &str, name: &str| -> Vec<(String, f64)> {
        collection.values[&key(namespace, name)].custom.iter().map(|(n, s)| (n.clone(), s.value)).collect()
    };
    let own =
        |value: f64| ["own_placeholder", "selector_only", "subquery", "sum"].map(|n| (n.to_string(), value)).to_vec();
    assert_eq!(custom("ai-models", "tenant-a"), own(7.0), "never 42 (kube-system) nor 1000 (no namespace)");
    assert_eq!(custom("kube-system", "tenant-b"), own(42.0));
    assert_eq!(collection.queries, 1 + 8, "the shared GPU template, and each written query once per namespace");

    // Refusal: a selector naming another namespace, however written, is not sent, and says what to change.
    let leaks = [
        "sum(tenant_secret{namespace=\"kube-system\"})",
        "sum(tenant_secret{namespace!=\"ai-models\"})",
        "sum(tenant_secret{namespace!~\"ai-models\"})",
        "sum(tenant_secret{namespace=~\"ai-models|kube-system\"})",
        "sum(tenant_secret{namespace=~\".+\"})",
        "sum(tenant_secret) + on() group_left sum(max_over_time(tenant_secret{namespace=\"kube-system\"}[1m:10s]))",
    ];
    let mut leaking = PrometheusMetrics::default();
    for (i, query) in leaks.iter().enumerate() {
        leaking.custom.insert(format!("leak{i}"), query.to_string());
    }
    leaking.latency_histogram = Some("x{namespace=\"kube-system\"}) or sum(tenant_secret".into());
    let before = source.queries_issued();
    let collection = source.collect(&[target("ai-models", "tenant-a", &leaking)]).await;
    assert_eq!(source.queries_issued() - before, 1, "only the shared GPU template reached Prometheus");
    assert_eq!(collection.failures.len(), leaks.len() + 3, "{}", failures_text(&collection));
    for failure in &collection.failures {
        let message = failure.error.to_string();
        assert!(matches!(failure.error, PromError::Refused { .. }), "{message}");
        assert!(message.starts_with("ScalingPolicy ai-models/tenant-a: PromQL `"), "{message}");
        assert!(
            message.contains("remove the namespace matcher") || message.contains("latencyHistogram `x{"),
            "{message}"
        );
        assert_eq!(failure.services, [key("ai-models", "tenant-a")]);
    }
    let values = &collection.values[&key("ai-models", "tenant-a")];
    assert!(values.custom.is_empty() && values.latency_p95_ms.is_none(), "{values:?}");
}

/// Answers every request with a chunked body that never ends; counts the bytes it managed to send.
fn endless_server() -> (String, Arc<std::sync::atomic::AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = Arc::clone(&sent);
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let counter = Arc::clone(&counter);
            std::thread::spawn(move || {
                let mut head = [0u8; 4096];
                let _ = stream.read(&mut head);
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
                );
                let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "[".repeat(64 * 1024));
                while stream.write_all(chunk.as_bytes()).is_ok() {
                    counter.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
    });
    (url, sent)
}

#[tokio::test]
async fn an_endless_answer_is_cut_at_the_cap_with_a_clear_error() {
    let (url, sent) = endless_server();
    let mut config = PrometheusConfig::new(url.clone());
    config.timeout = Duration::from_secs(60);
    config.max_response_bytes = 1 << 20;
    let source = PrometheusSource::new(config).unwrap();
    let collection = source.collect(&[target("ai-models", "xtts", &PrometheusMetrics::default())]).await;
    assert_eq!(collection.failures.len(), 1);
    let message = collection.failures[0].error.to_string();
    assert!(matches!(collection.failures[0].error, PromError::TooLarge { .. }), "{message}");
    assert!(message.contains(&url) && message.contains("more than 1048576 bytes"), "{message}");
    // The reader stopped at the cap: what the server got out is the cap plus socket buffers, not gigabytes.
    std::thread::sleep(Duration::from_millis(200));
    let sent = sent.load(std::sync::atomic::Ordering::Relaxed);
    assert!(sent < 64 << 20, "{sent} bytes were sent for a 1 MiB cap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_out_of_range_never_reach_a_policy() {
    use ballast::autoscaler::Observer;
    use ballast::sources::live::LiveObserver;

    let exporter = Exporter::start();
    let mut server = start_prometheus(exporter.port);
    let url = format!("http://127.0.0.1:{}", server.port);
    wait_for_data(&PrometheusSource::new(PrometheusConfig::new(url.clone())).unwrap(), &mut server).await;
    let spec: ballast::spec::ScalingPolicySpec = serde_json::from_value(serde_json::json!({
        "target": {"name": "stt"}, "minReplicas": 1, "maxReplicas": 4, "plugin": {"builtin": "hpa"},
        "metrics": {"resources": false, "prometheus": {
            "gpu": "vector(1e308)",
            "latencyP95": "-5 * sum(tenant_secret)",
            "latencyP99": "sum(tenant_secret)",
            "requestRate": "vector(2e9)",
            "custom": {"negative": "-sum(tenant_secret)", "huge": "vector(1e300)"}
        }}
    }))
    .unwrap();
    let key = key("ai-models", "stt");
    let metrics = Arc::new(ballast::export::Metrics::new().unwrap());
    let source = PrometheusSource::new(PrometheusConfig::new(url)).unwrap();
    let mut observer =
        LiveObserver::new(None, Some(source), Duration::from_millis(100), Duration::from_secs(60), metrics);
    let deadline = Instant::now() + Duration::from_secs(20);
    let observed = loop {
        let observed = observer.observe(&[(&key, &spec)], 0).await.remove(0);
        if observed.latency_p99_ms.is_some() {
            break observed;
        }
        assert!(Instant::now() < deadline, "no Prometheus values after 20 s: {observed:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(observed.latency_p99_ms, Some(7.0), "in range, as measured");
    assert_eq!(observed.custom, [("negative".to_string(), -7.0)], "a custom metric may be negative, not 1e300");
    for (metric, value) in [
        ("gpuDutyCyclePercent", observed.gpu_duty_cycle_percent),
        ("latencyP95Ms", observed.latency_p95_ms),
        ("requestRate", observed.request_rate),
    ] {
        assert_eq!(value, None, "{metric}");
        assert!(observed.unavailable[metric].contains("outside the sane range"), "{:?}", observed.unavailable);
    }
    assert!(observed.unavailable["custom.huge"].contains("1e300"), "{:?}", observed.unavailable);
}

/// `ballast trace` turns what Prometheus scraped from `ballast exporter` over jobs added by the real bullmq package
/// into a trace holding exactly those jobs, at the times they came (to the step), and a Simulation document.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backtest_trace_holds_every_job_bullmq_added_when_it_came() {
    let redis = common::RedisServer::start();
    let redis_url = redis.url("", 0);
    let add_jobs = |count: usize| {
        common::require("node", "apt-get install -y nodejs");
        common::ensure_node_modules();
        let output = Command::new("node")
            .args(["fixture.mjs", "add", "--url", &redis_url, "--count", &count.to_string(), "stt"])
            .current_dir(common::fixtures_dir())
            .output()
            .expect("running node");
        assert!(output.status.success(), "fixture add: {}", String::from_utf8_lossy(&output.stderr));
    };
    add_jobs(1); // the queue exists from its first job on
    let exporter_port = common::free_port();
    let _exporter = common::KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_ballast"))
            .args(["exporter", "--redis", &redis_url, "--listen", &format!("127.0.0.1:{exporter_port}")])
            .args(["--interval", "200ms", "stt"])
            .stderr(Stdio::null())
            .spawn()
            .expect("starting ballast exporter"),
    );
    let server = start_prometheus(exporter_port);
    let source = PrometheusSource::new(PrometheusConfig::new(format!("http://127.0.0.1:{}", server.port))).unwrap();
    let now = || SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let counter_reaches = |jobs: f64| {
        let source = &source;
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let t = now() as f64;
                let series =
                    source.query_range("ballast_queue_jobs_added_total", t - 1.0, t, Duration::from_secs(1)).await;
                if series.is_ok_and(|s| s.iter().any(|s| s.points.iter().any(|p| p.1 >= jobs))) {
                    return;
                }
                assert!(Instant::now() < deadline, "Prometheus did not see {jobs} jobs added within 30 s");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    };
    counter_reaches(1.0).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let from = now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let first_burst = now() - from;
    add_jobs(40);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let second_burst = now() - from;
    add_jobs(20);
    counter_reaches(61.0).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let to = now();

    let dir = tempfile::tempdir().unwrap();
    let (csv_path, sim_path) = (dir.path().join("trace.csv"), dir.path().join("sim.yaml"));
    let prometheus_url = format!("http://127.0.0.1:{}", server.port);
    let trace = |queue: &str| {
        Command::new(env!("CARGO_BIN_EXE_ballast"))
            .args(["trace", "--prometheus", &prometheus_url, "--step", "1s", "--queue", queue])
            .args(["--from", &from.to_string(), "--to", &to.to_string()])
            .arg("--out")
            .arg(&csv_path)
            .arg("--simulation")
            .arg(&sim_path)
            .output()
            .expect("running ballast trace")
    };
    let output = trace("stt=whisper-pyannote-stt");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("stt: 60 jobs added in the span"), "{stderr}");

    // Whole jobs per second: they add up to the 60 added, in two bursts at the times they were added (to the
    // scrape and step).
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    assert_eq!(csv.lines().next(), Some("time_s,service,arrivals"));
    let rows: Vec<(i64, u64)> = csv
        .lines()
        .skip(1)
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            assert_eq!(fields[1], "whisper-pyannote-stt", "{line}");
            (fields[0].parse().unwrap(), fields[2].parse().unwrap())
        })
        .collect();
    assert_eq!(rows.iter().map(|(_, n)| n).sum::<u64>(), 60, "{csv}");
    let near = |at: i64| rows.iter().any(|(t, _)| (t - at).abs() <= 3);
    assert!(near(first_burst) && near(second_burst), "bursts at {first_burst} s and {second_burst} s:\n{csv}");
    assert!(rows.iter().all(|(t, _)| (t - first_burst).abs() <= 3 || (t - second_burst).abs() <= 3), "{csv}");

    let simulation = std::fs::read_to_string(&sim_path).unwrap();
    ballast::sim::SimulationFile::parse("sim.yaml", &simulation).expect("a Simulation document simulate reads");
    assert!(simulation.contains("whisper-pyannote-stt:\n    queue: stt\n"), "{simulation}");
    assert!(simulation.contains("serviceSeconds: 1  # guess"), "no worker took a job: {simulation}");

    // The trace and document replay: the simulated queue receives exactly the 60 jobs.
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "apiVersion: ballast.dev/v1alpha1\nkind: ScalingPolicy\nmetadata: {name: whisper-pyannote-stt, namespace: ai}\n\
         spec:\n  target: {name: whisper-pyannote-stt}\n  minReplicas: 1\n  maxReplicas: 4\n  plugin: {builtin: hpa}\n  \
         config: {jobsPerPod: 5}\n  metrics: {queues: [{name: stt}]}\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_ballast"))
        .args(["simulate", "--duration", "10m", "--policies"])
        .arg(&policy)
        .arg("--trace")
        .arg(&csv_path)
        .arg("--sim")
        .arg(&sim_path)
        .arg("--out")
        .arg(dir.path().join("out"))
        .output()
        .expect("running ballast simulate");
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{table}{}", String::from_utf8_lossy(&output.stderr));
    let row = table.lines().find(|l| l.starts_with("whisper-pyannote-stt  policy")).expect("the policy's row");
    let cells: Vec<u64> = row.split_whitespace().rev().take(2).map(|cell| cell.parse().unwrap()).collect();
    assert_eq!(cells.iter().sum::<u64>(), 60, "completed + left: {table}");

    let output = trace("nope");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("no history of ballast_queue_jobs_added_total{queue_name=\"nope\"}"), "{stderr}");
}
