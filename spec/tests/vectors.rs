//! Loads every file in `spec/vectors/` and checks it against the crate, independently of
//! the generator's own assertions; fails when a vector file is not used, or when the
//! committed files differ from what the generator writes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

#[path = "../examples/gen_vectors.rs"]
#[allow(dead_code)]
mod gen;

use std::path::PathBuf;

use cairn_spec::anchor_payload::AnchorPayload;
use cairn_spec::hash::Hash32;
use cairn_spec::keys::verify;
use cairn_spec::merkle::{self, MerkleProof};
use cairn_spec::proof::{apply_ots, OtsOp};
use cairn_spec::*;
use serde_json::Value;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("vectors")
}

fn hash(v: &Value) -> Hash32 {
    Hash32::from_hex(v.as_str().unwrap()).unwrap()
}

fn bytes(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

fn arr(v: &Value) -> &Vec<Value> {
    let a = v.as_array().unwrap();
    assert!(!a.is_empty(), "empty vector list");
    a
}

fn check_tagged_hash(v: &Value) -> usize {
    let cases = arr(&v["cases"]);
    for c in cases {
        let tag = Tag::ALL.into_iter().find(|t| t.name() == c["tag"].as_str().unwrap()).unwrap();
        assert_eq!(tagged_hash(tag, &bytes(&c["msg"])), hash(&c["hash"]));
    }
    cases.len()
}

fn check_merkle(v: &Value) -> usize {
    assert_eq!(merkle::empty_root(), hash(&v["empty_root"]));
    let mut n = 0;
    for c in arr(&v["valid"]) {
        let leaves: Vec<Hash32> = c["leaves"].as_array().unwrap().iter().map(hash).collect();
        let root = hash(&c["root"]);
        assert_eq!(merkle::root(&leaves), root);
        for p in c["proofs"].as_array().unwrap() {
            let index = p["index"].as_u64().unwrap() as u32;
            let proof = MerkleProof {
                index,
                count: leaves.len() as u32,
                siblings: p["siblings"].as_array().unwrap().iter().map(hash).collect(),
            };
            assert_eq!(proof.root_for(&leaves[index as usize]).unwrap(), root);
            n += 1;
        }
    }
    for c in arr(&v["invalid"]) {
        let proof = MerkleProof {
            index: c["index"].as_u64().unwrap() as u32,
            count: c["count"].as_u64().unwrap() as u32,
            siblings: c["siblings"].as_array().unwrap().iter().map(hash).collect(),
        };
        let got = match proof.root_for(&hash(&c["leaf"])) {
            Ok(r) if r == hash(&c["root"]) => "ok",
            Ok(_) => "root_mismatch",
            Err(e) => e.code(),
        };
        assert_eq!(got, c["error"].as_str().unwrap(), "{}", c["name"]);
        n += 1;
    }
    n
}

fn check_signatures(v: &Value) -> usize {
    let cases = arr(&v["cases"]);
    for c in cases {
        let key = PubKey::from_hex(c["pubkey"].as_str().unwrap()).unwrap();
        let msg = hash(&c["msg"]);
        let sig = Signature(bytes(&c["sig"]).try_into().unwrap());
        assert_eq!(verify(&key, &msg, &sig), c["valid"].as_bool().unwrap());
        if let Some(secret) = c.get("secret") {
            let sk = SigningKey::from_secret_bytes(bytes(secret).try_into().unwrap()).unwrap();
            assert_eq!(sk.public(), key);
            let aux: [u8; 32] = bytes(&c["aux"]).try_into().unwrap();
            assert_eq!(sk.sign(&msg, &aux), sig);
        }
    }
    cases.len()
}

fn round_trip<T>(c: &Value)
where
    T: Object + serde::de::DeserializeOwned + std::fmt::Debug + PartialEq,
{
    let v: T = serde_json::from_value(c["json"].clone()).unwrap();
    assert_eq!(hex::encode(v.to_bytes()), c["encoding"].as_str().unwrap());
    assert_eq!(T::from_bytes(&bytes(&c["encoding"])).unwrap(), v);
    assert_eq!(v.id(), hash(&c["id"]));
}

fn round_trip_signed<T>(c: &Value)
where
    T: Object + Signer + serde::de::DeserializeOwned + std::fmt::Debug + PartialEq,
{
    let v: Signed<T> = serde_json::from_value(c["json"].clone()).unwrap();
    assert_eq!(hex::encode(v.to_bytes()), c["encoding"].as_str().unwrap());
    assert_eq!(Signed::<T>::from_bytes(&bytes(&c["encoding"])).unwrap(), v);
    assert_eq!(v.id(), hash(&c["id"]));
    assert_eq!(v.body.signer().to_hex(), c["signer"].as_str().unwrap());
    assert!(v.verify());
}

/// A receipt signs its batch (SPEC.md §5.7): the vector names the batch id it signs.
fn round_trip_receipt(c: &Value) {
    let v: SignedReceipt = serde_json::from_value(c["json"].clone()).unwrap();
    assert_eq!(hex::encode(v.to_bytes()), c["encoding"].as_str().unwrap());
    assert_eq!(SignedReceipt::from_bytes(&bytes(&c["encoding"])).unwrap(), v);
    assert_eq!(v.id(), hash(&c["id"]));
    assert_eq!(v.body.coordinator.to_hex(), c["signer"].as_str().unwrap());
    assert_eq!(v.batch_id().unwrap(), hash(&c["batch_id"]));
    assert!(v.verify());
}

fn decode_err(ty: &str, b: &[u8]) -> Option<&'static str> {
    let r = match ty {
        "task_class" => TaskClass::from_bytes(b).err(),
        "task" => Task::from_bytes(b).err(),
        "registration" => Signed::<Registration>::from_bytes(b).err(),
        "commitment" => Signed::<Commitment>::from_bytes(b).err(),
        "reveal" => Signed::<Reveal>::from_bytes(b).err(),
        "receipt" => SignedReceipt::from_bytes(b).err(),
        "ledger_entry" => LedgerEntry::from_bytes(b).err(),
        "epoch_header" => SignedEpochHeader::from_bytes(b).err(),
        "task_announcement" => Signed::<TaskAnnouncement>::from_bytes(b).err(),
        "claim" => Signed::<Claim>::from_bytes(b).err(),
        "score_commit" => Signed::<cairn_spec::ScoreCommit>::from_bytes(b).err(),
        "score_reveal" => Signed::<cairn_spec::ScoreReveal>::from_bytes(b).err(),
        "validator_registration" => Signed::<cairn_spec::ValidatorRegistration>::from_bytes(b).err(),
        "scored_round" => cairn_spec::ScoredRound::from_bytes(b).err(),
        "probe" => Signed::<cairn_spec::Probe>::from_bytes(b).err(),
        "probe_answer" => Signed::<cairn_spec::ProbeAnswer>::from_bytes(b).err(),
        "gossip" => GossipMessage::from_bytes(b).err(),
        "request" => Request::from_bytes(b).err(),
        "response" => Response::from_bytes(b).err(),
        other => panic!("unknown object type {other}"),
    };
    r.map(|e| e.code())
}

