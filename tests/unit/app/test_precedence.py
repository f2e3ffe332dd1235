"""Config sources in Gunicorn's order: defaults < init() < config file < PRONGHORN_CMD_ARGS < CLI."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from pronghorn.app.base import Application
from pronghorn.app.wsgiapp import WSGIApplication


class FrameworkApp(Application):
    """An application whose init() returns framework defaults, like a Django or Paste wrapper."""

    framework: dict[str, Any] = {}

    def init(self, parser: Any, opts: Any, args: list[str]) -> dict[str, Any]:
        return dict(self.framework)

    def load(self) -> Any:
        return lambda environ, start_response: []


@pytest.fixture()
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PRONGHORN_CMD_ARGS", raising=False)
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    monkeypatch.delenv("PORT", raising=False)
    return tmp_path


SOURCES = ("init", "file", "env", "cli")


@pytest.mark.parametrize(
    "present", [combo for n in range(len(SOURCES) + 1) for combo in itertools.combinations(SOURCES, n)]
)
def test_highest_source_wins(project: Path, monkeypatch: pytest.MonkeyPatch, present: tuple[str, ...]) -> None:
    value = {"init": 2, "file": 3, "env": 4, "cli": 5}
    FrameworkApp.framework = {"workers": value["init"]} if "init" in present else {}
    argv = ["prog"]
    if "file" in present:
        (project / "conf.py").write_text(f"workers = {value['file']}\n")
        argv += ["-c", "conf.py"]
    if "env" in present:
        monkeypatch.setenv("PRONGHORN_CMD_ARGS", f"--workers={value['env']}")
    if "cli" in present:
        argv += ["-w", str(value["cli"])]
    monkeypatch.setattr("sys.argv", argv)
    app = FrameworkApp()
    expected = value[present[-1]] if present else 1
    assert app.cfg.workers == expected


def test_default_config_file_prefers_pronghorn_then_gunicorn(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.argv", ["prog", "mod:app"])
    (project / "gunicorn.conf.py").write_text("workers = 7\n")
    app = WSGIApplication()
    assert app.cfg.workers == 7
    assert app.config_file is not None and app.config_file.endswith("gunicorn.conf.py")
    (project / "pronghorn.conf.py").write_text("workers = 6\n")
    assert WSGIApplication().cfg.workers == 6


def test_config_file_from_env_args_and_cli_wins(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (project / "a.py").write_text("workers = 2\n")
    (project / "b.py").write_text("workers = 3\n")
    monkeypatch.setenv("PRONGHORN_CMD_ARGS", "-c a.py")
    monkeypatch.setattr("sys.argv", ["prog", "mod:app"])
    assert WSGIApplication().cfg.workers == 2
    monkeypatch.setattr("sys.argv", ["prog", "mod:app", "-c", "b.py"])
    assert WSGIApplication().cfg.workers == 3


@pytest.mark.parametrize("form", ["file:{path}", "{path}", "python:confmod"])
def test_config_location_forms(project: Path, monkeypatch: pytest.MonkeyPatch, form: str) -> None:
    (project / "confmod.py").write_text("workers = 5\nnot_a_setting = 1\nbind = '127.0.0.1:9999'\n")
    monkeypatch.syspath_prepend(str(project))
    monkeypatch.setattr("sys.argv", ["prog", "mod:app", "-c", form.format(path=project / "confmod.py")])
    cfg = WSGIApplication().cfg
    assert cfg.workers == 5
    assert cfg.bind == ["127.0.0.1:9999"]


def test_wsgi_app_from_config_file(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (project / "pronghorn.conf.py").write_text("wsgi_app = 'hello:app'\n")
    monkeypatch.setattr("sys.argv", ["prog"])
    assert WSGIApplication().app_uri == "hello:app"


def test_config_setting_inside_a_file_has_no_effect(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (project / "pronghorn.conf.py").write_text("config = 'other.py'\nworkers = 3\n")
    monkeypatch.setattr("sys.argv", ["prog", "mod:app"])
    assert WSGIApplication().cfg.workers == 3


def _fails(capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        WSGIApplication()
    assert exc.value.code == 1
    return capsys.readouterr().err


def test_invalid_value_in_file_is_one_line(project: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    (project / "pronghorn.conf.py").write_text("workers = 'many'\n")
    monkeypatch.setattr("sys.argv", ["prog", "mod:app"])
    err = _fails(capsys)
    assert err.strip().count("\n") == 0, err
    assert "workers" in err and "'many'" in err and "expected" in err


def test_invalid_cli_value_is_one_line(project: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.argv", ["prog", "mod:app", "--backlog", "-5"])
    err = _fails(capsys)
    assert err.strip().count("\n") == 0, err
    assert "backlog" in err and "-5" in err and "expected" in err


def test_missing_config_file(project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.argv", ["prog", "mod:app", "-c", "nope.py"])
    assert "nope.py" in _fails(capsys)


def test_no_application(project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.argv", ["prog"])
    assert "No application module specified" in _fails(capsys)


def test_env_vars_drive_defaults(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "5050")
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    monkeypatch.setattr("sys.argv", ["prog", "mod:app"])
    cfg = WSGIApplication().cfg
    assert cfg.bind == ["0.0.0.0:5050"]
    assert cfg.workers == 3


def test_raw_env_and_repeated_flags(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.argv", ["prog", "mod:app", "-e", "A=1", "--env", "B=x=y", "-b", "127.0.0.1:1", "-b", "unix:/tmp/s"])
    cfg = WSGIApplication().cfg
    assert cfg.env == {"A": "1", "B": "x=y"}
    assert cfg.bind == ["127.0.0.1:1", "unix:/tmp/s"]


def test_cfg_interface(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.argv", ["prog", "mod:app"])
    cfg = WSGIApplication().cfg
    assert "workers" in cfg.settings and "nonsense" not in cfg.settings
    cfg.set("workers", "4")
    assert cfg.workers == 4 and cfg.settings["workers"].get() == 4
    with pytest.raises(AttributeError):
        cfg.workers = 3
    with pytest.raises(AttributeError):
        cfg.set("nonsense", 1)
