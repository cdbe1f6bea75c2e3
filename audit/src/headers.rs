//! Bitcoin's header rules, applied offline to a run of block headers for proof bundles
//! (SPEC.md §8.4): nBits decoded as Bitcoin Core decodes them, the exact next-work rule
//! (Core's `GetNextWorkRequired`, with testnet4's minimum-difficulty blocks and BIP94), the
//! height a coinbase commits (BIP34), and connection to checkpoints copied from Core's chain
//! parameters (`src/kernel/chainparams.cpp`).
//!
//! Owns these rules and the checkpoint table. Must never ask a node anything or call a chain
//! the best one: a run of headers shows work, only a node shows the best chain.

use std::str::FromStr as _;

use bitcoin::block::Header;
use bitcoin::{BlockHash, CompactTarget, Target, Transaction, Work};
use cairn_spec::Network;

/// A block every honest chain of a network contains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Its height.
    pub height: u32,
    /// Its hash.
    pub hash: BlockHash,
    /// The chain's work up to and including it, where known: Core's `nMinimumChainWork` is
    /// the work at its assumed-valid block, and a genesis block's is its own.
    pub chain_work: Option<Work>,
}

/// Checkpoints as Bitcoin Core v31 ships them: the blocks of its assumeutxo snapshots and
/// its assumed-valid block with `nMinimumChainWork` (height, hash, chain work in hex). The
/// genesis block is added to each. Refresh from a newer Core's `chainparams.cpp`.
const MAINNET: &[(u32, &str, Option<&str>)] = &[
    (840_000, "0000000000000000000320283a032748cef8227873ff4872689bf23f1cda83a5", None),
    (880_000, "000000000000000000010b17283c3c400507969a9c2afd1dcf2082ec5cca2880", None),
    (910_000, "0000000000000000000108970acb9522ffd516eae17acddcb1bd16469194a821", None),
    (935_000, "0000000000000000000147034958af1652b2b91bba607beacc5e72a56f0fb5ee", None),
    (
        938_343,
        "00000000000000000000ccebd6d74d9194d8dcdc1d177c478e094bfad51ba5ac",
        Some("0000000000000000000000000000000000000001128750f82f4c366153a3a030"),
    ),
];
const TESTNET4: &[(u32, &str, Option<&str>)] = &[
    (90_000, "0000000002ebe8bcda020e0dd6ccfbdfac531d2f6a81457191b99fc2df2dbe3b", None),
    (120_000, "000000000bd2317e51b3c5794981c35ba894ce27d3e772d5c39ecd9cbce01dc8", None),
    (
        123_613,
        "0000000002368b1e4ee27e2e85676ae6f9f9e69579b29093e9a82c170bf7cf8a",
        Some("0000000000000000000000000000000000000000000009a0fe15d0177d086304"),
    ),
];
const SIGNET: &[(u32, &str, Option<&str>)] = &[
    (160_000, "0000003ca3c99aff040f2563c2ad8f8ec88bd0fd6b8f0895cfaf1ef90353a62c", None),
    (290_000, "0000000577f2741bb30cd9d39d6d71b023afbeb9764f6260786a97969d5c9ac0", None),
    (
        293_175,
        "00000008414aab61092ef93f1aacc54cf9e9f16af29ddad493b908a01ff5c329",
        Some("00000000000000000000000000000000000000000000000000000b463ea0a4b8"),
    ),
];

/// testnet4's BIP94: a period's first block may be at most this much older than its parent.
const MAX_TIMEWARP_SECS: i64 = 600;

/// The header rules of one network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderRules {
    /// The easiest target, as the compact bits of Core's `powLimit` (its genesis block's
    /// bits; no compact value lies between the two, so comparing with either is the same).
    pub pow_limit: CompactTarget,
    /// Blocks per difficulty period (2016).
    pub interval: u32,
    /// Seconds per block the rules aim at (600).
    pub spacing: u32,
    /// A block more than two spacings after its parent may use the easiest target (testnet4
    /// and regtest).
    pub min_difficulty_blocks: bool,
    /// Difficulty changes at period boundaries (all but regtest).
    pub retargeting: bool,
    /// testnet4's BIP94: a retarget starts from the period's first block, and a period's
    /// first block is at most ten minutes older than its parent.
    pub bip94: bool,
    /// Blocks a bundle may connect to, in height order.
    pub checkpoints: Vec<Checkpoint>,
}

