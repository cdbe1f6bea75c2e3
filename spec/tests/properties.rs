//! Property tests: every object round-trips through its canonical encoding; every decoder
//! survives arbitrary and mutated bytes without panicking; whatever decodes re-encodes to
//! exactly the same bytes (one encoding per value); Merkle proofs hold for random trees.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

use cairn_spec::hash::sha256;
use cairn_spec::merkle::{self, MerkleTree};
use cairn_spec::*;
use proptest::prelude::*;

fn key_strategy() -> impl Strategy<Value = SigningKey> {
    (1u64..u64::MAX).prop_map(|n| {
        let mut s = [0u8; 32];
        s[24..].copy_from_slice(&n.to_be_bytes());
        SigningKey::from_secret_bytes(s).unwrap()
    })
}

fn pubkey() -> impl Strategy<Value = PubKey> {
    key_strategy().prop_map(|k| k.public())
}

fn hash32() -> impl Strategy<Value = Hash32> {
    any::<[u8; 32]>().prop_map(Hash32)
}

fn network() -> impl Strategy<Value = Network> {
    prop::sample::select(Network::ALL.to_vec())
}

fn payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512).prop_map(Payload::Inline),
        (hash32(), 0..=task::MAX_BLOB_BYTES).prop_map(|(hash, size)| Payload::Blob { hash, size }),
    ]
}

fn task_class() -> impl Strategy<Value = TaskClass> {
    (
        "[a-z0-9._-]{1,32}",
        prop::sample::select(vec![
            ExecutorKind::Embedding,
            ExecutorKind::Command,
            ExecutorKind::ChatCompletion,
        ]),
        hash32(),
        prop_oneof![
            Just(ComparisonRule::ExactHash),
            (0..=task::PPB).prop_map(|min_ppb| ComparisonRule::Cosine { min_ppb })
        ],
        1..=task::MAX_REPLICATION,
        any::<u64>(),
        0..=(task::MAX_BLOB_BYTES as u32),
        1..=u32::MAX,
        1..=u32::MAX,
    )
        .prop_map(
            |(
                name,
                executor,
                model_hash,
                rule,
                replication,
                reward_per_unit,
                max_input_bytes,
                lease_secs,
                reveal_secs,
            )| {
                TaskClass {
                    name,
                    executor,
                    model_hash,
                    rule,
                    replication,
                    reward_per_unit,
                    max_input_bytes,
                    lease_secs,
                    reveal_secs,
                    objective: Default::default(),
                }
            },
        )
}

fn task() -> impl Strategy<Value = Task> {
    (
        network(),
        pubkey(),
        hash32(),
        pubkey(),
        any::<u64>(),
        1..=u32::MAX,
        any::<u64>(),
        any::<u64>(),
        payload(),
    )
        .prop_map(
            |(network, coordinator, class, requester, nonce, units, budget_sats, created_at, input)| Task {
                network,
                coordinator,
                class,
                requester,
                nonce,
                units,
                budget_sats,
                created_at,
                input,
            },
        )
}

fn registration() -> impl Strategy<Value = Registration> {
    (
        network(),
        pubkey(),
        key_strategy(),
        any::<u64>(),
        any::<u64>(),
        proptest::option::of((hash32(), any::<u32>(), pubkey(), any::<[u8; 32]>())),
    )
        .prop_map(|(network, coordinator, worker, created_at, pow_nonce, bond)| {
            let secp = bitcoin::secp256k1::Secp256k1::verification_only();
            let addr = bitcoin::Address::p2tr(&secp, worker.public().x_only(), None, network.to_bitcoin());
            Registration {
                network,
                coordinator,
                worker: worker.public(),
                payout_address: addr.to_string(),
                created_at,
                pow_nonce,
                bond: bond.map(|(txid, vout, key, half)| {
                    Box::new(cairn_spec::Bond {
                        txid,
                        vout,
                        key,
                        signature: cairn_spec::Signature([half, half].concat().try_into().unwrap()),
                    })
                }),
            }
        })
}

fn receipt() -> impl Strategy<Value = WorkReceipt> {
    (
        network(),
        pubkey(),
        any::<u32>(),
        hash32(),
        hash32(),
        pubkey(),
        hash32(),
        prop::sample::select(Verdict::ALL.to_vec()),
        any::<u32>(),
        any::<u64>(),
    )
        .prop_map(
            |(network, coordinator, epoch, task, class, worker, result_hash, verdict, units, reward)| {
                WorkReceipt {
                    network,
                    coordinator,
                    epoch,
                    task,
                    class,
                    worker,
                    result_hash,
                    verdict,
                    units,
                    reward_sats: if verdict.is_accepted() { reward } else { 0 },
                    draw_epoch: epoch / 2,
                }
            },
        )
}

