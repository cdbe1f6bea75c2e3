//! The read side of the p2p sync protocol (SPEC.md §11.4): `GetReceipt`, `GetEpochs`,
//! `GetEpochReceipts` and `GetLedger` answered from a node's database. Coordinators and
//! followers answer the same way, so a follower can sync from either.
//!
//! Owns the mapping from a read request to stored rows and its bounds. Must never write, and
//! never serve a receipt or ledger page of an epoch that is not closed (its roots are not
//! signed yet).

use cairn_spec::wire::{MAX_EPOCHS_PER_REQUEST, MAX_LEDGER_PER_REQUEST, MAX_RECEIPTS_PER_REQUEST};
use cairn_spec::{RequestBody, ResponseBody};

use crate::lifecycle::Refusal;
use crate::lifecycle_store as ls;
use crate::store::KvStore;

/// Whether `body` is a read this module answers.
pub fn is_read(body: &RequestBody) -> bool {
    matches!(
        body,
        RequestBody::GetReceipt { .. }
            | RequestBody::GetEpochs { .. }
            | RequestBody::GetEpochReceipts { .. }
            | RequestBody::GetLedger { .. }
            | RequestBody::GetBlob { .. }
            | RequestBody::GetRounds { .. }
    )
}

fn storage(e: ls::LoadError) -> Refusal {
    tracing::error!(target: "cairn::sync", error = %e, "storage read failed");
    Refusal::Unavailable("storage read failed")
}

/// Answers a read request from `store`.
pub fn answer(store: &dyn KvStore, body: &RequestBody) -> Result<ResponseBody, Refusal> {
    match *body {
        RequestBody::GetReceipt { id } => {
            let r = ls::receipt(store, &id).map_err(storage)?;
            Ok(ResponseBody::Receipt(r.map(|(_, _, r)| Box::new(r))))
        }
        RequestBody::GetEpochs { from, count } => {
            let n = usize::from(count).min(MAX_EPOCHS_PER_REQUEST);
            Ok(ResponseBody::Epochs(ls::headers(store, from, n).map_err(storage)?))
        }
        RequestBody::GetEpochReceipts { height, from, count } => {
            if ls::header(store, height).map_err(storage)?.is_none() {
                return Err(Refusal::NotFound("closed epoch at that height"));
            }
            let n = usize::from(count).min(MAX_RECEIPTS_PER_REQUEST);
            Ok(ResponseBody::Receipts(ls::epoch_receipts_page(store, height, from, n).map_err(storage)?))
        }
        RequestBody::GetLedger { height, from, count } => {
            let snap = ls::ledger_snapshot(store, height)
                .map_err(storage)?
                .ok_or(Refusal::NotFound("closed epoch at that height"))?;
            let n = usize::from(count).min(MAX_LEDGER_PER_REQUEST);
            let entries: Vec<_> = snap.iter().skip(from as usize).take(n).cloned().collect();
            Ok(ResponseBody::Ledger { total: snap.len() as u32, entries })
        }
        RequestBody::GetBlob { hash, offset, len } => {
            let len = len.min(cairn_spec::wire::MAX_BLOB_ANSWER as u32);
            let (total, bytes) = ls::blob_range(store, &hash, offset, len)
                .map_err(storage)?
                .ok_or(Refusal::NotFound("blob"))?;
            Ok(ResponseBody::Blob { total, offset, bytes })
        }
        RequestBody::GetRounds { height } => {
            let h = ls::header(store, height)
                .map_err(storage)?
                .ok_or(Refusal::NotFound("closed epoch at that height"))?;
            let rounds = ls::rounds(store, height).map_err(storage)?;
            // Rounds that are not the ones the header commits are not served as if they were
            // (a follower holds none until it mirrored them).
            if cairn_spec::rounds::scores_root(&rounds) != h.body.scores_root {
                return Err(Refusal::NotFound("rounds of this epoch"));
            }
            // The answer must be one decodable object.
            let size: usize = rounds.iter().map(|r| cairn_spec::Encode::to_bytes(r).len()).sum();
            if rounds.len() > cairn_spec::wire::MAX_CLASSES_PER_TERMS
                || size + 64 > cairn_spec::codec::MAX_OBJECT_BYTES
            {
                return Err(Refusal::Invalid(format!(
                    "the rounds of epoch {height} take {size} bytes, more than one answer holds"
                )));
            }
            Ok(ResponseBody::Rounds(rounds))
        }
        _ => Err(Refusal::Invalid("not a read request".into())),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

    use super::*;
    use crate::follower::{Follower, Judgement};
    use crate::store::MemoryStore;

    #[test]
    fn reads_page_through_closed_epochs_and_refuse_open_ones() {
        let chain = crate::follower::tests::epochs(3);
        let store = MemoryStore::new();
        let mut f = Follower {
            coordinator: chain[0].header.body.coordinator,
            network: cairn_spec::Network::Regtest,
            tip: None,
            history: Default::default(),
            ledger: Vec::new(),
        };
        for e in &chain {
            let Judgement::Accept(b) = f.judge(e, "test", 0) else { panic!("refused") };
            store.write(&b).unwrap();
            f.accepted(e.header.clone(), e.ledger.clone());
        }
        let ask = |body| answer(&store, &body);
        let ResponseBody::Epochs(hs) = ask(RequestBody::GetEpochs { from: 1, count: 256 }).unwrap() else {
            panic!()
        };
        assert_eq!(hs, vec![chain[1].header.clone(), chain[2].header.clone()]);
        let ResponseBody::Receipts(rs) =
            ask(RequestBody::GetEpochReceipts { height: 2, from: 1, count: 1 }).unwrap()
        else {
            panic!()
        };
        assert_eq!(rs, vec![chain[2].receipts[1].clone()]);
        let ResponseBody::Receipts(rs) =
            ask(RequestBody::GetEpochReceipts { height: 2, from: 1, count: 100 }).unwrap()
        else {
            panic!()
        };
        assert_eq!(rs, chain[2].receipts[1..].to_vec(), "fewer than asked at the end");
        let ResponseBody::Ledger { total, entries } =
            ask(RequestBody::GetLedger { height: 2, from: 1, count: 10 }).unwrap()
        else {
            panic!()
        };
        assert_eq!((total as usize, entries), (chain[2].ledger.len(), chain[2].ledger[1..].to_vec()));
        // An epoch that is not closed (or does not exist) has no pages.
        for body in [
            RequestBody::GetEpochReceipts { height: 3, from: 0, count: 1 },
            RequestBody::GetLedger { height: 3, from: 0, count: 1 },
        ] {
            assert_eq!(ask(body).unwrap_err().code(), 404);
        }
        assert_eq!(ask(RequestBody::GetTerms).unwrap_err().code(), 400);
    }
}
