"""The installed build compiles what setup.py lists: a mypyc failure only warns at install time (and
installs plain Python), so without this check a change mypyc cannot compile would ship uncompiled."""

from __future__ import annotations

import importlib
import os
import re
import shutil
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest

import pronghorn
from serving import REPO

INSTALLED = Path(pronghorn.__file__).resolve().parents[1] != (REPO / "src").resolve()


def compiled_modules() -> list[str]:
    listed = re.findall(r'"src/(pronghorn/[\w/]+)\.(?:py|c)"', (REPO / "setup.py").read_text())
    assert listed, "setup.py lists no compiled modules"
    return [path.replace("/", ".") for path in listed]


@pytest.mark.skipif(not INSTALLED, reason="pronghorn runs from src/ (an editable install is never compiled)")
@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler: the install falls back to plain Python")
@pytest.mark.skipif(os.environ.get("PRONGHORN_COMPILE") == "0", reason="built with PRONGHORN_COMPILE=0")
@pytest.mark.parametrize("name", compiled_modules())
def test_listed_module_is_compiled(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__file__ is not None and module.__file__.endswith(tuple(EXTENSION_SUFFIXES)), (
        f"{name} was installed as {module.__file__}: compiling it failed (pip install -v . shows why)"
    )