fn check_objects(v: &Value) -> usize {
    let mut n = 0;
    let mut types = std::collections::BTreeSet::new();
    for c in arr(&v["valid"]) {
        let ty = c["type"].as_str().unwrap();
        types.insert(ty.to_owned());
        match ty {
            "task_class" => round_trip::<TaskClass>(c),
            "task" => round_trip::<Task>(c),
            "registration" => round_trip_signed::<Registration>(c),
            "commitment" => round_trip_signed::<Commitment>(c),
            "reveal" => round_trip_signed::<Reveal>(c),
            "receipt" => round_trip_receipt(c),
            "ledger_entry" => round_trip::<LedgerEntry>(c),
            "epoch_header" => round_trip_signed::<EpochHeader>(c),
            "task_announcement" => round_trip_signed::<TaskAnnouncement>(c),
            "claim" => round_trip_signed::<Claim>(c),
            "score_commit" => round_trip_signed::<cairn_spec::ScoreCommit>(c),
            "score_reveal" => round_trip_signed::<cairn_spec::ScoreReveal>(c),
            "validator_registration" => round_trip_signed::<cairn_spec::ValidatorRegistration>(c),
            "scored_round" => round_trip::<cairn_spec::ScoredRound>(c),
            "probe" => round_trip_signed::<cairn_spec::Probe>(c),
            "probe_answer" => round_trip_signed::<cairn_spec::ProbeAnswer>(c),
            other => panic!("unknown object type {other}"),
        }
        n += 1;
    }
    assert_eq!(types.len(), 16, "every object type has a valid vector");
    // The score reveal opens the score commit (SPEC.md §13.4).
    let json_of = |ty: &str| arr(&v["valid"]).iter().find(|c| c["type"] == ty).unwrap()["json"].clone();
    let commit: cairn_spec::ScoreCommit = serde_json::from_value(json_of("score_commit")).unwrap();
    let reveal: cairn_spec::ScoreReveal = serde_json::from_value(json_of("score_reveal")).unwrap();
    assert!(reveal.opens(&commit));
    // The validator's bond signs for it, the scored round is the consensus of its signed
    // sheets, and the third header's scores root commits it (SPEC.md §13.5, §13.6).
    let vreg: cairn_spec::ValidatorRegistration =
        serde_json::from_value(json_of("validator_registration")).unwrap();
    assert!(vreg.bond.verify(&vreg.coordinator, &vreg.validator));
    let round: cairn_spec::ScoredRound = serde_json::from_value(json_of("scored_round")).unwrap();
    round.check().unwrap();
    let headers: Vec<Value> =
        arr(&v["valid"]).iter().filter(|c| c["type"] == "epoch_header").map(|c| c["json"].clone()).collect();
    assert_eq!(hash(&headers[2]["scores_root"]), cairn_spec::rounds::scores_root(&[round]));
    n += 1;
    for c in arr(&v["invalid"]) {
        let got = decode_err(c["type"].as_str().unwrap(), &bytes(&c["encoding"]));
        assert_eq!(got, Some(c["error"].as_str().unwrap()), "{}", c["name"]);
        n += 1;
    }
    n
}

