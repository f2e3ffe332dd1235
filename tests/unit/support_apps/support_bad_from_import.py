"""A module whose own import fails with a plain ImportError (name missing from a real module)."""

from os import pronghorn_no_such_name  # type: ignore[attr-defined]  # noqa: F401

application = None
