//! A reveal that arrives before its task's reveal window is held, not refused (SPEC §12.2):
//! answered `Ack` once the last replica commits, with no polling; a reveal whose window never
//! opens is still answered (`too_early`) before its request's deadline, never left hanging.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

use std::time::Duration;

use cairn_spec::{ErrorReason, Hash32, PubKey, ResponseBody};
use cairn_testkit::node::{self as common, http, Worker};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_reveal_is_answered_when_the_window_opens_and_never_left_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::node_config(dir.path(), 4, vec![common::exact_class("upper", 2, 10, 60)]);
    let (info, stop, handle) = common::start_node(&cfg).await;
    let api = info.api;
    let token = std::fs::read_to_string(dir.path().join("operator.token")).unwrap().trim().to_string();
    let coordinator = PubKey::from_hex(&info.coordinator).unwrap();
    let a = Worker::start(common::key(31), &info.p2p[0]).await;
    let b = Worker::start(common::key(32), &info.p2p[0]).await;
    for w in [&a, &b] {
        assert_eq!(w.register(coordinator, 4).await, ResponseBody::Ack);
    }
    let submit = |nonce: u64| {
        let body = format!(
            r#"{{"class":"upper","input_text":"held {nonce}","units":1,"budget_sats":1000,"nonce":{nonce}}}"#
        );
        let (s, v) = http(api, "POST", "/v1/tasks", Some(&token), Some(&body));
        assert_eq!(s, 201, "{v}");
        Hash32::from_hex(v["id"].as_str().unwrap()).unwrap()
    };

    // Both drawn; A commits and reveals while B has not committed yet.
    let task = submit(1);
    for w in [&a, &b] {
        assert!(matches!(w.take(task, Duration::from_secs(10)).await, ResponseBody::Lease { .. }));
    }
    assert_eq!(a.commit(task, b"R").await, ResponseBody::Ack);
    let a = std::sync::Arc::new(a);
    let a2 = a.clone();
    let early = tokio::spawn(async move { a2.try_req(a2.reveal_body(task, b"R")).await });
    // The reveal is held: still unanswered a second later (refused at once, it would be done).
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!early.is_finished(), "an early reveal was answered before the window opened");
    // B commits: the window opens, and A's one reveal is accepted, without asking again.
    assert_eq!(b.commit(task, b"R").await, ResponseBody::Ack);
    assert_eq!(early.await.unwrap(), Some(ResponseBody::Ack));
    assert_eq!(b.reveal(task, b"R").await, ResponseBody::Ack);
    cairn_testkit::wait_for_async("the task decided", Duration::from_secs(30), || {
        http(api, "GET", &format!("/v1/tasks/{task}"), None, None).1["phase"] == "decided"
    })
    .await;

    // B never commits: A's reveal is held, then refused too_early inside its own deadline
    // (try_req waits 5 s), so a withholding replica cannot hang the other.
    let task = submit(2);
    for w in [a.as_ref(), &b] {
        assert!(matches!(w.take(task, Duration::from_secs(10)).await, ResponseBody::Lease { .. }));
    }
    assert_eq!(a.commit(task, b"R").await, ResponseBody::Ack);
    match a.try_req(a.reveal_body(task, b"R")).await {
        Some(ResponseBody::Error { reason: ErrorReason::TooEarly, .. }) => {}
        other => panic!("a held reveal must be refused too_early before its deadline, got {other:?}"),
    }
    let _ = stop.send(());
    let _ = handle.await;
}
