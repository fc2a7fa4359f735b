//! Compilation, caching and validation of policy components.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi::{WasiCtxView, WasiView};

use super::bindings::{PolicyPre, World};
use super::instance::{HostState, MemoryCap, SharedStore};
use super::limits::{EPOCH_TICK, RuntimeLimits};
use super::log::CallLog;
use crate::{Error, Result};

/// The guard region after each linear memory: wasmtime's default 32 MiB plus 37 pages. The slots of the instance
/// pool lie 4 GiB + guard apart; at a whole number of MiB apart, the same page of every instance (its stack top,
/// its allocator's state) has the same low page-number bits and competes for one set of the TLB, so a tick over a
/// thousand instances missed the TLB on nearly every page it touched. 37 is odd, so consecutive slots go to
/// different sets all the way round.
const MEMORY_GUARD_BYTES: u64 = (32 << 20) + 37 * 4096;

/// The wasmtime engine, linker and compile cache shared by every plugin of the host.
pub struct PolicyEngine {
    engine: Engine,
    linker: Linker<HostState>,
    limits: RuntimeLimits,
    compiled: Mutex<HashMap<String, Arc<CompiledPolicy>>>,
}

/// A validated component, ready to instantiate: type-checked against the world, imports resolved.
pub struct CompiledPolicy {
    /// sha256 of the component, hex; shared with every decision record and service memory that names it.
    pub digest: Arc<str>,
    pub(crate) size: usize,
    /// Time spent compiling (zero when it came from a cache).
    pub compile_time: Duration,
    /// Whether it was loaded from the on-disk cache (`RuntimeLimits::cache_dir`) instead of compiled.
    pub(crate) from_disk_cache: bool,
    pub(crate) pre: PolicyPre,
    /// The store every service's instance of this component lives in.
    pub(crate) store: Mutex<SharedStore>,
}

impl CompiledPolicy {
    /// The version of the world the plugin implements.
    pub fn world(&self) -> World {
        self.pre.world()
    }

    pub(crate) fn shared_store(&self) -> MutexGuard<'_, SharedStore> {
        // Every use of the store is under this lock and leaves it consistent, even if it panics.
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for CompiledPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledPolicy").field("digest", &self.digest).field("size", &self.size).finish()
    }
}

/// The settings every engine of this host compiles with; the compile child ([`super::compiler`]) uses them too, so
/// its artifacts load here.
fn engine_config() -> Config {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        // wasmtime's default 4 GiB reservation per memory slot lets compiled code skip bounds checks; a
        // thousand slots take 4 TiB of address space (not memory), well within x86_64's 128 TiB.
        .memory_guard_size(MEMORY_GUARD_BYTES)
        .max_wasm_stack(1 << 20);
    config
}

/// An engine with this host's compile settings and no instance pool: what the compile child uses.
pub fn compile_engine() -> wasmtime::Result<Engine> {
    Engine::new(&engine_config())
}

impl PolicyEngine {
    pub fn new(limits: RuntimeLimits) -> Result<Arc<Self>> {
        let mut pool = PoolingAllocationConfig::default();
        let n = limits.max_instances;
        // Every instance may hold at most what one component may declare, and the pool has that much for each of
        // `max_instances` instances: a plugin that declares more is refused when loaded, so no plugin can take
        // the slots another service's instance needs.
        pool.total_component_instances(n)
            .max_core_instances_per_component(limits.max_core_instances)
            .max_memories_per_component(limits.max_memories)
            .max_tables_per_component(limits.max_tables)
            .total_core_instances(n.saturating_mul(limits.max_core_instances))
            .total_memories(n.saturating_mul(limits.max_memories))
            .total_tables(n.saturating_mul(limits.max_tables))
            .total_stacks(n)
            .max_memory_size(limits.memory_bytes);
        let mut config = engine_config();
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(Error::Engine)?;
        let mut linker = Linker::new(&engine);
        // Toolchains whose std imports WASI (Rust's wasm32-wasip2, componentize-py) get an empty WASI whose every
        // call returns at once (see `wasi`).
        super::wasi::add_to_linker(&mut linker)
            .and_then(|()| super::bindings::add_to_linker(&mut linker))
            .map_err(Error::Link)?;
        let this = Arc::new(PolicyEngine { engine, linker, limits, compiled: Mutex::new(HashMap::new()) });
        spawn_epoch_ticker(Arc::downgrade(&this));
        Ok(this)
    }

    pub fn limits(&self) -> &RuntimeLimits {
        &self.limits
    }

    /// Names of what a validated component imports and exports.
    pub fn interface(&self, compiled: &CompiledPolicy) -> (Vec<String>, Vec<String>) {
        let component_type = compiled.pre.instance_pre().component().component_type();
        let imports = component_type.imports(&self.engine).map(|(name, _)| name.to_owned()).collect();
        let exports = component_type.exports(&self.engine).map(|(name, _)| name.to_owned()).collect();
        (imports, exports)
    }

    /// Compiles (or fetches from cache) and validates a component. `what` names it in errors (e.g. the
    /// ConfigMap or file it came from).
    pub fn load(&self, what: &str, bytes: &[u8]) -> Result<Arc<CompiledPolicy>> {
        self.load_digested(what, bytes, &super::digest(bytes), None)
    }

