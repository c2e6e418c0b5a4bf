//! `wicket policy new NAME --lang rust|python|js`: a policy project that
//! builds with one command and holds a passing test.
//!
//! The templates (`sdk/templates/<lang>/`), the SDK of the language and the
//! contract (`wit/policy.wit`) are compiled into the binary, so an installed
//! `wicket` makes a project anywhere, with no checkout of wicket beside it.
//! The project gets its own copy of the SDK: it builds offline and does not
//! change under it when wicket is upgraded.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// A language a policy can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust, on the `wicket-policy-sdk` crate (`cargo build`).
    Rust,
    /// Python, on `wicket_policy.py` (componentize-py).
    Python,
    /// JavaScript, on `wicket-policy.js` (jco / componentize-js, QuickJS).
    Js,
}

/// One file of a project: where it goes, what it holds, and whether it is
/// a script to run.
struct File {
    path: &'static str,
    text: &'static str,
    executable: bool,
}

const fn file(path: &'static str, text: &'static str) -> File {
    File {
        path,
        text,
        executable: false,
    }
}

const fn script(path: &'static str, text: &'static str) -> File {
    File {
        path,
        text,
        executable: true,
    }
}

/// The contract every project builds against.
const WIT: File = file("wit/policy.wit", include_str!("../../wit/policy.wit"));

const RUST: &[File] = &[
    file(
        ".gitignore",
        include_str!("../../sdk/templates/rust/.gitignore"),
    ),
    file(
        "Cargo.toml",
        include_str!("../../sdk/templates/rust/Cargo.toml"),
    ),
    file(
        "README.md",
        include_str!("../../sdk/templates/rust/README.md"),
    ),
    file(
        "cases.toml",
        include_str!("../../sdk/templates/rust/cases.toml"),
    ),
    file(
        "src/lib.rs",
        include_str!("../../sdk/templates/rust/src/lib.rs"),
    ),
    // The SDK crate, vendored: its bindings read `../../wit`, which is the
    // project's own `wit/` from here.
    file("vendor/wicket-policy-sdk/Cargo.toml", SDK_RUST_MANIFEST),
    file(
        "vendor/wicket-policy-sdk/src/lib.rs",
        include_str!("../../sdk/rust/src/lib.rs"),
    ),
    file(
        "vendor/wicket-policy-sdk/src/builder.rs",
        include_str!("../../sdk/rust/src/builder.rs"),
    ),
    file(
        "vendor/wicket-policy-sdk/src/decision.rs",
        include_str!("../../sdk/rust/src/decision.rs"),
    ),
    file(
        "vendor/wicket-policy-sdk/src/guest.rs",
        include_str!("../../sdk/rust/src/guest.rs"),
    ),
    file(
        "vendor/wicket-policy-sdk/src/log.rs",
        include_str!("../../sdk/rust/src/log.rs"),
    ),
    file(
        "vendor/wicket-policy-sdk/src/pod.rs",
        include_str!("../../sdk/rust/src/pod.rs"),
    ),
    file(
        "vendor/wicket-policy-sdk/src/snapshot.rs",
        include_str!("../../sdk/rust/src/snapshot.rs"),
    ),
];

/// The SDK's manifest outside wicket's workspace (the one in `sdk/rust`
/// inherits the workspace's fields).
const SDK_RUST_MANIFEST: &str = r#"[package]
name = "wicket-policy-sdk"
description = "Write wicket ticket/scaling policies in Rust (vendored by `wicket policy new`)."
edition = "2024"
version = "0.1.0"
publish = false

[dependencies]
wit-bindgen = "0.63.0"

[features]
default = ["export"]
export = []
"#;

const PYTHON: &[File] = &[
    file(
        ".gitignore",
        include_str!("../../sdk/templates/python/.gitignore"),
    ),
    file(
        "README.md",
        include_str!("../../sdk/templates/python/README.md"),
    ),
    script(
        "build.sh",
        include_str!("../../sdk/templates/python/build.sh"),
    ),
    file(
        "cases.toml",
        include_str!("../../sdk/templates/python/cases.toml"),
    ),
    file(
        "policy.py",
        include_str!("../../sdk/templates/python/policy.py"),
    ),
    file(
        "pytest.ini",
        include_str!("../../sdk/templates/python/pytest.ini"),
    ),
    script(
        "test.sh",
        include_str!("../../sdk/templates/python/test.sh"),
    ),
    file(
        "test_policy.py",
        include_str!("../../sdk/templates/python/test_policy.py"),
    ),
    file(
        "tools.sh",
        include_str!("../../sdk/templates/python/tools.sh"),
    ),
    file(
        "wicket_policy.py",
        include_str!("../../sdk/python/wicket_policy.py"),
    ),
];

