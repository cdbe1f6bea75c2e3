//! A scripted in-memory regtest chain for tests and demos: blocks with valid regtest
//! proof-of-work, a mempool with BIP125 replacement rules, key-path Taproot signature
//! checks, fee estimates on demand, reorgs at a chosen depth, and a switch that takes the
//! "node" down.
//!
//! Owns nothing of Cairn's logic: it only plays Bitcoin. It is not Bitcoin Core and must
//! never be presented as one — whatever runs on it says so; real-node tests use `bitcoind`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use bitcoin::absolute::LockTime;
use bitcoin::block::{Header, Version as BlockVersion};
use bitcoin::hashes::Hash as _;
use bitcoin::secp256k1::{Message, Secp256k1};
use bitcoin::sighash::{Prevouts, SighashCache, TapSighashType};
use bitcoin::transaction::Version;
use bitcoin::{
    Amount, Block, BlockHash, CompactTarget, FeeRate, OutPoint, ScriptBuf, Sequence, Transaction, TxIn,
    TxMerkleNode, TxOut, Txid, Witness,
};

use crate::backend::{
    BroadcastError, ChainBackend, ChainError, ChainInfo, OutputScan, ScannedOutput, UtxoInfo,
};

#[derive(Clone, Debug)]
struct Coin {
    out: TxOut,
    height: Option<u32>,
    coinbase: bool,
}

/// The chain's state. Use it through [`ScriptedBackend`], whose clones share one chain.
#[derive(Debug)]
pub struct ScriptedChain {
    blocks: Vec<Block>,
    stale: HashMap<BlockHash, Block>,
    mempool: Vec<Transaction>,
    fee_estimate: Option<FeeRate>,
    relay_fee: FeeRate,
    down: bool,
    faucet_nonce: u64,
    reward_script: ScriptBuf,
}

/// A shared handle to a scripted chain; implements [`ChainBackend`].
#[derive(Clone, Debug)]
pub struct ScriptedBackend(Arc<Mutex<ScriptedChain>>);

const COINBASE_MATURITY: u32 = 100;

fn coinbase(height: u32, script: ScriptBuf, value: Amount) -> Transaction {
    let mut sig = ScriptBuf::builder().push_int(i64::from(height)).into_script().into_bytes();
    sig.extend_from_slice(b"cairn-scripted");
    Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::null(),
            script_sig: ScriptBuf::from_bytes(sig),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: vec![TxOut { value, script_pubkey: script }],
    }
}

fn make_block(prev: BlockHash, height: u32, txdata: Vec<Transaction>) -> Block {
    let mut block = Block {
        header: Header {
            version: BlockVersion::from_consensus(0x2000_0000),
            prev_blockhash: prev,
            merkle_root: TxMerkleNode::all_zeros(),
            time: 1_767_225_600 + height * 600,
            bits: CompactTarget::from_consensus(0x207f_ffff),
            nonce: 0,
        },
        txdata,
    };
    block.header.merkle_root = block.compute_merkle_root().unwrap_or(TxMerkleNode::all_zeros());
    // Regtest proof-of-work is trivial; grinding keeps headers valid for offline checks.
    let target = block.header.target();
    while block.header.validate_pow(target).is_err() {
        block.header.nonce = block.header.nonce.wrapping_add(1);
    }
    block
}

impl ScriptedChain {
    /// The UTXO set after the chain and the mempool transactions not in `exclude`.
    fn utxos_excluding(&self, exclude: &HashSet<Txid>) -> HashMap<OutPoint, Coin> {
        self.utxo_set(true, exclude)
    }

    fn utxo_set(&self, with_mempool: bool, exclude: &HashSet<Txid>) -> HashMap<OutPoint, Coin> {
        let mut set = HashMap::new();
        let mut apply = |tx: &Transaction, height: Option<u32>| {
            for i in &tx.input {
                set.remove(&i.previous_output);
            }
            let txid = tx.compute_txid();
            for (vout, out) in tx.output.iter().enumerate() {
                set.insert(
                    OutPoint { txid, vout: vout as u32 },
                    Coin { out: out.clone(), height, coinbase: tx.is_coinbase() },
                );
            }
        };
        for (h, b) in self.blocks.iter().enumerate() {
            for tx in &b.txdata {
                apply(tx, Some(h as u32));
            }
        }
        if with_mempool {
            for tx in self.mempool.iter().filter(|t| !exclude.contains(&t.compute_txid())) {
                apply(tx, None);
            }
        }
        set
    }

