//! Plugins compiled into the `ballast` binary (built from `plugins/` by host/build.rs), referenced by name.

/// Name and component bytes of each built-in plugin.
pub static BUILTINS: &[(&str, &[u8])] = &[
    ("hpa", include_bytes!(concat!(env!("BALLAST_PLUGIN_DIR"), "/hpa.wasm"))),
    ("queue-drain", include_bytes!(concat!(env!("BALLAST_PLUGIN_DIR"), "/queue_drain.wasm"))),
];

/// The built-ins' names, comma-separated, as messages list them.
pub fn builtin_names() -> String {
    let names: Vec<&str> = BUILTINS.iter().map(|(name, _)| *name).collect();
    names.join(", ")
}

/// The component bytes of a built-in plugin.
pub fn builtin(name: &str) -> Option<&'static [u8]> {
    BUILTINS.iter().find(|(n, _)| *n == name).map(|(_, bytes)| *bytes)
}
