"""RFC 6962 / RFC 9162 Merkle tree hashing and proofs (standard library only).

Leaf hash ``SHA-256(0x00 || leaf)``, node hash ``SHA-256(0x01 || left || right)``. A tree
of size n is stored as its *perfect subtrees*: the node at ``(level, index)`` covers leaves
``[index * 2**level, (index + 1) * 2**level)``. Every hash a proof needs is either such a
node or the right edge of the tree, folded from at most log n of them — so proofs read
O(log n) stored hashes (:func:`inclusion_ranges`, :func:`consistency_ranges`,
:func:`range_nodes`, :func:`range_hash`) and an append touches the *frontier* only
(:func:`append_leaf`).

The verification functions follow RFC 9162 section 2.1.3.2 and 2.1.4.2.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(leaf: bytes) -> bytes:
    """``SHA-256(0x00 || leaf)``."""
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _largest_power_below(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (n ≥ 2)."""
    return 1 << ((n - 1).bit_length() - 1)


# --------------------------------------------------------------------------- the frontier


def frontier_levels(size: int) -> list[int]:
    """Levels of the perfect subtrees a tree of ``size`` leaves is made of, largest first."""
    return [level for level in range(size.bit_length() - 1, -1, -1) if size >> level & 1]


def append_leaf(
    frontier: list[bytes], size: int, leaf: bytes
) -> tuple[list[tuple[int, int, bytes]], list[bytes]]:
    """Append the leaf hash ``leaf`` at index ``size`` to a tree given by its frontier.

    Returns the new nodes ``[(level, index, hash)]`` (the leaf first) and the new frontier.
    Amortized two nodes per leaf; never more than log n.
    """
    frontier = list(frontier)
    nodes = [(0, size, leaf)]
    current, level, index = leaf, 0, size
    while index & 1:
        current = node_hash(frontier.pop(), current)
        level += 1
        index >>= 1
        nodes.append((level, index, current))
    frontier.append(current)
    return nodes, frontier


def root_from_frontier(frontier: Sequence[bytes]) -> bytes:
    """The tree head of a tree given by its frontier (the empty tree: SHA-256 of nothing)."""
    if not frontier:
        return EMPTY_ROOT
    root = frontier[-1]
    for subtree in reversed(frontier[:-1]):
        root = node_hash(subtree, root)
    return root


def root_of(leaves: Sequence[bytes]) -> bytes:
    """The tree head of the given leaf hashes, folded with a frontier (O(n))."""
    frontier: list[bytes] = []
    for size, leaf in enumerate(leaves):
        _, frontier = append_leaf(frontier, size, leaf)
    return root_from_frontier(frontier)


# --------------------------------------------------------------------------- proofs


def range_nodes(start: int, end: int) -> list[tuple[int, int]]:
    """The perfect subtrees ``(level, index)`` that make up leaves ``[start, end)`` of the
    RFC 6962 tree, left to right (one when the range is itself a perfect subtree)."""
    nodes = []
    while start < end:
        level = (start & -start).bit_length() - 1 if start else (end - start).bit_length() - 1
        while (1 << level) > end - start:
            level -= 1
        nodes.append((level, start >> level))
        start += 1 << level
    return nodes


def range_hash(start: int, end: int, hashes: Mapping[tuple[int, int], bytes]) -> bytes:
    """MTH of leaves ``[start, end)`` from the stored perfect subtrees in ``hashes``."""
    parts = [hashes[node] for node in range_nodes(start, end)]
    return root_from_frontier(parts)


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose hashes form the RFC 9162 inclusion path of leaf ``index`` in a
    tree of ``size`` leaves, in proof order (nearest the leaf first)."""
    path: list[tuple[int, int]] = []
    start, end = 0, size
    while end - start > 1:
        k = _largest_power_below(end - start)
        if index - start < k:
            path.append((start + k, end))
            end = start + k
        else:
            path.append((start, start + k))
            start += k
    return list(reversed(path))


def consistency_ranges(first: int, second: int) -> list[tuple[int, int]]:
    """The leaf ranges whose hashes form the RFC 9162 consistency proof from ``first`` to
    ``second`` leaves (0 < first < second; equal sizes or 0 have an empty proof)."""
    if first <= 0 or first >= second:
        return []
    proof: list[tuple[int, int]] = []
    start, end, m, complete = 0, second, first, True
    while m != end - start:
        k = _largest_power_below(end - start)
        if m <= k:
            proof.append((start + k, end))
            end = start + k
        else:
            proof.append((start, start + k))
            start += k
            m -= k
            complete = False
    if not complete:
        proof.append((start, end))
    return list(reversed(proof))


def proof_hashes(
    ranges: Sequence[tuple[int, int]],
    fetch: Callable[[list[tuple[int, int]]], Mapping[tuple[int, int], bytes]],
) -> list[bytes]:
    """The hashes of ``ranges``, reading every needed stored node in one ``fetch``."""
    wanted = sorted({node for start, end in ranges for node in range_nodes(start, end)})
    hashes = fetch(wanted)
    return [range_hash(start, end, hashes) for start, end in ranges]


# --------------------------------------------------------------------------- verification


class ProofError(ValueError):
    """A proof does not verify; the message says how."""


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """RFC 9162 2.1.3.2: raise :class:`ProofError` unless ``proof`` shows the leaf hash
    ``leaf`` at ``index`` of the tree of ``size`` leaves with head ``root``."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of {size}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError("the inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the inclusion proof is too short")
    if r != root:
        raise ProofError("the inclusion proof does not lead to the root hash")


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 2.1.4.2: raise :class:`ProofError` unless ``proof`` shows the tree of
    ``second`` leaves (head ``second_root``) extends the tree of ``first`` (``first_root``)."""
    if first > second:
        raise ProofError(f"size {first} is larger than {second}")
    if first == second:
        if proof:
            raise ProofError("a proof between equal sizes must be empty")
        if first_root != second_root:
            raise ProofError("two different root hashes for the same tree size")
        return
    if first == 0:
        if proof:
            raise ProofError("a proof from the empty tree must be empty")
        return
    if not proof:
        raise ProofError("the consistency proof is empty")
    path = list(proof)
    if first & (first - 1) == 0:  # a power of two: the first tree is itself a subtree
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("the consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the consistency proof is too short")
    if fr != first_root:
        raise ProofError(f"the consistency proof does not lead to the root of size {first}")
    if sr != second_root:
        raise ProofError(f"the consistency proof does not lead to the root of size {second}")
