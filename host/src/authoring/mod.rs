//! The plugin authoring kit behind `ballast plugin ...`: new projects, builds, checks, table tests and packing.

pub mod build;
pub mod scaffold;
