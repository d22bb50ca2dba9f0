//! `crm plugin new NAME`: a new plugin crate from the SDK's template
//! (`sdk/template/`, embedded at compile time).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

const CARGO_TOML: &str = include_str!("../../../sdk/template/Cargo.toml.tmpl");
const LIB_RS: &str = include_str!("../../../sdk/template/src/lib.rs.tmpl");
const README: &str = include_str!("../../../sdk/template/README.md.tmpl");
const GITIGNORE: &str = include_str!("../../../sdk/template/gitignore.tmpl");

/// Rust keywords cargo refuses as package names.
const KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern", "false", "fn", "for", "if",
    "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return", "self", "static", "struct", "super",
    "trait", "true", "type", "unsafe", "use", "where", "while", "abstract", "become", "box", "do", "final", "gen", "macro",
    "override", "priv", "try", "typeof", "unsized", "virtual", "yield",
];

/// Writes a plugin crate named `name` into `parent_dir/name` and returns
/// that directory. The crate depends on the SDK at `sdk_path` (absolute),
/// is a workspace of its own, and has an example hook with a unit test.
///
/// Refuses a name that is not `[a-z][a-z0-9-]*` (at most 63 characters,
/// as plugin ids are) and a directory that already exists.
pub fn scaffold(name: &str, parent_dir: &Path, sdk_path: &Path) -> anyhow::Result<PathBuf> {
    check_name(name)?;
    if !sdk_path.is_absolute() {
        bail!("the SDK path {} is not absolute", sdk_path.display());
    }
    if !sdk_path.join("Cargo.toml").is_file() {
        bail!("{} is not the SDK crate (it has no Cargo.toml)", sdk_path.display());
    }
    let sdk_path = sdk_path.to_str().with_context(|| format!("the SDK path {} is not UTF-8", sdk_path.display()))?;
    fs::create_dir_all(parent_dir).with_context(|| format!("creating {}", parent_dir.display()))?;
    let dir = parent_dir.join(name);
    // `create_dir`, not `create_dir_all`: it fails if the directory exists,
    // so an existing crate is never overwritten, even in a race.
    fs::create_dir(&dir).map_err(|error| match error.kind() {
        std::io::ErrorKind::AlreadyExists => anyhow::anyhow!("{} already exists", dir.display()),
        _ => anyhow::Error::new(error).context(format!("creating {}", dir.display())),
    })?;
    let render = |template: &str| {
        template
            .replace("{{name}}", name)
            .replace("{{crate_name}}", &name.replace('-', "_"))
            .replace("{{sdk_path}}", &toml_escape(sdk_path))
    };
    let files = [
        ("Cargo.toml", render(CARGO_TOML)),
        ("src/lib.rs", render(LIB_RS)),
        ("README.md", render(README)),
        (".gitignore", GITIGNORE.to_owned()),
    ];
    fs::create_dir(dir.join("src")).with_context(|| format!("creating {}", dir.join("src").display()))?;
    for (path, text) in files {
        let path = dir.join(path);
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(dir)
}

fn check_name(name: &str) -> anyhow::Result<()> {
    let mut chars = name.chars();
    let valid = name.len() <= 63
        && chars.next().is_some_and(|first| first.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        bail!("plugin name '{name}' must start with a-z and use only a-z, 0-9 and '-' (at most 63 characters)");
    }
    if KEYWORDS.contains(&name) {
        bail!("plugin name '{name}' is a Rust keyword, which cargo refuses as a package name");
    }
    Ok(())
}

/// The text of a TOML basic string (between double quotes).
fn toml_escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sdk() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk").canonicalize().unwrap()
    }

    #[test]
    fn writes_a_crate_with_every_placeholder_filled() {
        let parent = tempfile::tempdir().unwrap();
        let dir = scaffold("lead-scoring", parent.path(), &sdk()).unwrap();
        assert_eq!(dir, parent.path().join("lead-scoring"));
        for file in ["Cargo.toml", "src/lib.rs", "README.md", ".gitignore"] {
            let text = fs::read_to_string(dir.join(file)).unwrap();
            assert!(!text.contains("{{"), "{file} keeps a placeholder:\n{text}");
        }
        let cargo_toml = fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(cargo_toml.contains("name = \"lead-scoring\""));
        assert!(cargo_toml.contains(&format!("path = \"{}\"", sdk().display())));
        assert!(cargo_toml.contains("[workspace]") && cargo_toml.contains("[profile.plugin]"));
        assert!(fs::read_to_string(dir.join("src/lib.rs")).unwrap().contains("Manifest::new(\"lead-scoring\""));
        assert!(fs::read_to_string(dir.join("README.md")).unwrap().contains("plugin/lead_scoring.wasm"));
    }

    #[test]
    fn refuses_bad_names() {
        let parent = tempfile::tempdir().unwrap();
        for name in ["", "Scoring", "1st", "-x", "a_b", "a b", "ü", "fn", &"a".repeat(64)] {
            let error = scaffold(name, parent.path(), &sdk()).unwrap_err();
            assert!(error.to_string().contains("plugin name"), "{name}: {error}");
        }
        assert_eq!(fs::read_dir(parent.path()).unwrap().count(), 0);
    }

    #[test]
    fn refuses_to_overwrite() {
        let parent = tempfile::tempdir().unwrap();
        fs::create_dir(parent.path().join("taken")).unwrap();
        fs::write(parent.path().join("taken/keep.txt"), "mine").unwrap();
        let error = scaffold("taken", parent.path(), &sdk()).unwrap_err();
        assert!(error.to_string().contains("already exists"), "{error}");
        assert_eq!(fs::read_to_string(parent.path().join("taken/keep.txt")).unwrap(), "mine");
        assert!(!parent.path().join("taken/Cargo.toml").exists());
    }

    #[test]
    fn refuses_a_relative_or_wrong_sdk_path() {
        let parent = tempfile::tempdir().unwrap();
        assert!(scaffold("x", parent.path(), Path::new("sdk")).unwrap_err().to_string().contains("not absolute"));
        assert!(scaffold("x", parent.path(), parent.path()).unwrap_err().to_string().contains("not the SDK"));
    }

    #[test]
    fn escapes_the_sdk_path_for_toml() {
        assert_eq!(toml_escape(r#"C:\sdk "x""#), r#"C:\\sdk \"x\""#);
    }
}
