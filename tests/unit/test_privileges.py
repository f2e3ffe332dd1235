"""Switching a worker's user and group, in a forked child so the test process keeps its ids."""

from __future__ import annotations

import grp
import json
import os
import pwd
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pronghorn.workers.privileges import chown_for, switch_user

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="changing ids needs root")


def _nobody() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no 'nobody' user on this system")


def _unused_uid() -> int:
    for uid in range(54321, 60000):
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid
    pytest.skip("no free uid found")


def in_child(body: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run ``body`` in a forked child and return what it reported (or the error it raised)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report, then leave without running pytest's cleanup
        code = 0
        try:
            os.close(read_end)
            try:
                report = body()
            except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent
                report = {"error": type(exc).__name__, "message": str(exc), "trace": traceback.format_exc()}
            os.write(write_end, json.dumps(report).encode())
        except BaseException:  # noqa: BLE001
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    chunks = []
    with os.fdopen(read_end, "rb") as reader:
        while chunk := reader.read(65536):
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return dict(json.loads(b"".join(chunks)))


def _ids() -> dict[str, Any]:
    return {
        "uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "egid": os.getegid(),
        "groups": sorted(os.getgroups()),
    }


@needs_root
def test_switch_to_nobody_changes_ids_and_clears_supplementary_groups() -> None:
    nobody = _nobody()

    def body() -> dict[str, Any]:
        os.setgroups([0, nobody.pw_gid])  # something to drop
        switch_user(nobody.pw_uid, nobody.pw_gid, initgroups=False)
        return _ids()

    report = in_child(body)
    assert "error" not in report, report
    assert report["uid"] == report["euid"] == nobody.pw_uid
    assert report["gid"] == report["egid"] == nobody.pw_gid
    assert report["groups"] == []


@needs_root
def test_initgroups_sets_the_users_groups_from_the_group_database() -> None:
    nobody = _nobody()
    expected = sorted({nobody.pw_gid} | {g.gr_gid for g in grp.getgrall() if nobody.pw_name in g.gr_mem})

    def body() -> dict[str, Any]:
        os.setgroups([0])
        switch_user(nobody.pw_uid, nobody.pw_gid, initgroups=True)
        return _ids()

    report = in_child(body)
    assert "error" not in report, report
    assert (report["uid"], report["gid"]) == (nobody.pw_uid, nobody.pw_gid)
    assert report["groups"] == expected


@needs_root
def test_initgroups_for_a_uid_without_passwd_entry_clears_groups_and_says_so() -> None:
    uid = _unused_uid()
    gid = _nobody().pw_gid

    def body() -> dict[str, Any]:
        notes: list[str] = []
        os.setgroups([0])
        switch_user(uid, gid, initgroups=True, log=notes.append)
        return {**_ids(), "notes": notes}

    report = in_child(body)
    assert "error" not in report, report
    assert (report["uid"], report["gid"], report["groups"]) == (uid, gid, [])
    assert len(report["notes"]) == 1
    assert f"uid {uid}" in report["notes"][0] and "no passwd entry" in report["notes"][0]


def test_current_ids_are_a_no_op() -> None:
    def body() -> dict[str, Any]:
        before = _ids()
        switch_user(os.geteuid(), os.getegid(), initgroups=True)
        return {"before": before, "after": _ids()}

    report = in_child(body)
    assert "error" not in report, report
    assert report["before"] == report["after"]


def _as_non_root() -> None:
    """In a child: drop to nobody if running as root, so the next switch is not permitted."""
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        switch_user(nobody.pw_uid, nobody.pw_gid, initgroups=False)


@pytest.mark.parametrize(
    ("target", "initgroups", "expected"),
    [
        ("root-group", False, "cannot switch to group 'root' (gid 0): not permitted while running as "),
        ("root-user", False, "cannot switch to user 'root' (uid 0): not permitted while running as "),
        ("root-user", True, "cannot set the supplementary groups of user 'root' (uid 0)"),
    ],
)
def test_non_root_switch_raises_permission_error_naming_the_target(target: str, initgroups: bool,
                                                                    expected: str) -> None:
    if os.geteuid() == 0:
        _nobody()

    def body() -> dict[str, Any]:
        _as_non_root()
        # "root-user" keeps the current group so only the user change can fail.
        gid = 0 if target == "root-group" else os.getegid()
        switch_user(0, gid, initgroups=initgroups)
        return _ids()

    report = in_child(body)
    assert report.get("error") == "PermissionError", report
    assert report["message"].startswith(expected), report["message"]
    assert "\n" not in report["message"]
    assert "only root can change user or group" in report["message"]


@needs_root
def test_chown_for_gives_a_path_and_a_descriptor_to_the_worker_ids(tmp_path: Path) -> None:
    nobody = _nobody()
    by_path, by_fd = tmp_path / "sock", tmp_path / "heartbeat"
    by_path.write_bytes(b"")
    by_fd.write_bytes(b"")

    chown_for(str(by_path), nobody.pw_uid, nobody.pw_gid)
    fd = os.open(by_fd, os.O_RDWR)
    try:
        chown_for(fd, nobody.pw_uid, nobody.pw_gid)
    finally:
        os.close(fd)

    for path in (by_path, by_fd):
        st = path.stat()
        assert (st.st_uid, st.st_gid) == (nobody.pw_uid, nobody.pw_gid)


@needs_root
def test_chown_for_keeps_components_equal_to_the_current_ids(tmp_path: Path) -> None:
    nobody = _nobody()
    path = tmp_path / "f"
    path.write_bytes(b"")
    os.chown(path, nobody.pw_uid, nobody.pw_gid)

    chown_for(path, os.geteuid(), nobody.pw_gid)  # uid is current: left alone
    st = path.stat()
    assert (st.st_uid, st.st_gid) == (nobody.pw_uid, nobody.pw_gid)


def test_chown_for_current_ids_touches_nothing(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"")
    before = path.stat()
    chown_for(path, os.geteuid(), os.getegid())
    after = path.stat()
    assert (after.st_uid, after.st_gid) == (before.st_uid, before.st_gid)
    assert after.st_ctime_ns == before.st_ctime_ns  # not even a chown to the same ids
