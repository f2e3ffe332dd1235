"""Dropping a worker's privileges (``user``, ``group``, ``initgroups``) and handing it its files.

The master may run as root so it can bind privileged ports; each worker switches to the configured
user and group right after the fork, before it loads the application. The order is fixed: the
supplementary groups first and the group next (both need root), the user last (after which root is
gone for good). The master keeps its ids, so files it creates for a worker (the heartbeat file, unix
sockets) are given to the worker's ids with ``chown_for()``.

"Current ids" below means the effective ids, which are the defaults of ``user`` and ``group``.
"""

from __future__ import annotations

import grp
import os
import pwd
from collections.abc import Callable
from typing import TypeAlias

PathOrFd: TypeAlias = "int | str | os.PathLike[str]"


def switch_user(uid: int, gid: int, *, initgroups: bool, log: Callable[[str], None] | None = None) -> None:
    """Make the calling process run as ``uid``/``gid``; nothing happens if those are the current ids.

    Supplementary groups become the user's groups from the group database when ``initgroups`` is true
    and ``uid`` has a passwd entry; otherwise, when running as root, they are cleared (so a worker does
    not keep root's groups). ``log`` receives a one-line note when ``initgroups`` cannot be honoured.
    Raises ``PermissionError`` with a one-line message naming the user or group when the process may
    not make the switch (only root may change to other ids).
    """
    if uid == os.geteuid() and gid == os.getegid():
        return
    user, group = describe_user(uid), describe_group(gid)
    try:
        _set_supplementary_groups(uid, gid, initgroups=initgroups, user=user, log=log)
    except PermissionError as exc:
        raise PermissionError(
            f"cannot set the supplementary groups of user {user} (group {group}): {_not_permitted()}"
        ) from exc
    try:
        os.setgid(gid)
    except PermissionError as exc:
        raise PermissionError(f"cannot switch to group {group}: {_not_permitted()}") from exc
    try:
        os.setuid(uid)
    except PermissionError as exc:
        raise PermissionError(f"cannot switch to user {user}: {_not_permitted()}") from exc


def chown_for(target: PathOrFd, uid: int, gid: int) -> None:
    """Give a file (path or open descriptor) to ``uid``/``gid``; ids equal to the current ones are kept.

    For the master's files a worker must own: its heartbeat file (by descriptor, as it is unlinked)
    and unix sockets (by path).
    """
    new_uid = -1 if uid == os.geteuid() else uid
    new_gid = -1 if gid == os.getegid() else gid
    if new_uid == -1 and new_gid == -1:
        return
    if isinstance(target, int):
        os.fchown(target, new_uid, new_gid)
    else:
        os.chown(target, new_uid, new_gid)


def describe_user(uid: int) -> str:
    """``'name' (uid N)``, or ``uid N`` when there is no passwd entry."""
    try:
        return f"'{pwd.getpwuid(uid).pw_name}' (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def describe_group(gid: int) -> str:
    """``'name' (gid N)``, or ``gid N`` when there is no group entry."""
    try:
        return f"'{grp.getgrgid(gid).gr_name}' (gid {gid})"
    except KeyError:
        return f"gid {gid}"


def _set_supplementary_groups(uid: int, gid: int, *, initgroups: bool, user: str,
                              log: Callable[[str], None] | None) -> None:
    if initgroups:
        try:
            username = pwd.getpwuid(uid).pw_name
        except KeyError:
            if log is not None:
                log(f"initgroups: {user} has no passwd entry; its supplementary groups are cleared instead.")
        else:
            os.initgroups(username, gid)
            return
    if os.geteuid() == 0:
        os.setgroups([])


def _not_permitted() -> str:
    running_as = describe_user(os.geteuid())
    return f"not permitted while running as {running_as} (only root can change user or group)"
