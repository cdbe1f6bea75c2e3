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
        objective: Default::default(),
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
    assert_eq!((rec.task.created_at, rec.task.budget_sats), (NOW, 500));
    // The announced nonce is keyed by the coordinator (requesters' own nonces, often 0, 1,
    // 2, …, would set their tasks apart from canaries): not the requester's 1.
    assert_ne!(rec.task.nonce, 1);
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
fn a_canary_is_released_later_with_a_fresh_input_and_looks_like_its_neighbours() {
    let (mut m, coord) = machine(2, vec![canary(b"first canary"), canary(b"second canary")]);
    let canaries = |m: &Machine| m.open_tasks().filter(|t| t.canary.is_some()).cloned().collect::<Vec<_>>();
    // Request 1 makes a canary due (every request may, with probability 1/canary_every: here
    // the draw 0 is a multiple of 2), to be released 1 + 7 seconds later: not next to the
    // request.
    let (_, step) = m.submit_request(request("echo", 1, 50_000), [0, 7], NOW).unwrap();
    assert_eq!(announced(&step.effects), 1, "the request alone");
    assert_eq!(announced(&m.release_canaries(NOW + 7).effects), 0);
    // Another requester's request in between, which makes none due.
    let someone = SigningKey::from_secret_bytes([8; 32]).unwrap().public();
    let mut r = request("echo", 2, 600);
    r.requester = Some(someone);
    m.submit_request(r, [1, 0], NOW + 7).unwrap();
    assert!(canaries(&m).is_empty());
    // The node's own timer releases it (at a random moment, not on the tick), alone, with the
    // requester and budget of the request that made it due.
    assert_eq!(announced(&m.tick(NOW + 8).effects), 0, "never by the tick");
    let step = m.release_canaries(NOW + 8);
    assert_eq!(announced(&step.effects), 1, "released on its own");
    let c = canaries(&m).remove(0);
    assert_eq!(c.task.input, Payload::Inline(b"first canary".to_vec()));
    assert_eq!(c.canary.as_deref(), Some(&b"known"[..]));
    assert_eq!((c.task.requester, c.task.budget_sats, c.task.created_at), (coord.public(), 50_000, NOW + 8));
    assert_ne!(c.task.requester, someone, "the request that made it due, not the newest");
    assert!(m.open_tasks().filter(|t| t.canary.is_none()).all(|t| t.task.class == c.task.class));
    // The next one takes the next input of the pool: no input is ever used twice...
    m.submit_request(request("echo", 3, 50_000), [0, 0], NOW + 9).unwrap();
    m.release_canaries(NOW + 10);
    let inputs: Vec<Payload> = canaries(&m).into_iter().map(|t| t.task.input).collect();
    assert_eq!(inputs.len(), 2);
    assert!(inputs.contains(&Payload::Inline(b"second canary".to_vec())));
    // ...so once the pool is used up, no canary is mixed in.
    assert_eq!(m.canaries_left(), 0);
    m.submit_request(request("echo", 4, 50_000), [0, 0], NOW + 11).unwrap();
    m.release_canaries(NOW + 100);
    assert_eq!(canaries(&m).len(), 2);
}

#[test]
fn canaries_that_fell_due_while_the_node_was_down_are_dropped_not_released_together() {
    let pool: Vec<Canary> = (0..10u8).map(|i| canary(&[b'c', i])).collect();
    let (mut m, _) = machine(1, pool);
    for n in 0..5 {
        m.submit_request(request("echo", n, 50_000), [0, 5], NOW).unwrap();
    }
    // Down from NOW to NOW + 100: the five due at NOW + 6 would all come out first.
    m.resume(NOW + 100);
    assert_eq!(announced(&m.release_canaries(NOW + 100).effects), 0);
    assert_eq!(m.canaries_left(), 10, "their inputs stay unused");
}

#[test]
fn canaries_come_at_random_on_average_once_per_canary_every_requests() {
    let pool: Vec<Canary> = (0..1000u32).map(|i| canary(&i.to_be_bytes())).collect();
    let (mut m, _) = machine(10, pool);
    let mut rng = 0x1234_5678_u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for n in 0..2_000u64 {
        let at = NOW + n * 2;
        m.submit_request(request("echo", n, 50_000), [next(), next()], at).unwrap();
        m.release_canaries(at + 1);
    }
    let released = m.open_tasks().filter(|t| t.canary.is_some()).count();
    println!("{released} canaries among 2000 requests (canary_every = 10)");
    assert!((100..=260).contains(&released), "{released}");
}

#[test]
fn a_canary_is_made_due_only_by_a_request_of_its_class_and_units() {
    let big = Canary { units: 3, ..canary(b"c") };
    let (mut m, _) = machine(1, vec![big]);
    // A 1-unit request (its budget covers 100 × 1 × 2, not the canary's 3 units) would lend
    // the canary a budget and a size unlike its own: it does not make it due.
    m.submit_request(request("echo", 1, 200), [0, 0], NOW).unwrap();
    m.release_canaries(NOW + 61);
    assert!(m.open_tasks().all(|t| t.canary.is_none()));
    // A 3-unit request does, and the canary takes its budget: it costs what its neighbour does.
    let r = TaskRequest { units: 3, ..request("echo", 2, 700) };
    m.submit_request(r, [0, 0], NOW + 62).unwrap();
    m.release_canaries(NOW + 123);
    let c = m.open_tasks().find(|t| t.canary.is_some()).unwrap();
    assert_eq!((c.task.units, c.task.budget_sats), (3, 700));
}

#[test]
fn refused_requests_do_not_make_a_canary_due() {
    let (mut m, _) = machine(1, vec![canary(b"c")]);
    for n in 0..5 {
        m.submit_request(request("nope", 100 + n, 500), [0, 0], NOW).unwrap_err();
    }
    m.release_canaries(NOW + 100);
    assert_eq!(m.open_tasks().filter(|t| t.canary.is_some()).count(), 0);
    m.submit_request(request("echo", 2, 500), [0, 0], NOW + 100).unwrap();
    m.release_canaries(NOW + 101);
    assert_eq!(m.open_tasks().filter(|t| t.canary.is_some()).count(), 1);
}
