"""How a failed send is classified: a Redis outage on our side (the access token, before any
call to WeChat) never makes the worker give a reminder up, however long it lasts."""

from __future__ import annotations

from redis.exceptions import ConnectionError as RedisConnectionError

from models.job import Job
from wxbackend.services.messaging.sending import SendPlan, classify
from wxbackend.wechat import errors as wx
from wxbackend.worker import MAX_ATTEMPTS


def plan(attempts: int, resend: bool = False) -> SendPlan:
    job = Job(key="reminder:1:1", kind="reminder", attempts=attempts)
    return SendPlan(job, 1, 1, 1, "openid", "tpl", "pages/x", {}, resend)


def test_a_redis_outage_past_the_attempts_is_retried_not_given_up():
    outcome = classify(RedisConnectionError("down"), plan(MAX_ATTEMPTS + 3))
    assert (outcome.job, outcome.message_status, outcome.quota) == ("retry", "pending", "restore")
    assert outcome.retry_at is not None


def test_a_redis_outage_retries_within_a_minute_however_many_attempts():
    early = classify(RedisConnectionError("down"), plan(2))
    late = classify(RedisConnectionError("down"), plan(MAX_ATTEMPTS + 30))
    assert late.retry_at is not None and early.retry_at is not None
    assert (late.retry_at - early.retry_at).total_seconds() < 60


def test_wechat_failing_past_the_attempts_is_still_given_up():
    outcome = classify(wx.WeChatUnavailableError("send", -1), plan(MAX_ATTEMPTS))
    assert (outcome.job, outcome.message_status) == ("fail", "failed")
