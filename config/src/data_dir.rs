//! Where a program keeps its state: the directory given, else one per network under the
//! user's data home (`$XDG_DATA_HOME/cairn/<network>`, else `~/.cairn/<network>`); and the
//! `network` marker that ties a directory to one network for ever.
//!
//! Owns choosing the directory and its marker. Must never create a key: the owners of the key
//! files do, told by [`DataDir::may_create_keys`] whether they may.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use cairn_spec::Network;

use crate::ConfigError;

/// Name of the marker file.
pub const NETWORK_MARKER: &str = "network";

/// A data directory, chosen for one network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataDir {
    /// The directory.
    pub path: PathBuf,
    /// True when the operator named it (flag, variable or config file).
    pub explicit: bool,
    /// The network it belongs to.
    pub network: Network,
}

impl DataDir {
    /// The directory `explicit` names, else the per-network default read from `env`
    /// (`XDG_DATA_HOME`, then `HOME`).
    pub fn choose(
        explicit: Option<&Path>,
        network: Network,
        env: impl Fn(&str) -> Option<OsString>,
    ) -> Result<Self, ConfigError> {
        if let Some(p) = explicit {
            return Ok(DataDir { path: p.to_owned(), explicit: true, network });
        }
        let absolute = |v: OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
        let base = match env("XDG_DATA_HOME").and_then(absolute) {
            Some(xdg) => xdg.join("cairn"),
            None => env("HOME").and_then(absolute).map(|h| h.join(".cairn")).ok_or_else(|| {
                ConfigError::Invalid(
                    "no data directory: set --data-dir (neither XDG_DATA_HOME nor HOME is set)".into(),
                )
            })?,
        };
        Ok(DataDir { path: base.join(network.name()), explicit: false, network })
    }

    /// As [`DataDir::choose`] with the process's environment.
    pub fn from_env(explicit: Option<&Path>, network: Network) -> Result<Self, ConfigError> {
        Self::choose(explicit, network, |k| std::env::var_os(k))
    }

    /// Creates the directory (0700) if needed and checks its marker: a directory of another
    /// network is refused, one without a marker gets this network's.
    pub fn claim(&self) -> Result<(), ConfigError> {
        let io = |what: &str, e: std::io::Error| {
            ConfigError::Invalid(format!("data dir {}: {what}: {e}", self.path.display()))
        };
        create_private_dir(&self.path).map_err(|e| io("creating it", e))?;
        let marker = self.path.join(NETWORK_MARKER);
        match std::fs::read(&marker) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(bytes.get(..64).unwrap_or(&bytes)).trim().to_owned();
                if text != self.network.name() {
                    return Err(ConfigError::Invalid(format!(
                        "data dir {} belongs to network {text:?}, not {}: give this network its own --data-dir",
                        self.path.display(),
                        self.network
                    )));
                }
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let tmp = self.path.join(format!("{NETWORK_MARKER}.tmp"));
                std::fs::write(&tmp, format!("{}\n", self.network.name()))
                    .map_err(|e| io("writing its marker", e))?;
                std::fs::rename(&tmp, &marker).map_err(|e| io("writing its marker", e))
            }
            Err(e) => Err(io("reading its marker", e)),
        }
    }

    /// Whether a missing key may be created here: on regtest always; on a public network
    /// only in a directory the operator named, so a node started from elsewhere never
    /// silently becomes a new identity with a new anchor key.
    pub fn may_create_keys(&self) -> bool {
        self.explicit || self.network == Network::Regtest
    }

    /// The error for a missing key that may not be created here.
    pub fn refuse_new_key(&self, key: &Path) -> ConfigError {
        ConfigError::Invalid(format!(
            "no key at {}: on {} a node creates its keys only in a data directory named with --data-dir \
             (or data_dir in the config); name the directory that holds your keys, or a new one to start a new node",
            key.display(),
            self.network
        ))
    }
}

fn create_private_dir(path: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<OsString> {
        move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| OsString::from(v))
    }

    #[test]
    fn the_default_is_per_network_under_the_data_home() {
        let d = DataDir::choose(None, Network::Signet, env(&[("HOME", "/home/op")])).unwrap();
        assert_eq!((d.path, d.explicit), (PathBuf::from("/home/op/.cairn/signet"), false));
        let d =
            DataDir::choose(None, Network::Mainnet, env(&[("HOME", "/h"), ("XDG_DATA_HOME", "/x")])).unwrap();
        assert_eq!(d.path, PathBuf::from("/x/cairn/mainnet"));
        // A relative XDG_DATA_HOME is ignored, as the XDG spec says.
        let d =
            DataDir::choose(None, Network::Regtest, env(&[("HOME", "/h"), ("XDG_DATA_HOME", "x")])).unwrap();
        assert_eq!(d.path, PathBuf::from("/h/.cairn/regtest"));
        assert!(DataDir::choose(None, Network::Regtest, env(&[])).is_err());
        let d = DataDir::choose(Some(Path::new("rel")), Network::Signet, env(&[])).unwrap();
        assert_eq!((d.path, d.explicit), (PathBuf::from("rel"), true));
    }

    #[test]
    fn a_data_dir_of_another_network_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let signet = DataDir { path: t.path().join("d"), explicit: true, network: Network::Signet };
        signet.claim().unwrap();
        signet.claim().unwrap();
        let mainnet = DataDir { network: Network::Mainnet, ..signet.clone() };
        let err = mainnet.claim().unwrap_err().to_string();
        assert!(err.contains("belongs to network \"signet\""), "{err}");
        assert_eq!(std::fs::read_to_string(t.path().join("d/network")).unwrap(), "signet\n");
    }

    #[test]
    fn keys_are_created_only_where_the_operator_said() {
        let d = |explicit, network| DataDir { path: "x".into(), explicit, network };
        assert!(d(false, Network::Regtest).may_create_keys());
        assert!(d(true, Network::Mainnet).may_create_keys());
        assert!(!d(false, Network::Signet).may_create_keys());
        assert!(!d(false, Network::Mainnet).may_create_keys());
    }
}
