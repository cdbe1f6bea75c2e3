//! Admission: who may work. Registration by proof-of-work or by a Bitcoin UTXO bond, and the
//! end of an admission whose bond was spent.
//!
//! Owns the worker records' creation and lapse. Must never look at Bitcoin itself: bonds are
//! checked by the node and reported here.

use super::*;

impl Machine {
    /// Registers a worker (or updates its payout address with a newer registration).
    pub fn register(&mut self, reg: Verified<Registration>, now: u64) -> Result<Step, Refusal> {
        self.register_bonded(reg, None, now)
    }

    /// Registers a worker admitted by proof-of-work or by a bond. `bond_sats` is what Bitcoin
    /// Core reports for the bond's output when the driver found it confirmed, unspent and
    /// paying to the bond key (`None` when not checked or not found).
    pub fn register_bonded(
        &mut self,
        reg: Verified<Registration>,
        bond_sats: Option<u64>,
        now: u64,
    ) -> Result<Step, Refusal> {
        let signed = reg.0;
        let r = &signed.body;
        self.check_addressed(r.network, &r.coordinator, r.created_at, now)?;
        // An address no anchor can pay would leave the worker's earnings queued for ever.
        if !r.payout_address.is_empty() && !payable(&r.payout_address, self.cfg.network) {
            return Err(invalid(format!(
                "payout address {:?} is not a {} Bitcoin address",
                r.payout_address, self.cfg.network
            )));
        }
        // One key is a worker or a validator, never both (a validator would score itself).
        if self.scoring.validators.contains_key(&r.worker) {
            return Err(Refusal::Conflict("this key is registered as a validator".into()));
        }
        let bits = r.work_bits();
        if bits < self.cfg.tunables.pow_difficulty {
            let Some(bond) = &r.bond else {
                return Err(invalid(format!(
                    "registration proof-of-work has {bits} leading zero bits; this node asks for {}",
                    self.cfg.tunables.pow_difficulty
                )));
            };
            let min = self.cfg.tunables.bond_min_sats;
            if min == 0 {
                return Err(invalid("this node admits by proof-of-work only (no bonds)"));
            }
            if !bond.verify(&self.me, &r.worker) {
                return Err(invalid("bond signature does not verify"));
            }
            match bond_sats {
                None => {
                    return Err(invalid(
                        "bond output not found confirmed and unspent, paying to the bond key",
                    ))
                }
                Some(v) if v < min => {
                    return Err(invalid(format!("bond output holds {v} sats; this node asks for {min}")))
                }
                Some(_) => {}
            }
            let taken = self.workers.values().any(|w| {
                w.key() != r.worker
                    && w.registration
                        .body
                        .bond
                        .as_ref()
                        .is_some_and(|b| b.txid == bond.txid && b.vout == bond.vout)
            }) || self.scoring.validators.values().any(|v| {
                v.registration.body.bond.txid == bond.txid && v.registration.body.bond.vout == bond.vout
            });
            if taken {
                return Err(Refusal::Conflict("bond output already backs another worker".into()));
            }
        }
        let rec = match self.workers.get(&r.worker) {
            Some(w) if w.banned.is_some() => {
                return Err(Refusal::Banned(w.banned.as_ref().map(|b| b.reason.clone()).unwrap_or_default()))
            }
            // The same registration again: nothing to do, unless its bond was lost and is
            // confirmed unspent again (checked above), which re-admits the worker.
            Some(w) if w.registration.id() == signed.id() && w.bond_lost.is_none() => {
                return Ok(Step::default())
            }
            Some(w) if w.registration.id() == signed.id() => WorkerRecord { bond_lost: None, ..w.clone() },
            Some(w) if w.registration.body.created_at >= r.created_at => {
                return Err(Refusal::Conflict("a newer registration of this worker is in force".into()))
            }
            Some(w) => WorkerRecord { registration: signed, bond_lost: None, ..w.clone() },
            None => WorkerRecord {
                registration: signed,
                registered_at: now,
                streak: 0,
                accepted: 0,
                rejected: 0,
                banned: None,
                rejections: Default::default(),
                misses: 0,
                last_miss: 0,
                bond_lost: None,
            },
        };
        let before = self.workers.get(&rec.key()).map(Standing::of);
        self.standings.moved(before, Standing::of(&rec));
        self.workers.insert(rec.key(), rec.clone());
        Ok(self.finish(Step { changes: vec![Change::Worker(Box::new(rec))], effects: vec![], sync: true }))
    }

    /// What every registration (a worker's or a validator's) must be: for this network and
    /// this coordinator, and not dated in the future.
    pub(super) fn check_addressed(
        &self,
        network: cairn_spec::Network,
        coordinator: &PubKey,
        created_at: u64,
        now: u64,
    ) -> Result<(), Refusal> {
        if network != self.cfg.network {
            return Err(invalid(format!(
                "registration is for {network}, this node runs {}",
                self.cfg.network
            )));
        }
        if *coordinator != self.me {
            return Err(invalid("registration names another coordinator"));
        }
        if created_at > now.saturating_add(self.cfg.tunables.clock_skew_secs) {
            return Err(invalid("registration is dated in the future"));
        }
        Ok(())
    }

    /// Workers in force admitted by a bond rather than by proof-of-work, with their bonds:
    /// what the node re-checks against Bitcoin, since a bond counts only while it is unspent.
    pub fn bonded_workers(&self) -> Vec<(PubKey, cairn_spec::Bond)> {
        self.workers
            .values()
            .filter(|w| w.banned.is_none() && w.bond_lost.is_none())
            .filter(|w| w.registration.body.work_bits() < self.cfg.tunables.pow_difficulty)
            .filter_map(|w| Some((w.key(), w.registration.body.bond.as_deref()?.clone())))
            .collect()
    }

    /// Bitcoin no longer shows a bonded worker's bond as a confirmed unspent output of at
    /// least the minimum (`why`): its admission ends and its unrevealed slots reopen. It keeps
    /// its record and locked rewards, and may register again.
    pub fn bond_lost(&mut self, worker: &PubKey, why: String, now: u64) -> Step {
        let Some(w) = self.workers.get_mut(worker) else { return Step::default() };
        if w.banned.is_some() || w.bond_lost.is_some() {
            return Step::default();
        }
        w.bond_lost = Some((why, now));
        self.standings.moved(Some(Standing::Active), Standing::Lapsed);
        let mut step =
            Step { changes: vec![Change::Worker(Box::new(w.clone()))], effects: vec![], sync: true };
        self.release_slots(worker, now, &mut step);
        self.finish(step)
    }
}

/// Whether `address` is a Bitcoin address of `network` (what a payout output can pay).
fn payable(address: &str, network: cairn_spec::Network) -> bool {
    address
        .parse::<bitcoin::Address<bitcoin::address::NetworkUnchecked>>()
        .is_ok_and(|a| a.is_valid_for_network(network.to_bitcoin()))
}