    fn tip_height(&self) -> u32 {
        self.blocks.len().saturating_sub(1) as u32
    }

    fn tip_hash(&self) -> BlockHash {
        self.blocks.last().map(|b| b.block_hash()).unwrap_or_else(BlockHash::all_zeros)
    }

    fn in_chain(&self, txid: &Txid) -> bool {
        self.blocks.iter().any(|b| b.txdata.iter().any(|t| t.compute_txid() == *txid))
    }

    fn fee_of(&self, tx: &Transaction, coins: &HashMap<OutPoint, Coin>) -> Option<Amount> {
        let ins = tx
            .input
            .iter()
            .map(|i| coins.get(&i.previous_output).map(|c| c.out.value))
            .sum::<Option<Amount>>()?;
        let outs = tx.output.iter().map(|o| o.value).fold(Amount::ZERO, |a, b| a + b);
        ins.checked_sub(outs)
    }

    /// Mempool transactions that spend what `tx` spends, and their descendants.
    fn conflicts_of(&self, tx: &Transaction) -> (Vec<Transaction>, HashSet<Txid>) {
        let direct: Vec<Transaction> = self
            .mempool
            .iter()
            .filter(|m| {
                m.input.iter().any(|mi| tx.input.iter().any(|ti| ti.previous_output == mi.previous_output))
            })
            .cloned()
            .collect();
        let mut gone: HashSet<Txid> = direct.iter().map(|t| t.compute_txid()).collect();
        loop {
            let before = gone.len();
            for m in &self.mempool {
                if m.input.iter().any(|i| gone.contains(&i.previous_output.txid)) {
                    gone.insert(m.compute_txid());
                }
            }
            if gone.len() == before {
                break;
            }
        }
        (direct, gone)
    }

    /// Checks `tx` against the chain and mempool; returns the mempool txids it evicts.
    fn check(&self, tx: &Transaction) -> Result<HashSet<Txid>, BroadcastError> {
        let (conflicts, gone) = self.conflicts_of(tx);
        let view = self.utxos_excluding(&gone);
        let mut prevouts = Vec::new();
        for i in &tx.input {
            let coin = view.get(&i.previous_output).ok_or_else(|| {
                BroadcastError::InputsMissing(format!("bad-txns-inputs-missingorspent {}", i.previous_output))
            })?;
            if coin.coinbase && coin.height.is_none_or(|h| self.tip_height() + 1 - h < COINBASE_MATURITY) {
                return Err(BroadcastError::Rejected("bad-txns-premature-spend-of-coinbase".into()));
            }
            prevouts.push(coin.out.clone());
        }
        let secp = Secp256k1::verification_only();
        let mut cache = SighashCache::new(tx);
        for (idx, (input, prev)) in tx.input.iter().zip(&prevouts).enumerate() {
            if prev.script_pubkey.is_p2tr() {
                let key = bitcoin::key::TweakedPublicKey::dangerous_assume_tweaked(
                    bitcoin::XOnlyPublicKey::from_slice(
                        prev.script_pubkey.as_bytes().get(2..34).unwrap_or_default(),
                    )
                    .map_err(|e| BroadcastError::Rejected(e.to_string()))?,
                );
                let sig_bytes = input.witness.nth(0).unwrap_or_default();
                let sig = bitcoin::secp256k1::schnorr::Signature::from_slice(sig_bytes).map_err(|_| {
                    BroadcastError::Rejected(
                        "mandatory-script-verify-flag-failed (bad signature encoding)".into(),
                    )
                })?;
                let sighash = cache
                    .taproot_key_spend_signature_hash(idx, &Prevouts::All(&prevouts), TapSighashType::Default)
                    .map_err(|e| BroadcastError::Rejected(e.to_string()))?;
                secp.verify_schnorr(&sig, &Message::from(sighash), &key.to_x_only_public_key()).map_err(
                    |_| {
                        BroadcastError::Rejected(
                            "mandatory-script-verify-flag-failed (Invalid Schnorr signature)".into(),
                        )
                    },
                )?;
            }
        }
        let ins = prevouts.iter().map(|p| p.value).fold(Amount::ZERO, |a, b| a + b);
        let outs = tx.output.iter().map(|o| o.value).fold(Amount::ZERO, |a, b| a + b);
        let fee =
            ins.checked_sub(outs).ok_or_else(|| BroadcastError::Rejected("bad-txns-in-belowout".into()))?;
        let vsize = tx.vsize() as u64;
        if fee < crate::tx::fee_for(self.relay_fee, tx.weight()) {
            return Err(BroadcastError::FeeTooLow("min relay fee not met".into()));
        }
        if !conflicts.is_empty() {
            let mut conflict_fee = Amount::ZERO;
            for c in &conflicts {
                let cf = self.fee_of(c, &view).unwrap_or(Amount::ZERO);
                let c_vsize = c.vsize() as u64;
                if fee.to_sat() * c_vsize <= cf.to_sat() * vsize {
                    return Err(BroadcastError::FeeTooLow(
                        "insufficient fee: replacement feerate not higher".into(),
                    ));
                }
                conflict_fee += cf;
            }
            if fee < conflict_fee + crate::tx::fee_for(self.relay_fee, tx.weight()) {
                return Err(BroadcastError::FeeTooLow("insufficient fee: rejecting replacement".into()));
            }
        }
        Ok(gone)
    }

