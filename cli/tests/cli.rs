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

#[test]
fn worker_settings_are_checked_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("c.key");
    assert!(cairn(&["keygen", "--out", key.to_str().unwrap()]).status.success());
    let out = cairn(&["pubkey", "--key", key.to_str().unwrap()]);
    let peer = text(&out.stdout).lines().nth(1).unwrap().strip_prefix("peer id: ").unwrap().to_owned();
    let coord = format!("/ip4/127.0.0.1/tcp/1/p2p/{peer}");
    let data = dir.path().join("w");
    let base =
        ["worker", "--network", "regtest", "--data-dir", data.to_str().unwrap(), "--coordinator", &coord];
    // A mainnet address on regtest: the sats could never be paid.
    let mut args = base.to_vec();
    args.extend(["--payout-address", "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"]);
    let out = cairn(&args);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("not a regtest address"), "{}", text(&out.stderr));
    // No payout address at all.
    let out = cairn(&base);
    assert!(text(&out.stderr).contains("payout_address is required"), "{}", text(&out.stderr));
    // A coordinator address without its peer id.
    let out = cairn(&[
        "worker",
        "--payout-address",
        "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080",
        "--coordinator",
        "/ip4/127.0.0.1/tcp/1",
    ]);
    assert!(text(&out.stderr).contains("/p2p/"), "{}", text(&out.stderr));
    // Env and flags resolve; --print-config shows the result and starts nothing.
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(base)
        .args(["--print-config", "--concurrent-tasks", "3"])
        .env("CAIRN_PAYOUT_ADDRESS", "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080")
        .env("CAIRN_CONCURRENT_TASKS", "7")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["limits"]["concurrent_tasks"], 3, "the flag beats the environment");
    assert_eq!(v["payout_address"], "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080");
    assert!(!data.exists(), "print-config creates nothing");
    // An unknown model name is a usage error naming the known ones; nothing is fetched.
    let out = cairn(&["models", "fetch", "gpt5", "--models-dir", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("[possible values: minilm]"), "{}", text(&out.stderr));
}

#[test]
fn follow_resolves_whom_to_follow_and_refuses_what_it_cannot_follow() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("f");
    let key = "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";
    let out = cairn(&[
        "follow",
        "--data-dir",
        d.to_str().unwrap(),
        "--coordinator-key",
        key,
        "--genesis-anchor",
        &"ab".repeat(32),
        "--print-config",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["follow"]["coordinator"].as_str(), v["follow"]["sync_secs"].as_u64()),
        (Some(key), Some(5))
    );
    assert!(!d.exists(), "--print-config creates nothing");
    // No peer to sync from, a key that is not a key, a txid that is not one: clear errors.
    let out = cairn(&["follow", "--data-dir", d.to_str().unwrap(), "--bitcoin", "none"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("needs the coordinator"), "{}", text(&out.stderr));
    let out =
        cairn(&["follow", "--data-dir", d.to_str().unwrap(), "--bitcoin", "none", "--coordinator-key", "zz"]);
    assert!(text(&out.stderr).contains("not an x-only public key"), "{}", text(&out.stderr));
    let peer = "/ip4/127.0.0.1/tcp/1/p2p/16Uiu2HAmLhLvBoYaoZfaMUKuibM6ac163GwKY74c5kiSLg5KvLpY";
    let out = cairn(&[
        "follow",
        "--data-dir",
        d.to_str().unwrap(),
        "--bitcoin",
        "none",
        "--bootstrap",
        peer,
        "--genesis-anchor",
        "nope",
    ]);
    assert!(text(&out.stderr).contains("is not a txid"), "{}", text(&out.stderr));
}

/// `cairn coordinator` with `HOME` at `home` and no data-dir setting from the environment.
fn coordinator_at(home: &std::path::Path, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
    c.arg("coordinator").args(args).env("HOME", home).env_remove("RUST_BACKTRACE");
    for k in [
        "XDG_DATA_HOME",
        "CAIRN_DATA_DIR",
        "CAIRN_CONFIG",
        "CAIRN_NETWORK",
        "CAIRN_BITCOIN",
        "CAIRN_ALLOW_MAINNET",
    ] {
        c.env_remove(k);
    }
    c.output().unwrap()
}

