"""A systemd unit for the server of one root.

Type=simple runs `mailctl serve` in the foreground: systemd restarts the supervisor if it
fails (the supervisor itself replaces its serving processes). KillMode=mixed sends SIGTERM
to the supervisor alone, which stops its serving processes gracefully; systemd kills
whatever is left at the end of TimeoutStopSec.

The hardening keeps what the supervisor needs as root: binding ports below 1024, becoming
server.user in its children (setuid and setgid are system calls, which NoNewPrivileges
does not affect: it only stops execve from gaining privileges), giving files to that
user, reading and writing the root that user owns, and signalling its children.
"""
from __future__ import annotations

import shlex
import shutil
import sys

from .root import Root
from .service import STOP_DEADLINE_S

CAPABILITIES = ("CAP_NET_BIND_SERVICE", "CAP_SETUID", "CAP_SETGID", "CAP_CHOWN", "CAP_DAC_OVERRIDE",
                "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_KILL")


def command() -> list[str]:
    """How to run mailctl here: the installed script, else this Python with -m."""
    script = shutil.which("mailctl")
    return [script] if script else [sys.executable, "-m", "mailctl"]


def unit(root: Root, program: list[str] | None = None) -> str:
    start = shlex.join([*(program or command()), "--root", str(root.path), "serve"])
    return f"""\
[Unit]
Description=mailctl mail server ({root.path})
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStart={start}
ExecReload=/bin/kill -HUP $MAINPID
KillMode=mixed
TimeoutStopSec={int(STOP_DEADLINE_S) + 15}
Restart=on-failure
RestartSec=2
UMask=0077
LimitNOFILE=65536

# hardening
NoNewPrivileges=yes
CapabilityBoundingSet={" ".join(CAPABILITIES)}
ProtectSystem=strict
ReadWritePaths={root.path}
ProtectHome=read-only
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes

[Install]
WantedBy=multi-user.target
"""
