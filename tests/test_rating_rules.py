"""Product rules 14–17 over HTTP and as pure rules: the rating window (by scene and by case id,
its edges, a late report), follow-ups (identity, a 差评's ticket, the follow-up time), likes of
one's own rating, and comments cleaned of control and format characters."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from models.base import utcnow
from models.case import Case
from models.evaluation import Evaluation
from models.job import Job
from models.ticket import Ticket
from tests.support.admins import admin_token
from tests.support.cases import make_case, make_id_number
from wxbackend import errors
from wxbackend.clients.citizen import Citizen, rate, verified_user
from wxbackend.clients.partner import iso_ago
from wxbackend.services.messaging import schedule
from wxbackend.services.ratings import defaults, likes, window
from wxbackend.services.ratings.rules import clean_comment, parse_rating, strip_invisible
from wxbackend.settings import SettingsError
from wxbackend.timefmt import iso, parse_iso

NAME = "黎明"
ME = "/api/v1/me"
CALLBACKS = "/admin/api/callback-evaluations"
WEEK = timedelta(days=7)


def follow_up_path(evaluation_id: str) -> str:
    return f"/api/v1/evaluations/{evaluation_id}/follow-up"


def like_path(evaluation_id: str) -> str:
    return f"/api/v1/evaluations/{evaluation_id}/like"


def assert_error(result, status: int, code: str) -> None:
    got_status, answer = result
    assert (got_status, answer["error"]["code"]) == (status, code), answer


# --------------------------------------------------------------------------- the window rule

T0 = datetime(2026, 3, 2, 2, 0)


def test_window_runs_from_the_later_of_completion_and_report():
    assert window.window_end(T0, T0 + timedelta(hours=1), 7) == T0 + timedelta(days=7, hours=1)
    assert window.window_end(T0, T0 - timedelta(hours=1), 7) == T0 + WEEK  # reported early
    assert window.window_end(T0, None, 7) == T0 + WEEK
    late = Case(completed_at=T0, reported_at=T0 + timedelta(days=30))
    assert window.case_window_end(late, 7) == T0 + timedelta(days=37)
    end = T0 + WEEK
    case = Case(completed_at=T0, reported_at=T0, first_rated_at=None)
    assert window.is_open(case, 7, end - timedelta(microseconds=1))
    assert not window.is_open(case, 7, end)
    window.check_open(case, 7, end - timedelta(seconds=1))
    with pytest.raises(errors.RatingClosed):
        window.check_open(case, 7, end)


def test_a_case_rated_in_time_keeps_its_own_answer():
    """After the window, a case rated within it is not "closed" (its author hears
    already_evaluated / token_used); one default-rated at the window's end is."""
    end = T0 + WEEK
    rated = Case(completed_at=T0, reported_at=T0, first_rated_at=T0 + timedelta(days=1))
    window.check_open(rated, 7, end + timedelta(days=1))
    defaulted = Case(completed_at=T0, reported_at=T0, first_rated_at=end)
    with pytest.raises(errors.RatingClosed):
        window.check_open(defaulted, 7, end + timedelta(days=1))


def test_the_default_applies_at_the_windows_end_one_rule(settings):
    assert settings.rating.window_days == settings.rating.default_after_days == 7
    assert settings.rating.follow_up_days == 180
    with pytest.raises(SettingsError, match="rating.default_after_days"):
        settings.replace(rating__window_days=5)
    shorter = settings.replace(rating__window_days=5, rating__default_after_days=5, qr__ttl_days=5)
    assert shorter.rating.window_days == 5
    with pytest.raises(SettingsError, match="qr.ttl_days"):
        settings.replace(rating__window_days=5, rating__default_after_days=5)


# --------------------------------------------------------------------------- window over HTTP


