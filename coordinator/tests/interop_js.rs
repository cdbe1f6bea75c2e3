//! SPEC §11's promise that any conforming libp2p implementation can join: a js-libp2p node
//! (from npm, default settings but one: its own agent and protocol version, Ed25519 key, TCP,
//! Noise, Yamux, and gossipsub with the `StrictNoSign` policy SPEC §11.3 names) dials the coordinator over a real socket, stays connected, and reads a
//! task announcement from the tasks topic, which decodes and verifies as Cairn's own
//! `GossipMessage` signed by the coordinator. interop/js/listen.mjs is the peer; `.ci/run`
//! installs its packages (interop/js/package-lock.json) with npm.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use cairn_spec::wire::{GossipMessage, Topic};
use cairn_spec::{Decode, Hash32, Network, Object, PubKey};
use cairn_testkit::node as common;
use serde_json::Value;

fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("interop/js")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_js_libp2p_peer_stays_connected_and_reads_task_gossip() {
    let dir = interop_dir();
    let ready = cairn_testkit::runs("node") && dir.join("node_modules/libp2p/package.json").is_file();
    let Some(()) = cairn_testkit::need(
        ready.then_some(()),
        "Node.js or interop/js/node_modules is missing (npm ci --prefix interop/js; .ci/run does it)",
    ) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (info, stop, handle) = common::start_node(&common::test_config(tmp.path())).await;
    let api = info.api;
    let token = std::fs::read_to_string(tmp.path().join("operator.token")).unwrap().trim().to_string();
    let coordinator = PubKey::from_hex(&info.coordinator).unwrap();
    let topic = Topic::Tasks.name(Network::Regtest);

    /// The js peer, killed if the test ends early.
    struct Peer(std::process::Child);
    impl Drop for Peer {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let log = tmp.path().join("js-peer.stderr");
    let mut child = Peer(
        Command::new("node")
            .arg(dir.join("listen.mjs"))
            .args([&info.p2p[0], &topic, "1", "90"])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let out = child.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let v = serde_json::from_str(&line).unwrap_or(Value::String(line));
            if tx.send(v).is_err() {
                return;
            }
        }
    });
    async fn next(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Value>, what: &str) -> Value {
        let v = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("no {what} from the js peer"));
        eprintln!("js peer: {v}");
        v
    }
    let connected = next(&mut rx, "connection").await;
    assert_eq!(connected["event"], "connected", "{connected}");
    assert!(info.p2p[0].ends_with(connected["peer"].as_str().unwrap()), "{connected}");

    // Give gossipsub's subscription exchange and mesh a moment, then announce a task. The
    // announcement is re-published while the task is open, so a late mesh still hears it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let body = r#"{"class":"echo","input_text":"from rust to js","units":1,"budget_sats":1000,"nonce":7}"#;
    let (s, v) =
        tokio::task::spawn_blocking(move || common::http(api, "POST", "/v1/tasks", Some(&token), Some(body)))
            .await
            .unwrap();
    assert_eq!(s, 201, "{v}");
    let task_id = Hash32::from_hex(v["id"].as_str().unwrap()).unwrap();

    let msg = loop {
        let v = next(&mut rx, "gossip message").await;
        assert_ne!(v["event"], "disconnected", "the coordinator dropped the js peer: {v}");
        assert_ne!(v["event"], "exit", "the js peer gave up: {v}");
        if v["event"] == "message" {
            break v;
        }
    };
    assert_eq!(msg["topic"], topic.as_str());
    // Unsigned by libp2p (SPEC §11.3): the author is the inner object's signer alone.
    assert_eq!(msg["from"], serde_json::Value::Null, "no libp2p envelope: {msg}");
    let bytes = hex::decode(msg["data"].as_str().unwrap()).unwrap();
    let GossipMessage::Task(ann) = GossipMessage::from_bytes(&bytes).unwrap() else {
        panic!("not a task announcement");
    };
    assert!(GossipMessage::Task(ann.clone()).verify_signature(), "signed");
    assert_eq!(ann.body.task.coordinator, coordinator);
    assert_eq!(GossipMessage::Task(ann.clone()).signer(), coordinator);
    assert_eq!(ann.body.task.id(), task_id, "the task posted over the API");

    let status = tokio::task::spawn_blocking(move || child.0.wait()).await.unwrap().unwrap();
    assert!(
        status.success(),
        "the js peer exits 0 once it read the message: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let _ = stop.send(());
    let _ = handle.await;
}
