"""Every setting pronghorn declares, in documentation order.

Each module holds the settings of one responsibility as ``SETTINGS``; ``ALL_SETTINGS`` lists them by
section (in ``SECTIONS`` order) and, within a section, in Gunicorn's order. The modules are listed
below so that concatenating their settings section by section yields exactly that order.
"""

from __future__ import annotations

from collections.abc import Iterable

from pronghorn.config.declared import asgi, debugging, hooks, mechanics, security, server, tls
from pronghorn.config.declared import logging as logging_settings
from pronghorn.config.setting import SECTIONS, Setting

_GROUPS: tuple[tuple[Setting, ...], ...] = (
    server.SETTINGS,
    asgi.SETTINGS,
    debugging.SETTINGS,
    mechanics.SETTINGS,
    security.SETTINGS,
    logging_settings.SETTINGS,
    tls.SETTINGS,
    hooks.SETTINGS,
)


def _documentation_order(groups: Iterable[tuple[Setting, ...]]) -> tuple[Setting, ...]:
    groups = tuple(groups)
    return tuple(setting for section in SECTIONS for group in groups for setting in group if setting.section == section)


ALL_SETTINGS: tuple[Setting, ...] = _documentation_order(_GROUPS)

__all__ = ["ALL_SETTINGS"]
