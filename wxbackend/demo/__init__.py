"""``wxbackend demo``: the whole 好差评 flow end to end against the WeChat sandbox, step by step.

The real server runs in-process (:class:`wxbackend.server.AppServer`: the settings of
``serve``, but with its data kept apart in ``<data_dir>/demo/`` — its own SQLite
``data/demo/wxbackend.db``, generated keys, the embedded Redis — with the WeChat sandbox and
the embedded worker) on a free port (or ``--port``); ``--keep-running`` then logs each request
as ``serve`` does. The demo passes two settings of its own:
``reminders.first_after_seconds = 1`` and ``reminders.quiet_hours = ""`` so that a reminder
arrives while you watch. Then it plays every actor over real HTTP, printing each step in
Chinese and English with its key values:

1. setup, in-process through the services: the example catalogue
   (``conf/catalog.example.json``), a demo partner key, a demo superadmin ``demo`` (its
   generated password is printed when it is created and kept in
   ``<data_dir>/demo-admin-password.txt``, mode 0600); reused when present;
2. the admin configures the subscribe-message templates; the sandbox registers them; the
   admin gives the demo center its WeCom group robot (a robot of the sandbox; the demo sets
   ``wecom.api_base = "sandbox"``);
3. the window system reports a finished case (signed) and fetches its QR code image
   (saved as ``<data_dir>/demo-qr.png``);
4. the citizen logs in, accepts the subscriptions, verifies by face, sees the case pending,
   scans, is reminded about a second case by the worker, rates the first one 2 stars (a 差评);
   a second citizen likes the rating; the 差评's alert reaches the center's robot;
5. the admin works the 差评 ticket: verify → rectify → callback (satisfied) → close; the
   citizen gets the rectified notice;
6. the URLs to browse (the public page, the APIs, the console with the demo credentials).

A step whose endpoint is missing prints ``skipped: <reason>`` and the demo goes on; any other
failure stops it with a message and exit code 1. Every run reports new cases; the catalogue,
partner key and admin are reused. Nothing printed shows an ID number or a real name: only the
demo's fictional personas, and masks.

Modules: `run` (settings, the server, the entry point), `flow` (the steps in order, what
they hand each other, the summary), one module per actor's steps (`prepare`, `office` for the
admin, `window` for the window system, `citizen`, `alerts` for the WeCom robot), `output`
(lines, masks, Skip/DemoError).
Every actor talks HTTP through the shared clients of `wxbackend.clients`.
"""

from __future__ import annotations

from wxbackend.demo.run import demo_settings, run_demo

__all__ = ["demo_settings", "run_demo"]
