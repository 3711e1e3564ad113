"""The transparency log (issue 16). ``log.append`` is the one entry point of the writers.

This package's ``merkle``, ``canonical`` and ``note`` modules need nothing beyond the
standard library and ``cryptography``: the stand-alone verifier (``wxbackend.verifylog``)
uses them. Keep this file free of imports.
"""
