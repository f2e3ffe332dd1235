"""``Config.validate`` and the deferred names: what may be set before its mechanism lands."""

from __future__ import annotations

import re

import pytest

from pronghorn.config.config import Config
from pronghorn.config.declared import ALL_SETTINGS
from pronghorn.config.deferred import DEFERRED_SETTINGS, GUNICORN_DEFAULTS, deferred_refusal
from pronghorn.config.setting import Setting
from pronghorn.errors import ConfigError

PENDING = [s for s in ALL_SETTINGS if s.pending]

# A value other than the default for each of them, as a config file would give it.
OTHER_VALUES = {"http_parser": "python"}


def test_defaults_validate() -> None:
    Config(environ={}).validate()


@pytest.mark.parametrize("setting", PENDING, ids=lambda s: s.name)
def test_every_pending_setting_refuses_a_value_other_than_its_default(setting: Setting) -> None:
    cfg = Config(environ={})
    cfg.set(setting.name, cfg.settings[setting.name].default)  # its own default, given explicitly: fine
    cfg.validate()
    cfg.set(setting.name, OTHER_VALUES[setting.name])
    assert setting.pending is not None
    reason = re.escape(setting.pending)
    with pytest.raises(ConfigError, match=rf"^Setting {setting.name} is not available yet \({reason}\): "):
        cfg.validate()


def test_a_deprecated_setting_warns_and_is_not_refused() -> None:
    cfg = Config(environ={})
    assert cfg.startup_warnings() == []
    cfg.set("ssl_version", 5)
    cfg.validate()
    assert cfg.startup_warnings() == [
        "Setting ssl_version is deprecated: ignored, as in Gunicorn; choose protocol versions in the "
        "ssl_context hook."
    ]


def test_deferred_names_pass_only_at_gunicorns_default() -> None:
    assert set(GUNICORN_DEFAULTS) <= set(DEFERRED_SETTINGS)
    for name, default in GUNICORN_DEFAULTS.items():
        assert deferred_refusal(name, default) is None, name
    assert deferred_refusal("protocol", "uwsgi") == (
        "Setting protocol is not available yet (it arrives with the uWSGI protocol): 'uwsgi' given"
    )
    assert deferred_refusal("dirty_workers", 0) is not None  # no default on record: any value is refused
    assert deferred_refusal("not_a_setting", 1) is None
