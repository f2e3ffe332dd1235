"""Turn an application reference such as ``myproject.wsgi:app`` into the callable it names.

Accepted forms (the same as Gunicorn's):

- ``module``                      -> ``module.application``
- ``module:name``                 -> ``module.name``
- ``module:factory()``            -> ``module.factory()``
- ``module:factory('a', n=2)``    -> ``module.factory('a', n=2)``; arguments must be literals

The part after ``:`` is parsed with :mod:`ast` and never evaluated, so a reference taken from a
command line cannot run arbitrary code; only literals pass through :func:`ast.literal_eval`.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from collections.abc import Mapping
from types import MappingProxyType, ModuleType
from typing import Any, Callable, NamedTuple

from pronghorn.errors import AppImportError, AppModuleNotFound

__all__ = ["import_app", "parse_reference", "AppReference"]

DEFAULT_ATTRIBUTE = "application"


class AppReference(NamedTuple):
    """A parsed application reference: what to import, what to look up, and how to call it."""

    module: str
    attribute: str
    is_call: bool = False
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = MappingProxyType({})  # read-only: the default is shared

    def __str__(self) -> str:
        return f"{self.module}:{self.attribute}{'()' if self.is_call else ''}"


def import_app(reference: str) -> Callable[..., Any]:
    """Import ``reference`` and return the application callable it names.

    Raises :class:`ImportError` when the module cannot be found (or a file path was given instead of
    a module name) and :class:`~pronghorn.errors.AppImportError` for every other problem with the
    reference. Exceptions raised while the module runs (including an ``ImportError`` for one of its
    own dependencies) and exceptions raised inside a factory propagate unchanged.
    """
    parsed = parse_reference(reference)
    module = _import_module(parsed.module)
    try:
        target = getattr(module, parsed.attribute)
    except AttributeError:
        raise AppImportError(
            f"Failed to find attribute {parsed.attribute!r} in {parsed.module!r}."
        ) from None

    if parsed.is_call:
        app = _call_factory(target, parsed)
        if app is None:
            raise AppImportError(
                f"Failed to find application object: factory {parsed.attribute!r} "
                f"in {parsed.module!r} returned None."
            )
    else:
        app = target
        if app is None:
            raise AppImportError(
                f"Failed to find application object: {parsed.attribute!r} "
                f"in {parsed.module!r} is None."
            )

    if not callable(app):
        raise AppImportError(
            f"Application object must be callable: {parsed} is a {type(app).__name__}."
        )
    return app  # type: ignore[no-any-return]


def parse_reference(reference: str) -> AppReference:
    """Split and check ``reference`` without importing anything."""
    module_name, colon, expression = reference.partition(":")
    _check_module_name(module_name, expression if colon else None)
    if not colon:
        return AppReference(module_name, DEFAULT_ATTRIBUTE)

    try:
        node = ast.parse(expression.strip(), mode="eval").body
    except SyntaxError as exc:
        detail = f": {exc.msg}" if exc.msg else ""
        raise AppImportError(
            f"Failed to parse {expression!r} as an attribute name or function call{detail}."
        ) from None

    if isinstance(node, ast.Name):
        return AppReference(module_name, node.id)
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name):
            raise AppImportError(
                f"Function reference must be a simple name: {ast.unparse(node.func)!r}."
            )
        args = tuple(_literal(arg, expression) for arg in node.args)
        kwargs: dict[str, Any] = {}
        for keyword in node.keywords:
            if keyword.arg is None:  # **mapping: not a literal argument
                raise _not_literal(keyword.value, expression)
            kwargs[keyword.arg] = _literal(keyword.value, expression)
        return AppReference(module_name, node.func.id, True, args, kwargs)
    raise AppImportError(
        f"Failed to parse {expression!r} as an attribute name or function call: "
        "use a simple attribute name such as 'app' or a call such as 'create_app()'."
    )


def _literal(node: ast.expr, expression: str) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise _not_literal(node, expression) from None


def _not_literal(node: ast.expr, expression: str) -> AppImportError:
    return AppImportError(
        f"Failed to parse arguments of {expression!r}: factory arguments must be literal values "
        f"(strings, numbers, booleans, None, tuples, lists, dicts), not {ast.unparse(node)!r}."
    )


def _check_module_name(module_name: str, expression: str | None) -> None:
    """Reject file paths with a hint, and names no import could ever find."""
    if _looks_like_path(module_name):
        suggestion = _module_from_path(module_name)
        raise ImportError(
            f"{module_name!r} looks like a file path; use the module name: "
            f"{suggestion}:{expression or DEFAULT_ATTRIBUTE}"
        )
    if not module_name:
        reference = f"{module_name}:{expression or ''}"
        raise AppImportError(f"Failed to parse {reference!r}: the module name is empty.")
    if not all(part.isidentifier() for part in module_name.split(".")):
        raise AppImportError(
            f"Failed to parse {module_name!r} as a module name: expected a dotted Python name "
            "such as 'myproject.wsgi'."
        )


def _looks_like_path(module_name: str) -> bool:
    return "/" in module_name or "\\" in module_name or module_name.endswith((".py", ".pyc"))


def _module_from_path(path: str) -> str:
    """Best guess at the module a path names: ``./pkg/app.py`` -> ``pkg.app``."""
    trimmed = path.replace("\\", "/")
    for suffix in (".pyc", ".py"):
        if trimmed.endswith(suffix):
            trimmed = trimmed[: -len(suffix)]
            break
    parts = [part for part in trimmed.split("/") if part not in ("", ".")]
    return ".".join(parts) or path


def _import_module(module_name: str) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only "not found" when the missing module is the one asked for or one of its parent
        # packages; a module that fails to import its own dependency must say so itself.
        if exc.name is None or not _is_self_or_parent(exc.name, module_name):
            raise
        if exc.name == module_name:
            message = f"No module named {module_name!r} was found on sys.path."
        else:
            message = (
                f"No module named {module_name!r} was found: its package {exc.name!r} "
                "is not on sys.path."
            )
        raise AppModuleNotFound(message, name=exc.name) from exc


def _is_self_or_parent(missing: str, module_name: str) -> bool:
    return module_name == missing or module_name.startswith(missing + ".")


def _call_factory(factory: Any, parsed: AppReference) -> Any:
    if not callable(factory):
        raise AppImportError(
            f"Failed to call factory {parsed.attribute!r} in {parsed.module!r}: "
            f"it is a {type(factory).__name__}, not a callable."
        )
    try:
        return factory(*parsed.args, **parsed.kwargs)
    except TypeError as exc:
        # A TypeError raised by the call itself (wrong arguments) has no frame beyond this one;
        # one raised inside the factory's body does, and is the app's own error.
        if _raised_here(exc):
            raise AppImportError(
                f"Error while calling factory {parsed.attribute!r}: {exc}"
            ) from exc
        raise


def _raised_here(exc: BaseException) -> bool:
    tb = exc.__traceback__
    return tb is not None and tb.tb_next is None


def is_asgi_app(app: Any) -> bool:
    """Whether ``app`` is an ASGI 3 application: a coroutine function, or an object whose
    ``__call__`` is one (Starlette, FastAPI and Django's handler are such objects). A class is
    taken as a WSGI app, as it always was (instantiating it is the call)."""
    if inspect.isclass(app):
        return False
    return inspect.iscoroutinefunction(app) or inspect.iscoroutinefunction(getattr(app, "__call__", None))
