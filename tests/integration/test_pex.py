"""Package pronghorn and an app in one PEX, the way Gunicorn's docs describe, and serve from it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from serving import REPO, free_port, http_get, running

# Building the PEX compiles pronghorn with mypyc: about 70 s on an idle 2-core machine, well over
# the suite's default 120 s timeout when other tests run beside it (the build itself allows 600 s).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(660)]

EXAMPLE_PYPROJECT = """
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "exampleapi"
version = "0.1"
"""

EXAMPLE_APP = """
def app(environ, start_response):
    body = b"served from a pex"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""


def _pex_command() -> list[str]:
    found = shutil.which("pex") or str(Path(sys.executable).with_name("pex"))
    if Path(found).exists():
        return [found]
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "pex"], capture_output=True, timeout=300)
    if install.returncode != 0:
        pytest.skip(f"pex cannot be installed: {install.stderr.decode(errors='replace')[-300:]}")
    return [sys.executable, "-m", "pex"]


def test_pex_built_the_documented_way_serves(tmp_path: Path) -> None:
    pex = _pex_command()
    package = tmp_path / "exampleapi"
    (package / "exampleapi").mkdir(parents=True)
    (package / "pyproject.toml").write_text(EXAMPLE_PYPROJECT)
    (package / "exampleapi" / "__init__.py").write_text(EXAMPLE_APP)
    port = free_port()
    (tmp_path / "pronghorn_config.py").write_text(f"bind = '127.0.0.1:{port}'\nworkers = 2\n")

    build = subprocess.run([*pex, str(REPO), "./exampleapi", "-c", "pronghorn", "-o", "compiledapp.pex"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-2000:]

    # PYTHONPATH must not leak the source tree into the PEX: it has to carry pronghorn itself.
    with running(["./compiledapp.pex", "exampleapi:app", "-c", "pronghorn_config.py"], cwd=tmp_path, port=port,
                 env={"PYTHONPATH": ""}) as server:
        status, _, body = http_get(port, "/")
        assert (status, body) == (200, b"served from a pex")
        assert "Booting worker" in server.wait_for_output("Booting worker")
