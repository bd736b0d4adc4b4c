#!/usr/bin/env python3
"""Checks civic-ledger receipts and extensions (docs/AUDIT.md) without
civic-ledger's code.

    python3 docs/verify_proof.py proofs.ndjson [SEAL_PUBLIC_KEY_HEX]

Each line is one document: a receipt (an event's inclusion proof with its
seal) or an extension (a consistency proof between two seals). Checks that
each seal is over the proof's tree and (with the `cryptography` package)
signed, and that the path leads where it must (RFC 9162, 2.1.3.2 and
2.1.4.2, over RFC 6962's tree). Prints each failing line with what failed,
then how many hold; exits 1 if any fails.
"""
import hashlib
import json
import sys

_verified_seals = {}


def sha256(data):
    return hashlib.sha256(data).digest()


def node(left, right):
    return sha256(b"\x01" + left + right)


def inclusion_holds(event_hash, index, size, path, root):
    if index >= size:
        return False
    fn, sn, r = index, size - 1, sha256(b"\x00" + event_hash)
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def consistency_holds(old_size, new_size, old_root, new_root, path):
    if old_size < 1 or old_size > new_size:
        return False
    if old_size == new_size:
        return not path and old_root == new_root
    if not path:
        return False
    if old_size & (old_size - 1) == 0:
        path = [old_root] + path
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node(c, fr), node(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == old_root and sr == new_root


def seal_fails(seal, community, size, root_hex, trusted_key):
    """What is wrong with a seal for this tree, or None."""
    if trusted_key and seal["public_key"] != trusted_key:
        return "seal_untrusted_key"
    if (seal["community_id"], seal["position"], seal.get("tree_root")) != (community, size, root_hex):
        return "seal_disagrees"
    try:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError:
        return None
    message = "civic-ledger seal v2\n{}\n{}\n{}\n{}\n{}\n".format(
        seal["community_id"], seal["position"], seal["hash"], seal["tree_root"],
        seal["sealed_at"]).encode("utf-8")
    signature = seal.get("signature") or ""
    key = (seal["public_key"], signature, message)
    if key not in _verified_seals:
        try:
            Ed25519PublicKey.from_public_bytes(bytes.fromhex(seal["public_key"])).verify(
                bytes.fromhex(signature), message)
            _verified_seals[key] = True
        except Exception:
            _verified_seals[key] = False
    return None if _verified_seals[key] else "seal_signature_invalid"


def check(document, trusted_key):
    hashes = lambda items: [bytes.fromhex(h) for h in items]
    community = document["community_id"]
    if "old_seal" in document:
        for seal, size, root in ((document["old_seal"], document["old_size"], document["old_root"]),
                                 (document["new_seal"], document["new_size"], document["new_root"])):
            failed = seal_fails(seal, community, size, root, trusted_key)
            if failed:
                return failed
        held = consistency_holds(document["old_size"], document["new_size"],
                                 bytes.fromhex(document["old_root"]),
                                 bytes.fromhex(document["new_root"]), hashes(document["path"]))
    else:
        failed = seal_fails(document["seal"], community, document["tree_size"],
                            document["tree_root"], trusted_key)
        if failed:
            return failed
        held = document["position"] >= 1 and inclusion_holds(
            bytes.fromhex(document["event_hash"]), document["position"] - 1,
            document["tree_size"], hashes(document["path"]), bytes.fromhex(document["tree_root"]))
    return None if held else "proof_invalid"


def main(path, trusted_key=None):
    held = failed = 0
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                what = check(json.loads(line), trusted_key)
            except (ValueError, KeyError, TypeError) as error:
                what = "malformed_document: {}".format(error)
            if what:
                failed += 1
                print("line {}: fails: {}".format(number, what))
            else:
                held += 1
    if not trusted_key:
        print("no seal trusted: give the public key to pin")
    print("{} proofs hold".format(held))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None))
