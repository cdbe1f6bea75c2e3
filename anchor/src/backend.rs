//! The chain-backend trait: everything Cairn asks of Bitcoin, behind one seam, so the anchor
//! logic runs the same against Bitcoin Core, the scripted test chain, or anything else.
//!
//! Owns the trait, its result types and the transient/permanent error split. Must never
//! hold anchor logic: a backend answers questions and relays transactions, nothing more.

use bitcoin::{Amount, Block, BlockHash, FeeRate, OutPoint, ScriptBuf, Transaction, Txid};
use thiserror::Error;

/// Why a backend call failed, split by what the caller should do about it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ChainError {
    /// Worth retrying later: the node is down, warming up, or timed out.
    #[error("transient chain error: {0}")]
    Transient(String),
    /// Retrying the same call will not help: bad answer, wrong network, refused request.
    #[error("chain error: {0}")]
    Permanent(String),
}

impl ChainError {
    /// True for errors worth retrying.
    pub fn is_transient(&self) -> bool {
        matches!(self, ChainError::Transient(_))
    }
}

/// Why the node refused a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum BroadcastError {
    /// Reaching the node failed; the transaction may or may not have been received.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// An input is unknown or already spent (a conflicting transaction won).
    #[error("inputs missing or spent: {0}")]
    InputsMissing(String),
    /// The fee is too low for relay or for replacing what it conflicts with.
    #[error("fee too low: {0}")]
    FeeTooLow(String),
    /// Any other policy or consensus rejection.
    #[error("rejected: {0}")]
    Rejected(String),
}

/// What the node says about its chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainInfo {
    /// Bitcoin Core's chain name: `main`, `test`, `testnet4`, `signet`, `regtest`.
    pub chain: String,
    /// Height of the best block.
    pub tip_height: u32,
    /// Hash of the best block.
    pub tip_hash: BlockHash,
    /// True while the node is still catching up.
    pub initial_block_download: bool,
    /// Headers the node knows (at least `tip_height` when it does not say).
    pub headers: u32,
    /// The node's estimate of how much of the chain it has verified, in parts per million.
    pub progress_ppm: u32,
    /// The node says it is Cairn's embedded in-process regtest chain ([`EMBEDDED_CHAIN_WARNING`]
    /// in its `warnings`), not Bitcoin Core: what is "checked against Bitcoin" is then checked
    /// against a simulation, and every screen must say so.
    pub embedded: bool,
}

/// What Cairn's embedded regtest chain puts in `warnings` (getblockchaininfo,
/// getnetworkinfo), so anything reading it over RPC knows it is not Bitcoin Core.
pub const EMBEDDED_CHAIN_WARNING: &str = "embedded in-process regtest chain (not Bitcoin Core)";

/// The unspent outputs paying one script, as the node's UTXO set holds them at its tip
/// (Bitcoin Core's `scantxoutset`): what a fresh node reads instead of scanning history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputScan {
    /// Height of the block the set was read at.
    pub height: u32,
    /// Its hash.
    pub block: BlockHash,
    /// The outputs found.
    pub outputs: Vec<ScannedOutput>,
}

/// One output of an [`OutputScan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedOutput {
    /// Outpoint.
    pub outpoint: OutPoint,
    /// Value.
    pub value: Amount,
    /// Output script (the caller checks it is the one it asked for).
    pub script_pubkey: ScriptBuf,
    /// Height of the block that holds it.
    pub height: u32,
    /// True for a coinbase output.
    pub coinbase: bool,
}

/// An unspent output as the node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UtxoInfo {
    /// Value.
    pub value: Amount,
    /// Output script.
    pub script_pubkey: ScriptBuf,
    /// Confirmations (0 for a mempool output).
    pub confirmations: u32,
    /// True for a coinbase output.
    pub coinbase: bool,
}

/// Everything the anchor logic, payouts and the verifier need from Bitcoin.
pub trait ChainBackend {
    /// Chain name, tip and sync state.
    fn chain_info(&self) -> Result<ChainInfo, ChainError>;
    /// Hash of the best-chain block at `height`, or `None` above the tip.
    fn block_hash(&self, height: u32) -> Result<Option<BlockHash>, ChainError>;
    /// A block by hash (with its transactions).
    fn block(&self, hash: &BlockHash) -> Result<Block, ChainError>;
    /// A block's header (the whole block unless the backend can do better).
    fn block_header(&self, hash: &BlockHash) -> Result<bitcoin::block::Header, ChainError> {
        Ok(self.block(hash)?.header)
    }
    /// Height of a block if it is on the best chain, `None` if it is stale or unknown.
    fn block_height(&self, hash: &BlockHash) -> Result<Option<u32>, ChainError>;
    /// A transaction: from the mempool, or from `block` when given.
    fn transaction(&self, txid: &Txid, block: Option<&BlockHash>) -> Result<Option<Transaction>, ChainError>;
    /// Every confirmed unspent output paying `script`, read from the node's UTXO set.
    fn scan_outputs(&self, script: &ScriptBuf) -> Result<OutputScan, ChainError>;
    /// An unspent output (mempool spends count as spent when `include_mempool`).
    fn utxo(&self, outpoint: &OutPoint, include_mempool: bool) -> Result<Option<UtxoInfo>, ChainError>;
    /// Fee rate to confirm within `target_blocks`, or `None` when the node has no estimate.
    fn estimate_fee(&self, target_blocks: u16) -> Result<Option<FeeRate>, ChainError>;
    /// The lowest fee rate the node relays.
    fn relay_fee(&self) -> Result<FeeRate, ChainError>;
    /// Whether the transaction is in the node's mempool.
    fn in_mempool(&self, txid: &Txid) -> Result<bool, ChainError>;
    /// Whether the mempool would accept the transaction (no broadcast).
    fn test_accept(&self, tx: &Transaction) -> Result<(), BroadcastError>;
    /// Relays the transaction. Already known to the node counts as success.
    fn broadcast(&self, tx: &Transaction) -> Result<Txid, BroadcastError>;
}

/// The Bitcoin Merkle path of the transaction at `index` in `txids` (internal byte order),
/// duplicating an odd last node as Bitcoin does. `None` when `index` is out of range.
pub fn bitcoin_merkle_path(txids: &[Txid], index: usize) -> Option<Vec<cairn_spec::Hash32>> {
    use bitcoin::hashes::Hash as _;
    if index >= txids.len() {
        return None;
    }
    let mut level: Vec<[u8; 32]> = txids.iter().map(|t| t.to_byte_array()).collect();
    let mut i = index;
    let mut path = Vec::new();
    while level.len() > 1 {
        if level.len() % 2 == 1 {
            let last = *level.last()?;
            level.push(last);
        }
        path.push(cairn_spec::Hash32(*level.get(i ^ 1)?));
        level = level
            .chunks(2)
            .map(|c| {
                let mut b = [0u8; 64];
                b[..32].copy_from_slice(c.first().map(|x| &x[..]).unwrap_or(&[0; 32]));
                b[32..].copy_from_slice(c.get(1).map(|x| &x[..]).unwrap_or(&[0; 32]));
                cairn_spec::hash::sha256d(&b).0
            })
            .collect();
        i /= 2;
    }
    Some(path)
}
