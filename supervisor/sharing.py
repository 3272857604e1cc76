"""What a server running workers as another user (``--user``) shares with them, and how.

Through the workers' group only (never other users) they may traverse the home and run/ (not
list them) and read components/ (setgid: new files get the group); reach the inboxes in run/w
(traverse, never make, rename or remove: the server's user binds them); read cache/ (compiled
components: native code the fork server and every worker trust, so only the server's user
writes there, see compiled.py); and connect to the server's and the chain's sockets for them.
"""

from __future__ import annotations

import os
from pathlib import Path

from theater.paths import Home


def share_home(home: Home, gid: int) -> None:
    for d, mode in ((home.root, 0o710), (home.run, 0o710), (home.run / "w", 0o710),
                    (home.components, 0o2750), (home.cache, 0o2750)):
        os.chown(d, os.getuid(), gid)         # run/w and cache/ were the workers' before (an older server)
        os.chmod(d, mode)
    for p in [*home.components.iterdir(), *home.cache.rglob("*")]:
        os.chown(p, os.getuid(), gid)
        os.chmod(p, 0o2750 if p.is_dir() else 0o640)


def share_socket(path: Path, gid: int) -> None:
    os.chown(path, 0, gid)
    os.chmod(path, 0o660)
