//! Requests becoming tasks in the lifecycle (what the HTTP API hands over through the node's
//! command path), and the canaries mixed in among them: a worker reading announcements must
//! not be able to tell a canary from a requester's task by its requester, budget, time or class
//! of announcement.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]
use cairn_coordinator::lifecycle::{Canary, Effect, LifecycleConfig, Machine, Refusal, TaskRequest};
use cairn_spec::{ComparisonRule, ExecutorKind, Hash32, Network, Payload, SigningKey, TaskClass};

const NOW: u64 = 1_700_000_000;

fn class(name: &str, replication: u8) -> TaskClass {
    TaskClass {
        name: name.into(),
        executor: ExecutorKind::Command,
        model_hash: Hash32::ZERO,
        rule: ComparisonRule::ExactHash,
        replication,
        reward_per_unit: 100,
        max_input_bytes: 4096,
        lease_secs: 60,
        reveal_secs: 60,
    }
}

fn canary(input: &[u8]) -> Canary {
    Canary { class: "echo".into(), input: input.to_vec(), answer: b"known".to_vec(), units: 1 }
}

fn machine(every: u64, canaries: Vec<Canary>) -> (Machine, SigningKey) {
    let mut cfg = LifecycleConfig::new(Network::Regtest, vec![class("echo", 2)]);
    cfg.canaries = canaries;
    cfg.canary_every = every;
    let coord = SigningKey::from_secret_bytes([5; 32]).unwrap();
    (Machine::new(cfg, coord.clone(), NOW), coord)
}

fn request(class: &str, nonce: u64, budget_sats: u64) -> TaskRequest {
    TaskRequest {
        class: class.into(),
        requester: None,
        nonce,
        units: 1,
        budget_sats,
        input: Payload::Inline(format!("job {nonce}").into_bytes()),
        blob: None,
        canary: None,
    }
}

fn announced(effects: &[Effect]) -> usize {
    effects.iter().filter(|e| matches!(e, Effect::Announce(_))).count()
}

#[test]
fn a_request_becomes_the_coordinators_task_in_the_class_named_by_name_or_id() {
    let (mut m, coord) = machine(0, vec![]);
    let (id, step) = m.submit_request(request("echo", 1, 500), [0, 0], NOW).unwrap();
    assert_eq!(announced(&step.effects), 1);
    let rec = m.open_task(&id).unwrap();
    assert_eq!(rec.task.requester, coord.public());
    assert_eq!(rec.task.coordinator, coord.public());
    assert_eq!((rec.task.created_at, rec.task.budget_sats, rec.task.nonce), (NOW, 500, 1));
    let class_id = rec.task.class;
    assert_eq!(m.classes()[&class_id].name, "echo");

    let (by_id, _) = m.submit_request(request(&class_id.to_hex(), 2, 500), [0, 0], NOW).unwrap();
    assert_eq!(m.open_task(&by_id).unwrap().task.class, class_id);
    // The same request again is the same task, and changes nothing.
    let (again, step) = m.submit_request(request("echo", 2, 500), [0, 0], NOW).unwrap();
    assert_eq!(again, by_id);
    assert!(step.changes.is_empty());

    let before = m.open_tasks().count();
    assert_eq!(
        m.submit_request(request("nope", 3, 500), [0, 0], NOW).unwrap_err(),
        Refusal::NotFound("task class")
    );
    assert_eq!(m.open_tasks().count(), before, "a refused request changes nothing");
}

#[test]
fn a_canary_follows_every_nth_request_and_looks_like_a_default_request() {
    let (mut m, coord) = machine(2, vec![canary(b"first canary"), canary(b"second canary")]);
    // Request 1: no canary due.
    let (_, step) = m.submit_request(request("echo", 1, 50_000), [1, 77], NOW).unwrap();
    assert_eq!(announced(&step.effects), 1);
    assert_eq!(m.open_tasks().filter(|t| t.canary.is_some()).count(), 0);
    // Request 2: a canary in the same step, the one the draw picks, with the drawn nonce.
    let (id, step) = m.submit_request(request("echo", 2, 50_000), [1, 77], NOW).unwrap();
    assert_eq!(announced(&step.effects), 2, "the request and its canary are announced together");
    let canaries: Vec<_> = m.open_tasks().filter(|t| t.canary.is_some()).collect();
    assert_eq!(canaries.len(), 1);
    let c = canaries[0];
    assert_ne!(c.id, id);
    assert_eq!(c.task.input, Payload::Inline(b"second canary".to_vec()));
    assert_eq!(c.canary.as_deref(), Some(&b"known"[..]));
    // Nothing a worker sees tells it apart from the request it follows: the same requester
    // (here the coordinator, by default), the time of the request, and its budget (which
    // covers the canary's cost: 100 sats × 1 unit × 2 replicas).
    let req = m.open_task(&id).unwrap();
    assert_eq!(c.task.requester, coord.public());
    assert_eq!(c.task.requester, req.task.requester);
    assert_eq!(c.task.created_at, req.task.created_at);
    assert_eq!(c.task.budget_sats, 50_000);
    assert_eq!(c.task.nonce, 77);
    assert_eq!(c.task.class, req.task.class);
}

#[test]
fn a_canary_takes_the_requester_of_the_request_it_follows() {
    // Were canaries always the coordinator's, a worker could cheat safely on every task a
    // named requester submitted.
    let (mut m, _) = machine(1, vec![canary(b"c")]);
    let someone = SigningKey::from_secret_bytes([8; 32]).unwrap().public();
    let mut r = request("echo", 1, 500);
    r.requester = Some(someone);
    m.submit_request(r, [0, 9], NOW).unwrap();
    let c = m.open_tasks().find(|t| t.canary.is_some()).unwrap();
    assert_eq!(c.task.requester, someone);
    assert_eq!(m.open_tasks().filter(|t| t.task.requester == someone).count(), 2);
}

#[test]
fn a_canary_never_costs_less_than_its_work_even_after_a_cheaper_request() {
    let big = Canary { units: 3, ..canary(b"c") };
    let (mut m, _) = machine(1, vec![big]);
    // The request covers its own 1 unit (100 × 1 × 2), not the canary's 3.
    m.submit_request(request("echo", 1, 200), [0, 9], NOW).unwrap();
    let c = m.open_tasks().find(|t| t.canary.is_some()).unwrap();
    assert_eq!(c.task.budget_sats, 600);
}

#[test]
fn refused_requests_do_not_advance_the_canary_cadence() {
    let (mut m, _) = machine(2, vec![canary(b"c")]);
    m.submit_request(request("echo", 1, 500), [0, 9], NOW).unwrap();
    for n in 0..5 {
        m.submit_request(request("nope", 100 + n, 500), [0, 9], NOW).unwrap_err();
    }
    assert_eq!(m.open_tasks().filter(|t| t.canary.is_some()).count(), 0);
    m.submit_request(request("echo", 2, 500), [0, 9], NOW).unwrap();
    assert_eq!(m.open_tasks().filter(|t| t.canary.is_some()).count(), 1);
}