    fn mine_block(&mut self, txs: Vec<Transaction>, reward: Option<(ScriptBuf, Amount)>) -> BlockHash {
        let height = self.tip_height() + 1;
        let (script, value) =
            reward.unwrap_or((self.reward_script.clone(), Amount::from_sat(50 * 100_000_000)));
        let mut txdata = vec![coinbase(height, script, value)];
        txdata.extend(txs);
        let block = make_block(self.tip_hash(), height, txdata);
        let hash = block.block_hash();
        let included: HashSet<Txid> = block.txdata.iter().map(|t| t.compute_txid()).collect();
        self.mempool.retain(|t| !included.contains(&t.compute_txid()));
        self.blocks.push(block);
        hash
    }
}

impl ScriptedBackend {
    /// A chain with only a genesis block.
    pub fn new() -> Self {
        // Regtest's own genesis block, so offline bundles connect to the checkpoint every
        // regtest chain shares.
        let genesis = bitcoin::blockdata::constants::genesis_block(bitcoin::Network::Regtest);
        ScriptedBackend(Arc::new(Mutex::new(ScriptedChain {
            blocks: vec![genesis],
            stale: HashMap::new(),
            mempool: Vec::new(),
            fee_estimate: None,
            relay_fee: FeeRate::from_sat_per_vb_u32(1),
            down: false,
            faucet_nonce: 0,
            reward_script: ScriptBuf::new_op_return([0u8; 0]),
        })))
    }

    fn lock(&self) -> MutexGuard<'_, ScriptedChain> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Best height.
    pub fn height(&self) -> u32 {
        self.lock().tip_height()
    }

    /// Mines `n` blocks holding everything in the mempool.
    pub fn mine(&self, n: u32) -> Vec<BlockHash> {
        let mut c = self.lock();
        (0..n)
            .map(|_| {
                let txs = std::mem::take(&mut c.mempool);
                c.mine_block(txs, None)
            })
            .collect()
    }

    /// Mines `n` blocks whose coinbase pays `script` (coinbase maturity applies).
    pub fn mine_to(&self, script: &ScriptBuf, n: u32) {
        let mut c = self.lock();
        for _ in 0..n {
            let txs = std::mem::take(&mut c.mempool);
            c.mine_block(txs, Some((script.clone(), Amount::from_sat(50 * 100_000_000))));
        }
    }