fn header() -> impl Strategy<Value = EpochHeader> {
    (
        network(),
        pubkey(),
        any::<u32>(),
        hash32(),
        hash32(),
        hash32(),
        any::<u32>(),
        any::<u32>(),
        any::<u64>(),
        any::<u64>(),
        (hash32(), hash32(), hash32()),
    )
        .prop_map(
            |(
                network,
                coordinator,
                height,
                prev,
                receipts_root,
                state_root,
                a,
                b,
                reward_sats,
                time,
                draws,
            )| {
                EpochHeader {
                    network,
                    coordinator,
                    height,
                    prev: if height == 0 {
                        Hash32::ZERO
                    } else if prev == Hash32::ZERO {
                        sha256(b"p")
                    } else {
                        prev
                    },
                    receipts_root,
                    state_root,
                    receipt_count: a.max(b),
                    accepted_count: a.min(b),
                    reward_sats,
                    time,
                    draw_seed: draws.0,
                    next_seed_hash: draws.1,
                    next_roster: draws.2,
                    // Both kinds of beacon; epoch 0 has none.
                    beacon: if height == 0 || b % 2 == 1 {
                        cairn_spec::Beacon::None
                    } else {
                        cairn_spec::Beacon::Block { height: a, hash: receipts_root }
                    },
                    // Both kinds of binding.
                    anchor: if b % 3 == 0 {
                        cairn_spec::AnchorBinding::None
                    } else {
                        cairn_spec::AnchorBinding::Key {
                            key: cairn_spec::SigningKey::from_secret_bytes([9; 32]).unwrap().public(),
                            genesis_txid: state_root,
                            genesis_vout: b,
                        }
                    },
                    // The empty tree's root exactly at height 0.
                    scores_root: cairn_spec::merkle::empty_root(),
                    history: if height == 0 { cairn_spec::merkle::empty_root() } else { state_root },
                }
            },
        )
}

/// Decodes `bytes` as every object type; whatever decodes must re-encode to the same bytes.
fn decode_all_canonical(bytes: &[u8]) {
    fn check<T: Decode + Encode>(b: &[u8]) {
        if let Ok(v) = T::from_bytes(b) {
            assert_eq!(v.to_bytes(), b, "{} decoded from bytes it does not re-encode to", T::NAME);
        }
    }
    check::<TaskClass>(bytes);
    check::<Task>(bytes);
    check::<Signed<Registration>>(bytes);
    check::<Signed<Commitment>>(bytes);
    check::<Signed<Reveal>>(bytes);
    check::<SignedReceipt>(bytes);
    check::<LedgerEntry>(bytes);
    check::<SignedEpochHeader>(bytes);
    check::<ReceiptProof>(bytes);
    check::<Signed<TaskAnnouncement>>(bytes);
    check::<Signed<Claim>>(bytes);
    check::<Roster>(bytes);
    check::<GossipMessage>(bytes);
    check::<Request>(bytes);
    check::<Response>(bytes);
    let _ = AnchorPayload::from_bytes(bytes);
    let _ = AnchorPayload::from_script(bitcoin::Script::from_bytes(bytes));
    if let Ok(p) = ReceiptProof::from_bytes(bytes) {
        let _ = p.verify();
    }
}

