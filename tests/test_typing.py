"""The architecture's typing rule: ``mypy --strict`` passes on the sans-IO core and the config layer."""

from __future__ import annotations

import subprocess
import sys

import pytest

from serving import REPO

pytestmark = pytest.mark.slow


def test_mypy_strict_on_http_and_config() -> None:
    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
