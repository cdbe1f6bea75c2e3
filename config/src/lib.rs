//! Layered configuration, the same for every Cairn program: built-in defaults, then a TOML
//! file, then `CAIRN_*` environment variables, then command-line flags, each replacing what
//! came before. clap resolves a flag over its variable and hands the result over as the
//! program's `Overrides`; this crate does the rest of the layering the same way for the node
//! and the worker.
//!
//! Owns reading a config file (bounded, unknown keys refused by each config's serde
//! attributes), the order of the layers and the error a bad setting gets. Must never know what
//! a setting means (each program's config module does) nor read a secret.

pub mod data_dir;
pub use data_dir::DataDir;

use std::io::Read;
use std::path::{Path, PathBuf};

use cairn_spec::Network;
use serde::de::DeserializeOwned;
use thiserror::Error;

/// Largest config file read.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// A setting that is missing, malformed or out of range.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading config {path}: {reason}")]
    Read {
        /// Path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The TOML does not parse or has unknown keys.
    #[error("config: {0}")]
    Parse(String),
    /// A value is out of range or inconsistent.
    #[error("config: {0}")]
    Invalid(String),
}

/// A program's configuration, as layers apply to it.
pub trait Layered: DeserializeOwned + Default {
    /// The values set by flags or their environment variables (`None`: not set).
    type Overrides;
    /// Replaces every setting the overrides set.
    fn apply(&mut self, overrides: Self::Overrides);
    /// Checks every setting; a program starts only with a config that passes.
    fn validate(&self) -> Result<(), ConfigError>;

    /// Parses a TOML document (unknown settings are errors: a typo must not silently fall
    /// back to a default).
    fn from_toml(text: &str) -> Result<Self, ConfigError> {
        from_toml(text)
    }

    /// Reads and parses a TOML file of at most [`MAX_CONFIG_BYTES`].
    fn from_file(path: &Path) -> Result<Self, ConfigError> {
        from_file(path)
    }
}

/// Parses a TOML document.
pub fn from_toml<C: DeserializeOwned>(text: &str) -> Result<C, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))
}

/// Reads and parses a TOML file of at most [`MAX_CONFIG_BYTES`].
pub fn from_file<C: DeserializeOwned>(path: &Path) -> Result<C, ConfigError> {
    let err = |reason: String| ConfigError::Read { path: path.to_owned(), reason };
    let f = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    let mut text = String::new();
    f.take(MAX_CONFIG_BYTES + 1).read_to_string(&mut text).map_err(|e| err(e.to_string()))?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(err(format!("larger than {MAX_CONFIG_BYTES} bytes")));
    }
    from_toml(&text)
}

/// The layers in order: defaults, then `file` when given, then `overrides`; then validated.
pub fn resolve<C: Layered>(file: Option<&Path>, overrides: C::Overrides) -> Result<C, ConfigError> {
    let mut cfg = match file {
        Some(p) => C::from_file(p)?,
        None => C::default(),
    };
    cfg.apply(overrides);
    cfg.validate()?;
    Ok(cfg)
}

/// A network setting: mainnet, testnet4, signet or regtest.
pub fn network(name: &str) -> Result<Network, ConfigError> {
    Network::from_name(name).ok_or_else(|| {
        ConfigError::Invalid(format!(
            "unknown network {name:?}: expected mainnet, testnet4, signet or regtest"
        ))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[derive(Debug, Default, serde::Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Demo {
        name: String,
        port: u16,
    }

    impl Layered for Demo {
        type Overrides = Option<u16>;
        fn apply(&mut self, port: Option<u16>) {
            if let Some(p) = port {
                self.port = p;
            }
        }
        fn validate(&self) -> Result<(), ConfigError> {
            if self.port == 1 {
                return Err(ConfigError::Invalid("port 1".into()));
            }
            Ok(())
        }
    }

    #[test]
    fn defaults_then_file_then_overrides_then_validation() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "name = \"a\"\nport = 7\n").unwrap();
        assert_eq!(resolve::<Demo>(None, None).unwrap(), Demo::default());
        assert_eq!(resolve::<Demo>(Some(&f), None).unwrap(), Demo { name: "a".into(), port: 7 });
        assert_eq!(resolve::<Demo>(Some(&f), Some(9)).unwrap(), Demo { name: "a".into(), port: 9 });
        assert!(matches!(resolve::<Demo>(Some(&f), Some(1)), Err(ConfigError::Invalid(_))));
    }

    #[test]
    fn unknown_keys_oversized_and_missing_files_are_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let typo = dir.path().join("typo.toml");
        std::fs::write(&typo, "nmae = \"a\"\n").unwrap();
        assert!(matches!(from_file::<Demo>(&typo), Err(ConfigError::Parse(_))));
        let big = dir.path().join("big.toml");
        std::fs::write(&big, "#".repeat(MAX_CONFIG_BYTES as usize + 1)).unwrap();
        let e = from_file::<Demo>(&big).unwrap_err().to_string();
        assert!(e.contains("larger than"), "{e}");
        let e = from_file::<Demo>(&dir.path().join("none.toml")).unwrap_err().to_string();
        assert!(e.contains("none.toml"), "{e}");
        assert!(network("regtest").is_ok());
        assert!(matches!(network("testnet3"), Err(ConfigError::Invalid(_))));
    }
}
