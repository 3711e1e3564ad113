"""Helpers shared by the test modules (no test module imports another:
tests/test_layout_tests.py). The fixtures stay in tests/conftest.py (``clock`` moves the
application's clock; ``db_backend`` picks the database), plus the live feed's here.

- :mod:`tests.support.servers`: free ports, a throwaway redis-server.
- :mod:`tests.support.cli`: the ``wxbackend`` command as a subprocess.
- :mod:`tests.support.databases`: the SQLite / PostgreSQL parametrization.
- :mod:`tests.support.admins`: an admin created and logged in (``admin_token``, ``PASSWORD``).
- :mod:`tests.support.cases`: citizen-side cases with a QR token (``make_case``, ID numbers).
- :mod:`tests.support.public_seed`: cases and ratings inserted straight through the models.
- :mod:`tests.support.tickets`: rated cases with their 差评 tickets, admins, ticket steps.
- :mod:`tests.support.roles`: the admin role table's machinery.
- :mod:`tests.support.live`: a Server-Sent Events reader for the live feed.
- :mod:`tests.support.worker`: an in-process job worker and a polling wait.
- :mod:`tests.support.sandbox`: the sandbox's WeChat side for its own tests (``tests/sandbox/``).
"""
