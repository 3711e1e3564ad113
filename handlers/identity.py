"""Real-name identity through WeChat face verification (实名核身).

``/api/v1/identity/face/start``, ``/api/v1/identity/face/finish``, ``/api/v1/me/identity``.
"""

from __future__ import annotations

from handlers.base import CitizenHandler, Field, route
from handlers.openapi import bearer, errors_of, json_body
from wxbackend.services.citizens import face_checks, identity


class FaceStartHandler(CitizenHandler):
    openapi = {
        "post": {
            "summary": "Start a face verification: name and resident ID → a WeChat verify_id",
            **bearer(),
            "requestBody": json_body(
                {
                    "name": {
                        "type": "string",
                        "minLength": 2,
                        "maxLength": 32,
                        "pattern": face_checks.NAME_PATTERN,
                        "description": "CJK characters, parts joined by a middle dot (·)",
                    },
                    "id_number": {"type": "string", "description": "18 characters, GB 11643"},
                },
                required=["name", "id_number"],
            ),
            "responses": {
                "200": {"description": "{verify_id, expires_in}"},
                **errors_of(400, 401, 429, 503),
            },
        }
    }

    async def post(self) -> None:
        body = self.json_body(
            {"name": Field(str, required=True), "id_number": Field(str, required=True)}
        )
        result = await identity.start_face(self.ctx, self.user_id, body["name"], body["id_number"])
        self.send({"verify_id": result.verify_id, "expires_in": result.expires_in})


class FaceFinishHandler(CitizenHandler):
    openapi = {
        "post": {
            "summary": "Finish a face verification: WeChat's result binds the identity",
            **bearer(),
            "requestBody": json_body({"verify_id": {"type": "string"}}, required=["verify_id"]),
            "responses": {
                "200": {"description": "{verified: true, name_masked}"},
                **errors_of(400, 401, 403, 404, 409, 410, 503),
            },
        }
    }

    async def post(self) -> None:
        body = self.json_body({"verify_id": Field(str, required=True)})
        result = await identity.finish_face(self.ctx, self.user_id, body["verify_id"])
        self.send({"verified": result.verified, "name_masked": result.name_masked})


class MyIdentityHandler(CitizenHandler):
    openapi = {
        "delete": {
            "summary": "Erase the citizen's identity (name, ID ciphertexts and hash)",
            **bearer(),
            "responses": {"204": {"description": "erased (idempotent)"}, **errors_of(401)},
        }
    }

    async def delete(self) -> None:
        await identity.erase(self.ctx, self.user_id)
        self.no_content()


default_handlers = [
    route("/api/v1/identity/face/start", FaceStartHandler),
    route("/api/v1/identity/face/finish", FaceFinishHandler),
    route("/api/v1/me/identity", MyIdentityHandler),
]
