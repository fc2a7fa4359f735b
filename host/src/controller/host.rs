//! `ballast run`: the host's parts built from a [`HostConfig`] (metric sources, the plugin engine, leader election,
//! the metrics endpoint, the controller) and run until the controller stops or the shutdown signal comes.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use super::ControllerError;
use super::lease::{self, LeaseConfig, TimingError};
use super::reconcile::{Controller, ControllerOptions, PolicySource};
use crate::config::HostConfig;
use crate::export::{self, ExportError, Metrics, Readiness};
use crate::policy::plugins::PluginFiles;
use crate::sources::bullmq::{BullmqError, BullmqSource, ConnectOptions};
use crate::sources::live::LiveObserver;
use crate::sources::prometheus::PrometheusSource;
use crate::sources::resources::{ResourceConfig, ResourceSource};

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("leader election: {0}")]
    Lease(#[source] TimingError),
    #[error("the controller task failed")]
    Task(#[source] tokio::task::JoinError),
    #[error(transparent)]
    Export(#[from] ExportError),
    #[error(transparent)]
    Redis(#[from] BullmqError),
    #[error(transparent)]
    Engine(#[from] crate::Error),
    #[error(transparent)]
    Controller(#[from] ControllerError),
}

/// What the host runs against, and with which settings.
pub struct Host {
    pub client: kube::Client,
    pub config: HostConfig,
    pub policies: PolicySource,
    /// The host's Redis (queue metrics are unavailable without it).
    pub redis_url: Option<String>,
    pub prometheus: Option<PrometheusSource>,
    pub metrics_listen: SocketAddr,
    pub lease_name: String,
    pub lease_namespace: String,
    /// This host's name in the lease and in Events; the host name and process id when absent.
    pub identity: Option<String>,
    /// Where a cluster policy's `plugin.path` may point.
    pub plugin_files: PluginFiles,
}

impl Host {
    /// Runs the controller until it stops or `shutdown` completes, then lets the lease go and the metrics endpoint
    /// stop.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), HostError> {
        let Host {
            client,
            config,
            policies,
            redis_url,
            prometheus,
            metrics_listen,
            lease_name,
            lease_namespace,
            identity,
            plugin_files,
        } = self;
        let metrics = Arc::new(Metrics::new()?);
        let bullmq = match &redis_url {
            Some(url) => {
                Some(BullmqSource::new(url, ConnectOptions { timeout: config.redis.timeout, ca_cert_pem: None })?)
            }
            None => None,
        };
        let resources = ResourceSource::new(client.clone(), ResourceConfig::new(&config.resources));
        let snapshot_max_age = config.schedule.snapshot_max_age;
        let observer =
            LiveObserver::new(bullmq, prometheus, config.prometheus.every, snapshot_max_age, metrics.clone())
                .with_redis_settings(config.redis)
                .with_resources(resources, config.resources.every)
                .with_secret_connections(client.clone());
        let engine = crate::runtime::PolicyEngine::new(config.limits)?;
        let identity = identity.unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
            format!("{}-{}", host.trim(), std::process::id())
        });
        let (shutdown_tx, stop) = tokio::sync::watch::channel(false);
        let lease = LeaseConfig {
            duration: config.lease.duration,
            renew_deadline: config.lease.renew_deadline,
            retry_period: config.lease.retry_period,
            ..LeaseConfig::new(&lease_name, &lease_namespace, &identity)
        };
        lease.check().map_err(HostError::Lease)?;
        let (leadership, lease_task) = lease::spawn(client.clone(), lease, stop.clone());
        let readiness = Readiness::default();
        let listener = export::bind(metrics_listen).await?;
        let mut server_stop = stop.clone();
        let server = tokio::spawn(export::serve(listener, metrics.registry().clone(), readiness.clone(), async move {
            let _ = server_stop.changed().await;
        }));
        let options = ControllerOptions {
            tick: config.schedule.tick,
            status_every: config.schedule.status_every,
            policies,
            instance: identity.clone(),
            checks: config.checks,
            requests: config.requests,
        };
        tracing::info!(%identity, lease = %lease_name, "ballast controller starting");
        let controller =
            Controller::new(client, engine, observer, leadership, metrics, options).with_plugin_files(plugin_files);
        let mut running = tokio::spawn(controller.run(readiness, stop));
        tokio::select! {
            result = &mut running => result.map_err(HostError::Task)??,
            _ = shutdown => {
                let _ = shutdown_tx.send(true);
                running.await.map_err(HostError::Task)??;
            }
        }
        let _ = shutdown_tx.send(true);
        let _ = lease_task.await;
        let _ = server.await;
        Ok(())
    }
}

/// SIGTERM (how Kubernetes stops a pod) or Ctrl-C.
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}
