//! docker-compose.yml, checked without a container engine: every cairn service's command line
//! (with its environment, and `${VAR:-default}` as compose expands it) is accepted by the
//! `cairn` binary and resolves to a valid configuration (`--print-config`); the ports, volumes,
//! host names and paths the services name agree with each other and with the Dockerfile.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

fn s(y: &Yaml) -> String {
    match y {
        Yaml::String(v) => v.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        other => panic!("expected a scalar, got {other:?}"),
    }
}

fn list(y: &Yaml) -> Vec<String> {
    y.as_vec().map(|v| v.iter().map(s).collect()).unwrap_or_default()
}

/// `${VAR:-default}` → the variable's value if set in `env`, else the default (compose's rule).
fn expand(arg: &str) -> String {
    let mut out = String::new();
    let mut rest = arg;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let end = rest[i..].find('}').expect("closing brace") + i;
        let inner = &rest[i + 2..end];
        let (name, default) = inner.split_once(":-").unwrap_or((inner, ""));
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{inner}");
        out.push_str(default);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// A service's mapping with `<<:` merge keys applied (the file uses an `x-cairn` anchor).
fn merged(svc: &Yaml) -> BTreeMap<String, Yaml> {
    let mut m = BTreeMap::new();
    let h = svc.as_hash().expect("service is a mapping");
    if let Some(base) = h.get(&Yaml::String("<<".into())) {
        for (k, v) in base.as_hash().expect("merge of a mapping") {
            m.insert(s(k), v.clone());
        }
    }
    for (k, v) in h {
        if s(k) != "<<" {
            m.insert(s(k), v.clone());
        }
    }
    m
}

/// (volume, mount point, read-only) of a service.
fn mounts(svc: &BTreeMap<String, Yaml>) -> Vec<(String, String, bool)> {
    svc.get("volumes")
        .map(list)
        .unwrap_or_default()
        .iter()
        .map(|v| {
            let parts: Vec<&str> = v.split(':').collect();
            (parts[0].to_owned(), parts[1].to_owned(), parts.get(2) == Some(&"ro"))
        })
        .collect()
}

fn under_mount<'a>(path: &str, m: &'a [(String, String, bool)]) -> Option<&'a (String, String, bool)> {
    m.iter().find(|(_, at, _)| path == at || path.starts_with(&format!("{at}/")))
}

fn host_port(url: &str) -> (String, u16) {
    let rest = url.strip_prefix("http://").expect("http:// URL");
    let hp = rest.split('/').next().unwrap();
    let (h, p) = hp.rsplit_once(':').expect("a port");
    (h.to_owned(), p.parse().unwrap())
}

/// Runs `cairn <args> --print-config` as the container would (paths under /etc/cairn/ are the
/// repo's docker/ files the Dockerfile copies there) and returns the resolved configuration.
fn resolve(args: &[String], env: &BTreeMap<String, String>) -> Value {
    let docker = repo().join("docker");
    let args: Vec<String> = args
        .iter()
        .map(|a| a.replace("/etc/cairn/", &format!("{}/", docker.display())))
        .chain(std::iter::once("--print-config".to_owned()))
        .collect();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(&args)
        .envs(env)
        .env_remove("CAIRN_DATA_DIR")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cairn {args:?} refused:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("cairn {args:?}: not JSON ({e})"))
}

