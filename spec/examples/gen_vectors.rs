//! Generates `spec/vectors/*.json` from the spec crate.
//!
//! Run: `cargo run -p cairn-spec --example gen-vectors -- spec/vectors`
//! (without an argument it writes to `spec/vectors` relative to the workspace root).
//! The test `vectors_are_generated_by_this_generator` fails when the committed files differ
//! from what this program writes, so vectors cannot drift from the code silently.
//! Everything is deterministic: fixed secrets, fixed BIP340 auxiliary randomness (zeros),
//! no clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout, missing_docs)]

use std::collections::BTreeMap;

use bitcoin::absolute::LockTime;
use bitcoin::hashes::Hash as _;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, Witness};
use cairn_spec::hash::{sha256, sha256d};
use cairn_spec::merkle::{self, MerkleProof, MerkleTree};
use cairn_spec::*;
use serde_json::{json, Value};

const AUX: [u8; 32] = [0u8; 32];

fn key(n: u8) -> SigningKey {
    SigningKey::from_secret_bytes([n; 32]).unwrap()
}

fn h(label: &str) -> Hash32 {
    sha256(label.as_bytes())
}

fn hexs(hs: &[Hash32]) -> Vec<String> {
    hs.iter().map(Hash32::to_hex).collect()
}

fn sample_class() -> TaskClass {
    TaskClass {
        name: "minilm-embed".into(),
        executor: ExecutorKind::Embedding,
        model_hash: h("model.safetensors"),
        rule: ComparisonRule::Cosine { min_ppb: 999_900_000 },
        replication: 2,
        reward_per_unit: 10,
        max_input_bytes: 65_536,
        lease_secs: 60,
        reveal_secs: 30,
        objective: Default::default(),
    }
}

fn sample_task(coordinator: &SigningKey) -> Task {
    Task {
        network: Network::Regtest,
        coordinator: coordinator.public(),
        class: sample_class().id(),
        requester: key(9).public(),
        nonce: 7,
        units: 2,
        budget_sats: 100,
        created_at: 1_767_225_600,
        input: Payload::Inline(b"The cat sat on the mat.\nA dog barked.".to_vec()),
    }
}

fn receipt(coord: &SigningKey, epoch: u32, i: u32, verdict: Verdict) -> SignedReceipt {
    SignedReceipt::sign(receipt_body(coord, epoch, i, verdict), coord, &AUX)
}

/// Receipts signed as one batch (SPEC.md §5.7), as a coordinator signs a group commit.
fn receipt_batch(coord: &SigningKey, epoch: u32, verdicts: &[Verdict]) -> Vec<SignedReceipt> {
    let bodies = verdicts.iter().zip(0u32..).map(|(v, i)| receipt_body(coord, epoch, i, *v)).collect();
    SignedReceipt::sign_all(bodies, |m| coord.sign(m, &AUX))
}

fn receipt_body(coord: &SigningKey, epoch: u32, i: u32, verdict: Verdict) -> WorkReceipt {
    let worker = key(20 + (i % 3) as u8).public();
    let accepted = verdict.is_accepted();
    WorkReceipt {
        network: Network::Regtest,
        coordinator: coord.public(),
        epoch,
        task: h(&format!("task-{epoch}-{i}")),
        class: sample_class().id(),
        worker,
        result_hash: h(&format!("result-{epoch}-{i}")),
        verdict,
        units: 2,
        reward_sats: if accepted { 20 } else { 0 },
        draw_epoch: epoch.saturating_sub(i % 2),
    }
}

// ---------------------------------------------------------------- tagged hashes

fn tagged_hash_vectors() -> Value {
    let msgs: [&[u8]; 3] = [b"", b"abc", &[0x5a; 100]];
    let mut cases = Vec::new();
    for tag in Tag::ALL {
        for m in msgs {
            cases.push(json!({
                "tag": tag.name(),
                "msg": hex::encode(m),
                "hash": tagged_hash(tag, m).to_hex(),
            }));
        }
    }
    json!({
        "description": "tagged_hash(tag, msg) = SHA256(SHA256(tag) || SHA256(tag) || msg) for every tag of SPEC.md section 2",
        "cases": cases,
    })
}

// ---------------------------------------------------------------- merkle

fn merkle_vectors() -> Value {
    let mut valid = Vec::new();
    for n in [0u32, 1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 17] {
        let leaves: Vec<Hash32> = (0..n).map(|i| h(&format!("leaf-{i}"))).collect();
        let tree = MerkleTree::new(leaves.clone());
        let proofs: Vec<Value> = (0..n)
            .map(|i| {
                let p = tree.proof(i).unwrap();
                json!({ "index": i, "siblings": hexs(&p.siblings) })
            })
            .collect();
        valid.push(
            json!({ "leaves": hexs(&leaves), "root": merkle::root(&leaves).to_hex(), "proofs": proofs }),
        );
    }
    let leaves: Vec<Hash32> = (0..5).map(|i| h(&format!("leaf-{i}"))).collect();
    let tree = MerkleTree::new(leaves.clone());
    let mut invalid = Vec::new();
    let mut push = |name: &str, leaf: Hash32, p: MerkleProof| {
        let err = match p.root_for(&leaf) {
            Ok(r) if r == tree.root() => panic!("{name} should fail"),
            Ok(_) => "root_mismatch",
            Err(e) => e.code(),
        };
        invalid.push(json!({
            "name": name, "leaf": leaf.to_hex(), "index": p.index, "count": p.count,
            "siblings": hexs(&p.siblings), "root": tree.root().to_hex(), "error": err,
        }));
    };
    let p = tree.proof(1).unwrap();
    push("index equal to count", leaves[1], MerkleProof { index: 5, ..p.clone() });
    let mut short = p.clone();
    short.siblings.pop();
    push("path too short", leaves[1], short);
    let mut long = tree.proof(4).unwrap();
    long.siblings.push(leaves[0]);
    push("path too long for a promoted leaf", leaves[4], long);
    let mut wrong = p.clone();
    wrong.siblings[0] = leaves[2];
    push("wrong sibling", leaves[1], wrong);
    push("wrong leaf", leaves[2], p.clone());
    push("proof for another tree size", leaves[1], MerkleProof { count: 4, ..tree.proof(1).unwrap() });
    json!({
        "description": "Merkle roots and inclusion proofs (SPEC.md section 6). error root_mismatch: the proof fits its shape but yields another root",
        "empty_root": merkle::empty_root().to_hex(),
        "valid": valid,
        "invalid": invalid,
    })
}

// ---------------------------------------------------------------- signatures

fn signature_vectors() -> Value {
    let mut cases = Vec::new();
    for (n, msg) in [(1u8, "m1"), (2, "m2"), (3, "epoch")] {
        let k = key(n);
        let id = h(msg);
        let sig = k.sign(&id, &AUX);
        cases.push(json!({
            "secret": hex::encode([n; 32]), "pubkey": k.public().to_hex(), "aux": hex::encode(AUX),
            "msg": id.to_hex(), "sig": sig.to_hex(), "valid": true,
        }));
        let mut bad = sig;
        bad.0[63] ^= 1;
        cases.push(
            json!({ "pubkey": k.public().to_hex(), "msg": id.to_hex(), "sig": bad.to_hex(), "valid": false }),
        );
        let other = h("other");
        cases.push(json!({ "pubkey": k.public().to_hex(), "msg": other.to_hex(), "sig": sig.to_hex(), "valid": false }));
    }
    json!({
        "description": "BIP340 signatures over 32-byte object ids (SPEC.md section 4). Valid cases also give the secret and aux_rand that produced the signature",
        "cases": cases,
    })
}

// ---------------------------------------------------------------- objects

fn obj<T: Object + serde::Serialize>(ty: &str, v: &T) -> Value {
    json!({ "type": ty, "json": serde_json::to_value(v).unwrap(), "encoding": hex::encode(v.to_bytes()), "id": v.id().to_hex() })
}

fn receipt_obj(v: &SignedReceipt) -> Value {
    assert!(v.verify());
    json!({
        "type": "receipt", "json": serde_json::to_value(v).unwrap(), "encoding": hex::encode(v.to_bytes()),
        "id": v.id().to_hex(), "signer": v.body.coordinator.to_hex(),
        "batch_id": v.batch_id().unwrap().to_hex(),
    })
}

fn signed_obj<T: Object + Signer + serde::Serialize>(ty: &str, v: &Signed<T>) -> Value {
    assert!(v.verify());
    json!({
        "type": ty, "json": serde_json::to_value(v).unwrap(), "encoding": hex::encode(v.to_bytes()),
        "id": v.id().to_hex(), "signer": v.body.signer().to_hex(),
    })
}

/// A scored round of `class` over epoch 7: each validator's sheet signed as its reveal, the
/// outcome the consensus of the inputs (SPEC.md §13.6).
fn scored_round(
    coord: &SigningKey,
    class: &TaskClass,
    validators: &[&SigningKey],
    workers: &[&SigningKey],
    params: consensus::ConsensusParams,
) -> ScoredRound {
    let mut ws: Vec<PubKey> = workers.iter().map(|w| w.public()).collect();
    ws.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    let mut vs: Vec<&SigningKey> = validators.to_vec();
    vs.sort_by(|a, b| a.public().as_bytes().cmp(b.public().as_bytes()));
    let mut round = ScoredRound {
        network: Network::Regtest,
        coordinator: coord.public(),
        class: class.id(),
        epoch: 7,
        params,
        workers: ws
            .iter()
            .enumerate()
            .map(|(i, &w)| rounds::RoundWorker { worker: w, units: 3 + i as u64, score: 0, share_sats: 0 })
            .collect(),
        sheets: Vec::new(),
        unallocated_sats: 0,
    };
    for (n, v) in vs.iter().enumerate() {
        let scores: Vec<(PubKey, u32)> = ws
            .iter()
            .enumerate()
            .map(|(i, &w)| (w, 900_000 - 300_000 * i as u32 + 20_000 * n as u32))
            .collect();
        let salt = [0x60 + n as u8; 32];
        let reveal = ScoreReveal {
            network: round.network,
            coordinator: round.coordinator,
            class: round.class,
            epoch: round.epoch,
            validator: v.public(),
            scores: scores.clone(),
            salt,
        };
        let bond_txid = h(&format!("bond {n}"));
        let bond_key = SigningKey::from_secret_bytes([0x70 + n as u8; 32]).expect("valid key");
        let bond_msg = work::bond_message(&coord.public(), &v.public(), &bond_txid, n as u32);
        round.sheets.push(rounds::RoundSheet {
            validator: v.public(),
            stake: 50_000 * (n as u64 + 1),
            bond_txid,
            bond_vout: n as u32,
            bond_key: bond_key.public(),
            bond_signature: bond_key.sign(&bond_msg, &AUX),
            scores,
            salt,
            signature: Signed::sign(reveal, v, &AUX).signature,
            share_sats: 0,
        });
    }
    let out = round.recompute().expect("valid inputs");
    for (w, o) in round.workers.iter_mut().zip(&out.workers) {
        w.score = o.score;
        w.share_sats = o.share_sats;
    }
    for (s, o) in round.sheets.iter_mut().zip(&out.validators) {
        s.share_sats = o.share_sats;
    }
    round.unallocated_sats = out.unallocated_sats;
    round.check().expect("the round checks");
    round
}

