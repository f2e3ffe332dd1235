"""Gunicorn settings whose whole family comes in a later round, so they are not declared yet.

A config file that names one is still read (Gunicorn ignores unknown names too), but the name is
reported once at start-up instead of being dropped in silence.
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
    "the ASGI worker": (
        "asgi_loop", "asgi_lifespan", "asgi_disconnect_grace_period", "websocket_max_message_size", "root_path",
    ),
}

DEFERRED_SETTINGS: dict[str, str] = {name: family for family, names in _FAMILIES.items() for name in names}


def deferred_notice(name: str) -> str | None:
    """The start-up warning for a deferred setting name, or None if ``name`` is not one."""
    family = DEFERRED_SETTINGS.get(name)
    if family is None:
        return None
    return f"Setting {name} is not supported yet (it arrives with {family}); ignored."
