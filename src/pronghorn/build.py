"""What this install of pronghorn is: its request path compiled by mypyc, or pure Python.

``pip install`` compiles the modules on the request path where it can (setup.py) and installs them
as plain Python otherwise (no compiler, ``PRONGHORN_COMPILE=0``), which serves the same requests
about a third slower. ``pronghorn --version`` says which; a worker running an uncompiled build on
CPython says so once at start, unless the install is an editable one (or a source checkout), where
uncompiled is the point.
"""

from __future__ import annotations

import importlib.util
import sys


def compiled() -> bool:
    """Whether the request path's modules are compiled (the parser stands for all of them)."""
    spec = importlib.util.find_spec("pronghorn.http.parser")
    return spec is not None and spec.origin is not None and not spec.origin.endswith(".py")


def description() -> str:
    return "compiled" if compiled() else "pure Python"


def from_source() -> bool:
    """An editable install, or the sources on the path without any install: a development setup."""
    import importlib.metadata  # here: only an uncompiled build asks
    import json

    try:
        direct_url = importlib.metadata.distribution("pronghorn").read_text("direct_url.json")
    except importlib.metadata.PackageNotFoundError:
        return True
    if not direct_url:
        return False
    try:
        return bool(json.loads(direct_url).get("dir_info", {}).get("editable", False))
    except ValueError:
        return False


def uncompiled_warning() -> str | None:
    """The start-up warning of a worker running an uncompiled install on CPython, or None."""
    if sys.implementation.name != "cpython" or compiled() or from_source():
        return None
    return ("pronghorn is installed as pure Python (its request path was not compiled: no C compiler at "
            "install time, or PRONGHORN_COMPILE=0), which serves about a third slower; reinstall with a "
            "C compiler to compile it")
