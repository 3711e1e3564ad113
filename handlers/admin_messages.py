"""Subscribe messages for administrators (``/admin/api/messages``)."""

from __future__ import annotations

from handlers.admin_base import AdminHandler, admin_security
from handlers.base import route
from handlers.openapi import choice, errors_of
from wxbackend.services.admin import messages as messages_admin

_OTHERS = ("kind", "cursor", "limit")


class MessagesHandler(AdminHandler):
    permissions = {"get": "messages.read"}
    openapi = {
        "get": {
            "summary": "Subscribe messages (reminders, rectified notices): status, errcode, "
            "attempts; filter status=config_error to see what WeChat refused",
            **admin_security(),
            "parameters": [
                {"name": "status", "in": "query", "schema": choice(messages_admin.STATUSES)},
                *({"name": n, "in": "query", "schema": {"type": "string"}} for n in _OTHERS),
            ],
            "responses": {"200": {"description": "{items, next_cursor}"}, **errors_of(400, 401)},
        }
    }

    async def get(self) -> None:
        arg = self.get_query_argument
        page = await self.ctx.db.run(
            messages_admin.list_messages, self.admin, lambda name: arg(name, None)
        )
        self.send(page)


default_handlers = [route("/admin/api/messages", MessagesHandler)]
