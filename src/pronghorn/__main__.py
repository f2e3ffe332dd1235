"""``python -m pronghorn``: the same as the ``pronghorn`` command."""

from __future__ import annotations

from pronghorn.app.wsgiapp import run

if __name__ == "__main__":
    run(prog="pronghorn")