#[test]
fn a_public_network_node_never_silently_makes_new_keys_nor_opens_another_networks_data() {
    let home = tempfile::tempdir().unwrap();
    // No data dir named on signet: refused before any key exists.
    let out = coordinator_at(home.path(), &["--network", "signet", "--bitcoin", "none"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("--data-dir") && err.contains("signet"), "{err}");
    assert!(!home.path().join(".cairn/signet/node.key").exists());
    // Named, the default directory is used: the marker is written and a key created (the
    // start then stops at the Bitcoin settings, before anything waits for Core).
    let named = home.path().join(".cairn/signet");
    // An https URL is refused at once, after the keys and before any wait for Core.
    let core = ["--rpc-url", "https://127.0.0.1:1", "--rpc-user", "u", "--rpc-password", "p"];
    let mut args = vec!["--network", "signet", "--data-dir", named.to_str().unwrap()];
    args.extend(core);
    assert!(!coordinator_at(home.path(), &args).status.success());
    assert_eq!(std::fs::read_to_string(named.join("network")).unwrap(), "signet\n");
    assert!(named.join("node.key").exists());
    // Once it holds the keys, a start without --data-dir finds them there, under HOME, and
    // again stops only at the Bitcoin settings.
    let mut args = vec!["--network", "signet"];
    args.extend(core);
    let err = text(&coordinator_at(home.path(), &args).stderr);
    assert!(!err.contains("--data-dir") && err.contains("must start with http://"), "{err}");
    // A data dir that belongs to regtest is refused for signet.
    let d = home.path().join("d");
    std::fs::create_dir(&d).unwrap();
    std::fs::write(d.join("network"), "regtest\n").unwrap();
    let out = coordinator_at(
        home.path(),
        &["--network", "signet", "--bitcoin", "none", "--data-dir", d.to_str().unwrap()],
    );
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("belongs to network \"regtest\""), "{}", text(&out.stderr));
    assert!(!d.join("node.key").exists());
    // Mainnet needs an explicit yes.
    let out = coordinator_at(home.path(), &["--network", "mainnet", "--print-config"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("allow_mainnet"), "{}", text(&out.stderr));
    let out = coordinator_at(home.path(), &["--network", "mainnet", "--allow-mainnet", "--print-config"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Fees left unset stay unset, so the network's defaults apply (config.rs tests which).
    assert!(v["bitcoin"]["max_fee_per_anchor_sats"].is_null(), "{v}");
}

#[test]
fn print_config_never_prints_the_rpc_password() {
    let home = tempfile::tempdir().unwrap();
    let out =
        coordinator_at(home.path(), &["--print-config", "--rpc-user", "u", "--rpc-password", "hunter2"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!text(&out.stdout).contains("hunter2"));
    assert!(text(&out.stdout).contains("\"rpc_user\": \"u\""), "{}", text(&out.stdout));
}

#[test]
fn key_export_prints_the_anchor_descriptor_and_backups_never_write_where_they_did_not_create() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let key = data.join("anchor.key");
    assert!(cairn(&["keygen", "--out", key.to_str().unwrap()]).status.success());
    // Not a data directory yet (no network marker): refused.
    let out = cairn(&["key", "export", "--data-dir", data.to_str().unwrap()]);
    assert!(!out.status.success());
    std::fs::write(data.join("network"), "signet\n").unwrap();
    let out = cairn(&["key", "export", "--data-dir", data.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let public = text(&out.stdout).trim().to_owned();
    let pubkey =
        text(&cairn(&["pubkey", "--key", key.to_str().unwrap()]).stdout).lines().next().unwrap().to_owned();
    assert!(public.starts_with(&format!("tr({pubkey})#")), "{public}");
    let out = cairn(&["key", "export", "--data-dir", data.to_str().unwrap(), "--private"]);
    assert!(out.status.success());
    let private = text(&out.stdout).trim().to_owned();
    // Testnet WIF (signet), and a warning on stderr, not in what a script captures.
    assert!(private.starts_with("tr(c") && private.contains('#'), "{private}");
    assert!(text(&out.stderr).contains("spend"), "{}", text(&out.stderr));
    // A backup of a directory without a database is refused.
    let b = dir.path().join("b");
    let out = cairn(&["backup", "--data-dir", data.to_str().unwrap(), "--to", b.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("no database"), "{}", text(&out.stderr));
    drop(cairn_coordinator::store::RocksStore::open(&data.join("db")).unwrap());
    // Neither a backup nor a restore goes into a directory that exists, even an empty one.
    let taken = dir.path().join("taken");
    std::fs::create_dir(&taken).unwrap();
    let out = cairn(&["backup", "--data-dir", data.to_str().unwrap(), "--to", taken.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("exists"), "{}", text(&out.stderr));
    let out = cairn(&["backup", "--data-dir", data.to_str().unwrap(), "--to", b.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = cairn(&["restore", "--from", b.to_str().unwrap(), "--data-dir", taken.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(std::fs::read_dir(&taken).unwrap().next().is_none(), "nothing was written into it");
    let restored = dir.path().join("restored");
    let out = cairn(&["restore", "--from", b.to_str().unwrap(), "--data-dir", restored.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read(restored.join("anchor.key")).unwrap(), std::fs::read(&key).unwrap());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for f in ["anchor.key", "network", ""] {
            let mode = std::fs::metadata(restored.join(f)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode & 0o077, 0, "{f}: {mode:o}");
        }
    }
}

#[test]
fn exit_codes_tell_a_usage_error_from_a_failure() {
    // clap's usage error: 2. A command that cannot run: 1. (A failed audit check is 3, in
    // audit_bitcoind.rs, where a real check fails.)
    assert_eq!(cairn(&["--no-such-flag"]).status.code(), Some(2));
    assert_eq!(cairn(&["audit", "receipt", "--min-depth", "many"]).status.code(), Some(2));
    assert_eq!(cairn(&["decode", "receipt", "zz"]).status.code(), Some(1));
}

#[test]
fn logs_are_plain_when_piped_and_json_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("a.key");
    let out = cairn(&["keygen", "--out", key.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert!(err.contains("created key file") && !err.contains('\u{1b}'), "{err:?}");
    let key = dir.path().join("b.key");
    let out = cairn(&["keygen", "--out", key.to_str().unwrap(), "--log-format", "json"]);
    let line = text(&out.stderr).lines().next().unwrap_or_default().to_owned();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["fields"]["message"], "created key file", "{v}");
    // RUST_LOG is honoured when no --log is given: `warn` hides the info line.
    let key = dir.path().join("c.key");
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["keygen", "--out", key.to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .env_remove("CAIRN_LOG")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(!text(&out.stderr).contains("created key file"), "{}", text(&out.stderr));
    // A value clap can list is refused by clap, naming the choices.
    let out = cairn(&["keygen", "--out", "x", "--log-format", "xml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("json"), "{}", text(&out.stderr));
}

#[test]
fn worker_status_takes_a_cookie_or_a_user_and_password() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("worker.key");
    assert!(cairn(&["keygen", "--out", key.to_str().unwrap()]).status.success());
    let d = dir.path().to_str().unwrap();
    let mut args = vec!["worker", "status", "--data-dir", d, "--rpc-url", "http://127.0.0.1:1"];
    args.extend(["--payout-address", "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"]);
    args.extend(["--coordinator-api", "http://127.0.0.1:1"]);
    let out = cairn(&args);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("--rpc-user"), "{}", text(&out.stderr));
    // With a user and password it goes ahead (the node is not there: the report says so).
    args.extend(["--rpc-user", "u", "--rpc-password", "p"]);
    let out = cairn(&args);
    assert!(!text(&out.stderr).contains("--rpc-user"), "{}", text(&out.stderr));
}

#[test]
fn worker_status_is_text_for_people_and_json_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("worker.key");
    let out = cairn(&["keygen", "--out", key.to_str().unwrap()]);
    assert!(out.status.success());
    let d = dir.path().to_str().unwrap();
    let payout = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";
    let args = [
        "worker",
        "status",
        "--data-dir",
        d,
        "--payout-address",
        payout,
        "--coordinator-api",
        "http://127.0.0.1:1",
    ];
    let out = cairn(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let t = text(&out.stdout);
    assert!(t.contains(&format!("payout    {payout}")), "{t}");
    assert!(t.contains("results   0 accepted, 0 rejected, 0 abandoned; credited 0.00000000 BTC"), "{t}");
    assert!(t.contains("journal   no jobs"), "{t}");
    // The coordinator named only by its API is not there: the report says so, not nothing.
    assert!(t.contains("NOT ASKED http://127.0.0.1:1/v1/health"), "{t}");
    assert!(serde_json::from_str::<serde_json::Value>(&t).is_err(), "text, not JSON: {t}");
    let out = cairn(&[&args[..], &["--json"]].concat());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["payout_address"], payout, "{v}");
    assert_eq!(v["totals"]["accepted"], 0, "{v}");
    assert!(v["checked_against"].is_null(), "signatures only without a Core: {v}");
    assert!(v["coordinators"][0]["problem"].as_str().unwrap().contains("127.0.0.1:1"), "{v}");
}

#[test]
fn completions_and_man_pages_come_from_the_command_line_itself() {
    // bash completes subcommands and the values clap knows (networks), from the script
    // `cairn completions bash` prints, as a shell would load it.
    let out = cairn(&["completions", "bash"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("cairn.bash");
    std::fs::write(&script, &out.stdout).unwrap();
    let complete = |line: &str| {
        let words: Vec<&str> = line.split(' ').collect();
        let prog = format!(
            "source {}; COMP_WORDS=({}); COMP_CWORD={}; COMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}; \
             _cairn cairn '{}' '{}'; echo \"${{COMPREPLY[@]}}\"",
            script.display(),
            words.iter().map(|w| format!("'{w}'")).collect::<Vec<_>>().join(" "),
            words.len() - 1,
            words[words.len() - 1],
            words[words.len().saturating_sub(2)],
        );
        let out = Command::new("bash").args(["-c", &prog]).output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout).split_whitespace().map(str::to_owned).collect::<Vec<_>>()
    };
    assert_eq!(complete("cairn wor"), ["worker"]);
    assert_eq!(complete("cairn coordinator --network "), ["mainnet", "testnet4", "signet", "regtest"]);
    assert_eq!(complete("cairn coordinator --bitcoin "), ["rpc", "none"]);
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = cairn(&["completions", shell]);
        assert!(out.status.success() && out.stdout.len() > 1000, "{shell}");
    }
    assert_eq!(cairn(&["completions", "tcsh"]).status.code(), Some(2), "an unknown shell is a usage error");

    // One man page per command, in roff, with each command's flags.
    let man = dir.path().join("man");
    let out = cairn(&["man", "--out-dir", man.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let page = std::fs::read_to_string(man.join("cairn.1")).unwrap();
    assert!(page.starts_with(".ie \\n(.g .ds Aq") || page.contains(".TH cairn 1"), "{page}");
    let status = std::fs::read_to_string(man.join("cairn-worker-status.1")).unwrap();
    assert!(status.contains(".TH cairn-worker-status 1") && status.contains("json"), "{status}");
    assert!(man.join("cairn-audit-receipt.1").is_file());

    // Values clap can list are refused by clap, naming the choices.
    let out = cairn(&["coordinator", "--network", "testnet3"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("testnet4"), "{}", text(&out.stderr));
    let out = cairn(&["decode", "block", "00"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("epoch-header"), "{}", text(&out.stderr));
}
