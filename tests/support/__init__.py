"""Helpers shared by the test modules (no test module imports another).

- :mod:`tests.support.servers`: free ports, a throwaway redis-server.
- :mod:`tests.support.cli`: the ``wxbackend`` command as a subprocess.
- :mod:`tests.support.databases`: the SQLite / PostgreSQL parametrization.
- :mod:`tests.support.clock`: moving the application's clock instead of sleeping.
- :mod:`tests.support.public_seed`: cases and ratings inserted straight through the models.
- :mod:`tests.support.tickets`: rated cases with their 差评 tickets, admins, ticket steps.
- :mod:`tests.support.roles`: the admin role table's machinery.
- :mod:`tests.support.live`: a Server-Sent Events reader for the live feed.
- :mod:`tests.support.worker`: an in-process job worker and a polling wait.
"""
