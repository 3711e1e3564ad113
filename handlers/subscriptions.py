"""Subscribe-message results from the mini-program: ``POST /api/v1/subscriptions``."""

from __future__ import annotations

from handlers.base import CitizenHandler, Field, route
from handlers.openapi import bearer, errors_of, json_body
from wxbackend.services.messaging import subscriptions


class SubscriptionsHandler(CitizenHandler):
    openapi = {
        "post": {
            "summary": "Record what wx.requestSubscribeMessage answered (at most 3 templates)",
            "description": (
                "accept adds one one-time quota (a long-term template becomes long-term), "
                "reject records the choice, ban sets the quota to 0; filter changes nothing. "
                "Templates the server does not send are ignored and omitted from the answer. "
                "quota is the one-time quota left per template, -1 for a long-term one. "
                "One popup reported both here and by the push event counts once."
            ),
            **bearer(),
            "requestBody": json_body(
                {
                    "results": {
                        "type": "object",
                        "maxProperties": subscriptions.MAX_PER_CALL,
                        "additionalProperties": {
                            "type": "string",
                            "enum": list(subscriptions.RESULTS),
                        },
                    }
                },
                required=["results"],
            ),
            "responses": {
                "200": {"description": '{quota: {"<template_id>": n}} (n = -1: long-term)'},
                **errors_of(400, 401),
            },
        }
    }

    async def post(self) -> None:
        body = self.json_body({"results": Field(dict, required=True)})
        quota = await self.ctx.db.run(
            subscriptions.record_results,
            self.user_id,
            body["results"],
            subscriptions.templates_of(self.ctx),
        )
        self.send({"quota": quota})


default_handlers = [route("/api/v1/subscriptions", SubscriptionsHandler)]