    /// Mines one block with exactly `txs` (taken out of the mempool if there); the rest of
    /// the mempool stays — how a test leaves an anchor out of blocks.
    pub fn mine_with(&self, txs: Vec<Transaction>) -> BlockHash {
        self.lock().mine_block(txs, None)
    }

    /// Mines `n` blocks that include nothing from the mempool.
    pub fn mine_empty(&self, n: u32) {
        let mut c = self.lock();
        for _ in 0..n {
            c.mine_block(Vec::new(), None);
        }
    }

    /// Pays `amount` to `script` from nowhere, in a new block; returns the outpoint.
    pub fn fund(&self, script: &ScriptBuf, amount: Amount) -> OutPoint {
        let mut c = self.lock();
        c.faucet_nonce += 1;
        let tx = Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint {
                    txid: Txid::from_byte_array(cairn_spec::hash::sha256(&c.faucet_nonce.to_be_bytes()).0),
                    vout: 0,
                },
                script_sig: ScriptBuf::new(),
                sequence: Sequence::MAX,
                witness: Witness::new(),
            }],
            output: vec![TxOut { value: amount, script_pubkey: script.clone() }],
        };
        let txid = tx.compute_txid();
        c.mine_block(vec![tx], None);
        OutPoint { txid, vout: 0 }
    }

    /// Removes the top `n` blocks (like `invalidateblock`); their transactions go back to the
    /// mempool when still valid. Mine afterwards to build the competing branch.
    pub fn disconnect(&self, n: u32) {
        let mut c = self.lock();
        let mut returned = Vec::new();
        for _ in 0..n {
            if c.blocks.len() <= 1 {
                break;
            }
            if let Some(b) = c.blocks.pop() {
                returned.extend(b.txdata.iter().filter(|t| !t.is_coinbase()).cloned());
                c.stale.insert(b.block_hash(), b);
            }
        }
        let old_mempool = std::mem::take(&mut c.mempool);
        for tx in returned.into_iter().rev().chain(old_mempool) {
            // Faucet transactions spend nothing real: they only come back through `fund`.
            if let Ok(replaced) = c.check(&tx) {
                c.mempool.retain(|m| !replaced.contains(&m.compute_txid()));
                c.mempool.push(tx);
            }
        }
    }

    /// Transactions in the mempool.
    pub fn mempool(&self) -> Vec<Transaction> {
        self.lock().mempool.clone()
    }

    /// Drops a transaction from the mempool (a node that forgot it).
    pub fn evict(&self, txid: &Txid) {
        self.lock().mempool.retain(|t| t.compute_txid() != *txid);
    }

    /// Sets the fee estimate (`None`: no estimate, as on a fresh regtest node).
    pub fn set_fee_estimate(&self, rate: Option<FeeRate>) {
        self.lock().fee_estimate = rate;
    }

    /// Takes the node down (every call fails transiently) or brings it back.
    pub fn set_down(&self, down: bool) {
        self.lock().down = down;
    }

    /// Whether `txid` is in a best-chain block.
    pub fn is_confirmed(&self, txid: &Txid) -> bool {
        self.lock().in_chain(txid)
    }

    fn up(&self) -> Result<MutexGuard<'_, ScriptedChain>, ChainError> {
        let c = self.lock();
        if c.down {
            return Err(ChainError::Transient("connection refused (scripted node is down)".into()));
        }
        Ok(c)
    }
}

impl Default for ScriptedBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl ChainBackend for ScriptedBackend {
    fn chain_info(&self) -> Result<ChainInfo, ChainError> {
        let c = self.up()?;
        Ok(ChainInfo {
            chain: "regtest".into(),
            tip_height: c.tip_height(),
            tip_hash: c.tip_hash(),
            initial_block_download: false,
            headers: c.tip_height(),
            progress_ppm: 1_000_000,
            // The scripted chain is what the embedded chain runs on: never Bitcoin Core.
            embedded: true,
        })
    }