impl HeaderRules {
    /// Bitcoin Core's rules and checkpoints for `network`.
    pub fn of(network: Network) -> HeaderRules {
        let genesis = bitcoin::blockdata::constants::genesis_block(network.to_bitcoin()).header;
        let table = match network {
            Network::Mainnet => MAINNET,
            Network::Testnet4 => TESTNET4,
            Network::Signet => SIGNET,
            Network::Regtest => &[],
        };
        let mut checkpoints =
            vec![Checkpoint { height: 0, hash: genesis.block_hash(), chain_work: Some(genesis.work()) }];
        // The table is constant and a unit test parses every row.
        checkpoints.extend(table.iter().filter_map(|(height, hash, work)| {
            let chain_work = match work {
                Some(w) => Some(Work::from_be_bytes(hex::decode(w).ok()?.try_into().ok()?)),
                None => None,
            };
            Some(Checkpoint { height: *height, hash: BlockHash::from_str(hash).ok()?, chain_work })
        }));
        HeaderRules {
            pow_limit: genesis.bits,
            interval: 2016,
            spacing: 600,
            min_difficulty_blocks: matches!(network, Network::Testnet4 | Network::Regtest),
            retargeting: network != Network::Regtest,
            bip94: network == Network::Testnet4,
            checkpoints,
        }
    }

    /// The easiest target.
    pub fn limit(&self) -> Target {
        core_target(self.pow_limit).unwrap_or(Target::ZERO)
    }

    /// Seconds a difficulty period aims at (two weeks).
    fn timespan(&self) -> i64 {
        i64::from(self.interval) * i64::from(self.spacing)
    }

    /// The first height of the difficulty period holding `height`.
    pub fn period_start(&self, height: u32) -> u32 {
        height - height % self.interval.max(1)
    }

    /// Checkpoints a run may rest on: all but the genesis block when the network has others.
    /// A run resting on genesis alone would leave its blocks to the first periods' difficulty,
    /// which anyone meets cheaply (2^32 hashes a header on mainnet).
    fn anchoring(&self) -> impl Iterator<Item = &Checkpoint> {
        let skip = usize::from(self.checkpoints.len() > 1);
        self.checkpoints.iter().skip(skip)
    }

    /// The checkpoint a bundle for a block at `height`, `depth` blocks deep, is built to: of
    /// the highest one at or below the block and the lowest one above it, the one needing
    /// fewer headers (below: from its period to the depth asked; above: from the block's
    /// period to the checkpoint). `None` when the network has no checkpoint.
    pub fn checkpoint_for(&self, height: u32, depth: u32) -> Option<&Checkpoint> {
        let top = height.saturating_add(depth.saturating_sub(1));
        let below = self.anchoring().filter(|c| c.height <= height).last();
        let above = self.anchoring().find(|c| c.height > height);
        let cost_below = below.map(|c| top - self.period_start(c.height));
        let cost_above = above.map(|c| top.max(c.height) - self.period_start(height));
        match (below, above) {
            (Some(b), Some(a)) => Some(if cost_below <= cost_above { b } else { a }),
            (b, a) => b.or(a),
        }
    }

    /// Checks that `headers`, the first at `first_height`, start at a difficulty period's
    /// first block, hold every checkpoint in their range with its hash, and hold at least
    /// one checkpoint other than genesis (genesis only where it is the network's one).
    /// Returns the highest held: a block at or below it is fixed by its hash, one above it is
    /// held by the work after it.
    pub fn connect(
        &self,
        first_height: u32,
        headers: &[Header],
        block_height: u32,
    ) -> Result<&Checkpoint, String> {
        if first_height % self.interval.max(1) != 0 {
            return Err(format!(
                "the headers start at height {first_height}, not at a difficulty period's first block (a multiple of {})",
                self.interval
            ));
        }
        let last = first_height.saturating_add(headers.len().saturating_sub(1) as u32);
        for c in self.checkpoints.iter().filter(|c| (first_height..=last).contains(&c.height)) {
            let at = headers.get((c.height - first_height) as usize).map(|h| h.block_hash());
            if at != Some(c.hash) {
                return Err(format!(
                    "the block at height {} is not checkpoint {}: the headers are another chain",
                    c.height, c.hash
                ));
            }
        }
        // The highest checkpoint the run holds that it may rest on.
        let held = self.anchoring().filter(|c| (first_height..=last).contains(&c.height)).last();
        held.ok_or_else(|| {
            let known: Vec<String> = self.anchoring().map(|c| c.height.to_string()).collect();
            format!(
                "the headers (heights {first_height} to {last}) do not reach a checkpoint (heights {}) that a block at height {block_height} can rest on",
                known.join(", ")
            )
        })
    }

