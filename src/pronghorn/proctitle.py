"""Process titles shown by ps and top: ``pronghorn: master [NAME]`` and ``pronghorn: worker [NAME]``.

``NAME`` is ``proc_name`` (or ``default_proc_name``, the application reference). Titles need the
optional ``setproctitle`` package (``pip install pronghorn[setproctitle]``); without it, and always
on macOS (as Gunicorn does there), setting a title does nothing.

A master started by a binary upgrade (USR2) that has not yet been promoted runs under ``NAME.2``, and
so do its workers: ``pronghorn: master [NAME.2]``. That is the name Gunicorn gives it, so scripts
that tell the two masters apart by title keep working.
"""

from __future__ import annotations

import sys

PROGRAM = "pronghorn"
REEXEC_SUFFIX = ".2"


def set_proc_title(title: str) -> None:
    """Set the calling process's title; silently nothing without ``setproctitle`` or on macOS."""
    if sys.platform == "darwin":
        return
    try:
        from setproctitle import setproctitle
    except ImportError:
        return
    setproctitle(title)


def master_title(proc_name: str, *, reexec: bool = False) -> str:
    """``pronghorn: master [NAME]``; ``[NAME.2]`` for a re-exec'd master not yet promoted."""
    return f"{PROGRAM}: master [{_name(proc_name, reexec)}]"


def worker_title(proc_name: str, *, reexec: bool = False) -> str:
    """``pronghorn: worker [NAME]``; ``[NAME.2]`` for the workers of a re-exec'd master."""
    return f"{PROGRAM}: worker [{_name(proc_name, reexec)}]"


def _name(proc_name: str, reexec: bool) -> str:
    return proc_name + REEXEC_SUFFIX if reexec else proc_name
