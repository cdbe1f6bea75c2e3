//! Push instead of poll (issue 27): the coordinator sends each drawn worker its offer directly
//! (SPEC §12.1) and no one else; work done gives its request token back (SPEC §11.5), so a
//! worker is never slowed by the rate meant for floods while a peer repeating itself still is;
//! and a worker takes offers only from its coordinator's own node.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use cairn_p2p::{Network, NetworkConfig};
use cairn_spec::{ErrorReason, Hash32, PubKey, RequestBody, ResponseBody, Signed, TaskAnnouncement};
use cairn_testkit::node::{self as common, http, Worker};

fn rate_limited(r: &Option<ResponseBody>) -> bool {
    matches!(r, Some(ResponseBody::Error { reason: ErrorReason::RateLimited, .. }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_go_to_the_drawn_workers_alone_and_work_is_never_rate_limited() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::node_config(dir.path(), 4, vec![common::exact_class("upper", 2, 10, 60)]);
    // Two requests a second, a burst of five: what each worker does below is many times that.
    cfg.p2p.requests_per_second = Some(2);
    cfg.p2p.request_burst = Some(5);
    let (info, stop, handle) = common::start_node(&cfg).await;
    let api = info.api;
    let token = std::fs::read_to_string(dir.path().join("operator.token")).unwrap().trim().to_string();
    let coordinator = PubKey::from_hex(&info.coordinator).unwrap();
    let mut ws = Vec::new();
    for i in 0..3 {
        let w = Worker::start(common::key(40 + i), &info.p2p[0]).await;
        assert_eq!(w.register(coordinator, 4).await, ResponseBody::Ack);
        ws.push(w);
    }
    let submit = |nonce: u64| {
        let body = format!(
            r#"{{"class":"upper","input_text":"offer {nonce}","units":1,"budget_sats":1000,"nonce":{nonce}}}"#
        );
        let (s, v) = http(api, "POST", "/v1/tasks", Some(&token), Some(&body));
        assert_eq!(s, 201, "{v}");
        Hash32::from_hex(v["id"].as_str().unwrap()).unwrap()
    };
    // Every worker asks for a first task, so all three are ready (SPEC §12.1).
    let first = submit(0);
    common::run_task(api, &[&ws[0], &ws[1], &ws[2]], first, &|_| b"OFFER".to_vec()).await;

    // Ten tasks, each drawn among the three ready workers: each worker drawn (for a replica,
    // or for an audit drawn after the reveals) hears of it by an offer, and does its work
    // without once being refused for its rate.
    // Each answer must be the work's (a lease or an ack): a refusal for the rate fails it.
    let mut work_done = 0usize;
    for n in 1..=10u64 {
        let task = submit(n);
        let (mut committed, mut revealed) = (BTreeSet::new(), BTreeSet::new());
        let until = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let (_, v) = http(api, "GET", &format!("/v1/tasks/{task}?wait_ms=200"), None, None);
            if v["phase"] == "decided" {
                break;
            }
            assert!(std::time::Instant::now() < until, "task {n} not decided: {v}");
            for (i, w) in ws.iter().enumerate() {
                if committed.contains(&i) || !w.offers.lock().unwrap().contains(&task) {
                    continue;
                }
                for body in [w.claim_body(task), w.commit_body(task, b"OFFER")] {
                    let r = w.try_req(body).await;
                    assert!(matches!(r, Some(ResponseBody::Lease { .. } | ResponseBody::Ack)), "{r:?}");
                    work_done += 1;
                }
                committed.insert(i);
            }
            if v["phase"] == "revealing" {
                for &i in committed.difference(&revealed.clone()) {
                    let r = ws[i].try_req(ws[i].reveal_body(task, b"OFFER")).await;
                    assert_eq!(r, Some(ResponseBody::Ack));
                    work_done += 1;
                    revealed.insert(i);
                }
            }
        }
        // The offers went to the workers holding the task's slots, and to no other.
        let (_, v) = http(api, "GET", &format!("/v1/tasks/{task}"), None, None);
        let slots: BTreeSet<String> = v["assignments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["worker"].as_str().unwrap().to_string())
            .collect();
        let sent: BTreeSet<String> = ws
            .iter()
            .filter(|w| w.offers.lock().unwrap().contains(&task))
            .map(|w| w.public().to_hex())
            .collect();
        assert_eq!(slots, sent, "task {n}: offers to {sent:?}, slots {slots:?}");
    }
    assert!(work_done >= 60, "{work_done} pieces of work, never refused for the rate");

    // The same signed commitment again is idempotent (SPEC §11.4): it changes nothing, so it
    // is charged, and a worker repeating itself meets the rate at once.
    let task = submit(100);
    let w = loop {
        if let Some(w) = ws.iter().find(|w| w.offers.lock().unwrap().contains(&task)) {
            break w;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(matches!(w.try_req(w.claim_body(task)).await, Some(ResponseBody::Lease { .. })));
    let commit = w.commit_body(task, b"OFFER");
    assert_eq!(w.try_req(commit.clone()).await, Some(ResponseBody::Ack));
    let mut repeats = Vec::new();
    for _ in 0..12 {
        repeats.push(w.try_req(commit.clone()).await);
    }
    assert!(repeats.iter().filter(|r| rate_limited(r)).count() >= 5, "repeats are charged: {repeats:?}");
    for w in &ws {
        w.net.shutdown().await;
    }
    let _ = stop.send(());
    let _ = handle.await;
}

/// A worker answers only offers, and takes one only from the node of a coordinator it works
/// for (checked before the offer is queued): a stranger's announcement is refused, and so is
/// the coordinator's own genuine announcement replayed from another node (else anyone could steer which tasks the worker
/// claims, and keep it from claiming gossiped ones).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_takes_offers_only_from_its_coordinators_own_node() {
    let dir = tempfile::tempdir().unwrap();
    let cfg =
        common::node_config(&dir.path().join("coord"), 4, vec![common::exact_class("upper", 1, 10, 60)]);
    let (info, stop, handle) = common::start_node(&cfg).await;
    let api = info.api;
    let token = std::fs::read_to_string(dir.path().join("coord/operator.token")).unwrap().trim().to_string();
    let (agent, (agent_stop, agent_handle)) =
        common::start_agent(&dir.path().join("w"), &info.p2p[0], Arc::new(common::Upper)).await;

    // A listener on the tasks topic, to capture a genuine signed announcement.
    let spy = Worker::start(common::key(77), &info.p2p[0]).await;
    let body = r#"{"class":"upper","input_text":"genuine","units":1,"budget_sats":1000,"nonce":1}"#;
    let (s, v) = http(api, "POST", "/v1/tasks", Some(&token), Some(body));
    assert_eq!(s, 201, "{v}");
    let genuine: Signed<TaskAnnouncement> = {
        let until = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(a) = spy.last_announcement.lock().unwrap().clone() {
                break a;
            }
            assert!(std::time::Instant::now() < until, "no announcement heard");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };

    let rogue_key = common::key(78);
    let (rogue, _events) =
        Network::start(NetworkConfig::new(cairn_spec::Network::Regtest), &rogue_key).await.unwrap();
    let addr = agent.p2p[0].clone();
    rogue.dial(&addr).await.unwrap();
    let peer: cairn_p2p::Peer = {
        let until = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(p) = rogue.connected_peer_of(&agent.key).await.unwrap() {
                break p;
            }
            assert!(std::time::Instant::now() < until, "rogue not connected to the worker");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let ask = |body: RequestBody| {
        let (rogue, peer) = (rogue.clone(), peer);
        async move { rogue.request(&peer, body, Duration::from_secs(5)).await.unwrap() }
    };
    let refused = |r: &ResponseBody, why: &str| match r {
        ResponseBody::Error { reason: ErrorReason::Malformed, message } => {
            assert!(message.contains(why), "{message:?} should say {why:?}")
        }
        other => panic!("expected a refusal saying {why:?}, got {other:?}"),
    };
    // The coordinator's genuine offer, replayed from the rogue's node.
    refused(&ask(RequestBody::Offer(Box::new(genuine.clone()))).await, "own node");
    // A stranger's request costs it a second of its rate (SPEC §11.5): what it asks next is
    // refused by the worker's network layer, unseen by the agent.
    let next = ask(RequestBody::GetTerms).await;
    assert!(matches!(next, ResponseBody::Error { reason: ErrorReason::RateLimited, .. }), "{next:?}");
    let debt = || tokio::time::sleep(Duration::from_millis(1500));
    debt().await;
    // An announcement the rogue signed as coordinator of its own task.
    let mut own = genuine.body.clone();
    own.task.coordinator = rogue_key.public();
    let forged = Signed::sign(own, &rogue_key, &[5; 32]);
    refused(&ask(RequestBody::Offer(Box::new(forged))).await, "own node");
    debt().await;
    // Any other request.
    refused(&ask(RequestBody::GetTerms).await, "only offers");

    rogue.shutdown().await;
    spy.net.shutdown().await;
    let _ = agent_stop.send(());
    let _ = agent_handle.await;
    let _ = stop.send(());
    let _ = handle.await;
}

/// A requester waits for its task with one long poll (`GET /v1/tasks/{id}?wait_ms=`): it is
/// answered by the write that decides the task, not when its wait runs out; a wait above the
/// bound and a task that does not exist are refused at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_is_answered_by_the_decision() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::node_config(dir.path(), 4, vec![common::exact_class("upper", 1, 10, 60)]);
    let (info, stop, handle) = common::start_node(&cfg).await;
    let api = info.api;
    let token = std::fs::read_to_string(dir.path().join("operator.token")).unwrap().trim().to_string();
    let coordinator = PubKey::from_hex(&info.coordinator).unwrap();
    let w = Worker::start(common::key(90), &info.p2p[0]).await;
    assert_eq!(w.register(coordinator, 4).await, ResponseBody::Ack);
    let body = r#"{"class":"upper","input_text":"wait for me","units":1,"budget_sats":1000,"nonce":1}"#;
    let (s, v) = http(api, "POST", "/v1/tasks", Some(&token), Some(body));
    assert_eq!(s, 201, "{v}");
    let task = Hash32::from_hex(v["id"].as_str().unwrap()).unwrap();

    let (s, v) = http(api, "GET", &format!("/v1/tasks/{task}?wait_ms=30001"), None, None);
    assert_eq!(s, 400, "{v}");
    let (s, _) = http(api, "GET", &format!("/v1/tasks/{}?wait_ms=30000", Hash32([7; 32])), None, None);
    assert_eq!(s, 404);

    let poll = std::thread::spawn(move || {
        let at = std::time::Instant::now();
        let (s, v) = http(api, "GET", &format!("/v1/tasks/{task}?wait_ms=30000"), None, None);
        (s, v, at.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!poll.is_finished(), "the long poll answered before the task was decided");
    common::run_task(api, &[&w], task, &|_| b"WAIT".to_vec()).await;
    let (s, v, waited) = poll.join().unwrap();
    assert_eq!((s, v["phase"].as_str()), (200, Some("decided")), "{v}");
    assert!(waited < Duration::from_secs(30), "answered by the decision, not by its wait running out");
    w.net.shutdown().await;
    let _ = stop.send(());
    let _ = handle.await;
}