    /// The bits the rules require of the block after `prior` (the headers from `first_height`
    /// on, the last one its parent) whose timestamp is `time`. `None` when the period's first
    /// block, which a retarget needs, is not in `prior`.
    pub fn next_bits(&self, prior: &[Header], first_height: u32, time: u32) -> Option<CompactTarget> {
        let last = prior.last()?;
        let interval = self.interval.max(1);
        let height = first_height.checked_add(prior.len() as u32)?;
        if height % interval != 0 {
            if !self.min_difficulty_blocks {
                return Some(last.bits);
            }
            if i64::from(time) > i64::from(last.time) + 2 * i64::from(self.spacing) {
                return Some(self.pow_limit);
            }
            // The last block of the period that was not an easiest-target exception.
            let mut j = prior.len() - 1;
            while j > 0 && (first_height + j as u32) % interval != 0 && prior[j].bits == self.pow_limit {
                j -= 1;
            }
            return Some(prior[j].bits);
        }
        if !self.retargeting {
            return Some(last.bits);
        }
        let first = prior.get(prior.len().checked_sub(interval as usize)?)?;
        let goal = self.timespan();
        let span = (i64::from(last.time) - i64::from(first.time)).clamp(goal / 4, goal * 4);
        let base = if self.bip94 { first.bits } else { last.bits };
        let scaled = scale(core_target(base)?, span as u64, goal as u64);
        Some(scaled.min(self.limit()).to_compact_lossy())
    }

    /// Checks every header after the first against the exact next-work rule, and testnet4's
    /// timewarp rule. `headers` start at a difficulty period's first block (see
    /// [`HeaderRules::connect`]).
    pub fn check_difficulty(&self, first_height: u32, headers: &[Header]) -> Result<(), String> {
        for i in 1..headers.len() {
            let (h, parent) = (&headers[i], &headers[i - 1]);
            let height = first_height.saturating_add(i as u32);
            if self.bip94
                && height % self.interval.max(1) == 0
                && i64::from(h.time) < i64::from(parent.time) - MAX_TIMEWARP_SECS
            {
                return Err(format!(
                    "header at height {height} starts a period more than ten minutes before its parent (BIP94 timewarp)"
                ));
            }
            let want = self.next_bits(&headers[..i], first_height, h.time).ok_or_else(|| {
                format!("header at height {height}: the first block of its period is not in the bundle")
            })?;
            if h.bits != want {
                return Err(format!(
                    "header at height {height} has bits {:#010x}; Bitcoin's rules require {:#010x}",
                    h.bits.to_consensus(),
                    want.to_consensus()
                ));
            }
        }
        Ok(())
    }
}

/// `target × numerator / denominator` in 320-bit arithmetic, saturating (for a real
/// network's limit, at most 2^234, Core's 256-bit `arith_uint256` never overflows here).
fn scale(target: Target, numerator: u64, denominator: u64) -> Target {
    let le = target.to_le_bytes();
    let mut limbs = [0u64; 5];
    for (i, l) in limbs.iter_mut().take(4).enumerate() {
        let mut b = [0u8; 8];
        b.copy_from_slice(&le[i * 8..i * 8 + 8]);
        *l = u64::from_le_bytes(b);
    }
    let mut carry = 0u128;
    for l in limbs.iter_mut() {
        let v = u128::from(*l) * u128::from(numerator) + carry;
        *l = v as u64;
        carry = v >> 64;
    }
    let d = u128::from(denominator.max(1));
    let mut rem = 0u128;
    for l in limbs.iter_mut().rev() {
        let v = (rem << 64) | u128::from(*l);
        *l = (v / d) as u64;
        rem = v % d;
    }
    if limbs[4] != 0 {
        return Target::from_be_bytes([0xff; 32]);
    }
    let mut out = [0u8; 32];
    for (i, l) in limbs.iter().take(4).enumerate() {
        out[i * 8..i * 8 + 8].copy_from_slice(&l.to_le_bytes());
    }
    Target::from_le_bytes(out)
}

