//! Test support shared by Cairn's tests and benches: what a test needs from the machine
//! (Bitcoin Core, the embedding model, a browser, a second core) under one skip policy, and
//! waiting for a condition instead of sleeping a fixed time.
//!
//! Owns the skip policy: with `CI=true` a test whose dependency is missing fails, naming the
//! test and what is missing; outside CI it skips visibly (one line on stderr, and one line in
//! the file named by `CAIRN_SKIP_LOG`, which `.ci/run` lists and counts). Must never be a
//! dependency of anything but tests and benches, and never let a skip look like a pass.
#![allow(clippy::panic, clippy::print_stderr)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod anchoring;
#[cfg(feature = "node")]
pub mod node;
pub mod side;

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Where `.ci/run` asks skips to be recorded, one `test<TAB>reason` line each.
pub const SKIP_LOG_ENV: &str = "CAIRN_SKIP_LOG";

/// True when running under CI (`CI` set to anything but empty, `0` or `false`; CI sets
/// `CI=true`): nothing may skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !(v.is_empty() || v == "0" || v.eq_ignore_ascii_case("false")))
}

/// The running test's name: libtest names each test's thread after the test.
pub fn test_name() -> String {
    let thread = std::thread::current().name().unwrap_or("main").to_string();
    if thread != "main" {
        return thread;
    }
    // With one test thread libtest may run a test on the main thread: name the binary.
    std::env::args()
        .next()
        .and_then(|a| PathBuf::from(a).file_name().map(|f| f.to_string_lossy().into_owned()))
        .unwrap_or(thread)
}

/// The current test cannot run here because `reason`. Under CI this panics (the test fails,
/// saying what is missing); otherwise it prints one line, records the skip for `.ci/run` and
/// returns, and the caller returns without asserting anything.
#[track_caller]
pub fn skip(reason: &str) {
    let log = std::env::var_os(SKIP_LOG_ENV).map(PathBuf::from);
    if let Err(failure) = skip_as(in_ci(), log.as_deref(), &test_name(), reason) {
        panic!("{failure}");
    }
}

/// The policy itself: `Err` (the test must fail, with this text) under CI, else one line on
/// stderr and one in `log`.
fn skip_as(ci: bool, log: Option<&std::path::Path>, test: &str, reason: &str) -> Result<(), String> {
    if ci {
        return Err(format!(
            "{test} cannot run: {reason}. Under CI=true no test skips; .ci/run installs what tests need"
        ));
    }
    // Straight to the process's stderr: libtest captures `eprintln!` of a passing test, and a
    // skip must show under a plain `cargo test` too.
    let _ = std::io::stderr().write_all(format!("SKIPPED {test}: {reason}\n").as_bytes());
    if let Some(path) = log {
        let line = format!("{test}\t{}\n", reason.replace(['\n', '\t'], " "));
        // One write of one short line to a file opened for append: lines from tests running
        // at once do not interleave.
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .map_err(|e| format!("{test}: cannot record the skip in {}: {e}", path.display()))?;
    }
    Ok(())
}

/// `Some(value)` when the test has what it needs, else the skip policy for `reason`.
#[track_caller]
pub fn need<T>(value: Option<T>, reason: &str) -> Option<T> {
    if value.is_none() {
        skip(reason);
    }
    value
}

/// Bitcoin Core for a real-node test: `BITCOIND_EXE`, then `PATH`, then the per-machine
/// cache that `scripts/bitcoin-core.sh` fills, else the skip policy.
#[track_caller]
pub fn bitcoind() -> Option<PathBuf> {
    need(
        cairn_anchor::regtest::find_bitcoind(),
        "no bitcoind (not in BITCOIND_EXE, not on PATH, not built into the cache by scripts/bitcoin-core.sh)",
    )
}

/// Whether `program --version` runs.
pub fn runs(program: &str) -> bool {
    std::process::Command::new(program)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether `python3` can import `module`.
pub fn python_has(module: &str) -> bool {
    std::process::Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The cores this process may use (1 when unknown).
pub fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// How often the waits poll their condition.
pub const POLL: Duration = Duration::from_millis(100);

/// Polls `ok` every [`POLL`] until it holds; panics naming `what` after `timeout`. For
/// threads that may block (plain tests); async tests use [`wait_for_async`].
#[track_caller]
pub fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(POLL);
    }
}

/// As [`wait_for`], sleeping on the tokio timer so the runtime's other tasks go on.
pub async fn wait_for_async(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn under_ci_a_skip_is_a_failure_naming_the_test_and_what_is_missing() {
        let dir = std::env::temp_dir().join(format!("cairn-testkit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("skips");
        let err = skip_as(true, Some(&log), "t::real_core", "no bitcoind").unwrap_err();
        assert!(err.contains("t::real_core") && err.contains("no bitcoind"), "{err}");
        assert!(!log.exists(), "a CI failure is not recorded as a skip");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn outside_ci_a_skip_is_recorded_one_line_each() {
        let dir = std::env::temp_dir().join(format!("cairn-testkit-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("skips");
        skip_as(false, Some(&log), "a::one", "no model").unwrap();
        skip_as(false, Some(&log), "b::two", "no\tbrowser\nhere").unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(text, "a::one\tno model\nb::two\tno browser here\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn need_passes_a_present_value_through() {
        assert_eq!(need(Some(3), "unused"), Some(3));
    }

    #[test]
    fn the_test_name_is_the_test_thread_name() {
        assert!(test_name().ends_with("the_test_name_is_the_test_thread_name"), "{}", test_name());
    }

    #[test]
    fn wait_for_returns_once_the_condition_holds() {
        let mut n = 0;
        wait_for("three polls", Duration::from_secs(5), || {
            n += 1;
            n == 3
        });
        assert_eq!(n, 3);
    }

    #[test]
    #[should_panic(expected = "timed out")]
    fn wait_for_fails_naming_what_never_held() {
        wait_for("nothing", Duration::from_millis(20), || false);
    }
}
