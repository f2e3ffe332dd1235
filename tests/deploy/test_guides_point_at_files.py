"""Each deployment guide (docs/deploy-*.md) names its example files and, in its last section, its
test module; and every excerpt it quotes of a file in deploy/ matches that file.
"""

from __future__ import annotations

import re

import pytest
from serving import REPO

from deploy.common import DOCS


@pytest.mark.parametrize("guide, files, test", [
    ("deploy-systemd.md", ["deploy/systemd/pronghorn.service", "deploy/systemd/pronghorn.socket",
                           "deploy/systemd/pronghorn.conf.py"], "tests/deploy/test_systemd_guide.py"),
    ("deploy-kubernetes.md", ["deploy/kubernetes/deployment.yaml"], "tests/deploy/test_kubernetes_guide.py"),
    ("deploy-container.md", ["deploy/container/Containerfile", "deploy/container/pronghorn.conf.py"],
     "tests/deploy/test_container_guide.py"),
])
def test_guide_points_at_its_files_and_test(guide: str, files: list[str], test: str) -> None:
    text = (DOCS / guide).read_text()
    for name in files:
        assert name in text, f"{guide} does not name {name}"
    heading, _, last_section = text.rpartition("\n## ")[2].partition("\n")
    assert heading == "What the test checks" and test in last_section
    # An excerpt of a file (a code block whose first line is "# deploy/...") matches that file.
    for block in re.findall(r"```\w*\n(.*?)```", text, re.S):
        first, _, rest = block.partition("\n")
        quoted = re.fullmatch(r"# (deploy/\S+)(?: \(excerpt\))?", first.strip())
        if not quoted:
            continue
        source = (REPO / quoted[1]).read_text().splitlines()
        for line in rest.splitlines():
            if line.strip() and line.strip() != "...":
                assert line in source, f"{guide}: {line!r} is not in {quoted[1]}"
