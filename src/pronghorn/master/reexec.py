"""Binary upgrade (USR2): start a new master that inherits the listening sockets.

The old master forks; the child runs ``pre_exec`` and replaces itself with a fresh interpreter
running the original command line. The sockets travel as inherited file descriptors named in
``PRONGHORN_FD`` (or in systemd's ``LISTEN_FDS``/``LISTEN_PID`` when the old master got them from
systemd), and ``PRONGHORN_PID`` tells the new master who its predecessor is, so it uses the
``.2`` pidfile until that predecessor is gone.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

FD_VARIABLE = "PRONGHORN_FD"
PID_VARIABLE = "PRONGHORN_PID"
SYSTEMD_FIRST_FD = 3


def inherited_fds(environ: Mapping[str, str], pid: int) -> list[int]:
    """Listening sockets handed to this process: systemd's first, then a previous master's."""
    if environ.get("LISTEN_PID") == str(pid) and environ.get("LISTEN_FDS", "").isdecimal():
        return list(range(SYSTEMD_FIRST_FD, SYSTEMD_FIRST_FD + int(environ["LISTEN_FDS"])))
    listed = environ.get(FD_VARIABLE, "")
    return [int(fd) for fd in listed.split(",") if fd.strip().isdecimal()]


def predecessor_pid(environ: Mapping[str, str]) -> int:
    """The old master's pid if this master was started by USR2, else 0."""
    text = environ.get(PID_VARIABLE, "")
    return int(text) if text.isdecimal() else 0


def from_systemd(environ: Mapping[str, str], pid: int) -> bool:
    return environ.get("LISTEN_PID") == str(pid)


def exec_new_master(
    fds: Sequence[int], *, old_pid: int, systemd: bool, environ: Mapping[str, str], cwd: str
) -> None:
    """In the forked child: make ``fds`` inheritable and exec the original command (never returns)."""
    env = dict(environ)
    env[PID_VARIABLE] = str(old_pid)
    for fd in fds:
        os.set_inheritable(fd, True)
    if systemd:
        # systemd numbers sockets from 3; the child keeps the same numbers, only the pid changes.
        env["LISTEN_PID"] = str(os.getpid())
        env["LISTEN_FDS"] = str(len(fds))
    else:
        env.pop("LISTEN_PID", None)
        env.pop("LISTEN_FDS", None)
        env[FD_VARIABLE] = ",".join(str(fd) for fd in fds)
    os.chdir(cwd)
    # orig_argv keeps "-m pronghorn" and every flag exactly as the operator typed them.
    argv = [sys.executable, *sys.orig_argv[1:]]
    os.execve(sys.executable, argv, env)