    /// [`Self::load`] for a caller that already has the component's [`super::digest`] (plugin sources compute it
    /// when they read the bytes), checking it against a sha256 pin first.
    pub fn load_digested(
        &self,
        what: &str,
        bytes: &[u8],
        digest: &str,
        sha256: Option<&str>,
    ) -> Result<Arc<CompiledPolicy>> {
        if let Some(pin) = sha256
            && !digest.eq_ignore_ascii_case(pin.trim())
        {
            return Err(Error::PluginRefused {
                what: what.into(),
                why: format!("sha256 is {digest}, but the policy pins {pin}; update the pin or the plugin"),
            });
        }
        if let Some(hit) = self.compiled.lock().expect("compile cache poisoned").get(digest) {
            return Ok(hit.clone());
        }
        if bytes.len() > self.limits.max_component_bytes {
            return Err(Error::PluginRefused {
                what: what.into(),
                why: format!(
                    "it is {} bytes, over the {}-byte cap on a component; make it smaller",
                    bytes.len(),
                    self.limits.max_component_bytes
                ),
            });
        }
        let started = Instant::now();
        let (component, from_disk) = self.compile(what, digest, bytes)?;
        let compile_time = if from_disk { Duration::ZERO } else { started.elapsed() };
        let pre = self.validate(what, &component)?;
        let store = Mutex::new(SharedStore::new(self.new_store()));
        let compiled = Arc::new(CompiledPolicy {
            digest: digest.into(),
            size: bytes.len(),
            compile_time,
            from_disk_cache: from_disk,
            pre,
            store,
        });
        self.compiled.lock().expect("compile cache poisoned").insert(digest.to_owned(), compiled.clone());
        Ok(compiled)
    }

    fn compile(&self, what: &str, digest: &str, bytes: &[u8]) -> Result<(Component, bool)> {
        let refuse = |why: String| Error::PluginRefused { what: what.into(), why };
        let cached = self.limits.cache_dir.as_ref().map(|dir| dir.join(format!("{digest}.cwasm")));
        if let Some(path) = cached.as_deref().filter(|p| p.exists()) {
            // SAFETY: the file was written by `Component::serialize` of this engine configuration into our own
            // cache directory; wasmtime rejects artifacts from another version or configuration.
            if let Ok(component) = unsafe { Component::deserialize_file(&self.engine, path) } {
                return Ok((component, true));
            }
        }
        let component = match &self.limits.compiler {
            Some(program) => {
                let artifact = super::compiler::compile_in_child(program, &self.limits, bytes)
                    .map_err(|e| refuse(e.to_string()))?;
                // SAFETY: the artifact was made by `Engine::precompile_component` in our own compile child, with
                // this engine's settings; wasmtime checks its version and settings before using it.
                unsafe { Component::deserialize(&self.engine, &artifact) }
            }
            None => Component::new(&self.engine, bytes),
        }
        .map_err(|e| {
            refuse(format!(
                "not a valid WebAssembly component within this host's budget ({e:#}); build it for wasm32-wasip2 \
                 as a component, with at most {} memories, {} tables and {} core instances",
                self.limits.max_memories, self.limits.max_tables, self.limits.max_core_instances
            ))
        })?;
        if let Some(path) = cached {
            // A cache that cannot be written only costs a recompile next time.
            if let Err(e) = write_cache(&path, &component) {
                tracing::warn!(path = %path.display(), "cannot write the compiled-plugin cache: {e}");
            }
        }
        Ok((component, false))
    }

    fn validate(&self, what: &str, component: &Component) -> Result<PolicyPre> {
        let refuse = |why: String| Error::PluginRefused { what: what.into(), why };
        let exports: Vec<String> =
            component.component_type().exports(&self.engine).map(|(name, _)| name.to_owned()).collect();
        let Some(world) = World::of_exports(&exports) else {
            let wanted: Vec<String> = World::ALL.iter().map(|w| format!("`{}`", w.policy_export())).collect();
            return Err(refuse(format!(
                "it does not export {} (it exports: [{}]); build the plugin against policies-wit/wit (world {})",
                wanted.join(" or "),
                exports.join(", "),
                World::CURRENT.name()
            )));
        };
        let instance_pre = self.linker.instantiate_pre(component).map_err(|e| {
            refuse(format!(
                "it imports something this host does not provide: {e:#}; plugins may import only \
                 `ballast:policy/host` of their world and WASI 0.2"
            ))
        })?;
        PolicyPre::new(world, instance_pre).map_err(|e| {
            refuse(format!(
                "its `{}` export does not match the world {}: {e:#}; rebuild it against policies-wit/wit",
                world.policy_export(),
                world.name()
            ))
        })
    }

    /// A fresh store, with the memory cap and an empty deterministic WASI context.
    pub(crate) fn new_store(&self) -> Store<HostState> {
        let log = Arc::new(Mutex::new(CallLog::new(&self.limits)));
        let wasi = super::wasi::context(&log);
        let state = HostState { wasi, table: ResourceTable::new(), limiter: MemoryCap::new(&self.limits), log };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_trap();
        // Instantiation runs guest start-up code, under its own (longer) budget; each call then gets `deadline`.
        store.set_epoch_deadline(self.limits.instantiate_ticks());
        store
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

fn write_cache(path: &Path, component: &Component) -> std::io::Result<()> {
    let bytes = component.serialize().map_err(std::io::Error::other)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // Unique per write: two loads of one digest may compile at once, and must not rename each other's file away.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp{}-{n}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(tmp, path)
}

/// Advances the engine's epoch every tick so call deadlines fire; stops when the engine is dropped.
fn spawn_epoch_ticker(engine: Weak<PolicyEngine>) {
    std::thread::Builder::new()
        .name("ballast-epoch".into())
        .spawn(move || {
            while let Some(engine) = engine.upgrade() {
                engine.engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning the epoch ticker thread");
}
