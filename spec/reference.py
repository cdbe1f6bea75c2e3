#!/usr/bin/env python3
"""Independent reference implementation of spec/SPEC.md, standard library only.

Written from SPEC.md's text, not from the Rust code, and run against every file in
spec/vectors/. It proves the text is enough to implement the protocol: tagged hashes (§2),
canonical encodings and their error codes (§3, §5), BIP340 signatures (§4), Merkle trees and
proofs (§6), the anchor payload (§7), receipt-proof verification down to the block Merkle
root (§8) and the OpenTimestamps operations (§9).

Usage: python3 spec/reference.py [VECTOR_DIR]      (exit status 0 when every vector checks)
"""

import hashlib
import json
import os
import sys

# ----------------------------------------------------------------------------- §2 hashes


def sha256(b):
    return hashlib.sha256(b).digest()


def sha256d(b):
    return sha256(sha256(b))


def prefix(tag):
    t = sha256(tag.encode())
    return t + t


def tagged_hash(tag, msg):
    return sha256(prefix(tag) + msg)


TAGS = [
    "cairn/content", "cairn/task-class", "cairn/task", "cairn/commitment",
    "cairn/commit-message", "cairn/reveal", "cairn/registration", "cairn/receipt",
    "cairn/ledger-entry", "cairn/merkle-node", "cairn/merkle-empty", "cairn/epoch-header",
    "cairn/task-announcement", "cairn/claim", "cairn/bond", "cairn/receipt-batch",
    "cairn/draw-seed", "cairn/roster", "cairn/draw", "cairn/score-commitment",
    "cairn/score-commit", "cairn/score-reveal", "cairn/validator-registration", "cairn/scored-round",
    "cairn/probe", "cairn/probe-answer",
]

# ----------------------------------------------------------------------------- §4 BIP340

P = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
G = (0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798,
     0x483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8)


def point_add(a, b):
    if a is None:
        return b
    if b is None:
        return a
    if a[0] == b[0] and a[1] != b[1]:
        return None
    if a == b:
        lam = 3 * a[0] * a[0] * pow(2 * a[1], P - 2, P) % P
    else:
        lam = (b[1] - a[1]) * pow(b[0] - a[0], P - 2, P) % P
    x = (lam * lam - a[0] - b[0]) % P
    return (x, (lam * (a[0] - x) - a[1]) % P)


def point_mul(pt, k):
    r = None
    while k:
        if k & 1:
            r = point_add(r, pt)
        pt = point_add(pt, pt)
        k >>= 1
    return r


