//! The Prometheus metric source: GPU duty cycle (dcgm-exporter), latency quantiles, request rate and custom
//! PromQL, for many services at once.
//!
//! # Batching
//! Each refresh issues ONE instant query per distinct built-in template (the default GPU template, and the
//! latency and request-rate templates made from `latencyHistogram` and `requestCounter`), whatever the number of
//! services, and one per distinct template written in a policy and namespace: every service whose template text
//! is identical (and, for written templates, whose namespace is the same) joins the same query, and the
//! placeholders are filled with the whole group. The answer holds series for every service of the group; each
//! series is then attributed to its service by its labels and the series of one service are aggregated.
//!
//! # Confinement to the policy's namespace
//! Whoever may write a ScalingPolicy in a namespace may write PromQL, which runs with the host's Prometheus
//! access. Every query is therefore confined before it is sent ([`super::promql::confine`], as prom-label-proxy
//! does): each selector gets a `namespace` matcher for the group's namespaces — the policy's own for a written
//! template, whose group never spans namespaces — and a selector that names any other namespace is refused with
//! [`PromError::Refused`], naming the policies. Series without a `namespace` label (node-level metrics) are thus
//! out of a policy's reach. `latencyHistogram` and `requestCounter` must be plain metric names.
//!
//! # Template language
//! A template is a PromQL expression in which these placeholders are replaced (anything else in braces, such as a
//! label matcher, is left alone):
//!
//! | placeholder | becomes, for the group of services sharing the template |
//! | --- | --- |
//! | `{namespace}` | a regex alternation of their namespaces: `ai-models\|other` (use as `namespace=~"{namespace}"`) |
//! | `{deployment}` | a regex alternation of their Deployment names |
//! | `{pod_regex}` | `(stt\|mt)-[a-z0-9]+-[a-z0-9]+`: the pods of those Deployments (`<deployment>-<replicaset hash>-<suffix>`); capture group 1 is the Deployment, for `label_replace` |
//! | `{max_sample_age}` | the configured maximum sample age in seconds, e.g. `30` |
//! | `{rate_window}` | the configured `rate()` window as a PromQL duration, e.g. `1m` → `60s` |
//!
//! Names are regex-escaped and escaped for a PromQL double-quoted string.
//!
//! # Attribution of series to services
//! A series belongs to the service whose namespace equals its `namespace` label (when it has one) and whose
//! Deployment equals its `deployment` label, or else whose Deployment is the prefix of its `pod` label
//! (`<deployment>-…`; when several Deployments are prefixes, the one leaving a `<hash>-<suffix>` rest, then the
//! longest, wins). A series without these labels belongs to the only service of its group, if there is one. Other
//! series are ignored. Per service the series are then combined: GPU utilization is averaged (over pods), latency
//! takes the largest (worst) value, request rate and custom metrics are summed.
//!
//! # Unavailable is not zero
//! A service without series, or whose series are all NaN, ±Inf or older than the maximum sample age, gets `None`.
//! A failed query (unreachable Prometheus, HTTP error, rejected PromQL, timeout) is reported in
//! [`PromCollection::failures`] and leaves only the metrics of that query `None`.
//!
//! # Sample age
//! Prometheus stamps an instant query's result with the evaluation time; a series whose exporter stops serving it
//! is marked stale at the next scrape and vanishes from the answer. Samples carrying an explicit, old timestamp
//! stay visible for Prometheus's 5-minute lookback: the default GPU template drops them server-side with
//! `time() - timestamp(…) < {max_sample_age}`. [`Sample::age`] is the time between the result's timestamp and
//! now; results older than the maximum age are dropped too (a lagging or clock-skewed Prometheus).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::promql::{ConfineError, confine};
use crate::config::PrometheusSettings;
use crate::spec::{PrometheusMetrics, ServiceKey};

/// GPU utilization per pod from dcgm-exporter, keeping only GPUs whose newest sample is fresh. Assumes the scrape
/// keeps dcgm-exporter's own `namespace`/`pod` labels (`honor_labels: true`, as its Helm chart's ServiceMonitor
/// sets); with `exported_namespace`/`exported_pod` write your own template.
pub const DEFAULT_GPU_TEMPLATE: &str = "avg by (namespace, pod) (\
DCGM_FI_DEV_GPU_UTIL{namespace=~\"{namespace}\", pod=~\"{pod_regex}\"} \
and (time() - timestamp(DCGM_FI_DEV_GPU_UTIL{namespace=~\"{namespace}\", pod=~\"{pod_regex}\"}) < {max_sample_age}))";

/// The default latency template: the `quantile` (0..1) of a histogram in seconds, per Deployment, in milliseconds,
/// over the rate window.
pub(crate) fn latency_quantile_template(histogram: &str, quantile: f64) -> String {
    format!(
        "1000 * histogram_quantile({quantile}, sum by (le, namespace, deployment) (label_replace(\
         rate({histogram}_bucket{{namespace=~\"{{namespace}}\", pod=~\"{{pod_regex}}\"}}[{{rate_window}}]), \
         \"deployment\", \"$1\", \"pod\", \"{{pod_regex}}\")))"
    )
}