/// The target `bits` encodes, as Bitcoin Core's `DeriveTarget` reads it (`arith_uint256::
/// SetCompact`): `None` when the encoding is negative, overflows 256 bits, or is zero.
pub fn core_target(bits: CompactTarget) -> Option<Target> {
    let n = bits.to_consensus();
    let size = n >> 24;
    let word = n & 0x007f_ffff;
    let negative = word != 0 && n & 0x0080_0000 != 0;
    let overflow = word != 0 && (size > 34 || (word > 0xff && size > 33) || (word > 0xffff && size > 32));
    if negative || overflow || word == 0 {
        return None;
    }
    let mut be = [0u8; 32];
    let bytes = word.to_be_bytes(); // [0, b1, b2, b3]
    for (i, b) in bytes[1..].iter().enumerate() {
        // Byte i of the 3-byte mantissa lands at position size - 1 - i from the right; below
        // the right end it is shifted out.
        let from_right = (size as i64) - 1 - i as i64;
        if (0..32).contains(&from_right) {
            be[31 - from_right as usize] = *b;
        }
    }
    let t = Target::from_be_bytes(be);
    (t != Target::ZERO).then_some(t)
}

/// The bytes a coinbase input script starts with at `height` (BIP34; Core's
/// `CScript() << nHeight`: a small-integer opcode up to 16, else a minimal number push).
pub fn bip34_prefix(height: u32) -> Vec<u8> {
    bitcoin::script::Builder::new().push_int(i64::from(height)).into_script().into_bytes()
}

