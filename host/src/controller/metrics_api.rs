//! Whether the cluster serves `metrics.k8s.io` (metrics-server), asked through discovery now and then, so that a
//! cluster without metrics-server is told once, in plain words, with the fix, instead of by every failed read.

use std::time::Duration;

use tokio::sync::watch;

/// The group and version CPU and memory come from.
const METRICS_API: &str = "metrics.k8s.io/v1beta1";

/// What discovery says of `metrics.k8s.io`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MetricsApi {
    Served,
    /// Not usable, and why, with the fix.
    Unusable(String),
}

impl MetricsApi {
    /// Asks the API server; `None` when the answer says nothing about metrics-server (e.g. the API server is
    /// unreachable).
    pub(crate) async fn probe(client: &kube::Client) -> Option<MetricsApi> {
        match client.list_api_group_resources(METRICS_API).await {
            Ok(_) => Some(MetricsApi::Served),
            Err(kube::Error::Api(status)) if status.code == 404 => Some(MetricsApi::Unusable(format!(
                "the cluster does not serve {METRICS_API} (HTTP 404): metrics-server is not installed. Install it \
                 (kubectl apply -f https://github.com/kubernetes-sigs/metrics-server/releases/latest/download/\
                 components.yaml) or set `metrics.resources: false`; until then CPU and memory are unavailable \
                 and never allow a scale-down"
            ))),
            Err(kube::Error::Api(status)) if status.code == 503 => Some(MetricsApi::Unusable(format!(
                "{METRICS_API} is registered but does not answer (HTTP 503): metrics-server is down; check its pods \
                 (kubectl -n kube-system get pods -l k8s-app=metrics-server); until then CPU and memory are \
                 unavailable and never allow a scale-down"
            ))),
            Err(e) => {
                tracing::debug!("asking whether {METRICS_API} is served: {e}");
                None
            }
        }
    }

    /// Probes every `every` in the background; the receiver sees each change (logged once, when it happens).
    pub(crate) fn watch(
        client: kube::Client,
        every: Duration,
    ) -> (watch::Receiver<Option<MetricsApi>>, tokio::task::JoinHandle<()>) {
        let (sender, receiver) = watch::channel(None);
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let Some(answer) = MetricsApi::probe(&client).await else { continue };
                if sender.borrow().as_ref() == Some(&answer) {
                    continue;
                }
                match &answer {
                    MetricsApi::Unusable(why) => tracing::warn!("{why}"),
                    MetricsApi::Served => tracing::info!("{METRICS_API} is served: CPU and memory are available"),
                }
                if sender.send(Some(answer)).is_err() {
                    return;
                }
            }
        });
        (receiver, task)
    }
}
