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


VALIDATED_APP = '''
import json, warnings
from wsgiref.validate import validator

warnings.simplefilter("error")

def _inner(environ, start_response):
    body = environ["wsgi.input"].read(1 << 20)
    keys = {k: v for k, v in environ.items() if isinstance(v, str)}
    keys["body"] = body.decode("latin-1")
    keys["wsgi.multiprocess"] = environ["wsgi.multiprocess"]
    keys["wsgi.input_terminated"] = environ["wsgi.input_terminated"]
    out = json.dumps(keys).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [out[: len(out) // 2], out[len(out) // 2 :]]

app = validator(_inner)
'''


@pytest.fixture()
def validated_project(tmp_path: Path) -> Path:
    (tmp_path / "validated.py").write_text(VALIDATED_APP)
    return tmp_path
