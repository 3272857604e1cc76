"""The gateway: the host-side process that makes an actor's outside requests (``http-client``)
and keeps its content (``store``), so that a worker needs no network, no secret and no
write access to the store.

    python -m supervisor.gateway --home H --parent PID      (started by theater-server)

``service`` is its loop (who asks, under which grant), ``egress`` the HTTP requests,
``store`` the content store; ``link`` is the server's side (start, restart, grants).
"""
