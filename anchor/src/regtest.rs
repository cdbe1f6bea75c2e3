//! Starting a private regtest `bitcoind` for tests and the devnet: found through
//! `BITCOIND_EXE`, then `PATH`, then the per-machine cache that `scripts/bitcoin-core.sh`
//! builds; its own data directory; free loopback ports; no peers; stopped on drop.
//!
//! Owns the node process. Must never touch a data directory it was not given, listen
//! beyond 127.0.0.1, or connect to the outside network.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::backend::ChainError;
use crate::rpc::{BitcoinCoreRpc, RpcAuth, RpcConfig};

/// The registry package whose Bitcoin Core source tree `scripts/bitcoin-core.sh` builds, and
/// its version: the cache directory's name (the script and a test keep them in step).
pub const CORE_SOURCE_PACKAGE: (&str, &str) = ("libbitcoinkernel-sys", "0.4.1");

/// Finds `bitcoind`: `BITCOIND_EXE` when set (and a file), else the first `bitcoind` on `PATH`,
/// else the one `scripts/bitcoin-core.sh` built into the cache.
pub fn find_bitcoind() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BITCOIND_EXE").map(PathBuf::from) {
        return is_executable(&p).then_some(p);
    }
    let on_path = std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).map(|d| d.join("bitcoind")).find(|p| is_executable(p)));
    on_path.or_else(|| cached_bitcoind().filter(|p| is_executable(p)))
}

/// A file someone may run (as `command -v` and `scripts/bitcoin-core.sh` see it).
fn is_executable(p: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        p.is_file()
    }
}

/// Where `scripts/bitcoin-core.sh` puts the `bitcoind` it builds:
/// `$CAIRN_BITCOIN_CACHE/<package>-<version>/bin/bitcoind`, the cache defaulting to
/// `~/.cache/cairn/bitcoin-core`.
pub fn cached_bitcoind() -> Option<PathBuf> {
    let root = match std::env::var_os("CAIRN_BITCOIN_CACHE") {
        Some(c) => PathBuf::from(c),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".cache/cairn/bitcoin-core"),
    };
    let (package, version) = CORE_SOURCE_PACKAGE;
    Some(root.join(format!("{package}-{version}")).join("bin/bitcoind"))
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A running regtest node.
#[derive(Debug)]
pub struct RegtestNode {
    exe: PathBuf,
    datadir: PathBuf,
    rpc_port: u16,
    p2p_port: u16,
    child: Option<Child>,
}

impl RegtestNode {
    /// Starts `exe` on regtest in `datadir` (created if needed) and waits until it answers.
    pub fn start(exe: &Path, datadir: &Path) -> Result<Self, ChainError> {
        std::fs::create_dir_all(datadir).map_err(|e| ChainError::Permanent(format!("datadir: {e}")))?;
        let io = |e: std::io::Error| ChainError::Permanent(format!("free port: {e}"));
        // A port found free can be taken by another process before bitcoind binds it (tests
        // start several nodes at once): a node that exits during start is tried again on
        // other ports, a few times.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut node = RegtestNode {
                exe: exe.to_owned(),
                datadir: datadir.to_owned(),
                rpc_port: free_port().map_err(io)?,
                p2p_port: free_port().map_err(io)?,
                child: None,
            };
            match node.spawn() {
                Ok(()) => return Ok(node),
                Err(e) if attempt < 3 && !node.is_running() => {
                    tracing::warn!(target: "cairn::regtest", error = %e, attempt, "bitcoind did not start; trying other ports");
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn spawn(&mut self) -> Result<(), ChainError> {
        let child = Command::new(&self.exe)
            .arg("-regtest")
            .arg(format!("-datadir={}", self.datadir.display()))
            .arg(format!("-rpcport={}", self.rpc_port))
            .arg(format!("-port={}", self.p2p_port))
            .args([
                "-server=1",
                "-listen=0",
                "-rpcbind=127.0.0.1",
                "-rpcallowip=127.0.0.1",
                "-dnsseed=0",
                "-fixedseeds=0",
                "-connect=0",
                "-discover=0",
                "-listenonion=0",
                "-printtoconsole=0",
                "-txindex=0",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| ChainError::Permanent(format!("starting {}: {e}", self.exe.display())))?;
        self.child = Some(child);
        let rpc = self.rpc()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match rpc.wait_ready(Duration::from_millis(500)) {
                Ok(_) => return Ok(()),
                Err(e) if e.is_transient() && Instant::now() < deadline => {
                    // A node that exited (bad argument, data dir in use) will never answer.
                    if !self.is_running() {
                        return Err(ChainError::Permanent(format!(
                            "{} exited during start; see {}",
                            self.exe.display(),
                            self.datadir.join("regtest/debug.log").display()
                        )));
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The RPC URL.
    pub fn rpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.rpc_port)
    }

    /// The cookie file Core writes on start.
    pub fn cookie_path(&self) -> PathBuf {
        self.datadir.join("regtest").join(".cookie")
    }

    /// The data directory.
    pub fn datadir(&self) -> &Path {
        &self.datadir
    }

    /// A client for this node (one attempt per call, short backoff: tests want fast answers).
    pub fn rpc(&self) -> Result<BitcoinCoreRpc, ChainError> {
        let mut cfg = RpcConfig::new(self.rpc_url(), RpcAuth::Cookie(self.cookie_path()));
        cfg.attempts = 1;
        cfg.timeout = Duration::from_secs(30);
        BitcoinCoreRpc::new(cfg)
    }

    /// Stops the node (RPC `stop`, then waits; kills it after 30 s).
    pub fn stop(&mut self) {
        if let Ok(rpc) = self.rpc() {
            let _ = rpc.raw_call("stop", json!([]));
        }
        if let Some(mut child) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
    }

    /// Starts the node again on the same data directory and ports.
    pub fn restart(&mut self) -> Result<(), ChainError> {
        self.stop();
        self.spawn()
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for RegtestNode {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::CORE_SOURCE_PACKAGE;

    #[test]
    fn the_build_script_fills_the_cache_this_crate_reads() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/bitcoin-core.sh");
        let script = std::fs::read_to_string(path).unwrap_or_default();
        let (package, version) = CORE_SOURCE_PACKAGE;
        assert!(script.lines().any(|l| l == format!("PKG={package}")), "PKG in {path}");
        assert!(script.lines().any(|l| l.starts_with(&format!("VERSION={version} "))), "VERSION in {path}");
        assert!(
            script.contains(r#"${CAIRN_BITCOIN_CACHE:-$HOME/.cache/cairn/bitcoin-core}"#),
            "cache root in {path}"
        );
        assert!(script.lines().any(|l| l == r#"CACHE="$CACHE_ROOT/$PKG-$VERSION""#), "cache dir in {path}");
    }
}
