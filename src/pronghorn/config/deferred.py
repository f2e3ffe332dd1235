"""Gunicorn settings whose whole family comes in a later round, so they are not declared yet.

A config file may name one at Gunicorn's default (``protocol = "http"``); any other value stops
start-up with one line saying which feature it waits for, since pronghorn would otherwise ignore it.
"""

from __future__ import annotations

_FAMILIES = {
    "dirty arbiters": (
        "dirty_apps", "dirty_workers", "dirty_timeout", "dirty_threads", "dirty_graceful_timeout",
        "on_dirty_starting", "dirty_post_fork", "dirty_worker_init", "dirty_worker_exit",
    ),
    "the control socket": ("control_socket", "control_socket_mode", "control_socket_disable"),
    "HTTP/2": (
        "http_protocols", "http2_cleartext", "http2_max_concurrent_streams", "http2_initial_window_size",
        "http2_max_frame_size", "http2_max_header_list_size",
    ),
    "the uWSGI protocol": ("protocol", "uwsgi_allow_ips"),
    "PasteDeploy": ("paste", "raw_paste_global_conf"),
}

DEFERRED_SETTINGS: dict[str, str] = {name: family for family, names in _FAMILIES.items() for name in names}


# Gunicorn's defaults, where its reference gives them: a config file that spells one out is fine.
GUNICORN_DEFAULTS: dict[str, object] = {
    "http_protocols": "h1", "http2_cleartext": "off", "http2_max_concurrent_streams": 100,
    "http2_initial_window_size": 65535, "http2_max_frame_size": 16384, "http2_max_header_list_size": 65536,
    "protocol": "http", "uwsgi_allow_ips": "127.0.0.1,::1", "paste": None, "raw_paste_global_conf": [],
}
_ABSENT = object()


def deferred_refusal(name: str, value: object) -> str | None:
    """Why a config file's ``name = value`` cannot be served, or None (not a deferred setting, or
    Gunicorn's default for it)."""
    family = DEFERRED_SETTINGS.get(name)
    if family is None or GUNICORN_DEFAULTS.get(name, _ABSENT) == value:
        return None
    return f"Setting {name} is not available yet (it arrives with {family}): {value!r} given"
