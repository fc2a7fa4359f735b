//! The `ballast` command line. Library errors become `anyhow` reports here and nowhere else.

use std::io::Read;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use ballast::export;
use ballast::sources::bullmq::{BullmqSource, ConnectOptions, DEFAULT_PREFIX};
use ballast::spec::QueueRef;
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "ballast", version, about = "Autoscaler for GPU inference services with WebAssembly scaling policies")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply HPA `behavior` (or the legacy limits) to one decision, as the HPA controller would: JSON document in
    /// ({currentReplicas, desiredReplicas, minReplicas, maxReplicas, behavior, scaleUpEvents, scaleDownEvents,
    /// recommendations}), JSON out ({replicas, reason, ...}).
    Behavior {
        /// The input document's path, or `-` for standard input.
        #[arg(long)]
        input: String,
    },
    /// Serve BullMQ queue depths as Prometheus metrics under the old queue exporter's names (redis_queue_depth,
    /// ...): a drop-in for teams that keep their HPAs.
    Exporter {
        #[command(flatten)]
        redis: RedisArgs,
        /// Address to serve /metrics, /healthz and /readyz on.
        #[arg(long, default_value = "0.0.0.0:9090")]
        listen: SocketAddr,
        /// Time between collections, e.g. 5s, 500ms, 1m.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        interval: Duration,
    },
    /// Print BullMQ job counts per queue, as a table or JSON.
    Queues {
        #[command(flatten)]
        redis: RedisArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct RedisArgs {
    /// Redis URL: redis://[user:password@]host[:port][/db], or rediss:// for TLS.
    #[arg(long, env = "BALLAST_REDIS_URL")]
    redis: String,
    /// BullMQ key prefix of the queues.
    #[arg(long, default_value = DEFAULT_PREFIX)]
    prefix: String,
    /// PEM file of the CA that signed the server's TLS certificate, when not a system root.
    #[arg(long)]
    ca_cert: Option<std::path::PathBuf>,
    /// Give up on a collection after this long.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    timeout: Duration,
    /// BullMQ queue names.
    #[arg(required = true)]
    queues: Vec<String>,
}

impl RedisArgs {
    fn queue_refs(&self) -> Vec<QueueRef> {
        self.queues.iter().map(|name| QueueRef { name: name.clone(), prefix: Some(self.prefix.clone()) }).collect()
    }

    fn options(&self) -> anyhow::Result<ConnectOptions> {
        let ca_cert_pem = match &self.ca_cert {
            Some(path) => Some(std::fs::read(path).with_context(|| format!("reading --ca-cert {}", path.display()))?),
            None => None,
        };
        Ok(ConnectOptions { timeout: self.timeout, ca_cert_pem })
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| format!("{text:?} is not a duration like 5s, 500ms or 1m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("{text:?}: unknown unit {unit:?}; use ms, s or m (e.g. 5s)")),
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("BALLAST_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = || tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting tokio");
    match cli.command {
        Command::Behavior { input } => behavior(&input),
        Command::Exporter { redis, listen, interval } => runtime()?.block_on(exporter(redis, listen, interval)),
        Command::Queues { redis, json } => runtime()?.block_on(queues(redis, json)),
    }
}

/// Reads a file, or standard input for `-`.
fn read_input(path: &str) -> anyhow::Result<String> {
    if path == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).context("reading standard input")?;
        Ok(text)
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {path}"))
    }
}

fn behavior(input: &str) -> anyhow::Result<()> {
    let text = read_input(input)?;
    let output =
        ballast::clamps::cli::evaluate_json(&text).with_context(|| format!("ballast behavior --input {input}"))?;
    println!("{output}");
    Ok(())
}

async fn exporter(redis: RedisArgs, listen: SocketAddr, interval: Duration) -> anyhow::Result<()> {
    // Lazy: the exporter starts and serves /healthz even while Redis is down, and reports it in its metrics.
    let source = BullmqSource::new(&redis.redis, redis.options()?)?;
    let listener = export::bind(listen).await?;
    tracing::info!("serving BullMQ queue metrics from {} on http://{listen}/metrics", source.url());
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    export::run_queue_exporter(source, redis.queue_refs(), listener, interval, shutdown).await?;
    Ok(())
}

async fn queues(redis: RedisArgs, json: bool) -> anyhow::Result<()> {
    let source = BullmqSource::connect(&redis.redis, redis.options()?).await?;
    let queues = redis.queue_refs();
    let states = source.counts(&queues).await?;
    let mut failures = 0;
    if json {
        let rows: Vec<serde_json::Value> = queues
            .iter()
            .zip(&states)
            .map(|(queue, state)| match state {
                Ok(state) => serde_json::json!({
                    "queue": queue.name, "prefix": redis.prefix, "counts": state.counts, "isPaused": state.is_paused,
                }),
                Err(e) => serde_json::json!({ "queue": queue.name, "prefix": redis.prefix, "error": e.to_string() }),
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        failures = states.iter().filter(|state| state.is_err()).count();
    } else {
        println!(
            "{:<24} {:>8} {:>11} {:>7} {:>7} {:>8} {:>7} {:>16} {:>10} {:>7}",
            "QUEUE",
            "WAITING",
            "PRIORITIZED",
            "PAUSED",
            "ACTIVE",
            "DELAYED",
            "FAILED",
            "WAITING-CHILDREN",
            "COMPLETED",
            "STATE"
        );
        for (queue, state) in queues.iter().zip(&states) {
            match state {
                Ok(s) => {
                    let c = &s.counts;
                    println!(
                        "{:<24} {:>8} {:>11} {:>7} {:>7} {:>8} {:>7} {:>16} {:>10} {:>7}",
                        queue.name,
                        c.waiting,
                        c.prioritized,
                        c.paused,
                        c.active,
                        c.delayed,
                        c.failed,
                        c.waiting_children,
                        c.completed,
                        if s.is_paused { "paused" } else { "running" }
                    );
                }
                Err(e) => {
                    failures += 1;
                    eprintln!("{e}");
                }
            }
        }
    }
    anyhow::ensure!(failures == 0, "{failures} of {} queues could not be read", queues.len());
    Ok(())
}
