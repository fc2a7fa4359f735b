//! The plugin authoring kit behind `ballast plugin ...`: [`check`] (is it a plugin this host runs?), [`cases`]
//! (table tests) and [`pack`] (a ConfigMap, or an OCI push, to ship it).

pub mod cases;
pub mod check;
pub mod pack;
