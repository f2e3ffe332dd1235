"""import_app: every reference form and every error it reports."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Iterator

import pytest

from pronghorn.apps.loading import AppReference, import_app, parse_reference
from pronghorn.errors import AppImportError

SUPPORT_DIR = Path(__file__).parent / "support_apps"


@pytest.fixture(autouse=True)
def support_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.syspath_prepend(str(SUPPORT_DIR))
    yield
    for name in list(sys.modules):
        if name.startswith("support_"):
            del sys.modules[name]


# --- forms ---------------------------------------------------------------------------------


def test_module_alone_uses_application() -> None:
    assert import_app("support_wsgi").label == "application"  # type: ignore[attr-defined]


def test_module_and_name() -> None:
    assert import_app("support_wsgi:app").label == "app"  # type: ignore[attr-defined]


def test_dotted_module() -> None:
    app = import_app("support_pkg.wsgi")
    assert app.__module__ == "support_pkg.wsgi"
    assert import_app("support_pkg.wsgi:application") is app


def test_factory_without_arguments() -> None:
    assert import_app("support_wsgi:create_app()").label == "default-1"  # type: ignore[attr-defined]


def test_factory_with_literal_arguments() -> None:
    app = import_app("support_wsgi:create_app('a', count=2, extra={'k': [1, (2, 3)]}, flag=None)")
    assert app.label == "a-2"  # type: ignore[attr-defined]
    assert app.options == {"extra": {"k": [1, (2, 3)]}, "flag": None}  # type: ignore[attr-defined]


def test_surrounding_whitespace_in_expression_is_ignored() -> None:
    assert import_app("support_wsgi: create_app(count=3) ").label == "default-3"  # type: ignore[attr-defined]


def test_class_is_a_valid_application() -> None:
    app_class = importlib.import_module("support_wsgi").AppClass
    assert import_app("support_wsgi:AppClass") is app_class


def test_parse_reference_without_import() -> None:
    parsed = parse_reference("some.module:factory(1, name='x')")
    assert parsed == AppReference("some.module", "factory", True, (1,), {"name": "x"})
    assert parse_reference("some.module") == AppReference("some.module", "application")


# --- module errors -------------------------------------------------------------------------


def test_missing_module_is_import_error_saying_not_found() -> None:
    with pytest.raises(ImportError, match=r"^No module named 'a_pronghorn_missing_module' was found") as info:
        import_app("a_pronghorn_missing_module:app")
    assert not isinstance(info.value, AppImportError)
    assert "a_pronghorn_missing_module" in str(info.value)
    assert isinstance(info.value.__cause__, ImportError)


def test_missing_submodule_names_the_module() -> None:
    with pytest.raises(ImportError, match=r"No module named 'support_pkg.nope' was found"):
        import_app("support_pkg.nope:app")


def test_missing_parent_package_is_named() -> None:
    with pytest.raises(ImportError, match=r"package 'nopkg_pronghorn' is not on sys.path"):
        import_app("nopkg_pronghorn.wsgi")


def test_missing_dependency_inside_module_is_not_module_not_found() -> None:
    with pytest.raises(ImportError) as info:
        import_app("support_missing_dep:application")
    assert info.value.name == "pronghorn_no_such_dependency"
    assert "pronghorn_no_such_dependency" in str(info.value)
    assert "support_missing_dep" not in str(info.value)


def test_missing_dependency_in_parent_package_init() -> None:
    with pytest.raises(ImportError) as info:
        import_app("support_broken_pkg.wsgi")
    assert "pronghorn_missing_pkg_dependency" in str(info.value)
    assert "was found" not in str(info.value)


def test_plain_import_error_inside_module_propagates() -> None:
    with pytest.raises(ImportError, match="pronghorn_no_such_name"):
        import_app("support_bad_from_import")


@pytest.mark.parametrize(
    ("reference", "suggestion"),
    [
        ("app.py", "app:application"),
        ("./app.py", "app:application"),
        ("pkg/app.py", "pkg.app:application"),
        ("pkg/app.py:application", "pkg.app:application"),
        ("pkg/app.py:create_app()", "pkg.app:create_app()"),
        ("support_wsgi.py", "support_wsgi:application"),
        ("pkg\\app.py:app", "pkg.app:app"),
    ],
)
def test_file_path_suggests_module_name(reference: str, suggestion: str) -> None:
    with pytest.raises(ImportError, match="looks like a file path") as info:
        import_app(reference)
    assert str(info.value).endswith(f"use the module name: {suggestion}")
    assert not isinstance(info.value, AppImportError)


@pytest.mark.parametrize("reference", [":app", "my-app:app", ".relative:app", "a..b"])
def test_invalid_module_names(reference: str) -> None:
    with pytest.raises(AppImportError, match="Failed to parse"):
        import_app(reference)


# --- reference errors ----------------------------------------------------------------------


@pytest.mark.parametrize("expression", ["create_app(", "", "1 +", "app app"])
def test_unparseable_expression(expression: str) -> None:
    with pytest.raises(AppImportError, match="Failed to parse"):
        import_app(f"support_wsgi:{expression}")


@pytest.mark.parametrize(
    "expression",
    ["create_app(Gunicorn)", "create_app(count=len('x'))", "create_app(*args)", "create_app(**kw)"],
)
def test_non_literal_arguments(expression: str) -> None:
    with pytest.raises(AppImportError, match="literal values"):
        import_app(f"support_wsgi:{expression}")


def test_dotted_function_reference() -> None:
    with pytest.raises(AppImportError, match="Function reference must be a simple name"):
        import_app("support_wsgi:create.app()")


@pytest.mark.parametrize("expression", ["create.app", "apps[0]", "1"])
def test_attribute_must_be_a_simple_name(expression: str) -> None:
    with pytest.raises(AppImportError, match="attribute name"):
        import_app(f"support_wsgi:{expression}")


def test_missing_attribute() -> None:
    with pytest.raises(AppImportError, match=r"^Failed to find attribute 'wrong_app' in 'support_wsgi'\.$"):
        import_app("support_wsgi:wrong_app")


def test_missing_default_attribute() -> None:
    with pytest.raises(AppImportError, match="attribute 'application' in 'support_pkg'"):
        import_app("support_pkg")


def test_none_attribute() -> None:
    with pytest.raises(AppImportError, match="Failed to find application object: 'none_app'.* is None"):
        import_app("support_wsgi:none_app")


def test_factory_returning_none() -> None:
    with pytest.raises(AppImportError, match="Failed to find application object.*none_factory.*None"):
        import_app("support_wsgi:none_factory()")


def test_not_callable() -> None:
    with pytest.raises(AppImportError, match="Application object must be callable.*str"):
        import_app("support_wsgi:HOST")


def test_factory_returning_non_callable() -> None:
    with pytest.raises(AppImportError, match="Application object must be callable"):
        import_app("support_wsgi:host_factory()")


def test_calling_a_non_callable() -> None:
    with pytest.raises(AppImportError, match="Failed to call factory 'HOST'.*str"):
        import_app("support_wsgi:HOST()")


def test_factory_with_wrong_arguments_is_relabelled() -> None:
    with pytest.raises(AppImportError, match=r"Error while calling factory 'error_factory': .*error_factory\(\) takes") as info:
        import_app("support_wsgi:error_factory(1)")
    assert isinstance(info.value.__cause__, TypeError)


def test_factory_with_unknown_keyword_is_relabelled() -> None:
    with pytest.raises(AppImportError, match="unexpected keyword argument 'colour'"):
        import_app("support_pkg.wsgi:application(colour=1)")


def test_type_error_inside_factory_propagates() -> None:
    with pytest.raises(TypeError, match="inner factory failure") as info:
        import_app("support_wsgi:error_factory()")
    assert not isinstance(info.value, AppImportError)


@pytest.mark.parametrize(
    "reference",
    [
        "support_wsgi:create_app(",
        "support_wsgi:create_app(Gunicorn)",
        "support_wsgi:create.app()",
        "support_wsgi:create.app",
        "support_wsgi:wrong_app",
        "support_wsgi:none_app",
        "support_wsgi:HOST",
        "support_wsgi:error_factory(1)",
        "pkg/app.py",
        "a_pronghorn_missing_module",
    ],
)
def test_messages_are_one_line(reference: str) -> None:
    with pytest.raises(ImportError if "/" in reference or "missing" in reference else AppImportError) as info:
        import_app(reference)
    assert "\n" not in str(info.value)
