"""Settings: declared once, merged from every source in Gunicorn's order."""

from __future__ import annotations

from pronghorn.config.config import BoundSetting, Config
from pronghorn.config.setting import Setting

__all__ = ["BoundSetting", "Config", "Setting"]
