//! Brings the pinned third-party browser assets (uPlot) in at build time so they are embedded
//! in the binary without being committed: `npm ci --ignore-scripts` installs exactly the
//! version and integrity hash of `web/package-lock.json` into this build's `OUT_DIR`, and the
//! two files are copied next to it for `include_str!`.
//!
//! Everything is read at run time and written under `OUT_DIR` (never the source tree), so two
//! checkouts sharing one target directory each get their own, correct assets.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `(installed path under node_modules, file name in OUT_DIR)`.
const ASSETS: [(&str, &str); 2] = [
    (
        "node_modules/uplot/dist/uPlot.iife.min.js",
        "uPlot.iife.min.js",
    ),
    ("node_modules/uplot/dist/uPlot.min.css", "uPlot.min.css"),
];
const PACKAGE_FILES: [&str; 2] = ["package.json", "package-lock.json"];

fn env_path(name: &str) -> PathBuf {
    PathBuf::from(std::env::var_os(name).unwrap_or_else(|| panic!("cargo sets {name}")))
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path)
        .unwrap_or_else(|e| panic!("vigil-dashboard build: read {}: {e}", path.display()))
}

fn main() {
    let web = env_path("CARGO_MANIFEST_DIR").join("web");
    let out = env_path("OUT_DIR");
    let staged = out.join("web");
    for file in PACKAGE_FILES {
        println!("cargo:rerun-if-changed=web/{file}");
    }
    // Installed already for this lockfile (a rebuild of the same OUT_DIR): nothing to fetch.
    let lock = read(&web.join("package-lock.json"));
    let installed = std::fs::read(staged.join("package-lock.json")).is_ok_and(|l| l == lock)
        && ASSETS.iter().all(|(a, _)| staged.join(a).is_file());
    if !installed {
        std::fs::create_dir_all(&staged).expect("create OUT_DIR/web");
        for file in PACKAGE_FILES {
            std::fs::write(staged.join(file), read(&web.join(file))).expect("stage package files");
        }
        npm_ci(&staged);
    }
    for (asset, name) in ASSETS {
        let from = staged.join(asset);
        assert!(
            from.is_file(),
            "vigil-dashboard build: npm ci did not install {asset}"
        );
        std::fs::copy(&from, out.join(name)).expect("copy an asset into OUT_DIR");
    }
}

fn npm_ci(dir: &Path) {
    let npm = std::env::var("NPM").unwrap_or_else(|_| "npm".to_owned());
    let status = Command::new(&npm)
        .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!(
            "vigil-dashboard build: `{npm} ci --ignore-scripts` in {} failed ({s}); it installs \
             the pinned uPlot from the npm registry (see web/package-lock.json)",
            dir.display()
        ),
        Err(err) => panic!(
            "vigil-dashboard build: cannot run `{npm}` ({err}). Node.js and npm are needed to \
             fetch the pinned uPlot (Debian: apt-get install npm), or set NPM=/path/to/npm"
        ),
    }
}
