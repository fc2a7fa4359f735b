//! The host's integration tests, one binary: each module was a test binary of its own, and every one of them linked
//! wasmtime and kube, so a change in host/src relinked them all. Tests of different modules now run side by side:
//! each starts its own servers on free loopback ports and keeps its files in its own temporary directory.

mod common;

mod authoring;
mod bad_input;
mod behavior;
mod bullmq;
mod controller;
mod decision;
mod deploy;
mod languages;
mod live;
mod oci;
mod plugin_new;
mod prometheus;
mod resources;
mod runtime;
mod sandbox;
mod sim;