fn not_a_key() -> [u8; 32] {
    (0u8..=255).map(|b| [b; 32]).find(|b| PubKey::from_bytes(*b).is_none()).unwrap()
}

fn object_vectors() -> Value {
    let coord = key(1);
    let worker = key(2);
    let class = sample_class();
    let exact = TaskClass {
        name: "echo.v1".into(),
        executor: ExecutorKind::Command,
        rule: ComparisonRule::ExactHash,
        model_hash: Hash32::ZERO,
        replication: 3,
        ..sample_class()
    };
    let each = TaskClass {
        name: "minilm.batch".into(),
        rule: ComparisonRule::CosineEach { min_ppb: 999_900_000, dim: 384 },
        ..sample_class()
    };
    let terms = cairn_spec::consensus::ConsensusParams {
        worker_budget_sats: 1_000_000,
        validator_budget_sats: 180_000,
        baseline: 250_000,
        tolerance: 200_000,
    };
    let quality = TaskClass {
        name: "minilm.quality".into(),
        objective: cairn_spec::Objective::Quality(terms),
        ..sample_class()
    };
    let latency = TaskClass {
        name: "echo.fast".into(),
        objective: cairn_spec::Objective::Latency(LatencyTerms {
            consensus: cairn_spec::consensus::ConsensusParams { baseline: 0, ..terms },
            fast_ms: 20,
            slow_ms: 2_000,
        }),
        ..exact.clone()
    };
    let probe = Probe {
        network: Network::Regtest,
        coordinator: coord.public(),
        class: latency.id(),
        validator: key(5).public(),
        worker: worker.public(),
        nonce: [9; 32],
        input: b"probe 1".to_vec(),
    };
    let probe_answer =
        ProbeAnswer { probe: probe.id(), worker: worker.public(), output: b"1 eborp".to_vec() };
    let validator = key(5);
    let mut scored: Vec<(PubKey, u32)> =
        vec![(worker.public(), 912_000), (key(3).public(), 250_000), (key(4).public(), 0)];
    scored.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let score_reveal = ScoreReveal {
        network: Network::Regtest,
        coordinator: coord.public(),
        class: quality.id(),
        epoch: 7,
        validator: validator.public(),
        scores: scored,
        salt: [0x5a; 32],
    };
    let score_commit = ScoreCommit {
        network: Network::Regtest,
        coordinator: coord.public(),
        class: quality.id(),
        epoch: 7,
        validator: validator.public(),
        commitment: cairn_spec::scores::score_commitment_value(
            score_reveal.network,
            &score_reveal.coordinator,
            &score_reveal.class,
            score_reveal.epoch,
            &score_reveal.validator,
            &score_reveal.scores,
            &score_reveal.salt,
        ),
    };
    assert!(score_reveal.opens(&score_commit));
    // A validator's bonded registration (SPEC.md §13.5): the bond key signs bond_message.
    let vbond_key = SigningKey::from_secret_bytes([0x43; 32]).expect("valid key");
    let vbond_txid = h("validator bond utxo");
    let validator_reg = ValidatorRegistration {
        network: Network::Regtest,
        coordinator: coord.public(),
        validator: validator.public(),
        payout_address: "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080".into(),
        created_at: 1_767_225_600,
        bond: work::Bond {
            txid: vbond_txid,
            vout: 2,
            key: vbond_key.public(),
            signature: vbond_key
                .sign(&work::bond_message(&coord.public(), &validator.public(), &vbond_txid, 2), &AUX),
        },
    };
    let round = scored_round(&coord, &quality, &[&validator, &key(6)], &[&worker, &key(3), &key(4)], terms);
    let task = sample_task(&coord);
    let blob_task = Task {
        input: Payload::Blob { hash: content_hash(b"big input"), size: 1 << 20 },
        nonce: 8,
        ..sample_task(&coord)
    };
    let mut reg = Registration {
        network: Network::Regtest,
        coordinator: coord.public(),
        worker: worker.public(),
        payout_address: "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080".into(),
        created_at: 1_767_225_600,
        pow_nonce: 0,
        bond: None,
    };
    assert!(reg.solve_pow(8, 1 << 20));
    // A bonded registration: the bond key signs bond_message (SPEC.md §5.4).
    let bond_key = SigningKey::from_secret_bytes([0x42; 32]).expect("valid key");
    let bond_txid = h("bond utxo");
    let bonded = Registration {
        pow_nonce: 0,
        bond: Some(Box::new(work::Bond {
            txid: bond_txid,
            vout: 1,
            key: bond_key.public(),
            signature: bond_key
                .sign(&work::bond_message(&coord.public(), &worker.public(), &bond_txid, 1), &AUX),
        })),
        ..reg.clone()
    };
    let salt = [0x11u8; 32];
    let result = Payload::Inline(vec![0, 0, 128, 63, 0, 0, 0, 0]);
    let commitment = Commitment {
        task: task.id(),
        worker: worker.public(),
        commitment: work::commitment_value(&task.id(), &worker.public(), &result.content_hash(), &salt),
    };
    let reveal = Reveal { task: task.id(), worker: worker.public(), result, salt };
    assert!(reveal.opens(&commitment));
    let ledger = LedgerEntry { worker: worker.public(), locked: 40, claimable: 100, paid: 1_000 };
    let genesis = EpochHeader {
        network: Network::Regtest,
        coordinator: coord.public(),
        height: 0,
        prev: Hash32::ZERO,
        receipts_root: merkle::empty_root(),
        state_root: merkle::empty_root(),
        receipt_count: 0,
        accepted_count: 0,
        reward_sats: 0,
        time: 1_767_225_600,
        draw_seed: h("draw-seed-0"),
        next_seed_hash: draw::seed_hash(&h("draw-seed-1")),
        next_roster: Roster::new(vec![key(20).public(), key(21).public(), key(22).public()]).root(),
        beacon: Beacon::None,
        anchor: AnchorBinding::Key { key: key(30).public(), genesis_txid: h("funding-tx"), genesis_vout: 1 },
        scores_root: cairn_spec::merkle::empty_root(),
        history: merkle::empty_root(),
    };
    let next = EpochHeader {
        height: 1,
        prev: genesis.hash(),
        history: merkle::root(&[genesis.hash()]),
        receipts_root: h("r"),
        state_root: h("s"),
        receipt_count: 3,
        accepted_count: 2,
        reward_sats: 40,
        time: 1_767_226_200,
        draw_seed: h("draw-seed-1"),
        next_seed_hash: draw::seed_hash(&h("draw-seed-2")),
        beacon: Beacon::Block { height: 103, hash: h("block-103") },
        ..genesis.clone()
    };
    // The third header credits the scored round (of epoch 7 in this vector; the header's own
    // height does not bind it, the auditor's check of `epoch = height − 2` does).
    let third = EpochHeader {
        height: 2,
        prev: next.hash(),
        history: merkle::root(&[genesis.hash(), next.hash()]),
        draw_seed: h("draw-seed-2"),
        next_seed_hash: draw::seed_hash(&h("draw-seed-3")),
        beacon: Beacon::Block { height: 106, hash: h("block-106") },
        scores_root: rounds::scores_root(std::slice::from_ref(&round)),
        ..next.clone()
    };

    // A batch of five: paths of two and three siblings, and a promoted last leaf.
    let batch = receipt_batch(
        &coord,
        1,
        &[Verdict::Accepted, Verdict::Mismatch, Verdict::Accepted, Verdict::NoReveal, Verdict::Accepted],
    );
    let valid = vec![
        obj("task_class", &class),
        obj("task_class", &exact),
        obj("task_class", &each),
        obj("task_class", &quality),
        obj("task_class", &latency),
        obj("task", &task),
        obj("task", &blob_task),
        signed_obj("registration", &Signed::sign(reg.clone(), &worker, &AUX)),
        signed_obj("registration", &Signed::sign(bonded, &worker, &AUX)),
        signed_obj("commitment", &Signed::sign(commitment.clone(), &worker, &AUX)),
        signed_obj("reveal", &Signed::sign(reveal.clone(), &worker, &AUX)),
        signed_obj("score_commit", &Signed::sign(score_commit.clone(), &validator, &AUX)),
        signed_obj("score_reveal", &Signed::sign(score_reveal.clone(), &validator, &AUX)),
        signed_obj("validator_registration", &Signed::sign(validator_reg.clone(), &validator, &AUX)),
        obj("scored_round", &round),
        signed_obj("probe", &Signed::sign(probe.clone(), &validator, &AUX)),
        signed_obj("probe_answer", &Signed::sign(probe_answer.clone(), &worker, &AUX)),
        receipt_obj(&receipt(&coord, 1, 0, Verdict::Accepted)),
        receipt_obj(&receipt(&coord, 1, 1, Verdict::Mismatch)),
        receipt_obj(&batch[0]),
        receipt_obj(&batch[2]),
        receipt_obj(&batch[4]),
        obj("ledger_entry", &ledger),
        signed_obj("epoch_header", &Signed::sign(genesis.clone(), &coord, &AUX)),
        signed_obj("epoch_header", &Signed::sign(next.clone(), &coord, &AUX)),
        signed_obj("epoch_header", &Signed::sign(third, &coord, &AUX)),
        signed_obj(
            "task_announcement",
            &Signed::sign(TaskAnnouncement { task: task.clone(), announced_at: 1_767_225_601 }, &coord, &AUX),
        ),
        signed_obj(
            "claim",
            &Signed::sign(
                Claim { task: task.id(), worker: worker.public(), claimed_at: 1_767_225_602 },
                &worker,
                &AUX,
            ),
        ),
    ];

    // Invalid encodings: each is a valid encoding with one defect.
    let mut invalid = Vec::new();
    let mut bad = |ty: &str, name: &str, bytes: Vec<u8>, err: &str| {
        invalid.push(json!({ "type": ty, "name": name, "encoding": hex::encode(bytes), "error": err }));
    };
    let enc = |v: &dyn Fn() -> Vec<u8>| v();
    let class_bytes = class.to_bytes();
    let task_bytes = task.to_bytes();
    let receipt_bytes = receipt(&coord, 1, 0, Verdict::Accepted).to_bytes();
    let header_bytes = Signed::sign(next.clone(), &coord, &AUX).to_bytes();

    let mut b = class_bytes.clone();
    b[0] = 3;
    bad("task_class", "unknown version", b, "unknown_version");
    let mut b = class_bytes.clone();
    b[0] = 2;
    bad("task_class", "version 2 without an objective", b, "unexpected_end");
    let quality_bytes = quality.to_bytes();
    let objective_at = quality_bytes.len() - 25;
    for (code, name) in [(1u8, "version 2 with the verified objective"), (4, "unknown objective")] {
        let mut b = quality_bytes.clone();
        b[objective_at] = code;
        bad("task_class", name, b, "invalid_tag");
    }
    let mut b = quality_bytes.clone();
    let tolerance_at = quality_bytes.len() - 4;
    b[tolerance_at..].copy_from_slice(&1_000_001u32.to_be_bytes());
    bad("task_class", "validators' tolerance above the scale", b, "invalid_value");
    let mut b = quality_bytes.clone();
    b[objective_at + 1..objective_at + 9].copy_from_slice(&u64::MAX.to_be_bytes());
    bad("task_class", "workers' budget above all the money", b, "invalid_value");
    let mut b = class_bytes.clone();
    b.push(0);
    bad("task_class", "trailing byte", b, "trailing_bytes");
    bad("task_class", "truncated", class_bytes[..class_bytes.len() - 1].to_vec(), "unexpected_end");
    let mut b = class_bytes.clone();
    b[2] = b'A';
    bad("task_class", "upper-case name", b, "invalid_value");
    let mut b = class_bytes.clone();
    b[1] = 33;
    bad("task_class", "name length above 32", b, "too_long");
    let name_len = class.name.len();
    let mut b = class_bytes.clone();
    b[2 + name_len] = 9;
    bad("task_class", "unknown executor", b, "invalid_tag");
    let rule_at = 2 + name_len + 1 + 32;
    let mut b = class_bytes.clone();
    b[rule_at + 1..rule_at + 5].copy_from_slice(&(1_000_000_001u32).to_be_bytes());
    bad("task_class", "cosine threshold above one", b, "invalid_value");
    let mut b = class_bytes.clone();
    b[rule_at + 5] = 0;
    bad("task_class", "replication zero", b, "invalid_value");
    let each_bytes = each.to_bytes();
    let each_rule_at = 2 + each.name.len() + 1 + 32;
    let mut b = each_bytes.clone();
    b[each_rule_at + 5..each_rule_at + 7].copy_from_slice(&0u16.to_be_bytes());
    bad("task_class", "per-item cosine with item width zero", b, "invalid_value");
    let mut b = each_bytes.clone();
    b[each_rule_at] = 4;
    bad("task_class", "unknown rule", b, "invalid_tag");
    let mut b = class_bytes.clone();
    b[rule_at + 5] = 17;
    bad("task_class", "replication above 16", b, "invalid_value");

    // A score reveal: version, network, coordinator, class, epoch, validator, then the count at
    // 102 and 36-byte entries from 104; the salt and signature follow.
    let reveal_with = |scores: Vec<(PubKey, u32)>, by: &SigningKey| {
        let r = ScoreReveal { scores, validator: by.public(), ..score_reveal.clone() };
        Signed::sign(r, by, &AUX).to_bytes()
    };
    let entries = &score_reveal.scores;
    let mut swapped = entries.clone();
    swapped.swap(0, 1);
    bad("score_reveal", "workers out of order", reveal_with(swapped, &validator), "invalid_value");
    let twice = vec![entries[0], entries[0]];
    bad("score_reveal", "a worker twice", reveal_with(twice, &validator), "invalid_value");
    let mut high = entries.clone();
    high[0].1 = 1_000_001;
    bad("score_reveal", "a score above the scale", reveal_with(high, &validator), "invalid_value");
    bad("score_reveal", "a validator scoring itself", reveal_with(entries.clone(), &worker), "invalid_value");
    let mut b = reveal_with(entries.clone(), &validator);
    b[102..104].copy_from_slice(&1025u16.to_be_bytes());
    bad("score_reveal", "more than 1024 scores", b, "too_long");
    let mut b = reveal_with(entries[..1].to_vec(), &validator);
    b[102..104].copy_from_slice(&4u16.to_be_bytes());
    bad("score_reveal", "a count beyond the bytes left", b, "unexpected_end");
    let commit_bytes = Signed::sign(score_commit.clone(), &validator, &AUX).to_bytes();
    let mut b = commit_bytes.clone();
    b[70..102].copy_from_slice(&not_a_key());
    bad("score_commit", "validator not a curve point", b, "invalid_public_key");
    let mut b = commit_bytes;
    b[0] = 2;
    bad("score_commit", "unknown version", b, "unknown_version");

    // A probe naming its validator as the worker, or too long an input; an answer too long.
    let p = Probe { worker: probe.validator, ..probe.clone() };
    bad("probe", "a validator probing itself", Signed::sign(p, &validator, &AUX).to_bytes(), "invalid_value");
    let p = Probe { input: vec![0; 64 * 1024 + 1], ..probe.clone() };
    bad("probe", "an input above 64 KiB", Signed::sign(p, &validator, &AUX).to_bytes(), "too_long");
    let a = ProbeAnswer { output: vec![0; 256 * 1024 + 1], ..probe_answer.clone() };
    bad("probe_answer", "an output above 256 KiB", Signed::sign(a, &worker, &AUX).to_bytes(), "too_long");
    // A latency class whose times are not fast < slow <= 600000 (they close the encoding).
    let latency_bytes = latency.to_bytes();
    let n = latency_bytes.len();
    let mut b = latency_bytes.clone();
    b[n - 8..n - 4].copy_from_slice(&2_000u32.to_be_bytes());
    bad("task_class", "latency with fast_ms equal to slow_ms", b, "invalid_value");
    let mut b = latency_bytes.clone();
    b[n - 4..].copy_from_slice(&600_001u32.to_be_bytes());
    bad("task_class", "latency with slow_ms above ten minutes", b, "invalid_value");
    bad("task_class", "latency cut before its times", latency_bytes[..n - 8].to_vec(), "unexpected_end");

    let mut b = task_bytes.clone();
    b[1] = 4;
    bad("task", "unknown network", b, "invalid_tag");
    let mut b = task_bytes.clone();
    b[2..34].copy_from_slice(&not_a_key());
    bad("task", "coordinator not a curve point", b, "invalid_public_key");
    let units_at = 1 + 1 + 32 + 32 + 32 + 8;
    let mut b = task_bytes.clone();
    b[units_at..units_at + 4].copy_from_slice(&0u32.to_be_bytes());
    bad("task", "zero units", b, "invalid_value");
    let input_at = units_at + 4 + 8 + 8;
    let mut b = task_bytes.clone();
    b[input_at] = 2;
    bad("task", "unknown payload kind", b, "invalid_tag");
    let mut b = task_bytes[..input_at + 1].to_vec();
    b.extend_from_slice(&(65_537u32).to_be_bytes());
    bad("task", "inline input above 64 KiB", b, "too_long");
    let mut b = task_bytes[..input_at + 1].to_vec();
    b.extend_from_slice(&(u32::MAX).to_be_bytes());
    bad("task", "forged inline length", b, "too_long");
    let mut b = task_bytes[..input_at].to_vec();
    b.push(1);
    b.extend_from_slice(&[7u8; 32]);
    b.extend_from_slice(&(1u64 << 40).to_be_bytes());
    bad("task", "blob above 256 MiB", b, "too_long");

    let reg_wrong_net =
        Registration { payout_address: "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4".into(), ..reg.clone() };
    bad(
        "registration",
        "mainnet payout address on regtest",
        Signed::sign(reg_wrong_net, &worker, &AUX).to_bytes(),
        "invalid_value",
    );
    let reg_garbage = Registration { payout_address: "not-an-address".into(), ..reg.clone() };
    bad(
        "registration",
        "payout address is not an address",
        Signed::sign(reg_garbage, &worker, &AUX).to_bytes(),
        "invalid_value",
    );

    let mut b = receipt_bytes.clone();
    let verdict_at = 1 + 1 + 32 + 4 + 32 + 32 + 32 + 32;
    b[verdict_at] = 2; // rejected (mismatch) but keeps its reward
    b[verdict_at + 1] = 1;
    bad("receipt", "rejected receipt with a reward", b, "invalid_value");
    let mut b = receipt_bytes.clone();
    b[verdict_at + 1] = 3; // accepted with a reason
    bad("receipt", "accepted with a rejection reason", b, "invalid_tag");
    bad(
        "receipt",
        "missing batch and signature",
        receipt_bytes[..WorkReceipt::ENCODED_LEN].to_vec(),
        "unexpected_end",
    );
    let batch_at = WorkReceipt::ENCODED_LEN;
    let mut b = receipt_bytes.clone();
    b[batch_at..batch_at + 2].copy_from_slice(&0u16.to_be_bytes());
    bad("receipt", "batch of zero receipts", b, "invalid_value");
    let mut b = receipt_bytes.clone();
    b[batch_at..batch_at + 2].copy_from_slice(&257u16.to_be_bytes());
    bad("receipt", "batch above 256 receipts", b, "invalid_value");
    let mut b = receipt_bytes.clone();
    b[batch_at + 2..batch_at + 4].copy_from_slice(&1u16.to_be_bytes());
    bad("receipt", "batch index equal to the batch count", b, "invalid_value");
    let in_batch = batch[2].to_bytes();
    let mut b = in_batch[..batch_at + 4].to_vec();
    b.push(9);
    b.extend(std::iter::repeat_n(7u8, 9 * 32 + 64));
    bad("receipt", "batch path above 8 siblings", b, "too_long");
    let mut b = in_batch[..batch_at + 4].to_vec();
    b.push(2);
    b.extend_from_slice(&in_batch[batch_at + 5..batch_at + 5 + 64]);
    b.extend_from_slice(&in_batch[in_batch.len() - 64..]);
    bad("receipt", "batch path shorter than the batch's shape", b, "invalid_value");
    let mut b = receipt_bytes[..batch_at + 4].to_vec();
    b.push(1);
    b.extend_from_slice(&[7u8; 32]);
    b.extend_from_slice(&receipt_bytes[receipt_bytes.len() - 64..]);
    bad("receipt", "sibling in a batch of one", b, "invalid_value");

    let mut b = header_bytes.clone();
    b[EpochHeader::PREV_OFFSET..EpochHeader::PREV_OFFSET + 32].copy_from_slice(&[0u8; 32]);
    bad("epoch_header", "zero prev above genesis", b, "invalid_value");
    let mut b = header_bytes.clone();
    let acc_at = EpochHeader::RECEIPTS_ROOT_OFFSET + 64 + 4;
    b[acc_at..acc_at + 4].copy_from_slice(&4u32.to_be_bytes());
    bad("epoch_header", "more accepted than receipts", b, "invalid_value");
    // The beacon, then the anchor binding, then the scores root and the history root end the
    // header: each of the first two a kind byte, then for a block its height and hash, for a
    // key the key, the genesis txid and vout.
    let beacon_at = EpochHeader::MIN_ENCODED_LEN - 2 - 64;
    let mut b = header_bytes.clone();
    b[beacon_at] = 2;
    bad("epoch_header", "unknown beacon kind", b, "invalid_tag");
    let anchor_at = beacon_at + 1 + 4 + 32;
    let mut b = header_bytes.clone();
    b[anchor_at] = 2;
    bad("epoch_header", "unknown anchor binding kind", b, "invalid_tag");
    let mut b = header_bytes.clone();
    b.truncate(anchor_at + 1 + 32 + 32);
    bad("epoch_header", "anchor binding cut short", b, "unexpected_end");
    let signed_genesis = Signed::sign(genesis.clone(), &coord, &AUX).to_bytes();
    let mut b = signed_genesis[..beacon_at].to_vec();
    b.extend_from_slice(&Beacon::Block { height: 1, hash: h("block-1") }.to_bytes());
    b.extend_from_slice(&signed_genesis[beacon_at + 1..]);
    bad("epoch_header", "a beacon for epoch 0", b, "invalid_value");
    // The history root: the empty tree's exactly at height 0 (genesis's is the 32 bytes
    // before its signature).
    let history_at = signed_genesis.len() - 64 - 32;
    let mut b = signed_genesis.clone();
    b[history_at] ^= 1;
    bad("epoch_header", "a history for epoch 0", b, "invalid_value");
    let mut b = header_bytes.clone();
    b.truncate(b.len() - 64 - 1);
    bad("epoch_header", "history cut short", b, "unexpected_end");
    // The scores root: the empty tree's below height 2 (genesis's is the 32 bytes before its
    // history).
    let mut b = signed_genesis.clone();
    b[history_at - 32] ^= 1;
    bad("epoch_header", "a scores root for epoch 0", b, "invalid_value");
    let _ = enc;

    let chat_settings: Vec<Value> = [("llama-3.2-1b-instruct-q8_0", 42u64, 256u32), ("qwen2.5-0.5b", 0, 64)]
        .into_iter()
        .map(|(model, seed, max_tokens)| {
            json!({
                "model": model, "seed": seed, "max_tokens": max_tokens,
                "model_hash": cairn_spec::task::chat_settings_hash(model, seed, max_tokens).to_hex(),
            })
        })
        .collect();

    json!({
        "description": "Canonical encodings (SPEC.md sections 3 and 5). valid: encoding of the JSON form, its id (tagged hash of the unsigned body) and, for signed types, the signer whose BIP340 signature over the id ends the encoding. invalid: a defective encoding and the decoder's error code. chat_settings: the model_hash a chat-completion class pins for these generation settings (section 5.2)",
        "valid": valid,
        "invalid": invalid,
        "chat_settings": chat_settings,
    })
}

