//! Metric sources: each reads one kind of measurement for many services at once.

pub mod bullmq;
#[cfg(feature = "cluster")]
pub mod live;
pub mod prometheus;
pub mod promql;
#[cfg(feature = "cluster")]
pub mod resources;
