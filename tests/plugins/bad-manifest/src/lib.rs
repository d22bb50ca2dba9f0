//! Test plugin: a valid component whose manifest the host must refuse (an
//! id with spaces and capitals, and interface version 9.9.9).

use crm_plugin_sdk::prelude::*;

#[derive(Default)]
pub struct BadManifest;

impl Plugin for BadManifest {
    fn manifest(&self) -> Manifest {
        let mut manifest = Manifest::new("Bad Manifest!", "0.1.0").description("Must not install");
        manifest.api = "9.9.9".into();
        manifest
    }
}

register_plugin!(BadManifest);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_is_refused() {
        let manifest = BadManifest.manifest();
        assert_eq!((manifest.id.as_str(), manifest.api.as_str()), ("Bad Manifest!", "9.9.9"));
        assert!(manifest.validate().unwrap_err().message().contains("plugin id"));
    }
}