fn round_trip<T: Decode + Encode + PartialEq + std::fmt::Debug>(v: &T) -> Result<(), TestCaseError> {
    let b = v.to_bytes();
    prop_assert_eq!(&T::from_bytes(&b).unwrap(), v);
    // Every strict prefix is refused, and so is any extra byte.
    for cut in [0, b.len() / 2, b.len().saturating_sub(1)] {
        if cut < b.len() {
            prop_assert!(T::from_bytes(&b[..cut]).is_err());
        }
    }
    let mut longer = b.clone();
    longer.push(0);
    prop_assert_eq!(T::from_bytes(&longer).unwrap_err().code(), "trailing_bytes");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    #[test]
    fn task_class_round_trips(v in task_class()) { round_trip(&v)?; }

    #[test]
    fn task_round_trips(v in task()) { round_trip(&v)?; }

    #[test]
    fn registration_round_trips(v in registration(), k in key_strategy()) {
        round_trip(&v)?;
        round_trip(&Signed::sign(v, &k, &[1; 32]))?;
    }

    #[test]
    fn commitment_and_reveal_round_trip(t in hash32(), k in key_strategy(), result in payload(), salt in any::<[u8; 32]>()) {
        let c = Commitment {
            task: t,
            worker: k.public(),
            commitment: work::commitment_value(&t, &k.public(), &result.content_hash(), &salt),
        };
        let r = Reveal { task: t, worker: k.public(), result, salt };
        prop_assert!(r.opens(&c));
        let c = Signed::sign(c, &k, &[2; 32]);
        let r = Signed::sign(r, &k, &[3; 32]);
        prop_assert!(c.verify() && r.verify());
        round_trip(&c)?;
        round_trip(&r)?;
    }

    #[test]
    fn copied_commitment_cannot_be_opened_by_the_copier(t in hash32(), a in key_strategy(), b in key_strategy(), salt in any::<[u8; 32]>()) {
        prop_assume!(a.public() != b.public());
        let result = Payload::Inline(vec![1, 2, 3]);
        let honest = Commitment { task: t, worker: a.public(), commitment: work::commitment_value(&t, &a.public(), &result.content_hash(), &salt) };
        let copied = Commitment { worker: b.public(), ..honest.clone() };
        let copied_reveal = Reveal { task: t, worker: b.public(), result, salt };
        prop_assert!(!copied_reveal.opens(&copied));
    }

    #[test]
    fn receipt_round_trips_and_signature_binds(v in receipt(), k in key_strategy()) {
        round_trip(&v)?;
        let mut body = v;
        body.coordinator = k.public();
        let s = Signed::sign(body, &k, &[4; 32]);
        prop_assert!(s.verify());
        round_trip(&s)?;
        let mut t = s.clone();
        t.body.units = t.body.units.wrapping_add(1);
        prop_assert!(!t.verify());
    }

    #[test]
    fn ledger_entry_round_trips(worker in pubkey(), locked in any::<u64>(), claimable in any::<u64>(), paid in any::<u64>()) {
        round_trip(&LedgerEntry { worker, locked, claimable, paid })?;
    }

    #[test]
    fn epoch_header_round_trips(v in header(), k in key_strategy()) {
        round_trip(&v)?;
        round_trip(&Signed::sign(v, &k, &[5; 32]))?;
    }

    #[test]
    fn anchor_payload_round_trips(height in any::<u32>(), h in hash32()) {
        let p = AnchorPayload { height, header_hash: h };
        prop_assert_eq!(AnchorPayload::from_bytes(&p.to_bytes()), Ok(p));
        prop_assert_eq!(AnchorPayload::from_script(&p.to_script()), Some(Ok(p)));
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_decode_canonically(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        decode_all_canonical(&bytes);
    }

    #[test]
    fn merkle_proofs_hold_for_random_trees(n in 1u32..300, pick in any::<prop::sample::Index>(), flip in any::<prop::sample::Index>()) {
        let leaves: Vec<Hash32> = (0..n).map(|i| sha256(&i.to_le_bytes())).collect();
        let tree = MerkleTree::new(leaves.clone());
        prop_assert_eq!(tree.root(), merkle::root(&leaves));
        let i = pick.index(n as usize) as u32;
        let p = tree.proof(i).unwrap();
        prop_assert_eq!(p.root_for(&leaves[i as usize]).unwrap(), tree.root());
        if !p.siblings.is_empty() {
            let mut bad = p.clone();
            let j = flip.index(bad.siblings.len());
            bad.siblings[j].0[0] ^= 1;
            prop_assert_ne!(bad.root_for(&leaves[i as usize]).unwrap(), tree.root());
        }
    }
}

/// Every single-byte corruption of every valid vector encoding is either refused or decodes
/// to an object that re-encodes to exactly the corrupted bytes — never a panic.
#[test]
fn mutated_vectors_never_panic() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/vectors");
    let objects: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}/objects.json")).unwrap()).unwrap();
    let proofs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}/receipt_proof.json")).unwrap()).unwrap();
    let mut encodings: Vec<Vec<u8>> = objects["valid"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| hex::decode(c["encoding"].as_str().unwrap()).unwrap())
        .collect();
    encodings.push(hex::decode(proofs["valid"][0]["proof"].as_str().unwrap()).unwrap());
    let mut tried = 0;
    for e in &encodings {
        // Every position for objects; a stride for the (long) proof.
        let step = if e.len() > 1000 { 7 } else { 1 };
        for pos in (0..e.len()).step_by(step) {
            for x in [0x01u8, 0x80, 0xff] {
                let mut m = e.clone();
                m[pos] ^= x;
                decode_all_canonical(&m);
                tried += 1;
            }
        }
    }
    assert!(tried > 5_000, "only {tried} mutations tried");
}
