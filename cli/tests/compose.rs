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
    let (btc_volume, _, _) = btc_mounts[0].clone();
    let hc: Vec<String> = list(&btc["healthcheck"]["test"]).iter().map(|a| expand(a)).collect();
    assert!(hc.iter().any(|a| a == &format!("-rpcport={rpc_port}")));
    // Core's data dir is its user's alone in the image: the cairn containers authenticate with
    // a user and password, never a cookie, and the health check uses the same credentials.
    let flag = |args: &[String], f: &str| args.iter().find_map(|a| a.strip_prefix(f)).map(expand);
    let rpc_user = flag(&btc_args, "-rpcuser=").expect("bitcoind -rpcuser");
    let rpc_password = flag(&btc_args, "-rpcpassword=").expect("bitcoind -rpcpassword");
    assert!(!btc_args.iter().any(|a| a.starts_with("-rpccookie")), "no cookie settings");
    assert_eq!(flag(&hc, "-rpcuser=").as_ref(), Some(&rpc_user), "health check user");
    assert_eq!(flag(&hc, "-rpcpassword=").as_ref(), Some(&rpc_password), "health check password");

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
        let env: BTreeMap<String, String> = env.into_iter().map(|(k, v)| (k, expand(&v))).collect();
        let cfg = resolve(&args, &env);
        assert!(!m.iter().any(|(vol, _, _)| vol == &btc_volume), "{name} mounts Core's private data dir");
        let auth_ok = |cfg_user: &Value| {
            assert_eq!(cfg_user.as_str(), Some(rpc_user.as_str()), "{name}: RPC user");
            assert_eq!(env.get("CAIRN_RPC_PASSWORD"), Some(&rpc_password), "{name}: RPC password");
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
                auth_ok(&cfg["bitcoin"]["rpc_user"]);
                assert!(cfg["bitcoin"]["cookie_file"].is_null(), "{name}: no cookie");
                assert_eq!(cfg["bitcoin"]["rpc_password"], "<redacted>", "{name}: printed redacted");
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
                auth_ok(&cfg["rpc_user"]);
                assert!(cfg["rpc_cookie"].is_null(), "{name}: no cookie");
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

/// The compose services' processes, killed when the test ends however it ends.
struct Services(Vec<(String, std::process::Child)>);

impl Drop for Services {
    fn drop(&mut self) {
        for (_, c) in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The stack without a container engine: each service's own command line from
/// docker-compose.yml, run against a real Bitcoin Core the way the containers run it. Core's
/// data dir is private to Core's user (0700, as the bitcoin/bitcoin image makes it); the cairn
/// processes run as uid 10001 (the image's `cairn` user) when the test runs as root, with only
/// the service's environment, its data dir, and the repo's docker/*.toml where the image puts
/// them. Only host names, ports and mount points are rewritten (no container network here).
/// Core answers the health check with the compose credentials; the coordinator comes up
/// healthy, the miner funds it, two workers register and run a task, and its epoch is
/// anchored through Core with those credentials. A wrong password is refused.
#[test]
fn docker_compose_commands_run_against_a_real_core_as_the_containers_would() {
    use std::os::unix::fs::PermissionsExt;
    use std::process::{Command, Stdio};
    use std::time::Duration;

    let Some(bitcoind) = cairn_testkit::bitcoind() else { return };
    let bitcoin_cli = bitcoind.with_file_name("bitcoin-cli");
    assert!(bitcoin_cli.is_file(), "no bitcoin-cli next to {}", bitcoind.display());
    let text = std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap();
    let doc = YamlLoader::load_from_str(&text).unwrap().remove(0);
    let services: BTreeMap<String, BTreeMap<String, Yaml>> =
        doc["services"].as_hash().unwrap().iter().map(|(k, v)| (s(k), merged(v))).collect();

    // The containers' users: the test switches to uid 10001, which needs root.
    let root_user = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    let Some(()) = cairn_testkit::need(
        (root_user && cairn_testkit::runs("setpriv")).then_some(()),
        "running the services as the image's uid 10001 needs root and setpriv (util-linux)",
    ) else {
        return;
    };
    const CAIRN_UID: u32 = 10001;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let chown = |p: &std::path::Path| {
        if root_user {
            std::os::unix::fs::chown(p, Some(CAIRN_UID), Some(CAIRN_UID)).unwrap();
        }
    };
    // The image's files: the binary and /etc/cairn (readable by anyone, owned by root).
    let bin = root.join("cairn");
    if std::fs::hard_link(env!("CARGO_BIN_EXE_cairn"), &bin).is_err() {
        std::fs::copy(env!("CARGO_BIN_EXE_cairn"), &bin).unwrap();
    }
    let etc = root.join("etc-cairn");
    std::fs::create_dir(&etc).unwrap();
    for f in ["coordinator.toml", "worker.toml"] {
        std::fs::copy(repo().join("docker").join(f), etc.join(f)).unwrap();
    }
    // Core's data dir: its user's alone.
    let core_dir = root.join("bitcoin");
    std::fs::create_dir(&core_dir).unwrap();
    std::fs::set_permissions(&core_dir, std::fs::Permissions::from_mode(0o700)).unwrap();

    let rpc_port = cairn_testkit::node::free_port();
    let api_port = cairn_testkit::node::free_port();
    let p2p_port = cairn_testkit::node::free_port();
    let rewrite = |a: &str| -> String {
        expand(a)
            .replace("http://bitcoind:18443", &format!("http://127.0.0.1:{rpc_port}"))
            .replace("http://coordinator:8686", &format!("http://127.0.0.1:{api_port}"))
            .replace("0.0.0.0:8686", &format!("127.0.0.1:{api_port}"))
            .replace("http://127.0.0.1:8686/", &format!("http://127.0.0.1:{api_port}/"))
            .replace("/ip4/0.0.0.0/tcp/7070", &format!("/ip4/127.0.0.1/tcp/{p2p_port}"))
            .replace("/etc/cairn/", &format!("{}/", etc.display()))
            .replace("-rpcport=18443", &format!("-rpcport={rpc_port}"))
    };
    let env_of = |svc: &BTreeMap<String, Yaml>| -> BTreeMap<String, String> {
        svc.get("environment")
            .and_then(Yaml::as_hash)
            .map(|h| h.iter().map(|(k, v)| (s(k), expand(&s(v)))).collect())
            .unwrap_or_default()
    };
    let mut running = Services(Vec::new());

    // Bitcoin Core with the compose arguments (bound to loopback, its p2p port free).
    let btc = &services["bitcoind"];
    let mut args: Vec<String> = list(&btc["command"]).iter().map(|a| rewrite(a)).collect();
    args.retain(|a| !a.starts_with("-rpcbind=") && !a.starts_with("-rpcallowip="));
    args.extend([
        format!("-datadir={}", core_dir.display()),
        "-rpcbind=127.0.0.1".into(),
        "-rpcallowip=127.0.0.1".into(),
        format!("-port={}", cairn_testkit::node::free_port()),
        "-listen=0".into(),
    ]);
    let child =
        Command::new(&bitcoind).args(&args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    running.0.push(("bitcoind".into(), child));
    // Its health check, as compose runs it.
    let hc: Vec<String> = list(&btc["healthcheck"]["test"]).iter().skip(1).map(|a| rewrite(a)).collect();
    assert_eq!(hc[0], "bitcoin-cli");
    cairn_testkit::wait_for("bitcoind's health check", Duration::from_secs(60), || {
        Command::new(&bitcoin_cli).args(&hc[1..]).output().is_ok_and(|o| o.status.success())
    });

    // A cairn service's command, as its container runs it.
    let cairn_cmd = |name: &str, data: Option<&std::path::Path>, env: &BTreeMap<String, String>| {
        let svc = &services[name];
        let mut args: Vec<String> = list(&svc["command"]).iter().map(|a| rewrite(a)).collect();
        if let Some(d) = data {
            for a in &mut args {
                *a = a.replace("--data-dir=/data", &format!("--data-dir={}", d.display()));
            }
        }
        let mut cmd = if root_user {
            let mut c = Command::new("setpriv");
            c.args([
                &format!("--reuid={CAIRN_UID}"),
                &format!("--regid={CAIRN_UID}"),
                "--clear-groups",
                "--",
            ]);
            c.arg(&bin);
            c
        } else {
            Command::new(&bin)
        };
        cmd.args(&args)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", root)
            .envs(env)
            .stdin(Stdio::null());
        cmd
    };
    let data_dir = |name: &str| {
        let d = root.join(format!("{name}-data"));
        std::fs::create_dir(&d).unwrap();
        chown(&d);
        d
    };
    if root_user {
        // The cairn user cannot read Core's data dir: a cookie there would be of no use.
        let out = Command::new("setpriv")
            .args([&format!("--reuid={CAIRN_UID}"), &format!("--regid={CAIRN_UID}"), "--clear-groups", "--"])
            .args(["ls", core_dir.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(!out.status.success(), "uid {CAIRN_UID} must not read Core's data dir");
    }

    let coord_data = data_dir("coordinator");
    let coord_env = env_of(&services["coordinator"]);
    let log = std::fs::File::create(root.join("coordinator.log")).unwrap();
    chown(&root.join("coordinator.log"));
    let child = cairn_cmd("coordinator", Some(&coord_data), &coord_env)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    running.0.push(("coordinator".into(), child));
    let hc: Vec<String> =
        list(&services["coordinator"]["healthcheck"]["test"]).iter().skip(1).map(|a| rewrite(a)).collect();
    assert_eq!(hc[0], "curl");
    let coordinator_log = || std::fs::read_to_string(root.join("coordinator.log")).unwrap_or_default();
    let healthy =
        |hc: &[String]| Command::new(&hc[0]).args(&hc[1..]).output().is_ok_and(|o| o.status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while !healthy(&hc) {
        assert!(std::time::Instant::now() < deadline, "coordinator never healthy:\n{}", coordinator_log());
        std::thread::sleep(Duration::from_millis(200));
    }

    // A miner with the wrong password is refused by Core, and says so without the password.
    let mut wrong = env_of(&services["miner"]);
    wrong.insert("CAIRN_RPC_PASSWORD".into(), "not-the-password".into());
    let out = cairn_cmd("miner", None, &wrong).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a wrong RPC password was accepted: {err}");
    assert!(err.contains("401") || err.to_lowercase().contains("auth"), "{err}");
    assert!(!err.contains("not-the-password"), "the password was printed: {err}");

    for name in ["miner", "worker0", "worker1"] {
        let data = (name != "miner").then(|| data_dir(name));
        let child = cairn_cmd(name, data.as_deref(), &env_of(&services[name]))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(root.join(format!("{name}.log"))).unwrap())
            .spawn()
            .unwrap();
        running.0.push((name.into(), child));
    }
    for name in ["worker0", "worker1"] {
        let hc: Vec<String> = list(&services[name]["healthcheck"]["test"])
            .iter()
            .skip(1)
            .map(|a| a.replace("/data/", &format!("{}/", root.join(format!("{name}-data")).display())))
            .collect();
        cairn_testkit::wait_for(&format!("{name}'s health check"), Duration::from_secs(60), || {
            Command::new(&hc[0]).args(&hc[1..]).output().is_ok_and(|o| o.status.success())
        });
    }

    // Work through the stack: a task for the workers, its epoch anchored through Core.
    let api: std::net::SocketAddr = format!("127.0.0.1:{api_port}").parse().unwrap();
    let token = std::fs::read_to_string(coord_data.join("operator.token")).unwrap().trim().to_owned();
    let workers_in = || {
        cairn_testkit::node::http(api, "GET", "/v1/workers", None, None).1["workers"]
            .as_array()
            .map_or(0, Vec::len)
    };
    cairn_testkit::wait_for("both workers registered", Duration::from_secs(90), || workers_in() >= 2);
    let body = r#"{"class":"upper","input_text":"compose stack","units":1,"budget_sats":1000,"nonce":1}"#;
    let (s, v) = cairn_testkit::node::http(api, "POST", "/v1/tasks", Some(&token), Some(body));
    assert_eq!(s, 201, "{v}");
    let task = v["id"].as_str().unwrap().to_owned();
    let logs = || {
        ["coordinator", "miner", "worker0", "worker1"]
            .map(|n| {
                format!(
                    "--- {n}:\n{}",
                    std::fs::read_to_string(root.join(format!("{n}.log"))).unwrap_or_default()
                )
            })
            .join("\n")
    };
    // Both workers' receipts (replication 2), each in a signed epoch.
    let mut receipts: Vec<String> = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while receipts.len() < 2 {
        assert!(std::time::Instant::now() < deadline, "task {task} never got two receipts\n{}", logs());
        std::thread::sleep(Duration::from_millis(500));
        let t = cairn_testkit::node::http(api, "GET", &format!("/v1/tasks/{task}"), None, None).1;
        receipts = t["assignments"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["receipt"].as_str().map(str::to_owned))
            .collect();
    }
    let epoch = loop {
        let (s, r) =
            cairn_testkit::node::http(api, "GET", &format!("/v1/receipts/{}", receipts[0]), None, None);
        if s == 200 {
            break r["epoch"].as_u64().unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline + Duration::from_secs(120),
            "no epoch for the receipt\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    // Anchored: built, signed and broadcast through Core with the compose credentials, and
    // confirmed by the miner's blocks.
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    loop {
        let e = cairn_testkit::node::http(api, "GET", &format!("/v1/epochs/{epoch}"), None, None).1;
        if e["anchor"]["status"] == "confirmed" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "epoch {epoch} not anchored: {e}\n{}", logs());
        std::thread::sleep(Duration::from_millis(500));
    }
    // Every service is still up: nothing crashed on the way.
    for (name, c) in &mut running.0 {
        assert!(c.try_wait().unwrap().is_none(), "{name} exited");
    }
}