@pytest.mark.asyncio
@pytest.mark.parametrize("by", ["scene", "case_id"])
async def test_window_edges_by_scene_and_by_case_id(api, sandbox, ctx, by):
    """Just inside the window a case is rated; just outside it is 410 rating_closed, by scene
    (its token still unexpired) and by case id alike (case id used to rate it on day 8)."""
    id_number = make_id_number(301)
    token = await verified_user(api, sandbox, NAME, id_number)
    later = utcnow() + timedelta(days=1)  # the token itself would still be valid
    outside = [
        await make_case(
            ctx, NAME, id_number, completed_at=utcnow() - WEEK - extra, token_expires_at=later
        )
        for extra in (timedelta(seconds=2), timedelta(days=1))
    ]
    inside_id, inside_scene = await make_case(
        ctx, NAME, id_number, completed_at=utcnow() - WEEK + timedelta(minutes=1)
    )
    for case_id, scene in outside:
        key = {"scene": scene} if by == "scene" else {"case_id": case_id}
        assert_error(await rate(api, token, overall=5, **key), 410, "rating_closed")
        if by == "scene":  # scanning says so too
            scanned = await api("POST", "/api/v1/scan", {"scene": scene}, token=token)
            assert_error(scanned, 410, "rating_closed")
    key = {"scene": inside_scene} if by == "scene" else {"case_id": inside_id}
    if by == "scene":
        status, scanned = await api("POST", "/api/v1/scan", {"scene": inside_scene}, token=token)
        assert status == 200, scanned
    status, answer = await rate(api, token, overall=5, **key)
    assert status == 201, answer


@pytest.mark.asyncio
async def test_rated_in_time_then_asked_again_after_the_window(api, sandbox, ctx):
    id_number = make_id_number(302)
    token = await verified_user(api, sandbox, NAME, id_number)
    case_id, _ = await make_case(ctx, NAME, id_number)
    status, answer = await rate(api, token, case_id=case_id, overall=4)
    assert status == 201, answer

    def shift_back() -> None:  # the same case, its window now long over
        case = Case.get_by_id(int(case_id))
        back = timedelta(days=10)
        case.completed_at -= back
        case.reported_at -= back
        case.first_rated_at -= back
        case.save()

    await ctx.db.run(shift_back)
    assert_error(await rate(api, token, case_id=case_id, overall=4), 409, "already_evaluated")


@pytest.mark.asyncio
async def test_a_late_report_gets_its_full_window(api, sandbox, ctx, partner):
    """Completed 8 days before it reached us: pending on /me until 7 days after the report,
    the same end as the case view, its token and the default rating's job; no instant
    default; rated by case id."""
    id_number = make_id_number(303)
    token = await verified_user(api, sandbox, NAME, id_number)
    status, answer = await partner.report_case(
        applicant={"name": NAME, "id_number": id_number},
        accepted_at=iso_ago(days=8, hours=1),
        completed_at=iso_ago(days=8),
    )
    assert status == 201, answer
    case_id = answer["case_id"]
    case = await ctx.db.run(Case.get_by_id, int(case_id))
    end = case.reported_at + WEEK
    assert case.completed_at + timedelta(days=8) - case.reported_at < timedelta(minutes=1)
    assert end - timedelta(seconds=1) <= parse_iso(answer["expires_at"]) <= end

    status, me = await api("GET", ME, token=token)
    assert [p["case_id"] for p in me["pending_cases"]] == [case_id]
    rate_until = parse_iso(me["pending_cases"][0]["rate_until"])
    assert abs(rate_until - end) < timedelta(seconds=1)
    status, view = await api("GET", f"/api/v1/cases/{case_id}", token=token)
    assert status == 200 and view["expires_at"] == me["pending_cases"][0]["rate_until"]

    job = await ctx.db.run(Job.get, Job.key == schedule.default_rating_key(int(case_id)))
    assert job.due_at == end and job.status == "pending"
    now = utcnow()
    assert await ctx.db.run(defaults.apply_default_rating, int(case_id), 7, now) is None
    assert int(case_id) not in await ctx.db.run(defaults.due_cases, 7, now)
    assert int(case_id) in await ctx.db.run(defaults.due_cases, 7, end)

    status, rated = await rate(api, token, case_id=case_id, overall=5)
    assert status == 201, rated
    status, me = await api("GET", ME, token=token)
    assert me["pending_cases"] == []


@pytest.mark.asyncio
async def test_pending_cases_end_with_the_window(api, sandbox, ctx):
    id_number = make_id_number(304)
    token = await verified_user(api, sandbox, NAME, id_number)
    inside, _ = await make_case(
        ctx, NAME, id_number, completed_at=utcnow() - WEEK + timedelta(minutes=1)
    )
    await make_case(ctx, NAME, id_number, completed_at=utcnow() - WEEK - timedelta(seconds=2))
    late, _ = await make_case(
        ctx, NAME, id_number, completed_at=utcnow() - timedelta(days=20), reported_at=utcnow()
    )
    status, me = await api("GET", ME, token=token)
    assert sorted(p["case_id"] for p in me["pending_cases"]) == sorted([inside, late])


