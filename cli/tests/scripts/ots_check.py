"""Reads Cairn's OpenTimestamps export with the PyPI `opentimestamps` library (the reference
implementation) and checks that its operations reach the anchor block's Merkle root.

usage: ots_check.py FILE.ots STAMPED_FILE HEIGHT MERKLEROOT_HEX [CALENDAR_ANSWER_FILE]
MERKLEROOT_HEX as Bitcoin Core displays it (reversed byte order). Prints "ok" or fails.
"""
import hashlib
import sys

from opentimestamps.core.notary import BitcoinBlockHeaderAttestation
from opentimestamps.core.serialize import BytesDeserializationContext, StreamDeserializationContext
from opentimestamps.core.timestamp import DetachedTimestampFile, Timestamp


def only_attestation(timestamp):
    atts = list(timestamp.all_attestations())
    assert len(atts) == 1, atts
    return atts[0]


def main():
    ots_path, stamped_path, height, root_hex = sys.argv[1:5]
    with open(ots_path, "rb") as f:
        d = DetachedTimestampFile.deserialize(StreamDeserializationContext(f))
    with open(stamped_path, "rb") as f:
        assert d.file_digest == hashlib.sha256(f.read()).digest(), "digest is not SHA-256 of the stamped file"
    root = bytes.fromhex(root_hex)[::-1]
    msg, att = only_attestation(d.timestamp)
    assert isinstance(att, BitcoinBlockHeaderAttestation), att
    assert att.height == int(height), (att.height, height)
    assert msg == root, (msg.hex(), root.hex())
    if len(sys.argv) > 5:
        with open(sys.argv[5], "rb") as f:
            t = Timestamp.deserialize(BytesDeserializationContext(f.read()), d.file_digest)
        cmsg, catt = only_attestation(t)
        assert cmsg == root and catt.height == int(height), "calendar answer differs"
    print("ok")


main()