fn state_root_vectors() -> Value {
    let entries: Vec<LedgerEntry> = (0..5u8)
        .map(|i| LedgerEntry {
            worker: key(30 + i).public(),
            locked: u64::from(i) * 10,
            claimable: 5,
            paid: 1,
        })
        .collect();
    let mut cases = Vec::new();
    for n in [0usize, 1, 2, 5] {
        let es = &entries[..n];
        cases.push(json!({
            "entries": serde_json::to_value(es).unwrap(),
            "state_root": ledger::state_root(es).unwrap().to_hex(),
        }));
    }
    json!({
        "description": "State root: Merkle root over ledger-entry leaf hashes sorted by worker key (SPEC.md section 5.8). Entries are listed unsorted",
        "cases": cases,
    })
}

// ---------------------------------------------------------------- anchor payload

fn anchor_payload_vectors() -> Value {
    let mut valid = Vec::new();
    for (height, label) in [(0u32, "genesis"), (1, "one"), (0xfffe_fdfc, "high")] {
        let p = AnchorPayload { height, header_hash: h(label) };
        valid.push(json!({
            "height": height, "header_hash": p.header_hash.to_hex(),
            "payload": hex::encode(p.to_bytes()), "script": hex::encode(p.to_script().as_bytes()),
        }));
    }
    let good = AnchorPayload { height: 5, header_hash: h("x") }.to_bytes();
    let mut invalid = Vec::new();
    let mut v2 = good;
    v2[3] = 2;
    invalid
        .push(json!({ "name": "unknown version", "payload": hex::encode(v2), "error": "unknown_version" }));
    invalid.push(json!({ "name": "short", "payload": hex::encode(&good[..39]), "error": "wrong_length" }));
    let mut long = good.to_vec();
    long.push(0);
    invalid.push(json!({ "name": "long", "payload": hex::encode(long), "error": "wrong_length" }));
    let mut magic = good;
    magic[0] = b'X';
    invalid.push(json!({ "name": "bad magic", "payload": hex::encode(magic), "error": "bad_magic" }));
    let mut scripts = Vec::new();
    let mut s = vec![0x6a, 0x4c, 40];
    s.extend_from_slice(&good);
    scripts.push(
        json!({ "name": "OP_PUSHDATA1 instead of a direct push", "script": hex::encode(&s), "cairn": false }),
    );
    scripts.push(json!({ "name": "foreign OP_RETURN", "script": "6a0568656c6c6f", "cairn": false }));
    let mut s = vec![0x51, 40];
    s.extend_from_slice(&good);
    scripts.push(json!({ "name": "not OP_RETURN", "script": hex::encode(&s), "cairn": false }));
    let mut s = vec![0x6a, 40];
    s.extend_from_slice(&good);
    s.push(0x00);
    scripts
        .push(json!({ "name": "push does not cover the script", "script": hex::encode(&s), "cairn": false }));
    json!({
        "description": "Anchor payload: CRN magic, version 1, epoch height (u32 BE), 32-byte header hash; output script OP_RETURN OP_PUSHBYTES_40 payload (SPEC.md section 7). scripts: outputs that are not Cairn anchors and must be ignored",
        "valid": valid,
        "invalid": invalid,
        "scripts": scripts,
    })
}

