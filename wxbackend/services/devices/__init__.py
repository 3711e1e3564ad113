"""Evaluator screens (评价器, product rule 24): a window's screen, paired once with the window's
device key, shows the one-time code of the case just finished at that window.

* :mod:`.pairing` — device keys (admins create and rotate them; stored hashed) and device
  tokens (what a paired screen presents; bound to the window and to the key's generation, so
  a rotation ends every earlier pairing).
* :mod:`.tokens` — where device tokens live: the database (migration 18), cached in Redis, so
  a Redis restarted empty unpairs no screen.
* :mod:`.screen` — what a window's screen shows (the current case, its code, renewed before
  it expires) and the events on the window's Redis channel (``case``, ``rated``, ``revoked``),
  received through the process's one live hub (``services/public/live_hub.py``).
"""