fn check_state_root(v: &Value) -> usize {
    let cases = arr(&v["cases"]);
    for c in cases {
        let entries: Vec<LedgerEntry> = serde_json::from_value(c["entries"].clone()).unwrap();
        assert_eq!(ledger::state_root(&entries).unwrap(), hash(&c["state_root"]));
    }
    cases.len()
}

fn check_anchor_payload(v: &Value) -> usize {
    let mut n = 0;
    for c in arr(&v["valid"]) {
        let p = AnchorPayload {
            height: c["height"].as_u64().unwrap() as u32,
            header_hash: hash(&c["header_hash"]),
        };
        assert_eq!(p.to_bytes().to_vec(), bytes(&c["payload"]));
        assert_eq!(p.to_script().as_bytes(), &bytes(&c["script"])[..]);
        assert_eq!(AnchorPayload::from_bytes(&bytes(&c["payload"])), Ok(p));
        n += 1;
    }
    for c in arr(&v["invalid"]) {
        let e = AnchorPayload::from_bytes(&bytes(&c["payload"])).unwrap_err();
        assert_eq!(e.code(), c["error"].as_str().unwrap(), "{}", c["name"]);
        n += 1;
    }
    for c in arr(&v["scripts"]) {
        let s = bitcoin::Script::from_bytes(&bytes(&c["script"])).to_owned();
        assert!(!c["cairn"].as_bool().unwrap());
        assert_eq!(AnchorPayload::from_script(&s), None, "{}", c["name"]);
        n += 1;
    }
    n
}

fn check_receipt_proofs(v: &Value) -> usize {
    let mut n = 0;
    for c in arr(&v["valid"]) {
        let p = ReceiptProof::from_bytes(&bytes(&c["proof"])).unwrap();
        let r = p.verify().unwrap();
        assert_eq!(r.receipt_leaf, hash(&c["receipt_leaf"]));
        assert_eq!(r.epoch_height as u64, c["epoch_height"].as_u64().unwrap());
        assert_eq!(r.anchored_height as u64, c["anchored_height"].as_u64().unwrap());
        assert_eq!(r.anchored_hash, hash(&c["anchored_hash"]));
        assert_eq!(r.txid, hash(&c["txid"]));
        assert_eq!(r.block_hash, hash(&c["block_hash"]));
        assert_eq!(r.block_merkle_root, hash(&c["block_merkle_root"]));
        assert_eq!(r.block_height as u64, c["block_height"].as_u64().unwrap());
        let ops: Vec<OtsOp> = serde_json::from_value(c["ots_ops"].clone()).unwrap();
        assert_eq!(p.ots_ops().unwrap(), ops);
        assert_eq!(apply_ots(&r.receipt_leaf.0, &ops), r.block_merkle_root.0.to_vec());
        // The .ots file (§9.1): digest = leaf, the same operations, the block's height.
        let (digest, t) =
            cairn_spec::ots::LinearTimestamp::from_detached_file(&bytes(&c["ots_file"])).unwrap();
        assert_eq!(digest, r.receipt_leaf.0);
        assert_eq!(t.ops, ops);
        assert_eq!(
            t.attestation,
            cairn_spec::ots::Attestation::BitcoinBlockHeader { height: r.block_height }
        );
        assert_eq!(t.detached_file(&digest), bytes(&c["ots_file"]));
        // The bundle (§8.4) carries this proof, a header before its block, its coinbase with
        // a path as deep as the anchor transaction's, and two headers above.
        let b = cairn_spec::ProofBundle::from_bytes(&bytes(&c["bundle"])).unwrap();
        assert_eq!(b.proof, p);
        assert_eq!((b.before.len(), b.above.len()), (1, 2));
        assert_eq!(b.start_height(), p.block_height - 1);
        assert_eq!(b.coinbase_path.len(), p.tx_path.len());
        assert_eq!(b.to_bytes(), bytes(&c["bundle"]));
        n += 1;
    }
    for c in arr(&v["invalid"]) {
        let p = ReceiptProof::from_bytes(&bytes(&c["proof"])).unwrap();
        let e = p.verify().unwrap_err();
        assert_eq!(e.code(), c["error"].as_str().unwrap(), "{}", c["name"]);
        assert!(p.ots_ops().is_err());
        n += 1;
    }
    n
}