/// True when `tx` is a coinbase whose input script commits `height` (BIP34).
pub fn coinbase_commits_height(tx: &Transaction, height: u32) -> bool {
    tx.is_coinbase()
        && tx.input.first().is_some_and(|i| i.script_sig.as_bytes().starts_with(&bip34_prefix(height)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use bitcoin::block::Version;
    use bitcoin::hashes::Hash as _;
    use bitcoin::TxMerkleNode;

    /// nBits as Bitcoin Core reads them: valid encodings agree with the usual decoding, and
    /// negative, overflowing or zero ones are invalid (issue 25 item 3; Core's
    /// `CheckProofOfWork_test_*` cases).
    #[test]
    fn nbits_are_decoded_as_core_does() {
        for bits in [0x1d00_ffffu32, 0x207f_ffff, 0x1703_a30c, 0x0300_8000, 0x0412_3456] {
            let c = CompactTarget::from_consensus(bits);
            assert_eq!(core_target(c), Some(Target::from_compact(c)), "{bits:#x}");
        }
        for bits in [
            0x1d80_ffffu32, // the sign bit set: negative
            !0x0080_0000,   // Core's overflow case
            0x2300_ffff,    // exponent 35
            0x2201_00ff,    // a 3-byte mantissa at exponent 34
            0x2101_0000,    // a 3-byte mantissa at exponent 33
            0x1d00_0000,    // zero
            0x0100_0012,    // shifted out entirely: zero
        ] {
            assert_eq!(core_target(CompactTarget::from_consensus(bits)), None, "{bits:#x}");
        }
    }

    /// Bitcoin Core's `pow_tests.cpp` retarget cases (real mainnet blocks).
    #[test]
    fn retargets_match_bitcoin_cores_cases() {
        let main = HeaderRules::of(Network::Mainnet);
        // (first block's time, last block's time, last bits, expected bits)
        let cases = [
            (1_261_130_161u32, 1_262_152_739u32, 0x1d00_ffffu32, 0x1d00_d86au32), // #30240..#32255
            (1_231_006_505, 1_233_061_996, 0x1d00_ffff, 0x1d00_ffff),             // capped at the limit
            (1_279_008_237, 1_279_297_671, 0x1c05_a3f4, 0x1c01_68fd),             // at most ×4 harder
            (1_263_163_443, 1_269_211_443, 0x1c38_7f6f, 0x1d00_e1fd),             // at most ×4 easier
        ];
        for (first, last, bits, want) in cases {
            // A period's headers: only the first's time and the last's time and bits count.
            let mut prior: Vec<Header> = (0..2016).map(|_| header(bits, first)).collect();
            prior[2015].time = last;
            let got = main.next_bits(&prior, 0, last + 600).unwrap();
            assert_eq!(got.to_consensus(), want, "{first} {last} {bits:#x}");
        }
        // A period's first block is needed.
        assert_eq!(main.next_bits(&vec![header(0x1d00_ffff, 0); 2015], 1, 0), None);
    }

    /// testnet4 (BIP94): the retarget starts from the period's first block, so a last block
    /// at the easiest target does not make the next period easy; an easiest-target block
    /// needs 20 minutes; inside a period the bits are those of the last ordinary block.
    #[test]
    fn testnet4_rules_follow_bip94() {
        let t4 = HeaderRules::of(Network::Testnet4);
        let hard = 0x1c00_ffffu32;
        let mut prior: Vec<Header> = (0..2016).map(|i| header(hard, 1_000_000 + i * 600)).collect();
        // The last block of the period is an easiest-target exception, 20 minutes and 1
        // second after its parent.
        prior[2015].bits = CompactTarget::from_consensus(0x1d00_ffff);
        prior[2015].time = prior[2014].time + 1201;
        assert_eq!(t4.check_difficulty(0, &prior), Ok(()));
        let span = u64::from(prior[2015].time - prior[0].time);
        let want = scale(core_target(CompactTarget::from_consensus(hard)).unwrap(), span, 1_209_600);
        assert_eq!(t4.next_bits(&prior, 0, 0).unwrap(), want.to_compact_lossy());
        // Mainnet would start from the last block's bits.
        let main = HeaderRules { bip94: false, min_difficulty_blocks: false, ..t4.clone() };
        assert_ne!(main.next_bits(&prior, 0, 0), t4.next_bits(&prior, 0, 0));
        // Inside a period: a block 20 minutes and 1 second after its parent may be easiest,
        // 20 minutes after may not; otherwise the last ordinary block's bits count, past any
        // easiest-target ones.
        let p = &prior[..3];
        let t = p[2].time;
        assert_eq!(t4.next_bits(p, 0, t + 1201).unwrap().to_consensus(), 0x1d00_ffff);
        assert_eq!(t4.next_bits(p, 0, t + 1200).unwrap().to_consensus(), hard);
        let mut q = prior[..4].to_vec();
        q[2].bits = CompactTarget::from_consensus(0x1d00_ffff);
        q[3].bits = CompactTarget::from_consensus(0x1d00_ffff);
        assert_eq!(t4.next_bits(&q, 0, q[3].time + 600).unwrap().to_consensus(), hard);
        // The timewarp rule: a period's first block at most ten minutes before its parent.
        let mut chain = prior.clone();
        let next = t4.next_bits(&chain, 0, 0).unwrap();
        chain.push(header(next.to_consensus(), chain[2015].time - 601));
        assert!(t4.check_difficulty(0, &chain).unwrap_err().contains("timewarp"));
        chain[2016].time += 1;
        assert_eq!(t4.check_difficulty(0, &chain), Ok(()));
        // The same period under mainnet's rules: the easiest-target block is refused.
        assert!(main.check_difficulty(0, &prior).unwrap_err().contains("height 2015"));
    }

    /// Core's BIP34 encoding: opcodes for 1 to 16, minimal pushes above; a real testnet3
    /// coinbase (block 926485, from Core's `blockfilters.json`) commits its height.
    #[test]
    fn coinbase_heights_are_read_as_bip34_writes_them() {
        assert_eq!(bip34_prefix(1), vec![0x51]);
        assert_eq!(bip34_prefix(16), vec![0x60]);
        assert_eq!(bip34_prefix(17), vec![0x01, 0x11]);
        assert_eq!(bip34_prefix(128), vec![0x02, 0x80, 0x00]);
        assert_eq!(bip34_prefix(926_485), vec![0x03, 0x15, 0x23, 0x0e]);
        let cb: Transaction = bitcoin::consensus::encode::deserialize(&hex::decode(
            "010000000001010000000000000000000000000000000000000000000000000000000000000000ffffffff2f0315230e0004ae03ca57043e3d1e1d0c8796bf579aef0c0000000000122f4e696e6a61506f6f6c2f5345475749542fffffffff038427a112000000001976a914876fbb82ec05caa6af7a3b5e5a983aae6c6cc6d688ac0000000000000000266a24aa21a9ed5c748e121c0fe146d973a4ac26fa4a68b0549d46ee22d25f50a5e46fe1b377ee00000000000000002952534b424c4f434b3acd16772ad61a3c5f00287480b720f6035d5e54c9efc71be94bb5e3727f1090900120000000000000000000000000000000000000000000000000000000000000000000000000",
        ).unwrap())
        .unwrap();
        assert!(coinbase_commits_height(&cb, 926_485));
        assert!(!coinbase_commits_height(&cb, 926_484));
        assert!(!coinbase_commits_height(&cb, 9_264_850));
    }

    #[test]
    fn every_shipped_checkpoint_parses_and_the_nearest_is_chosen() {
        for (net, rows) in [
            (Network::Mainnet, MAINNET.len()),
            (Network::Testnet4, TESTNET4.len()),
            (Network::Signet, SIGNET.len()),
        ] {
            let r = HeaderRules::of(net);
            assert_eq!(r.checkpoints.len(), rows + 1, "{net}");
            assert!(r.checkpoints.windows(2).all(|w| w[0].height < w[1].height), "{net}");
            assert!(r.checkpoints.last().unwrap().chain_work.is_some(), "{net}");
        }
        let main = HeaderRules::of(Network::Mainnet);
        // The one needing fewer headers, genesis never where there are others.
        assert_eq!(main.checkpoint_for(881_000, 6).unwrap().height, 880_000);
        assert_eq!(main.checkpoint_for(900_000, 6).unwrap().height, 910_000);
        assert_eq!(main.checkpoint_for(950_000, 6).unwrap().height, 938_343);
        assert_eq!(main.checkpoint_for(935_000, 6).unwrap().height, 935_000);
        assert_eq!(main.checkpoint_for(1, 6).unwrap().height, 840_000);
        let signet = HeaderRules::of(Network::Signet);
        assert_eq!(signet.checkpoint_for(170_000, 6).unwrap().height, 160_000);
        let reg = HeaderRules::of(Network::Regtest);
        assert_eq!(reg.checkpoint_for(500, 6).unwrap().height, 0);
        assert_eq!(
            reg.checkpoints[0].hash.to_string(),
            "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206"
        );
        assert_eq!(main.period_start(935_000), 933_408);
    }

    #[test]
    fn scaling_is_exact_and_saturates() {
        let t = core_target(CompactTarget::from_consensus(0x1d00_ffff)).unwrap();
        assert_eq!(scale(t, 3, 3), t);
        let max = Target::from_be_bytes([0xff; 32]);
        assert_eq!(scale(max, 4, 1), max);
        assert_eq!(
            scale(max, 1, 2),
            Target::from_be_bytes({
                let mut b = [0xff; 32];
                b[0] = 0x7f;
                b
            })
        );
    }

    /// Rules like mainnet's (retargeting, no easiest-target exceptions) at regtest's easy
    /// limit and with 16-block periods, so a test can mine a chain in milliseconds.
    fn quick_rules() -> HeaderRules {
        HeaderRules {
            pow_limit: CompactTarget::from_consensus(0x207f_ffff),
            interval: 16,
            spacing: 600,
            min_difficulty_blocks: false,
            retargeting: true,
            bip94: false,
            checkpoints: Vec::new(),
        }
    }

    /// Mines `n` headers after `chain` as an honest miner does: the bits the rules require,
    /// blocks `gaps[i % gaps.len()]` seconds apart.
    fn mine(rules: &HeaderRules, chain: &mut Vec<Header>, n: usize, gaps: &[u32]) {
        for i in 0..n {
            let parent = *chain.last().unwrap();
            let time = parent.time + gaps[i % gaps.len()];
            let bits = rules.next_bits(chain, 0, time).unwrap();
            chain.push(grind(Header {
                prev_blockhash: parent.block_hash(),
                ..header(bits.to_consensus(), time)
            }));
        }
    }

    fn grind(mut h: Header) -> Header {
        let t = core_target(h.bits).unwrap();
        while !t.is_met_by(h.block_hash()) {
            h.nonce += 1;
        }
        h
    }

    fn genesis() -> Header {
        grind(header(0x207f_ffff, 1_700_000_000))
    }

    /// Issue 25 item 3: the old rule let any change up to fourfold pass at a boundary and
    /// checked nothing else; the exact rule refuses every bits value but the one the period's
    /// timestamps give, a change inside a period, and a chain that misses its checkpoint.
    #[test]
    fn only_the_exact_difficulty_and_a_checkpointed_chain_pass() {
        let mut rules = quick_rules();
        let mut chain = vec![genesis()];
        // Fast periods make it harder, slow ones easier, within the fourfold clamp.
        mine(&rules, &mut chain, 15, &[60]);
        mine(&rules, &mut chain, 16, &[300]);
        mine(&rules, &mut chain, 32, &[900, 1500]);
        assert_eq!(rules.check_difficulty(0, &chain), Ok(()));
        let distinct: std::collections::BTreeSet<u32> = chain.iter().map(|h| h.bits.to_consensus()).collect();
        assert!(distinct.len() >= 3, "the test chain retargets: {distinct:x?}");
        // An attacker re-mines from the second boundary with easier bits than the rule gives
        // (still within fourfold, which the old check let through).
        let mut forged = chain[..32].to_vec();
        let honest = rules.next_bits(&forged, 0, forged[31].time + 600).unwrap();
        let easier = scale(core_target(honest).unwrap(), 3, 2).min(rules.limit()).to_compact_lossy();
        assert_ne!(easier, honest);
        let parent = forged[31];
        forged.push(grind(Header {
            prev_blockhash: parent.block_hash(),
            ..header(easier.to_consensus(), parent.time + 600)
        }));
        assert!(rules.check_difficulty(0, &forged).unwrap_err().contains("height 32 has bits"));
        // Bits changed inside a period.
        let mut inside = chain[..20].to_vec();
        let p = inside[19];
        inside.push(grind(Header { prev_blockhash: p.block_hash(), ..header(0x207f_ffff, p.time + 600) }));
        assert!(rules.check_difficulty(0, &inside).unwrap_err().contains("height 20"));
        // Checkpoints: the run must start at a period's first block and reach the block's.
        rules.checkpoints = vec![
            Checkpoint { height: 0, hash: chain[0].block_hash(), chain_work: None },
            Checkpoint { height: 16, hash: chain[16].block_hash(), chain_work: None },
        ];
        assert_eq!(rules.connect(0, &chain, 10).unwrap().height, 16);
        assert_eq!(rules.connect(16, &chain[16..], 40).unwrap().height, 16);
        let err = rules.connect(1, &chain[1..], 40).unwrap_err();
        assert!(err.contains("not at a difficulty period's first block"), "{err}");
        assert!(rules.connect(32, &chain[32..], 40).unwrap_err().contains("do not reach a checkpoint"));
        // The genesis checkpoint alone does not hold a block of the first period, whose
        // difficulty is the cheapest: the run must reach another.
        assert!(rules.connect(0, &chain[..12], 5).unwrap_err().contains("do not reach a checkpoint"));
        // Another chain through the checkpoint's height.
        let mut other = vec![chain[0]];
        mine(&rules, &mut other, 40, &[600]);
        assert!(rules.connect(0, &other, 20).unwrap_err().contains("another chain"));
    }

    /// A mainnet bundle cannot be made from cheap headers: a run that starts after Core's
    /// last checkpoint reaches none, one that claims a checkpoint's height holds another
    /// block there, and one built on the real genesis block for a block of the first
    /// difficulty period (2^32 hashes a header) must still reach the first checkpoint.
    #[test]
    fn a_forged_mainnet_run_reaches_no_checkpoint() {
        let main = HeaderRules::of(Network::Mainnet);
        let mut fake = vec![genesis()];
        mine(&quick_rules(), &mut fake, 40, &[600]);
        let last = main.checkpoints.last().unwrap().height;
        let after = main.period_start(last) + 2016;
        assert!(main.connect(after, &fake, after + 5).unwrap_err().contains("do not reach a checkpoint"));
        let start = main.period_start(last);
        let mut long = fake.clone();
        long.resize(2016, fake[0]);
        assert!(main.connect(start, &long, last + 1).unwrap_err().contains("another chain"));
        // (Linked, not mined: the checkpoint is checked before any proof-of-work.)
        let mut early = vec![bitcoin::blockdata::constants::genesis_block(bitcoin::Network::Bitcoin).header];
        for _ in 0..7 {
            let parent = *early.last().unwrap();
            early.push(Header { prev_blockhash: parent.block_hash(), time: parent.time + 600, ..parent });
        }
        let err = main.connect(0, &early, 1).unwrap_err();
        assert!(err.contains("do not reach a checkpoint") && err.contains("840000"), "{err}");
        // Headers at regtest's limit are easier than mainnet allows.
        assert!(core_target(fake[1].bits).unwrap() > main.limit());
    }

    fn header(bits: u32, time: u32) -> Header {
        Header {
            version: Version::TWO,
            prev_blockhash: BlockHash::all_zeros(),
            merkle_root: TxMerkleNode::all_zeros(),
            time,
            bits: CompactTarget::from_consensus(bits),
            nonce: 0,
        }
    }
}
