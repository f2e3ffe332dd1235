"""pronghorn: a pre-fork HTTP server for Python web applications."""

from __future__ import annotations

__version__ = "0.1.0"
SERVER_SOFTWARE = f"pronghorn/{__version__}"
