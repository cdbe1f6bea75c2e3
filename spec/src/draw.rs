//! Checkable slot draws (SPEC.md §12.1): an epoch's draw seed and the commitment to it, the
//! roster of keys an epoch's draws rank, and a key's score for a task.
//!
//! Owns the draw arithmetic the coordinator draws with and auditors recompute. Must never
//! decide who is ready for a slot: readiness is the coordinator's to judge, and an auditor
//! sees which ranked keys a draw passed over.

use crate::codec::{Decode, DecodeError, Encode, Reader, Writer};
use crate::hash::{tagged_hash, Hash32, Tag};
use crate::keys::PubKey;
use crate::task::Task;

/// The commitment to a draw seed that the header before its epoch carries:
/// `tagged_hash("cairn/draw-seed", seed)`.
pub fn seed_hash(seed: &Hash32) -> Hash32 {
    tagged_hash(Tag::DrawSeed, &seed.0)
}

/// The Bitcoin block whose hash an epoch's draws mix in (SPEC.md §12.1): mined after the
/// anchor that fixed the epoch's roster and seed, so the coordinator could not know it when
/// it fixed them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Beacon {
    /// No Bitcoin block: epoch 0 (nothing committed to its draws), or a coordinator running
    /// without Bitcoin, whose draws an auditor cannot check.
    None,
    /// The block right after the one holding the anchor of the header before the epoch.
    Block {
        /// Its height.
        height: u32,
        /// Its hash, in Bitcoin's internal byte order (the reverse of how it is displayed).
        hash: Hash32,
    },
}

impl Encode for Beacon {
    fn encode(&self, w: &mut Writer) {
        match self {
            Beacon::None => {
                w.u8(0);
            }
            Beacon::Block { height, hash } => {
                w.u8(1).u32(*height).raw(&hash.0);
            }
        }
    }
}

impl Decode for Beacon {
    const NAME: &'static str = "beacon";

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8("beacon")? {
            0 => Ok(Beacon::None),
            1 => Ok(Beacon::Block { height: r.u32("beacon_height")?, hash: Hash32(r.array("beacon_hash")?) }),
            tag => Err(DecodeError::InvalidTag { field: "beacon", tag }),
        }
    }
}

/// The score of `key` in the draws for a task of class `class` whose input has content hash
/// `input` under an epoch's `seed` and `beacon`:
/// `tagged_hash("cairn/draw", seed ‖ beacon ‖ class ‖ input ‖ key)`, the beacon encoded as in
/// the header. The lowest score ranks first. Nothing the coordinator fills in when it accepts
/// a task (its nonce, its time, the requester it names) enters the score, so it cannot try
/// versions of a task until its own keys rank first; and the beacon did not exist when the
/// roster and seed were fixed.
pub fn score(seed: &Hash32, beacon: &Beacon, class: &Hash32, input: &Hash32, key: &PubKey) -> Hash32 {
    let mut w = Writer::new();
    w.raw(&seed.0);
    beacon.encode(&mut w);
    w.raw(&class.0).raw(&input.0).raw(key.as_bytes());
    tagged_hash(Tag::Draw, &w.into_bytes())
}

/// The keys an epoch's draws rank: every worker admitted when the epoch before closed, in
/// ascending byte order, each once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Roster {
    keys: Vec<PubKey>,
}

impl Roster {
    /// Most keys a roster may hold (its encoding is then 16 MB: a roster is decoded under this
    /// bound, not the 1 MiB bound of other objects).
    pub const MAX_KEYS: usize = 500_000;

    /// The roster of `keys` (sorted and deduplicated here).
    pub fn new(mut keys: Vec<PubKey>) -> Self {
        keys.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        keys.dedup();
        Roster { keys }
    }

    /// The keys, ascending.
    pub fn keys(&self) -> &[PubKey] {
        &self.keys
    }

    /// Whether `key` is on the roster.
    pub fn contains(&self, key: &PubKey) -> bool {
        self.keys.binary_search_by(|k| k.as_bytes().cmp(key.as_bytes())).is_ok()
    }

    /// Its root, which the header before the epoch commits to:
    /// `tagged_hash("cairn/roster", u32 count ‖ keys)`.
    pub fn root(&self) -> Hash32 {
        tagged_hash(Tag::Roster, &self.to_bytes())
    }

    /// The roster's keys for `task` under `seed` and `beacon`, lowest score first (ties,
    /// which need a hash collision, by key).
    pub fn ranking(&self, seed: &Hash32, beacon: &Beacon, task: &Task) -> Vec<(Hash32, PubKey)> {
        let input = task.input.content_hash();
        let mut r: Vec<(Hash32, PubKey)> =
            self.keys.iter().map(|k| (score(seed, beacon, &task.class, &input, k), *k)).collect();
        r.sort_unstable_by(|a, b| a.0 .0.cmp(&b.0 .0).then_with(|| a.1.as_bytes().cmp(b.1.as_bytes())));
        r
    }
}

impl Encode for Roster {
    fn encode(&self, w: &mut Writer) {
        w.u32(self.keys.len() as u32);
        for k in &self.keys {
            k.encode(w);
        }
    }
}

impl Decode for Roster {
    const NAME: &'static str = "roster";

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let n = r.u32("count")? as usize;
        if n > Self::MAX_KEYS {
            return Err(DecodeError::InvalidValue {
                field: "count",
                reason: "more keys than a roster may hold",
            });
        }
        let mut keys: Vec<PubKey> = Vec::with_capacity(n.min(4096));
        for _ in 0..n {
            let k = PubKey::decode(r, "key")?;
            if keys.last().is_some_and(|p| p.as_bytes() >= k.as_bytes()) {
                return Err(DecodeError::InvalidValue {
                    field: "key",
                    reason: "keys must ascend, each once",
                });
            }
            keys.push(k);
        }
        Ok(Roster { keys })
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let max = 4 + Self::MAX_KEYS * 32;
        if bytes.len() > max {
            return Err(DecodeError::TooLarge { len: bytes.len(), max });
        }
        let mut r = Reader::new(bytes);
        let v = Self::decode(&mut r)?;
        r.finish(Self::NAME)?;
        Ok(v)
    }
}
