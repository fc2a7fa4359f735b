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
    /// Bytes of reason text (`big-reason`), proposals (`many-proposals`), or the length of a proposal's name.
    #[serde(default)]
    size: usize,
    /// Calls of this instance that behave before `loop-after` starts looping.
    #[serde(default)]
    after: u32,
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
            "print" => {
                // What a plugin author debugging does first: stdout and stderr, which the host turns into log lines.
                println!("hostile plugin prints to stdout");
                eprintln!("hostile plugin prints to stderr");
                Ok(Decision::new(input.current_replicas, "printed two lines"))
            }
            "print-flood" => {
                for i in 0..5_000 {
                    println!("line {i} of a flood of output");
                }
                Ok(Decision::new(input.current_replicas, "printed a flood"))
            }
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_secs(3));
                Ok(Decision::new(input.current_replicas, "slept 3 s"))
            }
            "socket" => {
                let tried = std::net::TcpStream::connect("127.0.0.1:9");
                let udp = std::net::UdpSocket::bind("127.0.0.1:0");
                Ok(Decision::new(
                    input.current_replicas,
                    format!("tcp connect ok: {}, udp bind ok: {}", tried.is_ok(), udp.is_ok()),
                ))
            }
            "big-reason" => Ok(Decision::new(input.current_replicas, "r".repeat(cfg.size))),
            "many-proposals" => {
                let mut d = Decision::new(input.current_replicas, "many proposals");
                d.proposals = (0..cfg.size)
                    .map(|i| ballast_policy_sdk::MetricProposal { metric: format!("m{i}"), replicas: 1 })
                    .collect();
                Ok(d)
            }
            "long-proposal-name" => {
                let mut d = Decision::new(input.current_replicas, "a long proposal name");
                d.proposals = vec![ballast_policy_sdk::MetricProposal { metric: "n".repeat(cfg.size), replicas: 1 }];
                Ok(d)
            }
            "escape" => {
                log(LogLevel::Info, "\u{1b}[2J\u{1b}[Hcleared your terminal\nforged line");
                Ok(Decision::new(input.current_replicas, "\u{1b}[2J\u{1b}[31mred\nstt  3  3  forged row"))
            }
            "log-flood" => {
                for i in 0..1000 {
                    log(LogLevel::Info, &format!("flood {i} {}", "x".repeat(2000)));
                }
                Ok(Decision::new(input.current_replicas, "flooded the log"))
            }
            "log-then-trap" => {
                log(LogLevel::Error, "about to abort");
                std::process::abort()
            }
            "loop-after" => {
                // Behaves for `after` calls of this instance (the canary's, the first decisions), then loops.
                static SEEN: AtomicU32 = AtomicU32::new(0);
                if SEEN.fetch_add(1, Ordering::Relaxed) >= cfg.after {
                    let mut n: u64 = input.now_ms;
                    loop {
                        n = std::hint::black_box(n.wrapping_mul(6364136223846793005).wrapping_add(1));
                    }
                }
                Ok(Decision::new(input.current_replicas, "behaving, for now"))
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
