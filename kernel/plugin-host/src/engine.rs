//! The wasmtime engine, the compiled-component cache and one call of a
//! plugin export in a fresh instance with its budgets.
//!
//! Components are compiled once per content hash. The compiled artifact is
//! written to `<cache dir>/<hash>.cwasm` together with a keyed digest
//! (`.sig`) made with a secret kept in the cache directory; an artifact is
//! deserialized only if its digest verifies, so the kernel never loads
//! native code it did not compile itself.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crm_core::plugin::Limits;
use crm_core::{Error, ErrorKind, Result};
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap};

use crate::bindings::CrmPlugin;
use crate::exports::{Plugin, PluginPre};
use crate::host::{CallScope, HostState};

/// How much of each linear memory slot may stay resident between fresh
/// instances (only its dirtied pages are): a Rust guest's 1 MiB stack and
/// its data and early heap above it.
const KEEP_RESIDENT_MEMORY: usize = 4 << 20;
/// The same for each table slot.
const KEEP_RESIDENT_TABLE: usize = 64 << 10;

/// Epoch ticks per second: the granularity of wall-clock deadlines.
const TICKS_PER_SECOND: u64 = 100;

pub struct PluginEngine {
    engine: Engine,
    linker: Linker<HostState>,
    cache_dir: Option<PathBuf>,
    secret: [u8; 32],
    compiled: Mutex<HashMap<String, Arc<PluginPre>>>,
}

/// Why a call failed, for the admin and the client.
#[derive(Debug, Clone)]
pub struct CallFailure {
    pub message: String,
}

impl CallFailure {
    pub fn into_error(self, plugin: &str) -> Error {
        Error::new(ErrorKind::PluginFailed, format!("plugin {plugin} failed: {}", self.message))
    }
}

fn engine_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.consume_fuel(true);
    config.epoch_interruption(true);
    let mut pooling = PoolingAllocationConfig::default();
    pooling.total_component_instances(256);
    pooling.total_core_instances(1024);
    pooling.total_memories(512);
    pooling.total_tables(1024);
    pooling.max_memory_size(Limits::MAX.memory_bytes as usize);
    pooling.max_core_instances_per_component(64);
    pooling.max_memories_per_component(16);
    pooling.max_tables_per_component(64);
    pooling.table_elements(100_000);
    pooling.max_component_instance_size(1 << 20);
    pooling.max_core_instance_size(1 << 20);
    // Resetting a slot for the next fresh instance: where Linux reports
    // which pages an instance dirtied (the PAGEMAP_SCAN ioctl, kernel 6.7+),
    // only those pages are copied back from the memory image or zeroed and
    // stay mapped. Without it every reset gives the pages back to the kernel
    // (madvise), which flushes the TLB of the calling thread and faults each
    // page in again on the next call: a measured 35 -> 16 us per call and
    // about 50 us less on a single write with a before-write hook
    // (BENCHMARKS.md). Without the ioctl, keeping pages resident would mean
    // zeroing the whole region on every reset, which is slower, so it is
    // only turned on with it.
    pooling.pagemap_scan(Enabled::Auto);
    if PoolingAllocationConfig::is_pagemap_scan_available() {
        pooling.linear_memory_keep_resident(KEEP_RESIDENT_MEMORY);
        pooling.table_keep_resident(KEEP_RESIDENT_TABLE);
    }
    // Idle slots keep their resident pages; bound how many stay warm.
    pooling.max_unused_warm_slots(16);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
    config
}

