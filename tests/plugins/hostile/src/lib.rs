//! A plugin that misbehaves on purpose, for the host's isolation tests. The config's `mode` picks the misdeed.

use ballast_policy_sdk::{Decision, Guest, LogLevel, PolicyError, PolicyInput, config, log};
use serde::Deserialize;
use std::sync::atomic::{AtomicU32, Ordering};

#[derive(Deserialize)]
struct Config {
    mode: String,
    #[serde(default)]
    state_bytes: usize,
    #[serde(default)]
    replicas: u32,
}

struct Hostile;

impl Guest for Hostile {
    fn decide(input: PolicyInput) -> Result<Decision, PolicyError> {
        let cfg = config::parse::<Config>(&input.config)?;
        match cfg.mode.as_str() {
            "loop" => {
                let mut n: u64 = input.now_ms;
                loop {
                    n = std::hint::black_box(n.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            }
            "alloc" => {
                // Reserve without touching: the cap must stop growth itself, not the deadline.
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    let chunk = Vec::<u8>::with_capacity(8 << 20);
                    std::hint::black_box(chunk.as_ptr());
                    hoard.push(chunk);
                }
            }
            "trap" => std::process::abort(),
            "panic" => panic!("hostile plugin panics on purpose"),
            "error" => Err(PolicyError::Internal("hostile plugin returns an error on purpose".into())),
            "max" => Ok(Decision::new(u32::MAX, "asks for 4294967295 replicas")),
            "fixed" => Ok(Decision::new(cfg.replicas, "asks for what its config says")),
            "big-state" => {
                let mut d = Decision::new(input.current_replicas, "returns a large state blob");
                d.state = Some(vec![7; cfg.state_bytes]);
                Ok(d)
            }
            "log" => {
                log(LogLevel::Warn, "hostile plugin says hello");
                Ok(Decision::new(input.current_replicas, "logged a line"))
            }
            "echo-state" => {
                // Counts calls in its state blob: proves the host hands back what the plugin returned.
                let n = input.state.as_deref().map_or(0, |s| s.first().copied().unwrap_or(0)) + 1;
                let mut d = Decision::new(u32::from(n), format!("call {n}"));
                d.state = Some(vec![n]);
                Ok(d)
            }
            "count-calls" => {
                // Counts calls in the instance's own memory: proves instances keep apart what they hold.
                static CALLS: AtomicU32 = AtomicU32::new(0);
                let n = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
                Ok(Decision::new(n, format!("call {n} of this instance")))
            }
            other => Err(PolicyError::InvalidConfig(format!("unknown mode {other}"))),
        }
    }
}

ballast_policy_sdk::export_policy!(Hostile);
