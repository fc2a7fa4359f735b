//! The `ballast` command line. Library errors become `anyhow` reports here and nowhere else.

use std::io::Read;

use anyhow::Context;
use clap::{Parser, Subcommand};

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
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("BALLAST_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Behavior { input } => {
            let text = if input == "-" {
                let mut text = String::new();
                std::io::stdin().read_to_string(&mut text).context("reading the behavior input from stdin")?;
                text
            } else {
                std::fs::read_to_string(&input).with_context(|| format!("reading the behavior input {input}"))?
            };
            let output = ballast::clamps::cli::evaluate_json(&text)
                .with_context(|| format!("ballast behavior --input {input}"))?;
            println!("{output}");
            Ok(())
        }
    }
}
