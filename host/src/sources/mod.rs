//! Metric sources: each reads one kind of measurement for many services at once.

pub mod bullmq;
pub mod live;
pub mod prometheus;
pub mod promql;
pub mod resources;
