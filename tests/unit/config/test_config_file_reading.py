"""Reading a Python config file: every read sees the file as it is now."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from pronghorn.config.sources import read_config_location


@pytest.fixture()
def bytecode_writing(monkeypatch: pytest.MonkeyPatch) -> None:
    # As in a shell without PYTHONDONTWRITEBYTECODE: imports may write and trust __pycache__ files.
    monkeypatch.setattr(sys, "dont_write_bytecode", False)


@pytest.mark.usefixtures("bytecode_writing")
def test_a_rewrite_of_the_same_size_and_mtime_is_read_again(tmp_path: Path) -> None:
    conf = tmp_path / "conf.py"
    conf.write_text("workers = 1\n")
    stamp = conf.stat().st_mtime_ns
    assert read_config_location(str(conf))["workers"] == 1
    conf.write_text("workers = 3\n")
    os.utime(conf, ns=(stamp, stamp))  # what an edit within the same second looks like
    assert read_config_location(f"file:{conf}")["workers"] == 3


@pytest.mark.usefixtures("bytecode_writing")
def test_reading_leaves_no_bytecode_beside_the_config_file(tmp_path: Path) -> None:
    conf = tmp_path / "pronghorn.conf.py"
    conf.write_text("bind = '127.0.0.1:9000'\n")
    values = read_config_location(str(conf))
    assert values["bind"] == "127.0.0.1:9000"
    assert values["__file__"] == str(conf)
    assert not (tmp_path / "__pycache__").exists()


def test_an_error_in_the_config_file_names_the_file_and_line(tmp_path: Path) -> None:
    from pronghorn.errors import ConfigError

    conf = tmp_path / "conf.py"
    conf.write_text("workers = 2\nraise ValueError('broken on purpose')\n")
    with pytest.raises(ConfigError) as caught:
        read_config_location(str(conf))
    message = str(caught.value)
    assert f"Failed to read config file: {conf}" in message
    assert f'File "{conf}", line 2' in message
    assert "broken on purpose" in message
