from __future__ import annotations

from pathlib import Path

import pytest

EXAMPLE_API = '''
import os, time

def app(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        time.sleep(0.5)
    body = f"pid={os.getpid()} path={environ['PATH_INFO']}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]

def create_app(greeting="hello", repeat=1):
    def factory_app(environ, start_response):
        body = (greeting * repeat).encode()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]
    return factory_app
'''


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    """A directory holding ``exampleapi.py``, used as the server's working directory."""
    (tmp_path / "exampleapi.py").write_text(EXAMPLE_API)
    return tmp_path
