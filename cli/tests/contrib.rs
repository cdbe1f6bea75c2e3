//! contrib/: the systemd units are valid for systemd's own verifier (`systemd-analyze
//! verify`), their command lines are accepted by the `cairn` binary, and the data dir each
//! names is the state directory systemd makes for it (owned by the service user, 0700).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// `key=value` lines of a unit, by key (repeated keys keep every value, in order).
fn directives(unit: &str) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in unit.lines().map(str::trim).filter(|l| !l.starts_with('#') && !l.starts_with('[')) {
        if let Some((k, v)) = line.split_once('=') {
            m.entry(k.to_owned()).or_default().push(v.to_owned());
        }
    }
    m
}

#[test]
fn systemd_units_verify_and_run_the_cli_they_name() {
    let Some(()) = cairn_testkit::need(
        cairn_testkit::runs("systemd-analyze").then_some(()),
        "systemd-analyze is not installed (Debian package systemd)",
    ) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    for (name, command) in [("cairn-coordinator.service", "coordinator"), ("cairn-worker.service", "worker")]
    {
        let text = std::fs::read_to_string(repo().join("contrib/systemd").join(name)).unwrap();
        let d = directives(&text);
        let one =
            |k: &str| d.get(k).and_then(|v| v.last()).unwrap_or_else(|| panic!("{name}: no {k}")).clone();
        let exec: Vec<String> = one("ExecStart").split_whitespace().map(str::to_owned).collect();
        assert_eq!(exec[0], "/usr/local/bin/cairn", "{name}");
        assert_eq!(exec[1], command, "{name}");
        // Never root, keys private, the data dir systemd's state dir for this service.
        assert_eq!(one("User"), "cairn", "{name}");
        assert_eq!(one("StateDirectoryMode"), "0700", "{name}");
        assert_eq!(one("UMask"), "0077", "{name}");
        assert_eq!(one("NoNewPrivileges"), "yes", "{name}");
        assert_eq!(one("ProtectSystem"), "strict", "{name}");
        let data = exec.iter().position(|a| a == "--data-dir").map(|i| exec[i + 1].clone()).unwrap();
        let state: Vec<String> =
            one("StateDirectory").split_whitespace().map(|s| format!("/var/lib/{s}")).collect();
        assert!(state.contains(&data), "{name}: {data} is not a StateDirectory ({state:?})");

        // The command line as systemd runs it (the config is the example from docker/, the
        // one the image ships), resolved by the binary itself.
        let args: Vec<String> = exec[1..]
            .iter()
            .map(|a| a.replace("/etc/cairn/", &format!("{}/docker/", repo().display())))
            .chain(["--print-config".to_owned()])
            .collect();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cairn"));
        cmd.args(&args).env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default());
        for e in d.get("Environment").into_iter().flatten() {
            let (k, v) = e.split_once('=').unwrap();
            cmd.env(k, v);
        }
        if command == "worker" {
            cmd.env("CAIRN_PAYOUT_ADDRESS", cairn_testkit::node::ADDR);
            cmd.env("CAIRN_COORDINATOR_API", "http://127.0.0.1:1");
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{name}: {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let cfg: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(cfg["data_dir"], data.as_str(), "{name}");

        // systemd's verifier, on the unit with ExecStart pointing at this build's binary.
        let unit = tmp.path().join(name);
        std::fs::write(&unit, text.replace("/usr/local/bin/cairn", env!("CARGO_BIN_EXE_cairn"))).unwrap();
        let out = Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(&unit).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        // An unknown or misspelt key is only a warning (exit 0) naming the file: any line
        // naming it fails the test. Lines about other units on the host are not the unit's.
        let own: Vec<&str> = err.lines().filter(|l| l.contains(name)).collect();
        assert!(out.status.success() && own.is_empty(), "{name}: systemd-analyze verify:\n{err}");
    }
}