/// The default request-rate template: per-second increase of a counter over the rate window, per pod.
pub(crate) fn request_rate_template(counter: &str) -> String {
    format!(
        "sum by (namespace, pod) (rate({counter}{{namespace=~\"{{namespace}}\", pod=~\"{{pod_regex}}\"}}[{{rate_window}}]))"
    )
}

/// A secret (bearer token, password): given, or in a file that is read at every refresh, so a rotated secret (a
/// mounted Secret's new contents) is picked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Value(String),
    File(PathBuf),
}

/// How requests to Prometheus authenticate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PrometheusAuth {
    #[default]
    None,
    /// `Authorization: Bearer TOKEN` (a proxy in front of Prometheus, or a managed Prometheus).
    Bearer(Credential),
    /// HTTP basic auth, as Prometheus's own `--web.config.file` `basic_auth_users` checks it.
    Basic { user: String, password: Credential },
}

/// The credentials of one refresh, read from their files.
#[derive(Debug, Clone)]
enum Authorization {
    Bearer(String),
    Basic { user: String, password: String },
}

impl PrometheusAuth {
    fn read(&self) -> Result<Option<Authorization>, PromError> {
        Ok(match self {
            PrometheusAuth::None => None,
            PrometheusAuth::Bearer(token) => Some(Authorization::Bearer(token.read("Prometheus bearer token file")?)),
            PrometheusAuth::Basic { user, password } => Some(Authorization::Basic {
                user: user.clone(),
                password: password.read("Prometheus basic-auth password file")?,
            }),
        })
    }
}

impl Credential {
    fn read(&self, what: &'static str) -> Result<String, PromError> {
        let path = match self {
            Credential::Value(value) => return Ok(value.clone()),
            Credential::File(path) => path,
        };
        let file_error = |detail: String| PromError::File { what, path: path.clone(), detail };
        let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
        let text = text.trim();
        if text.is_empty() {
            return Err(file_error("it is empty".into()));
        }
        Ok(text.to_string())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PrometheusConfig {
    /// Base URL, e.g. `http://prometheus.monitoring:9090` or `https://host/prometheus/`.
    pub(crate) url: String,
    pub auth: PrometheusAuth,
    /// PEM bundle of extra CA certificates trusted for an https URL.
    pub ca_file: Option<PathBuf>,
    /// Accept any server certificate (insecure-skip-verify).
    pub insecure: bool,
    /// Per query, connection included.
    pub timeout: Duration,
    /// Queries in flight at once.
    pub(crate) max_concurrency: usize,
    /// Samples older than this are unavailable.
    pub max_sample_age: Duration,
    /// The `rate()` window of the default templates (`{rate_window}`). `rate()` divides by the whole window, so
    /// a series younger than the window reads low; a window of at least 4 scrape intervals keeps it smooth.
    pub rate_window: Duration,
    /// Largest answer read for one query; a longer one is a [`PromError::TooLarge`] and is not kept in memory.
    pub max_response_bytes: usize,
}

/// 16 MiB: about 50,000 series of the shape the templates return, far more than any batch of services needs.
pub(crate) const DEFAULT_MAX_RESPONSE_BYTES: usize = 16 << 20;

impl PrometheusConfig {
    /// A config with the defaults of [`PrometheusSettings`], 4 queries in flight, answers up to
    /// [`DEFAULT_MAX_RESPONSE_BYTES`].
    pub fn new(url: impl Into<String>) -> Self {
        let settings = PrometheusSettings::default();
        PrometheusConfig {
            url: url.into(),
            auth: PrometheusAuth::None,
            ca_file: None,
            insecure: false,
            timeout: settings.timeout,
            max_concurrency: 4,
            max_sample_age: settings.max_sample_age,
            rate_window: settings.rate_window,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }

    /// The query timeout, maximum sample age and rate window of `settings`.
    pub fn with_settings(self, settings: &PrometheusSettings) -> Self {
        PrometheusConfig {
            timeout: settings.timeout,
            max_sample_age: settings.max_sample_age,
            rate_window: settings.rate_window,
            ..self
        }
    }
}

/// One service to collect for.
#[derive(Debug, Clone, PartialEq)]
pub struct PromTarget {
    pub key: ServiceKey,
    pub namespace: String,
    pub deployment: String,
    pub metrics: PrometheusMetrics,
}

/// A measured value and how old it is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub value: f64,
    pub age: Duration,
}

/// What Prometheus gave for one service; `None` is unavailable.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PromValues {
    pub gpu_duty_cycle_percent: Option<Sample>,
    pub latency_p50_ms: Option<Sample>,
    pub latency_p95_ms: Option<Sample>,
    pub latency_p99_ms: Option<Sample>,
    /// Requests per second.
    pub request_rate: Option<Sample>,
    /// Available custom metrics only, by name.
    pub custom: Vec<(String, Sample)>,
}

/// A query that failed; its metrics are `None` for `services`.
#[derive(Debug, Clone)]
pub struct QueryFailure {
    pub query: String,
    pub services: Vec<ServiceKey>,
    pub error: PromError,
}

#[derive(Debug, Default)]
pub struct PromCollection {
    /// Every requested service, available or not.
    pub values: BTreeMap<ServiceKey, PromValues>,
    pub failures: Vec<QueryFailure>,
    /// Queries sent to Prometheus during this collection.
    pub queries: usize,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum PromError {
    #[error(
        "Prometheus URL `{url}` is invalid: {detail}; give an http:// or https:// base URL such as http://prometheus:9090"
    )]
    InvalidUrl { url: String, detail: String },
    #[error("cannot read {what} `{path}`: {detail}; fix the path or mount the file")]
    File { what: &'static str, path: PathBuf, detail: String },
    #[error("cannot build the HTTP client for Prometheus at {url}: {detail}")]
    Client { url: String, detail: String },
    #[error(
        "Prometheus at {url} could not be reached for query `{query}`: {detail}; check the Prometheus URL and that \
         Prometheus is listening there"
    )]
    Unreachable { url: String, query: String, detail: String },
    #[error(
        "Prometheus at {url} did not answer query `{query}` within {timeout:?}; raise the timeout or make the query \
         cheaper"
    )]
    Timeout { url: String, query: String, timeout: Duration },
    #[error(
        "Prometheus at {url} answered query `{query}` with HTTP {status}: {body}; check the URL (it must be the \
         Prometheus base URL) and, for 401/403, the credentials (--prometheus-bearer-token-file, \
         --prometheus-basic-auth-user and --prometheus-basic-auth-password-file)"
    )]
    Http { url: String, query: String, status: u16, body: String },
    #[error("Prometheus at {url} rejected query `{query}`: {error_type}: {error}; fix the PromQL template")]
    Rejected { url: String, query: String, error_type: String, error: String },
    #[error(
        "Prometheus at {url} gave an unusable answer to query `{query}`: {detail}; the template must yield an \
         instant vector"
    )]
    BadAnswer { url: String, query: String, detail: String },
    #[error(
        "Prometheus at {url} answered query `{query}` with more than {limit} bytes; the answer was dropped: make the \
         query return fewer series (aggregate with sum/avg by the labels the policy needs)"
    )]
    TooLarge { url: String, query: String, limit: usize },
    #[error("{policies}: PromQL `{query}` was not sent: {reason}")]
    Refused { policies: String, query: String, reason: String },
}

