"""HTTP clients of our own API (and of the WeChat sandbox's control API), on Tornado's
`AsyncHTTPClient`: the one set the tests, the demo and the benchmarks use.

=============  ================================================================================
`http`         `ApiClient`: JSON over HTTP to the server, ``(status, answer)``; `ApiError`
`sandbox`      `SandboxClient`: the sandbox's ``/_sandbox/`` control API (login codes, face…)
`citizen`      `Citizen`: a logged-in citizen (login, face verification, scan, rate, like)
`partner`      `PartnerClient`: the signed partner API (api.md's HMAC), case bodies, ID numbers
`admin`        `AdminClient`: the console's API (login, tickets, WeChat config)
=============  ================================================================================

Every call returns ``(status, answer)`` (decoded JSON, or the raw bytes of a non-JSON answer);
the ``expect`` variants return the answer and raise `ApiError` on any other status.
"""