impl PluginEngine {
    /// An engine whose compiled components are cached in `cache_dir`
    /// (None: in memory only).
    pub fn new(cache_dir: Option<&Path>) -> Result<PluginEngine> {
        let engine = Engine::new(&engine_config()).map_err(|error| Error::internal(format!("cannot start the wasm engine: {error}")))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|error| Error::internal(format!("linking wasi: {error}")))?;
        CrmPlugin::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |state| state)
            .map_err(|error| Error::internal(format!("linking host functions: {error}")))?;
        let secret = match cache_dir {
            Some(dir) => load_secret(dir)?,
            None => rand_secret(),
        };
        // Deadlines are counted in epoch ticks; one thread ticks for all.
        let ticker = engine.weak();
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while let Some(engine) = ticker.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(Duration::from_millis(1000 / TICKS_PER_SECOND));
                }
            })
            .map_err(|error| Error::internal(format!("cannot start the epoch thread: {error}")))?;
        Ok(PluginEngine { engine, linker, cache_dir: cache_dir.map(Path::to_path_buf), secret, compiled: Mutex::new(HashMap::new()) })
    }

    /// The prepared component for `wasm` (whose content hash is `hash`),
    /// from memory, the disk cache, or compiled now.
    pub fn prepare(&self, hash: &str, wasm: &[u8]) -> Result<Arc<PluginPre>> {
        if let Some(pre) = self.compiled.lock().unwrap_or_else(|p| p.into_inner()).get(hash) {
            return Ok(pre.clone());
        }
        let component = match self.load_cached(hash) {
            Some(component) => component,
            None => {
                let component = Component::new(&self.engine, wasm)
                    .map_err(|error| Error::invalid(format!("not a valid WebAssembly component: {}", error.root_cause())))?;
                self.store_cached(hash, &component);
                component
            }
        };
        let instance_pre = self.linker.instantiate_pre(&component).map_err(|error| {
            Error::invalid(format!("the component does not fit the crm:plugin@0.1.0 world: {}", error.root_cause()))
        })?;
        let pre = Arc::new(
            PluginPre::new(instance_pre)
                .map_err(|error| Error::invalid(format!("the component does not export crm:plugin/plugin: {error}")))?,
        );
        self.compiled.lock().unwrap_or_else(|p| p.into_inner()).insert(hash.to_string(), pre.clone());
        Ok(pre)
    }

    /// Whether the compiled form of `hash` is already at hand.
    pub fn is_prepared(&self, hash: &str) -> bool {
        self.compiled.lock().unwrap_or_else(|p| p.into_inner()).contains_key(hash)
    }

    fn artifact_paths(&self, hash: &str) -> Option<(PathBuf, PathBuf)> {
        let dir = self.cache_dir.as_ref()?;
        Some((dir.join(format!("{hash}.cwasm")), dir.join(format!("{hash}.sig"))))
    }

    fn sign(&self, bytes: &[u8]) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.secret);
        hasher.update(bytes);
        hex::encode(hasher.finalize())
    }

    fn load_cached(&self, hash: &str) -> Option<Component> {
        let (artifact, signature) = self.artifact_paths(hash)?;
        let bytes = std::fs::read(&artifact).ok()?;
        let expected = std::fs::read_to_string(&signature).ok()?;
        if self.sign(&bytes) != expected.trim() {
            tracing::warn!(path = %artifact.display(), "ignoring a compiled plugin whose signature does not verify");
            return None;
        }
        // SAFETY: the bytes were produced by `Component::serialize` of this
        // kernel (the keyed digest proves it) and wasmtime checks that they
        // match this engine's configuration and version.
        match unsafe { Component::deserialize(&self.engine, &bytes) } {
            Ok(component) => Some(component),
            Err(error) => {
                tracing::info!(%error, "recompiling a cached plugin built by another engine version");
                None
            }
        }
    }

    fn store_cached(&self, hash: &str, component: &Component) {
        let Some((artifact, signature)) = self.artifact_paths(hash) else { return };
        let Ok(bytes) = component.serialize() else { return };
        // Servers may share a cache directory: each writes its own file
        // and renames it into place; a reader verifies the signature.
        let tmp = artifact.with_extension(format!("{}.tmp", std::process::id()));
        let written = std::fs::write(&tmp, &bytes)
            .and_then(|_| std::fs::write(&signature, self.sign(&bytes)))
            .and_then(|_| std::fs::rename(&tmp, &artifact));
        if let Err(error) = written {
            tracing::warn!(%error, "cannot write the compiled plugin cache");
        }
    }

    /// Runs `f` on a fresh instance with the budgets of `limits`.
    pub fn call<R>(
        &self,
        pre: &PluginPre,
        scope: CallScope,
        limits: &Limits,
        f: impl FnOnce(&Plugin<'_>, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> (std::result::Result<R, CallFailure>, HostState) {
        let mut store = Store::new(&self.engine, HostState::new(scope, limits.memory_bytes));
        store.limiter(|state| &mut state.limits);
        let _ = store.set_fuel(limits.fuel);
        let ticks = (u64::from(limits.timeout_ms) * TICKS_PER_SECOND).div_ceil(1000).max(1);
        store.set_epoch_deadline(ticks);
        store.epoch_deadline_trap();
        let result = pre.instantiate(&mut store).and_then(|plugin| f(&plugin, &mut store));
        let result = result.map_err(|error| explain(&error, store.data(), limits));
        let state = store.into_data();
        (result, state)
    }
}

fn explain(error: &wasmtime::Error, state: &HostState, limits: &Limits) -> CallFailure {
    if let Some(reason) = &state.exceeded {
        return CallFailure { message: reason.clone() };
    }
    let message = match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => format!("ran out of fuel (budget {} instructions)", limits.fuel),
        Some(Trap::Interrupt) => format!("exceeded its time limit of {} ms", limits.timeout_ms),
        Some(Trap::UnreachableCodeReached) => "trapped: unreachable code reached (a panic in the plugin)".to_string(),
        Some(trap) => format!("trapped: {trap}"),
        None => {
            let text = format!("{:#}", error);
            if text.contains("forcing trap when growing memory") || text.contains("memory") && text.contains("grow") {
                format!("exceeded its memory limit of {} bytes", limits.memory_bytes)
            } else {
                format!("failed: {}", text.chars().take(300).collect::<String>())
            }
        }
    };
    CallFailure { message }
}

fn rand_secret() -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(ulid::Ulid::new().to_bytes());
    hasher.update(format!("{:?}", std::time::SystemTime::now()).as_bytes());
    hasher.update(std::process::id().to_le_bytes());
    hasher.finalize().into()
}

fn load_secret(dir: &Path) -> Result<[u8; 32]> {
    std::fs::create_dir_all(dir).map_err(|error| Error::internal(format!("cannot create {}: {error}", dir.display())))?;
    let path = dir.join("cache.key");
    if let Ok(text) = std::fs::read_to_string(&path)
        && let Ok(bytes) = hex::decode(text.trim())
        && let Ok(secret) = <[u8; 32]>::try_from(bytes.as_slice())
    {
        return Ok(secret);
    }
    let secret = rand_secret();
    write_private(&path, hex::encode(secret).as_bytes())?;
    Ok(secret)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|error| Error::internal(format!("cannot write {}: {error}", path.display())))?;
    file.write_all(bytes).map_err(|error| Error::internal(format!("cannot write {}: {error}", path.display())))
}