// ---------------------------------------------------------------- receipt proofs

struct World {
    coord: SigningKey,
    epochs: Vec<(Vec<SignedReceipt>, SignedEpochHeader)>,
}

/// The anchor key of the proof vectors' chain, and its genesis output.
fn anchor_key() -> SigningKey {
    key(30)
}

fn genesis_output() -> OutPoint {
    OutPoint { txid: Txid::from_byte_array(h("funding").0), vout: 1 }
}

fn bound() -> AnchorBinding {
    AnchorBinding::Key {
        key: anchor_key().public(),
        genesis_txid: Hash32(genesis_output().txid.to_byte_array()),
        genesis_vout: genesis_output().vout,
    }
}

fn build_world() -> World {
    build_world_with(bound())
}

fn build_world_with(binding: AnchorBinding) -> World {
    let coord = key(1);
    let mut epochs: Vec<(Vec<SignedReceipt>, SignedEpochHeader)> = Vec::new();
    let mut prev = Hash32::ZERO;
    let mut history = merkle::Frontier::new();
    for (height, n) in [(0u32, 5u32), (1, 3), (2, 1)] {
        // Each epoch's receipts are one signed batch, as a group commit issues them.
        let verdicts: Vec<Verdict> =
            (0..n).map(|i| if i == 2 { Verdict::Mismatch } else { Verdict::Accepted }).collect();
        let receipts = receipt_batch(&coord, height, &verdicts);
        let leaves: Vec<Hash32> = receipts.iter().map(|r| r.body.leaf_hash()).collect();
        let accepted = receipts.iter().filter(|r| r.body.verdict.is_accepted()).count() as u32;
        let header = EpochHeader {
            network: Network::Regtest,
            coordinator: coord.public(),
            height,
            prev,
            receipts_root: merkle::root(&leaves),
            state_root: h(&format!("state-{height}")),
            receipt_count: n,
            accepted_count: accepted,
            reward_sats: receipts.iter().map(|r| r.body.reward_sats).sum(),
            time: 1_767_225_600 + u64::from(height) * 600,
            draw_seed: h(&format!("draw-seed-{height}")),
            next_seed_hash: draw::seed_hash(&h(&format!("draw-seed-{}", height + 1))),
            next_roster: Roster::default().root(),
            beacon: if height == 0 {
                Beacon::None
            } else {
                Beacon::Block { height: 100 + height * 3, hash: h(&format!("block-{}", 100 + height * 3)) }
            },
            anchor: binding,
            scores_root: cairn_spec::merkle::empty_root(),
            history: history.root(),
        };
        prev = header.hash();
        history.push(prev);
        epochs.push((receipts, Signed::sign(header, &coord, &AUX)));
    }
    World { coord, epochs }
}

/// An anchor transaction spending the genesis output.
fn anchor_tx(outputs: Vec<TxOut>) -> Transaction {
    anchor_tx_spending(genesis_output(), outputs)
}

fn anchor_tx_spending(spends: OutPoint, outputs: Vec<TxOut>) -> Transaction {
    Transaction {
        version: bitcoin::transaction::Version(3),
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: spends,
            script_sig: ScriptBuf::new(),
            sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
            witness: Witness::new(),
        }],
        output: outputs,
    }
}

fn p2tr_out(k: &SigningKey, sats: u64) -> TxOut {
    let secp = bitcoin::secp256k1::Secp256k1::verification_only();
    TxOut {
        value: Amount::from_sat(sats),
        script_pubkey: ScriptBuf::new_p2tr(&secp, k.public().x_only(), None),
    }
}

fn payload_out(p: &AnchorPayload) -> TxOut {
    TxOut { value: Amount::ZERO, script_pubkey: p.to_script() }
}

/// A regtest block holding `anchor` at index 2 among four transactions; returns the header
/// bytes (with regtest proof-of-work) and the anchor's Bitcoin Merkle path.
fn block_with(anchor: &[u8]) -> (Vec<u8>, Vec<Hash32>) {
    let txids = [h("coinbase"), h("tx-1"), sha256d(anchor), h("tx-3")];
    let l01 = sha256d(&[txids[0].0, txids[1].0].concat());
    let l23 = sha256d(&[txids[2].0, txids[3].0].concat());
    let root = sha256d(&[l01.0, l23.0].concat());
    let mut header = Vec::with_capacity(80);
    header.extend_from_slice(&0x2000_0000u32.to_le_bytes());
    header.extend_from_slice(&h("previous block").0);
    header.extend_from_slice(&root.0);
    header.extend_from_slice(&1_767_226_800u32.to_le_bytes());
    header.extend_from_slice(&0x207f_ffffu32.to_le_bytes());
    header.extend_from_slice(&0u32.to_le_bytes());
    // Regtest proof-of-work: the hash, read as a little-endian number, below 0x7fffff << 232.
    for nonce in 0u32.. {
        header[76..80].copy_from_slice(&nonce.to_le_bytes());
        if sha256d(&header).0[31] < 0x7f {
            break;
        }
    }
    (header, vec![txids[3], l01])
}

