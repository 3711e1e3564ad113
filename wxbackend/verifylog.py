"""A verifier of the transparency log anyone can run: the standard library and
``cryptography`` only (``wxbackend verify-log URL``, or ``python -m wxbackend.verifylog URL``).

It checks, naming whatever does not hold:

1. the latest checkpoint's Ed25519 note signature under the log's published key (and, when
   asked, N cosignatures of known witnesses);
2. consistency with the checkpoint seen on the last run (``--state FILE``): a log that
   rewrites or forks its history is caught on the next run; the key is pinned there too;
3. every entry: its leaf hash, and that the entries hash to the signed root (a changed,
   deleted or reordered leaf is named by its index);
4. a receipt (``--receipt FILE``: the rating answer, an evaluation with its ``receipt``, or
   the receipt alone): its leaf's inclusion, the leaf itself, the receipt's checkpoint's
   consistency, and — with the rating's fields — the commitment;
5. the public list (``GET /api/v1/public/evaluations``) against the log (``verifylist``).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from wxbackend.services.transparency import merkle, note
from wxbackend.services.transparency.canonical import canonical_json
from wxbackend.verifylist import compare_public_list, fetch_public_list

LOG = "/api/v1/public/log"
PAGE = 1000
#: At most this many inclusion proofs are fetched to name the entries that do not match.
LOCATE_LIMIT = 256


class Fatal(Exception):
    """A check that the others depend on failed (the message names it)."""


@dataclass
class Report:
    """What held and what did not."""

    problems: list[str] = field(default_factory=list)
    passed: list[str] = field(default_factory=list)
    tree_size: int | None = None

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return not self.problems

    def fail(self, message: str) -> None:
        """Record a check that does not hold."""
        self.problems.append(message)

    def good(self, message: str) -> None:
        """Record a check that holds."""
        self.passed.append(message)


class Client:
    """GETs JSON and text from the log's server."""

    def __init__(self, base_url: str, timeout: float = 30.0):
        if urllib.parse.urlsplit(base_url).scheme not in ("http", "https"):
            raise Fatal(f"not an http(s) URL: {base_url}")
        self.base = base_url.rstrip("/")
        self.timeout = timeout

    def text(self, path: str, **query: Any) -> str:
        """GET ``path`` (with ``query``) as text; Fatal on any failure."""
        url = self.base + path + ("?" + urllib.parse.urlencode(query) if query else "")
        headers = {"User-Agent": "wxbackend-verify-log"}
        request = urllib.request.Request(url, headers=headers)  # noqa: S310 - http(s) only
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:  # noqa: S310 - http(s) only (checked above)  # nosec B310
                return answer.read().decode("utf-8")
        except urllib.error.HTTPError as exc:
            raise Fatal(f"GET {path} answered {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise Fatal(f"cannot reach {url}: {exc}") from None

    def json(self, path: str, **query: Any) -> Any:
        """GET ``path`` as JSON; Fatal on any failure."""
        try:
            return json.loads(self.text(path, **query))
        except ValueError:
            raise Fatal(f"GET {path} did not answer JSON") from None


def _hashes(items: list[str]) -> list[bytes]:
    return [bytes.fromhex(x) for x in items]


# --------------------------------------------------------------------------- the checks


def check_checkpoint(
    client: Client, report: Report, witnesses: list[str], required: int
) -> tuple[note.Checkpoint, str]:
    """1: the checkpoint, signed by the published key (and enough witnesses)."""
    key = client.json(LOG + "/key")
    try:
        verifier = note.parse_vkey(key["vkey"])
        checkpoint = note.parse_checkpoint(client.text(LOG + "/checkpoint"))
    except (note.NoteError, KeyError, TypeError) as exc:
        raise Fatal(f"the checkpoint or key is malformed: {exc}") from None
    if checkpoint.origin != key["origin"] or verifier.name != key["origin"]:
        raise Fatal("the checkpoint's origin is not the log's origin")
    if not checkpoint.signed_by(verifier):
        raise Fatal("the checkpoint's signature does not verify under the log's key")
    report.good(f"checkpoint of size {checkpoint.size} signed by {verifier.name}")
    if required:
        count = 0
        for text in witnesses:
            try:
                count += checkpoint.signed_by(note.parse_vkey(text))
            except note.NoteError as exc:
                raise Fatal(f"witness key {text[:40]}: {exc}") from None
        if count < required:
            report.fail(f"{count} witness cosignature(s) on the checkpoint; {required} required")
        else:
            report.good(f"{count} witness cosignature(s)")
    return checkpoint, key["vkey"]


def check_consistency(
    client: Client, report: Report, old_size: int, old_root: bytes, new: note.Checkpoint
) -> None:
    """2: the new checkpoint extends the one of ``old_size`` (raise Fatal if not)."""
    if old_size > new.size:
        raise Fatal(f"the log shrank: size {old_size} was signed before, now {new.size}")
    proof = client.json(LOG + "/proof/consistency", first=old_size, second=new.size)
    try:
        merkle.verify_consistency(
            old_size, new.size, old_root, new.root, _hashes(proof.get("hashes", []))
        )
    except (merkle.ProofError, ValueError, AttributeError) as exc:
        raise Fatal(
            f"the checkpoint of size {new.size} is not consistent with the checkpoint of size "
            f"{old_size} seen before: the log's history was rewritten or forked ({exc})"
        ) from None
    report.good(f"consistent with the checkpoint of size {old_size} seen before")


def fetch_entries(client: Client) -> list[dict[str, Any]]:
    """Every entry the log serves (its whole size, signed or not yet), in pages."""
    found: list[dict[str, Any]] = []
    while True:
        start = len(found)
        page = client.json(LOG + "/entries", start=start, end=start + PAGE).get("entries", [])
        found.extend(page)
        if len(page) < PAGE:
            return found


def check_entries(
    client: Client, report: Report, checkpoint: note.Checkpoint, entries: list[dict[str, Any]]
) -> None:
    """3: every entry's leaf hash, and the entries hash to the signed root."""
    hashes: list[bytes] = []
    for position, entry in enumerate(entries[: checkpoint.size]):
        leaf = merkle.leaf_hash(str(entry.get("leaf", "")).encode())
        if entry.get("index") != position:
            report.fail(f"entry {position}: served as index {entry.get('index')}")
        if entry.get("leaf_hash") != leaf.hex():
            report.fail(f"entry {position}: its leaf_hash does not match its leaf")
        hashes.append(leaf)
    if len(hashes) < checkpoint.size:
        report.fail(f"the log serves {len(hashes)} entries; the checkpoint has {checkpoint.size}")
        return
    if merkle.root_of(hashes) == checkpoint.root:
        report.good(f"{checkpoint.size} entries hash to the signed root")
        return
    bad = []
    for index, leaf in enumerate(hashes[:LOCATE_LIMIT]):
        proof = client.json(LOG + "/proof/inclusion", leaf_index=index, tree_size=checkpoint.size)
        try:
            merkle.verify_inclusion(
                index, checkpoint.size, leaf, _hashes(proof["hashes"]), checkpoint.root
            )
        except (merkle.ProofError, KeyError, ValueError):
            bad.append(index)
    where = ", ".join(str(i) for i in bad[:20]) or f"beyond the first {LOCATE_LIMIT}"
    report.fail(
        "the entries do not hash to the signed root: entries "
        f"{where} are not the leaves the log signed at those positions "
        "(changed, deleted or reordered)"
    )


def load_receipt(path: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """``(receipt, evaluation or None)`` from a receipt file."""
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    evaluation = data.get("evaluation", data) if isinstance(data, dict) else None
    if isinstance(evaluation, dict) and isinstance(evaluation.get("receipt"), dict):
        return evaluation["receipt"], evaluation
    if isinstance(data, dict) and "leaf_index" in data:
        return data, None
    raise Fatal(f"{path} holds no receipt")


def commitment_of(salt: str, evaluation: dict[str, Any]) -> str:
    """The commitment of a citizen's rating as their owner view shows it."""
    fields = {
        "evaluation": evaluation["id"],
        "overall": evaluation["overall"],
        "stages": evaluation.get("stages") or {},
        "targets": evaluation.get("targets") or {},
        "indicators": evaluation.get("indicators") or [],
        "comment": evaluation.get("comment"),
        "channel": evaluation["channel"],
        "created_at": evaluation["created_at"],
    }
    return hashlib.sha256(bytes.fromhex(salt) + canonical_json(fields).encode()).hexdigest()


def check_receipt(
    client: Client,
    report: Report,
    checkpoint: note.Checkpoint,
    vkey: str,
    receipt: dict[str, Any],
    evaluation: dict[str, Any] | None,
    entries: list[dict[str, Any]],
) -> None:
    """4: the receipt's leaf is in the signed tree and says what the rater rated."""
    index, leaf_hash = int(receipt["leaf_index"]), bytes.fromhex(receipt["leaf_hash"])
    if index >= checkpoint.size:
        report.fail(f"receipt: leaf {index} is not yet in a signed checkpoint; try again shortly")
        return
    proof = client.json(LOG + "/proof/inclusion", leaf_index=index, tree_size=checkpoint.size)
    try:
        merkle.verify_inclusion(
            index, checkpoint.size, leaf_hash, _hashes(proof.get("hashes", [])), checkpoint.root
        )
    except (merkle.ProofError, ValueError) as exc:
        report.fail(f"receipt: leaf {index} is not in the signed log ({exc})")
        return
    report.good(f"receipt: leaf {index} is included in the checkpoint of size {checkpoint.size}")
    entry = entries[index] if index < len(entries) else None
    if entry is None or entry.get("leaf_hash") != leaf_hash.hex():
        report.fail(f"receipt: entry {index} served by the log is not the receipt's leaf")
        return
    if receipt.get("checkpoint"):
        earlier = note.parse_checkpoint(receipt["checkpoint"])
        if not earlier.signed_by(note.parse_vkey(vkey)):
            report.fail("receipt: its checkpoint is not signed by the log's key")
        else:
            try:
                check_consistency(client, report, earlier.size, earlier.root, checkpoint)
            except Fatal as exc:
                report.fail(f"receipt: {exc}")
    salt = receipt.get("salt")
    if evaluation is not None and salt:
        leaf = json.loads(entry["leaf"])
        if leaf.get("commitment") != commitment_of(salt, evaluation):
            report.fail(
                f"receipt: the log's commitment of evaluation {evaluation.get('id')} does not "
                "match the rating in the receipt file (changed after it was logged?)"
            )
        else:
            report.good("receipt: the commitment matches the rating")


# --------------------------------------------------------------------------- state and run


def read_state(path: str | None) -> dict[str, Any] | None:
    """The last run's state (None without a file, or before the first run)."""
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise Fatal(f"cannot read the state file {path}: {exc}") from None


def write_state(path: str, vkey: str, checkpoint: note.Checkpoint) -> None:
    """Keep the key and the checkpoint just verified for the next run."""
    state = {
        "vkey": vkey,
        "origin": checkpoint.origin,
        "tree_size": checkpoint.size,
        "root_hash": base64.b64encode(checkpoint.root).decode(),
    }
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(state, fh, indent=1)


def verify(
    url: str,
    state_file: str | None = None,
    receipt_file: str | None = None,
    witnesses: list[str] | None = None,
    require_cosignatures: int = 0,
    check_list: bool = True,
) -> Report:
    """Run every check against the log at ``url``; the report names what does not hold."""
    report = Report()
    try:
        client = Client(url)
        state = read_state(state_file)
        checkpoint, vkey = check_checkpoint(client, report, witnesses or [], require_cosignatures)
        report.tree_size = checkpoint.size
        if state is not None:
            if state.get("vkey") != vkey:
                raise Fatal("the log's key differs from the key pinned in the state file")
            old_root = base64.b64decode(state["root_hash"])
            check_consistency(client, report, int(state["tree_size"]), old_root, checkpoint)
        listed = None
        if check_list:
            listed = fetch_public_list(client)
        entries = fetch_entries(client)
        check_entries(client, report, checkpoint, entries)
        if receipt_file:
            receipt, evaluation = load_receipt(receipt_file)
            check_receipt(client, report, checkpoint, vkey, receipt, evaluation, entries)
        if listed is not None:
            compare_public_list(report, checkpoint.size, entries, listed)
        if state_file:
            write_state(state_file, vkey, checkpoint)
    except Fatal as exc:
        report.fail(str(exc))
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        # a server (or receipt file) answering malformed data is a failure, never a crash
        report.fail(f"malformed data from the log or the receipt file: {type(exc).__name__}: {exc}")
    return report


def main(argv: list[str] | None = None) -> int:
    """``verify-log URL [--state FILE] [--receipt FILE] [--require-cosignatures N
    --witness VKEY…]``: exit 0 only when every check holds."""
    parser = argparse.ArgumentParser(prog="verify-log", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's arguments (shared by ``wxbackend verify-log``)."""
    parser.add_argument("url", help="the server's base URL (https://host)")
    parser.add_argument("--state", help="JSON file keeping the last checkpoint seen")
    parser.add_argument("--receipt", help="a rating answer or receipt to check")
    parser.add_argument("--witness", action="append", default=[], help="a witness's vkey")
    parser.add_argument(
        "--require-cosignatures",
        type=int,
        default=0,
        metavar="N",
        help="fail unless N of the witnesses cosigned the checkpoint",
    )
    parser.add_argument("--no-list", action="store_true", help="skip the public list check")


def run(args: argparse.Namespace) -> int:
    """Verify, print each check (``ok:`` / ``FAIL:``), and answer the exit code."""
    report = verify(
        args.url,
        state_file=args.state,
        receipt_file=args.receipt,
        witnesses=args.witness,
        require_cosignatures=args.require_cosignatures,
        check_list=not args.no_list,
    )
    for line in report.passed:
        print(f"ok: {line}")
    for line in report.problems:
        print(f"FAIL: {line}", file=sys.stderr)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
