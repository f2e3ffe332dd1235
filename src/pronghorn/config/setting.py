"""The declaration of one setting.

Every setting pronghorn knows is one ``Setting`` value. The command-line parser, config-file and
``PRONGHORN_CMD_ARGS`` application, ``--print-config`` and ``docs/settings.md`` are all derived from
these declarations, so a setting is never described twice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class Setting:
    """One setting: its name, how it is given, its default and how it is checked.

    ``validator`` takes a raw value (from the CLI, a config file or code) and returns the normalised
    value or raises ``ValueError`` whose message says what was expected.

    ``env_default`` computes the default from the process environment (``PORT``,
    ``WEB_CONCURRENCY``...) and ``default_doc`` is how that default reads in the docs.

    ``pending`` is set while the mechanism behind the setting has not landed: the value is accepted
    and validated, and a non-default value logs one warning at start-up saying it has no effect yet.
    """

    name: str
    section: str
    validator: Validator
    desc: str
    default: Any = None
    cli: tuple[str, ...] = ()
    meta: str | None = None
    action: str | None = None
    nargs: str | None = None
    const: Any = None
    cli_type: Callable[[str], Any] | None = None
    env_default: EnvDefault | None = None
    default_doc: str | None = None
    pending: str | None = None
    details: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.section not in SECTIONS:
            raise ValueError(f"setting {self.name}: unknown section {self.section!r}")
        if not self.desc or "\n" in self.desc:
            raise ValueError(f"setting {self.name}: desc must be one line")

    def default_for(self, environ: Mapping[str, str]) -> Any:
        """The validated default value, given the process environment."""
        raw = self.env_default(environ) if self.env_default is not None else self.default
        if raw is None:
            return None
        return self.validator(raw)
