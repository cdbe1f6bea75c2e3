//! Bonds: asking Bitcoin Core about a bond, when a worker registers with one (`bond_value`,
//! used by `requests`) and again for every bond that admitted a worker.
//!
//! Owns the question put to Bitcoin and the lapse it reports. Must never end an admission
//! on a failed question: only a bond Core says is spent, unconfirmed or too small.

use super::*;

/// The value of a bond's output when Bitcoin Core reports it confirmed, unspent and paying to
/// the bond key (P2TR, output key = bond key); `None` otherwise or when Core is unreachable.
pub(super) fn bond_value(rpc: &BitcoinCoreRpc, bond: &cairn_spec::Bond) -> Option<u64> {
    bond_status(rpc, bond).ok().flatten()
}

/// As [`bond_value`], telling "Core says no" (`Ok(None)`) from "Core did not answer" (`Err`).
pub(super) fn bond_status(
    rpc: &BitcoinCoreRpc,
    bond: &cairn_spec::Bond,
) -> Result<Option<u64>, cairn_anchor::ChainError> {
    use bitcoin::key::TweakedPublicKey;
    let txid = bitcoin::Txid::from_byte_array(bond.txid.0);
    let Some(info) = rpc.utxo(&bitcoin::OutPoint { txid, vout: bond.vout }, false)? else { return Ok(None) };
    let script =
        bitcoin::ScriptBuf::new_p2tr_tweaked(TweakedPublicKey::dangerous_assume_tweaked(bond.key.x_only()));
    Ok((info.confirmations >= 1 && info.script_pubkey == script).then(|| info.value.to_sat()))
}

impl Ctx {
    /// Asks Bitcoin Core about every bond that admitted a worker: one that is spent, no longer
    /// confirmed, or now below the minimum ends that worker's admission. When Core cannot be
    /// reached nothing is decided (a node outage is not a spent bond).
    pub(super) async fn recheck_bonds(&self) -> Result<(), NodeError> {
        let Some(rpc) = self.bond_rpc.clone() else { return Ok(()) };
        // Each bond with the least value it must keep, and whether it backs a validator.
        let bonds: Vec<(cairn_spec::PubKey, cairn_spec::Bond, u64, bool)> = match self.core.lock() {
            Ok(c) => {
                let m = c.machine();
                let t = &m.config().tunables;
                let workers = m.bonded_workers().into_iter().map(|(k, b)| (k, b, t.bond_min_sats, false));
                let validators = m
                    .bonded_validators()
                    .into_iter()
                    .map(|(k, b)| (k, b, t.validator_stake_min_sats.max(1), true));
                workers.chain(validators).collect()
            }
            Err(_) => return Ok(()),
        };
        if bonds.is_empty() {
            return Ok(());
        }
        let lost = tokio::task::spawn_blocking(move || {
            bonds
                .into_iter()
                .filter_map(|(w, b, min, validator)| match bond_status(&rpc, &b) {
                    Ok(Some(v)) if v >= min => None,
                    Ok(Some(v)) => Some((
                        w,
                        validator,
                        format!(
                            "bond output {}:{} holds {v} sats, below {min}",
                            bitcoin::Txid::from_byte_array(b.txid.0),
                            b.vout
                        ),
                    )),
                    Ok(None) => Some((
                        w,
                        validator,
                        format!(
                            "bond output {}:{} is spent or no longer confirmed",
                            bitcoin::Txid::from_byte_array(b.txid.0),
                            b.vout
                        ),
                    )),
                    Err(e) => {
                        tracing::debug!(target: "cairn::node", error = %e, "bond re-check postponed");
                        None
                    }
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for (w, validator, why) in lost {
            tracing::warn!(target: "cairn::node", key = %w, validator, reason = %why, "bond lost: admission ended");
            let now = unix_secs();
            let lapse = move |m: &mut crate::lifecycle::Machine| match validator {
                true => m.validator_bond_lost(&w, why, now),
                false => m.bond_lost(&w, why, now),
            };
            match self.apply(move |m| Ok(((), lapse(m)))).await {
                Ok(((), effects)) => self.perform(effects).await,
                Err(e @ (CoreError::Store(_) | CoreError::Poisoned)) => return Err(e.into()),
                Err(_) => {}
            }
        }
        Ok(())
    }
}
