//! The plugin authoring kit behind `ballast plugin ...`: new projects ([`scaffold`]), builds ([`build`]), checks
//! ([`check`]: is it a plugin this host runs?), table tests ([`cases`]) and packing ([`pack`]: a ConfigMap, or an
//! OCI push, to ship it).

pub mod build;
pub mod cases;
pub mod check;
pub mod pack;
pub mod scaffold;
