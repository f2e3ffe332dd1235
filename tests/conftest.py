"""Which pronghorn the tests run: the installed one (``pip install '.[test]'``, which compiles the
modules on the request path with mypyc where it can), else the sources in ``src/``.

For development, ``pip install -e .`` installs the sources themselves (never compiled), so an edit
is what the tests see. Servers the tests start import the same package as the tests (``serving.py``).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("pronghorn") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
