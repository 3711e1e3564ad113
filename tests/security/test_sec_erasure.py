"""Issue 12 item 13: erasing an identity left its ID hash in ratings and likes.

api.md: ``DELETE /me/identity`` erases the identity (name, ID ciphertext and hash); past
ratings stay, shown by their mask only. Before the fix ``evaluation.rater_id_hash`` and
``like.liker_id_hash`` still held the keyed hash, linking the account to the ID number.
"""

from __future__ import annotations

import pytest

from models.evaluation import Evaluation, Like
from models.identity import Identity
from tests.support.cases import make_case, make_id_number
from wxbackend.clients.citizen import Citizen, rate, verified_user
from wxbackend.db import database


def every_text_value() -> set[str]:
    """Every text value of every table (what a leaked database would show), but the case
    records: the window system's data about its applicant (encrypted, with the keyed hash
    that matches pending cases), which the citizen's erasure of their WeChat identity does
    not cover."""
    found: set[str] = set()
    connection = database.connection()
    tables = [t for t in database.get_tables() if t != "case"]
    for table in tables:
        for row in connection.execute(f'SELECT * FROM "{table}"'):  # noqa: S608 - own tables
            found.update(value for value in row if isinstance(value, str))
    return found


@pytest.mark.asyncio
async def test_erasure_removes_the_id_hash_everywhere(api, sandbox, ctx):
    mine, theirs = make_id_number(501), make_id_number(502)
    my_case, my_scene = await make_case(ctx, "黎明", mine)
    their_case, their_scene = await make_case(ctx, "陈静", theirs)
    citizen = await Citizen.login(api, sandbox)
    await citizen.verify("黎明", mine)
    me = citizen.token
    them = await verified_user(api, sandbox, "陈静", theirs)
    status, mine_rated = await rate(api, me, scene=my_scene, overall=4)
    assert status == 201, mine_rated
    status, their_rated = await rate(api, them, scene=their_scene, overall=5)
    assert status == 201
    status, _ = await api(
        "PUT", f"/api/v1/evaluations/{their_rated['evaluation']['id']}/like", token=me
    )
    assert status == 200
    my_hash = await ctx.db.run(lambda: Identity.get(Identity.name_masked == "黎**").id_hash)
    assert my_hash in await ctx.db.run(every_text_value)

    assert (await api("DELETE", "/api/v1/me/identity", token=me))[0] == 204

    values = await ctx.db.run(every_text_value)
    assert my_hash not in values
    their_hash = await ctx.db.run(lambda: Identity.get(Identity.name_masked == "陈**").id_hash)
    assert their_hash in values  # nobody else's is touched
    rating = await ctx.db.run(Evaluation.get_by_id, int(mine_rated["evaluation"]["id"]))
    assert rating.rater_id_hash is None and rating.name_masked == "黎**"  # shown by its mask
    likes = await ctx.db.run(lambda: list(Like.select()))
    assert len(likes) == 1 and likes[0].name_masked == "黎**"

    # verified again on the same account, the like stays one like
    await citizen.verify("黎明", mine)
    status, answer = await api(
        "PUT", f"/api/v1/evaluations/{their_rated['evaluation']['id']}/like", token=me
    )
    assert status == 200 and answer == {"liked": True, "like_count": 1}
    status, answer = await api(
        "DELETE", f"/api/v1/evaluations/{their_rated['evaluation']['id']}/like", token=me
    )
    assert status == 200 and answer == {"liked": False, "like_count": 0}