/// The two anchors before the vectors' anchor: the first spends the genesis output and
/// commits epoch 0, the second spends it and commits epoch 1.
fn earlier_anchors(w: &World) -> Vec<Transaction> {
    let first = anchor_tx(vec![p2tr_out(&anchor_key(), 60_000), payload_out(&w.payload(0))]);
    let second = anchor_tx_spending(
        OutPoint { txid: first.compute_txid(), vout: 0 },
        vec![p2tr_out(&anchor_key(), 55_000), payload_out(&w.payload(1))],
    );
    vec![first, second]
}

impl World {
    fn payload(&self, epoch: usize) -> AnchorPayload {
        let hd = &self.epochs[epoch].1.body;
        AnchorPayload { height: hd.height, header_hash: hd.hash() }
    }
}

fn raw(tx: &Transaction) -> proof::RawTx {
    proof::RawTx(bitcoin::consensus::encode::serialize(tx))
}

fn proof_for(w: &World, epoch: usize, index: u32, tx: &Transaction) -> ReceiptProof {
    proof_with_chain(w, epoch, index, tx, earlier_anchors(w).iter().map(raw).collect())
}

fn proof_with_chain(
    w: &World,
    epoch: usize,
    index: u32,
    tx: &Transaction,
    spend_chain: Vec<proof::RawTx>,
) -> ReceiptProof {
    let (receipts, _) = &w.epochs[epoch];
    let tree = MerkleTree::new(receipts.iter().map(|r| r.body.leaf_hash()).collect());
    let tx_bytes = bitcoin::consensus::encode::serialize(tx);
    let (block_header, tx_path) = block_with(&tx_bytes);
    // The receipt's epoch's header, and the anchored (last) one's when later, with the path
    // of the first in the second's history.
    let anchored = w.epochs.len() - 1;
    let mut headers = vec![w.epochs[epoch].1.clone()];
    let mut history_path = Vec::new();
    if epoch < anchored {
        headers.push(w.epochs[anchored].1.clone());
        let history = MerkleTree::new(w.epochs[..anchored].iter().map(|(_, hd)| hd.id()).collect());
        history_path = history.proof(epoch as u32).unwrap().siblings;
    }
    ReceiptProof {
        network: Network::Regtest,
        receipt: receipts[index as usize].clone(),
        receipt_index: index,
        receipt_path: tree.proof(index).unwrap().siblings,
        headers,
        history_path,
        anchor_kind: proof::AnchorKind::OpReturnOutput,
        anchor_tx: tx_bytes,
        tx_index: 2,
        tx_path,
        block_header,
        block_height: 101,
        spend_chain,
    }
}

fn receipt_proof_vectors() -> Value {
    let w = build_world();
    let payload = w.payload(2);
    // The third anchor of the chain (SPEC.md §7.1): it spends the second's output 0.
    let earlier = earlier_anchors(&w);
    let chain_op = OutPoint { txid: earlier[1].compute_txid(), vout: 0 };
    let anchor_out = |sats| p2tr_out(&anchor_key(), sats);
    let good_tx = anchor_tx_spending(chain_op, vec![anchor_out(49_000), payload_out(&payload)]);
    let anchor_tx = |outputs| anchor_tx_spending(chain_op, outputs);

    // A bundle carrying (format-only) one header before the block, a coinbase and its path,
    // and two headers above; whether they connect, meet their targets and commit the height
    // is the offline verifier's business, not the encoding's.
    let valid_case = |name: String, p: &ReceiptProof| {
        let v = p.verify().unwrap();
        let ops = p.ots_ops().unwrap();
        assert_eq!(proof::apply_ots(&v.receipt_leaf.0, &ops), v.block_merkle_root.0.to_vec());
        assert_eq!(&ReceiptProof::from_bytes(&p.to_bytes()).unwrap(), p);
        let ots_file = cairn_spec::ots::receipt_timestamp(p).unwrap().detached_file(&v.receipt_leaf.0);
        let header = |i: u8| {
            let mut b = [0u8; 80];
            b.iter_mut().enumerate().for_each(|(j, x)| *x = (j as u8).wrapping_mul(7).wrapping_add(i));
            cairn_spec::bundle::BlockHeaderBytes(b)
        };
        let coinbase = {
            let mut sig = bitcoin::script::Builder::new()
                .push_int(i64::from(p.block_height))
                .into_script()
                .into_bytes();
            sig.extend_from_slice(b"cairn vectors");
            Transaction {
                version: bitcoin::transaction::Version::TWO,
                lock_time: LockTime::ZERO,
                input: vec![TxIn {
                    previous_output: OutPoint::null(),
                    script_sig: ScriptBuf::from_bytes(sig),
                    sequence: Sequence::MAX,
                    witness: Witness::new(),
                }],
                output: vec![TxOut {
                    value: Amount::from_sat(5_000_000_000),
                    script_pubkey: ScriptBuf::new_op_return([0u8; 0]),
                }],
            }
        };
        let bundle = cairn_spec::ProofBundle {
            proof: p.clone(),
            before: vec![header(9)],
            coinbase: proof::RawTx(bitcoin::consensus::encode::serialize(&coinbase)),
            coinbase_path: p.tx_path.iter().map(|h| Hash32(h.0.map(|b| b ^ 0x5a))).collect(),
            above: (0u8..2).map(header).collect(),
        };
        json!({
            "name": name,
            "ots_file": hex::encode(ots_file),
            "bundle": hex::encode(bundle.to_bytes()),
            "proof": hex::encode(p.to_bytes()),
            "receipt_leaf": v.receipt_leaf.to_hex(),
            "epoch_height": v.epoch_height,
            "anchored_height": v.anchored_height,
            "anchored_hash": v.anchored_hash.to_hex(),
            "txid": v.txid.to_hex(),
            "block_hash": v.block_hash.to_hex(),
            "block_merkle_root": v.block_merkle_root.to_hex(),
            "block_height": v.block_height,
            "chain_position": v.chain_position,
            "ots_ops": serde_json::to_value(&ops).unwrap(),
        })
    };
    let mut valid = Vec::new();
    for (epoch, index) in [(0usize, 4u32), (0, 1), (1, 2), (2, 0)] {
        let name =
            format!("receipt {index} of epoch {epoch}, anchored at epoch 2 by the chain's third anchor");
        valid.push(valid_case(name, &proof_for(&w, epoch, index, &good_tx)));
    }
    // The chain's first anchor (it spends the genesis output itself) commits epoch 2 here.
    let first = anchor_tx_spending(genesis_output(), vec![anchor_out(49_000), payload_out(&payload)]);
    valid.push(valid_case(
        "receipt 0 of epoch 2, anchored by the chain's first anchor (no earlier anchors)".into(),
        &proof_with_chain(&w, 2, 0, &first, vec![]),
    ));

    let base = proof_for(&w, 0, 1, &good_tx);
    let mut invalid: Vec<Value> = Vec::new();
    let mut push = |name: &str, p: ReceiptProof, expect: &str| {
        let got = p.verify().err().map(|e| e.code()).unwrap_or("ok");
        assert_eq!(got, expect, "{name}");
        invalid.push(json!({ "name": name, "proof": hex::encode(p.to_bytes()), "error": expect }));
    };
    let with_tx = |tx: &Transaction| {
        let mut p = base.clone();
        p.anchor_tx = bitcoin::consensus::encode::serialize(tx);
        let (hdr, path) = block_with(&p.anchor_tx);
        p.block_header = hdr;
        p.tx_path = path;
        p
    };

    let mut p = base.clone();
    p.network = Network::Signet;
    push("proof claims another network", p, "network_mismatch");
    let mut p = base.clone();
    p.receipt.body.reward_sats += 1;
    push("receipt reward changed after signing", p, "receipt_signature");
    let mut p = base.clone();
    assert!(!p.receipt.batch.siblings.is_empty());
    p.receipt.batch.siblings[0] = h("wrong batch sibling");
    push("wrong sibling in the receipt's batch path", p, "receipt_signature");
    let mut p = base.clone();
    p.headers.remove(0);
    push("first header is not the receipt's epoch", p, "epoch_mismatch");
    let mut p = base.clone();
    p.receipt_path[0] = h("wrong sibling");
    push("wrong sibling in the receipt path", p, "receipts_root_mismatch");
    let mut p = base.clone();
    p.receipt_index = 5;
    push("receipt index equal to the epoch's receipt count", p, "index_out_of_range");
    let mut p = base.clone();
    p.receipt_path.push(h("extra"));
    push("receipt path longer than the tree", p, "path_too_long");
    let mut p = base.clone();
    p.headers[1].signature.0[10] ^= 1;
    push("header signature tampered", p, "header_signature");
    let mut p = base.clone();
    let other = key(5);
    p.headers[1] = Signed::sign(p.headers[1].body.clone(), &other, &AUX);
    push("header signed by another key", p, "header_signature");
    // The anchored header reaches the receipt's epoch through its history (SPEC.md §8.3
    // step 5).
    let mut p = base.clone();
    p.headers.remove(1);
    push("anchored header left out, its history path kept", p, "history_path");
    let mut p = base.clone();
    let mut hdr = p.headers[1].body.clone();
    hdr.history = h("another chain's history");
    p.headers[1] = Signed::sign(hdr, &w.coord, &AUX);
    push("anchored header's history holds another chain", p, "header_link");
    let mut p = base.clone();
    p.history_path[0] = h("wrong sibling");
    push("wrong sibling in the history path", p, "header_link");
    let mut p = base.clone();
    p.history_path.push(h("extra"));
    push("history path longer than the history tree", p, "history_path");
    let mut p = base.clone();
    p.history_path.pop();
    push("history path shorter than the history tree", p, "history_path");
    let mut p = base.clone();
    p.headers[1] = p.headers[0].clone();
    push("anchored header no later than the receipt's epoch", p, "header_link");
    let mut p = base.clone();
    let mut hdr = p.headers[1].body.clone();
    hdr.anchor = AnchorBinding::None;
    p.headers[1] = Signed::sign(hdr, &w.coord, &AUX);
    push("anchored header names another anchor binding", p, "header_link");
    let mut wrong_hash = payload;
    wrong_hash.header_hash = h("another header");
    push(
        "payload commits to another header",
        with_tx(&anchor_tx(vec![p2tr_out(&w.coord, 49_000), payload_out(&wrong_hash)])),
        "payload_hash",
    );
    let mut wrong_height = payload;
    wrong_height.height = 1;
    push(
        "payload commits to another height",
        with_tx(&anchor_tx(vec![p2tr_out(&w.coord, 49_000), payload_out(&wrong_height)])),
        "payload_height",
    );
    push("no Cairn output", with_tx(&anchor_tx(vec![p2tr_out(&w.coord, 49_000)])), "payload_missing");
    push(
        "two Cairn outputs",
        with_tx(&anchor_tx(vec![payload_out(&payload), payload_out(&payload)])),
        "payload_multiple",
    );
    let mut v2 = payload.to_bytes();
    v2[3] = 2;
    let mut s = vec![0x6a, 40];
    s.extend_from_slice(&v2);
    let v2_out = TxOut { value: Amount::ZERO, script_pubkey: ScriptBuf::from_bytes(s) };
    push(
        "payload of an unknown version",
        with_tx(&anchor_tx(vec![p2tr_out(&w.coord, 49_000), v2_out])),
        "payload_invalid",
    );
    let mut p = base.clone();
    p.anchor_tx.push(0);
    push("anchor transaction with a trailing byte", p, "tx_decode");
    // The chain of spends from the genesis output (SPEC.md §7.1).
    let mut p = base.clone();
    p.spend_chain.remove(0);
    push("spend chain leaves out the first anchor", p, "spend_chain");
    let mut p = base.clone();
    p.spend_chain.clear();
    push("spend chain left out: the anchor does not spend the genesis output", p, "spend_chain");
    let mut p = base.clone();
    p.spend_chain[1].0.push(0);
    push("spend chain transaction with a trailing byte", p, "spend_chain");
    let squat = anchor_tx_spending(
        OutPoint { txid: Txid::from_byte_array(h("someone else's coins").0), vout: 0 },
        vec![anchor_out(60_000), payload_out(&w.payload(0))],
    );
    let mut p = base.clone();
    p.spend_chain[0] = raw(&squat);
    push("spend chain starts from another output than the genesis output", p, "spend_chain");
    push(
        "anchor pays output 0 to another key than the anchor key",
        with_tx(&anchor_tx(vec![p2tr_out(&w.coord, 49_000), payload_out(&payload)])),
        "spend_chain",
    );
    let mut wrong_key = earlier.clone();
    wrong_key[0].output[0] = p2tr_out(&w.coord, 60_000);
    wrong_key[1].input[0].previous_output = OutPoint { txid: wrong_key[0].compute_txid(), vout: 0 };
    let tip = anchor_tx_spending(
        OutPoint { txid: wrong_key[1].compute_txid(), vout: 0 },
        vec![anchor_out(49_000), payload_out(&payload)],
    );
    let mut p = with_tx(&tip);
    p.spend_chain = wrong_key.iter().map(raw).collect();
    push("an earlier anchor pays output 0 to another key", p, "spend_chain");
    // Earlier anchors that are not anchors of this chain's epochs in order.
    let relink = |mut chain: Vec<Transaction>| {
        chain[1].input[0].previous_output = OutPoint { txid: chain[0].compute_txid(), vout: 0 };
        let tip = anchor_tx_spending(
            OutPoint { txid: chain[1].compute_txid(), vout: 0 },
            vec![anchor_out(49_000), payload_out(&payload)],
        );
        let mut p = with_tx(&tip);
        p.spend_chain = chain.iter().map(raw).collect();
        p
    };
    let mut no_payload = earlier.clone();
    no_payload[0].output.truncate(1);
    push("an earlier anchor carries no payload", relink(no_payload), "spend_chain");
    let mut backwards = earlier.clone();
    backwards[0].output[1] = payload_out(&w.payload(1));
    backwards[1].output[1] = payload_out(&w.payload(0));
    push("earlier anchors commit epochs out of order", relink(backwards), "spend_chain");
    let mut ahead = earlier.clone();
    ahead[1].output[1] = payload_out(&payload);
    push("an earlier anchor commits the anchored epoch already", relink(ahead), "spend_chain");
    let unbound = build_world_with(AnchorBinding::None);
    let unbound_tx =
        anchor_tx_spending(genesis_output(), vec![anchor_out(49_000), payload_out(&unbound.payload(2))]);
    push(
        "headers name no anchor binding",
        proof_with_chain(&unbound, 0, 1, &unbound_tx, vec![]),
        "anchor_unbound",
    );
    let mut p = base.clone();
    p.tx_index = 3;
    push("wrong transaction index", p, "block_merkle_root");
    let mut p = base.clone();
    p.tx_index = 4;
    push("transaction index beyond the path", p, "block_index");
    let mut p = base.clone();
    p.block_header[40] ^= 1;
    push("block header with another merkle root", p, "block_merkle_root");

    json!({
        "description": "Receipt proofs (SPEC.md section 8): valid proofs with every value verification yields and the OpenTimestamps operations from the receipt leaf to the block merkle root (section 9); invalid proofs that decode but fail verification, with the code of the first failing step",
        "valid": valid,
        "invalid": invalid,
    })
}

