"""The suite's own machinery: `make test` runs `-n 2 --dist loadgroup`, and tests that share an expensive
fixture (the demo class, the learner's walked course, a browser) rely on their `xdist_group` keeping them on
one worker. pytest 9.2 made xdist drop the groups silently (pytest-xdist#1386): every fixture was built twice."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

PROBE = """
import os, pytest

@pytest.mark.xdist_group("shared")
@pytest.mark.parametrize("i", range(6))
def test_grouped(i):
    print("worker", os.environ["PYTEST_XDIST_WORKER"])

@pytest.mark.parametrize("i", range(6))
def test_free(i):
    pass
"""


def test_loadgroup_keeps_a_group_on_one_worker(tmp_path: Path) -> None:
    (tmp_path / "test_probe.py").write_text(PROBE)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "2", "--dist", "loadgroup", "-v"],
        cwd=tmp_path, capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    workers = set(re.findall(r"\[(gw\d+)\] .*PASSED test_probe.py::test_grouped", result.stdout))
    assert len(workers) == 1, f"the group ran on {sorted(workers)} (a pytest newer than xdist supports?)"
