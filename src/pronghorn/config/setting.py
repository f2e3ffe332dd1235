"""The declaration of one setting.

Every setting pronghorn knows is one ``Setting`` value. The command-line parser, config-file and
``PRONGHORN_CMD_ARGS`` application, ``--print-config`` and ``docs/settings.md`` are all derived from
these declarations, so a setting is never described twice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Validator = Callable[[Any], Any]
EnvDefault = Callable[[Mapping[str, str]], Any]

# Section names, in the order the documentation lists them (Gunicorn's grouping).
SECTIONS = (
    "Config File",
    "Server Socket",
    "Worker Processes",
    "Security",
    "Debugging",
    "Server Mechanics",
    "Logging",
    "Process Naming",
    "SSL",
    "Server Hooks",
)


class Setting:
    """One setting: its name, how it is given, its default and how it is checked.

    ``validator`` takes a raw value (from the CLI, a config file or code) and returns the normalised
    value or raises ``ValueError`` whose message says what was expected.

    ``env_default`` computes the default from the process environment (``PORT``,
    ``WEB_CONCURRENCY``...) and ``default_doc`` is how that default reads in the docs.

    ``pending`` is set while the mechanism behind the setting has not landed: the value is
    validated, and a non-default value stops the server at start-up (``Config.validate``), so no
    setting is ever accepted and then ignored. ``deprecated`` marks a setting Gunicorn itself
    accepts and ignores: a non-default value logs one warning at start-up, as Gunicorn's does.
    """

    # Immutable (assignment raises); a plain class, not a dataclass, so that ``dataclasses`` is not
    # imported into every worker (see pronghorn.http.limits).
    __slots__ = (
        "name", "section", "validator", "desc", "default", "cli", "meta", "action", "nargs", "const",
        "cli_type", "env_default", "default_doc", "pending", "deprecated", "details",
    )

    name: str
    section: str
    validator: Validator
    desc: str
    default: Any
    cli: tuple[str, ...]
    meta: str | None
    action: str | None
    nargs: str | None
    const: Any
    cli_type: Callable[[str], Any] | None
    env_default: EnvDefault | None
    default_doc: str | None
    pending: str | None
    deprecated: str | None
    details: tuple[str, ...]

    def __init__(
        self,
        name: str,
        section: str,
        validator: Validator,
        desc: str,
        default: Any = None,
        cli: tuple[str, ...] = (),
        meta: str | None = None,
        action: str | None = None,
        nargs: str | None = None,
        const: Any = None,
        cli_type: Callable[[str], Any] | None = None,
        env_default: EnvDefault | None = None,
        default_doc: str | None = None,
        pending: str | None = None,
        deprecated: str | None = None,
        details: tuple[str, ...] = (),
    ) -> None:
        if section not in SECTIONS:
            raise ValueError(f"setting {name}: unknown section {section!r}")
        if not desc or "\n" in desc:
            raise ValueError(f"setting {name}: desc must be one line")
        values = (name, section, validator, desc, default, cli, meta, action, nargs, const, cli_type,
                  env_default, default_doc, pending, deprecated, details)
        for slot, value in zip(self.__slots__, values):
            object.__setattr__(self, slot, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"setting {self.name} is immutable: cannot set {name!r}")

    def __repr__(self) -> str:
        return f"Setting({self.name!r}, section={self.section!r}, default={self.default!r})"

    def default_for(self, environ: Mapping[str, str]) -> Any:
        """The validated default value, given the process environment."""
        raw = self.env_default(environ) if self.env_default is not None else self.default
        if raw is None:
            return None
        return self.validator(raw)