#[test]
fn docker_compose_services_are_consistent_and_accepted_by_the_cli() {
    let text = std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap();
    let doc = YamlLoader::load_from_str(&text).unwrap().remove(0);
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    assert!(dockerfile.contains("USER cairn"), "the runtime image runs as a non-root user");
    assert!(dockerfile.matches("FROM ").count() >= 2, "multi-stage build");

    let services: BTreeMap<String, BTreeMap<String, Yaml>> =
        doc["services"].as_hash().unwrap().iter().map(|(k, v)| (s(k), merged(v))).collect();
    let declared: BTreeSet<String> = doc["volumes"].as_hash().unwrap().keys().map(s).collect();

    // Bitcoin Core: a pinned public image; its RPC port and data volume.
    let btc = &services["bitcoind"];
    let image = s(&btc["image"]);
    let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
    assert!(tag.chars().next().is_some_and(|c| c.is_ascii_digit()), "bitcoind image {image} is not pinned");
    let btc_args = list(&btc["command"]);
    assert!(btc_args.iter().any(|a| a == "-regtest=1"));
    let rpc_port: u16 = btc_args.iter().find_map(|a| a.strip_prefix("-rpcport=")).unwrap().parse().unwrap();
    let btc_mounts = mounts(btc);
    let (btc_volume, btc_datadir, _) = btc_mounts[0].clone();
    let hc = list(&btc["healthcheck"]["test"]);
    assert!(hc.iter().any(|a| a == &format!("-rpcport={rpc_port}")));
    let btc_cookie_rel = hc.iter().find_map(|a| a.strip_prefix("-rpccookiefile=")).unwrap();
    let cookie_rel =
        btc_cookie_rel.strip_prefix(&format!("{btc_datadir}/")).expect("cookie in the data dir").to_owned();

    let mut used = BTreeSet::new();
    let mut writable: BTreeMap<String, String> = BTreeMap::new();
    let mut coordinator_api: Option<(String, u16)> = None;
    let mut payouts = BTreeSet::new();
    let mut cairn_services = 0;
    for (name, svc) in &services {
        let m = mounts(svc);
        for (vol, _, ro) in &m {
            assert!(declared.contains(vol), "{name}: volume {vol} is not declared");
            used.insert(vol.clone());
            if !ro {
                if let Some(other) = writable.insert(vol.clone(), name.clone()) {
                    panic!("{vol} is written by both {other} and {name}");
                }
            }
        }
        for d in svc
            .get("depends_on")
            .and_then(Yaml::as_hash)
            .map(|h| h.keys().map(s).collect::<Vec<_>>())
            .unwrap_or_default()
        {
            assert!(services.contains_key(&d), "{name} depends on unknown {d}");
        }
        if name == "bitcoind" {
            continue;
        }
        assert_eq!(s(&svc["image"]), "cairn:local", "{name}");
        assert_eq!(s(&svc["build"]), ".", "{name} is built from the repo's Dockerfile");
        cairn_services += 1;
        let args: Vec<String> = list(&svc["command"]).iter().map(|a| expand(a)).collect();
        for a in &args {
            if let Some(p) = a.split('=').nth(1).filter(|p| p.starts_with("/etc/cairn/")) {
                let file = p.trim_start_matches("/etc/cairn/");
                assert!(repo().join("docker").join(file).is_file(), "{name}: {p} has no docker/{file}");
                assert!(
                    dockerfile.contains(&format!("docker/{file}")),
                    "{name}: the Dockerfile does not copy docker/{file}"
                );
            }
        }
        let env: BTreeMap<String, String> = svc
            .get("environment")
            .and_then(Yaml::as_hash)
            .map(|h| h.iter().map(|(k, v)| (s(k), s(v))).collect())
            .unwrap_or_default();
        let cfg = resolve(&args, &env);
        let cookie_ok = |cookie: &str| {
            let (vol, at, ro) =
                under_mount(cookie, &m).unwrap_or_else(|| panic!("{name}: {cookie} is on no volume"));
            assert_eq!(vol, &btc_volume, "{name}: the cookie is not on bitcoind's data volume");
            assert!(*ro, "{name} mounts bitcoind's data read-only");
            assert_eq!(cookie, format!("{at}/{cookie_rel}"), "{name}: not where bitcoind writes its cookie");
        };
        let rpc_ok =
            |url: &str| assert_eq!(host_port(url), ("bitcoind".to_owned(), rpc_port), "{name}: RPC URL");
        match args[0].as_str() {
            "coordinator" => {
                let data = cfg["data_dir"].as_str().unwrap();
                assert!(
                    under_mount(data, &m).is_some_and(|v| !v.2),
                    "{name}: data dir {data} is not a writable volume"
                );
                let listen = cfg["api"]["listen"].as_str().unwrap();
                let port: u16 = listen.rsplit_once(':').unwrap().1.parse().unwrap();
                let published: Vec<String> = svc.get("ports").map(list).unwrap_or_default();
                assert!(
                    published.iter().any(|p| p.ends_with(&format!(":{port}"))),
                    "{name}: API port {port} not published"
                );
                let health = list(&svc["healthcheck"]["test"]);
                assert!(
                    health.iter().any(|a| a.contains(&format!(":{port}/v1/health"))),
                    "{name}: health check port"
                );
                assert_eq!(cfg["bitcoin"]["mode"], "rpc");
                rpc_ok(cfg["bitcoin"]["rpc_url"].as_str().unwrap());
                cookie_ok(cfg["bitcoin"]["cookie_file"].as_str().unwrap());
                let p2p = cfg["p2p"]["listen"][0].as_str().unwrap();
                assert!(
                    p2p.starts_with("/ip4/0.0.0.0/tcp/"),
                    "{name}: p2p must listen for the workers: {p2p}"
                );
                coordinator_api = Some((name.clone(), port));
            }
            "worker" => {
                let data = cfg["data_dir"].as_str().unwrap();
                assert!(
                    under_mount(data, &m).is_some_and(|v| !v.2),
                    "{name}: data dir {data} is not a writable volume"
                );
                let api = cfg["coordinator"][0]["api"].as_str().unwrap();
                let (host, _) = host_port(api);
                assert!(services.contains_key(&host), "{name}: coordinator API host {host} is no service");
                assert!(
                    payouts.insert(cfg["payout_address"].as_str().unwrap().to_owned()),
                    "{name}: payout address shared"
                );
                let health = list(&svc["healthcheck"]["test"]);
                assert!(
                    health.iter().any(|a| a.starts_with(data)),
                    "{name}: health check looks outside its data dir"
                );
            }
            "mine" => {
                rpc_ok(cfg["rpc_url"].as_str().unwrap());
                cookie_ok(cfg["rpc_cookie"].as_str().unwrap());
            }
            other => panic!("{name}: unexpected cairn command {other}"),
        }
    }
    assert!(cairn_services >= 5, "coordinator, miner and three workers");
    assert_eq!(payouts.len(), 3, "three workers");
    assert_eq!(used, declared, "declared volumes nobody mounts");
    // Everyone who talks to the coordinator uses its service name and API port.
    let (coord, port) = coordinator_api.expect("a coordinator service");
    for (name, svc) in &services {
        for a in list(svc.get("command").unwrap_or(&Yaml::Null)) {
            for prefix in ["--api=", "--coordinator-api="] {
                if let Some(url) = a.strip_prefix(prefix) {
                    assert_eq!(host_port(url), (coord.clone(), port), "{name}: {a}");
                }
            }
        }
    }
}