# --------------------------------------------------------------------------- follow-ups


async def rated_by_applicant(api, sandbox, ctx, seed: int, **rating):
    """A verified applicant (a Citizen) who rated their case: ``(citizen, evaluation)``."""
    id_number = make_id_number(seed)
    case_id, _ = await make_case(ctx, NAME, id_number)
    citizen = await Citizen.login(api, sandbox)
    await citizen.verify(NAME, id_number)
    status, answer = await citizen.rate(case_id=case_id, **rating)
    assert status == 201, answer
    return citizen, id_number, answer["evaluation"]


async def age_rating(ctx, evaluation_id: str, days: float) -> None:
    """Make the rating ``days`` old."""
    at = utcnow() - timedelta(days=days)
    await ctx.db.run(
        lambda: (
            Evaluation.update(created_at=at).where(Evaluation.id == int(evaluation_id)).execute()
        )
    )


@pytest.mark.asyncio
async def test_follow_up_needs_a_verified_identity(api, sandbox, ctx):
    citizen, id_number, first = await rated_by_applicant(api, sandbox, ctx, 310, overall=4)
    status, _ = await citizen.call("DELETE", "/api/v1/me/identity")
    assert status in (200, 204)
    path = follow_up_path(first["id"])
    assert_error(await citizen.call("POST", path, {"overall": 5}), 403, "identity_required")
    await citizen.verify(NAME, id_number)  # verified again: the author may follow up
    status, answer = await citizen.call("POST", path, {"overall": 5})
    assert status == 201, answer


@pytest.mark.asyncio
@pytest.mark.parametrize("end", ["closed", "invalid"])
async def test_a_bad_ratings_follow_up_waits_for_its_ticket(api, sandbox, ctx, end):
    citizen, _, first = await rated_by_applicant(
        api, sandbox, ctx, 311, overall=1, comment="材料被退回三次"
    )
    path = follow_up_path(first["id"])
    for status in ("open", "verified", "rectified", "called_back"):
        await ctx.db.run(lambda s=status: Ticket.update(status=s).execute())
        assert_error(await citizen.call("POST", path, {"overall": 4}), 409, "ticket_open")
    # however long the rectification took: no follow_up_days for a 差评
    await age_rating(ctx, first["id"], 400)
    await ctx.db.run(lambda: Ticket.update(status=end).execute())
    status, answer = await citizen.call("POST", path, {"overall": 4})
    assert status == 201, answer


@pytest.mark.asyncio
async def test_other_follow_ups_within_follow_up_days(api, sandbox, ctx):
    citizen, _, first = await rated_by_applicant(api, sandbox, ctx, 312, overall=3)
    path = follow_up_path(first["id"])
    await age_rating(ctx, first["id"], 180.001)
    assert_error(await citizen.call("POST", path, {"overall": 5}), 410, "follow_up_closed")
    await age_rating(ctx, first["id"], 179.99)
    status, answer = await citizen.call("POST", path, {"overall": 5})
    assert status == 201, answer


# --------------------------------------------------------------------------- likes


@pytest.mark.asyncio
async def test_nobody_likes_their_own_rating(api, sandbox, ctx):
    citizen, id_number, first = await rated_by_applicant(api, sandbox, ctx, 320, overall=5)
    path = like_path(first["id"])
    assert_error(await citizen.call("PUT", path), 403, "own_rating")
    # the identity erased (the rating's rater_id_hash cleared) and verified again: by user id
    await citizen.call("DELETE", "/api/v1/me/identity")
    stored = await ctx.db.run(Evaluation.get_by_id, int(first["id"]))
    assert stored.rater_id_hash is None
    await citizen.verify(NAME, id_number)
    assert_error(await citizen.call("PUT", path), 403, "own_rating")
    other = await verified_user(api, sandbox, "张三", make_id_number(321))
    status, answer = await api("PUT", path, token=other)
    assert status == 200 and answer == {"liked": True, "like_count": 1}


@pytest.mark.asyncio
async def test_own_rating_known_by_identity_hash_too(api, sandbox, ctx):
    """A rating whose account is gone (user null) is still its identity's own."""
    _, _, first = await rated_by_applicant(api, sandbox, ctx, 322, overall=5)
    rating = await ctx.db.run(Evaluation.get_by_id, int(first["id"]))
    await ctx.db.run(
        lambda: Evaluation.update(user=None).where(Evaluation.id == rating.id).execute()
    )
    assert await ctx.db.run(likes.is_own_rating, rating.id, 0, rating.rater_id_hash)
    assert not await ctx.db.run(likes.is_own_rating, rating.id, 0, "another-hash")


