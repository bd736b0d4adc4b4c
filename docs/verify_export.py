#!/usr/bin/env python3
"""Verifies a civic-ledger export (docs/AUDIT.md) without civic-ledger's code.

    python3 docs/verify_export.py history.ndjson [SEAL_PUBLIC_KEY_HEX] [--seals FILE]

FILE holds seals the auditor collected earlier, one JSON seal a line: the
log must still extend every one, whatever seal lines the export holds.

Checks the hash chain, the head, every erasure against its event, every
seal's tree root against the Merkle tree of the events, and (with the
`cryptography` package) every seal's signature. Prints the first failure
with its position, or "intact"; exits 1 on a failure. An independent check
of the format docs/AUDIT.md specifies.
"""
import hashlib
import json
import sys


def canonical(value):
    # RFC 8785 for our payloads: integers only, member names ASCII.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def event_hash(event):
    fields = {
        "community_id": event["community_id"],
        "event_type": event["event_type"],
        "event_version": event["event_version"],
        "metadata": event["metadata"],
        "payload": event["payload"],
        "position": event["position"],
        # The export carries exactly the characters hashed: no re-formatting.
        "recorded_at": event["recorded_at"],
        "stream_id": event["stream_id"],
        "stream_type": event["stream_type"],
        "stream_version": event["stream_version"],
    }
    previous = bytes.fromhex(event["previous_hash"])
    return hashlib.sha256(previous + canonical(fields).encode("utf-8")).hexdigest()


def sha256(data):
    return hashlib.sha256(data).digest()


class Tree:
    """The roots of the complete subtrees of the events so far, largest
    first (RFC 6962: leaf 0x00 || event hash, node 0x01 || left || right)."""

    def __init__(self):
        self.size, self.roots = 0, []

    def push(self, event_hash_hex):
        node, index = sha256(b"\x00" + bytes.fromhex(event_hash_hex)), self.size
        while index & 1:
            node = sha256(b"\x01" + self.roots.pop() + node)
            index >>= 1
        self.roots.append(node)
        self.size += 1

    def root(self):
        if not self.roots:
            return sha256(b"").hex()
        node = self.roots[-1]
        for left in reversed(self.roots[:-1]):
            node = sha256(b"\x01" + left + node)
        return node.hex()


def seal_holds(seal, trusted_key):
    try:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError:
        return None
    if trusted_key and seal["public_key"] != trusted_key:
        return False
    if seal.get("tree_root"):
        message = "civic-ledger seal v2\n{}\n{}\n{}\n{}\n{}\n".format(
            seal["community_id"], seal["position"], seal["hash"],
            seal["tree_root"], seal["sealed_at"]).encode("utf-8")
    else:
        message = "civic-ledger seal v1\n{}\n{}\n{}\n{}\n".format(
            seal["community_id"], seal["position"], seal["hash"],
            seal["sealed_at"]).encode("utf-8")
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(seal["public_key"])).verify(
            bytes.fromhex(seal.get("signature") or ""), message)
        return True
    except Exception:
        return False


def main(path, trusted_key=None, collected=()):
    seals, head, running, expected, start, unanchored = {}, None, None, None, None, None
    for seal in collected:
        seals.setdefault(seal["position"], []).append(seal)
    tombstones, erased, tree = {}, [], None
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            try:
                item = json.loads(line)
                kind = item["type"]
            except (ValueError, KeyError, TypeError):
                return fail(expected or 0, "malformed line")
            if kind == "seal":
                seals.setdefault(item["position"], []).append(item)
            elif kind == "erasure":
                tombstones[item["content_hash"]] = (item["erased_by"], item["reason"])
            elif kind == "head":
                head = item
            elif kind == "event":
                position = item["position"]
                if expected is None:
                    expected, running, start = position, item["previous_hash"], position
                    tree = Tree() if position == 1 else None
                    # After position 1 the first link is taken on trust:
                    # only a seal signed by the pinned key vouches for it.
                    anchors = seals.get(position - 1, [])
                    if position > 1 and not (trusted_key and any(
                            anchor["hash"] == running and seal_holds(anchor, trusted_key)
                            for anchor in anchors)):
                        unanchored = position
                if item["event_type"] == "ContentErased":
                    fields = item["payload"]["ContentErased"]
                    erased.append((fields["content"], (fields["by"], fields["reason"]), position))
                if position != expected:
                    return fail(expected, "missing position")
                if item["previous_hash"] != running:
                    return fail(position, "broken link")
                if event_hash(item) != item["hash"]:
                    return fail(position, "hash mismatch")
                if tree is not None:
                    tree.push(item["hash"])
                for seal in seals.pop(position, []):
                    held = seal_holds(seal, trusted_key)
                    if held is False:
                        return fail(position, "seal signature invalid or untrusted")
                    if seal["hash"] != item["hash"]:
                        return fail(position, "seal mismatch")
                    if tree is not None and seal.get("tree_root") \
                            and seal["tree_root"] != tree.root():
                        return fail(position, "seal tree mismatch")
                running, expected = item["hash"], position + 1
    last = expected - 1
    if head is not None:
        if head.get("from_position", start) != start:
            return fail(min(head["from_position"], start), "missing position")
        if last < head["checked_to"]:
            return fail(last + 1, "missing position")
        if head["position"] == last and head["hash"] != running:
            return fail(last, "head mismatch")
        if head["position"] == last and any(p > last for p in seals):
            return fail(min(p for p in seals if p > last), "seal beyond log")
    # Every erasure the chain records has its tombstone, alike, and every
    # tombstone was recorded: checkable only for the whole history.
    if head is not None and start == 1 and head["position"] == last:
        for content, said, position in erased:
            tombstone = tombstones.pop(content, None)
            if tombstone is None:
                return fail(position, "erasure tombstone missing")
            if tombstone != said:
                return fail(position, "erasure mismatch")
        if tombstones:
            return fail(0, "erasure unrecorded")
    else:
        print("erasures not checked: the export is not the whole history")
    if unanchored is not None:
        return fail(unanchored, "unanchored start")
    if not trusted_key:
        print("no seal trusted: give the public key to pin")
    print("intact: {} events".format(last))
    return 0


def fail(position, what):
    print("fails at position {}: {}".format(position, what))
    return 1


def arguments(argv):
    """The export's path, the pinned key (or None) and the collected seals."""
    collected = []
    if "--seals" in argv:
        at = argv.index("--seals")
        with open(argv[at + 1], encoding="utf-8") as lines:
            collected = [json.loads(line) for line in lines if line.strip()]
        argv = argv[:at] + argv[at + 2:]
    return argv[1], (argv[2] if len(argv) > 2 else None), collected


if __name__ == "__main__":
    sys.exit(main(*arguments(sys.argv)))