def lift_x(xb):
    """The even-y point with x coordinate xb (32 bytes), or None (§4: x-only keys)."""
    x = int.from_bytes(xb, "big")
    if x >= P:
        return None
    y2 = (pow(x, 3, P) + 7) % P
    y = pow(y2, (P + 1) // 4, P)
    if y * y % P != y2:
        return None
    return (x, y if y % 2 == 0 else P - y)


def schnorr_verify(pub, msg, sig):
    pt = lift_x(pub)
    if pt is None or len(sig) != 64:
        return False
    r = int.from_bytes(sig[:32], "big")
    s = int.from_bytes(sig[32:], "big")
    if r >= P or s >= N:
        return False
    e = int.from_bytes(tagged_hash("BIP0340/challenge", sig[:32] + pub + msg), "big") % N
    R = point_add(point_mul(G, s), point_mul(pt, N - e))
    return R is not None and R[1] % 2 == 0 and R[0] == r


def pubkey_of(secret):
    return point_mul(G, int.from_bytes(secret, "big"))[0].to_bytes(32, "big")


# ----------------------------------------------------------------------------- §3 encoding


class DecodeError(Exception):
    def __init__(self, code):
        super().__init__(code)
        self.code = code


class Reader:
    def __init__(self, b):
        self.b, self.pos = b, 0

    def take(self, n):
        if self.pos + n > len(self.b):
            raise DecodeError("unexpected_end")
        out = self.b[self.pos:self.pos + n]
        self.pos += n
        return out

    def uint(self, width):
        return int.from_bytes(self.take(width), "big")

    def var(self, width, bound):
        n = self.uint(width)
        if n > bound:
            raise DecodeError("too_long")
        return self.take(n)

    def finish(self):
        if self.pos != len(self.b):
            raise DecodeError("trailing_bytes")


NETWORKS = {"mainnet": 0, "testnet4": 1, "signet": 2, "regtest": 3}
EXECUTORS = {"embedding": 1, "command": 2, "chat_completion": 3}
# (verdict, reason) per §5.7, keyed by the JSON names of the vectors.
VERDICTS = {"accepted": (1, 0), "mismatch": (2, 1), "canary_failed": (2, 2),
            "no_reveal": (2, 3), "bad_reveal": (2, 4), "invalid_result": (2, 5)}
MAX_INLINE, MAX_BLOB = 65536, 256 * 1024 * 1024


def u(n, width):
    return n.to_bytes(width, "big")


def h(s):
    return bytes.fromhex(s)


def enc_payload(p):
    if "inline" in p:
        b = h(p["inline"])
        return b"\x00" + u(len(b), 4) + b
    return b"\x01" + h(p["blob"]["hash"]) + u(p["blob"]["size"], 8)


def dec_payload(r):
    kind = r.uint(1)
    if kind == 0:
        return {"inline": r.var(4, MAX_INLINE).hex()}
    if kind == 1:
        hsh, size = r.take(32), r.uint(8)
        if size > MAX_BLOB:
            raise DecodeError("too_long")
        return {"blob": {"hash": hsh.hex(), "size": size}}
    raise DecodeError("invalid_tag")


def dec_version(r, version=1):
    if r.uint(1) != version:
        raise DecodeError("unknown_version")


def dec_network(r):
    n = r.uint(1)
    if n not in NETWORKS.values():
        raise DecodeError("invalid_tag")
    return n


def dec_key(r):
    k = r.take(32)
    if lift_x(k) is None:
        raise DecodeError("invalid_public_key")
    return k


def dec_hash(r):
    return r.take(32)


# --- addresses (§5.4: a Bitcoin address valid for the network)

B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
HRP = {0: "bc", 1: "tb", 2: "tb", 3: "bcrt"}
B58_VERSIONS = {0: (0x00, 0x05), 1: (0x6F, 0xC4), 2: (0x6F, 0xC4), 3: (0x6F, 0xC4)}


def bech32_polymod(values):
    gen = [0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3]
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= gen[i] if ((top >> i) & 1) else 0
    return chk


def valid_address(addr, network):
    low = addr.lower()
    hrp = HRP[network]
    if low.startswith(hrp + "1") and (addr == low or addr == addr.upper()):
        data = low[len(hrp) + 1:]
        if len(data) < 7 or any(c not in BECH32 for c in data):
            return False
        vals = [BECH32.index(c) for c in data]
        expand = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
        const = bech32_polymod(expand + vals)
        witver = vals[0]
        if witver > 16 or const != (1 if witver == 0 else 0x2BC830A3):
            return False
        acc, bits, prog = 0, 0, []
        for v in vals[1:-6]:
            acc, bits = (acc << 5) | v, bits + 5
            while bits >= 8:
                bits -= 8
                prog.append((acc >> bits) & 0xFF)
        if bits >= 5 or (acc & ((1 << bits) - 1)):
            return False
        return 2 <= len(prog) <= 40 and (witver != 0 or len(prog) in (20, 32))
    if any(c not in B58 for c in addr) or not addr:
        return False
    n = 0
    for c in addr:
        n = n * 58 + B58.index(c)
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    raw = b"\x00" * (len(addr) - len(addr.lstrip("1"))) + raw
    if len(raw) != 25 or sha256d(raw[:21])[:4] != raw[21:]:
        return False
    return raw[0] in B58_VERSIONS[network]


# --- objects (§5): encode from the JSON form, decode with every rule of the layout tables

def valid_class_name(s):
    return 1 <= len(s) <= 32 and all(c in "abcdefghijklmnopqrstuvwxyz0123456789._-" for c in s)


def enc_task_class(j):
    rule = j["rule"]
    if rule["kind"] == "exact_hash":
        rb = b"\x01"
    elif rule["kind"] == "cosine":
        rb = b"\x02" + u(rule["min_ppb"], 4)
    elif rule["kind"] == "cosine_each":
        rb = b"\x03" + u(rule["min_ppb"], 4) + u(rule["dim"], 2)
    else:
        raise ValueError("unknown rule kind %r" % rule["kind"])
    name = j["name"].encode()
    objective = j.get("objective", {"kind": "verified"})
    version, tail = b"\x01", b""
    if objective["kind"] != "verified":
        version = b"\x02"
        tail = (u(OBJECTIVES[objective["kind"]], 1) + u(objective["worker_budget_sats"], 8)
                + u(objective["validator_budget_sats"], 8) + u(objective["baseline"], 4) + u(objective["tolerance"], 4))
        if objective["kind"] == "latency":
            tail += u(objective["fast_ms"], 4) + u(objective["slow_ms"], 4)
    return (version + u(len(name), 1) + name + u(EXECUTORS[j["executor"]], 1) + h(j["model_hash"]) + rb
            + u(j["replication"], 1) + u(j["reward_per_unit"], 8) + u(j["max_input_bytes"], 4)
            + u(j["lease_secs"], 4) + u(j["reveal_secs"], 4) + tail)


OBJECTIVES = {"latency": 2, "quality": 3}
MAX_SLOW_MS = 600_000


def dec_task_class(r):
    version = r.uint(1)
    if version not in (1, 2):
        raise DecodeError("unknown_version")
    name = r.var(1, 32)
    try:
        ok = valid_class_name(name.decode())
    except UnicodeDecodeError:
        ok = False
    if not ok:
        raise DecodeError("invalid_value")
    if r.uint(1) not in EXECUTORS.values():
        raise DecodeError("invalid_tag")
    dec_hash(r)
    rule = r.uint(1)
    if rule in (2, 3):
        if r.uint(4) > 1_000_000_000:
            raise DecodeError("invalid_value")
        if rule == 3 and r.uint(2) == 0:
            raise DecodeError("invalid_value")
    elif rule != 1:
        raise DecodeError("invalid_tag")
    if not 1 <= r.uint(1) <= 16:
        raise DecodeError("invalid_value")
    r.uint(8)
    if r.uint(4) > MAX_BLOB:
        raise DecodeError("invalid_value")
    lease, reveal = r.uint(4), r.uint(4)
    if lease == 0 or reveal == 0:
        raise DecodeError("invalid_value")
    if version == 2:
        code = r.uint(1)
        budgets = r.uint(8), r.uint(8)
        baseline, tolerance = r.uint(4), r.uint(4)
        if code not in OBJECTIVES.values():
            raise DecodeError("invalid_tag")
        if code == OBJECTIVES["latency"]:
            fast, slow = r.uint(4), r.uint(4)
            if not fast < slow <= MAX_SLOW_MS:
                raise DecodeError("invalid_value")
        if max(budgets) > MAX_MONEY or baseline > SCORE_SCALE or tolerance > SCORE_SCALE:
            raise DecodeError("invalid_value")


def enc_task(j):
    return (b"\x01" + u(NETWORKS[j["network"]], 1) + h(j["coordinator"]) + h(j["class"]) + h(j["requester"])
            + u(j["nonce"], 8) + u(j["units"], 4) + u(j["budget_sats"], 8) + u(j["created_at"], 8)
            + enc_payload(j["input"]))


def dec_task(r):
    dec_version(r)
    dec_network(r)
    dec_key(r)
    dec_hash(r)
    dec_key(r)
    r.uint(8)
    if r.uint(4) == 0:
        raise DecodeError("invalid_value")
    r.uint(8)
    r.uint(8)
    dec_payload(r)


def enc_registration(j):
    a = j["payout_address"].encode()
    return (b"\x01" + u(NETWORKS[j["network"]], 1) + h(j["coordinator"]) + h(j["worker"]) + u(len(a), 1) + a
            + u(j["created_at"], 8) + u(j["pow_nonce"], 8) + enc_bond(j.get("bond")))


def enc_bond(b):
    if b is None:
        return b"\x00"
    return b"\x01" + h(b["txid"]) + u(b["vout"], 4) + h(b["key"]) + h(b["signature"])


def bond_message(coordinator, worker, b):
    return tagged_hash("cairn/bond", h(coordinator) + h(worker) + h(b["txid"]) + u(b["vout"], 4))


def dec_registration(r):
    dec_version(r)
    net = dec_network(r)
    dec_key(r)
    dec_key(r)
    a = r.var(1, 90)
    try:
        ok = valid_address(a.decode("ascii"), net)
    except UnicodeDecodeError:
        ok = False
    if not ok:
        raise DecodeError("invalid_value")
    r.uint(8)
    r.uint(8)
    flag = r.uint(1)
    if flag == 1:
        r.take(32)
        r.uint(4)
        dec_key(r)
        r.take(64)
    elif flag != 0:
        raise DecodeError("invalid_tag")


def enc_score_commit(j):
    return (b"\x01" + u(NETWORKS[j["network"]], 1) + h(j["coordinator"]) + h(j["class"]) + u(j["epoch"], 4)
            + h(j["validator"]) + h(j["commitment"]))


def dec_score_commit(r):
    dec_version(r)
    dec_network(r)
    dec_key(r)
    dec_hash(r)
    r.uint(4)
    dec_key(r)
    dec_hash(r)


def enc_scores(scores):
    return u(len(scores), 2) + b"".join(h(k) + u(s, 4) for k, s in scores)


def score_commitment_value(j):
    return tagged_hash("cairn/score-commitment", u(NETWORKS[j["network"]], 1) + h(j["coordinator"]) + h(j["class"])
                       + u(j["epoch"], 4) + h(j["validator"]) + enc_scores(j["scores"]) + h(j["salt"]))


def enc_validator_registration(j):
    a = j["payout_address"].encode()
    b = j["bond"]
    return (b"\x01" + u(NETWORKS[j["network"]], 1) + h(j["coordinator"]) + h(j["validator"]) + u(len(a), 1) + a
            + u(j["created_at"], 8) + h(b["txid"]) + u(b["vout"], 4) + h(b["key"]) + h(b["signature"]))


def dec_validator_registration(r):
    dec_version(r)
    net = dec_network(r)
    dec_key(r)
    dec_key(r)
    a = r.var(1, 90)
    try:
        ok = valid_address(a.decode("ascii"), net)
    except UnicodeDecodeError:
        ok = False
    if not ok:
        raise DecodeError("invalid_value")
    r.uint(8)
    r.take(32)
    r.uint(4)
    dec_key(r)
    r.take(64)


def enc_scored_round(j):
    p = j["params"]
    out = (b"\x01" + u(NETWORKS[j["network"]], 1) + h(j["coordinator"]) + h(j["class"]) + u(j["epoch"], 4)
           + u(p["worker_budget_sats"], 8) + u(p["validator_budget_sats"], 8) + u(p["baseline"], 4)
           + u(p["tolerance"], 4) + u(len(j["workers"]), 2))
    for w in j["workers"]:
        out += h(w["worker"]) + u(w["units"], 8) + u(w["score"], 4) + u(w["share_sats"], 8)
    out += u(len(j["sheets"]), 2)
    for sh in j["sheets"]:
        out += (h(sh["validator"]) + u(sh["stake"], 8) + h(sh["bond_txid"]) + u(sh["bond_vout"], 4)
                + h(sh["bond_key"]) + h(sh["bond_signature"]) + enc_scores(sh["scores"]) + h(sh["salt"]) + h(sh["signature"]) + u(sh["share_sats"], 8))
    return out + u(j["unallocated_sats"], 8)


def dec_scored_round(r):
    dec_version(r)
    dec_network(r)
    dec_key(r)
    dec_hash(r)
    r.uint(4)
    r.take(24)
    n = r.uint(2)
    if n > 1024:
        raise DecodeError("too_long")
    if n * 52 > len(r.b) - r.pos:
        raise DecodeError("unexpected_end")
    for _ in range(n):
        dec_key(r)
        r.take(20)
    n = r.uint(2)
    if n > 256:
        raise DecodeError("too_long")
    if n * 278 > len(r.b) - r.pos:
        raise DecodeError("unexpected_end")
    for _ in range(n):
        dec_key(r)
        r.take(44)
        dec_key(r)
        r.take(64)
        k = r.uint(2)
        if k > 1024:
            raise DecodeError("too_long")
        if k * 36 > len(r.b) - r.pos:
            raise DecodeError("unexpected_end")
        for _ in range(k):
            dec_key(r)
            r.uint(4)
        r.take(104)
    r.uint(8)


def check_scored_round(j):
    """§13.6: every sheet is its validator's signed reveal, and the outcome is the consensus
    of the inputs, score by score and satoshi by satoshi; each bond is signed by its key for
    this coordinator and validator, and no two sheets share a bond output."""
    outputs = set()
    for sh in j["sheets"]:
        bond = {"txid": sh["bond_txid"], "vout": sh["bond_vout"]}
        msg = bond_message(j["coordinator"], sh["validator"], bond)
        assert schnorr_verify(h(sh["bond_key"]), msg, h(sh["bond_signature"])), "bond signature"
        assert (sh["bond_txid"], sh["bond_vout"]) not in outputs, "shared bond"
        outputs.add((sh["bond_txid"], sh["bond_vout"]))
        reveal = {k: j[k] for k in ("network", "coordinator", "class", "epoch")}
        reveal.update(validator=sh["validator"], scores=sh["scores"], salt=sh["salt"])
        rid = tagged_hash("cairn/score-reveal", enc_score_reveal(reveal))
        assert schnorr_verify(h(sh["validator"]), rid, h(sh["signature"])), "sheet signature"
    sheets = [{"validator": h(sh["validator"]), "stake": sh["stake"],
               "scores": [(h(k), score) for k, score in sh["scores"]]} for sh in j["sheets"]]
    o, err = consensus(j["params"], [(h(w["worker"]), w["units"]) for w in j["workers"]], sheets)
    assert err is None, err
    assert [(w["score"], w["share_sats"]) for w in o["workers"]] == [(w["score"], w["share_sats"]) for w in j["workers"]]
    assert [v["share_sats"] for v in o["validators"]] == [sh["share_sats"] for sh in j["sheets"]]
    assert o["unallocated_sats"] == j["unallocated_sats"]


def enc_score_reveal(j):
    return (b"\x01" + u(NETWORKS[j["network"]], 1) + h(j["coordinator"]) + h(j["class"]) + u(j["epoch"], 4)
            + h(j["validator"]) + enc_scores(j["scores"]) + h(j["salt"]))


def dec_score_reveal(r):
    dec_version(r)
    dec_network(r)
    dec_key(r)
    dec_hash(r)
    r.uint(4)
    validator = dec_key(r)
    n = r.uint(2)
    if n > 1024:
        raise DecodeError("too_long")
    if n * 36 > len(r.b) - r.pos:
        raise DecodeError("unexpected_end")
    last = None
    for _ in range(n):
        k = dec_key(r)
        if r.uint(4) > SCORE_SCALE or (last is not None and last >= k) or k == validator:
            raise DecodeError("invalid_value")
        last = k
    r.take(32)


def enc_commitment(j):
    return b"\x01" + h(j["task"]) + h(j["worker"]) + h(j["commitment"])


def dec_commitment(r):
    dec_version(r)
    dec_hash(r)
    dec_key(r)
    dec_hash(r)


def enc_reveal(j):
    return b"\x01" + h(j["task"]) + h(j["worker"]) + enc_payload(j["result"]) + h(j["salt"])


def dec_reveal(r):
    dec_version(r)
    dec_hash(r)
    dec_key(r)
    dec_payload(r)
    r.take(32)


RECEIPT_BODY_LEN = 184  # §5.7: the unsigned receipt has a fixed length


def enc_receipt(j):
    v, reason = VERDICTS[j["verdict"]]
    return (b"\x02" + u(NETWORKS[j["network"]], 1) + h(j["coordinator"]) + u(j["epoch"], 4) + h(j["task"])
            + h(j["class"]) + h(j["worker"]) + h(j["result_hash"]) + u(v, 1) + u(reason, 1)
            + u(j["units"], 4) + u(j["reward_sats"], 8) + u(j["draw_epoch"], 4))


def dec_receipt(r):
    """Returns the fields the proof verifier needs."""
    start = r.pos
    dec_version(r, 2)
    net = dec_network(r)
    coord = dec_key(r)
    epoch = r.uint(4)
    dec_hash(r)
    dec_hash(r)
    dec_key(r)
    dec_hash(r)
    v, reason = r.uint(1), r.uint(1)
    if (v, reason) not in VERDICTS.values():
        raise DecodeError("invalid_tag")
    r.uint(4)
    if v != 1 and r.uint(8) != 0:
        raise DecodeError("invalid_value")
    elif v == 1:
        r.uint(8)
    if r.uint(4) > epoch:  # §12.1: a slot is drawn no later than its receipt's epoch
        raise DecodeError("invalid_value")
    return {"network": net, "coordinator": coord, "epoch": epoch, "body": r.b[start:r.pos]}


def enc_ledger_entry(j):
    return b"\x01" + h(j["worker"]) + u(j["locked"], 8) + u(j["claimable"], 8) + u(j["paid"], 8)


def dec_ledger_entry(r):
    dec_version(r)
    dec_key(r)
    r.uint(8)
    r.uint(8)
    r.uint(8)


def enc_beacon(j):
    if j["kind"] == "none":
        return b"\x00"
    return b"\x01" + u(j["height"], 4) + h(j["hash"])


def dec_beacon(r):
    kind = r.uint(1)
    if kind == 0:
        return {"kind": "none"}
    if kind == 1:
        height = r.uint(4)
        return {"kind": "block", "height": height, "hash": dec_hash(r).hex()}
    raise DecodeError("invalid_tag")


def enc_anchor_binding(j):
    if j["kind"] == "none":
        return b"\x00"
    return b"\x01" + h(j["key"]) + h(j["genesis_txid"]) + u(j["genesis_vout"], 4)


def dec_anchor_binding(r):
    kind = r.uint(1)
    if kind == 0:
        return {"kind": "none"}
    if kind == 1:
        key = dec_key(r)
        txid = dec_hash(r)
        vout = r.uint(4)
        return {"kind": "key", "key": key.hex(), "genesis_txid": txid.hex(), "genesis_vout": vout}
    raise DecodeError("invalid_tag")


def enc_epoch_header(j):
    return (b"\x06" + u(NETWORKS[j["network"]], 1) + h(j["coordinator"]) + u(j["height"], 4) + h(j["prev"])
            + h(j["receipts_root"]) + h(j["state_root"]) + u(j["receipt_count"], 4) + u(j["accepted_count"], 4)
            + u(j["reward_sats"], 8) + u(j["time"], 8) + h(j["draw_seed"]) + h(j["next_seed_hash"])
            + h(j["next_roster"]) + enc_beacon(j["beacon"]) + enc_anchor_binding(j["anchor"]) + h(j["scores_root"])
            + h(j["history"]))


def dec_epoch_header(r):
    start = r.pos
    dec_version(r, 6)
    net = dec_network(r)
    coord = dec_key(r)
    height = r.uint(4)
    prev = dec_hash(r)
    if (height == 0) != (prev == bytes(32)):
        raise DecodeError("invalid_value")
    receipts_root = dec_hash(r)
    dec_hash(r)
    count, accepted = r.uint(4), r.uint(4)
    if accepted > count:
        raise DecodeError("invalid_value")
    r.uint(8)
    r.uint(8)
    draw_seed, next_seed_hash, _next_roster = dec_hash(r), dec_hash(r), dec_hash(r)
    beacon = dec_beacon(r)
    if height == 0 and beacon["kind"] != "none":
        raise DecodeError("invalid_value")
    anchor = dec_anchor_binding(r)
    scores_root = dec_hash(r)  # §13.6: the empty root below height 2 (no round yet)
    if height < 2 and scores_root != tagged_hash("cairn/merkle-empty", b""):
        raise DecodeError("invalid_value")
    history = dec_hash(r)  # §5.9: the Merkle root over the hashes of the headers before it
    if height == 0 and history != tagged_hash("cairn/merkle-empty", b""):
        raise DecodeError("invalid_value")
    return {"network": net, "coordinator": coord, "height": height, "prev": prev, "anchor": anchor,
            "history": history, "draw_seed": draw_seed, "next_seed_hash": next_seed_hash,
            "receipts_root": receipts_root, "receipt_count": count, "body": r.b[start:r.pos]}


def enc_task_announcement(j):
    return b"\x01" + enc_task(j["task"]) + u(j["announced_at"], 8)


def dec_task_announcement(r):
    dec_version(r)
    dec_task(r)
    r.uint(8)


def enc_claim(j):
    return b"\x01" + h(j["task"]) + h(j["worker"]) + u(j["claimed_at"], 8)


def dec_claim(r):
    dec_version(r)
    dec_hash(r)
    dec_key(r)
    r.uint(8)


def enc_probe(j):
    i = h(j["input"])
    return (b"\x01" + u(NETWORKS[j["network"]], 1) + h(j["coordinator"]) + h(j["class"]) + h(j["validator"])
            + h(j["worker"]) + h(j["nonce"]) + u(len(i), 4) + i)


def dec_probe(r):
    dec_version(r)
    dec_network(r)
    dec_key(r)
    dec_hash(r)
    validator = dec_key(r)
    if dec_key(r) == validator:
        raise DecodeError("invalid_value")
    r.take(32)
    r.var(4, 64 * 1024)


def enc_probe_answer(j):
    o = h(j["output"])
    return b"\x01" + h(j["probe"]) + h(j["worker"]) + u(len(o), 4) + o


def dec_probe_answer(r):
    dec_version(r)
    dec_hash(r)
    dec_key(r)
    r.var(4, 256 * 1024)


def latency_score(terms, timings):
    """§13.7: a worker's score from its validator's timings of it."""
    fast, slow = terms["fast_ms"], terms["slow_ms"]
    if not fast < slow <= MAX_SLOW_MS or not timings or any(t["kind"] == "wrong" for t in timings):
        return 0
    ms = sorted(min(t["ms"], slow) if t["kind"] == "answered" else slow for t in timings)
    m = ms[(len(ms) - 1) // 2]
    if m <= fast:
        return SCORE_SCALE
    return SCORE_SCALE * (slow - m) // (slow - fast)


def check_latency(v):
    n = 0
    for c in v["cases"]:
        assert latency_score(c["terms"], c["timings"]) == c["score"], c["name"]
        n += 1
    return n


# type -> (tag of the id, encoder, decoder, signer field or None)
OBJECTS = {
    "task_class": ("cairn/task-class", enc_task_class, dec_task_class, None),
    "task": ("cairn/task", enc_task, dec_task, None),
    "registration": ("cairn/registration", enc_registration, dec_registration, "worker"),
    "commitment": ("cairn/commit-message", enc_commitment, dec_commitment, "worker"),
    "reveal": ("cairn/reveal", enc_reveal, dec_reveal, "worker"),
    "receipt": ("cairn/receipt", enc_receipt, dec_receipt, "coordinator"),
    "ledger_entry": ("cairn/ledger-entry", enc_ledger_entry, dec_ledger_entry, None),
    "epoch_header": ("cairn/epoch-header", enc_epoch_header, dec_epoch_header, "coordinator"),
    "task_announcement": ("cairn/task-announcement", enc_task_announcement, dec_task_announcement, "task"),
    "claim": ("cairn/claim", enc_claim, dec_claim, "worker"),
    "score_commit": ("cairn/score-commit", enc_score_commit, dec_score_commit, "validator"),
    "score_reveal": ("cairn/score-reveal", enc_score_reveal, dec_score_reveal, "validator"),
    "validator_registration": ("cairn/validator-registration", enc_validator_registration,
                               dec_validator_registration, "validator"),
    "scored_round": ("cairn/scored-round", enc_scored_round, dec_scored_round, None),
    "probe": ("cairn/probe", enc_probe, dec_probe, "validator"),
    "probe_answer": ("cairn/probe-answer", enc_probe_answer, dec_probe_answer, "worker"),
}


def decode_with(dec, b):
    """The error code of decoding all of b with dec (§3), or None when it decodes."""
    if len(b) > 1 << 20:
        return "too_large"
    r = Reader(b)
    try:
        dec(r)
        r.finish()
    except DecodeError as e:
        return e.code
    return None


def decode_object(ty, b):
    """Returns the error code of decoding b as ty (signed types end with a signature)."""
    _, _, dec, signer = OBJECTS[ty]
    return decode_with((lambda r: dec_signed(r, ty)) if signer else dec, b)


# ----------------------------------------------------------------------------- §6 Merkle


def node(l, r):
    return tagged_hash("cairn/merkle-node", l + r)


def merkle_root(leaves):
    if not leaves:
        return tagged_hash("cairn/merkle-empty", b"")
    level = list(leaves)
    while len(level) > 1:
        nxt = [node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def merkle_steps(index, count, siblings):
    """[(side, sibling)] bottom-up per §6.1, or raises DecodeError with the proof error code."""
    if index >= count:
        raise DecodeError("index_out_of_range")
    it, steps, i, n = iter(siblings), [], index, count
    while n > 1:
        if i % 2 == 1 or i + 1 < n:
            s = next(it, None)
            if s is None:
                raise DecodeError("path_too_short")
            steps.append(("left" if i % 2 == 1 else "right", s))
        i, n = i // 2, (n + 1) // 2
    if next(it, None) is not None:
        raise DecodeError("path_too_long")
    return steps


def merkle_fold(leaf, index, count, siblings):
    hh = leaf
    for side, s in merkle_steps(index, count, siblings):
        hh = node(s, hh) if side == "left" else node(hh, s)
    return hh


def dec_receipt_batch(r):
    """§5.7: a signed receipt's batch, (count, index, path); the path must fit the shape."""
    count = r.uint(2)
    if count == 0 or count > 256:
        raise DecodeError("invalid_value")
    index = r.uint(2)
    if index >= count:
        raise DecodeError("invalid_value")
    n = r.uint(1)
    if n > 8:
        raise DecodeError("too_long")
    path = [r.take(32) for _ in range(n)]
    try:
        merkle_steps(index, count, path)
    except DecodeError:
        raise DecodeError("invalid_value")
    return count, index, path


def enc_receipt_batch(batch):
    count, index, path = batch
    return u(count, 2) + u(index, 2) + u(len(path), 1) + b"".join(path)


def receipt_batch_id(leaf, batch):
    """§5.7: what the coordinator signs for the batch a receipt (leaf hash) sits in."""
    count, index, path = batch
    return tagged_hash("cairn/receipt-batch", u(count, 2) + merkle_fold(leaf, index, count, path))


# ----------------------------------------------------------------------------- §7 payload

MAGIC = b"CRN"


def parse_payload(data):
    """(height, header_hash) or raises DecodeError(bad_magic|wrong_length|unknown_version)."""
    if data[:3] != MAGIC:
        raise DecodeError("bad_magic")
    if len(data) != 40:
        raise DecodeError("wrong_length")
    if data[3] != 1:
        raise DecodeError("unknown_version")
    return int.from_bytes(data[4:8], "big"), data[8:40]


def cairn_script_data(script):
    """The pushed data if the script is recognised as a Cairn output (§7), else None."""
    if len(script) < 2 or script[0] != 0x6A or not 1 <= script[1] <= 0x4B or script[1] != len(script) - 2:
        return None
    data = script[2:]
    return data if data[:3] == MAGIC else None


# ----------------------------------------------------------------------------- §8 proofs


def read_compact(r):
    first = r.uint(1)
    if first < 0xFD:
        return first
    width, minimum = {0xFD: (2, 0xFD), 0xFE: (4, 0x10000), 0xFF: (8, 0x100000000)}[first]
    n = int.from_bytes(r.take(width), "little")
    if n < minimum:
        raise DecodeError("tx_decode")
    return n


def parse_tx(b, inputs=None):
    """Outputs as [(script, script_offset)] of a canonical non-witness transaction (§8.2);
    the spent outpoints (txid, vout) are appended to `inputs` when given."""
    r = Reader(b)
    try:
        r.take(4)
        n_in = read_compact(r)
        if n_in == 0:
            raise DecodeError("tx_decode")  # would be the segwit marker
        for _ in range(n_in):
            op = r.take(36)
            if inputs is not None:
                inputs.append((op[:32], int.from_bytes(op[32:], "little")))
            r.take(read_compact(r))
            r.take(4)
        outs = []
        for _ in range(read_compact(r)):
            r.take(8)
            ln = read_compact(r)
            outs.append((r.take(ln), r.pos - ln))
        r.take(4)
        r.finish()
    except DecodeError:
        raise DecodeError("tx_decode")
    return outs


def p2tr_key_script(xonly):
    """BIP86: the key-path-only P2TR script of an x-only key (output key = P + H_TapTweak(P)·G)."""
    t = int.from_bytes(tagged_hash("TapTweak", xonly), "big")
    q = point_add(lift_x(xonly), point_mul(G, t))
    return b"\x51\x20" + q[0].to_bytes(32, "big")


def decode_proof(b):
    r = Reader(b)
    p = read_proof(r)
    r.finish()
    return p


BUNDLE_MAGIC = b"cairnpb\x00"


MAX_BUNDLE_HEADERS = 50 * 2016


def bip34_prefix(height):
    """What a coinbase input script starts with at `height` (Core's `CScript() << height`)."""
    if height == 0:
        return b"\x00"
    if height <= 16:
        return bytes([0x50 + height])
    hb = height.to_bytes(4, "little").rstrip(b"\x00")
    hb += b"\x00" if hb[-1] & 0x80 else b""
    return bytes([len(hb)]) + hb


def decode_bundle(b):
    """§8.4: magic, version 2, a receipt proof, the headers before its block, its coinbase and
    that coinbase's Merkle path, then the headers above; at most 50 × 2016 headers in all."""
    r = Reader(b)
    if r.take(8) != BUNDLE_MAGIC:
        raise DecodeError("invalid_value")
    dec_version(r, 2)
    p = read_proof(r)

    def headers(limit):
        n = r.uint(4)
        if n > limit:
            raise DecodeError("too_long")
        return [r.take(80) for _ in range(n)]

    before = headers(MAX_BUNDLE_HEADERS)
    if len(before) > p["block_height"]:
        raise DecodeError("invalid_value")
    coinbase = r.var(4, 100_000)
    n = r.uint(1)
    if n > 32:
        raise DecodeError("too_long")
    coinbase_path = [r.take(32) for _ in range(n)]
    above = headers(MAX_BUNDLE_HEADERS - len(before))
    r.finish()
    return {"proof": p, "before": before, "coinbase": coinbase, "coinbase_path": coinbase_path, "above": above}


OTS_MAGIC = b"\x00OpenTimestamps\x00\x00Proof\x00\xbf\x89\xe2\xe8\x84\xe8\x92\x94"
OTS_BITCOIN = bytes.fromhex("0588960d73d71901")


def ots_varuint(n):
    out = b""
    while True:
        b, n = n & 0x7F, n >> 7
        if n == 0:
            return out + bytes([b])
        out += bytes([b | 0x80])


def ots_file(digest, ops, height):
    """§9.1: a detached timestamp file, as python-opentimestamps writes one."""
    out = OTS_MAGIC + ots_varuint(1) + b"\x08" + digest
    for op, arg in ops:
        if op == "sha256":
            out += b"\x08"
        else:
            out += (b"\xf0" if op == "append" else b"\xf1") + ots_varuint(len(arg)) + arg
    payload = ots_varuint(height)
    return out + b"\x00" + OTS_BITCOIN + ots_varuint(len(payload)) + payload


def read_proof(r):
    dec_version(r, 3)
    p = {"network": dec_network(r)}
    p["receipt"] = dec_receipt(r)
    p["receipt_batch"] = dec_receipt_batch(r)
    p["receipt_sig"] = r.take(64)
    p["receipt_index"] = r.uint(4)
    n = r.uint(1)
    if n > 32:
        raise DecodeError("too_long")
    p["receipt_path"] = [r.take(32) for _ in range(n)]
    n = r.uint(2)
    if n == 0 or n > 2:
        raise DecodeError("invalid_value" if n == 0 else "too_long")
    p["headers"] = []
    for _ in range(n):
        hd = dec_epoch_header(r)
        hd["sig"] = r.take(64)
        p["headers"].append(hd)
    n = r.uint(1)
    if n > 32:
        raise DecodeError("too_long")
    p["history_path"] = [r.take(32) for _ in range(n)]
    if r.uint(1) != 1:
        raise DecodeError("invalid_tag")
    p["tx"] = r.var(4, 100_000)
    p["tx_index"] = r.uint(4)
    n = r.uint(1)
    if n > 32:
        raise DecodeError("too_long")
    p["tx_path"] = [r.take(32) for _ in range(n)]
    p["block_header"] = r.take(80)
    p["block_height"] = r.uint(4)
    n = r.uint(4)
    if n > 1_000_000:
        raise DecodeError("too_long")
    p["spend_chain"] = [r.var(4, 100_000) for _ in range(n)]
    return p


class ProofError(Exception):
    def __init__(self, code):
        super().__init__(code)
        self.code = code


def verify_proof(p):
    """§8.3 steps 1-7. Returns (result dict, OpenTimestamps ops) or raises ProofError."""
    rc, hs = p["receipt"], p["headers"]
    # 1. network
    if rc["network"] != p["network"] or any(x["network"] != p["network"] for x in hs):
        raise ProofError("network_mismatch")
    # 2. receipt signature (over the receipt's batch, §5.7)
    leaf = tagged_hash("cairn/receipt", rc["body"])
    if not schnorr_verify(rc["coordinator"], receipt_batch_id(leaf, p["receipt_batch"]), p["receipt_sig"]):
        raise ProofError("receipt_signature")
    # 3. epoch and coordinator
    if hs[0]["height"] != rc["epoch"]:
        raise ProofError("epoch_mismatch")
    if any(x["coordinator"] != rc["coordinator"] for x in hs):
        raise ProofError("coordinator_mismatch")
    # 4. receipt inclusion
    try:
        steps = merkle_steps(p["receipt_index"], hs[0]["receipt_count"], p["receipt_path"])
    except DecodeError as e:
        raise ProofError(e.code)
    if merkle_fold(leaf, p["receipt_index"], hs[0]["receipt_count"], p["receipt_path"]) != hs[0]["receipts_root"]:
        raise ProofError("receipts_root_mismatch")
    # 5. header chain: a later anchored header holds the first in its history (§5.9)
    for x in hs:
        x["hash"] = tagged_hash("cairn/epoch-header", x["body"])
        if not schnorr_verify(x["coordinator"], x["hash"], x["sig"]):
            raise ProofError("header_signature")
    anchored, hp = hs[-1], p["history_path"]
    history_steps = []
    if len(hs) == 1:
        if hp:
            raise ProofError("history_path")
    else:
        first = hs[0]
        if anchored["height"] <= first["height"] or anchored["anchor"] != first["anchor"]:
            raise ProofError("header_link")
        try:
            history_steps = merkle_steps(first["height"], anchored["height"], hp)
        except DecodeError:
            raise ProofError("history_path")
        if merkle_fold(first["hash"], first["height"], anchored["height"], hp) != anchored["history"]:
            raise ProofError("header_link")
    # 6. anchor transaction
    try:
        outs = parse_tx(p["tx"])
    except DecodeError:
        raise ProofError("tx_decode")
    if len(p["tx"]) == 64:
        raise ProofError("tx_64_bytes")
    found = []
    for script, offset in outs:
        data = cairn_script_data(script)
        if data is None:
            continue
        try:
            payload = parse_payload(data)
        except DecodeError:
            raise ProofError("payload_invalid")
        found.append((payload, offset + 10))
    if not found:
        raise ProofError("payload_missing")
    if len(found) > 1:
        raise ProofError("payload_multiple")
    (height, header_hash), hash_offset = found[0]
    if height != anchored["height"]:
        raise ProofError("payload_height")
    if header_hash != anchored["hash"]:
        raise ProofError("payload_hash")
    # 7. the chain of spends from the genesis output the headers name (§7.1)
    binding = anchored["anchor"]
    if binding["kind"] != "key":
        raise ProofError("anchor_unbound")
    chain_script = p2tr_key_script(bytes.fromhex(binding["key"]))
    spent = (bytes.fromhex(binding["genesis_txid"]), binding["genesis_vout"])
    committed = None
    for i, raw in enumerate(p["spend_chain"] + [p["tx"]]):
        ins = []
        try:
            outs = parse_tx(raw, ins)
        except DecodeError:
            raise ProofError("spend_chain")
        if ins[0] != spent or not outs or outs[0][0] != chain_script:
            raise ProofError("spend_chain")
        if i < len(p["spend_chain"]):
            # an earlier anchor: one valid Cairn payload, epochs increasing, before the anchored one
            if len(raw) == 64:
                raise ProofError("spend_chain")
            try:
                payloads = [parse_payload(d) for d in (cairn_script_data(s) for s, _ in outs) if d is not None]
            except DecodeError:
                raise ProofError("spend_chain")
            if len(payloads) != 1:
                raise ProofError("spend_chain")
            height = payloads[0][0]
            if (committed is not None and height <= committed) or height >= anchored["height"]:
                raise ProofError("spend_chain")
            committed = height
        spent = (sha256d(raw), 0)
    # 8. block inclusion
    txid = sha256d(p["tx"])
    idx, path = p["tx_index"], p["tx_path"]
    if len(path) < 32 and idx >> len(path):
        raise ProofError("block_index")
    hh = txid
    for level, s in enumerate(path):
        hh = sha256d(s + hh) if (idx >> level) & 1 else sha256d(hh + s)
    if hh != p["block_header"][36:68]:
        raise ProofError("block_merkle_root")

    # §9: the same path as OpenTimestamps operations.
    ops = []

    def tree_ops(tree_steps):
        for side, s in tree_steps:
            if side == "left":
                ops.append(("prepend", prefix("cairn/merkle-node") + s))
            else:
                ops.extend([("prepend", prefix("cairn/merkle-node")), ("append", s)])
            ops.append(("sha256", None))

    def header_ops(body, at):
        ops.extend([("prepend", prefix("cairn/epoch-header") + body[:at]), ("append", body[at + 32:]),
                    ("sha256", None)])

    tree_ops(steps)
    header_ops(hs[0]["body"], 70)
    if len(hs) == 2:
        tree_ops(history_steps)
        header_ops(anchored["body"], len(anchored["body"]) - 32)
    ops += [("prepend", p["tx"][:hash_offset]), ("append", p["tx"][hash_offset + 32:]),
            ("sha256", None), ("sha256", None)]
    for level, s in enumerate(path):
        ops += [("prepend" if (idx >> level) & 1 else "append", s), ("sha256", None), ("sha256", None)]
    ops = [op for op in ops if op[0] == "sha256" or op[1]]
    return {
        "receipt_leaf": leaf, "epoch_height": rc["epoch"], "anchored_height": anchored["height"],
        "anchored_hash": anchored["hash"], "txid": txid, "block_hash": sha256d(p["block_header"]),
        "block_merkle_root": hh, "block_height": p["block_height"], "chain_position": len(p["spend_chain"]),
    }, ops


def apply_ops(msg, ops):
    for kind, arg in ops:
        msg = arg + msg if kind == "prepend" else msg + arg if kind == "append" else sha256(msg)
    return msg


# ----------------------------------------------------------------------------- §11 wire

WIRE_VERSION = 3
# error reason byte -> (name, HTTP-like code), the table of §11.4 (response tag 0)
ERROR_REASONS = {
    1: ("malformed", 400), 2: ("bad_signature", 400), 3: ("not_registered", 403),
    4: ("banned", 403), 5: ("lapsed", 403), 6: ("not_found", 404), 7: ("deadline_passed", 408),
    8: ("conflict", 409), 9: ("already_decided", 409), 10: ("lease_expired", 409),
    11: ("no_commitment", 409), 12: ("too_early", 425), 13: ("worker_limit", 429),
    14: ("rate_limited", 429), 15: ("busy", 503), 16: ("internal", 500),
}
# gossip kind -> (object type, topic)
GOSSIP_KINDS = {1: ("task_announcement", "tasks"), 2: ("receipt", "receipts"), 3: ("epoch_header", "epochs")}
# request tag -> object type for signed bodies
REQUEST_SIGNED = {1: "registration", 2: "claim", 3: "commitment", 4: "reveal", 11: "task_announcement",
                  12: "validator_registration", 13: "score_commit", 14: "score_reveal", 17: "probe"}


def dec_signed(r, ty):
    """A signed object of type ty: its body, then the 64-byte signature (§4); a receipt
    has its batch between the two (§5.7)."""
    OBJECTS[ty][2](r)
    if ty == "receipt":
        dec_receipt_batch(r)
    r.take(64)


def dec_gossip(r):
    if r.uint(1) != WIRE_VERSION:
        raise DecodeError("unknown_version")
    kind = r.uint(1)
    if kind not in GOSSIP_KINDS:
        raise DecodeError("invalid_tag")
    dec_signed(r, GOSSIP_KINDS[kind][0])


def dec_request(r):
    if r.uint(1) != WIRE_VERSION:
        raise DecodeError("unknown_version")
    r.uint(8)
    r.uint(8)
    tag = r.uint(1)
    if tag in REQUEST_SIGNED:
        dec_signed(r, REQUEST_SIGNED[tag])
    elif tag == 5:
        r.take(32)
        r.uint(8)
        if r.uint(4) > 1 << 20:
            raise DecodeError("too_long")
    elif tag == 6:
        r.take(32)
    elif tag == 7:
        r.uint(4)
        if r.uint(2) > 256:
            raise DecodeError("too_long")
    elif tag in (8, 16):
        pass
    elif tag in (9, 10):
        r.uint(4)
        r.uint(4)
        if r.uint(2) > (2048 if tag == 9 else 8192):
            raise DecodeError("too_long")
    elif tag == 15:
        r.uint(4)
    else:
        raise DecodeError("invalid_tag")


def dec_response(r):
    if r.uint(1) != WIRE_VERSION:
        raise DecodeError("unknown_version")
    r.uint(8)
    tag = r.uint(1)
    if tag == 0:
        if r.uint(1) not in ERROR_REASONS:
            raise DecodeError("invalid_tag")
        try:
            r.var(4, 256).decode()
        except UnicodeDecodeError:
            raise DecodeError("invalid_value")
    elif tag == 1:
        pass
    elif tag == 2:
        r.take(32)
        r.uint(8)
    elif tag == 3:
        r.uint(8)
        r.uint(8)
        r.var(4, 1 << 20)
    elif tag == 4:
        flag = r.uint(1)
        if flag == 1:
            dec_signed(r, "receipt")
        elif flag != 0:
            raise DecodeError("invalid_tag")
    elif tag == 5:
        n = r.uint(2)
        if n > 256:
            raise DecodeError("too_long")
        if n * 222 > len(r.b) - r.pos:
            raise DecodeError("unexpected_end")
        for _ in range(n):
            dec_signed(r, "epoch_header")
    elif tag == 6:
        r.uint(4)
        r.uint(8)
        n = r.uint(1)
        if n > 64:
            raise DecodeError("too_long")
        if n * 58 > len(r.b) - r.pos:
            raise DecodeError("unexpected_end")
        for _ in range(n):
            OBJECTS["task_class"][2](r)
    elif tag == 7:
        n = r.uint(2)
        if n > 2048:
            raise DecodeError("too_long")
        if n * 249 > len(r.b) - r.pos:
            raise DecodeError("unexpected_end")
        for _ in range(n):
            dec_signed(r, "receipt")
    elif tag == 8:
        r.uint(4)
        n = r.uint(2)
        if n > 8192:
            raise DecodeError("too_long")
        if n * 57 > len(r.b) - r.pos:
            raise DecodeError("unexpected_end")
        for _ in range(n):
            OBJECTS["ledger_entry"][2](r)
    elif tag == 9:
        n = r.uint(1)
        if n > 64:
            raise DecodeError("too_long")
        if n * 106 > len(r.b) - r.pos:
            raise DecodeError("unexpected_end")
        for _ in range(n):
            dec_scored_round(r)
    elif tag == 10:
        n = r.uint(2)
        if n > 1024:
            raise DecodeError("too_long")
        if n * 32 > len(r.b) - r.pos:
            raise DecodeError("unexpected_end")
        last = None
        for _ in range(n):
            k = dec_key(r)
            if last is not None and last >= k:
                raise DecodeError("invalid_value")
            last = k
    elif tag == 11:
        dec_signed(r, "probe_answer")
    else:
        raise DecodeError("invalid_tag")


WIRE = {"gossip": dec_gossip, "request": dec_request, "response": dec_response}


def decode_wire(ty, b):
    return decode_with(WIRE[ty], b)


def check_wire(v):
    n = 0
    assert v["request_protocol"] == "/cairn/%d/regtest/req" % WIRE_VERSION
    for c in v["gossip"]:
        b = h(c["encoding"])
        ty, topic = GOSSIP_KINDS[b[1]]
        assert b[0] == WIRE_VERSION and b[1] == c["kind"] and b[2:] == h(c["inner"])
        assert c["topic"] == "cairn/%d/regtest/%s" % (WIRE_VERSION, topic)
        name = c["topic"].encode()
        assert sha256(len(name).to_bytes(2, "big") + name + b).hex() == c["message_id"]
        assert decode_wire("gossip", b) is None
        inner = h(c["inner"])
        tag, _, _, _ = OBJECTS[ty]
        if ty == "receipt":
            body_len = RECEIPT_BODY_LEN
            batch = dec_receipt_batch(Reader(inner[body_len:-64]))
            oid = receipt_batch_id(tagged_hash(tag, inner[:body_len]), batch)
        else:
            oid = tagged_hash(tag, inner[:-64])
        # announcement: version, then the task (version, network, coordinator ...);
        # receipt and header: version, network, coordinator.
        signer = inner[3:35] if ty == "task_announcement" else inner[2:34]
        assert schnorr_verify(signer, oid, inner[-64:]), ty
        n += 1
    for c in v["requests"]:
        b = h(c["encoding"])
        assert b[0] == WIRE_VERSION and int.from_bytes(b[1:9], "big") == c["id"] and int.from_bytes(b[9:17], "big") == c["deadline_ms"]
        assert b[17] == c["kind"] and decode_wire("request", b) is None
        n += 1
    for c in v["responses"]:
        b = h(c["encoding"])
        assert b[0] == WIRE_VERSION and int.from_bytes(b[1:9], "big") == c["id"] and b[9] == c["kind"]
        assert decode_wire("response", b) is None
        n += 1
    # one refusal per reason: version, id, tag 0, reason byte, message len32
    assert sorted(c["reason_byte"] for c in v["errors"]) == sorted(ERROR_REASONS)
    for c in v["errors"]:
        b = h(c["encoding"])
        msg = c["message"].encode()
        assert b[0] == WIRE_VERSION and int.from_bytes(b[1:9], "big") == c["id"] and b[9] == 0
        assert b[10] == c["reason_byte"] and ERROR_REASONS[b[10]] == (c["reason"], c["code"]), c
        assert b[11:15] == len(msg).to_bytes(4, "big") and b[15:] == msg
        assert decode_wire("response", b) is None
        n += 1
    for c in v["invalid"]:
        got = decode_wire(c["type"], h(c["encoding"]))
        assert got == c["error"], (c["name"], got, c["error"])
        n += 1
    return n


# ----------------------------------------------------------------------------- vectors


def check_tagged_hash(v):
    for c in v["cases"]:
        assert c["tag"] in TAGS, c["tag"]
        assert tagged_hash(c["tag"], h(c["msg"])).hex() == c["hash"], c
    return len(v["cases"])


def check_merkle(v):
    n = 0
    assert merkle_root([]).hex() == v["empty_root"]
    for c in v["valid"]:
        leaves = [h(x) for x in c["leaves"]]
        assert merkle_root(leaves).hex() == c["root"]
        for p in c["proofs"]:
            got = merkle_fold(leaves[p["index"]], p["index"], len(leaves), [h(s) for s in p["siblings"]])
            assert got.hex() == c["root"]
            n += 1
    for c in v["invalid"]:
        try:
            got = merkle_fold(h(c["leaf"]), c["index"], c["count"], [h(s) for s in c["siblings"]])
            code = "ok" if got.hex() == c["root"] else "root_mismatch"
        except DecodeError as e:
            code = e.code
        assert code == c["error"], (c["name"], code)
        n += 1
    return n


def check_signatures(v):
    for c in v["cases"]:
        assert schnorr_verify(h(c["pubkey"]), h(c["msg"]), h(c["sig"])) == c["valid"], c
        if "secret" in c:
            assert pubkey_of(h(c["secret"])).hex() == c["pubkey"]
    return len(v["cases"])


def check_objects(v):
    n = 0
    for c in v["valid"]:
        tag, enc, _, signer = OBJECTS[c["type"]]
        body = enc(c["json"])
        full = h(c["encoding"])
        oid = tagged_hash(tag, body)
        assert oid.hex() == c["id"], c["type"]
        if signer:
            signed = oid
            if c["type"] == "receipt":
                # A receipt's signature is over its batch (§5.7).
                j = c["json"]["batch"]
                batch = (j["count"], j["index"], [h(x) for x in j["siblings"]])
                assert full[len(body):-64] == enc_receipt_batch(batch), c["type"]
                signed = receipt_batch_id(oid, batch)
                assert signed.hex() == c["batch_id"]
            else:
                assert full[:-64] == body, c["type"]
            assert full[:len(body)] == body, c["type"]
            assert full[-64:].hex() == c["json"]["signature"]
            signer_key = c["json"]["task"]["coordinator"] if signer == "task" else c["json"][signer]
            assert signer_key == c["signer"]
            assert schnorr_verify(h(c["signer"]), signed, full[-64:]), c["type"]
            bond = c["json"].get("bond") if c["type"] in ("registration", "validator_registration") else None
            if bond is not None:
                who = c["json"]["worker" if c["type"] == "registration" else "validator"]
                msg = bond_message(c["json"]["coordinator"], who, bond)
                assert schnorr_verify(h(bond["key"]), msg, h(bond["signature"])), "bond signature"
        else:
            assert full == body, c["type"]
        assert decode_object(c["type"], full) is None, c["type"]
        n += 1
    for c in v["invalid"]:
        got = decode_object(c["type"], h(c["encoding"]))
        assert got == c["error"], (c["name"], got, c["error"])
        n += 1
    for c in v["chat_settings"]:
        text = "cairn/chat-settings/1\nmodel=%s\ntemperature=0\ntop_p=1\nseed=%d\nmax_tokens=%d\n" % (
            c["model"], c["seed"], c["max_tokens"])
        assert hashlib.sha256(text.encode()).hexdigest() == c["model_hash"], c["model"]
        n += 1
    # The score reveal opens the score commit (§13.4).
    commit = next(c["json"] for c in v["valid"] if c["type"] == "score_commit")
    reveal = next(c["json"] for c in v["valid"] if c["type"] == "score_reveal")
    assert score_commitment_value(reveal).hex() == commit["commitment"]
    n += 1
    # The scored round checks, and the third header's scores root commits it (§13.6).
    rounds = [c for c in v["valid"] if c["type"] == "scored_round"]
    for c in rounds:
        check_scored_round(c["json"])
    headers = [c["json"] for c in v["valid"] if c["type"] == "epoch_header"]
    assert headers[2]["scores_root"] == merkle_root([h(c["id"]) for c in rounds]).hex()
    return n + len(rounds)


def check_state_root(v):
    for c in v["cases"]:
        entries = sorted(c["entries"], key=lambda e: h(e["worker"]))
        leaves = [tagged_hash("cairn/ledger-entry", enc_ledger_entry(e)) for e in entries]
        assert merkle_root(leaves).hex() == c["state_root"]
    return len(v["cases"])


def check_anchor_payload(v):
    n = 0
    for c in v["valid"]:
        payload = MAGIC + b"\x01" + u(c["height"], 4) + h(c["header_hash"])
        assert payload.hex() == c["payload"]
        assert (b"\x6a\x28" + payload).hex() == c["script"]
        assert parse_payload(payload) == (c["height"], h(c["header_hash"]))
        assert cairn_script_data(h(c["script"])) == payload
        n += 1
    for c in v["invalid"]:
        try:
            parse_payload(h(c["payload"]))
            code = "ok"
        except DecodeError as e:
            code = e.code
        assert code == c["error"], (c["name"], code)
        n += 1
    for c in v["scripts"]:
        assert (cairn_script_data(h(c["script"])) is not None) == c["cairn"], c["name"]
        n += 1
    return n


def check_receipt_proofs(v):
    n = 0
    for c in v["valid"]:
        res, ops = verify_proof(decode_proof(h(c["proof"])))
        for k in ("receipt_leaf", "anchored_hash", "txid", "block_hash", "block_merkle_root"):
            assert res[k].hex() == c[k], (c["name"], k)
        for k in ("epoch_height", "anchored_height", "block_height", "chain_position"):
            assert res[k] == c[k], (c["name"], k)
        # JSON form: "sha256", {"prepend": hex} or {"append": hex}
        want = [(op, None) if op == "sha256" else next((k, h(a)) for k, a in op.items()) for op in c["ots_ops"]]
        assert ops == want, c["name"]
        assert apply_ops(res["receipt_leaf"], ops) == res["block_merkle_root"]
        assert ots_file(res["receipt_leaf"], ops, res["block_height"]).hex() == c["ots_file"], c["name"]
        bd = decode_bundle(h(c["bundle"]))
        assert bd["proof"] == decode_proof(h(c["proof"])), c["name"]
        assert (len(bd["before"]), len(bd["above"])) == (1, 2), c["name"]
        # The coinbase commits the block's height (BIP34: a minimal push above 16).
        cb = bd["coinbase"]
        assert cb[42:].startswith(bip34_prefix(bd["proof"]["block_height"])), c["name"]  # after version, 1 input, outpoint, script length
        assert len(bd["coinbase_path"]) == len(bd["proof"]["tx_path"]), c["name"]
        n += 1
    for c in v["invalid"]:
        try:
            verify_proof(decode_proof(h(c["proof"])))
            code = "ok"
        except ProofError as e:
            code = e.code
        assert code == c["error"], (c["name"], code, c["error"])
        n += 1
    return n


# --- draws (§12.1)

def roster_encoding(keys):
    return u(len(keys), 4) + b"".join(keys)


def dec_roster(b):
    r = Reader(b)
    n = r.uint(4)
    keys = []
    for _ in range(n):
        k = dec_key(r)
        if keys and keys[-1] >= k:
            raise DecodeError("invalid_value")
        keys.append(k)
    if r.pos != len(b):
        raise DecodeError("trailing_bytes")
    return keys


def draw_score(seed, beacon, task, key):
    return tagged_hash("cairn/draw", seed + enc_beacon(beacon) + h(task["class"]) + payload_hash(task["input"]) + key)


def payload_hash(p):
    if "inline" in p:
        return tagged_hash("cairn/content", h(p["inline"]))
    return h(p["blob"]["hash"])


def check_draws(v):
    n = 0
    for c in v["seeds"]:
        assert tagged_hash("cairn/draw-seed", h(c["seed"])).hex() == c["seed_hash"]
        n += 1
    for c in v["rosters"]:
        keys = [h(k) for k in c["keys"]]
        enc = roster_encoding(keys)
        assert enc.hex() == c["encoding"] and dec_roster(enc) == keys
        assert tagged_hash("cairn/roster", enc).hex() == c["root"]
        n += 1
    for c in v["rankings"]:
        seed, beacon, task = h(c["seed"]), c["beacon"], c["task"]["json"]
        ranked = sorted((draw_score(seed, beacon, task, h(k)), h(k)) for k in c["roster"])
        assert [(s.hex(), k.hex()) for s, k in ranked] == [(x["score"], x["key"]) for x in c["scores"]]
        n += 1
    for c in v["invalid_rosters"]:
        try:
            dec_roster(h(c["encoding"]))
            code = "ok"
        except DecodeError as e:
            code = e.code
        assert code != "ok", c["name"]
        n += 1
    return n


# --- the validators' consensus (§13)

SCORE_SCALE = 1_000_000
MAX_MONEY = 21_000_000 * 100_000_000


def consensus(params, workers, sheets):
    """(outcome, None) or (None, error code), by §13.3; workers are (key, units) pairs."""
    if (params["worker_budget_sats"] > MAX_MONEY or params["validator_budget_sats"] > MAX_MONEY
            or params["baseline"] > SCORE_SCALE or params["tolerance"] > SCORE_SCALE):
        return None, "bad_params"
    if len(workers) > 1024:
        return None, "too_many_workers"
    keys = [k for k, _ in workers]
    if any(a >= b for a, b in zip(keys, keys[1:])):
        return None, "workers_out_of_order"
    if any(units > 1 << 40 for _, units in workers):
        return None, "too_many_units"
    if len(sheets) > 256:
        return None, "too_many_sheets"
    if any(a["validator"] >= b["validator"] for a, b in zip(sheets, sheets[1:])):
        return None, "sheets_out_of_order"
    rows = []
    for sh in sheets:
        if not 1 <= sh["stake"] <= MAX_MONEY:
            return None, "bad_stake"
        if sh["validator"] in keys:
            return None, "validator_is_worker"
        scored = [k for k, _ in sh["scores"]]
        if (len(scored) > 1024 or any(a >= b for a, b in zip(scored, scored[1:]))
                or any(score > SCORE_SCALE for _, score in sh["scores"])):
            return None, "bad_sheet"
        row = {k: 0 for k in keys}
        for k, score in sh["scores"]:
            if k in row:
                row[k] = score
        rows.append(row)
    total = sum(sh["stake"] for sh in sheets)
    out_workers = []
    for k, units in workers:
        col = sorted((row[k], sh["stake"]) for row, sh in zip(rows, sheets))
        low = high = 0
        cum = 0
        for score, stake in col:
            cum += stake
            if 2 * cum >= total:
                low = score
                break
        cum = 0
        for score, stake in reversed(col):
            cum += stake
            if 2 * cum >= total:
                high = score
                break
        c = sum(stake * min(max(score, low), high) for score, stake in col) // total if total else 0
        assert c == (low + high) // 2  # the stake-weighted median (§13.3)
        out_workers.append({"worker": k, "units": units, "low": low, "high": high, "score": c, "share_sats": 0})
    weights = [max(0, w["score"] - params["baseline"]) * w["units"] for w in out_workers]
    paid = 0
    if sum(weights):
        for w, wt in zip(out_workers, weights):
            w["share_sats"] = params["worker_budget_sats"] * wt // sum(weights)
            paid += w["share_sats"]
    n = len(workers)
    out_validators = []
    for row, sh in zip(rows, sheets):
        dev = sum(abs(row[w["worker"]] - w["score"]) for w in out_workers) // n if n else 0
        agreement = max(0, params["tolerance"] - dev) if n else 0
        out_validators.append({"validator": sh["validator"], "stake": sh["stake"], "deviation": dev,
                               "agreement": agreement, "share_sats": 0})
    vweights = [v["stake"] * v["agreement"] for v in out_validators]
    if sum(vweights):
        for v, wt in zip(out_validators, vweights):
            v["share_sats"] = params["validator_budget_sats"] * wt // sum(vweights)
            paid += v["share_sats"]
    unallocated = params["worker_budget_sats"] + params["validator_budget_sats"] - paid
    return {"workers": out_workers, "validators": out_validators, "unallocated_sats": unallocated}, None


def check_consensus(v):
    def inputs(c):
        sheets = [{"validator": h(sh["validator"]), "stake": sh["stake"],
                   "scores": [(h(k), score) for k, score in sh["scores"]]} for sh in c["sheets"]]
        return c["params"], [(h(k), units) for k, units in c["workers"]], sheets

    def as_json(o):
        return {
            "workers": [dict(w, worker=w["worker"].hex()) for w in o["workers"]],
            "validators": [dict(x, validator=x["validator"].hex()) for x in o["validators"]],
            "unallocated_sats": o["unallocated_sats"],
        }

    n = 0
    for c in v["valid"]:
        o, err = consensus(*inputs(c))
        assert err is None, (c["name"], err)
        assert as_json(o) == c["outcome"], c["name"]
        n += 1
    for c in v["invalid"]:
        o, err = consensus(*inputs(c))
        assert err == c["error"], (c["name"], err)
        n += 1
    return n


CHECKS = {
    "tagged_hash.json": check_tagged_hash,
    "merkle.json": check_merkle,
    "signatures.json": check_signatures,
    "objects.json": check_objects,
    "state_root.json": check_state_root,
    "anchor_payload.json": check_anchor_payload,
    "receipt_proof.json": check_receipt_proofs,
    "wire.json": check_wire,
    "draws.json": check_draws,
    "consensus.json": check_consensus,
    "latency.json": check_latency,
}


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "vectors")
    files = sorted(f for f in os.listdir(d) if f.endswith(".json"))
    passed, failed = 0, 0
    for f in files:
        check = CHECKS.get(f)
        if check is None:
            print(f"FAIL {f}: no check in reference.py for this vector file")
            failed += 1
            continue
        with open(os.path.join(d, f)) as fh:
            data = json.load(fh)
        try:
            count = check(data)
            print(f"ok   {f}: {count} cases")
            passed += 1
        except AssertionError as e:
            print(f"FAIL {f}: {e!r}")
            failed += 1
    missing = sorted(set(CHECKS) - set(files))
    for f in missing:
        print(f"FAIL {f}: expected vector file is missing")
        failed += 1
    print(f"reference: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
