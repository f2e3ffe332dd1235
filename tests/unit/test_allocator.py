"""The worker's malloc tuning: freed request-sized blocks are reused, not faulted in again."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from pronghorn.workers import allocator
from pronghorn.workers.allocator import mallopt_function, running_on_glibc, tuned_by_user

# In a thread (glibc gives it its own arena), allocate and free three 70 kB blocks 1,000 times and
# print the page faults that took.
FAULTS = textwrap.dedent("""
    import resource, sys, threading
    if sys.argv[1] == "tuned-ctypes":
        sys.modules["pronghorn.workers._mallopt"] = None  # as if the C module were not built
    if sys.argv[1].startswith("tuned"):
        from pronghorn.workers.allocator import keep_freed_memory
        assert keep_freed_memory()
    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    def work():
        blocks = [bytes(70_000) for _ in range(3)]
        del blocks
        before = faults()
        for _ in range(1000):
            blocks = [bytes(70_000) for _ in range(3)]
            del blocks
        print(faults() - before)
    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
""")


def page_faults(mode: str) -> int:
    env = {"PATH": "/usr/bin:/bin"}  # no MALLOC_* variables from the caller's environment
    out = subprocess.run([sys.executable, "-c", FAULTS, mode], env={**env, "PYTHONPATH": ":".join(sys.path)},
                         capture_output=True, text=True, timeout=60, check=True)
    return int(out.stdout)


@pytest.mark.skipif(not running_on_glibc(), reason="the tuning is for glibc's malloc")
def test_freed_blocks_are_reused_instead_of_faulted_in_again() -> None:
    untuned, tuned, through_ctypes = page_faults("default"), page_faults("tuned"), page_faults("tuned-ctypes")
    assert untuned > 5000  # glibc's defaults: the pages of every block come back zero-filled
    assert tuned < 500
    assert through_ctypes < 500


def test_mallopt_comes_from_the_c_module_when_it_was_built() -> None:
    try:
        import pronghorn.workers._mallopt as native
    except ImportError:
        pytest.skip("pronghorn.workers._mallopt was not built (editable install or no compiler)")
    assert mallopt_function() is native.mallopt


def test_mallopt_falls_back_to_ctypes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(allocator, "native_mallopt", None)
    assert type(mallopt_function()).__module__ == "ctypes"


def test_a_deployment_that_tunes_malloc_itself_is_left_alone() -> None:
    assert tuned_by_user({"MALLOC_ARENA_MAX": "2"}) is False
    assert tuned_by_user({"MALLOC_TRIM_THRESHOLD_": "0"}) is True
    assert tuned_by_user({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"}) is True
    assert tuned_by_user({"GLIBC_TUNABLES": "glibc.pthread.rseq=0"}) is False
