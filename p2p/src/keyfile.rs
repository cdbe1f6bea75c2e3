//! Key files: a 32-byte secret as 64 hex characters and a newline, mode 0600 (SPEC.md §4).
//!
//! Owns creating and loading protocol keys on disk. Must never write a secret anywhere but
//! its own file, never print it, and never load a key file that group or others can read.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use cairn_spec::SigningKey;
use thiserror::Error;

/// Why a key file could not be created or loaded.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// The file exists and creating it would overwrite a key.
    #[error("key file {0} already exists; refusing to overwrite a key")]
    Exists(PathBuf),
    /// Reading or writing failed.
    #[error("key file {path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Group or others may read the file.
    #[error("key file {path} has mode {mode:o}; it must not be readable by group or others (chmod 600)")]
    Permissions {
        /// File.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The contents are not 64 hex characters of a valid secret.
    #[error("key file {0} does not hold a valid secp256k1 secret (64 hex characters)")]
    Malformed(PathBuf),
    /// The operating system's random source failed.
    #[error("no randomness available for a new key: {0}")]
    Random(String),
    /// The file is gone while state made with the key is still there.
    #[error(
        "key file {0} is missing, but this data directory holds state made with it; restore the key \
         (a new one would sign another chain or strand the funds the old one holds), or start afresh \
         in an empty data directory"
    )]
    Missing(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyFileError + '_ {
    move |source| KeyFileError::Io { path: path.to_owned(), source }
}

/// Creates a new random key at `path` with mode 0600 (the file is created with that mode, so
/// the secret is never readable by others, not even briefly).
pub fn create(path: &Path) -> Result<SigningKey, KeyFileError> {
    let key = loop {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| KeyFileError::Random(e.to_string()))?;
        // A secret of zero or above the curve order has probability ~2^-128; draw again.
        if let Some(k) = SigningKey::from_secret_bytes(secret) {
            break k;
        }
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => KeyFileError::Exists(path.to_owned()),
        _ => KeyFileError::Io { path: path.to_owned(), source: e },
    })?;
    let mut text = hex::encode(key.secret_bytes());
    text.push('\n');
    f.write_all(text.as_bytes()).map_err(io(path))?;
    f.sync_all().map_err(io(path))?;
    Ok(key)
}

/// Loads the key at `path`, refusing files readable by group or others.
pub fn load(path: &Path) -> Result<SigningKey, KeyFileError> {
    let meta = fs::metadata(path).map_err(io(path))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyFileError::Permissions { path: path.to_owned(), mode });
        }
    }
    if meta.len() > 256 {
        return Err(KeyFileError::Malformed(path.to_owned()));
    }
    let text = fs::read_to_string(path).map_err(|_| KeyFileError::Malformed(path.to_owned()))?;
    let mut secret = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut secret).map_err(|_| KeyFileError::Malformed(path.to_owned()))?;
    SigningKey::from_secret_bytes(secret).ok_or_else(|| KeyFileError::Malformed(path.to_owned()))
}

/// Loads the key at `path`, creating it first when the file does not exist.
pub fn load_or_create(path: &Path) -> Result<SigningKey, KeyFileError> {
    match create(path) {
        Err(KeyFileError::Exists(_)) => load(path),
        other => other,
    }
}

/// As [`load_or_create`], but when `in_use` (state made with the key exists: a database, a
/// journal, anchors) a missing file is [`KeyFileError::Missing`]: a node never silently
/// replaces a key it has used.
pub fn load_or_create_for(path: &Path, in_use: bool) -> Result<SigningKey, KeyFileError> {
    if in_use && !path.exists() {
        return Err(KeyFileError::Missing(path.to_owned()));
    }
    load_or_create(path)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn create_then_load_round_trips_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("keys/node.key");
        let k = create(&p).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert_eq!(load(&p).unwrap().public(), k.public());
        assert!(matches!(create(&p), Err(KeyFileError::Exists(_))));
        assert_eq!(load_or_create(&p).unwrap().public(), k.public());
        // A key in use is never replaced when its file is gone; a new node's is created.
        assert_eq!(load_or_create_for(&p, true).unwrap().public(), k.public());
        fs::remove_file(&p).unwrap();
        assert!(matches!(load_or_create_for(&p, true), Err(KeyFileError::Missing(_))));
        assert!(!p.exists());
        assert_ne!(load_or_create_for(&p, false).unwrap().public(), k.public());
    }

    #[cfg(unix)]
    #[test]
    fn world_readable_and_malformed_files_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        create(&p).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        let err = load(&p).unwrap_err();
        assert!(matches!(err, KeyFileError::Permissions { mode: 0o644, .. }));
        fs::write(&p, "zz").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(load(&p), Err(KeyFileError::Malformed(_))));
        fs::write(&p, "00".repeat(32)).unwrap();
        assert!(matches!(load(&p), Err(KeyFileError::Malformed(_))));
    }
}
