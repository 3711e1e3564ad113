"""The log's tree: RFC 6962 test vectors, and every proof for sizes up to 64 checked by an
independent implementation written here from RFC 9162's definitions (recursive MTH, PATH
and PROOF, and the verification algorithms of sections 2.1.3.2 and 2.1.4.2)."""

import hashlib
import json
from pathlib import Path

import pytest

from wxbackend.services.transparency import merkle
from wxbackend.services.transparency.canonical import canonical_json

VECTORS = json.loads((Path(__file__).parent / "rfc6962-vectors.json").read_text())


# ----------------------------------------------------------------- the independent reference


def h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def mth(leaves: list[bytes]) -> bytes:
    """RFC 9162 2.1.1: MTH over the leaf *data*."""
    n = len(leaves)
    if n == 0:
        return h(b"")
    if n == 1:
        return h(b"\x00" + leaves[0])
    k = 1
    while k * 2 < n:
        k *= 2
    return h(b"\x01" + mth(leaves[:k]) + mth(leaves[k:]))


def path(m: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 9162 2.1.3.1."""
    n = len(leaves)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return path(m, leaves[:k]) + [mth(leaves[k:])]
    return path(m - k, leaves[k:]) + [mth(leaves[:k])]


def subproof(m: int, leaves: list[bytes], b: bool) -> list[bytes]:
    """RFC 9162 2.1.4.1."""
    n = len(leaves)
    if m == n:
        return [] if b else [mth(leaves)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return subproof(m, leaves[:k], b) + [mth(leaves[k:])]
    return subproof(m - k, leaves[k:], False) + [mth(leaves[:k])]


def ref_verify_inclusion(index, size, leaf_hash, proof, root) -> bool:
    """RFC 9162 2.1.3.2, step by step."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            r = h(b"\x01" + p + r)
            if fn % 2 == 0:
                while not (fn % 2 == 1 or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            r = h(b"\x01" + r + p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def ref_verify_consistency(first, second, first_hash, second_hash, proof) -> bool:
    """RFC 9162 2.1.4.2, step by step."""
    if first == second:
        return not proof and first_hash == second_hash
    proof = list(proof)
    if first & (first - 1) == 0:
        proof = [first_hash] + proof
    fn, sn = first - 1, second - 1
    while fn % 2 == 1:
        fn >>= 1
        sn >>= 1
    if not proof:
        return False
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            fr = h(b"\x01" + c + fr)
            sr = h(b"\x01" + c + sr)
            if fn % 2 == 0:
                while not (fn % 2 == 1 or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            sr = h(b"\x01" + sr + c)
        fn >>= 1
        sn >>= 1
    return fr == first_hash and sr == second_hash and sn == 0


# ----------------------------------------------------------------- a tree built by appending

LEAVES = [f"leaf {i}".encode() for i in range(64)]


def build(leaves: list[bytes]):
    """The log's own way: append leaf by leaf, keeping only the stored nodes."""
    store: dict[tuple[int, int], bytes] = {}
    frontier: list[bytes] = []
    for size, leaf in enumerate(leaves):
        nodes, frontier = merkle.append_leaf(frontier, size, merkle.leaf_hash(leaf))
        store.update({(level, index): value for level, index, value in nodes})
    return store, frontier


STORE, FRONTIER = build(LEAVES)


def fetch(keys):
    return {k: STORE[k] for k in keys}


def test_roots_reproduce_the_rfc6962_vectors():
    leaves = [bytes.fromhex(x) for x in VECTORS["leaves_hex"]]
    for size_text, root_hex in VECTORS["roots_hex"].items():
        size = int(size_text)
        store, frontier = build(leaves[:size])
        assert merkle.root_from_frontier(frontier).hex() == root_hex
        assert merkle.root_of([merkle.leaf_hash(x) for x in leaves[:size]]).hex() == root_hex
        assert mth(leaves[:size]).hex() == root_hex
        if size:
            got = merkle.proof_hashes([(0, size)], lambda keys, s=store: {k: s[k] for k in keys})
            assert got[0].hex() == root_hex


def test_every_inclusion_proof_up_to_64():
    for size in range(1, 65):
        root = mth(LEAVES[:size])
        assert merkle.proof_hashes([(0, size)], fetch)[0] == root
        for index in range(size):
            proof = merkle.proof_hashes(merkle.inclusion_ranges(index, size), fetch)
            assert proof == path(index, LEAVES[:size]), (index, size)
            leaf = merkle.leaf_hash(LEAVES[index])
            assert ref_verify_inclusion(index, size, leaf, proof, root)
            merkle.verify_inclusion(index, size, leaf, proof, root)
            if proof:  # a wrong hash anywhere fails both verifiers
                bad = [proof[0][:-1] + bytes([proof[0][-1] ^ 1])] + proof[1:]
                assert not ref_verify_inclusion(index, size, leaf, bad, root)
                with pytest.raises(merkle.ProofError):
                    merkle.verify_inclusion(index, size, leaf, bad, root)


def test_every_consistency_proof_up_to_64():
    roots = {n: mth(LEAVES[:n]) for n in range(0, 65)}
    for second in range(1, 65):
        for first in range(1, second + 1):
            proof = merkle.proof_hashes(merkle.consistency_ranges(first, second), fetch)
            expected = [] if first == second else subproof(first, LEAVES[:second], True)
            assert proof == expected, (first, second)
            assert ref_verify_consistency(first, second, roots[first], roots[second], proof)
            merkle.verify_consistency(first, second, roots[first], roots[second], proof)
            if first < second:  # a forked older tree is caught
                forked = h(b"fork" + roots[first])
                assert not ref_verify_consistency(first, second, forked, roots[second], proof)
                with pytest.raises(merkle.ProofError):
                    merkle.verify_consistency(first, second, forked, roots[second], proof)


def test_canonical_json_is_rfc8785():
    value = {"b": [1, True, None], "a": 'é\n"\\\x01', "\u20ac": 1, "\U0001f600": 2, "A": {}}
    # keys sorted by UTF-16 code units: "A" < "a" < "b" < U+20AC < U+1F600 (D83D…)
    assert canonical_json(value) == (
        '{"A":{},"a":"é\\n\\"\\\\\\u0001","b":[1,true,null],"\u20ac":1,"\U0001f600":2}'
    )
    with pytest.raises(TypeError):
        canonical_json({"x": 1.5})


def test_canonical_json_refuses_what_rfc8785_cannot_carry():
    for bad in ({"x": 2**53}, {"x": "\ud800"}, {1: "x"}, {"x": object()}):
        with pytest.raises((TypeError, ValueError, UnicodeEncodeError)):
            canonical_json(bad)
    assert (
        canonical_json({"x": "\x7f\u2028", "y": [], "z": -3}) == '{"x":"\x7f\u2028","y":[],"z":-3}'
    )


def test_signed_notes_match_the_go_reference_vector():
    """golang.org/x/mod/sumdb/note's published example key and note: Ed25519 is
    deterministic, so the log's signer must reproduce the note byte for byte."""
    import base64

    from wxbackend.services.transparency import note

    vkey = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
    skey = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"  # of PRIVATE+KEY+PeterNeumann+c74f20a3+…
    text = (
        "If you think cryptography is the answer to your problem,\n"
        "then you don't know what your problem is.\n"
    )
    signed = text + (
        "\n— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqf"
        "qdngotpRZb6KE6RyyBwJnAM=\n"
    )
    signer = note.Signer("PeterNeumann", base64.b64decode(skey)[1:])
    assert signer.vkey == vkey
    assert signer.sign(text) == signed
    verifier = note.parse_vkey(vkey)
    assert verifier.verify(text, base64.b64decode(signed.rsplit(" ", 1)[1])[4:])
    assert not verifier.verify(text.replace("cryptography", "cryptographY"), b"\0" * 64)
    for bad in (vkey[:-1], vkey.replace("c74f20a3", "c74f20a4"), "PeterNeumann+c74f20a3"):
        with pytest.raises(note.NoteError):
            note.parse_vkey(bad)
