"""A module whose own import fails: its dependency is missing."""

import pronghorn_no_such_dependency  # type: ignore[import-not-found]  # noqa: F401

application = None