// ---------------------------------------------------------------- wire

fn wire_vectors() -> Value {
    use cairn_spec::wire::{request_protocol, ErrorReason, Request, RequestBody, Response, ResponseBody};
    let coord = key(1);
    let worker = key(2);
    let task = sample_task(&coord);
    let ann =
        Signed::sign(TaskAnnouncement { task: task.clone(), announced_at: 1_767_225_601 }, &coord, &AUX);
    let rec = receipt(&coord, 1, 0, Verdict::Accepted);
    let w = build_world();
    let hdr = w.epochs[1].1.clone();
    let gossip: Vec<Value> = [
        GossipMessage::Task(ann.clone()),
        GossipMessage::Receipt(rec.clone()),
        GossipMessage::Epoch(Box::new(hdr.clone())),
    ]
    .into_iter()
    .map(|m| {
        let inner = match &m {
            GossipMessage::Task(t) => t.to_bytes(),
            GossipMessage::Receipt(r) => r.to_bytes(),
            GossipMessage::Epoch(h) => h.to_bytes(),
        };
        json!({
            "topic": m.topic().name(Network::Regtest),
            "message_id": cairn_spec::wire::gossip_message_id(&m.topic().name(Network::Regtest), &m.to_bytes()).to_hex(),
            "kind": m.to_bytes()[1],
            "encoding": hex::encode(m.to_bytes()),
            "inner": hex::encode(inner),
        })
    })
    .collect();
    let claim = Signed::sign(
        Claim { task: task.id(), worker: worker.public(), claimed_at: 1_767_225_602 },
        &worker,
        &AUX,
    );
    // A validator's registration, score commit and score reveal (SPEC.md §13.4, §13.5).
    let validator = SigningKey::from_secret_bytes([0x55; 32]).expect("valid key");
    let vbond_key = SigningKey::from_secret_bytes([0x43; 32]).expect("valid key");
    let vbond_txid = h("validator bond utxo");
    let sheet = ScoreReveal {
        network: Network::Regtest,
        coordinator: coord.public(),
        class: h("a quality class"),
        epoch: 7,
        validator: validator.public(),
        scores: vec![(worker.public(), 640_000)],
        salt: [0x5a; 32],
    };
    let requests: Vec<Value> = [
        RequestBody::Claim(claim.clone()),
        RequestBody::GetBlob { hash: content_hash(b"blob"), offset: 65_536, len: 65_536 },
        RequestBody::GetReceipt { id: rec.id() },
        RequestBody::GetEpochs { from: 0, count: 256 },
        RequestBody::GetTerms,
        RequestBody::GetEpochReceipts { height: 1, from: 0, count: 2048 },
        RequestBody::GetLedger { height: 1, from: 2, count: 8192 },
        RequestBody::Offer(Box::new(ann.clone())),
        RequestBody::RegisterValidator(Box::new(Signed::sign(
            ValidatorRegistration {
                network: Network::Regtest,
                coordinator: coord.public(),
                validator: validator.public(),
                payout_address: "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080".into(),
                created_at: 1_767_225_600,
                bond: work::Bond {
                    txid: vbond_txid,
                    vout: 2,
                    key: vbond_key.public(),
                    signature: vbond_key
                        .sign(&work::bond_message(&coord.public(), &validator.public(), &vbond_txid, 2), &AUX),
                },
            },
            &validator,
            &AUX,
        ))),
        RequestBody::ScoreCommit(Box::new(Signed::sign(
            ScoreCommit {
                network: Network::Regtest,
                coordinator: coord.public(),
                class: sheet.class,
                epoch: sheet.epoch,
                validator: validator.public(),
                commitment: cairn_spec::scores::score_commitment_value(
                    sheet.network,
                    &sheet.coordinator,
                    &sheet.class,
                    sheet.epoch,
                    &sheet.validator,
                    &sheet.scores,
                    &sheet.salt,
                ),
            },
            &validator,
            &AUX,
        ))),
        RequestBody::ScoreReveal(Box::new(Signed::sign(sheet.clone(), &validator, &AUX))),
        RequestBody::GetRounds { height: 9 },
        RequestBody::GetValidators,
        RequestBody::Probe(Box::new(Signed::sign(
            Probe {
                network: Network::Regtest,
                coordinator: coord.public(),
                class: sample_class().id(),
                validator: validator.public(),
                worker: worker.public(),
                nonce: [5; 32],
                input: b"what is 2+2".to_vec(),
            },
            &validator,
            &AUX,
        ))),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, body)| {
        let r = Request { id: 1000 + i as u64, deadline_ms: 1_767_225_610_000, body };
        json!({ "id": r.id, "deadline_ms": r.deadline_ms, "kind": r.to_bytes()[17], "encoding": hex::encode(r.to_bytes()) })
    })
    .collect();
    let responses: Vec<Value> = [
        ResponseBody::error(ErrorReason::RateLimited, "rate limited"),
        ResponseBody::Ack,
        ResponseBody::Lease { task: task.id(), expires_at: 1_767_225_660 },
        ResponseBody::Blob { total: 100_000, offset: 65_536, bytes: vec![7; 16] },
        ResponseBody::Receipt(Some(Box::new(rec.clone()))),
        ResponseBody::Receipt(None),
        ResponseBody::Epochs(w.epochs.iter().map(|(_, h)| h.clone()).collect()),
        ResponseBody::Terms(Box::new(Terms {
            pow_difficulty: 20,
            bond_min_sats: 50_000,
            classes: vec![sample_class()],
        })),
        ResponseBody::Receipts(w.epochs[1].0.clone()),
        ResponseBody::Receipts(Vec::new()),
        ResponseBody::Ledger {
            total: 3,
            entries: vec![
                LedgerEntry { worker: worker.public(), locked: 40, claimable: 100, paid: 1_000 },
                LedgerEntry { worker: coord.public(), locked: 0, claimable: 0, paid: 7 },
            ],
        },
        ResponseBody::Rounds(vec![scored_round(
            &coord,
            &sample_class(),
            &[&validator, &key(6)],
            &[&worker, &key(3)],
            cairn_spec::consensus::ConsensusParams {
                worker_budget_sats: 10_000,
                validator_budget_sats: 1_000,
                baseline: 100_000,
                tolerance: 200_000,
            },
        )]),
        ResponseBody::Rounds(Vec::new()),
        ResponseBody::Validators({
            let mut v = vec![validator.public(), key(6).public()];
            v.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            v
        }),
        ResponseBody::ProbeAnswer(Box::new(Signed::sign(
            ProbeAnswer { probe: Hash32([8; 32]), worker: worker.public(), output: b"4".to_vec() },
            &worker,
            &AUX,
        ))),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, body)| {
        let r = Response { id: 2000 + i as u64, body };
        json!({ "id": r.id, "kind": r.to_bytes()[9], "encoding": hex::encode(r.to_bytes()) })
    })
    .collect();
    // One refusal per reason: the byte, its name and its code pin the table of §11.4.
    let errors: Vec<Value> = ErrorReason::ALL
        .into_iter()
        .enumerate()
        .map(|(i, reason)| {
            let r = Response { id: 3000 + i as u64, body: ResponseBody::error(reason, reason.name()) };
            json!({
                "id": r.id,
                "reason": reason.name(),
                "reason_byte": reason.byte(),
                "code": reason.code(),
                "message": reason.name(),
                "encoding": hex::encode(r.to_bytes()),
            })
        })
        .collect();
    let mut invalid = Vec::new();
    let mut g = GossipMessage::Receipt(rec.clone()).to_bytes();
    g[0] = cairn_spec::wire::WIRE_VERSION + 1;
    invalid.push(json!({ "type": "gossip", "name": "unknown wire version", "encoding": hex::encode(&g), "error": "unknown_version" }));
    // Version 1 carried `code u16` where version 2 carries the reason byte: refused whole.
    let mut old =
        Response { id: 3, body: ResponseBody::error(ErrorReason::RateLimited, "rate limited") }.to_bytes();
    old[0] = 1;
    invalid.push(json!({ "type": "response", "name": "refusal of wire version 1", "encoding": hex::encode(&old), "error": "unknown_version" }));
    for (name, byte) in [
        ("error reason 0 (unassigned)", 0u8),
        ("error reason 17 (unassigned)", 17),
        ("error reason 255 (unassigned)", 255),
    ] {
        let mut e = Response { id: 3, body: ResponseBody::error(ErrorReason::Internal, "x") }.to_bytes();
        e[10] = byte;
        invalid.push(
            json!({ "type": "response", "name": name, "encoding": hex::encode(&e), "error": "invalid_tag" }),
        );
    }
    let mut g = GossipMessage::Receipt(rec).to_bytes();
    g[1] = 9;
    invalid.push(json!({ "type": "gossip", "name": "unknown kind", "encoding": hex::encode(&g), "error": "invalid_tag" }));
    let big = Request { id: 1, deadline_ms: 2, body: RequestBody::GetEpochs { from: 0, count: 257 } };
    invalid.push(json!({ "type": "request", "name": "too many epochs asked", "encoding": hex::encode(big.to_bytes()), "error": "too_long" }));
    let big = Request {
        id: 1,
        deadline_ms: 2,
        body: RequestBody::GetBlob { hash: Hash32::ZERO, offset: 0, len: (1 << 20) + 1 },
    };
    invalid.push(json!({ "type": "request", "name": "blob chunk above 1 MiB", "encoding": hex::encode(big.to_bytes()), "error": "too_long" }));
    let big = Request {
        id: 1,
        deadline_ms: 2,
        body: RequestBody::GetEpochReceipts { height: 0, from: 0, count: 2049 },
    };
    invalid.push(json!({ "type": "request", "name": "too many receipts asked", "encoding": hex::encode(big.to_bytes()), "error": "too_long" }));
    let big =
        Request { id: 1, deadline_ms: 2, body: RequestBody::GetLedger { height: 0, from: 0, count: 8193 } };
    invalid.push(json!({ "type": "request", "name": "too many ledger entries asked", "encoding": hex::encode(big.to_bytes()), "error": "too_long" }));
    // Validators: strictly ascending keys, at most 1024, and no count beyond the bytes left.
    let mut two = vec![key(5).public(), key(6).public()];
    two.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    let unsorted = Response { id: 3, body: ResponseBody::Validators(vec![two[1], two[0]]) }.to_bytes();
    invalid.push(json!({ "type": "response", "name": "validators out of order", "encoding": hex::encode(&unsorted), "error": "invalid_value" }));
    let twice = Response { id: 3, body: ResponseBody::Validators(vec![two[0], two[0]]) }.to_bytes();
    invalid.push(json!({ "type": "response", "name": "a validator listed twice", "encoding": hex::encode(&twice), "error": "invalid_value" }));
    let mut forged = Response { id: 3, body: ResponseBody::Validators(two.clone()) }.to_bytes();
    forged[10..12].copy_from_slice(&1025u16.to_be_bytes());
    invalid.push(json!({ "type": "response", "name": "more than 1024 validators", "encoding": hex::encode(&forged), "error": "too_long" }));
    let mut forged = Response { id: 3, body: ResponseBody::Validators(two) }.to_bytes();
    forged[10..12].copy_from_slice(&3u16.to_be_bytes());
    invalid.push(json!({ "type": "response", "name": "a validator count beyond the bytes left", "encoding": hex::encode(&forged), "error": "unexpected_end" }));
    let mut forged = Response { id: 3, body: ResponseBody::Receipts(vec![]) }.to_bytes();
    forged[10..12].copy_from_slice(&2049u16.to_be_bytes());
    invalid.push(json!({ "type": "response", "name": "receipt count above 2048", "encoding": hex::encode(&forged), "error": "too_long" }));
    let mut forged = Response { id: 3, body: ResponseBody::Ledger { total: 1, entries: vec![] } }.to_bytes();
    forged[14..16].copy_from_slice(&2u16.to_be_bytes());
    invalid.push(json!({ "type": "response", "name": "ledger entries beyond the bytes present", "encoding": hex::encode(&forged), "error": "unexpected_end" }));
    let mut forged = Response { id: 3, body: ResponseBody::Epochs(vec![hdr]) }.to_bytes();
    forged[10..12].copy_from_slice(&300u16.to_be_bytes());
    invalid.push(json!({ "type": "response", "name": "epoch count above 256", "encoding": hex::encode(&forged), "error": "too_long" }));
    let mut forged = Response { id: 3, body: ResponseBody::Epochs(vec![]) }.to_bytes();
    forged[10..12].copy_from_slice(&200u16.to_be_bytes());
    invalid.push(json!({ "type": "response", "name": "epoch count beyond the bytes present", "encoding": hex::encode(&forged), "error": "unexpected_end" }));
    json!({
        "description": "Network frames (SPEC.md section 11): gossip messages with their topic and signed inner object, request and response frames, one refusal per error reason (byte, name, code); invalid frames with the decoder error code",
        "request_protocol": request_protocol(Network::Regtest),
        "gossip": gossip,
        "requests": requests,
        "responses": responses,
        "errors": errors,
        "invalid": invalid,
    })
}

