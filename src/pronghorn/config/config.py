"""``Config``: the validated value of every declared setting, with Gunicorn's interface.

``cfg.workers`` reads a value, ``cfg.set("workers", 4)`` validates and stores one, ``"bind" in
cfg.settings`` tests membership and ``cfg.settings["bind"].get()`` reads through the bound setting.
Attribute assignment is refused so that every value passes its validator.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from pronghorn.config.declared import ALL_SETTINGS
from pronghorn.config.setting import Setting
from pronghorn.config.sources import process_environ
from pronghorn.errors import ConfigError

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")  # (pronghorn.logs maps them to logging's)


class BoundSetting:
    """A setting declaration together with its current value in one ``Config``."""

    def __init__(self, setting: Setting, value: Any) -> None:
        self.setting = setting
        self.value = value
        self.default = value

    @property
    def name(self) -> str:
        return self.setting.name

    @property
    def section(self) -> str:
        return self.setting.section

    @property
    def cli(self) -> tuple[str, ...]:
        return self.setting.cli

    @property
    def desc(self) -> str:
        return self.setting.desc

    def get(self) -> Any:
        return self.value

    def set(self, value: Any) -> None:
        try:
            self.value = self.setting.validator(value)
        except ValueError as exc:
            raise ConfigError(f"Invalid value for {self.name}: {value!r} ({exc})") from None

    def is_default(self) -> bool:
        return bool(self.value == self.default)


class Config:
    """Every setting's current value; starts at the defaults for the given environment."""

    def __init__(
        self,
        usage: str | None = None,
        prog: str | None = None,
        environ: Mapping[str, str] | None = None,
        settings: Iterable[Setting] = ALL_SETTINGS,
    ) -> None:
        env = process_environ() if environ is None else environ
        bound: dict[str, BoundSetting] = {}
        for setting in settings:
            bound[setting.name] = BoundSetting(setting, setting.default_for(env))
        object.__setattr__(self, "settings", bound)
        object.__setattr__(self, "usage", usage)
        object.__setattr__(self, "prog", prog)
        object.__setattr__(self, "environ", dict(env))
        object.__setattr__(self, "file_warnings", [])

    settings: dict[str, BoundSetting]
    usage: str | None
    prog: str | None
    environ: dict[str, str]
    file_warnings: list[str]  # filled while a config file is read (``startup_warnings``)

    def __getattr__(self, name: str) -> Any:
        settings = self.__dict__.get("settings", {})
        if name in settings:
            return settings[name].get()
        raise AttributeError(f"No configuration setting for: {name}")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Invalid access: use cfg.set({name!r}, value) to change a setting")

    def __contains__(self, name: object) -> bool:
        return name in self.settings

    def __iter__(self) -> Iterator[str]:
        return iter(self.settings)

    def set(self, name: str, value: Any) -> None:
        if name not in self.settings:
            raise AttributeError(f"No configuration setting for: {name}")
        self.settings[name].set(value)

    def apply(self, values: Mapping[str, Any], *, skip_none: bool = True) -> None:
        """Set every known setting named in ``values``; unknown names are ignored."""
        for name, value in values.items():
            if name in self.settings and not (skip_none and value is None):
                self.set(name, value)

    # --- derived values (Gunicorn's Config properties that stay within this layer) ---

    @property
    def worker_class_str(self) -> str:
        value = self.worker_class
        return value if isinstance(value, str) else f"{value.__module__}.{value.__qualname__}"

    @property
    def proc_name_or_default(self) -> str:
        return str(self.proc_name or self.default_proc_name)

    @property
    def sendfile_enabled(self) -> bool:
        """``sendfile`` when set (``--no-sendfile`` sets False), else the ``SENDFILE`` environment variable."""
        if self.sendfile is not None:
            return bool(self.sendfile)
        flag = self.environ.get("SENDFILE")
        return True if flag is None else flag.strip().lower() in ("y", "1", "yes", "true")

    @property
    def env(self) -> dict[str, str]:
        """``raw_env`` as a dict; an entry without '=' is a configuration error."""
        result: dict[str, str] = {}
        for item in self.raw_env:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise ConfigError(f"Invalid value for raw_env: {item!r} (expected KEY=VALUE)")
            result[key] = value
        return result

    def validate(self) -> None:
        """Once loading is done: a setting whose mechanism has not landed must be left at its
        default. The first one that is not stops start-up (and ``--check-config``) with one line."""
        for bound in self.settings.values():
            if bound.setting.pending and not bound.is_default():
                raise ConfigError(
                    f"Setting {bound.name} is not available yet ({bound.setting.pending}): "
                    f"{bound.value!r} given, and only the default {bound.default!r} is accepted"
                )

    def startup_warnings(self) -> list[str]:
        """One line for each deprecated setting given a value (Gunicorn warns about them too), and
        for each config-file name that looks like a misspelt setting."""
        warnings = [
            f"Setting {bound.name} is deprecated: {bound.setting.deprecated}."
            for bound in self.settings.values()
            if bound.setting.deprecated and not bound.is_default()
        ]
        level = self.settings["loglevel"].get() if "loglevel" in self.settings else "info"
        if level not in LOG_LEVELS:
            warnings.append(f"Setting loglevel is {level!r}, not one of {', '.join(LOG_LEVELS)}: info is used.")
        return warnings + self.file_warnings

    def __str__(self) -> str:
        """``name = value`` for every setting, sorted, as ``--print-config`` shows them."""
        width = max(len(name) for name in self.settings)
        lines = []
        for name in sorted(self.settings):
            value = self.settings[name].get()
            if callable(value):
                value = f"<{getattr(value, '__qualname__', type(value).__qualname__)}()>"
            lines.append(f"{name:{width}} = {value}")
        return "\n".join(lines)
