"""A package whose __init__ needs a dependency that is not installed."""

import pronghorn_missing_pkg_dependency  # noqa: F401
