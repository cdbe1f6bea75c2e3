//! The `cairn` binary as an operator runs it: real processes, real files.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::process::{Command, Output};

fn cairn(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cairn")).args(args).env_remove("RUST_BACKTRACE").output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn keygen_writes_a_private_key_and_never_prints_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("node.key");
    let out = cairn(&["keygen", "--out", key.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let public = text(&out.stdout).trim().to_owned();
    assert_eq!(public.len(), 64);
    let secret = std::fs::read_to_string(&key).unwrap();
    assert!(!text(&out.stdout).contains(secret.trim()));
    assert!(!text(&out.stderr).contains(secret.trim()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let again = cairn(&["pubkey", "--key", key.to_str().unwrap()]);
    let mut lines = text(&again.stdout).lines().map(str::to_owned).collect::<Vec<_>>().into_iter();
    assert_eq!(lines.next().unwrap(), public);
    // The peer id a node with this key has, and it names the same protocol key.
    let peer = lines.next().unwrap().strip_prefix("peer id: ").unwrap().to_owned();
    let p: cairn_p2p::Peer = peer.parse().unwrap();
    assert_eq!(p.protocol_key().unwrap().to_hex(), public);
    let twice = cairn(&["keygen", "--out", key.to_str().unwrap()]);
    assert!(!twice.status.success());
    assert!(text(&twice.stderr).contains("already exists"));
}

#[cfg(unix)]
#[test]
fn pubkey_refuses_a_world_readable_key() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k");
    assert!(cairn(&["keygen", "--out", key.to_str().unwrap()]).status.success());
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = cairn(&["pubkey", "--key", key.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("chmod 600"), "{}", text(&out.stderr));
}

#[test]
fn decode_renders_a_valid_receipt_proof_and_names_a_failing_step() {
    let vectors = concat!(env!("CARGO_MANIFEST_DIR"), "/../spec/vectors/receipt_proof.json");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(vectors).unwrap()).unwrap();
    let good = v["valid"][0]["proof"].as_str().unwrap();
    let out = cairn(&["decode", "receipt-proof", good]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["verification"]["ok"], true);
    assert_eq!(j["verification"]["result"]["block_merkle_root"], v["valid"][0]["block_merkle_root"]);

    let bad = v["invalid"][0]["proof"].as_str().unwrap();
    let out = cairn(&["decode", "receipt-proof", bad]);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["verification"]["ok"], false);
    assert_eq!(j["verification"]["step"], v["invalid"][0]["error"]);
}

#[test]
fn decode_refuses_garbage_with_one_clear_line() {
    for (kind, input) in [("task", "00ff"), ("receipt", "zz"), ("no-such-kind", "00"), ("epoch-header", "")] {
        let out = cairn(&["decode", kind, input]);
        assert!(!out.status.success(), "{kind} {input}");
        let err = text(&out.stderr);
        assert!(err.starts_with("error: "), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("blob");
    std::fs::write(&f, vec![1u8; 300]).unwrap();
    let out = cairn(&["decode", "task", &format!("@{}", f.display())]);
    assert!(text(&out.stderr).contains("not a valid task"), "{}", text(&out.stderr));
}

/// Config precedence, as documented: defaults < file < `CAIRN_*` env < flags.
#[test]
fn coordinator_config_precedence_file_env_flag() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "[api]\nlisten = \"127.0.0.1:1111\"\n[bitcoin]\nmode = \"none\"\n").unwrap();
    let run = |env: &[(&str, &str)], flags: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
        c.args(["coordinator", "--print-config", "--config", file.to_str().unwrap()]).args(flags);
        for k in ["CAIRN_API_LISTEN", "CAIRN_NETWORK", "CAIRN_DATA_DIR", "CAIRN_CONFIG", "CAIRN_BITCOIN"] {
            c.env_remove(k);
        }
        c.envs(env.iter().copied());
        let out = c.output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    // Defaults where the file is silent.
    let v = run(&[], &[]);
    assert_eq!(v["api"]["listen"], "127.0.0.1:1111");
    assert_eq!(v["network"], "regtest");
    assert_eq!(v["bitcoin"]["finality_depth"], 6);
    // Env beats the file; a flag beats env.
    assert_eq!(run(&[("CAIRN_API_LISTEN", "127.0.0.1:2222")], &[])["api"]["listen"], "127.0.0.1:2222");
    let v = run(&[("CAIRN_API_LISTEN", "127.0.0.1:2222")], &["--api-listen", "127.0.0.1:3333"]);
    assert_eq!(v["api"]["listen"], "127.0.0.1:3333");
    assert_eq!(run(&[("CAIRN_NETWORK", "signet")], &[])["network"], "signet");
    // A bad value is refused with a clear error and a non-zero exit.
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["coordinator", "--print-config", "--network", "moon"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("moon"));
}
