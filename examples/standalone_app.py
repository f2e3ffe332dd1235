"""Run pronghorn from your own program (the "Custom Application" pattern).

    python examples/standalone_app.py

Serves on http://127.0.0.1:8080 with a worker per core (set PRONGHORN_EXAMPLE_BIND to change the
address). The ``pre_fork`` hook shows that server hooks are passed like any other option.
"""

from __future__ import annotations

import multiprocessing
import os

import pronghorn.app.base


def number_of_workers():
    return (multiprocessing.cpu_count() * 2) + 1


def handler_app(environ, start_response):
    response_body = b"Works fine"
    status = "200 OK"

    response_headers = [
        ("Content-Type", "text/plain"),
    ]

    start_response(status, response_headers)

    return [response_body]


def pre_fork(server, worker):
    print(f"pre-fork server {server} worker {worker}", flush=True)


class StandaloneApplication(pronghorn.app.base.BaseApplication):
    def __init__(self, app, options=None):
        self.options = options or {}
        self.application = app
        super().__init__()

    def load_config(self):
        config = {key: value for key, value in self.options.items() if key in self.cfg.settings and value is not None}
        for key, value in config.items():
            self.cfg.set(key.lower(), value)

    def load(self):
        return self.application


if __name__ == "__main__":
    options = {
        "bind": os.environ.get("PRONGHORN_EXAMPLE_BIND", "127.0.0.1:8080"),
        "workers": number_of_workers(),
        "pre_fork": pre_fork,
    }
    StandaloneApplication(handler_app, options).run()
