"""``theater-server unit``: a systemd unit for this installation, printed to stdout.

    theater-server unit --user theater-actors > /etc/systemd/system/theater-server.service

``ExecStart`` is the entry point (or, failing that, the interpreter) actually installed here,
resolved now: moving or rebuilding the installation means printing the unit again. The
service is ``Type=notify`` with a watchdog (``health``). The server runs as root only to give
each worker its own cgroup (``Delegate=yes`` hands it the unit's subtree) and to drop the
workers to ``--user``; the hardening keeps what that needs and takes the rest away. Left out
on purpose, each of which would break it: ``ProtectControlGroups`` and ``ProtectKernelTunables``
(cgroupfs must stay writable), ``MemoryDenyWriteExecute`` (wasmtime compiles to machine code),
``User=`` (see above), ``PrivateUsers`` (the workers' user must be the host's). Namespaces are
restricted to network namespaces, the one kind the workers' sandbox makes.
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
import sys
from pathlib import Path

from theater import __version__
from theater.errors import UsageError

from .usage import Parser

DEFAULT_HOME = "/var/lib/theater"
# How long systemd waits between watchdog pings (the server pings at half of it).
WATCHDOG_SEC = 30
# What systemd's unit-file syntax would read as something else, in a path or a name.
_UNSAFE = re.compile(r"[\s\"'\\%$;]|[\x00-\x1f\x7f]")
# Where ProtectHome=yes hides everything: an installation here needs read-only instead.
_HOMES = ("/home", "/root", "/run/user")


def exec_start() -> list[str]:
    """The command that runs this installation's server: its ``theater-server`` script beside
    this interpreter, else the interpreter with ``-m supervisor``."""
    script = Path(sys.executable).parent / "theater-server"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script.absolute())]
    return [str(Path(sys.executable).absolute()), "-m", "supervisor"]


def _under_homes(paths: list[str]) -> bool:
    return any(os.path.realpath(p) == h or os.path.realpath(p).startswith(h + "/") for p in paths for h in _HOMES)


def render(home: str, user: str | None, program: str | None = None) -> str:
    """The unit text. ``program``: ExecStart's, for an installation elsewhere (default: this one's)."""
    command = [program] if program else exec_start()
    # the interpreter a venv links to and its standard library count too (pyenv puts them in /root)
    installed = [program] if program else [command[0], sys.executable, os.path.dirname(os.path.abspath(__file__)),
                                           sys.prefix, sys.base_prefix]
    protect_home = "read-only" if _under_homes([*installed, home]) else "yes"
    args = [*command, "--home", home, *(["--user", user] if user else []), "--log-stdout", "--log-level", "info"]
    state = home.removeprefix("/var/lib/") if home.startswith("/var/lib/") else None
    workers = (f"the workers run as {user}" if user else
               "no --user: the workers run as root (print it again with --user NAME, a user made for them)")
    lines = [
        f"# theater-server {__version__} as a systemd service; printed by `theater-server unit"
        f"{f' --user {user}' if user else ''} --home {home}{f' --exec {program}' if program else ''}`",
        "# for the installation of " + shlex.join(command) + f"; {workers}.",
        "# Install: see docs/operations.md. In short:",
        *([f"#   useradd --system --no-create-home --shell /usr/sbin/nologin {user}"] if user else []),
        "#   theater-server unit ... > /etc/systemd/system/theater-server.service",
        "#   systemctl daemon-reload && systemctl enable --now theater-server",
        f"#   theater --home {home} list",
        "",
        "[Unit]",
        "Description=Theater: WebAssembly actors, supervised, with signed event chains",
        "After=network.target",
        "",
        "[Service]",
        "Type=notify",
        "NotifyAccess=main",
        f"Environment=THEATER_HOME={home}",
        "ExecStart=" + shlex.join(args).replace("%", "%%").replace("$", "$$"),
        "# SIGHUP reopens the log file (when logging to a file rather than to the journal)",
        "ExecReload=/bin/kill -HUP $MAINPID",
        f"WatchdogSec={WATCHDOG_SEC}s",
        "# restoring many actors extends this as it goes (EXTEND_TIMEOUT_USEC)",
        "TimeoutStartSec=90s",
        "# the server stops its actors itself (children first, each within its shutdown timeout),",
        "# so only it gets SIGTERM; anything left after TimeoutStopSec gets SIGKILL",
        "KillMode=mixed",
        "TimeoutStopSec=60s",
        "Restart=on-failure",
        "RestartSec=1s",
        "# each actor's worker gets its own cgroup in this unit's subtree",
        "Delegate=yes",
        "# the whole service: the server and every actor",
        "MemoryMax=8G",
        "TasksMax=16384",
        "LimitNOFILE=65536",
        *([f"StateDirectory={state}", "StateDirectoryMode=0700"] if state else
          [f"# {home} must exist before the first start (ReadWritePaths needs it)"]),
        f"ReadWritePaths={home}",
        "UMask=0077",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        f"ProtectHome={protect_home}",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectClock=yes",
        "ProtectHostname=yes",
        "# only network namespaces: the fork server gives the workers one of their own (docs/isolation.md)",
        "RestrictNamespaces=net",
        "RestrictRealtime=yes",
        "RestrictSUIDSGID=yes",
        "LockPersonality=yes",
        "SystemCallArchitectures=native",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]
    return "\n".join(lines) + "\n"


def _checked_home(value: str) -> str:
    home = os.path.abspath(os.path.expanduser(value))
    if _UNSAFE.search(home):
        raise UsageError(f"--home {value!r}: a unit's paths cannot hold spaces, quotes, backslashes, '%', '$' or "
                         f"control characters; choose another directory")
    if home == "/" or Path(home).is_file():
        raise UsageError(f"--home {value}: expected a directory for the server's state, e.g. {DEFAULT_HOME}")
    return home


def _checked_user(name: str | None, here: bool) -> str | None:
    """A user name; one that exists on this host, when the unit is for this installation (``here``)."""
    if name is None:
        return None
    if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", name):
        raise UsageError(f"--user {name!r}: not a user name (lower-case letters, digits, '_' and '-')")
    try:
        if here:
            pwd.getpwnam(name)
    except KeyError:
        raise UsageError(f"--user {name}: no such user on this host; create it first: useradd --system "
                         f"--no-create-home --shell /usr/sbin/nologin {name}") from None
    return name


def main(argv: list[str]) -> int:
    p = Parser(
        prog="theater-server unit", description="Print a systemd unit that runs this installation's server "
        "(Type=notify, watchdog, cgroup delegation, hardening). See docs/operations.md.")
    p.add_argument("--user", metavar="NAME", help="the user the actors' workers run as (recommended)")
    p.add_argument("--home", metavar="DIR", default=DEFAULT_HOME, help=f"the server's home (default {DEFAULT_HOME})")
    p.add_argument("--exec", metavar="PROGRAM", dest="program",
                   help="ExecStart's program, for an installation elsewhere (a package for /opt/theater, say); "
                        "default: this installation's theater-server")
    args = p.parse_args(argv)
    try:
        home, user = _checked_home(args.home), _checked_user(args.user, here=args.program is None)
        if args.program is not None and (not os.path.isabs(args.program) or _UNSAFE.search(args.program)):
            raise UsageError(f"--exec {args.program!r}: expected an absolute path without spaces, quotes, "
                             f"backslashes, '%' or '$'")
    except UsageError as e:
        print(f"theater-server unit: {e.message}", file=sys.stderr)
        return 2
    sys.stdout.write(render(home, user, args.program))
    return 0