/// Issues batched instant queries against one Prometheus server.
#[derive(Clone)]
pub struct PrometheusSource {
    inner: Arc<Inner>,
}

struct Inner {
    client: reqwest::Client,
    url: String,
    endpoint: reqwest::Url,
    range_endpoint: reqwest::Url,
    auth: PrometheusAuth,
    timeout: Duration,
    max_sample_age: Duration,
    rate_window: Duration,
    max_response_bytes: usize,
    in_flight: Arc<Semaphore>,
    queries_issued: AtomicU64,
}

impl PrometheusSource {
    pub fn new(config: PrometheusConfig) -> Result<Self, PromError> {
        let invalid = |detail: String| PromError::InvalidUrl { url: config.url.clone(), detail };
        let mut base = reqwest::Url::parse(&config.url).map_err(|e| invalid(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid(format!("scheme `{}` is not http or https", base.scheme())));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let endpoint = base.join("api/v1/query").map_err(|e| invalid(e.to_string()))?;
        let range_endpoint = base.join("api/v1/query_range").map_err(|e| invalid(e.to_string()))?;

        // reqwest is built without a bundled crypto provider; use ring unless the process chose one already.
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let mut builder =
            reqwest::Client::builder().timeout(config.timeout).danger_accept_invalid_certs(config.insecure);
        if let Some(path) = &config.ca_file {
            let file_error =
                |detail: String| PromError::File { what: "Prometheus CA file", path: path.clone(), detail };
            let pem = std::fs::read(path).map_err(|e| file_error(e.to_string()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| file_error(e.to_string()))?;
            if certs.is_empty() {
                return Err(file_error("no PEM certificate in it".into()));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client =
            builder.build().map_err(|e| PromError::Client { url: config.url.clone(), detail: e.to_string() })?;
        // A missing or empty secret file is refused now, with its path, rather than at every refresh.
        config.auth.read()?;
        Ok(PrometheusSource {
            inner: Arc::new(Inner {
                client,
                url: config.url,
                endpoint,
                range_endpoint,
                auth: config.auth,
                timeout: config.timeout,
                max_sample_age: config.max_sample_age,
                rate_window: config.rate_window,
                max_response_bytes: config.max_response_bytes,
                in_flight: Arc::new(Semaphore::new(config.max_concurrency.max(1))),
                queries_issued: AtomicU64::new(0),
            }),
        })
    }

    /// The history of `query` from `start` to `end` (Unix seconds) every `step`, as Prometheus's `query_range`
    /// answers it (at most 11,000 points a series per call: callers split longer spans). Unlike [`Self::collect`],
    /// the query is sent as given: this is for an operator's command line, not for a tenant's policy.
    pub async fn query_range(
        &self,
        query: &str,
        start: f64,
        end: f64,
        step: Duration,
    ) -> Result<Vec<RangeSeries>, PromError> {
        let authorization = self.inner.auth.read()?;
        let params = [("start", start.to_string()), ("end", end.to_string()), ("step", step.as_secs_f64().to_string())];
        self.inner.queries_issued.fetch_add(1, Ordering::Relaxed);
        match self.inner.call(&self.inner.range_endpoint, query, &params, authorization.as_ref()).await? {
            ApiData::Matrix(series) => Ok(series
                .into_iter()
                .map(|s| RangeSeries {
                    labels: s.metric,
                    points: s.values.iter().map(|(t, v)| (*t, parse_value(v))).collect(),
                })
                .collect()),
            _ => Err(PromError::BadAnswer {
                url: self.inner.url.clone(),
                query: query.to_string(),
                detail: "not a range vector (matrix)".into(),
            }),
        }
    }

    /// Queries sent since this source was created.
    pub fn queries_issued(&self) -> u64 {
        self.inner.queries_issued.load(Ordering::Relaxed)
    }

    /// Gathers every service's metrics with one query per distinct template. Never fails as a whole: failures are
    /// listed in the result and their metrics are `None`.
    pub async fn collect(&self, targets: &[PromTarget]) -> PromCollection {
        let batches = plan(targets);
        let mut values: Vec<PromValues> = vec![PromValues::default(); targets.len()];
        let mut collection = PromCollection::default();
        let authorization = match self.inner.auth.read() {
            Ok(authorization) => authorization,
            Err(error) => {
                for batch in &batches {
                    collection.failures.push(QueryFailure {
                        query: batch.template.clone(),
                        services: batch.targets.iter().map(|&t| targets[t].key.clone()).collect(),
                        error: error.clone(),
                    });
                }
                collection.values = targets.iter().map(|t| (t.key.clone(), PromValues::default())).collect();
                return collection;
            }
        };

        // Each batch's query as expanded, then as confined and sent.
        let mut queries: Vec<String> = batches
            .iter()
            .map(|batch| {
                let group = batch.targets.iter().map(|&t| &targets[t]);
                expand(&batch.template, group, self.inner.max_sample_age, self.inner.rate_window)
            })
            .collect();
        let mut in_flight = JoinSet::new();
        let mut batch_of_task = HashMap::new();
        for (index, query) in queries.iter_mut().enumerate() {
            let batch = &batches[index];
            let namespaces: BTreeSet<String> = batch.targets.iter().map(|&t| targets[t].namespace.clone()).collect();
            let confined = match &batch.refusal {
                Some(refusal) => Err(refusal.clone()),
                None => confine(query, &namespaces),
            };
            *query = match confined {
                Ok(confined) => confined,
                Err(reason) => {
                    let services: Vec<ServiceKey> = batch.targets.iter().map(|&t| targets[t].key.clone()).collect();
                    collection.failures.push(QueryFailure {
                        query: query.clone(),
                        error: PromError::Refused {
                            policies: policies_named(&services),
                            query: query.clone(),
                            reason: reason.to_string(),
                        },
                        services,
                    });
                    continue;
                }
            };
            let (inner, query, authorization) = (Arc::clone(&self.inner), query.clone(), authorization.clone());
            let handle = in_flight.spawn(async move {
                // The semaphore is never closed, so acquiring only waits.
                let _permit = inner.in_flight.clone().acquire_owned().await;
                inner.queries_issued.fetch_add(1, Ordering::Relaxed);
                inner.query(&query, authorization.as_ref()).await
            });
            batch_of_task.insert(handle.id(), index);
        }
        collection.queries = batch_of_task.len();

        let now = unix_now();
        while let Some(joined) = in_flight.join_next_with_id().await {
            let (index, answer) = match joined {
                Ok((id, answer)) => (batch_of_task[&id], answer),
                Err(join_error) => (
                    batch_of_task[&join_error.id()],
                    Err(PromError::BadAnswer {
                        url: self.inner.url.clone(),
                        query: queries[batch_of_task[&join_error.id()]].clone(),
                        detail: format!("the query task failed: {join_error}"),
                    }),
                ),
            };
            let batch = &batches[index];
            match answer {
                Ok(series) => self.distribute(batch, targets, &series, now, &mut values),
                Err(error) => collection.failures.push(QueryFailure {
                    query: queries[index].clone(),
                    services: batch.targets.iter().map(|&t| targets[t].key.clone()).collect(),
                    error,
                }),
            }
        }
        collection.failures.sort_by(|a, b| a.query.cmp(&b.query));
        collection.values = targets.iter().map(|t| t.key.clone()).zip(values).collect();
        collection
    }

    fn distribute(
        &self,
        batch: &Batch,
        targets: &[PromTarget],
        series: &[Series],
        now: f64,
        values: &mut [PromValues],
    ) {
        let candidates: Vec<Candidate> = batch
            .targets
            .iter()
            .map(|&t| Candidate { namespace: &targets[t].namespace, deployment: &targets[t].deployment, target: t })
            .collect();
        let mut per_target: HashMap<usize, Vec<&Series>> = HashMap::new();
        let mut unattributed = 0usize;
        for s in series {
            let owners = attribute(&s.labels, &candidates);
            if owners.is_empty() {
                unattributed += 1;
            }
            for owner in owners {
                per_target.entry(owner).or_default().push(s);
            }
        }
        if unattributed > 0 {
            tracing::debug!(template = %batch.template, unattributed, "series matching no service were ignored");
        }
        for (target, slot) in &batch.uses {
            let sample =
                per_target.get(target).and_then(|s| aggregate(slot.aggregation(), s, now, self.inner.max_sample_age));
            let out = &mut values[*target];
            match slot {
                Slot::Gpu => out.gpu_duty_cycle_percent = sample,
                Slot::LatencyP50 => out.latency_p50_ms = sample,
                Slot::LatencyP95 => out.latency_p95_ms = sample,
                Slot::LatencyP99 => out.latency_p99_ms = sample,
                Slot::RequestRate => out.request_rate = sample,
                Slot::Custom(name) => {
                    if let Some(sample) = sample {
                        out.custom.push((name.clone(), sample));
                        out.custom.sort_by(|a, b| a.0.cmp(&b.0));
                    }
                }
            }
        }
    }
}

impl Inner {
    async fn query(&self, query: &str, authorization: Option<&Authorization>) -> Result<Vec<Series>, PromError> {
        let url = || self.url.clone();
        let query_text = || query.to_string();
        match self.call(&self.endpoint, query, &[], authorization).await? {
            ApiData::Vector(samples) => samples
                .into_iter()
                .map(|s| Ok(Series { labels: s.metric, timestamp: s.value.0, value: parse_value(&s.value.1) }))
                .collect(),
            ApiData::Scalar((timestamp, value)) => {
                Ok(vec![Series { labels: BTreeMap::new(), timestamp, value: parse_value(&value) }])
            }
            ApiData::Matrix(_) => {
                Err(PromError::BadAnswer { url: url(), query: query_text(), detail: "a range vector (matrix)".into() })
            }
            ApiData::String(_) => {
                Err(PromError::BadAnswer { url: url(), query: query_text(), detail: "a string".into() })
            }
        }
    }

    /// One POST to `endpoint` with `query` and `params`: the answer's data, its size held to the cap.
    async fn call(
        &self,
        endpoint: &reqwest::Url,
        query: &str,
        params: &[(&str, String)],
        authorization: Option<&Authorization>,
    ) -> Result<ApiData, PromError> {
        let url = || self.url.clone();
        let query_text = || query.to_string();
        let timeout = format!("{}", self.timeout.as_secs_f64());
        let mut form = vec![("query", query), ("timeout", &timeout)];
        form.extend(params.iter().map(|(name, value)| (*name, value.as_str())));
        let mut request = self.client.post(endpoint.clone()).form(&form);
        request = match authorization {
            None => request,
            Some(Authorization::Bearer(token)) => request.bearer_auth(token),
            Some(Authorization::Basic { user, password }) => request.basic_auth(user, Some(password)),
        };
        let transport = |e: reqwest::Error| {
            if e.is_timeout() {
                PromError::Timeout { url: url(), query: query_text(), timeout: self.timeout }
            } else {
                PromError::Unreachable { url: url(), query: query_text(), detail: error_chain(&e) }
            }
        };
        let mut response = request.send().await.map_err(transport)?;
        let status = response.status();
        // Read chunk by chunk up to the cap: a server streaming without end must not fill the host's memory.
        let limit = self.max_response_bytes;
        let too_large = || PromError::TooLarge { url: url(), query: query_text(), limit };
        if response.content_length().is_some_and(|length| length > limit as u64) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        let parsed = serde_json::from_slice::<ApiResponse>(&body);
        match parsed {
            Ok(api) if api.status == "error" => Err(PromError::Rejected {
                url: url(),
                query: query_text(),
                error_type: api.error_type.unwrap_or_default(),
                error: api.error.unwrap_or_default(),
            }),
            _ if !status.is_success() => Err(PromError::Http {
                url: url(),
                query: query_text(),
                status: status.as_u16(),
                body: String::from_utf8_lossy(&body).chars().take(200).collect(),
            }),
            Ok(api) => api.data.ok_or_else(|| PromError::BadAnswer {
                url: url(),
                query: query_text(),
                detail: "no data".into(),
            }),
            Err(e) => Err(PromError::BadAnswer { url: url(), query: query_text(), detail: format!("not JSON: {e}") }),
        }
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Prometheus writes NaN and infinities as strings; they parse here and are dropped by [`aggregate`].
fn parse_value(text: &str) -> f64 {
    text.parse().unwrap_or(f64::NAN)
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or_default()
}

#[derive(Deserialize)]
struct ApiResponse {
    status: String,
    data: Option<ApiData>,
    #[serde(rename = "errorType")]
    error_type: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum ApiData {
    Vector(Vec<VectorSample>),
    Scalar((f64, String)),
    Matrix(Vec<MatrixSeries>),
    String(serde::de::IgnoredAny),
}

#[derive(Deserialize)]
struct MatrixSeries {
    metric: BTreeMap<String, String>,
    values: Vec<(f64, String)>,
}

/// One series of a range query: its labels and its `(Unix seconds, value)` points, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeSeries {
    pub(crate) labels: BTreeMap<String, String>,
    pub points: Vec<(f64, f64)>,
}

#[derive(Deserialize)]
struct VectorSample {
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

struct Series {
    labels: BTreeMap<String, String>,
    timestamp: f64,
    value: f64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Slot {
    Gpu,
    LatencyP50,
    LatencyP95,
    LatencyP99,
    RequestRate,
    Custom(String),
}

#[derive(Debug, Clone, Copy)]
enum Aggregation {
    Mean,
    Max,
    Sum,
}

impl Slot {
    fn aggregation(&self) -> Aggregation {
        match self {
            Slot::Gpu => Aggregation::Mean,
            Slot::LatencyP50 | Slot::LatencyP95 | Slot::LatencyP99 => Aggregation::Max,
            Slot::RequestRate | Slot::Custom(_) => Aggregation::Sum,
        }
    }
}

/// One query: a template and the services (indices into the targets) that use it.
struct Batch {
    template: String,
    targets: Vec<usize>,
    uses: Vec<(usize, Slot)>,
    /// Why the query must not be sent at all.
    refusal: Option<ConfineError>,
}

/// Where a template's text comes from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Origin {
    /// Written by the host (a name given in the policy at most, checked to be a metric name): one query serves
    /// every namespace.
    Host,
    /// Written in the policy of this namespace: queried for this namespace alone.
    Policy(String),
}

/// The templates a service asks for, defaults filled in.
fn templates(target: &PromTarget) -> Vec<(Slot, String, Origin, Option<ConfineError>)> {
    let metrics = &target.metrics;
    let policy = || Origin::Policy(target.namespace.clone());
    let written = |slot: Slot, template: &String| (slot, template.clone(), policy(), None);
    // A name that is not a metric name is PromQL of the policy's own: it would run unconfined inside ours.
    let from_name = |slot: Slot, field: &str, name: &str, template: String| {
        if is_metric_name(name) {
            (slot, template, Origin::Host, None)
        } else {
            let refusal = ConfineError::NotAMetricName { field: field.into(), name: name.into() };
            (slot, template, policy(), Some(refusal))
        }
    };
    let mut out = vec![match &metrics.gpu {
        Some(template) => written(Slot::Gpu, template),
        None => (Slot::Gpu, DEFAULT_GPU_TEMPLATE.to_string(), Origin::Host, None),
    }];
    for (slot, explicit, quantile) in [
        (Slot::LatencyP50, &metrics.latency_p50, 0.5),
        (Slot::LatencyP95, &metrics.latency_p95, 0.95),
        (Slot::LatencyP99, &metrics.latency_p99, 0.99),
    ] {
        match (explicit, &metrics.latency_histogram) {
            (Some(template), _) => out.push(written(slot, template)),
            (None, Some(histogram)) => {
                out.push(from_name(slot, "latencyHistogram", histogram, latency_quantile_template(histogram, quantile)))
            }
            (None, None) => {}
        }
    }
    match (&metrics.request_rate, &metrics.request_counter) {
        (Some(template), _) => out.push(written(Slot::RequestRate, template)),
        (None, Some(counter)) => {
            out.push(from_name(Slot::RequestRate, "requestCounter", counter, request_rate_template(counter)))
        }
        (None, None) => {}
    }
    out.extend(metrics.custom.iter().map(|(name, template)| written(Slot::Custom(name.clone()), template)));
    out
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`, Prometheus's metric name syntax.
fn is_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// `ScalingPolicy ns/a` or `ScalingPolicies ns/a, ns/b`, for messages.
fn policies_named(services: &[ServiceKey]) -> String {
    let names: Vec<String> = services.iter().map(|k| format!("{}/{}", k.namespace, k.name)).collect();
    let noun = if names.len() == 1 { "ScalingPolicy" } else { "ScalingPolicies" };
    format!("{noun} {}", names.join(", "))
}

fn plan(targets: &[PromTarget]) -> Vec<Batch> {
    let mut by_template: BTreeMap<(String, Origin), Batch> = BTreeMap::new();
    for (index, target) in targets.iter().enumerate() {
        for (slot, template, origin, refusal) in templates(target) {
            let batch = by_template.entry((template.clone(), origin)).or_insert_with(|| Batch {
                template,
                targets: Vec::new(),
                uses: Vec::new(),
                refusal: None,
            });
            batch.refusal = batch.refusal.take().or(refusal);
            if batch.targets.last() != Some(&index) {
                batch.targets.push(index);
            }
            batch.uses.push((index, slot));
        }
    }
    by_template.into_values().collect()
}

/// Fills the placeholders for a group of services.
fn expand<'a>(
    template: &str,
    targets: impl Iterator<Item = &'a PromTarget>,
    max_sample_age: Duration,
    rate_window: Duration,
) -> String {
    let mut namespaces = BTreeSet::new();
    let mut deployments = BTreeSet::new();
    for target in targets {
        namespaces.insert(regex_literal(&target.namespace));
        deployments.insert(regex_literal(&target.deployment));
    }
    let namespaces: Vec<String> = namespaces.into_iter().collect();
    let mut deployments: Vec<String> = deployments.into_iter().collect();
    // Longest first, so that an alternation tried left to right prefers `stt-gpu` over `stt`.
    deployments.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    let deployments = deployments.join("|");
    template
        .replace("{namespace}", &namespaces.join("|"))
        .replace("{deployment}", &deployments)
        .replace("{pod_regex}", &format!("({deployments})-[a-z0-9]+-[a-z0-9]+"))
        .replace("{max_sample_age}", &format!("{}", max_sample_age.as_secs_f64()))
        .replace("{rate_window}", &promql_duration(rate_window))
}

fn promql_duration(duration: Duration) -> String {
    let millis = duration.as_millis().max(1);
    if millis.is_multiple_of(1000) { format!("{}s", millis / 1000) } else { format!("{millis}ms") }
}

/// A name as a regex matching only itself, inside a PromQL double-quoted string (hence doubled backslashes).
fn regex_literal(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '\\' | '.' | '+' | '*' | '?' | '(' | ')' | '|' | '[' | ']' | '{' | '}' | '^' | '$' => {
                out.push_str("\\\\");
                out.push(c);
            }
            '"' => out.push_str("\\\""),
            _ => out.push(c),
        }
    }
    out
}

struct Candidate<'a> {
    namespace: &'a str,
    deployment: &'a str,
    target: usize,
}

/// The services a series belongs to (see the module docs): none, one, or several services of the same Deployment.
fn attribute(labels: &BTreeMap<String, String>, candidates: &[Candidate]) -> Vec<usize> {
    let mut matching: Vec<&Candidate> =
        candidates.iter().filter(|c| labels.get("namespace").is_none_or(|ns| ns == c.namespace)).collect();
    if let Some(deployment) = labels.get("deployment") {
        matching.retain(|c| c.deployment == deployment);
    } else if let Some(pod) = labels.get("pod") {
        let rest = |c: &Candidate| pod.strip_prefix(c.deployment).and_then(|r| r.strip_prefix('-')).map(str::to_string);
        matching.retain(|c| rest(c).is_some());
        if matching.iter().any(|c| rest(c).is_some_and(|r| is_replicaset_pod_suffix(&r))) {
            matching.retain(|c| rest(c).is_some_and(|r| is_replicaset_pod_suffix(&r)));
        }
        if let Some(longest) = matching.iter().map(|c| c.deployment.len()).max() {
            matching.retain(|c| c.deployment.len() == longest);
        }
    }
    let same_workload = matching
        .windows(2)
        .all(|pair| pair[0].namespace == pair[1].namespace && pair[0].deployment == pair[1].deployment);
    if same_workload { matching.iter().map(|c| c.target).collect() } else { Vec::new() }
}

/// `<replicaset hash>-<suffix>`, what follows `<deployment>-` in a Deployment's pod name.
fn is_replicaset_pod_suffix(rest: &str) -> bool {
    let mut parts = rest.split('-');
    let segment = |s: Option<&str>| {
        s.is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
    };
    segment(parts.next()) && segment(parts.next()) && parts.next().is_none()
}

fn aggregate(aggregation: Aggregation, series: &[&Series], now: f64, max_sample_age: Duration) -> Option<Sample> {
    let usable: Vec<(f64, Duration)> = series
        .iter()
        .filter(|s| s.value.is_finite())
        .map(|s| (s.value, Duration::try_from_secs_f64((now - s.timestamp).max(0.0)).unwrap_or(Duration::MAX)))
        .filter(|(_, age)| *age <= max_sample_age)
        .collect();
    if usable.is_empty() {
        return None;
    }
    let values = usable.iter().map(|(v, _)| *v);
    let value = match aggregation {
        Aggregation::Mean => values.sum::<f64>() / usable.len() as f64,
        Aggregation::Sum => values.sum(),
        Aggregation::Max => values.fold(f64::NEG_INFINITY, f64::max),
    };
    let age = usable.iter().map(|(_, age)| *age).max().unwrap_or_default();
    Some(Sample { value, age })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(namespace: &str, deployment: &str) -> PromTarget {
        target_with(namespace, deployment, &PrometheusMetrics::default())
    }

    fn target_with(namespace: &str, deployment: &str, metrics: &PrometheusMetrics) -> PromTarget {
        PromTarget {
            key: ServiceKey { namespace: namespace.into(), name: deployment.into() },
            namespace: namespace.into(),
            deployment: deployment.into(),
            metrics: metrics.clone(),
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn placeholders_become_escaped_alternations_longest_deployment_first() {
        let targets = [target("ai-models", "stt"), target("ai-models", "stt-gpu"), target("other", "mt.v2")];
        let query = expand(
            "rate(x{namespace=~\"{namespace}\", deployment=~\"{deployment}\", pod=~\"{pod_regex}\"}[{rate_window}]) \
             < {max_sample_age}",
            targets.iter(),
            Duration::from_secs(30),
            Duration::from_millis(1500),
        );
        assert_eq!(
            query,
            "rate(x{namespace=~\"ai-models|other\", deployment=~\"mt\\\\.v2|stt-gpu|stt\", \
             pod=~\"(mt\\\\.v2|stt-gpu|stt)-[a-z0-9]+-[a-z0-9]+\"}[1500ms]) < 30"
        );
    }

    #[test]
    fn series_go_to_the_deployment_owning_the_pod() {
        let targets = [target("ai-models", "whisper"), target("ai-models", "whisper-stt"), target("b", "whisper")];
        let candidates: Vec<Candidate> = targets
            .iter()
            .enumerate()
            .map(|(i, t)| Candidate { namespace: &t.namespace, deployment: &t.deployment, target: i })
            .collect();
        let owner = |pairs: &[(&str, &str)]| attribute(&labels(pairs), &candidates);
        assert_eq!(owner(&[("namespace", "ai-models"), ("pod", "whisper-stt-7d9f8b6c5-x2k4p")]), vec![1]);
        assert_eq!(owner(&[("namespace", "ai-models"), ("pod", "whisper-7d9f8b6c5-x2k4p")]), vec![0]);
        assert_eq!(owner(&[("namespace", "b"), ("pod", "whisper-7d9f8b6c5-x2k4p")]), vec![2]);
        assert_eq!(owner(&[("namespace", "ai-models"), ("deployment", "whisper-stt")]), vec![1]);
        assert_eq!(owner(&[("namespace", "c"), ("pod", "whisper-7d9f8b6c5-x2k4p")]), Vec::<usize>::new());
        assert_eq!(owner(&[("pod", "whisper-7d9f8b6c5-x2k4p")]), Vec::<usize>::new(), "two namespaces: ambiguous");
        assert_eq!(owner(&[]), Vec::<usize>::new());
        assert_eq!(attribute(&labels(&[]), &candidates[..1]), vec![0], "a lone service owns unlabelled series");
    }

    #[test]
    fn non_finite_and_old_samples_are_unavailable_not_zero() {
        let series = |value: f64, age: f64| Series { labels: BTreeMap::new(), timestamp: 1000.0 - age, value };
        let (nan, inf, old, fresh) =
            (series(f64::NAN, 0.0), series(f64::INFINITY, 0.0), series(5.0, 90.0), series(7.0, 2.0));
        let max_age = Duration::from_secs(60);
        assert_eq!(aggregate(Aggregation::Mean, &[&nan, &inf, &old], 1000.0, max_age), None);
        let sample = aggregate(Aggregation::Mean, &[&nan, &old, &fresh], 1000.0, max_age).unwrap();
        assert_eq!(sample.value, 7.0);
        assert_eq!(sample.age, Duration::from_secs(2));
        assert_eq!(parse_value("+Inf"), f64::INFINITY);
        assert!(parse_value("NaN").is_nan());
    }

    #[test]
    fn written_templates_are_batched_per_namespace_and_names_must_be_metric_names() {
        let mut custom = PrometheusMetrics::default();
        custom.custom.insert("x".into(), "sum(x)".into());
        let batches =
            plan(&[target_with("a", "s1", &custom), target_with("a", "s2", &custom), target_with("b", "s3", &custom)]);
        let written: Vec<Vec<usize>> =
            batches.iter().filter(|b| b.template == "sum(x)").map(|b| b.targets.clone()).collect();
        assert_eq!(written, [vec![0, 1], vec![2]], "one query per namespace: a tenant never shares another's");

        let injected = PrometheusMetrics {
            latency_histogram: Some("h{namespace=\"kube-system\"} or secret".into()),
            request_counter: Some("requests_total".into()),
            ..PrometheusMetrics::default()
        };
        let batches = plan(&[target_with("a", "s1", &injected)]);
        let refused = batches.iter().filter(|b| b.refusal.is_some()).count();
        assert_eq!(refused, 3, "p50, p95, p99; the request counter is a metric name");
        assert!(is_metric_name("job:requests_total:rate5m") && !is_metric_name("1x") && !is_metric_name(""));
    }

    #[test]
    fn identical_templates_share_one_batch() {
        let mut a = target("n", "a");
        a.metrics.latency_histogram = Some("h_seconds".into());
        let mut b = target("n", "b");
        b.metrics.latency_histogram = Some("h_seconds".into());
        b.metrics.custom.insert("gpu_again".into(), DEFAULT_GPU_TEMPLATE.into());
        let batches = plan(&[a, b, target("m", "c")]);
        // GPU (shared by all), p50, p95, p99, and b's custom: written in a policy, it is queried on its own.
        assert_eq!(batches.len(), 5);
        let gpu: Vec<&Batch> = batches.iter().filter(|b| b.template == DEFAULT_GPU_TEMPLATE).collect();
        assert_eq!(gpu[0].targets, vec![0, 1, 2]);
        assert_eq!(gpu[0].uses.len(), 3);
        assert_eq!(gpu[1].targets, vec![1]);
        assert_eq!(gpu[1].uses, [(1, Slot::Custom("gpu_again".into()))]);
    }
}
