"""The abuse suite: real servers on loopback under hostile clients (see ``harness`` and ``clients``),
faults under load (``test_faults_under_load``) and reloads behind nginx (``test_behind_nginx``).

Each case records what it measured in a ``figures`` fixture; a plain ``python -m pytest tests/abuse``
prints them all at the end, passing cases as well as failing ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from abuse.harness import CaseFigures, write_app

_FIGURES = pytest.StashKey[list[CaseFigures]]()


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    """A fresh directory holding the suite's app (``abuseapp:app``), the server's working directory."""
    return write_app(tmp_path)


@pytest.fixture()
def figures(request: pytest.FixtureRequest) -> Iterator[CaseFigures]:
    case = CaseFigures(request.node.nodeid.split("::", 1)[-1])
    yield case
    request.config.stash.setdefault(_FIGURES, []).append(case)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    cases = config.stash.get(_FIGURES, [])
    if not cases:
        return
    terminalreporter.section("abuse suite figures (hostile clients, faults under load, behind nginx)")
    for case in cases:
        verdict = "FAILED" if case.failures else "passed"
        terminalreporter.write_line(f"{case.name}: {verdict}")
        for line in case.lines:
            terminalreporter.write_line(f"    {line}")