// ---------------------------------------------------------------- draws (§12.1)

fn draw_vectors() -> Value {
    let coord = key(1);
    let task = sample_task(&coord);
    let seeds = [h("draw-seed-0"), h("draw-seed-1")];
    let seed_cases: Vec<Value> =
        seeds.iter().map(|s| json!({"seed": s.to_hex(), "seed_hash": draw::seed_hash(s).to_hex()})).collect();
    let keys: Vec<PubKey> = (20..28u8).map(|n| key(n).public()).collect();
    let mut rosters = Vec::new();
    for n in [0usize, 1, 3, 8] {
        let r = Roster::new(keys[..n].iter().rev().copied().collect());
        rosters.push(json!({
            "keys": r.keys().iter().map(|k| k.to_hex()).collect::<Vec<_>>(),
            "encoding": hex::encode(r.to_bytes()),
            "root": r.root().to_hex(),
        }));
    }
    let roster = Roster::new(keys.clone());
    let mut rankings = Vec::new();
    let beacons = [Beacon::None, Beacon::Block { height: 103, hash: h("block-103") }];
    for (seed, beacon) in seeds.iter().flat_map(|s| beacons.iter().map(move |b| (s, b))) {
        let ranked = roster.ranking(seed, beacon, &task);
        rankings.push(json!({
            "seed": seed.to_hex(),
            "beacon": beacon,
            "task": obj("task", &task),
            "roster": roster.keys().iter().map(|k| k.to_hex()).collect::<Vec<_>>(),
            "scores": ranked.iter().map(|(s, k)| json!({"key": k.to_hex(), "score": s.to_hex()})).collect::<Vec<_>>(),
        }));
    }
    let (a, b) =
        if keys[0].as_bytes() > keys[1].as_bytes() { (keys[0], keys[1]) } else { (keys[1], keys[0]) };
    let invalid = vec![
        json!({"name": "keys out of order", "encoding": hex::encode([&2u32.to_be_bytes()[..], a.as_bytes(), b.as_bytes()].concat())}),
        json!({"name": "a key twice", "encoding": hex::encode([&2u32.to_be_bytes()[..], a.as_bytes(), a.as_bytes()].concat())}),
        json!({"name": "count beyond the keys", "encoding": hex::encode([&2u32.to_be_bytes()[..], a.as_bytes()].concat())}),
        json!({"name": "not a key", "encoding": hex::encode([&1u32.to_be_bytes()[..], &not_a_key()[..]].concat())}),
    ];
    json!({
        "description": "SPEC.md §12.1: draw seed commitments, rosters (encoding, root) and the scores that rank a roster's keys for a task under a seed and a beacon (lowest first; the beacon encoded as in the header). Invalid rosters must not decode.",
        "seeds": seed_cases,
        "rosters": rosters,
        "rankings": rankings,
        "invalid_rosters": invalid,
    })
}

// ---------------------------------------------------------------- consensus (§13)