fn check_wire(v: &Value) -> usize {
    let mut n = 0;
    assert_eq!(v["request_protocol"], "/cairn/3/regtest/req");
    for c in arr(&v["gossip"]) {
        let m = GossipMessage::from_bytes(&bytes(&c["encoding"])).unwrap();
        assert_eq!(m.topic().name(Network::Regtest), c["topic"].as_str().unwrap());
        let id = cairn_spec::wire::gossip_message_id(c["topic"].as_str().unwrap(), &m.to_bytes());
        assert_eq!(id.to_hex(), c["message_id"].as_str().unwrap());
        assert!(m.verify_signature());
        assert_eq!(hex::encode(m.to_bytes()), c["encoding"].as_str().unwrap());
        n += 1;
    }
    for c in arr(&v["requests"]) {
        let r = Request::from_bytes(&bytes(&c["encoding"])).unwrap();
        assert_eq!(r.id, c["id"].as_u64().unwrap());
        assert_eq!(hex::encode(r.to_bytes()), c["encoding"].as_str().unwrap());
        n += 1;
    }
    for c in arr(&v["responses"]) {
        let r = Response::from_bytes(&bytes(&c["encoding"])).unwrap();
        assert_eq!(r.id, c["id"].as_u64().unwrap());
        assert_eq!(hex::encode(r.to_bytes()), c["encoding"].as_str().unwrap());
        n += 1;
    }
    let mut reasons = Vec::new();
    for c in arr(&v["errors"]) {
        let r = Response::from_bytes(&bytes(&c["encoding"])).unwrap();
        assert_eq!(r.id, c["id"].as_u64().unwrap());
        let ResponseBody::Error { reason, message } = &r.body else { panic!("not a refusal: {c}") };
        assert_eq!(reason.name(), c["reason"].as_str().unwrap());
        assert_eq!(u64::from(reason.byte()), c["reason_byte"].as_u64().unwrap());
        assert_eq!(u64::from(reason.code()), c["code"].as_u64().unwrap());
        assert_eq!(message, c["message"].as_str().unwrap());
        assert_eq!(hex::encode(r.to_bytes()), c["encoding"].as_str().unwrap());
        reasons.push(*reason);
        n += 1;
    }
    assert_eq!(reasons, ErrorReason::ALL, "one refusal vector per reason, in byte order");
    for c in arr(&v["invalid"]) {
        let got = decode_err(c["type"].as_str().unwrap(), &bytes(&c["encoding"]));
        assert_eq!(got, Some(c["error"].as_str().unwrap()), "{}", c["name"]);
        n += 1;
    }
    n
}

