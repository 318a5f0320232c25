//! Brings the pinned third-party browser assets (uPlot) in at build time so they are embedded
//! in the binary without being committed: `npm ci --ignore-scripts` in `web/` installs exactly
//! the version and integrity hash of `web/package-lock.json` when `web/node_modules` lacks it.

use std::path::Path;
use std::process::Command;

const ASSETS: [&str; 2] = [
    "node_modules/uplot/dist/uPlot.iife.min.js",
    "node_modules/uplot/dist/uPlot.min.css",
];

fn main() {
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
    println!("cargo:rerun-if-changed=web/package-lock.json");
    println!("cargo:rerun-if-changed=web/package.json");
    for asset in ASSETS {
        println!("cargo:rerun-if-changed=web/{asset}");
    }
    if ASSETS.iter().all(|a| web.join(a).is_file()) {
        return;
    }
    let npm = std::env::var("NPM").unwrap_or_else(|_| "npm".to_owned());
    let status = Command::new(&npm)
        .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund"])
        .current_dir(&web)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!(
            "vigil-dashboard build: `{npm} ci --ignore-scripts` in {} failed ({s}); it installs \
             the pinned uPlot from the npm registry (see web/package-lock.json)",
            web.display()
        ),
        Err(err) => panic!(
            "vigil-dashboard build: cannot run `{npm}` ({err}). Node.js and npm are needed once \
             to fetch the pinned uPlot into dashboard/web/node_modules (Debian: apt-get install \
             npm), or set NPM=/path/to/npm"
        ),
    }
    for asset in ASSETS {
        assert!(
            web.join(asset).is_file(),
            "vigil-dashboard build: npm ci did not install web/{asset}"
        );
    }
}