const JS: &[File] = &[
    file(
        ".gitignore",
        include_str!("../../sdk/templates/js/.gitignore"),
    ),
    file(
        "README.md",
        include_str!("../../sdk/templates/js/README.md"),
    ),
    script("build.sh", include_str!("../../sdk/templates/js/build.sh")),
    file(
        "cases.toml",
        include_str!("../../sdk/templates/js/cases.toml"),
    ),
    file(
        "component.js",
        include_str!("../../sdk/templates/js/component.js"),
    ),
    file(
        "package.json",
        include_str!("../../sdk/templates/js/package.json"),
    ),
    file(
        "policy.js",
        include_str!("../../sdk/templates/js/policy.js"),
    ),
    file(
        "policy.test.js",
        include_str!("../../sdk/templates/js/policy.test.js"),
    ),
    file("tools.sh", include_str!("../../sdk/templates/js/tools.sh")),
    file(
        "wicket-policy.js",
        include_str!("../../sdk/js/wicket-policy.js"),
    ),
];

/// Is `name` usable as a project, package and component name? Letters,
/// digits, `-` and `_`, starting with a letter (Cargo's and npm's rules
/// both hold for such names).
fn valid_name(name: &str) -> bool {
    name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Writes the project `name` in `lang` into `dir/name` (which must not
/// exist) and says how to build and test it. Returns the project folder.
pub fn run(name: &str, lang: Lang, dir: &Path) -> anyhow::Result<PathBuf> {
    if !valid_name(name) {
        bail!(
            "{name:?} is not a policy name: use lower-case letters, digits, '-' and '_', \
             starting with a letter (at most 64)"
        );
    }
    let root = dir.join(name);
    if root.exists() {
        bail!(
            "{} exists already: choose another name or folder",
            root.display()
        );
    }
    let files = match lang {
        Lang::Rust => RUST,
        Lang::Python => PYTHON,
        Lang::Js => JS,
    };
    for f in files.iter().chain(std::iter::once(&WIT)) {
        let path = root.join(f.path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        let text = f
            .text
            .replace("__NAME__", name)
            .replace("__SDK_PATH__", "vendor/wicket-policy-sdk");
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        if f.executable {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                .with_context(|| format!("making {} executable", path.display()))?;
        }
    }
    let shown = root.display();
    match lang {
        Lang::Rust => println!(
            "created {shown} (Rust)\n  cd {shown}\n  cargo test                                      # the policy's own tests\n  cargo build --target wasm32-wasip2 --release    # the component\n  wicket policy test target/wasm32-wasip2/release/{}.wasm cases.toml",
            name.replace('-', "_")
        ),
        Lang::Python => println!(
            "created {shown} (Python)\n  cd {shown}\n  ./test.sh                                   # the policy's own tests\n  ./build.sh                                  # {name}.wasm\n  wicket policy test {name}.wasm cases.toml"
        ),
        Lang::Js => println!(
            "created {shown} (JavaScript)\n  cd {shown}\n  node --test                                 # the policy's own tests\n  ./build.sh                                  # {name}.wasm\n  wicket policy test {name}.wasm cases.toml"
        ),
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(valid_name("my-policy"));
        assert!(valid_name("p2_x"));
        for bad in ["", "My", "1x", "a b", "a/b", "../x", "é"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn every_language_gets_its_files_names_and_contract() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (lang, name, sdk) in [
            (Lang::Rust, "r1", "vendor/wicket-policy-sdk/src/guest.rs"),
            (Lang::Python, "p1", "wicket_policy.py"),
            (Lang::Js, "j1", "wicket-policy.js"),
        ] {
            let root = run(name, lang, dir.path()).expect("created");
            assert!(root.join(sdk).is_file(), "{lang:?}: the SDK");
            let wit = fs::read_to_string(root.join("wit/policy.wit")).expect("wit");
            assert!(wit.contains("package wicket:policy@0.2.0;"));
            for f in walk(&root) {
                let text = fs::read_to_string(&f).expect("text");
                assert!(!text.contains("__NAME__"), "{}", f.display());
                assert!(!text.contains("__SDK_PATH__"), "{}", f.display());
                // The author may have only the binary: the case format is
                // `wicket policy test --example`, not a repository file.
                assert!(
                    !text.contains("policy-cases.toml"),
                    "{}: names a file of wicket's repository",
                    f.display()
                );
            }
            // The build's output (an 18 MB component, for Python) stays
            // out of the author's commits.
            let ignored = fs::read_to_string(root.join(".gitignore")).expect(".gitignore");
            let output = if lang == Lang::Rust {
                "/target".to_owned()
            } else {
                format!("/{name}.wasm")
            };
            assert!(ignored.lines().any(|l| l == output), "{lang:?}: {ignored}");
            let again = run(name, lang, dir.path()).expect_err("exists");
            assert!(again.to_string().contains("exists already"), "{again}");
        }
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in fs::read_dir(dir).expect("dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }
}
