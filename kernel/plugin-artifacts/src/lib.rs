//! The guest plugins as WebAssembly components, for the kernel and its
//! tests.
//!
//! The build script compiles every crate under `plugins/*` (bundled with the
//! kernel) and `tests/plugins/*` (test plugins) for `wasm32-wasip2` with the
//! workspace's `plugin` profile, in one nested cargo run, into
//! `target/plugins/`. A plain `cargo build` or `cargo test` therefore keeps
//! the components current; a missing `wasm32-wasip2` target is installed
//! with rustup.
//!
//! It also builds the JavaScript test plugins, each folder under
//! `tests/plugins-js/`, with Node.js (20 or newer, required on PATH) and the
//! componentize-js pinned in `tests/plugins-js/package-lock.json`, into
//! `target/plugins-js/`; they are named `js-<folder>`. A plugin is rebuilt
//! only when its inputs change (componentize-js takes seconds).
//!
//! ```no_run
//! let wasm = std::fs::read(crm_plugin_artifacts::test_plugin("validator")).unwrap();
//! assert!(wasm.starts_with(b"\0asm"));
//! for bundled in crm_plugin_artifacts::BUNDLED {
//!     println!("{}: {} bytes", bundled.name, bundled.wasm.len());
//! }
//! ```
//!
//! *Invariant:* this crate depends on nothing, wasmtime least of all: it
//! only builds and locates guests.

use std::path::Path;

/// A plugin shipped with the kernel: its directory name under `plugins/`
/// and its component.
#[derive(Debug, Clone, Copy)]
pub struct Bundled {
    pub name: &'static str,
    pub wasm: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));

/// The component file of the test plugin in `tests/plugins/<name>`, or,
/// for a name `js-<folder>`, of the JavaScript plugin in
/// `tests/plugins-js/<folder>`.
///
/// # Panics
///
/// If there is no such test plugin (the message lists the known ones), or
/// it could not be built on this machine (the message says why).
pub fn test_plugin(name: &str) -> &'static Path {
    if let Some((_, reason)) = UNAVAILABLE_TEST_PLUGINS.iter().find(|(unavailable, _)| *unavailable == name) {
        panic!("the test plugin '{name}' was not built: {reason}");
    }
    match TEST_PLUGINS.iter().position(|known| *known == name) {
        Some(index) => Path::new(TEST_PLUGIN_PATHS[index]),
        None => panic!("no test plugin named '{name}'; the test plugins are: {}", TEST_PLUGINS.join(", ")),
    }
}

/// The bundled plugin named `name`, if there is one.
pub fn bundled(name: &str) -> Option<&'static Bundled> {
    BUNDLED.iter().find(|bundled| bundled.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_test_plugin_is_a_component() {
        assert!(!TEST_PLUGINS.is_empty());
        for name in TEST_PLUGINS {
            let wasm = std::fs::read(test_plugin(name)).unwrap();
            // Magic, then version 0x0d and layer 1: a component, not a core module.
            assert_eq!(&wasm[..8], b"\0asm\x0d\x00\x01\x00", "{name}");
        }
    }

    #[test]
    fn bundled_plugins_are_components() {
        for bundled in BUNDLED {
            assert_eq!(&bundled.wasm[..8], b"\0asm\x0d\x00\x01\x00", "{}", bundled.name);
        }
        assert!(super::bundled("no-such-plugin").is_none());
    }

    #[test]
    #[should_panic(expected = "the test plugins are: ")]
    fn unknown_names_list_the_known_ones() {
        test_plugin("no-such-plugin");
    }

    macro_rules! known {
        ($name:ident) => {
            assert!(TEST_PLUGINS.contains(&stringify!($name).replace('_', "-").as_str()));
        };
    }

    #[test]
    fn the_macro_names_every_test_plugin() {
        let mut count = 0;
        macro_rules! count {
            ($name:ident) => {
                known!($name);
                count += 1;
            };
        }
        for_each_test_plugin!(count);
        assert_eq!(count, TEST_PLUGINS.len());
    }
}