/// A consensus vector's name, parameters, workers with their units, and sheets.
type ConsensusCase<'a> =
    (&'a str, cairn_spec::consensus::ConsensusParams, Vec<(PubKey, u64)>, Vec<cairn_spec::consensus::Sheet>);

fn consensus_vectors() -> Value {
    use cairn_spec::consensus::{consensus, ConsensusParams, Sheet};
    let sorted = |mut k: Vec<PubKey>| {
        k.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        k
    };
    let keys = sorted((30..34u8).map(|n| key(n).public()).collect());
    let workers: Vec<(PubKey, u64)> = keys.iter().zip([3u64, 1, 1, 2]).map(|(k, u)| (*k, u)).collect();
    let validators = sorted((40..43u8).map(|n| key(n).public()).collect());
    let sheet = |v: usize, stake: u64, scores: &[(usize, u32)]| Sheet {
        validator: validators[v],
        stake,
        scores: scores.iter().map(|&(j, s)| (keys[j], s)).collect(),
    };
    let full =
        |v: usize, stake: u64, s: [u32; 4]| sheet(v, stake, &[(0, s[0]), (1, s[1]), (2, s[2]), (3, s[3])]);
    let params = ConsensusParams {
        worker_budget_sats: 1_000_000,
        validator_budget_sats: 180_000,
        baseline: 250_000,
        tolerance: 200_000,
    };
    let cases: Vec<ConsensusCase<'_>> = vec![
        (
            "two honest validators and one inflating the poorest worker, equal stakes; shares weighted by units",
            params,
            workers.clone(),
            vec![
                full(0, 1_000, [905_000, 746_000, 515_000, 296_000]),
                full(1, 1_000, [914_000, 737_000, 524_000, 305_000]),
                full(2, 1_000, [250_000, 250_000, 250_000, 1_000_000]),
            ],
        ),
        (
            "unequal stakes; a sheet that leaves workers out scores them 0",
            params,
            workers.clone(),
            vec![
                full(0, 7, [600_001, 599_999, 400_000, 999_999]),
                sheet(1, 5, &[(1, 800_000), (3, 123_457)]),
                full(2, 3, [1_000_000, 0, 333_333, 666_667]),
            ],
        ),
        ("no sheets: nobody earns", params, workers.clone(), vec![]),
        (
            "every score at or below the baseline: the workers' budget is unallocated",
            ConsensusParams { baseline: 900_000, ..params },
            workers[..2].to_vec(),
            vec![sheet(0, 10, &[(0, 900_000), (1, 100)]), sheet(1, 10, &[(0, 850_000), (1, 0)])],
        ),
        ("no workers: the validators earn nothing", params, vec![], vec![sheet(0, 10, &[])]),
        (
            "a score of a key that is not a scored worker is ignored",
            params,
            workers[..2].to_vec(),
            vec![sheet(0, 4, &[(0, 700_000), (1, 600_000), (3, 1_000_000)]), sheet(1, 5, &[(0, 710_000), (1, 590_000)])],
        ),
        (
            "the largest stakes and units: no product overflows",
            ConsensusParams { worker_budget_sats: 2_100_000_000_000_000, validator_budget_sats: 2_100_000_000_000_000, ..params },
            workers.iter().map(|(k, _)| (*k, 1u64 << 40)).collect(),
            vec![full(0, 2_100_000_000_000_000, [1_000_000, 999_999, 500_000, 250_001]), full(1, 2_100_000_000_000_000, [1_000_000, 999_998, 500_001, 250_000])],
        ),
    ];
    let enc_sheets = |sheets: &[Sheet]| -> Vec<Value> {
        sheets
            .iter()
            .map(|s| {
                json!({
                    "validator": s.validator.to_hex(),
                    "stake": s.stake,
                    "scores": s.scores.iter().map(|(k, v)| json!([k.to_hex(), v])).collect::<Vec<_>>(),
                })
            })
            .collect()
    };
    let hexes = |k: &[(PubKey, u64)]| k.iter().map(|(k, u)| json!([k.to_hex(), u])).collect::<Vec<_>>();
    let valid: Vec<Value> = cases
        .iter()
        .map(|(name, p, w, sheets)| {
            let o = consensus(p, w, sheets).unwrap();
            json!({"name": name, "params": p, "workers": hexes(w), "sheets": enc_sheets(sheets), "outcome": o})
        })
        .collect();
    let mut reversed = workers.clone();
    reversed.reverse();
    let many_workers: Vec<(PubKey, u64)> = {
        let mut k: Vec<(PubKey, u64)> = (0..1025u64)
            .map(|i| {
                let mut b = [9u8; 32];
                b[..8].copy_from_slice(&i.to_be_bytes());
                (SigningKey::from_secret_bytes(b).unwrap().public(), 1)
            })
            .collect();
        k.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        k
    };
    let many_sheets: Vec<Sheet> = {
        let mut v: Vec<Sheet> = (0..257u64)
            .map(|i| {
                let mut b = [10u8; 32];
                b[..8].copy_from_slice(&i.to_be_bytes());
                Sheet {
                    validator: SigningKey::from_secret_bytes(b).unwrap().public(),
                    stake: 1,
                    scores: vec![],
                }
            })
            .collect();
        v.sort_by(|a, b| a.validator.as_bytes().cmp(b.validator.as_bytes()));
        v
    };
    let invalid_cases: Vec<ConsensusCase<'_>> = vec![
        ("workers out of order", params, reversed, vec![]),
        ("sheets out of order", params, workers.clone(), vec![full(1, 1, [0; 4]), full(0, 1, [0; 4])]),
        ("a validator twice", params, workers.clone(), vec![full(0, 1, [0; 4]), full(0, 1, [0; 4])]),
        ("a sheet without stake", params, workers.clone(), vec![full(0, 0, [0; 4])]),
        (
            "a stake above all the money",
            params,
            workers.clone(),
            vec![full(0, 2_100_000_000_000_001, [0; 4])],
        ),
        ("more than 1024 workers", params, many_workers, vec![]),
        ("more than 256 sheets", params, workers.clone(), many_sheets),
        ("units above 2^40", params, vec![(keys[0], (1 << 40) + 1)], vec![]),
        (
            "a validator that is also a scored worker",
            params,
            workers.clone(),
            vec![Sheet { validator: keys[0], stake: 1, scores: vec![(keys[1], 5)] }],
        ),
        ("a score above the scale", params, workers.clone(), vec![full(0, 1, [0, 0, 0, 1_000_001])]),
        ("a sheet's scores out of order", params, workers.clone(), vec![sheet(0, 1, &[(1, 5), (0, 5)])]),
        (
            "a tolerance above the scale",
            ConsensusParams { tolerance: 1_000_001, ..params },
            workers.clone(),
            vec![],
        ),
        (
            "a budget above all the money",
            ConsensusParams { validator_budget_sats: 2_100_000_000_000_001, ..params },
            workers.clone(),
            vec![],
        ),
    ];
    let invalid: Vec<Value> = invalid_cases
        .iter()
        .map(|(name, p, w, sheets)| {
            let e = consensus(p, w, sheets).unwrap_err();
            json!({"name": name, "params": p, "workers": hexes(w), "sheets": enc_sheets(sheets), "error": e.code()})
        })
        .collect();
    json!({
        "description": "SPEC.md §13: the validators' consensus of a scored class. Workers are [key, verified units]. Each valid case's outcome (per worker: units, low and high medians, score, share; per validator: deviation, agreement, share; unallocated sats) must be reproduced exactly; each invalid case refused with its error.",
        "valid": valid,
        "invalid": invalid,
    })
}

fn latency_vectors() -> Value {
    use cairn_spec::probe::latency_score;
    use Timing::{Answered, Missing, Wrong};
    let terms = |fast_ms: u32, slow_ms: u32| LatencyTerms {
        consensus: cairn_spec::consensus::ConsensusParams {
            worker_budget_sats: 1_000_000,
            validator_budget_sats: 100_000,
            baseline: 0,
            tolerance: 150_000,
        },
        fast_ms,
        slow_ms,
    };
    let t = terms(50, 1_050);
    let cases: Vec<(&str, LatencyTerms, Vec<Timing>)> = vec![
        ("no timings", t, vec![]),
        ("at fast_ms", t, vec![Answered(50)]),
        ("under fast_ms", t, vec![Answered(3)]),
        ("half way", t, vec![Answered(550)]),
        ("a third of the way", t, vec![Answered(383)]),
        ("at slow_ms", t, vec![Answered(1_050)]),
        ("beyond slow_ms", t, vec![Answered(90_000)]),
        ("the lower median of four", t, vec![Answered(700), Answered(60), Missing, Answered(400)]),
        ("missing counts as slow", t, vec![Missing, Missing, Answered(51)]),
        ("one wrong answer zeroes a fast worker", t, vec![Answered(1), Answered(1), Answered(1), Wrong]),
        ("all missing", t, vec![Missing, Missing]),
        ("times not fast < slow", terms(9, 9), vec![Answered(1)]),
        ("slow above ten minutes", terms(0, 600_001), vec![Answered(1)]),
        ("the widest span", terms(0, 600_000), vec![Answered(1)]),
    ];
    let cases: Vec<Value> = cases
        .into_iter()
        .map(|(name, terms, timings)| {
            json!({"name": name, "terms": terms, "timings": timings, "score": latency_score(&terms, &timings)})
        })
        .collect();
    json!({
        "description": "SPEC.md §13.7: a validator's timings of one worker over an epoch, and the score they make. A timing is answered (agreeing with the validator's own result, after ms milliseconds), wrong, or missing (counted as slow_ms). Any wrong answer scores 0; otherwise the lower median m scores 1000000 at or below fast_ms, 0 at or above slow_ms, and 1000000·(slow_ms − m)/(slow_ms − fast_ms) between.",
        "cases": cases,
    })
}

/// Every vector file, by name, with its contents.
pub fn all_vectors() -> BTreeMap<&'static str, Value> {
    BTreeMap::from([
        ("tagged_hash.json", tagged_hash_vectors()),
        ("merkle.json", merkle_vectors()),
        ("signatures.json", signature_vectors()),
        ("objects.json", object_vectors()),
        ("state_root.json", state_root_vectors()),
        ("anchor_payload.json", anchor_payload_vectors()),
        ("receipt_proof.json", receipt_proof_vectors()),
        ("wire.json", wire_vectors()),
        ("draws.json", draw_vectors()),
        ("consensus.json", consensus_vectors()),
        ("latency.json", latency_vectors()),
    ])
}

/// The bytes written for a vector file (pretty JSON, trailing newline).
pub fn render(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap();
    s.push('\n');
    s
}

#[allow(dead_code)]
fn main() {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/vectors").to_string());
    std::fs::create_dir_all(&dir).unwrap();
    for (name, v) in all_vectors() {
        let path = std::path::Path::new(&dir).join(name);
        std::fs::write(&path, render(&v)).unwrap();
        println!("wrote {}", path.display());
    }
}
