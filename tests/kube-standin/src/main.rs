//! `kube-standin --listen 127.0.0.1:PORT`: the stand-in API server as a process, for manual use with kubectl or
//! a controller binary.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use kube_standin::{ControllerSettings, Options, StandIn, StandInError};

#[derive(Parser)]
#[command(about = "A stand-in Kubernetes API server speaking the real REST protocol over plain HTTP")]
struct Args {
    /// Address to listen on (loopback only is sensible: there is no authentication).
    #[arg(long, default_value = "127.0.0.1:8001")]
    listen: SocketAddr,
    /// Watch events kept for resuming watches.
    #[arg(long, default_value_t = 1000)]
    history: usize,
    /// Milliseconds between watch bookmarks.
    #[arg(long, default_value_t = 1000)]
    bookmark_interval_ms: u64,
    /// Milliseconds before scaled-up Deployment/StatefulSet replicas count as ready.
    #[arg(long, default_value_t = 0)]
    ready_delay_ms: u64,
}

#[tokio::main]
async fn main() -> Result<(), StandInError> {
    let args = Args::parse();
    let options = Options {
        listen: args.listen,
        history_capacity: args.history,
        bookmark_interval: Duration::from_millis(args.bookmark_interval_ms),
        controller: ControllerSettings {
            ready_delay: Duration::from_millis(args.ready_delay_ms),
            ..Default::default()
        },
    };
    let standin = StandIn::start_with(options).await?;
    let kubeconfig = standin.kubeconfig()?;
    println!("kube-standin serving {}", standin.url());
    println!("kubeconfig: {}", kubeconfig.display());
    // Ctrl-C failing to register only means the process runs until killed.
    let _ = tokio::signal::ctrl_c().await;
    standin.shutdown().await;
    Ok(())
}
