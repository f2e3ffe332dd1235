"""App objects and factories exercised by tests/unit/test_loading.py."""

from __future__ import annotations

from typing import Any, Callable, Iterable

HOST = "127.0.0.1"
none_app = None


def _make(label: str) -> Callable[..., Iterable[bytes]]:
    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [label.encode()]

    wsgi.label = label  # type: ignore[attr-defined]
    return wsgi


application = _make("application")
app = _make("app")


def create_app(name: str = "default", count: int = 1, **options: Any) -> Callable[..., Any]:
    made = _make(f"{name}-{count}")
    made.options = options  # type: ignore[attr-defined]
    return made


def error_factory() -> None:
    # A TypeError from the factory's own body: must reach the caller unchanged.
    raise TypeError("inner factory failure")


def none_factory() -> None:
    return None


def host_factory() -> str:
    return HOST


class AppClass:
    def __init__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> None:
        self.environ = environ


class create:  # noqa: N801 - named to test "create.app" references
    app = app
