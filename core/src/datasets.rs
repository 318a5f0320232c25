//! Where the real recordings fetched by `scripts/fetch-data` live, for tests, `vigil replay`
//! and `vigil eval`.
//!
//! `scripts/fetch-data` installs the files pinned in `data/manifest.toml` (with checksums) into
//! the data dir: `VIGIL_DATA_DIR` if set, else `~/.cache/vigil/data`. Paths below are relative
//! to it, as the manifest's `dest` fields, e.g. `edfjs/sample.edf`.

use std::path::PathBuf;

/// The data dir: `VIGIL_DATA_DIR`, else `$HOME/.cache/vigil/data` (relative `.cache/vigil/data`
/// when `HOME` is unset).
pub fn data_dir() -> PathBuf {
    match std::env::var_os("VIGIL_DATA_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default()
            .join(".cache/vigil/data"),
    }
}

/// A fetched file that is not there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path} is missing: run scripts/fetch-data (data dir from VIGIL_DATA_DIR, default ~/.cache/vigil/data)")]
pub struct MissingData {
    /// The path looked for.
    pub path: String,
}

/// The path of a fetched file (`relative` as in the manifest's `dest`), if it is there.
pub fn locate(relative: &str) -> Result<PathBuf, MissingData> {
    let path = data_dir().join(relative);
    if path.is_file() {
        Ok(path)
    } else {
        Err(MissingData {
            path: path.display().to_string(),
        })
    }
}

/// For tests: the fetched file, or `None` with a "skipped" note when it is missing
/// ([`crate::testenv::unavailable`]: a failure under CI).
pub fn for_test(relative: &str) -> Option<PathBuf> {
    match locate(relative) {
        Ok(path) => Some(path),
        Err(missing) => crate::testenv::unavailable(&missing.to_string()),
    }
}
