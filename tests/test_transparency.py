"""The transparency log end to end over HTTP: every public event appended in its own
transaction, receipts, signed checkpoints, proofs, bad parameters, and ``verify-log``
catching a changed text, a deleted rating, two reordered leaves and a forked history."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from datetime import timedelta

import pytest

from models.base import utcnow
from models.evaluation import Evaluation
from models.ticket import Ticket
from models.transparency import LogCheckpoint, LogHead, LogLeaf, LogNode
from tests.support.cases import make_case, make_id_number
from tests.support.databases import both_databases
from tests.support.tickets import staff_token, step
from wxbackend import verifylog
from wxbackend.clients.citizen import rate, verified_user
from wxbackend.db import database
from wxbackend.services.public.listing import forget_first_pages
from wxbackend.services.ratings import defaults
from wxbackend.services.transparency import checkpoints, log, merkle, note

LOG = "/api/v1/public/log"
E = "/admin/api/evaluations"


async def history(api, sandbox, ctx) -> dict:
    """Two citizens' ratings (one 差评 with a ticket), a follow-up, a reply, a moderation, a
    ticket step and a default rating: every kind of event, through the real writers."""
    ids = {}
    for seed, overall, comment in ((1, 5, "办事很快"), (2, 1, "排队两小时")):
        number = make_id_number(300 + seed)
        _, scene = await make_case(ctx, "黎明", number)
        token = await verified_user(api, sandbox, "黎明", number)
        status, answer = await rate(
            api, token, scene=scene, overall=overall, comment=comment, indicators=["efficiency"]
        )
        assert status == 201, answer
        ids[overall] = answer["evaluation"]
        ids[f"token{overall}"] = token
    good, bad = ids[5], ids[1]
    # rule 15: a 差评's follow-up comes once its ticket is closed; flipped here directly (no
    # log event), and back to open for the ticket step below
    await ctx.db.run(lambda: Ticket.update(status="closed").execute())
    status, follow = await api(
        "POST", f"/api/v1/evaluations/{bad['id']}/follow-up", {"overall": 4}, token=ids["token1"]
    )
    assert status == 201, follow
    await ctx.db.run(lambda: Ticket.update(status="open").execute())
    boss = await staff_token(api, ctx, "boss", "superadmin")
    assert (await api("POST", f"{E}/{bad['id']}/reply", {"text": "已整改"}, token=boss))[0] == 201
    body = {"visible": False, "reason": "含个人信息"}
    assert (await api("POST", f"{E}/{good['id']}/moderate", body, token=boss))[0] == 200
    _, tickets = await api("GET", "/admin/api/tickets", token=boss)
    ticket_id = tickets["items"][0]["id"]
    assert (await step(api, boss, ticket_id, "verify", {"valid": True}))[0] == 200
    case_id, _ = await make_case(
        ctx, "张三", make_id_number(399), completed_at=utcnow() - timedelta(days=8)
    )
    assert await ctx.db.run(defaults.apply_default_rating, int(case_id), 7) is not None
    return {
        "good": good,
        "bad": bad,
        "follow": follow["evaluation"],
        "boss": boss,
        "token": ids["token5"],
    }


async def sign(ctx):
    return await ctx.db.run(checkpoints.sign_new, checkpoints.signer_of(ctx))


async def run_verify(base_url, *args, **kw) -> verifylog.Report:
    return await asyncio.to_thread(verifylog.verify, base_url, *args, **kw)


def leaves() -> list[dict]:
    return [json.loads(row.leaf) for row in LogLeaf.select().order_by(LogLeaf.index)]


@both_databases
@pytest.mark.asyncio
async def test_every_event_is_logged_with_receipts_and_proofs(api, sandbox, ctx, base_url):
    made = await history(api, sandbox, ctx)
    logged = await ctx.db.run(leaves)
    assert [leaf["kind"] for leaf in logged] == [
        "rating",
        "rating",
        "follow_up",
        "reply",
        "moderation",
        "ticket",
        "rating",
    ]
    rating, _, follow, reply, moderation, ticket, default = logged
    assert rating["evaluation"] == made["good"]["id"] and rating["name_masked"] == "黎**"
    assert rating["comment"]["status"] == "visible" and len(rating["comment"]["sha256"]) == 64
    assert follow["first"] == made["bad"]["id"] and follow["assess_number"] == 2
    assert reply["text_sha256"] == hashlib.sha256("已整改".encode()).hexdigest()
    assert moderation["comment"] == {"status": "hidden"} and moderation["reason"] == "含个人信息"
    assert (ticket["status"], ticket["action"]) == ("verified", "verify")
    assert default["channel"] == "default" and "commitment" not in default
    # public fields only: no real name, no ID hash, no comment text in the log
    stored = await ctx.db.run(Evaluation.get_by_id, int(made["good"]["id"]))
    text = json.dumps(logged, ensure_ascii=False)
    assert "黎明" not in text and stored.rater_id_hash not in text and "办事很快" not in text

    # receipts: no checkpoint until one is signed, then the first covering one
    receipt = made["good"]["receipt"]
    assert receipt["leaf_index"] == 0 and receipt["checkpoint"] is None
    assert made["follow"]["receipt"]["leaf_index"] == 2
    salt = receipt["salt"]
    assert rating["commitment"] == verifylog.commitment_of(salt, made["good"])
    first = await sign(ctx)
    assert first.tree_size == 7 and await sign(ctx) is None  # nothing new: not signed again
    status, key = await api("GET", f"{LOG}/key")
    assert status == 200 and key["vkey"].startswith(key["origin"] + "+")
    verifier = note.parse_vkey(key["vkey"])
    status, body = await api("GET", f"{LOG}/checkpoint")
    checkpoint = note.parse_checkpoint(body.decode())
    assert status == 200 and checkpoint.size == 7 and checkpoint.signed_by(verifier)
    assert body.decode().startswith(f"{key['origin']}\n7\n")
    status, mine = await api("GET", "/api/v1/me/evaluations", token=made["token"])
    assert status == 200 and mine["items"][0]["receipt"] == {**receipt, "checkpoint": first.note}

    status, entries = await api("GET", f"{LOG}/entries?start=0&end=7")
    assert status == 200 and [e["index"] for e in entries["entries"]] == list(range(7))
    hashes = [bytes.fromhex(e["leaf_hash"]) for e in entries["entries"]]
    assert merkle.root_of(hashes) == checkpoint.root
    for index in range(7):
        status, proof = await api("GET", f"{LOG}/proof/inclusion?leaf_index={index}&tree_size=7")
        assert status == 200
        merkle.verify_inclusion(
            index, 7, hashes[index], [bytes.fromhex(h) for h in proof["hashes"]], checkpoint.root
        )
    old_root = merkle.root_of(hashes[:3])
    status, proof = await api("GET", f"{LOG}/proof/consistency?first=3&second=7")
    merkle.verify_consistency(
        3, 7, old_root, checkpoint.root, [bytes.fromhex(h) for h in proof["hashes"]]
    )
    report = await run_verify(base_url)
    assert report.ok, report.problems


@pytest.mark.asyncio
async def test_bad_parameters_are_400_never_500(api, sandbox, ctx):
    number = make_id_number(350)
    _, scene = await make_case(ctx, "黎明", number)
    token = await verified_user(api, sandbox, "黎明", number)
    assert (await rate(api, token, scene=scene, overall=5))[0] == 201
    for query in (
        "proof/inclusion",
        "proof/inclusion?leaf_index=0",
        "proof/inclusion?leaf_index=-1&tree_size=1",
        "proof/inclusion?leaf_index=1&tree_size=1",
        "proof/inclusion?leaf_index=0&tree_size=2",
        "proof/inclusion?leaf_index=x&tree_size=1",
        "proof/inclusion?leaf_index=0&tree_size=99999999999999999999",
        "proof/consistency?first=2&second=1",
        "proof/consistency?first=0&second=5",
        "proof/consistency?first=&second=1",
        "entries?start=2&end=3",
        "entries?start=0&end=1001",
        "entries?start=1&end=0",
        "entries?start=0",
        "entries?start=a&end=1",
        "checkpoints?before=x",
    ):
        status, answer = await api("GET", f"{LOG}/{query}")
        assert status == 400 and answer["error"]["code"] == "invalid_query", query
    status, answer = await api("GET", f"{LOG}/entries?start=0&end=1000")
    assert status == 200 and [e["index"] for e in answer["entries"]] == [0]
    assert (await api("GET", f"{LOG}/proof/consistency?first=0&second=1"))[1]["hashes"] == []


# ---- tampering -----------------------------------------------------------------------------


def _rebuild_tree() -> None:
    """What a log rewriting its history does: recompute every node from the stored leaves."""
    LogNode.delete().execute()
    frontier: list[bytes] = []
    rows = list(LogLeaf.select().order_by(LogLeaf.index))
    for row in rows:
        hashed = merkle.leaf_hash(row.leaf.encode())
        LogLeaf.update(leaf_hash=hashed).where(LogLeaf.index == row.index).execute()
        nodes, frontier = merkle.append_leaf(frontier, row.index, hashed)
        for level, index, value in nodes[1:]:
            LogNode.insert(id=log.node_id(level, index), hash=value).execute()
    LogHead.update(frontier=b"".join(frontier)).execute()
    LogCheckpoint.delete().execute()


def _swap_leaves(a: int, b: int) -> None:
    first, second = LogLeaf.get_by_id(a), LogLeaf.get_by_id(b)
    with database.atomic():
        for row, other in ((first, second), (second, first)):
            LogLeaf.update(leaf=other.leaf, leaf_hash=other.leaf_hash).where(
                LogLeaf.index == row.index
            ).execute()


def _delete_rating(evaluation_id: int) -> None:
    with database.atomic():
        Evaluation.delete().where(Evaluation.id == evaluation_id).execute()


def _fork(evaluation_id: int) -> None:
    with database.atomic():
        row = LogLeaf.get_by_id(0)
        leaf = json.loads(row.leaf)
        leaf["overall"] = 1
        LogLeaf.update(leaf=json.dumps(leaf)).where(LogLeaf.index == 0).execute()
        _rebuild_tree()


@both_databases
@pytest.mark.asyncio
@pytest.mark.parametrize("tamper", ["text", "delete", "reorder", "fork"])
async def test_verify_log_names_what_was_tampered_with(
    api, sandbox, ctx, base_url, tmp_path, tamper
):
    made = await history(api, sandbox, ctx)
    await sign(ctx)
    state = str(tmp_path / "state.json")
    report = await run_verify(base_url, state)
    assert report.ok, report.problems
    good = int(made["good"]["id"])
    bad = int(made["bad"]["id"])
    if tamper == "text":
        await ctx.db.run(
            lambda: Evaluation.update(comment="改过的评价").where(Evaluation.id == bad).execute()
        )
        expected = f"evaluation {bad}: the public comment text differs from the log"
    elif tamper == "delete":
        await ctx.db.run(_delete_rating, good)
        expected = f"evaluation {good} (leaf 0) is in the log but not in the public list"
    elif tamper == "reorder":
        await ctx.db.run(_swap_leaves, 0, 1)
        expected = "entries 0, 1 are not the leaves the log signed"
    else:
        await ctx.db.run(_fork, good)
        await sign(ctx)  # the rewritten tree, signed with the log's own key
        expected = "not consistent with the checkpoint of size 7 seen before"
    forget_first_pages(ctx)  # page 1 is cached ≤1 s: a verifier a second later sees this
    report = await run_verify(base_url, state)
    assert not report.ok
    assert any(expected in problem for problem in report.problems), report.problems
    if tamper == "fork":  # without the state of an earlier run the fork is self-consistent
        assert not any("consistent" in p for p in (await run_verify(base_url)).problems)


@pytest.mark.asyncio
async def test_receipt_checks_inclusion_and_the_commitment(api, sandbox, ctx, base_url, tmp_path):
    assert (await sign(ctx)).tree_size == 0  # the empty log's checkpoint
    made = await history(api, sandbox, ctx)
    path = tmp_path / "receipt.json"
    path.write_text(json.dumps({"evaluation": made["bad"]}, ensure_ascii=False))
    report = await run_verify(base_url, receipt_file=str(path))
    assert any("not yet in a signed checkpoint" in p for p in report.problems)
    await sign(ctx)
    report = await run_verify(base_url, receipt_file=str(path))
    assert report.ok, report.problems
    assert any("commitment matches" in line for line in report.passed)
    changed = dict(made["bad"], overall=5)
    path.write_text(json.dumps({"evaluation": changed}, ensure_ascii=False))
    report = await run_verify(base_url, receipt_file=str(path))
    assert any("commitment" in p and "does not match" in p for p in report.problems)


@pytest.mark.asyncio
async def test_forged_signature_and_witnesses(api, sandbox, ctx, base_url, tmp_path):
    await history(api, sandbox, ctx)
    checkpoint = await sign(ctx)
    witness = note.Signer("regulator.example/witness", b"\x07" * 32)
    report = await run_verify(base_url, witnesses=[witness.vkey], require_cosignatures=1)
    assert "0 witness cosignature(s) on the checkpoint; 1 required" in report.problems
    body = checkpoint.note.partition("\n\n")[0] + "\n"
    cosigned = checkpoint.note + witness.signature_line(body)
    answer = await api("POST", f"{LOG}/cosign", {"vkey": witness.vkey, "note": cosigned})
    assert answer[0] == 403  # not a configured witness
    # a checkpoint signed by another key is refused by the verifier
    await ctx.db.run(
        lambda: LogCheckpoint.update(
            note=note.Signer(witness.name, b"\x08" * 32).sign(body)
        ).execute()
    )
    report = await run_verify(base_url)
    assert any("signature does not verify" in p for p in report.problems), report.problems


NOTE_WITNESS = note.Signer("regulator.example/w", b"\x07" * 32)
COSIGNER = note.Signer("regulator.example/c", b"\x09" * 32, note.ALG_COSIGNATURE)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "settings_overrides",
    [{"transparency": {"witnesses": [NOTE_WITNESS.vkey, COSIGNER.vkey]}}],
)
async def test_configured_witnesses_cosign(api, sandbox, ctx, base_url):
    """A witness adds its line with a note key (0x01) or a C2SP cosignature/v1 key (0x04,
    timestamped); the verifier counts only valid lines of the witnesses it is given."""
    assert note.parse_vkey(COSIGNER.vkey).alg == note.ALG_COSIGNATURE
    await history(api, sandbox, ctx)
    checkpoint = await sign(ctx)
    body = checkpoint.note.partition("\n\n")[0] + "\n"
    status, answer = await api("POST", f"{LOG}/cosign", {"vkey": COSIGNER.vkey, "note": "x"})
    assert status == 422
    stale = checkpoint.note + COSIGNER.signature_line(body.replace("\n7\n", "\n6\n"))
    status, answer = await api("POST", f"{LOG}/cosign", {"vkey": COSIGNER.vkey, "note": stale})
    assert status == 422  # a signature of another body
    for witness in (NOTE_WITNESS, COSIGNER):
        cosigned = checkpoint.note + witness.signature_line(body)
        status, answer = await api(
            "POST", f"{LOG}/cosign", {"vkey": witness.vkey, "note": cosigned}
        )
        assert status == 200 and answer == {"tree_size": 7, "witness": witness.name}
    both = [NOTE_WITNESS.vkey, COSIGNER.vkey]
    report = await run_verify(base_url, witnesses=both, require_cosignatures=2)
    assert report.ok, report.problems
    report = await run_verify(base_url, witnesses=[COSIGNER.vkey], require_cosignatures=2)
    assert "1 witness cosignature(s) on the checkpoint; 2 required" in report.problems


# ---- concurrency -------------------------------------------------------------------------


async def concurrent_appends_are_gap_free(ctx, n: int = 40) -> None:
    """Default ratings of ``n`` cases stored at once on the database threads (plus moderation-
    free appends): leaf indexes 0..n-1 without a gap, and the stored tree is the tree of the
    leaves in index order."""
    old = utcnow() - timedelta(days=9)
    cases = [
        int((await make_case(ctx, "王五", make_id_number(500 + i), completed_at=old))[0])
        for i in range(n)
    ]
    stored = await asyncio.gather(
        *(ctx.db.run(defaults.apply_default_rating, case, 7) for case in cases)
    )
    assert all(stored)

    def check() -> None:
        rows = list(LogLeaf.select().order_by(LogLeaf.index))
        assert [r.index for r in rows] == list(range(n))
        assert sorted(r.evaluation_id for r in rows) == sorted(stored)
        assert log.tree_size() == n
        hashes = [merkle.leaf_hash(r.leaf.encode()) for r in rows]
        assert [bytes(r.leaf_hash) for r in rows] == hashes
        assert log.root_at(n) == merkle.root_of(hashes)
        head = LogHead.get_by_id(1)
        assert merkle.root_from_frontier(log._split(bytes(head.frontier))) == merkle.root_of(hashes)

    await ctx.db.run(check)


@both_databases
@pytest.mark.asyncio
async def test_concurrent_appends(ctx):
    await concurrent_appends_are_gap_free(ctx)


# ---- the worker's jobs ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_worker_signs_checkpoints_and_monitors_the_log(api, sandbox, ctx, base_url, caplog):
    from models.job import Job
    from wxbackend.services.transparency import jobs as tlog_jobs

    made = await history(api, sandbox, ctx)
    assert await ctx.db.run(tlog_jobs.ensure_scheduled, 30) == 2
    assert await ctx.db.run(tlog_jobs.ensure_scheduled, 30) == 0  # once per slot
    due = await ctx.db.run(lambda: list(Job.select().where(Job.kind == tlog_jobs.KIND)))
    for job in due:
        await tlog_jobs.handle(ctx, job)  # signs; the monitor has no URL yet: skipped
    assert (await ctx.db.run(checkpoints.latest)).tree_size == 7
    keys = await ctx.db.run(
        lambda: sorted(j.key for j in Job.select().where(Job.kind == "transparency"))
    )
    assert len(keys) == 4  # each run scheduled its next slot first

    ctx_settings = ctx.settings
    ctx.settings = ctx_settings.replace(transparency__monitor_url=base_url)
    try:
        assert await tlog_jobs.monitor(ctx) is True
        await ctx.db.run(
            lambda: (
                Evaluation.update(comment="改过的")
                .where(Evaluation.id == int(made["bad"]["id"]))
                .execute()
            )
        )
        forget_first_pages(ctx)  # page 1 is cached ≤1 s: the next run a second later sees it
        with caplog.at_level("ERROR", logger="wxbackend.transparency"):
            assert await tlog_jobs.monitor(ctx) is False
    finally:
        ctx.settings = ctx_settings
    assert any("ALERT" in r.getMessage() for r in caplog.records)
    metrics = ctx.metrics.render().decode()
    assert "wxb_transparency_verify_failures_total 1.0" in metrics
    assert "wxb_transparency_verify_ok 0.0" in metrics


@pytest.mark.asyncio
async def test_tiles_serve_the_same_tree(api, sandbox, ctx):
    from wxbackend.services.transparency import tiles

    assert tiles.parse("0/x001/x234/067") == (0, 1234067, 256)
    assert tiles.parse("entries/005.p/12") == ("entries", 5, 12)
    for bad in ("0/1234", "0/x12/034", "64/000", "0/000.p/256", "0/000.p/0", "a/000"):
        with pytest.raises(tiles.NoTile):
            tiles.parse(bad)
    await history(api, sandbox, ctx)
    _, entries = await api("GET", f"{LOG}/entries?start=0&end=7")
    status, tile = await api("GET", f"{LOG}/tile/0/000.p/7")
    assert status == 200
    assert tile == b"".join(bytes.fromhex(e["leaf_hash"]) for e in entries["entries"])
    status, bundle = await api("GET", f"{LOG}/tile/entries/000.p/7")
    texts, offset = [], 0
    while offset < len(bundle):
        length = int.from_bytes(bundle[offset : offset + 2], "big")
        texts.append(bundle[offset + 2 : offset + 2 + length].decode())
        offset += 2 + length
    assert texts == [e["leaf"] for e in entries["entries"]]
    for missing in ("0/000", "0/000.p/8", "1/000.p/1", "entries/001.p/1", "0/000.p/x"):
        status, answer = await api("GET", f"{LOG}/tile/{missing}")
        assert status == 404 and answer["error"]["code"] == "not_found", missing


@pytest.mark.asyncio
async def test_the_verify_log_command(api, sandbox, ctx, base_url, tmp_path, capsys):
    import logging

    from wxbackend import cli

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level  # cli.main sets up logging: put it back
    try:
        await _verify_log_command(api, sandbox, ctx, base_url, tmp_path, capsys, cli)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


async def _verify_log_command(api, sandbox, ctx, base_url, tmp_path, capsys, cli):
    made = await history(api, sandbox, ctx)
    await sign(ctx)
    receipt = tmp_path / "receipt.json"
    receipt.write_text(json.dumps({"evaluation": made["bad"]}, ensure_ascii=False))
    state = str(tmp_path / "state.json")
    argv = ["verify-log", base_url, "--state", state, "--receipt", str(receipt)]
    assert await asyncio.to_thread(cli.main, argv) == 0
    out = capsys.readouterr()
    assert "ok: checkpoint of size 7 signed by" in out.out and "FAIL" not in out.err
    await ctx.db.run(_delete_rating, int(made["good"]["id"]))
    forget_first_pages(ctx)  # page 1 is cached ≤1 s: a verifier a second later sees this
    assert await asyncio.to_thread(cli.main, argv) == 1
    err = capsys.readouterr().err
    assert f"FAIL: evaluation {made['good']['id']} (leaf 0) is in the log but not in the" in err
    assert await asyncio.to_thread(cli.main, ["verify-log", "file:///etc/passwd"]) == 1
    assert "not an http(s) URL" in capsys.readouterr().err


@pytest.mark.asyncio
async def test_ratings_stored_before_the_log_are_backfilled(ctx, base_url):
    """An installation that had ratings before the log: the migration appends them (their
    current state, replies, stepped tickets) oldest first, and the log verifies."""
    from tests.support.public_seed import (
        add_reply,
        insert_case,
        insert_rating,
        open_ticket,
        seed_catalog,
    )

    def before_the_log() -> None:
        seed_catalog(ctx)
        old = utcnow() - timedelta(days=30)
        good = insert_rating(insert_case(ctx), 5, comment="很好", created_at=old)
        hidden = insert_rating(
            insert_case(ctx), 4, comment="某某电话", comment_status="hidden", created_at=old
        )
        bad = insert_rating(insert_case(ctx), 1, comment="太慢", indicators=("overdue",))
        add_reply(bad, "已整改")
        open_ticket(bad, status="verified")
        case_of_good = Evaluation.get_by_id(good).case_id
        insert_rating(case_of_good, 3, assess_number=2, comment="追评")
        del hidden

    await ctx.db.run(before_the_log)
    assert await ctx.db.run(log.tree_size) == 0
    assert await ctx.db.run(log.backfill) == 6
    kinds = [leaf["kind"] for leaf in await ctx.db.run(leaves)]
    assert kinds[:2] == ["rating", "rating"] and sorted(kinds[2:]) == [
        "follow_up",
        "rating",
        "reply",
        "ticket",
    ]
    await sign(ctx)
    report = await run_verify(base_url)
    assert report.ok, report.problems


def test_the_signing_key_is_generated_with_sqlite_and_required_with_postgresql(tmp_path):
    import os
    import stat

    from wxbackend.security import StartupError
    from wxbackend.settings import load_settings

    def settings(**layers):
        base = {"server": {"data_dir": str(tmp_path)}}
        for section, values in layers.items():
            base.setdefault(section, {}).update(values)
        return load_settings(env={}, overrides=base)

    sqlite = settings(database={"url": f"sqlite:///{tmp_path}/x.db"})
    first = checkpoints.load_signer(sqlite)
    path = tmp_path / checkpoints.KEY_FILE
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert checkpoints.load_signer(sqlite).vkey == first.vkey  # generated once, then read
    assert first.name == checkpoints.DEFAULT_ORIGIN
    public = settings(
        database={"url": f"sqlite:///{tmp_path}/x.db"},
        server={"public_url": "https://pj.example.gov.cn/"},
    )
    assert checkpoints.load_signer(public).name == "pj.example.gov.cn/log"
    postgres = {"url": "postgresql://u:p@127.0.0.1:1/db"}
    with pytest.raises(StartupError, match="transparency.signing_key"):
        checkpoints.load_signer(settings(database=postgres))
    with pytest.raises(StartupError, match="must be standard base64 of 32 bytes"):
        checkpoints.load_signer(settings(transparency={"signing_key": "c2hvcnQ="}))
    seed = "B" * 43 + "="
    configured = checkpoints.load_signer(
        settings(database=postgres, transparency={"signing_key": seed})
    )
    assert configured.seed == base64.b64decode(seed)


@pytest.mark.asyncio
async def test_a_malformed_log_or_receipt_fails_without_a_crash(
    api, sandbox, ctx, base_url, tmp_path
):
    await history(api, sandbox, ctx)
    await sign(ctx)
    await ctx.db.run(lambda: LogLeaf.update(leaf="not json").where(LogLeaf.index == 3).execute())
    report = await run_verify(base_url)
    assert any("entry 3: its leaf_hash does not match its leaf" in p for p in report.problems)
    assert any("malformed data" in p for p in report.problems), report.problems
    path = tmp_path / "receipt.json"
    path.write_text('{"leaf_index": "x", "leaf_hash": 5}')
    report = await run_verify(base_url, receipt_file=str(path), check_list=False)
    assert any("malformed data" in p for p in report.problems), report.problems
    assert not (await run_verify("http://127.0.0.1:9")).ok  # nobody there: a failure, no crash
