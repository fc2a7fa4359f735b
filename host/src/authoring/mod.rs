//! The plugin authoring kit behind `ballast plugin ...`: new projects ([`scaffold`]), builds ([`build`]), checks
//! ([`check`]: is it a plugin this host runs?), table tests ([`cases`]) and packing ([`pack`]: a ConfigMap, or an
//! OCI push, to ship it).

pub mod build;
pub mod cases;
pub mod check;
pub mod pack;
pub mod scaffold;

use std::path::PathBuf;

/// The cache of the commands run on a workstation (`simulate`'s OCI pulls, `plugin check|test|pack`'s compiled
/// components): BALLAST_CACHE_DIR, or `ballast-cache` under the system temp dir.
pub fn local_cache_dir() -> PathBuf {
    std::env::var_os("BALLAST_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("ballast-cache"))
}

/// [`local_cache_dir`] for compiled components, which are native code run as they are read: only when the
/// directory is this user's alone (created 0700 when missing; not writable by others), else none (components
/// compile each time), so no other user of a shared temp dir can plant one.
pub fn private_compile_cache() -> Option<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let dir = local_cache_dir();
    // An existing directory is checked below; a failure to create one shows there too.
    let _ = std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir);
    let private = std::fs::metadata(&dir).is_ok_and(|meta| {
        // SAFETY: geteuid has no preconditions and cannot fail.
        meta.is_dir() && meta.uid() == unsafe { libc::geteuid() } && meta.mode() & 0o022 == 0
    });
    if !private {
        tracing::warn!(
            dir = %dir.display(),
            "not caching compiled plugins: the directory is missing, not ours, or writable by others \
             (set BALLAST_CACHE_DIR)"
        );
    }
    private.then_some(dir)
}