# --------------------------------------------------------------------------- comments

ZW = "\u200b"  # zero-width space


@pytest.mark.parametrize(
    ("raw", "cleaned"),
    [
        ("排队太久", "排队太久"),
        (f"排{ZW}队\u200c太\u200d久\u2060", "排队太久"),  # zero-width space, (non-)joiner, WJ
        ("\ufeff态度很好", "态度很好"),  # BOM
        ("\u202e好评\u202c", "好评"),  # right-to-left override, pop
        ("\u2066a\u2067b\u2068c\u2069", "abc"),  # bidi isolates
        ("\u200e\u200fok", "ok"),  # LRM, RLM
        ("a\x00b\x07c\x1bd\x7fe", "abcde"),  # C0 and DEL
        ("a\x85b\x9bc", "abc"),  # C1
        ("第一行\r\n第二行", "第一行\n第二行"),  # newline kept, CR removed
        ("a\tb", "ab"),  # tab is a control character
        ("soft\u00adhyphen", "softhyphen"),  # Cf
        ("bad\ud800surrogate", "badsurrogate"),  # a lone surrogate is no text
        ("  全角\u3000空格  ", "全角\u3000空格"),  # spaces are not control characters
        ("emoji 👍🏽", "emoji 👍🏽"),
        (f"{ZW}\u202e\n\t{ZW}", None),  # nothing left: no comment
        ("\x00", None),
    ],
)
def test_comment_cleaning_table(raw, cleaned):
    assert clean_comment(raw, 500) == cleaned


def test_cleaning_comes_before_the_length_check():
    assert clean_comment("好" * 500 + ZW * 100, 500) == "好" * 500
    with pytest.raises(errors.CommentTooLong):
        clean_comment("好" * 501, 500)
    assert strip_invisible("a\nb") == "a\nb"


def test_a_bad_rating_with_only_invisible_text_needs_a_reason():
    """First ratings, follow-ups and callbacks share :func:`parse_rating`."""
    with pytest.raises(errors.ReasonRequired):
        parse_rating(2, comment=ZW * 3 + "\u202e")
    assert parse_rating(2, indicators=["overdue"], comment=ZW).comment is None
    assert parse_rating(5, comment=ZW).comment is None


@pytest.mark.asyncio
async def test_comments_are_stored_cleaned(api, sandbox, ctx):
    citizen, _, first = await rated_by_applicant(
        api, sandbox, ctx, 330, overall=4, comment=f"办事\u202e很{ZW}快"
    )
    assert first["comment"] == "办事很快"
    status, answer = await citizen.call(
        "POST", follow_up_path(first["id"]), {"overall": 5, "comment": f"{ZW}\u2066"}
    )
    assert status == 201 and answer["evaluation"]["comment"] is None
    id_number = make_id_number(331)
    case_id, _ = await make_case(ctx, NAME, id_number)
    token = await verified_user(api, sandbox, NAME, id_number)
    assert_error(
        await rate(api, token, case_id=case_id, overall=1, comment=ZW * 5),
        422,
        "reason_required",
    )


@pytest.mark.asyncio
async def test_callback_comments_are_cleaned_too(api, ctx):
    root = await admin_token(api, ctx)
    case_id, _ = await make_case(
        ctx, NAME, make_id_number(332), completed_at=utcnow() - timedelta(hours=30)
    )
    case_no = await ctx.db.run(lambda: Case.get_by_id(int(case_id)).case_no)
    body = {
        "case_no": case_no,
        "channel": "phone",
        "contact_at": iso(utcnow() - timedelta(hours=1)),
        "reference": "CALL-RULES-1",
    }
    bad = {**body, "overall": 2, "comment": ZW * 3 + "\u202e"}
    assert_error(await api("POST", CALLBACKS, bad, token=root), 422, "reason_required")
    good = {**body, "overall": 4, "comment": f"电话\u202e回访{ZW}：满意"}
    status, answer = await api("POST", CALLBACKS, good, token=root)
    assert status == 201, answer
    assert answer["evaluation"]["comment"] == "电话回访：满意"
