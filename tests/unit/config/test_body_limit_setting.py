"""``limit_request_body``: pronghorn's own body limit, declared next to Gunicorn's request limits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pronghorn.app.wsgiapp import WSGIApplication
from pronghorn.config import cli
from pronghorn.config.config import Config
from pronghorn.config.declared import ALL_SETTINGS
from pronghorn.errors import ConfigError
from pronghorn.http import Limits

BY_NAME = {setting.name: setting for setting in ALL_SETTINGS}


def test_declared_in_security_after_the_other_request_limits() -> None:
    setting = BY_NAME["limit_request_body"]
    assert (setting.section, setting.cli, setting.meta) == ("Security", ("--limit-request-body",), "INT")
    security = [s.name for s in ALL_SETTINGS if s.section == "Security"]
    assert security == ["limit_request_line", "limit_request_fields", "limit_request_field_size", "limit_request_body"]
    assert "New in pronghorn" in " ".join(setting.details)
    assert "1073741824" in (setting.default_doc or "") and "0 = no limit" in setting.desc


def test_default_is_one_gib_and_matches_the_parser_default() -> None:
    cfg = Config(environ={})
    assert cfg.limit_request_body == 1073741824 == 1 << 30
    assert Limits.from_settings(limit_request_body=cfg.limit_request_body) == Limits()


@pytest.mark.parametrize(("text", "expected"), [("0", 0), ("1", 1), ("65536", 65536), ("0x100", 256), (" 42 ", 42)])
def test_flag_parses_and_validates(text: str, expected: int) -> None:
    parser = cli.build_parser(prog="pronghorn")
    given = cli.given_options(parser.parse_args(["--limit-request-body", text]))
    assert given == {"limit_request_body": text}
    cfg = Config(environ={})
    cfg.set("limit_request_body", given["limit_request_body"])
    assert cfg.limit_request_body == expected


@pytest.mark.parametrize("value", ["-1", -1, "1GiB", "1.5", 1.5, "", True, None, [1]])
def test_bad_values_get_one_line_naming_setting_value_and_expectation(value: Any) -> None:
    cfg = Config(environ={})
    with pytest.raises(ConfigError) as caught:
        cfg.set("limit_request_body", value)
    assert str(caught.value) == f"Invalid value for limit_request_body: {value!r} (expected a non-negative integer)"
    assert cfg.limit_request_body == 1 << 30  # unchanged


@pytest.mark.parametrize(("source", "value"), [("cli", "-5"), ("file", "'big'")])
def test_bad_value_stops_start_up_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], source: str, value: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PRONGHORN_CMD_ARGS", raising=False)
    argv = ["prog", "mod:app"]
    if source == "cli":
        argv += ["--limit-request-body", value]
    else:
        (tmp_path / "pronghorn.conf.py").write_text(f"limit_request_body = {value}\n")
    monkeypatch.setattr("sys.argv", argv)
    with pytest.raises(SystemExit) as exc:
        WSGIApplication()
    assert exc.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    shown = repr(value) if source == "cli" else value
    assert "Invalid value for limit_request_body: " + shown in err and "expected a non-negative integer" in err


def test_value_from_a_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PRONGHORN_CMD_ARGS", raising=False)
    (tmp_path / "pronghorn.conf.py").write_text("limit_request_body = 0\n")
    monkeypatch.setattr("sys.argv", ["prog", "mod:app"])
    assert WSGIApplication().cfg.limit_request_body == 0
