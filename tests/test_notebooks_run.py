"""Every source notebook runs top to bottom with its solutions, tests included."""

from __future__ import annotations

import time

import pytest
from conftest import REPO
from nbclient import NotebookClient

from course import notebooks
from course.modules import Module, discover

MODULES = discover(REPO)


@pytest.mark.parametrize("module", MODULES, ids=[m.name for m in MODULES])
def test_source_notebook_runs_top_to_bottom(module: Module) -> None:
    nb = notebooks.read(module.source_notebook)
    started = time.perf_counter()
    NotebookClient(nb, timeout=120, resources={"metadata": {"path": str(module.source_notebook.parent)}}).execute()
    elapsed = time.perf_counter() - started
    assert elapsed < 90, f"{module.name} took {elapsed:.0f} s; a module should run in about a minute"
    for cell in nb.cells:
        if notebooks.is_test(cell):
            stderr = [o for o in cell.outputs if o.get("name") == "stderr"]
            assert not stderr, f"{notebooks.grade_id(cell)} writes to stderr, which nbgrader grades as 0: {stderr}"
