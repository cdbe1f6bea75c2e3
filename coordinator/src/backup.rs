//! Backups of a stopped node's data directory and their restore into a new one: a RocksDB
//! checkpoint of the database (lifecycle and anchor state together, so they agree), the key
//! files, the operator token and the network marker, plus a manifest naming what was saved.
//!
//! Owns which files make a backup and the order of a restore. Must never write into a
//! directory it did not create, and never back up a database a running node holds
//! (RocksDB's lock refuses it, and the error says to stop the node).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::store::RocksStore;

/// The files besides the database that make a node: its identity, its anchor key (the
/// anchor chain's funds), the operator token and the network marker.
pub const NODE_FILES: &[&str] =
    &["node.key", "anchor.key", "operator.token", cairn_config::data_dir::NETWORK_MARKER];

/// Name of the manifest in a backup.
pub const MANIFEST: &str = "cairn-backup.json";

/// What a backup holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version (1).
    pub version: u32,
    /// The network of the data directory.
    pub network: String,
    /// The files saved besides `db/`.
    pub files: Vec<String>,
    /// Unix seconds when it was made.
    pub created: u64,
}

/// Why a backup or restore did not happen (nothing was written into the target then, or
/// what was is left for the operator to remove).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BackupError {
    /// The target exists already.
    #[error("{0} exists: a backup or restore goes into a directory it creates")]
    TargetExists(PathBuf),
    /// The source is not a node's data directory or a backup.
    #[error("{path}: {reason}")]
    Source {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The database could not be opened or copied (a running node holds its lock).
    #[error("database {path}: {reason} (is the node still running? stop it first)")]
    Database {
        /// The database.
        path: PathBuf,
        /// RocksDB's reason.
        reason: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> BackupError + '_ {
    move |e| BackupError::Io { path: path.to_owned(), reason: e.to_string() }
}

/// Creates `dir` (0700), which must not exist: one made beforehand, by whoever, could be
/// another user's, who could swap the keys in it later. Its parents are created as needed.
fn fresh_dir(dir: &Path) -> Result<(), BackupError> {
    if dir.symlink_metadata().is_ok() {
        return Err(BackupError::TargetExists(dir.to_owned()));
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let mut b = std::fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => BackupError::TargetExists(dir.to_owned()),
        _ => io(dir)(e),
    })
}

/// Copies a file keeping it private (0600): key files stay key files.
fn copy_private(from: &Path, to: &Path) -> Result<(), BackupError> {
    let bytes = std::fs::read(from).map_err(io(from))?;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o.open(to).map_err(io(to))?;
    std::io::Write::write_all(&mut f, &bytes).map_err(io(to))?;
    f.sync_all().map_err(io(to))
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), BackupError> {
    fresh_dir(to)?;
    for entry in std::fs::read_dir(from).map_err(io(from))? {
        let entry = entry.map_err(io(from))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type().map_err(io(&src))?.is_dir() {
            copy_tree(&src, &dst)?;
        } else {
            copy_private(&src, &dst)?;
        }
    }
    Ok(())
}

fn network_of(dir: &Path) -> Result<String, BackupError> {
    let marker = dir.join(cairn_config::data_dir::NETWORK_MARKER);
    let text = std::fs::read_to_string(&marker).map_err(|e| BackupError::Source {
        path: dir.to_owned(),
        reason: format!("no network marker ({e}): not a data directory this version of Cairn has opened"),
    })?;
    Ok(text.trim().to_owned())
}

/// Backs up the stopped node at `data_dir` into the new directory `to`.
pub fn backup(data_dir: &Path, to: &Path, now_unix: u64) -> Result<Manifest, BackupError> {
    let network = network_of(data_dir)?;
    let db_path = data_dir.join("db");
    if !db_path.is_dir() {
        return Err(BackupError::Source { path: data_dir.to_owned(), reason: "no database (db/)".into() });
    }
    fresh_dir(to)?;
    let db = RocksStore::open(&db_path)
        .map_err(|e| BackupError::Database { path: db_path.clone(), reason: e.to_string() })?;
    db.checkpoint(&to.join("db"))
        .map_err(|e| BackupError::Database { path: db_path.clone(), reason: e.to_string() })?;
    drop(db);
    let mut files = Vec::new();
    for name in NODE_FILES {
        let src = data_dir.join(name);
        if src.exists() {
            copy_private(&src, &to.join(name))?;
            files.push((*name).to_owned());
        }
    }
    let manifest = Manifest { version: 1, network, files, created: now_unix };
    let path = to.join(MANIFEST);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(&path).map_err(io(&path))?;
    std::io::Write::write_all(&mut f, &serde_json::to_vec_pretty(&manifest).unwrap_or_default())
        .map_err(io(&path))?;
    f.sync_all().map_err(io(&path))?;
    Ok(manifest)
}

/// Restores the backup at `from` into the new data directory `to`, and checks that the
/// database opens there.
pub fn restore(from: &Path, to: &Path) -> Result<Manifest, BackupError> {
    let path = from.join(MANIFEST);
    let bytes = std::fs::read(&path).map_err(|e| BackupError::Source {
        path: from.to_owned(),
        reason: format!("no {MANIFEST} ({e}): not a Cairn backup"),
    })?;
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| BackupError::Source { path: path.clone(), reason: format!("bad manifest: {e}") })?;
    if manifest.version != 1 || !manifest.files.iter().all(|f| NODE_FILES.contains(&f.as_str())) {
        return Err(BackupError::Source {
            path,
            reason: "a manifest of another version or naming other files".into(),
        });
    }
    // The marker travels with the backup and names the network the manifest does.
    if network_of(from)? != manifest.network {
        return Err(BackupError::Source {
            path,
            reason: "its network marker and its manifest disagree".into(),
        });
    }
    fresh_dir(to)?;
    copy_tree(&from.join("db"), &to.join("db"))?;
    for name in &manifest.files {
        copy_private(&from.join(name), &to.join(name))?;
    }
    let db_path = to.join("db");
    RocksStore::open(&db_path).map_err(|e| BackupError::Database { path: db_path, reason: e.to_string() })?;
    Ok(manifest)
}
