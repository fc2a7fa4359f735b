//! The `ballast` command line. Library errors become `anyhow` reports here and nowhere else.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "ballast", version, about = "Autoscaler for GPU inference services with WebAssembly scaling policies")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("BALLAST_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {}
}
