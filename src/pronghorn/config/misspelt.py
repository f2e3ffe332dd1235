"""Names in a config file that look like a setting spelt wrong.

Gunicorn ignores every module-level name of a config file that is not a setting, and so does
pronghorn (helper variables and imports are common); a name within two edits of a setting, or of a
name people often take for one, gets one warning suggesting the setting instead.
"""

from __future__ import annotations

from collections.abc import Iterable

# Names often taken for settings, and the setting meant.
TAKEN_FOR_SETTINGS = {"worker_timeout": "timeout", "keep_alive": "keepalive", "num_workers": "workers"}
MAX_EDITS = 2
SHORTEST = 5  # shorter names (``os``, ``port``, ``host``) are too close to too much


def suggestion(name: str, settings: Iterable[str]) -> str | None:
    """The setting ``name`` probably meant, or None."""
    if len(name) < SHORTEST or name.startswith("_") or not name.islower():
        return None
    best: tuple[int, str] | None = None
    candidates = [(setting, setting) for setting in settings] + list(TAKEN_FOR_SETTINGS.items())
    for candidate, meant in candidates:
        distance = edit_distance(name, candidate, MAX_EDITS)
        if distance <= MAX_EDITS and (best is None or distance < best[0]):
            best = (distance, meant)
    return best[1] if best is not None else None


def edit_distance(a: str, b: str, limit: int) -> int:
    """Levenshtein distance of ``a`` and ``b``, or ``limit + 1`` as soon as it must exceed ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        for j, char_b in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b)))
        if min(current) > limit:
            return limit + 1
        previous = current
    return previous[-1]