    fn scan_outputs(&self, script: &ScriptBuf) -> Result<OutputScan, ChainError> {
        let c = self.up()?;
        let mut outputs: Vec<ScannedOutput> = c
            .utxo_set(false, &HashSet::new())
            .into_iter()
            .filter(|(_, coin)| coin.out.script_pubkey == *script)
            .filter_map(|(outpoint, coin)| {
                Some(ScannedOutput {
                    outpoint,
                    value: coin.out.value,
                    script_pubkey: coin.out.script_pubkey,
                    height: coin.height?,
                    coinbase: coin.coinbase,
                })
            })
            .collect();
        outputs.sort_by_key(|o| o.outpoint);
        Ok(OutputScan { height: c.tip_height(), block: c.tip_hash(), outputs })
    }

    fn block_hash(&self, height: u32) -> Result<Option<BlockHash>, ChainError> {
        Ok(self.up()?.blocks.get(height as usize).map(|b| b.block_hash()))
    }

    fn block(&self, hash: &BlockHash) -> Result<Block, ChainError> {
        let c = self.up()?;
        c.blocks
            .iter()
            .find(|b| b.block_hash() == *hash)
            .or_else(|| c.stale.get(hash))
            .cloned()
            .ok_or_else(|| ChainError::Permanent(format!("block {hash} not found")))
    }

    fn block_height(&self, hash: &BlockHash) -> Result<Option<u32>, ChainError> {
        Ok(self.up()?.blocks.iter().position(|b| b.block_hash() == *hash).map(|h| h as u32))
    }

    fn transaction(&self, txid: &Txid, block: Option<&BlockHash>) -> Result<Option<Transaction>, ChainError> {
        let c = self.up()?;
        let find = |b: &Block| b.txdata.iter().find(|t| t.compute_txid() == *txid).cloned();
        Ok(match block {
            Some(h) => {
                c.blocks.iter().find(|b| b.block_hash() == *h).or_else(|| c.stale.get(h)).and_then(find)
            }
            None => c.mempool.iter().find(|t| t.compute_txid() == *txid).cloned(),
        })
    }

    fn utxo(&self, outpoint: &OutPoint, include_mempool: bool) -> Result<Option<UtxoInfo>, ChainError> {
        let c = self.up()?;
        let tip = c.tip_height();
        Ok(c.utxo_set(include_mempool, &HashSet::new()).get(outpoint).map(|coin| UtxoInfo {
            value: coin.out.value,
            script_pubkey: coin.out.script_pubkey.clone(),
            confirmations: coin.height.map_or(0, |h| tip + 1 - h),
            coinbase: coin.coinbase,
        }))
    }

    fn estimate_fee(&self, _target_blocks: u16) -> Result<Option<FeeRate>, ChainError> {
        Ok(self.up()?.fee_estimate)
    }

    fn relay_fee(&self) -> Result<FeeRate, ChainError> {
        Ok(self.up()?.relay_fee)
    }

    fn in_mempool(&self, txid: &Txid) -> Result<bool, ChainError> {
        Ok(self.up()?.mempool.iter().any(|t| t.compute_txid() == *txid))
    }

    fn test_accept(&self, tx: &Transaction) -> Result<(), BroadcastError> {
        let c = self.up()?;
        let txid = tx.compute_txid();
        if c.in_chain(&txid) || c.mempool.iter().any(|t| t.compute_txid() == txid) {
            return Err(BroadcastError::Rejected("txn-already-known".into()));
        }
        c.check(tx).map(|_| ())
    }

    fn broadcast(&self, tx: &Transaction) -> Result<Txid, BroadcastError> {
        let mut c = self.up()?;
        let txid = tx.compute_txid();
        if c.in_chain(&txid) || c.mempool.iter().any(|t| t.compute_txid() == txid) {
            return Ok(txid);
        }
        // Evict what it replaces and everything spending those.
        let gone = c.check(tx)?;
        c.mempool.retain(|m| !gone.contains(&m.compute_txid()));
        c.mempool.push(tx.clone());
        Ok(txid)
    }
}
