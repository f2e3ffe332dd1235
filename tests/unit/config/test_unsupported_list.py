"""The "Not supported yet" list of docs/coming-from-gunicorn.md names exactly what refuses to start:
the settings "not available yet", the deferred families' settings, and the refused worker classes."""

from __future__ import annotations

import re

from pronghorn.config.declared import ALL_SETTINGS
from pronghorn.config.deferred import DEFERRED_SETTINGS
from pronghorn.workers.registry import REFUSED
from serving import REPO


def _section() -> str:
    text = (REPO / "docs" / "coming-from-gunicorn.md").read_text()
    return text.split("## Not supported yet", 1)[1].split("\n## ", 1)[0]


def test_the_list_names_every_setting_that_refuses_to_start_and_nothing_else() -> None:
    bullets = [line for line in re.split(r"\n- ", _section()) if not line.startswith("**Worker classes**")]
    named = {name for bullet in bullets for name in re.findall(r"`([a-z0-9_]+)`", bullet)}
    refusing = {s.name for s in ALL_SETTINGS if s.pending} | set(DEFERRED_SETTINGS)
    assert named - {"http", "auto"} == refusing


def test_the_list_names_the_refused_worker_classes() -> None:
    worker_bullet = next(line for line in re.split(r"\n- ", _section()) if line.startswith("**Worker classes**"))
    assert set(re.findall(r"\*\*Worker classes\*\* `(\w+)` and `(\w+)`", worker_bullet)[0]) == {
        name for name in REFUSED if "." not in name}