fn check_draws(v: &Value) -> usize {
    let mut n = 0;
    for c in arr(&v["seeds"]) {
        assert_eq!(draw::seed_hash(&hash(&c["seed"])), hash(&c["seed_hash"]));
        n += 1;
    }
    for c in arr(&v["rosters"]) {
        let keys: Vec<PubKey> = c["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| PubKey::from_hex(k.as_str().unwrap()).unwrap())
            .collect();
        let r = Roster::from_bytes(&bytes(&c["encoding"])).unwrap();
        assert_eq!(r.keys(), keys.as_slice());
        assert_eq!(r.root(), hash(&c["root"]));
        n += 1;
    }
    for c in arr(&v["rankings"]) {
        let task: Task = serde_json::from_value(c["task"]["json"].clone()).unwrap();
        let roster = Roster::new(
            arr(&c["roster"]).iter().map(|k| PubKey::from_hex(k.as_str().unwrap()).unwrap()).collect(),
        );
        let beacon: cairn_spec::Beacon = serde_json::from_value(c["beacon"].clone()).unwrap();
        let got: Vec<(String, String)> = roster
            .ranking(&hash(&c["seed"]), &beacon, &task)
            .iter()
            .map(|(s, k)| (s.to_hex(), k.to_hex()))
            .collect();
        let want: Vec<(String, String)> = arr(&c["scores"])
            .iter()
            .map(|x| (x["score"].as_str().unwrap().to_owned(), x["key"].as_str().unwrap().to_owned()))
            .collect();
        assert_eq!(got, want);
        n += 1;
    }
    for c in arr(&v["invalid_rosters"]) {
        assert!(Roster::from_bytes(&bytes(&c["encoding"])).is_err(), "{}", c["name"]);
        n += 1;
    }
    n
}

fn check_consensus(v: &Value) -> usize {
    use cairn_spec::consensus::{consensus, ConsensusParams, Outcome, Sheet};
    let key = |k: &Value| PubKey::from_hex(k.as_str().unwrap()).unwrap();
    let inputs = |c: &Value| {
        let p: ConsensusParams = serde_json::from_value(c["params"].clone()).unwrap();
        let workers: Vec<(PubKey, u64)> =
            c["workers"].as_array().unwrap().iter().map(|w| (key(&w[0]), w[1].as_u64().unwrap())).collect();
        let sheets: Vec<Sheet> = c["sheets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| Sheet {
                validator: key(&s["validator"]),
                stake: s["stake"].as_u64().unwrap(),
                scores: s["scores"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| (key(&x[0]), u32::try_from(x[1].as_u64().unwrap()).unwrap()))
                    .collect(),
            })
            .collect();
        (p, workers, sheets)
    };
    let mut n = 0;
    for c in arr(&v["valid"]) {
        let (p, workers, sheets) = inputs(c);
        let want: Outcome = serde_json::from_value(c["outcome"].clone()).unwrap();
        assert_eq!(consensus(&p, &workers, &sheets).unwrap(), want, "{}", c["name"]);
        n += 1;
    }
    for c in arr(&v["invalid"]) {
        let (p, workers, sheets) = inputs(c);
        let got = consensus(&p, &workers, &sheets).unwrap_err();
        assert_eq!(got.code(), c["error"].as_str().unwrap(), "{}", c["name"]);
        n += 1;
    }
    n
}

fn check_latency(v: &Value) -> usize {
    let mut n = 0;
    for c in arr(&v["cases"]) {
        let terms: cairn_spec::LatencyTerms = serde_json::from_value(c["terms"].clone()).unwrap();
        let timings: Vec<cairn_spec::Timing> = serde_json::from_value(c["timings"].clone()).unwrap();
        let want = u32::try_from(c["score"].as_u64().unwrap()).unwrap();
        assert_eq!(cairn_spec::probe::latency_score(&terms, &timings), want, "{}", c["name"]);
        n += 1;
    }
    n
}

#[test]
fn every_vector_file_is_checked() {
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name == "README.md" {
            continue;
        }
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let cases = match name.as_str() {
            "tagged_hash.json" => check_tagged_hash(&v),
            "merkle.json" => check_merkle(&v),
            "signatures.json" => check_signatures(&v),
            "objects.json" => check_objects(&v),
            "state_root.json" => check_state_root(&v),
            "anchor_payload.json" => check_anchor_payload(&v),
            "receipt_proof.json" => check_receipt_proofs(&v),
            "wire.json" => check_wire(&v),
            "draws.json" => check_draws(&v),
            "consensus.json" => check_consensus(&v),
            "latency.json" => check_latency(&v),
            other => panic!("vector file {other} is not used by any test"),
        };
        assert!(cases > 0, "{name} has no cases");
        checked.push(name);
    }
    checked.sort();
    let expected: Vec<String> = gen::all_vectors().keys().map(|k| k.to_string()).collect();
    assert_eq!(checked, expected, "vector files on disk differ from the generator's set");
}

#[test]
fn vectors_are_generated_by_this_generator() {
    for (name, v) in gen::all_vectors() {
        let on_disk = std::fs::read_to_string(dir().join(name)).unwrap_or_default();
        assert!(
            on_disk == gen::render(&v),
            "{name} differs from the generator's output; run `cargo run -p cairn-spec --example gen-vectors`"
        );
    }
}
