//! `cargo bench --workspace --bench audit`: how fast an auditor re-verifies an epoch offline.
//! An epoch of 100,000 receipts (64 workers, signed as the coordinator signs them: batches
//! of 256 under one BIP340 signature each) with its header and ledger snapshot is checked by
//! `cairn_audit::epoch::check_epoch`, the checks `cairn audit epoch` and followers run
//! (every receipt's batch signature, its epoch, network and coordinator, duplicates, the
//! receipts root, the totals, the state root). Prints receipts per second, and the same as a
//! ratio to the BIP340 verifications per second measured in the same run (what checking every
//! receipt's own signature would allow). Asserts only that the epoch verifies.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::indexing_slicing,
    missing_docs
)]

use std::time::Instant;

use cairn_spec::draw::{self, Roster};
use cairn_spec::merkle::{self, Frontier};
use cairn_spec::{
    AnchorBinding, Beacon, EpochHeader, Hash32, LedgerEntry, Network, Signed, SignedReceipt, SigningKey,
    Verdict, WorkReceipt,
};

fn key(i: u32) -> SigningKey {
    let mut b = [0u8; 32];
    b[..4].copy_from_slice(&(i + 1).to_be_bytes());
    b[31] = 9;
    SigningKey::from_secret_bytes(b).unwrap()
}

fn main() {
    let quick = std::env::args().any(|a| a == "--test" || a == "--quick");
    let n: u32 = if quick { 10_000 } else { 100_000 };
    let coord = key(0);
    let workers: Vec<_> = (1..=64).map(|i| key(i).public()).collect();
    let bodies: Vec<WorkReceipt> = (0..n)
        .map(|i| {
            let mut task = [0u8; 32];
            task[..4].copy_from_slice(&i.to_be_bytes());
            WorkReceipt {
                network: Network::Regtest,
                coordinator: coord.public(),
                epoch: 0,
                task: Hash32(task),
                class: Hash32([3; 32]),
                worker: workers[(i % 64) as usize],
                result_hash: Hash32([4; 32]),
                verdict: Verdict::Accepted,
                units: 1,
                reward_sats: 10,
                draw_epoch: 0,
            }
        })
        .collect();
    let receipts = SignedReceipt::sign_all(bodies, |id| coord.sign(id, &[1; 32]));
    let mut ledger: Vec<LedgerEntry> = workers
        .iter()
        .enumerate()
        .map(|(i, w)| {
            // What the receipts credit each worker (receipt i goes to worker i mod 64).
            let count = (n as usize + 63 - i) / 64;
            LedgerEntry { worker: *w, locked: count as u64 * 10, claimable: 0, paid: 0 }
        })
        .collect();
    ledger.sort_by_key(|e| e.worker);
    let ids: Vec<Hash32> = receipts.iter().map(SignedReceipt::id).collect();
    let header = EpochHeader {
        network: Network::Regtest,
        coordinator: coord.public(),
        height: 0,
        prev: Hash32::ZERO,
        receipts_root: merkle::root(&ids),
        state_root: cairn_spec::ledger::state_root(&ledger).unwrap(),
        receipt_count: n,
        accepted_count: n,
        reward_sats: u64::from(n) * 10,
        time: 1_767_225_600,
        draw_seed: Hash32([5; 32]),
        next_seed_hash: draw::seed_hash(&Hash32([6; 32])),
        next_roster: Roster::new(workers.clone()).root(),
        beacon: Beacon::None,
        anchor: AnchorBinding::None,
        scores_root: cairn_spec::merkle::empty_root(),
        history: Frontier::new().root(),
    };
    let header = Signed::sign(header, &coord, &[2; 32]);

    // The baseline: BIP340 verifications per second on one core, this run.
    let msg = Hash32([8; 32]);
    let sig = coord.sign(&msg, &[0; 32]);
    let reps = if quick { 500 } else { 5_000 };
    let t = Instant::now();
    for _ in 0..reps {
        assert!(cairn_spec::keys::verify(&coord.public(), &msg, &sig));
    }
    let bip340 = f64::from(reps) / t.elapsed().as_secs_f64();

    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let report = cairn_audit::epoch::check_epoch(&header, None, &Frontier::new(), &receipts, &ledger);
        best = best.min(t.elapsed().as_secs_f64());
        assert!(report.ok(), "{report:?}");
    }
    let rate = f64::from(n) / best;
    println!("offline epoch audit (cairn_audit::epoch::check_epoch), {n} receipts in batches of 256, 64 workers, one core");
    println!("  best of 3: {:.1} ms = {rate:.0} receipts/s", best * 1e3);
    println!(
        "  BIP340 verifications/s this run: {bip340:.0}; audit / verify-every-receipt = {:.1}x",
        rate / bip340
    );
    println!();
    println!("summary: offline epoch audit, receipts per second ({n}-receipt epoch) = {rate:.0}");
    println!("summary: offline epoch audit / one BIP340 verification per receipt = {:.1}x", rate / bip340);
}
