"""The deployment guides' tests' fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.common import DEPLOY_APP


@pytest.fixture()
def guide_dir(tmp_path: Path) -> Path:
    """The application's directory (WorkingDirectory=, the image's WORKDIR) with ``deployapp.py``."""
    (tmp_path / "deployapp.py").write_text(DEPLOY_APP)
    return tmp_path
